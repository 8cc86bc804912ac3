"""Model registry: ``create_model(name, num_classes, in_chans=1, **kwargs)``.

Models know nothing of Ray or ``torch.distributed``; each module registers its factories with
:func:`register_model`. Every model maps ``(B, in_chans, H, W)`` images to ``(B, num_classes)`` logits, and exposes
the two halves of that map: ``embed(x) -> (B, embedding_dim)`` (pooled penultimate features) and
``classify(e) -> (B, num_classes)``, with ``forward(x) == classify(embed(x))``.
"""

from genre_ray.models import homebrew, resnet  # noqa: F401  (each registers its factories)
from genre_ray.models.factory import MODELS, create_model, register_model

__all__ = ["MODELS", "create_model", "register_model"]
