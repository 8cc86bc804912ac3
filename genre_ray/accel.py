"""Device helpers for the GPU path — precision, memory format, ``torch.compile`` — as small pure functions, no Ray.

* :data:`PRECISIONS` — ``precision`` name → ``(device type, bf16 supported) → autocast dtype or None``: ``auto``
  (bf16 on CUDA when the card supports it, else fp32; fp32 on CPU), ``bf16``, ``fp16`` (CUDA only) and ``fp32``.
* :func:`autocast_for` — the autocast context for a device and precision (a null context for fp32).
* :func:`prepare_model` — ``channels_last`` (on every device: measured faster on CUDA and on CPU), optional
  ``torch.compile``; :func:`to_input` the matching ``(B, 1, H, W)`` input layout.
* :func:`inference_model` — an inference-only form of a model: BatchNorm folded into the convolution before it,
  max-pools moved ahead of the monotone activations that feed them (``torch.fx``), same outputs up to rounding.
* :class:`BatchSizeTuner` — the inference batch size chosen by measurement on the device at hand, during the real
  work (the label job's actors).
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Sequence

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


def pick_device(use_gpu: bool) -> torch.device:
    """The device a job's process computes on: ``cuda`` when the config asks for GPUs, else ``cpu``. A process that
    was given GPUs but sees no CUDA device (a driver or CUDA_VISIBLE_DEVICES problem) raises instead of computing
    on its CPU unseen, 10–100 × slower, while holding the GPUs it reserved."""
    if not use_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("use_gpu is set, but this process sees no CUDA device (CUDA_VISIBLE_DEVICES="
                           f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}, torch {torch.__version__}, built for CUDA "
                           f"{torch.version.cuda}): check the node's driver and torch build, or set use_gpu: false")
    return torch.device("cuda")


def memory_format(device: torch.device | str) -> torch.memory_format:
    """``channels_last`` (NHWC) for models and image batches on every device. CUDA: tensor cores want NHWC. CPU
    (oneDNN, 2-core AMD EPYC, torch 2.11, one thread, 2026-11-26): the demo's homebrew CNN classifies 3.0× faster
    (54 → 164 windows/s at batch 4) and trains 1.7× faster (16 → 28 samples/s at batch 32); ResNet18 1.45× and
    1.14×. Same results up to float rounding (max |Δ logit| 1.5e-8)."""
    return torch.channels_last


def cudnn_autotune(device: torch.device | str, on: bool = True) -> bool:
    """cuDNN's autotuner (``torch.backends.cudnn.benchmark``) for a fixed-shape convolution workload on ``device``:
    the first batch of each new input shape times the candidate algorithms and keeps the fastest. For training
    (every batch the same shape but an epoch's last); not for the label actors, whose calls end in batches of
    ever new sizes. Returns whether it is now on (never on a non-CUDA device, where the flag does nothing)."""
    if torch.device(device).type != "cuda":
        return False
    torch.backends.cudnn.benchmark = on
    return on


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


_MONOTONE = (nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.Hardtanh, nn.Sigmoid, nn.Tanh)
"""Element-wise activations that never decrease (``LeakyReLU`` with a slope ≥ 0, checked): ``max`` over a window
commutes with them, so a max-pool may run first and the activation on the pooled (4× smaller) map."""


class InferenceModel(nn.Module):
    """``embed`` from a traced, rewritten graph; ``classify`` (and every parameter it uses) from the original model,
    whose own ``embed`` is kept unchanged alongside. Eval only: the folded BatchNorm no longer trains."""

    def __init__(self, model: nn.Module, embed: nn.Module):
        super().__init__()
        self.model, self.embed_graph = model, embed
        self.embedding_dim = getattr(model, "embedding_dim", None)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_graph(x)

    def classify(self, e: torch.Tensor) -> torch.Tensor:
        return self.model.classify(e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))

    def train(self, mode: bool = True) -> "InferenceModel":
        if mode:
            raise RuntimeError("an InferenceModel is for inference only (its BatchNorm is folded); train the original")
        return super().train(False)


class _Embed(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)


def _pool_first(gm: "torch.fx.GraphModule") -> int:
    """Rewrite every ``act → MaxPool`` (the activation's output used by the pool alone, ``act`` in
    :data:`_MONOTONE`) into ``MaxPool → act``; → how many were moved."""
    mods = dict(gm.named_modules())
    moved = 0
    for pool in list(gm.graph.nodes):
        if pool.op != "call_module" or not isinstance(mods.get(pool.target), nn.MaxPool2d):
            continue
        act = pool.args[0]
        m = mods.get(act.target) if isinstance(act, torch.fx.Node) and act.op == "call_module" else None
        if not isinstance(m, _MONOTONE) or len(act.users) != 1 or getattr(m, "negative_slope", 0.0) < 0:
            continue
        pool.args = (act.args[0], *pool.args[1:])  # pool reads what the activation read
        pool.replace_all_uses_with(act)  # … and the activation's users now read the pool's output through act
        act.args = (pool, *act.args[1:])
        act.prepend(pool)  # moves the pool node ahead of the activation in the graph's order
        moved += 1
    gm.graph.lint()
    gm.recompile()
    return moved


def inference_model(model: nn.Module) -> nn.Module:
    """``model`` (with ``embed``/``classify``) → an :class:`InferenceModel` whose ``embed`` is a ``torch.fx`` graph
    with every Conv→BatchNorm folded into one convolution (``torch.fx.experimental.optimization.fuse``) and every
    monotone activation → max-pool turned into max-pool → activation; the same outputs up to float rounding
    (tests), on the model's device and memory format. Fewer passes over the largest activations: the demo's homebrew
    CNN classifies 175.6 → 223.2 windows per CPU-s at batch 4 on one core (+27 %), ResNet18 +8 % (2-core AMD EPYC,
    torch 2.11, 5 and 3 alternating rounds, throwaway scripts, 2026-11-26); labelling 1,000 files with both cores busy
    went from 392–429 to 574–577 audio-s/s (+40 %: less memory traffic, less contention between the two actors;
    2 alternating runs each). A model ``torch.fx`` cannot trace comes back unchanged (in eval mode)."""
    from torch.fx.experimental.optimization import fuse

    model.eval()
    try:
        traced = fuse(_Embed(model))  # a deep copy: the original keeps its BatchNorm
    except Exception:  # data-dependent control flow etc.: the eager model is correct, just slower
        return model
    _pool_first(traced)
    conv = next((p for p in model.parameters() if p.dim() == 4), None)  # the convolutions' layout, kept
    if conv is not None and conv.is_contiguous(memory_format=torch.channels_last):
        traced = traced.to(memory_format=torch.channels_last)
    return InferenceModel(model, traced).eval()


def compile_embed(model: nn.Module) -> nn.Module:
    """The label actors' ``torch.compile`` (``LabelConfig.torch_compile``): ``model.embed`` — the network up to its
    pooled features, where the time goes — compiled for static shapes (``dynamic=False``: the callers feed one batch
    shape, padding a call's last batch), the small ``classify`` head left eager. In place; returns ``model``."""
    model.embed = torch.compile(model.embed, dynamic=False)
    return model


BATCH_CANDIDATES: dict[str, tuple[int, ...]] = {"cpu": (2, 4, 8, 16, 32, 64), "cuda": (64, 128, 256, 512, 1024, 2048)}
"""Inference batch sizes :class:`BatchSizeTuner` tries per device type, smallest first."""


class BatchSizeTuner:
    """Chooses the inference batch size *while the real work runs*: no probe at start-up (on a 2-core box the
    start-up probe this replaced cost each classifier actor 1.1–2.5 s before its first window).

    Each candidate (smallest first, :data:`BATCH_CANDIDATES`) serves real calls: the first call at a size is a
    warm-up and not counted, then calls are timed — process CPU time on CPU, wall time on CUDA (the caller's
    results reach the host, which synchronizes) — until ``min_windows`` windows ran at that size. The sweep stops
    at the first size below ``give_up`` × the best so far (throughput rises with the batch to a peak, then
    falls or flattens); then :attr:`size` is the best. Use: ``t0 = tuner.clock(); run(images, tuner.size); tuner.record(size, len(images), tuner.clock()
    - t0)``.
    """

    def __init__(self, device: torch.device | str, candidates: Sequence[int] | None = None, min_windows: int = 64,
                 give_up: float = 0.9):
        import time

        device = torch.device(device)
        self.sizes = sorted(candidates or BATCH_CANDIDATES.get(device.type, BATCH_CANDIDATES["cpu"]))
        self.min_windows, self.give_up = min_windows, give_up
        self.clock = time.process_time if device.type == "cpu" else time.perf_counter
        self.rates: dict[int, float] = {}
        self.best: int | None = None
        self._i, self._warm, self._windows, self._seconds = 0, False, 0, 0.0

    @property
    def size(self) -> int:
        """The batch size to run now: the candidate being measured, then the best."""
        return self.best if self.best is not None else self.sizes[self._i]

    def record(self, size: int, windows: int, seconds: float) -> bool:
        """Count one call of ``windows`` windows run at ``size``; True when this call settled the choice."""
        if self.best is not None or size != self.sizes[self._i] or windows <= 0:
            return False
        if not self._warm:
            self._warm = True
            return False
        self._windows += windows
        self._seconds += seconds
        if self._windows < self.min_windows:
            return False
        self.rates[size] = round(self._windows / max(self._seconds, 1e-9), 2)
        self._warm, self._windows, self._seconds = False, 0, 0.0
        top = max(self.rates.values())
        if self.rates[size] < self.give_up * top or self._i == len(self.sizes) - 1:
            self.best = max(self.rates, key=self.rates.get)
            return True
        self._i += 1
        return False
