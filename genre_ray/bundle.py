"""Model bundle: a folder with ``weights.pt`` (state_dict, loaded ``weights_only=True``) and ``bundle.json``
(model name + kwargs, class names, FeatureConfig, training run id, metrics, and ``calibration``: the fitted
``temperature`` and default ``uncertain_threshold`` — a bundle without it loads with ``T = 1`` and no threshold).
Everything label/predict need, and nothing that executes code when loaded.
"""

from __future__ import annotations

import json
import os
import sys
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
    if _is_mlflow_uri(str(uri)):
        import mlflow

        return Path(mlflow.artifacts.download_artifacts(artifact_uri=str(uri)))
    raise FileNotFoundError(f"model bundle not found: {uri} (give a bundle folder or an MLflow model URI)")


SEARCH_DEPTH = 3
"""How far below a folder without ``bundle.json`` :func:`find_bundle` looks: an MLflow model's download holds its
bundle at ``artifacts/bundle/``, a training run's ``--out`` at ``bundle/``."""


def find_bundle(root: Path, uri: str | Path = "") -> Path:
    """``root`` itself when it holds ``bundle.json``, else the one folder within :data:`SEARCH_DEPTH` levels below
    that does (a note on stderr says which). Several — say ``--model runs`` over ``runs/a/bundle`` and
    ``runs/b/bundle`` — is an error naming them: which model labels a library is never picked by name order."""
    if (root / BUNDLE_JSON).is_file():
        return root
    hits: list[Path] = []
    for here, dirs, files in os.walk(root):
        depth = len(Path(here).relative_to(root).parts)
        if BUNDLE_JSON in files and depth:
            hits.append(Path(here))
        if depth >= SEARCH_DEPTH:
            dirs.clear()
        dirs.sort()
    if not hits:
        raise FileNotFoundError(f"{uri or root}: no {BUNDLE_JSON} in it or up to {SEARCH_DEPTH} folders below; "
                                "not a genre-ray model bundle")
    if len(hits) > 1:
        shown = ", ".join(str(h) for h in hits[:5]) + (f" and {len(hits) - 5} more" if len(hits) > 5 else "")
        raise FileNotFoundError(f"{uri or root}: {len(hits)} model bundles below it ({shown}); give the one to use")
    if str(uri) and not _is_mlflow_uri(str(uri)):  # a download's layout is MLflow's business; a folder's is the user's
        print(f"[model] {uri}: using the bundle in {hits[0]}", file=sys.stderr, flush=True)
    return hits[0]


def _is_mlflow_uri(uri: str) -> bool:
    return "://" in uri or uri.startswith(("runs:/", "models:/"))


def load_bundle(uri: str | Path) -> Bundle:
    folder = find_bundle(_resolve(uri), uri)
    doc = json.loads((folder / BUNDLE_JSON).read_text())
    state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    return Bundle(model_name=doc["model_name"], model_kwargs=doc.get("model_kwargs", {}), classes=doc["classes"],
                  features=FeatureConfig.from_dict(doc["features"]), meta=doc.get("meta", {}),
                  state_dict=state, uri=str(uri), calibration=doc.get("calibration") or {})
