"""Training-time augmentation: SpecAugment masks and mixup act on a batch as documented, and nothing else."""

from __future__ import annotations

import numpy as np
import torch

from genre_ray.augment import BatchAugment, mixup, spec_augment


def test_spec_augment_masks_whole_bands_only():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 40, 60) + 1.0  # strictly positive: masked cells are exactly the zeros
    out = spec_augment(x, freq_masks=2, freq_max=0.2, time_masks=2, time_max=0.2)
    assert out.shape == x.shape
    zero = out == 0
    assert zero.any(), "no mask was applied"
    for img in zero[:, 0]:
        rows = img.all(dim=1)  # fully masked frequency bands
        cols = img.all(dim=0)  # fully masked time bands
        # every zero lies in a fully masked row or column — masks are bands, not speckles
        assert torch.equal(img, rows[:, None] | cols[None, :])
        assert rows.sum() <= 2 * 8 and cols.sum() <= 2 * 12  # at most masks × max width
    kept = ~zero
    assert torch.equal(out[kept], x[kept])


def _bands(out):
    """Per image: (fully masked rows, fully masked columns) of a strictly positive batch after masking."""
    zero = out[:, 0] == 0
    return zero.all(dim=2).sum(dim=1), zero.all(dim=1).sum(dim=1)


def test_spec_augment_time_masks_alone_mask_columns():
    """Time masks are applied on their own (no frequency mask asked for): vertical bands, no horizontal one."""
    torch.manual_seed(1)
    x = torch.rand(16, 1, 40, 60) + 1.0
    out = spec_augment(x, freq_masks=0, freq_max=0.2, time_masks=2, time_max=0.2)
    rows, cols = _bands(out)
    assert cols.sum() > 0 and rows.sum() == 0
    assert torch.equal(out == 0, (out == 0).all(dim=2, keepdim=True).expand_as(out))  # zeros only in whole columns


def test_spec_augment_applies_every_mask_asked_for():
    """Four masks of at most 10 % each can cover more than one mask's width: all four are drawn, not one."""
    torch.manual_seed(2)
    x = torch.rand(32, 1, 60, 60) + 1.0
    rows, cols = _bands(spec_augment(x, freq_masks=4, freq_max=0.1, time_masks=4, time_max=0.1))
    assert rows.max() <= 24 and cols.max() <= 24
    assert rows.max() > 6 and cols.max() > 6  # one mask is at most round(0.1 × 60) = 6 wide


def test_batch_augment_uses_each_axis_own_width():
    """BatchAugment's freq_max bounds the frequency bands and time_max the time bands (not the other way round)."""
    torch.manual_seed(3)
    x, y = torch.rand(32, 1, 40, 40) + 1.0, torch.zeros(32, dtype=torch.long)
    out, target = BatchAugment(num_classes=2, freq_masks=1, freq_max=0.5, time_masks=1, time_max=0.05)(x, y)
    rows, cols = _bands(out)
    assert target is y
    assert rows.max() <= 20 and cols.max() <= 2
    assert rows.max() > 2  # frequency bands wider than time_max allows


def test_spec_augment_with_zero_masks_is_identity():
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(spec_augment(x, 0, 0.2, 0, 0.2), x)
    aug = BatchAugment(num_classes=3)
    assert not aug.active
    y = torch.tensor([0, 1, 2, 1])
    x2, t = aug(x, y)
    assert x2 is x and t is y


def test_mixup_mixes_images_and_labels_with_one_lambda():
    np.random.seed(0)
    torch.manual_seed(0)
    x = torch.stack([torch.full((1, 4, 4), float(i)) for i in range(8)])
    y = torch.arange(8) % 4
    xm, target = mixup(x, y, num_classes=4, alpha=0.4)
    assert target.shape == (8, 4)
    torch.testing.assert_close(target.sum(dim=1), torch.ones(8))
    # one λ for the batch: every mixed image is λ·x_i + (1-λ)·x_j for some j, its target λ·e(y_i) + (1-λ)·e(y_j)
    v = xm[:, 0, 0, 0].double()
    assert torch.equal(xm, v.float()[:, None, None, None].expand_as(xm))
    i0 = next(i for i in range(8) if abs(v[i] - i) > 1e-6)
    candidates = [(v[i0] - j) / (i0 - j) for j in range(8) if j != i0]
    eye = torch.eye(4, dtype=torch.float64)

    def explained(lam):
        return all(any(abs(lam * i + (1 - lam) * j - v[i]) < 1e-5 and
                       torch.allclose(target[i].double(), lam * eye[y[i]] + (1 - lam) * eye[y[j]], atol=1e-5)
                       for j in range(8)) for i in range(8))

    assert any(0 < lam < 1 and explained(lam) for lam in candidates)
    x_same, t_same = mixup(x, y, num_classes=4, alpha=0.0)
    assert torch.equal(x_same, x) and torch.equal(t_same.argmax(1), y)


def test_batch_augment_with_mixup_returns_soft_targets_usable_by_cross_entropy():
    aug = BatchAugment(num_classes=3, freq_masks=1, time_masks=1, mixup_alpha=0.2)
    x, y = torch.rand(6, 1, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    xa, target = aug(x, y)
    assert xa.shape == x.shape and target.shape == (6, 3)
    loss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(torch.randn(6, 3), target)
    assert torch.isfinite(loss)
