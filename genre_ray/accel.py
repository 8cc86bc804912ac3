"""Device helpers for the GPU path — precision, memory format, ``torch.compile`` — as small pure functions, no Ray.

* :data:`PRECISIONS` — ``precision`` name → ``(device type, bf16 supported) → autocast dtype or None``: ``auto``
  (bf16 on CUDA when the card supports it, else fp32; fp32 on CPU), ``bf16``, ``fp16`` (CUDA only) and ``fp32``.
* :func:`autocast_for` — the autocast context for a device and precision (a null context for fp32).
* :func:`prepare_model` — ``channels_last`` on CUDA, optional ``torch.compile``; :func:`to_input` the matching
  ``(B, 1, H, W)`` input layout.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from genre_ray.registry import Registry

DtypeRule = Callable[[str, bool], "torch.dtype | None"]
PRECISIONS: Registry[DtypeRule] = Registry("precision")


@PRECISIONS.register("auto")
def _auto(device_type: str, bf16_ok: bool) -> torch.dtype | None:
    """bf16 on a CUDA card that supports it (Ampere and later), fp32 otherwise (and always on CPU)."""
    return torch.bfloat16 if device_type == "cuda" and bf16_ok else None


@PRECISIONS.register("bf16")
def _bf16(device_type: str, bf16_ok: bool) -> torch.dtype | None:
    return torch.bfloat16


@PRECISIONS.register("fp16")
def _fp16(device_type: str, bf16_ok: bool) -> torch.dtype | None:
    if device_type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device (CPU autocast supports bf16 only)")
    return torch.float16


@PRECISIONS.register("fp32")
def _fp32(device_type: str, bf16_ok: bool) -> torch.dtype | None:
    return None


def _bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def autocast_dtype(device: torch.device | str, precision: str = "auto", bf16_ok: bool | None = None) -> torch.dtype | None:
    """The autocast dtype for ``device`` under ``precision`` (None = plain fp32); ``bf16_ok`` overrides the probe."""
    device = torch.device(device)
    ok = _bf16_supported(device) if bf16_ok is None else bf16_ok
    return PRECISIONS.lookup(precision)(device.type, ok)


def autocast_for(device: torch.device | str, precision: str = "auto") -> contextlib.AbstractContextManager:
    """``torch.autocast`` with :func:`autocast_dtype`, or a null context when that is fp32."""
    device = torch.device(device)
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def memory_format(device: torch.device | str) -> torch.memory_format:
    """``channels_last`` on CUDA (tensor cores want NHWC), ``contiguous_format`` on CPU."""
    return torch.channels_last if torch.device(device).type == "cuda" else torch.contiguous_format


def to_input(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Images ``(B, 1, H, W)`` (any float dtype) → float32 on ``device`` in :func:`memory_format`."""
    device = torch.device(device)
    x = x.to(device, non_blocking=True).float()
    return x.contiguous(memory_format=memory_format(device))


def prepare_model(model: nn.Module, device: torch.device | str, compile: bool = False,
                  compile_mode: str | None = None) -> nn.Module:
    """Move ``model`` to ``device`` in :func:`memory_format`; ``compile`` wraps it in ``torch.compile`` (off by
    default: on small runs compilation costs more than it saves). The returned module shares its parameters."""
    device = torch.device(device)
    model = model.to(device, memory_format=memory_format(device))
    if compile:
        model = torch.compile(model, mode=compile_mode)
    return model
