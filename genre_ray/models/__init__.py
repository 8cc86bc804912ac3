"""Model registry: ``create_model(name, num_classes, in_chans=1, **kwargs)``.

Models know nothing of Ray or ``torch.distributed``; each module registers its factories with
:func:`register_model`. Every model maps ``(B, in_chans, H, W)`` images to ``(B, num_classes)`` logits, and exposes
the two halves of that map: ``embed(x) -> (B, embedding_dim)`` (pooled penultimate features) and
``classify(e) -> (B, num_classes)``, with ``forward(x) == classify(embed(x))``.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from genre_ray.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
register_model = MODELS.register


def create_model(name: str, num_classes: int, in_chans: int = 1, **kwargs) -> nn.Module:
    """Build a registered model; unknown names raise ``ValueError`` listing the known ones."""
    factory = MODELS.lookup(name)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (got {num_classes})")
    return factory(num_classes=num_classes, in_chans=in_chans, **kwargs)


from genre_ray.models import homebrew, resnet  # noqa: E402,F401  (registration side effects)
