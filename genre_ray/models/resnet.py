"""torchvision ResNet18 adapted to 1-channel spectrogram images.

ImageNet weights come only from a local file (``pretrained=PATH``, a torchvision state_dict such as
``resnet18-f37072fd.pth``, loaded with ``weights_only=True``; ``pretrained="auto"`` looks in torchvision's
cache directory) — nothing is downloaded. The RGB ``conv1``
becomes a ``in_chans``-channel conv by summing its filters over the colour axis (for ``in_chans=1``,
exactly what a grey image replicated to RGB would see). ``freeze_backbone=True`` gives the report's
"fixed features" setting: only the new ``fc`` head trains.

``imagenet_norm=True`` (what training sets whenever ImageNet weights are loaded) standardises the ``[0, 1]``
images as those weights were trained to see them: ``(x - 0.449) / 0.226``, the mean of ImageNet's per-channel
means and standard deviations (the usual grey-image convention). Unnormalised, the spectrograms (mean ≈ 0.55,
std ≈ 0.15) reach the frozen ImageNet BatchNorm statistics of "fixed features" far from where they were measured.
The flag is kept in the bundle's model kwargs, so labelling normalises alike; models trained before it load
without it, unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from genre_ray.models.factory import register_model

log = logging.getLogger(__name__)


def _adapt_conv1(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """``(64, 3, 7, 7)`` RGB filters → ``(64, in_chans, 7, 7)`` (sum for 1 channel, tiled + rescaled else)."""
    if in_chans == 3:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_chans // 3)
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (3.0 / in_chans)


IMAGENET_GREY_MEAN, IMAGENET_GREY_STD = 0.449, 0.226
"""Means of torchvision's ImageNet normalisation (mean 0.485/0.456/0.406, std 0.229/0.224/0.225) over RGB."""

TORCHVISION_FILE = "resnet18-f37072fd.pth"  # the name torchvision's ResNet18_Weights.IMAGENET1K_V1 caches under


def resolve_pretrained(spec: str | None) -> str | None:
    """``None`` → None; ``"auto"`` → torchvision's cached ImageNet file (``$TORCH_HOME/hub/checkpoints``) if it
    is there, else None (train from scratch, logged); anything else → that path, unchanged."""
    if spec != "auto":
        return spec
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE
    if cached.is_file():
        return str(cached)
    log.warning("resnet18: pretrained=auto but %s is not there; training from scratch (nothing is downloaded)",
                cached)
    return None


def load_pretrained_state(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights not found at {path}; give a local torchvision resnet18 state_dict "
            "(nothing is downloaded at run time) or omit --pretrained to train from scratch"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a file that is not what it should be
        if "Unsupported global" in str(exc):  # a real pickle naming classes or functions
            raise ValueError(f"{path} holds Python objects besides tensors (classes, code); refused: weights are "
                             "loaded with weights_only=True, so nothing in a file is ever executed — save the "
                             "model's state_dict() alone") from None
        raise ValueError(f"{path} is not a PyTorch weights file (torch.load failed: {type(exc).__name__}); give a "
                         "torchvision resnet18 state_dict saved with torch.save") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is a PyTorch file but not a state_dict of tensors ({type(state).__name__})")
    return state


class ResNet18Audio(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 1, pretrained: str | None = None,
                 freeze_backbone: bool = False, dropout: float = 0.0, imagenet_norm: bool = False):
        super().__init__()
        self.imagenet_norm = imagenet_norm
        from torchvision.models import resnet18 as tv_resnet18  # here: importing torchvision costs ~1.7 s

        net = tv_resnet18(weights=None)
        pretrained = resolve_pretrained(pretrained)
        if pretrained:
            state = load_pretrained_state(pretrained)
            missing, unexpected = net.load_state_dict(state, strict=False)
            if unexpected or [k for k in missing if not k.startswith("fc.")]:
                raise ValueError(f"{pretrained}: not a resnet18 state_dict (missing={missing[:5]}, unexpected={unexpected[:5]})")
            log.info("resnet18: loaded ImageNet weights from %s", pretrained)
        else:
            log.debug("resnet18: no pretrained weights; random initialisation (or weights loaded later)")
        conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        with torch.no_grad():
            conv1.weight.copy_(_adapt_conv1(net.conv1.weight.data, in_chans))
        net.conv1 = conv1
        self.embedding_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.backbone = net
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.embedding_dim, num_classes)
        if freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        self.freeze_backbone = freeze_backbone

    def train(self, mode: bool = True) -> "ResNet18Audio":
        super().train(mode)
        if self.freeze_backbone:  # fixed features: BatchNorm statistics stay frozen too
            self.backbone.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → pooled penultimate features ``(B, 512)``."""
        if self.imagenet_norm:
            x = (x - IMAGENET_GREY_MEAN) / IMAGENET_GREY_STD
        return self.backbone(x)

    def classify(self, e: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, 512)`` → logits ``(B, num_classes)``."""
        return self.classifier(self.dropout(e))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))


@register_model("resnet18")
def resnet18(num_classes: int, in_chans: int = 1, **kwargs) -> ResNet18Audio:
    return ResNet18Audio(num_classes=num_classes, in_chans=in_chans, **kwargs)
