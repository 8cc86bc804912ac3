"""The model registry itself (:data:`MODELS`, :func:`register_model`, :func:`create_model`): the model modules
import it from here, and :mod:`genre_ray.models` imports them — registration without an import cycle."""

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
