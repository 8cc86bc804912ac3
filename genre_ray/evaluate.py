"""Windows → track verdicts, and the metrics computed on them.

:func:`aggregate` is the one function that turns per-window probabilities into per-track ones; the
trainer's per-track evaluation and the label job both call it. No Ray here.
"""

from __future__ import annotations

import re

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from genre_ray import atomic
from genre_ray.registry import Registry

if TYPE_CHECKING:
    import pandas as pd
    import torch

Aggregator = Callable[[np.ndarray], np.ndarray]
"""``(n_windows, C)`` probabilities of one track → ``(C,)`` probabilities summing to 1."""

AGGREGATORS: Registry[Aggregator] = Registry("aggregation")
register_aggregator = AGGREGATORS.register


@register_aggregator("mean")
def _mean(p: np.ndarray) -> np.ndarray:
    return p.mean(axis=0)


@register_aggregator("logmean")
def _logmean(p: np.ndarray) -> np.ndarray:
    logp = np.log(np.clip(p, 1e-12, 1.0)).mean(axis=0)
    e = np.exp(logp - logp.max())
    return e / e.sum()


@register_aggregator("vote")
def _vote(p: np.ndarray) -> np.ndarray:
    counts = np.bincount(p.argmax(axis=1), minlength=p.shape[1]).astype(np.float64)
    return counts / counts.sum()


def aggregate_track(window_probs: np.ndarray, how: str = "mean") -> np.ndarray:
    """``(n, C)`` window probabilities of one track → ``(C,)`` track probabilities (``n >= 1``)."""
    fn = AGGREGATORS.lookup(how)
    if window_probs.ndim != 2 or window_probs.shape[0] == 0:
        raise ValueError(f"need (n>=1, C) window probabilities, got shape {window_probs.shape}")
    return fn(window_probs.astype(np.float64)).astype(np.float32)


def aggregate(window_probs: np.ndarray, track_ids: Sequence, how: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Group ``(N, C)`` window probabilities by ``track_ids (N,)`` → ``(ids (T,), probs (T, C))``.

    Tracks come out in order of first appearance; each row of ``probs`` sums to 1.
    """
    ids = np.asarray(track_ids)
    if ids.shape[0] != window_probs.shape[0]:
        raise ValueError(f"{ids.shape[0]} track ids for {window_probs.shape[0]} windows")
    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)
    if not len(order):
        return uniq, np.zeros((0, window_probs.shape[1]), np.float32)
    # each track's windows in their own order, one slice per track: O(N log N), not a mask over N per track
    by_track = np.argsort(inverse.reshape(-1), kind="stable")
    groups = np.split(by_track, np.cumsum(np.bincount(inverse.reshape(-1), minlength=len(uniq)))[:-1])
    return uniq[order], np.stack([aggregate_track(window_probs[groups[k]], how) for k in order])


def top_k(probs: np.ndarray, classes: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    """``(T, C)`` probabilities → per row the ``k`` most likely ``(class, probability)``, best first."""
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(classes[j], float(probs[i, j])) for j in row] for i, row in enumerate(idx)]


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE of top-1 confidence over ``bins`` equal-width bins; ``probs (N, C)``, ``labels (N,)``."""
    if len(labels) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def classification_metrics(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1, ECE, per-class precision/recall and the confusion matrix (rows = truth).

    Macro-F1 averages over the genres the split holds: a genre with no track in it (a small, predefined or
    artist-grouped split) would count as F1 0 and sink the score of a perfect model. Such a genre's ``recall`` is
    None (nothing to recall), its precision 0 when the model predicted it anyway (every such verdict is wrong)."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    pred = probs.argmax(axis=1)
    k = list(range(len(classes)))
    present = sorted(set(np.asarray(labels, int).tolist()))
    prec, rec, _, support = precision_recall_fscore_support(labels, pred, labels=k, zero_division=0)
    return {
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "macro_f1": float(f1_score(labels, pred, labels=present, average="macro", zero_division=0)) if present
        else float("nan"),
        "ece": expected_calibration_error(probs, labels),
        "n": int(len(labels)),
        "classes_present": len(present),
        "per_class": {c: {"precision": float(prec[i]), "recall": float(rec[i]) if support[i] else None,
                          "support": int(support[i])}
                      for i, c in enumerate(classes)},
        "confusion": confusion_matrix(labels, pred, labels=k).tolist(),
    }


def per_class_metrics(prefix: str, per_class: dict) -> dict[str, float]:
    """:func:`classification_metrics`' ``per_class`` as MLflow metrics ``{prefix}_precision.<genre>`` and
    ``{prefix}_recall.<genre>`` (no recall for a genre the split does not hold). A genre name is written with the
    characters MLflow refuses in a metric name as ``_`` ("R&B" → ``R_B``; "R&B" once failed a finished training run
    at its last step)."""
    out = {}
    used: set[str] = set()
    for c, pc in per_class.items():
        name = metric_name(str(c))
        name = name if name not in used else f"{name}_{len(used)}"
        used.add(name)
        out[f"{prefix}_precision.{name}"] = pc["precision"]
        if pc["recall"] is not None:
            out[f"{prefix}_recall.{name}"] = pc["recall"]
    return out


def metric_name(text: str) -> str:
    """``text`` with every character MLflow does not allow in a metric key (word characters, ``. - / : `` and space
    are allowed) replaced by ``_``."""
    return re.sub(r"[^\w.\-/: ]", "_", text)


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path, title: str) -> Path:
    """Write a confusion-matrix PNG (rows = true genre, columns = predicted) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(classes), 0.8 + 0.6 * len(classes)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
    fig.tight_layout()
    return atomic.savefig(fig, path, dpi=100)


def plot_curves(history: dict[str, Sequence[tuple[int, float]]], path: str | Path, title: str) -> Path:
    """Training curves PNG: ``history`` maps metric names to ``(epoch, value)`` pairs; losses on the left
    panel, accuracies on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in sorted(history.items()):
        if not points:
            continue
        ax = axes[0] if "loss" in name else axes[1]
        steps, values = zip(*sorted(points))
        ax.plot(steps, values, marker="o", markersize=3, label=name)
    for ax, ylabel in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return atomic.savefig(fig, path, dpi=100)


def window_logits(model: "torch.nn.Module", batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  device: "torch.device | None" = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``batches`` of ``(images (B, 1, H, W), labels (B,), track_ids (B,))`` → ``(logits (N, C) float32, labels (N,),
    track_ids (N,))``, the model in eval mode on ``device`` (default CPU); empty arrays for no batch."""
    import torch

    from genre_ray.training import predict_logits

    device = device or torch.device("cpu")
    model = model.to(device).eval()
    logits, labels, ids = [], [], []
    for images, y, t in batches:
        logits.append(predict_logits(model, torch.from_numpy(np.ascontiguousarray(images)), device).cpu().numpy())
        labels.append(np.asarray(y))
        ids.append(np.asarray(t))
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, object)
    return np.concatenate(logits), np.concatenate(labels), np.concatenate(ids)


def softmax_t(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``(N, C)`` logits → ``(N, C)`` float64 ``softmax(logits / temperature)``."""
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def score_logits(logits: np.ndarray, labels: np.ndarray, track_ids: np.ndarray, classes: Sequence[str],
                 how: str = "mean", temperature: float = 1.0) -> dict:
    """Window logits ``(N, C)``, labels ``(N,)``, track ids ``(N,)`` → ``{"window": …, "track": …}``
    :func:`classification_metrics` of the label job's probabilities: ``softmax(logits / temperature)`` per window
    (the bundle's calibration), tracks aggregated with ``how`` — so the scores are those of the labels it writes."""
    p, y, _, track_probs, track_y = _calibrated_tracks(logits, labels, track_ids, how, temperature)
    return {"window": classification_metrics(p, y, classes), "track": classification_metrics(track_probs, track_y, classes)}


def _calibrated_tracks(logits: np.ndarray, labels: np.ndarray, track_ids: np.ndarray, how: str, temperature: float):
    """``softmax(logits / T)`` per window ``(N, C)`` and labels ``(N,)``, then per track: ids ``(K,)``, aggregated
    probabilities ``(K, C)`` and labels ``(K,)`` — what both the track metrics and the per-track table are made of."""
    p, y = softmax_t(logits, temperature).astype(np.float32), np.asarray(labels).astype(int)
    ids, probs = aggregate(p, track_ids, how)
    first = dict(zip(track_ids, y))
    return p, y, ids, probs, np.array([first[i] for i in ids])


def track_predictions(logits: np.ndarray, labels: np.ndarray, track_ids: np.ndarray, classes: Sequence[str],
                      how: str = "mean", temperature: float = 1.0) -> "pd.DataFrame":
    """The per-track verdicts behind :func:`score_logits`' track metrics, one row per track: ``track_id``, ``label``,
    ``predicted``, ``confidence``, ``correct``, ``n_windows``, ``p_<class>`` — which tracks a model gets wrong."""
    import pandas as pd

    _, _, ids, probs, truth = _calibrated_tracks(logits, labels, track_ids, how, temperature)
    counts = pd.Series(np.asarray(track_ids)).value_counts()
    best = probs.argmax(axis=1)
    table = pd.DataFrame({"track_id": ids, "label": [classes[i] for i in truth],
                          "predicted": [classes[i] for i in best], "confidence": probs.max(axis=1),
                          "correct": best == truth, "n_windows": [int(counts[i]) for i in ids]})
    for j, c in enumerate(classes):
        table[f"p_{c}"] = probs[:, j]
    return table
