"""Model bundle: a folder with ``weights.pt`` (state_dict, loaded ``weights_only=True``) and ``bundle.json``
(model name + kwargs, class names, FeatureConfig, training run id, metrics, and ``calibration``: the fitted
``temperature`` and default ``uncertain_threshold`` — a bundle without it loads with ``T = 1`` and no threshold).
Everything label/predict need, and nothing that executes code when loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genre_ray import atomic
from genre_ray.features import FeatureConfig
from genre_ray.models import create_model

BUNDLE_JSON = "bundle.json"
WEIGHTS = "weights.pt"


@dataclass
class Bundle:
    model_name: str
    model_kwargs: dict[str, Any]
    classes: list[str]
    features: FeatureConfig
    meta: dict[str, Any] = field(default_factory=dict)
    state_dict: dict[str, torch.Tensor] | None = None
    uri: str = ""
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def temperature(self) -> float:
        """Temperature scaling of the logits (``softmax(z / T)``); 1.0 for an uncalibrated bundle."""
        return float(self.calibration.get("temperature", 1.0))

    @property
    def aggregate(self) -> str:
        """How the model's windows make a track verdict, as trained and calibrated (``mean`` for older bundles)."""
        return str(self.meta.get("aggregate") or self.calibration.get("aggregate") or "mean")

    @property
    def uncertain_threshold(self) -> float | None:
        """Default calibrated top-1 probability below which a track is "uncertain" (None: not calibrated)."""
        t = self.calibration.get("uncertain_threshold")
        return None if t is None else float(t)

    def build_model(self) -> nn.Module:
        """Instantiate the model (never with pretrained-weight loading) and load the bundle's weights."""
        kwargs = {k: v for k, v in self.model_kwargs.items() if k != "pretrained"}
        model = create_model(self.model_name, num_classes=len(self.classes), **kwargs)
        if self.state_dict is not None:
            model.load_state_dict(self.state_dict)
        return model.eval()


def save_bundle(out_dir: str | Path, model: nn.Module, model_name: str, model_kwargs: dict, classes: list[str],
                features: FeatureConfig, meta: dict | None = None, calibration: dict | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}  # any memory format in
    with atomic.atomic_path(out / WEIGHTS) as tmp:
        torch.save(state, tmp)
    doc = {"model_name": model_name, "model_kwargs": model_kwargs, "classes": list(classes),
           "features": features.to_dict(), "feature_hash": features.hash(), "meta": meta or {}}
    if calibration:
        doc["calibration"] = calibration
    atomic.write_json(out / BUNDLE_JSON, doc, default=str)  # last: a bundle without it is incomplete
    return out


def _resolve(uri: str | Path) -> Path:
    """A local folder as is; an MLflow URI (runs:/, models:/, mlflow-artifacts:/) downloaded first."""
    p = Path(str(uri)).expanduser()
    if p.exists():
        return p
    if "://" in str(uri) or str(uri).startswith(("runs:/", "models:/")):
        import mlflow

        return Path(mlflow.artifacts.download_artifacts(artifact_uri=str(uri)))
    raise FileNotFoundError(f"model bundle not found: {uri} (give a bundle folder or an MLflow model URI)")


def load_bundle(uri: str | Path) -> Bundle:
    root = _resolve(uri)
    hits = [root / BUNDLE_JSON] if (root / BUNDLE_JSON).is_file() else sorted(root.rglob(BUNDLE_JSON))
    if not hits:
        raise FileNotFoundError(f"{uri}: no {BUNDLE_JSON} inside; not a genre-ray model bundle")
    folder = hits[0].parent
    doc = json.loads(hits[0].read_text())
    state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    return Bundle(model_name=doc["model_name"], model_kwargs=doc.get("model_kwargs", {}), classes=doc["classes"],
                  features=FeatureConfig.from_dict(doc["features"]), meta=doc.get("meta", {}),
                  state_dict=state, uri=str(uri), calibration=doc.get("calibration") or {})
