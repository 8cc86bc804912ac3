"""The original report's "homebrew" CNN, with every size a parameter so a sweep can vary it.

``(B, in_chans, H, W)`` → 4 × [Conv(k, same padding) → BatchNorm → LeakyReLU(0.2) → MaxPool(2) →
Dropout(p_conv)] → flatten → Dense(364) → LeakyReLU(0.2) → Dropout(p) → Dense(182) → LeakyReLU(0.2) →
Dropout(p) → Dense(num_classes), ``p_conv = conv_dropout`` (default: ``dropout``, as in the report — dropout before the
next block's BatchNorm shifts its statistics between train and eval, so small runs train better with a lower
``conv_dropout``). With 216×216 inputs the feature map after four pools is 13×13.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from genre_ray.models.factory import register_model


class HomebrewCNN(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_chans: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128),
        kernel_sizes: Sequence[int] | int = 3,
        dropout: float = 0.5,
        conv_dropout: float | None = None,
        dense: Sequence[int] = (364, 182),
        input_size: tuple[int, int] = (216, 216),
        global_pool: bool = False,
    ):
        super().__init__()
        if isinstance(kernel_sizes, int):
            kernel_sizes = [kernel_sizes] * len(channels)
        if len(kernel_sizes) != len(channels):
            raise ValueError(f"kernel_sizes ({len(kernel_sizes)}) must match channels ({len(channels)})")
        conv_dropout = dropout if conv_dropout is None else conv_dropout
        if not (0.0 <= dropout < 1.0 and 0.0 <= conv_dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1) (got {dropout}, conv_dropout={conv_dropout})")
        blocks: list[nn.Module] = []
        prev = in_chans
        for width, k in zip(channels, kernel_sizes):
            blocks += [
                nn.Conv2d(prev, width, k, padding=k // 2, bias=False),
                nn.BatchNorm2d(width),
                nn.LeakyReLU(0.2, inplace=True),
                nn.MaxPool2d(2),
                nn.Dropout(conv_dropout),
            ]
            prev = width
        self.features = nn.Sequential(*blocks)
        h, w = input_size
        for _ in channels:
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"input {input_size} too small for {len(channels)} pooling blocks")
        self.pool = nn.AdaptiveAvgPool2d(1) if global_pool else nn.Identity()
        flat = prev if global_pool else prev * h * w
        head: list[nn.Module] = [nn.Flatten()]
        for d in dense:
            head += [nn.Linear(flat, d), nn.LeakyReLU(0.2, inplace=True), nn.Dropout(dropout)]
            flat = d
        self.head = nn.Sequential(*head)
        self.classifier = nn.Linear(flat, num_classes)
        self.embedding_dim = flat

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → penultimate features ``(B, embedding_dim)``."""
        return self.head(self.pool(self.features(x)))

    def classify(self, e: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, embedding_dim)`` → logits ``(B, num_classes)``."""
        return self.classifier(e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))


@register_model("homebrew")
def homebrew(num_classes: int, in_chans: int = 1, **kwargs) -> HomebrewCNN:
    return HomebrewCNN(num_classes=num_classes, in_chans=in_chans, **kwargs)
