"""Model registry: ``create_model(name, num_classes, in_chans=1, **kwargs)``.

Models know nothing of Ray or ``torch.distributed``; each module registers its factories with
:func:`register_model`. Every model maps ``(B, in_chans, H, W)`` images to ``(B, num_classes)`` logits.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = fn
        return fn

    return deco


def create_model(name: str, num_classes: int, in_chans: int = 1, **kwargs) -> nn.Module:
    """Build a registered model; unknown names raise ``ValueError`` listing the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (got {num_classes})")
    return MODELS[name](num_classes=num_classes, in_chans=in_chans, **kwargs)


from genre_ray.models import homebrew, resnet  # noqa: E402,F401  (registration side effects)
