"""``genre-ray evaluate``: a trained model (bundle folder or MLflow URI) scored on a split of prepared data —
per-window and per-track accuracy, macro-F1, ECE, per-class precision/recall, confusion matrices — printed, saved
(``OUT/results.json``, ``OUT/confusion_<split>_track.png``) and logged as an MLflow run. No Ray cluster: one process reads
the split's Parquet windows in batches (a test split is thousands of windows, not millions), on a GPU if there is one.

The probabilities are the label job's: ``softmax(logits / T)`` with the bundle's calibration temperature, windows
aggregated per track with the bundle's ``aggregate`` (as trained) unless the config names one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from genre_ray.tracking import model_version
from genre_ray import atomic, preflight, tracking
from genre_ray.config import ConfigError, EvaluateConfig, absolute_paths
from genre_ray.evaluate import per_class_metrics, plot_confusion, score_logits, track_predictions, window_logits
from genre_ray.pipelines.common import announce, check_job_outputs
from genre_ray.pipelines.prepare import split_dir


def split_batches(prepared: str | Path, split: str, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(images (B, 1, H, W) float16, labels (B,), track_ids (B,))`` of one prepared split, read with pyarrow: the
    track's own windows only — the train split's augmented copies (noisy, offset) are not what a library holds."""
    import pyarrow.dataset as pds
    import ray.data  # noqa: F401 - registers Ray's Arrow tensor type, the image column's (no Ray is started)

    ds = pds.dataset(str(split_dir(prepared, split)), format="parquet")
    clean = ~pds.field("augmented") if "augmented" in ds.schema.names else None
    for b in ds.to_batches(columns=["image", "label_idx", "track_id"], filter=clean, batch_size=batch_size):
        if b.num_rows:
            yield (b.column("image").to_numpy_ndarray(), b.column("label_idx").to_numpy(),
                   b.column("track_id").to_numpy(zero_copy_only=False))


def run_evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    import mlflow
    import pandas as pd
    import torch

    from genre_ray.provenance import dataset_fingerprint, git_commit, versions

    check_job_outputs(cfg, "out")
    cfg = absolute_paths(cfg, "data", "out", if_exists=("model",))  # as logged and saved
    announce("evaluate", cfg)
    meta = preflight.prepared_data(cfg.data)
    if meta["windows"].get(cfg.split, 0) == 0:
        raise ConfigError(f"data={cfg.data} has no {cfg.split} windows ({meta['windows']})")
    local = Path(cfg.model).expanduser().exists()
    preflight.model_store(cfg.model)  # a models:/ URI and no store to read it from: said before setup creates one
    bundle = preflight.label_model(cfg.model) if local else None  # a local bundle: checked before MLflow
    tracking.setup(cfg.experiment)
    bundle = bundle or preflight.label_model(cfg.model)
    if bundle.features.hash() != meta["feature_hash"]:
        raise ConfigError(f"model={cfg.model} was trained on other images (feature hash {bundle.features.hash()}) "
                          f"than data={cfg.data} holds ({meta['feature_hash']}): prepare the data with the model's "
                          "features")
    if list(bundle.classes) != list(meta["classes"]):
        raise ConfigError(f"model={cfg.model} knows the classes {bundle.classes}, data={cfg.data} has "
                          f"{meta['classes']}")
    how = cfg.aggregate or bundle.aggregate
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    logits, labels, ids = window_logits(bundle.build_model(), split_batches(cfg.data, cfg.split, cfg.batch_size), device)
    if not len(labels):
        raise ConfigError(f"data={cfg.data}: no {cfg.split} windows to score")
    result = score_logits(logits, labels, ids, bundle.classes, how, bundle.temperature)
    tracks = pd.read_parquet(Path(cfg.data) / "tracks.parquet")
    verdicts = track_predictions(logits, labels, ids, bundle.classes, how, bundle.temperature)
    verdicts = (tracks[["track_id", "rel_path"]].merge(verdicts, on="track_id", how="right")
                .sort_values(["correct", "confidence"], ascending=[True, False], ignore_index=True))
    report = {"model": cfg.model, "data": cfg.data, "split": cfg.split, "aggregate": how,
              "temperature": bundle.temperature, "dataset_fingerprint": dataset_fingerprint(tracks, meta["feature_hash"]),
              "trained_on": bundle.meta.get("dataset_fingerprint"), "model_version_resolved": model_version(cfg.model),
              "model_run_id": bundle.meta.get("run_id", ""), **result}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(cfg.out) if cfg.out else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.yaml")
        atomic.write_json(out / "results.json", report)
        with atomic.atomic_path(out / "predictions.csv") as tmp_csv:  # wrong first, most confident first
            verdicts.to_csv(tmp_csv, index=False)
        png = plot_confusion(result["track"]["confusion"], bundle.classes, out / f"confusion_{cfg.split}_track.png",
                             f"{cfg.split} per-track confusion ({bundle.model_name})")
        with mlflow.start_run(run_name=f"evaluate {cfg.split} {Path(cfg.data).name}") as run:
            mlflow.set_tags({"genre_ray.job": "evaluate", "git_commit": git_commit(),
                             "dataset_fingerprint": report["dataset_fingerprint"],
                             "same_split_as_training": str(report["trained_on"] == report["dataset_fingerprint"]).lower(),
                             **{f"version.{k}": v for k, v in versions().items()}})
            tracking.log_params({**cfg.flat(), "aggregate_used": how, "temperature": bundle.temperature,
                                 "model_version_resolved": report["model_version_resolved"],
                                 "model_run_id": report["model_run_id"]})  # what @champion meant then
            for level in ("window", "track"):
                m = result[level]
                mlflow.log_metrics({f"{cfg.split}_{level}_accuracy": m["accuracy"],
                                    f"{cfg.split}_{level}_macro_f1": m["macro_f1"], f"{cfg.split}_{level}_ece": m["ece"],
                                    f"{cfg.split}_{level}_n": m["n"]})
            mlflow.log_metrics(per_class_metrics(f"{cfg.split}_track", result["track"]["per_class"]))
            for f in (out / "config.yaml", out / "results.json", out / "predictions.csv"):
                mlflow.log_artifact(str(f))
            mlflow.log_artifact(str(png), artifact_path="plots")
            report["run_id"] = run.info.run_id
        atomic.write_json(out / "results.json", report)
    _print(report)
    return report


def _print(r: dict[str, Any]) -> None:
    w, t = r["window"], r["track"]
    same = "" if r["trained_on"] in (None, r["dataset_fingerprint"]) else (
        "note: the model was trained on other data or another split of it (dataset fingerprints differ): make sure "
        "none of these tracks was among its training tracks\n")
    per_class = ", ".join(f"{c} {'n/a (no track)' if pc['recall'] is None else format(pc['recall'], '.2f')}"
                          for c, pc in t["per_class"].items())
    print(f"== genre-ray evaluate: {r['split']} ==\n"
          f"tracks:   {t['n']}  accuracy {t['accuracy']:.4f}  macro-F1 {t['macro_f1']:.4f}  ECE {t['ece']:.4f} "
          f"(windows aggregated: {r['aggregate']}, T = {r['temperature']:.3g})\n"
          f"windows:  {w['n']}  accuracy {w['accuracy']:.4f}  macro-F1 {w['macro_f1']:.4f}\n"
          f"recall per genre (tracks): {per_class}\n{same}"
          f"MLflow run {r['run_id']}", flush=True)
