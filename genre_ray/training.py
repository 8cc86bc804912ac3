"""Plain training/evaluation steps over batches — no Ray. The same functions run in a bare loop
(benchmarks, GPU checks) and inside a Ray Train worker.

Precision: on CUDA, bf16 autocast; on CPU, fp32. Memory format: channels_last everywhere (:mod:`genre_ray.accel`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
from collections import deque
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from genre_ray import accel
from genre_ray.registry import Registry


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one worker's epoch (batch order, augmentation): distinct for every (seed, epoch, rank) —
    ``seed * 1000 + epoch * 10 + rank`` gave rank 10 of epoch 0 the stream of rank 0 of epoch 1."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on a CUDA card that supports it, nothing on CPU (fp32): :func:`genre_ray.accel.autocast_for`."""
    return accel.autocast_for(device, "auto")


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Images ``(B, 1, H, W)`` (any float dtype) → float32 on ``device``, channels_last."""
    return accel.to_input(x, device)


class EarlyStopping:
    """Patience on a selection metric: :meth:`update` with each epoch's value says whether it improved on the
    best so far (strictly: a tie, such as accuracy 1.0 again, is not an improvement); :attr:`stop` is true once
    ``patience`` epochs in a row have not improved (never when ``patience`` is None). ``mode``: ``"max"`` or
    ``"min"``. ``best`` and ``since_best`` are plain numbers, saved in checkpoints and restored on resume."""

    def __init__(self, mode: str, patience: int | None, best: float | None = None, since_best: int = 0):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min' (got {mode!r})")
        self.mode, self.patience, self.best, self.since_best = mode, patience, best, since_best

    def is_better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def update(self, value: float) -> bool:
        """Record one epoch's ``value``; True when it is the new best."""
        improved = self.is_better(value)
        self.best, self.since_best = (value, 0) if improved else (self.best, self.since_best + 1)
        return improved

    @property
    def stop(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience


OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.register("adam")(torch.optim.Adam)
OPTIMIZERS.register("adamw")(torch.optim.AdamW)
OPTIMIZERS.register("sgd")(functools.partial(torch.optim.SGD, momentum=0.9, nesterov=True))


def param_groups(model: nn.Module, lr: float, backbone_lr_factor: float = 1.0) -> list[dict]:
    """Trainable parameters as optimizer groups: the classifier head (``model.classifier``) at ``lr``, the rest
    (the backbone) at ``lr × backbone_lr_factor`` — discriminative learning rates when the factor is < 1."""
    model = unwrap(model)
    head = getattr(model, "classifier", None)
    head_ids = {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    head_params = [p for p in trainable if id(p) in head_ids]
    body_params = [p for p in trainable if id(p) not in head_ids]
    if backbone_lr_factor == 1.0 or not head_params:
        return [{"params": trainable, "lr": lr, "name": "all"}]
    groups = [{"params": head_params, "lr": lr, "name": "head"}]
    if body_params:
        groups.append({"params": body_params, "lr": lr * backbone_lr_factor, "name": "backbone"})
    return groups


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.0, name: str | None = None,
                   backbone_lr_factor: float = 1.0, fused: bool | None = None) -> torch.optim.Optimizer:
    """A registered optimizer over :func:`param_groups`. ``name=None`` keeps the historical default:
    Adam, or AdamW when ``weight_decay > 0``. ``fused``: torch's fused update (a few kernels for every parameter
    at once); None → on when every trainable parameter is on a CUDA device, where torch's own default
    (``foreach``) launches several kernels per step and parameter group and keeps the step counts on the host — a
    ResNet18 step on an H100/H200 is close to bound by its kernel launches (see README, Performance). Off on CPU
    (not measured faster there). Same update rule either way."""
    name = name or ("adamw" if weight_decay > 0 else "adam")
    groups = param_groups(model, lr, backbone_lr_factor)
    if fused is None:
        fused = all(p.is_cuda for g in groups for p in g["params"])
    extra = {"fused": True} if fused else {}
    return OPTIMIZERS.lookup(name)(groups, lr=lr, weight_decay=weight_decay, **extra)


Schedule = Callable[[int, int, int], float]
"""``(step, total_steps, steps_per_epoch) → lr factor`` (after warm-up)."""

SCHEDULES: Registry[Schedule] = Registry("lr schedule")


@SCHEDULES.register("cosine")
def _cosine(step: int, total: int, per_epoch: int, min_factor: float = 0.05) -> float:
    t = min(1.0, step / max(1, total))
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULES.register("step")
def _step(step: int, total: int, per_epoch: int) -> float:
    """×0.1 at 50 % and again at 75 % of training (the classic step decay)."""
    t = step / max(1, total)
    return 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01


@SCHEDULES.register("exponential")
def _exponential(step: int, total: int, per_epoch: int) -> float:
    """Smooth decay to 1 % of the base lr at the end (the report's "lr 1e-3 decaying")."""
    return 0.01 ** min(1.0, step / max(1, total))


@SCHEDULES.register("constant")
def _constant(step: int, total: int, per_epoch: int) -> float:
    return 1.0


def lr_schedule(optimizer: torch.optim.Optimizer, name: str, total_steps: int, warmup_steps: int = 0,
                steps_per_epoch: int = 1) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps`` then the registered decay ``name`` over the remaining steps.
    Stepped once per optimisation step; every param group keeps its own base lr."""
    fn = SCHEDULES.lookup(name)
    total_steps = max(1, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return fn(step - warmup_steps, max(1, total_steps - warmup_steps), steps_per_epoch)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Totals:
    """Running sums for a pass over batches (kept as sums so workers can all-reduce them). The loss and the
    correct count are summed on the device the logits are on, so a step never waits for the GPU: reading
    ``loss_sum`` / ``correct`` (or :meth:`as_tensor`) syncs once, at the end of the pass. (``float(loss)`` per step made
    every step wait for the previous one's kernels — the CPU could not queue the next batch's copy and kernels while
    the GPU worked.)"""

    def __init__(self) -> None:
        self._loss: torch.Tensor | None = None
        self._correct: torch.Tensor | None = None
        self.n = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        b = y.shape[0]
        loss_b = loss.detach().double() * b
        correct_b = (logits.argmax(dim=1) == y).sum()
        self._loss = loss_b if self._loss is None else self._loss + loss_b
        self._correct = correct_b if self._correct is None else self._correct + correct_b
        self.n += b

    @property
    def loss_sum(self) -> float:
        return float(self._loss) if self._loss is not None else 0.0

    @property
    def correct(self) -> int:
        return int(self._correct) if self._correct is not None else 0

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([self.loss_sum, self.correct, self.n], dtype=torch.float64)

    @staticmethod
    def summary(t: torch.Tensor) -> dict[str, float]:
        loss_sum, correct, n = (float(v) for v in t)
        return {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1), "n": n}


Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``(x (B, 1, H, W), y (B,)) → (x', target)``, target = hard labels ``(B,)`` or soft ``(B, C)``."""


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               loss_fn: nn.Module, device: torch.device, grad_clip: float | None = None,
               augment: Augment | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on images ``x (B, 1, H, W)`` and labels ``y (B,)``; returns ``(loss, logits)``.

    ``augment`` (train only) transforms the batch on the device and may return soft targets (mixup);
    the logits returned are for the augmented batch, so accuracy from them is the training-view accuracy.
    """
    x, y = to_device(x, device), y.to(device, non_blocking=True).long()
    target = y
    if augment is not None:
        x, target = augment(x, y)
    optimizer.zero_grad(set_to_none=True)
    with autocast(device):
        logits = model(x)
        loss = loss_fn(logits.float(), target)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach(), logits.detach()


class DeviceCache:
    """A training shard held as two tensors on one device — images ``(N, 1, H, W)`` as stored (float16) and labels
    ``(N,)`` int64 — read once; every epoch draws its batches from there in a seeded random order over the whole
    shard (a better shuffle than a local buffer), gathered on the device: no host work and no host→device copy per
    step. For a GPU worker whose share of the data fits in its memory (GTZAN at a 0.25-s hop: ~110,000 windows,
    ~10 GB in float16). Pure torch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images, self.labels = images, labels.long()

    @classmethod
    def load(cls, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> "DeviceCache":
        """Every ``(images, labels)`` batch of ``batches`` copied to ``device`` and joined (peak: twice the shard)."""
        xs, ys = [], []
        for x, y in batches:
            xs.append(x.to(device, non_blocking=True))
            ys.append(y.to(device, non_blocking=True))
        if not xs:
            raise ValueError("no training rows to cache")
        return cls(torch.cat(xs), torch.cat(ys))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        return self.images.nbytes + self.labels.nbytes

    def batches(self, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch: ``ceil(N / batch_size)`` batches, every row once, in the order of a permutation seeded by
        ``seed`` (the same seed, the same order on any device)."""
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).to(self.images.device)
        for i in range(0, len(self), batch_size):
            idx = order[i:i + batch_size]
            yield self.images.index_select(0, idx), self.labels.index_select(0, idx)


def train_epoch(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                optimizer: torch.optim.Optimizer, loss_fn: nn.Module, device: torch.device,
                scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                grad_clip: float | None = None, bn_batches: int = 0, augment: Augment | None = None) -> Totals:
    """One pass over ``batches``; then, if ``bn_batches > 0``, :func:`recalibrate_bn` on the epoch's last
    ``bn_batches`` inputs (kept as they came, no second pass over the data)."""
    model.train()
    totals = Totals()
    recent: deque[torch.Tensor] = deque(maxlen=bn_batches)
    for x, y in batches:
        loss, logits = train_step(model, x, y, optimizer, loss_fn, device, grad_clip, augment)
        if scheduler is not None:
            scheduler.step()
        totals.add(loss, logits, y.to(logits.device))
        if bn_batches:
            recent.append(x.detach())  # where it came from: host batches stay on the host, cached ones on the device
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


def batched(arr: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, arr.shape[0], size):
        yield arr[i:i + size]
