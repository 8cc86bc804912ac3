"""Plain training/evaluation steps over batches — no Ray. The same functions run in a bare loop
(benchmarks, GPU checks) and inside a Ray Train worker.

Precision: on CUDA, bf16 autocast and channels_last; on CPU, fp32.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, nothing on CPU (fp32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Images ``(B, 1, H, W)`` (any float dtype) → float32 on ``device``, channels_last on CUDA."""
    x = x.to(device, non_blocking=True).float()
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay) if weight_decay > 0 \
        else torch.optim.Adam(params, lr=lr)


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                    min_factor: float = 0.05) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay from the base lr to ``min_factor × lr`` over ``total_steps``."""
    total_steps = max(1, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class Totals:
    """Running sums for a pass over batches (kept as sums so workers can all-reduce them)."""

    loss_sum: float = 0.0
    correct: int = 0
    n: int = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        b = y.shape[0]
        self.loss_sum += float(loss.detach()) * b
        self.correct += int((logits.argmax(dim=1) == y).sum())
        self.n += b

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([self.loss_sum, self.correct, self.n], dtype=torch.float64)

    @staticmethod
    def summary(t: torch.Tensor) -> dict[str, float]:
        loss_sum, correct, n = (float(v) for v in t)
        return {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1), "n": n}


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               loss_fn: nn.Module, device: torch.device, grad_clip: float | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on images ``x (B, 1, H, W)`` and labels ``y (B,)``; returns ``(loss, logits)``."""
    x, y = to_device(x, device), y.to(device, non_blocking=True).long()
    optimizer.zero_grad(set_to_none=True)
    with autocast(device):
        logits = model(x)
        loss = loss_fn(logits.float(), y)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach(), logits.detach()


def train_epoch(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                optimizer: torch.optim.Optimizer, loss_fn: nn.Module, device: torch.device,
                scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                grad_clip: float | None = None, bn_batches: int = 0) -> Totals:
    """One pass over ``batches``; then, if ``bn_batches > 0``, :func:`recalibrate_bn` on the epoch's last
    ``bn_batches`` inputs (kept on the CPU as they came, no second pass over the data)."""
    model.train()
    totals = Totals()
    recent: deque[torch.Tensor] = deque(maxlen=bn_batches)
    for x, y in batches:
        loss, logits = train_step(model, x, y, optimizer, loss_fn, device, grad_clip)
        if scheduler is not None:
            scheduler.step()
        totals.add(loss, logits, y.to(logits.device))
        if bn_batches:
            recent.append(x.detach().cpu())
    if recent:
        recalibrate_bn(model, recent, device)
    return totals


@torch.no_grad()
def recalibrate_bn(model: nn.Module, inputs: Iterable[torch.Tensor], device: torch.device) -> bool:
    """"Precise BN": recompute BatchNorm running statistics with the current weights.

    BatchNorm's running averages lag behind fast-moving weights (short runs, high learning rates), which makes
    eval-mode accuracy collapse while train-mode accuracy is fine. This resets them and averages the batch
    statistics of ``inputs`` (each ``(B, 1, H, W)``) exactly (``momentum=None``), with dropout off so the
    statistics are those the eval-mode network will see. Returns False when the model
    has no BatchNorm, or frozen ones (fixed-feature backbones keep their statistics).
    """
    model = unwrap(model)  # DDP: recalibrate the local replica, no collectives
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    bns = [m for m in bns if any(p.requires_grad for p in m.parameters())]
    if not bns:
        return False
    was_training = model.training
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.eval()  # everything else as at inference (dropout off) …
    for m in bns:  # … only BatchNorm collects statistics
        m.train()
    for x in inputs:
        with autocast(device):
            model(to_device(x, device))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    model.train(was_training)
    return True


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Images ``(B, 1, H, W)`` → float32 logits ``(B, C)`` on ``device``, model in eval mode."""
    model.eval()
    with autocast(device):
        return model(to_device(x, device)).float()


@torch.no_grad()
def eval_epoch(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], loss_fn: nn.Module,
               device: torch.device) -> Totals:
    totals = Totals()
    for x, y in batches:
        logits = predict_logits(model, x, device)
        y = y.to(device).long()
        totals.add(loss_fn(logits, y), logits, y)
    return totals


def batched(arr: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, arr.shape[0], size):
        yield arr[i:i + size]


@torch.no_grad()
def predict_probs(model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """``(N, 1, H, W)`` images (any float dtype) → ``(N, C)`` float32 softmax probabilities."""
    out = [torch.softmax(predict_logits(model, torch.from_numpy(np.ascontiguousarray(b)), device), dim=1).cpu()
           for b in batched(images, batch_size)]
    if not out:
        return np.zeros((0, 0), np.float32)
    return torch.cat(out).numpy().astype(np.float32)
