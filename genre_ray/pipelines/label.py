"""Ray Data ``label``: a library of audio files → sliding windows → model in an actor pool → per-track
probabilities → Parquet, one row per input file (unreadable files become ``status="error"`` rows).

Pipeline: list files (driver) → ``map(featurize)`` in CPU tasks (decode + windows + images once per track)
→ ``map_batches(Classifier, compute=ActorPoolStrategy)`` (batched inference, GPU when asked) →
``write_parquet``. Output: ``OUT/labels/*.parquet`` (schema in the README), ``OUT/config.yaml``,
``OUT/summary.json``.
"""

from __future__ import annotations

import glob
import json
import shutil
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import ray
import torch

from genre_ray import tracking
from genre_ray.bundle import load_bundle
from genre_ray.catalog import is_audio_file, list_audio_files
from genre_ray.config import LabelConfig
from genre_ray.features import FeatureConfig
from genre_ray.inference import STATUS_OK, featurize_track, label_row
from genre_ray.pipelines.common import announce, init_ray
from genre_ray.training import predict_probs


def list_inputs(spec: str) -> list[str]:
    """A folder (recursive, symlink loops never followed), a glob, or a CSV/Parquet manifest with a ``path`` column."""
    p = Path(spec).expanduser()
    if p.is_dir():
        files = [str(f) for f in list_audio_files(p)]
    elif p.is_file() and p.suffix.lower() in (".csv", ".parquet", ".pq"):
        df = pd.read_parquet(p) if p.suffix.lower() != ".csv" else pd.read_csv(p)
        if "path" not in df.columns:
            raise ValueError(f"{p}: manifest needs a 'path' column (has {list(df.columns)})")
        files = [str(x) if Path(str(x)).is_absolute() or "://" in str(x) else str(p.parent / str(x)) for x in df["path"]]
    elif p.is_file():
        files = [str(p)]
    else:
        files = sorted(f for f in glob.glob(spec, recursive=True) if Path(f).is_file() and is_audio_file(f))
        if not files and not any(ch in spec for ch in "*?["):
            raise FileNotFoundError(f"label input not found: {spec}")
    if not files:
        raise ValueError(f"no audio files found in {spec}")
    return files


def featurize(row: dict[str, Any], features: FeatureConfig, hop_s: float | None) -> dict[str, Any]:
    t = featurize_track(row["path"], features, hop_s)
    return {"path": t.path, "duration_s": t.duration_s, "status": t.status, "error": t.error, "images": t.images}


class Classifier:
    """Actor: loads the bundle once, classifies every window of a batch of tracks, aggregates per track."""

    def __init__(self, model_uri: str, batch_size: int, how: str, k: int, use_gpu: bool):
        self.bundle = load_bundle(model_uri)
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.model = self.bundle.build_model().to(self.device)
        self.batch_size, self.how, self.k = batch_size, how, k
        self.extra = {"model_name": self.bundle.model_name, "model_uri": model_uri,
                      "feature_hash": self.bundle.features.hash()}

    def __call__(self, batch: dict[str, np.ndarray]) -> pd.DataFrame:
        rows = []
        for i in range(len(batch["path"])):
            images, status = batch["images"][i], str(batch["status"][i])
            probs = predict_probs(self.model, np.asarray(images), self.device, self.batch_size) \
                if status == STATUS_OK and len(images) else None
            rows.append(label_row(str(batch["path"][i]), float(batch["duration_s"][i]), status, str(batch["error"][i]),
                                  probs, self.bundle.classes, self.how, self.k, self.extra))
        return pd.DataFrame(rows)


def run_label(cfg: LabelConfig) -> dict[str, Any]:
    announce("label", cfg)
    t0 = time.time()
    files = list_inputs(cfg.input)
    bundle = load_bundle(cfg.model)  # fail before any work if the model cannot be loaded
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    tracking.setup(cfg.experiment)
    init_ray(cfg.ray)

    labels_dir = out / "labels"
    if labels_dir.exists():
        shutil.rmtree(labels_dir)
    n_blocks = max(1, min(len(files), int(ray.available_resources().get("CPU", 1)) * 4))
    ds = (ray.data.from_items([{"path": f} for f in files], override_num_blocks=n_blocks)
          .map(featurize, fn_kwargs={"features": bundle.features, "hop_s": cfg.hop_s})
          .map_batches(Classifier, fn_constructor_kwargs={"model_uri": cfg.model, "batch_size": cfg.batch_size,
                                                          "how": cfg.aggregate, "k": cfg.top_k, "use_gpu": cfg.use_gpu},
                       batch_size=4, batch_format="numpy", num_gpus=1 if cfg.use_gpu else 0,
                       compute=ray.data.ActorPoolStrategy(size=cfg.num_actors)))
    ds.write_parquet(str(labels_dir))

    table = pd.read_parquet(labels_dir)
    counts = table["status"].value_counts().to_dict()
    summary = {"files": len(files), "rows": len(table), "status": {k: int(v) for k, v in counts.items()},
               "genres": {k: int(v) for k, v in table["genre"].value_counts().items()},
               "seconds": round(time.time() - t0, 2), "labels": str(labels_dir), "model": cfg.model}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    with mlflow.start_run(run_name="label"):
        mlflow.set_tags({"genre_ray.job": "label"})
        tracking.log_params(cfg.flat())
        mlflow.log_metrics({"files": len(files), "ok": counts.get(STATUS_OK, 0),
                            "errors": len(table) - counts.get(STATUS_OK, 0), "seconds": summary["seconds"]})
        mlflow.log_artifact(str(out / "summary.json"))
        mlflow.log_artifact(str(out / "config.yaml"))
    print(f"labelled {len(table)} files ({summary['status']}) in {summary['seconds']} s → {labels_dir}", flush=True)
    return summary
