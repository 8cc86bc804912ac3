"""After training (driver side): fit temperature scaling and the default "uncertain" threshold on the validation
split's per-track probabilities (:mod:`genre_ray.calibration`), log ECE/NLL before and after and a reliability
diagram to the active MLflow run, and return what the model bundle stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from torch import nn

from genre_ray.calibration import calibrate, plot_reliability, track_probs
from genre_ray.evaluate import expected_calibration_error, window_logits
from genre_ray.pipelines.evaluate import split_batches


def split_logits(model: nn.Module, prepared: str | Path, split: str,
                 batch_size: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window logits of a prepared split (read with pyarrow, on the GPU when there is one) →
    ``(logits (N, C) float32, labels (N,), track_ids (N,))``."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return window_logits(model, split_batches(prepared, split, batch_size), device)


Logits = tuple[np.ndarray, np.ndarray, np.ndarray]
"""A split's :func:`split_logits`: ``(logits (N, C), labels (N,), track_ids (N,))``."""


def calibrate_and_log(val: Logits, how: str, out: Path, test: Logits | None = None) -> dict[str, Any]:
    """Fit on ``val``'s window logits; log ``temperature``, ``uncertain_threshold``,
    ``val_track_ece_{uncalibrated,calibrated}``, ``val_track_nll_{…}``, ``val_errors_flagged``, ``val_tracks_flagged``
    (and ``test_track_ece_{…}`` with ``test``) and ``plots/reliability_val.png`` to the active MLflow run → the
    bundle's ``calibration`` dict."""
    logits, labels, ids = val
    cal, before, after, track_labels = calibrate(logits, ids, labels, how)
    doc = cal.to_dict()
    metrics = {"temperature": cal.temperature, "uncertain_threshold": cal.uncertain_threshold,
               "val_track_ece_uncalibrated": cal.ece_before, "val_track_ece_calibrated": cal.ece_after,
               "val_track_nll_uncalibrated": cal.nll_before, "val_track_nll_calibrated": cal.nll_after,
               "val_tracks_flagged": cal.tracks_flagged}
    if not np.isnan(cal.errors_flagged):
        metrics["val_errors_flagged"] = cal.errors_flagged
    if test is not None and len(test[1]):
        t_logits, t_labels, t_ids = test
        tid, t_before = track_probs(t_logits, t_ids, 1.0, how)
        _, t_after = track_probs(t_logits, t_ids, cal.temperature, how)
        first = dict(zip(t_ids.tolist(), t_labels.tolist()))
        y = np.array([first[t] for t in tid.tolist()], int)
        doc["test_ece_before"] = expected_calibration_error(t_before, y)
        doc["test_ece_after"] = expected_calibration_error(t_after, y)
        metrics.update({"test_track_ece_uncalibrated": doc["test_ece_before"],
                        "test_track_ece_calibrated": doc["test_ece_after"]})
    mlflow.log_metrics(metrics)
    png = plot_reliability(before, after, track_labels, cal.temperature, out / "reliability_val.png")
    mlflow.log_artifact(str(png), artifact_path="plots")
    if cal.note != "fitted":
        mlflow.set_tag("genre_ray.calibration", cal.note)
        print(f"calibration {cal.note}: T = 1 and the uncertain threshold {cal.uncertain_threshold:.3g} kept", flush=True)
    print(f"calibration: temperature {cal.temperature:.4g} on {cal.n_tracks} validation tracks; per-track ECE "
          f"{cal.ece_before:.4f} → {cal.ece_after:.4f}, NLL {cal.nll_before:.4f} → {cal.nll_after:.4f}"
          + (f"; test ECE {doc['test_ece_before']:.4f} → {doc['test_ece_after']:.4f}" if "test_ece_after" in doc else "")
          + f"; uncertain below {cal.uncertain_threshold:.3g}", flush=True)
    return doc
