"""Training-time batch augmentation on spectrogram images — pure torch, no Ray, train split only.

Waveform-level augmentation (additive noise at an SNR, random window offsets) happens when windows are
cut (``genre-ray prepare``); what lives here acts on a batch of images on the training device:

- :func:`spec_augment` — SpecAugment frequency and time masks (Park et al., 2019), per image;
- :func:`mixup` — convex combinations of image pairs and of their one-hot labels (Zhang et al., 2018).

:class:`BatchAugment` bundles them as the one callable the training step applies. Validation, test,
labelling and prediction never see it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _mask(x: torch.Tensor, axis: int, n_masks: int, max_frac: float, fill: float,
          generator: torch.Generator | None) -> torch.Tensor:
    """Zero-to-``max_frac`` wide bands along ``axis`` (2 = frequency, 3 = time) of ``x (B, C, H, W)``."""
    size = x.shape[axis]
    max_w = int(round(max_frac * size))
    if n_masks <= 0 or max_w <= 0:
        return x
    b = x.shape[0]
    pos = torch.arange(size, device=x.device)
    keep = torch.ones(b, size, dtype=torch.bool, device=x.device)
    for _ in range(n_masks):
        w = torch.randint(0, max_w + 1, (b, 1), generator=generator).to(x.device)
        start = (torch.rand(b, 1, generator=generator).to(x.device) * (size - w + 1)).floor().long()
        keep &= ~((pos >= start) & (pos < start + w))
    shape = [b, 1, 1, 1]
    shape[axis] = size
    return torch.where(keep.view(shape), x, torch.full_like(x, fill))


def spec_augment(x: torch.Tensor, freq_masks: int = 2, freq_max: float = 0.15, time_masks: int = 2,
                 time_max: float = 0.15, fill: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment masks on images ``x (B, C, H, W)`` (y = frequency, x = time) → same shape.

    Each image gets ``freq_masks`` horizontal bands of random height ``0..freq_max·H`` and ``time_masks``
    vertical bands of random width ``0..time_max·W``, set to ``fill`` (0 = the floor of the dB range).
    """
    x = _mask(x, 2, freq_masks, freq_max, fill, generator)
    return _mask(x, 3, time_masks, time_max, fill, generator)


def mixup(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup: ``x (B, C, H, W)``, integer labels ``y (B,)`` → mixed images and soft targets ``(B, num_classes)``.

    One ``λ ~ Beta(alpha, alpha)`` per batch, pairs drawn by a random permutation; ``alpha <= 0`` returns
    the batch unchanged with one-hot targets.
    """
    target = torch.nn.functional.one_hot(y.long(), num_classes).to(x.dtype)
    if alpha <= 0 or x.shape[0] < 2:
        return x, target
    lam = float(np.random.beta(alpha, alpha))  # global RNGs: seeded per epoch and rank by the trainer
    perm = torch.randperm(x.shape[0]).to(x.device)
    return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]


@dataclass(frozen=True)
class BatchAugment:
    """The training step's augmentation: SpecAugment masks then (optionally) mixup.

    ``__call__(x (B, C, H, W), y (B,)) → (x', target)`` where ``target`` is ``y`` itself (hard labels) or
    ``(B, num_classes)`` soft labels when mixup is on. All zeros = identity.
    """

    num_classes: int
    freq_masks: int = 0
    freq_max: float = 0.15
    time_masks: int = 0
    time_max: float = 0.15
    mixup_alpha: float = 0.0

    @property
    def active(self) -> bool:
        return self.freq_masks > 0 or self.time_masks > 0 or self.mixup_alpha > 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.freq_masks > 0 or self.time_masks > 0:
            x = spec_augment(x, self.freq_masks, self.freq_max, self.time_masks, self.time_max)
        if self.mixup_alpha > 0:
            return mixup(x, y, self.num_classes, self.mixup_alpha)
        return x, y
