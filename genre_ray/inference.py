"""Sliding-window inference for one track — pure functions shared by the label job (inside Ray tasks and
actors) and ``genre-ray predict`` (in-process). No Ray here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from genre_ray import audio
from genre_ray.evaluate import aggregate_track, top_k
from genre_ray.features import FeatureConfig, images_from_frames
from genre_ray.training import predict_probs

STATUS_OK, STATUS_ERROR = "ok", "error"


@dataclass
class TrackImages:
    """One track cut into windows: ``images (n, 1, H, W)`` float16, ``starts_s (n,)``; ``n == 0`` on error."""

    path: str
    duration_s: float
    images: np.ndarray
    starts_s: np.ndarray
    status: str
    error: str = ""


def featurize_track(path: str | Path, features: FeatureConfig, hop_s: float | None = None) -> TrackImages:
    """Decode ``path`` and turn it into window images; errors become a ``status="error"`` result, never raise.

    A track shorter than one window is zero-padded to one window (noted in ``error``, status stays ok).
    """
    path = str(path)
    empty = np.zeros((0, *features.image_shape), np.float16)
    try:
        wave = audio.decode(path, features.sample_rate)
        duration = wave.shape[0] / features.sample_rate
        if not np.any(wave):
            return TrackImages(path, duration, empty, np.zeros(0), STATUS_ERROR, "silent: every sample is zero")
        hop = hop_s or features.hop_s
        win = audio.frame(wave, features.sample_rate, features.window_s, hop)
        note = ""
        if win.frames.shape[0] == 0:
            win = audio.frame(wave, features.sample_rate, features.window_s, hop, pad_last=True)
            note = f"padded: {duration:.2f} s is shorter than one {features.window_s} s window"
        return TrackImages(path, duration, images_from_frames(win.frames, features), win.starts_s, STATUS_OK, note)
    except Exception as exc:  # an unreadable file is a row with a reason, not a crash
        return TrackImages(path, 0.0, empty, np.zeros(0), STATUS_ERROR, f"{type(exc).__name__}: {exc}")


def label_row(path: str, duration_s: float, status: str, error: str, window_probs: np.ndarray | None,
              classes: Sequence[str], how: str, k: int, extra: dict[str, Any]) -> dict[str, Any]:
    """Build one labels row from a track's ``(n, C)`` window probabilities (None/empty on error)."""
    row: dict[str, Any] = {"path": path, "duration_s": float(duration_s), "n_windows": 0, "genre": None,
                           "confidence": float("nan"), "top_k_genres": [], "top_k_probs": [],
                           **{f"p_{c}": float("nan") for c in classes}, **extra, "status": status, "error": error}
    if status == STATUS_OK and window_probs is not None and len(window_probs):
        probs = aggregate_track(window_probs, how)
        best = top_k(probs[None], classes, min(k, len(classes)))[0]
        row.update({"n_windows": int(len(window_probs)), "genre": best[0][0], "confidence": best[0][1],
                    "top_k_genres": [g for g, _ in best], "top_k_probs": [p for _, p in best],
                    **{f"p_{c}": float(probs[i]) for i, c in enumerate(classes)}})
    return row


def predict_file(model: nn.Module, path: str | Path, features: FeatureConfig, classes: Sequence[str],
                 hop_s: float | None = None, how: str = "mean", k: int = 3, device: torch.device | None = None,
                 batch_size: int = 64) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Label one file in-process → ``(labels row, window_probs (n, C), starts_s (n,))``."""
    device = device or torch.device("cpu")
    t = featurize_track(path, features, hop_s)
    probs = predict_probs(model.to(device), t.images, device, batch_size) if len(t.images) else np.zeros((0, len(classes)))
    return label_row(t.path, t.duration_s, t.status, t.error, probs, classes, how, k, {}), probs, t.starts_s
