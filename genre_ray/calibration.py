"""Temperature scaling of a trained model, fitted on per-track probabilities, and the default "uncertain"
threshold — pure NumPy/SciPy, no Ray.

What is calibrated is exactly what the label job reports: a track's probabilities are
``aggregate(softmax(window_logits / T))`` (the training config's aggregation, ``mean`` by default). ``T`` is
the minimiser of the mean per-track negative log-likelihood over ``log T`` in ``[log T_MIN, log T_MAX]`` (0.25, 10) with
SciPy's bounded scalar optimiser; if that does not beat ``T = 1`` (already calibrated, or a ``vote``
aggregation that ignores ``T``) the model keeps ``T = 1`` — and so it does when the fitted ``T`` would raise the
validation tracks' expected calibration error (NLL and ECE can disagree on a small, nearly separable split: the
confidence users read must not get worse).

The default uncertainty threshold (:func:`uncertainty_threshold`) is a documented simple rule on the
calibrated validation tracks: the smallest confidence that is above ``target`` (0.8) of the validation
errors' confidences, kept in ``[THRESHOLD_MIN, THRESHOLD_MAX]`` = [0.5, 0.9]; with no validation error it is
0.5 (a calibrated top-1 probability below 0.5 says the top genre is more likely wrong than right).

Neither is fitted on too little evidence: with fewer than ``MIN_TRACKS`` (20) validation tracks, or none of them
wrong, the model keeps ``T = 1`` and the threshold 0.5, and the calibration says why (``note``). Four validation
tracks once gave ``T = 0.63``, which lowered their ECE and doubled the test tracks' (0.27 → 0.50); a split with no
error has nothing to measure overconfidence by, and its NLL falls all the way to ``T_MIN``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from genre_ray import atomic
from genre_ray.evaluate import aggregate, expected_calibration_error, softmax_t

T_MIN, T_MAX = 0.25, 10.0
"""Bounds of the fitted temperature. A validation split the model gets entirely right has no error to measure
overconfidence by, and its NLL keeps falling as ``T → 0``; so sharpening stops at 4× (``T_MIN``), and
flattening at 10× (``T_MAX``)."""
MIN_TRACKS = 20
"""Fewest validation tracks that temperature and threshold are fitted on."""
THRESHOLD_MIN, THRESHOLD_MAX = 0.5, 0.9
TARGET_ERRORS_FLAGGED = 0.8


def track_probs(window_logits: np.ndarray, track_ids: Sequence, temperature: float = 1.0,
                how: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """``(N, C)`` window logits + ``(N,)`` track ids → ``(ids (T,), probs (T, C))`` at ``temperature``."""
    return aggregate(softmax_t(window_logits, temperature).astype(np.float32), track_ids, how)


def track_nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of ``labels (T,)`` under ``probs (T, C)``."""
    p = probs[np.arange(len(labels)), np.asarray(labels, int)]
    return float(-np.log(np.clip(p.astype(np.float64), 1e-12, 1.0)).mean())


def _track_labels(track_ids: Sequence, window_labels: np.ndarray, order: np.ndarray) -> np.ndarray:
    first = dict(zip(np.asarray(track_ids).tolist(), np.asarray(window_labels).tolist()))
    return np.array([first[t] for t in order.tolist()], int)


def fit_temperature(window_logits: np.ndarray, track_ids: Sequence, window_labels: np.ndarray,
                    how: str = "mean") -> float:
    """The temperature ``T`` in ``[T_MIN, T_MAX]`` minimising the per-track NLL (see the module docstring).

    ``window_logits (N, C)``, ``track_ids (N,)``, ``window_labels (N,)`` (every window of a track has its label).
    """
    from scipy.optimize import minimize_scalar

    if len(window_logits) == 0:
        return 1.0
    ids, _ = track_probs(window_logits, track_ids, 1.0, how)
    labels = _track_labels(track_ids, window_labels, ids)

    def nll(log_t: float) -> float:
        return track_nll(track_probs(window_logits, track_ids, float(np.exp(log_t)), how)[1], labels)

    res = minimize_scalar(nll, bounds=(np.log(T_MIN), np.log(T_MAX)), method="bounded",
                          options={"xatol": 1e-4})
    t = float(np.exp(res.x))
    return t if nll(np.log(t)) < nll(0.0) - 1e-9 else 1.0


def uncertainty_threshold(confidence: np.ndarray, correct: np.ndarray, target: float = TARGET_ERRORS_FLAGGED) -> float:
    """Default "uncertain" threshold from calibrated validation tracks: ``confidence (T,)`` top-1 probabilities,
    ``correct (T,)`` bools. The smallest value above ``target`` of the errors' confidences, clipped to
    ``[THRESHOLD_MIN, THRESHOLD_MAX]``; ``THRESHOLD_MIN`` when there is no error."""
    wrong = np.sort(np.asarray(confidence, np.float32)[~np.asarray(correct, bool)])
    if len(wrong) == 0:
        return THRESHOLD_MIN
    k = int(np.ceil(target * len(wrong))) - 1  # the k-th smallest error confidence: `target` of them are <= it
    # the next float32 up: probabilities are float32, and a float32 comparison must still see it as larger
    t = float(np.nextafter(wrong[max(k, 0)], np.float32(np.inf)))
    return float(np.clip(t, THRESHOLD_MIN, THRESHOLD_MAX))


@dataclass
class Calibration:
    """What is stored in the bundle (``bundle.json`` → ``calibration``) and logged to MLflow."""

    temperature: float
    uncertain_threshold: float
    aggregate: str
    n_tracks: int
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    errors_flagged: float
    """Fraction of the validation errors whose calibrated confidence is below the threshold (NaN: no error)."""
    tracks_flagged: float
    """Fraction of all validation tracks below the threshold."""
    note: str = "fitted"
    """"fitted", or why ``T = 1`` and the default threshold were kept."""

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(window_logits: np.ndarray, track_ids: Sequence, window_labels: np.ndarray,
              how: str = "mean") -> tuple[Calibration, np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``T`` and the threshold on a validation split → ``(Calibration, probs_before (T, C), probs_after (T, C),
    track labels (T,))``; track-level ECE (10 bins) and NLL before/after."""
    ids, before = track_probs(window_logits, track_ids, 1.0, how)
    labels = _track_labels(track_ids, window_labels, ids)
    errors = int((before.argmax(axis=1) != labels).sum())
    note = ("fitted" if len(labels) >= MIN_TRACKS and errors else
            f"not fitted: {len(labels)} validation tracks (fewer than {MIN_TRACKS})" if len(labels) < MIN_TRACKS else
            f"not fitted: no validation track wrong ({len(labels)} tracks), nothing to measure overconfidence by")
    t, after = 1.0, before
    if note == "fitted":
        t = fit_temperature(window_logits, track_ids, window_labels, how)
        _, after = track_probs(window_logits, track_ids, t, how)
        if expected_calibration_error(after, labels) > expected_calibration_error(before, labels):
            t, after = 1.0, before  # lower NLL but a worse calibration error on the same tracks: not applied
    conf, correct = after.max(axis=1), after.argmax(axis=1) == labels
    thr = uncertainty_threshold(conf, correct) if note == "fitted" else THRESHOLD_MIN
    flagged = conf < thr
    cal = Calibration(temperature=t, uncertain_threshold=thr, aggregate=how, n_tracks=int(len(labels)),
                      ece_before=expected_calibration_error(before, labels),
                      ece_after=expected_calibration_error(after, labels),
                      nll_before=track_nll(before, labels), nll_after=track_nll(after, labels),
                      errors_flagged=float(flagged[~correct].mean()) if (~correct).any() else float("nan"),
                      tracks_flagged=float(flagged.mean()) if len(flagged) else float("nan"), note=note)
    return cal, before, after, labels


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-1 confidence in ``bins`` equal-width bins → ``(mean confidence (bins,), accuracy (bins,), count (bins,))``
    (NaN where a bin is empty) — the same binning as :func:`genre_ray.evaluate.expected_calibration_error`."""
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, conf, minlength=bins) / count
        acc = np.bincount(which, correct.astype(float), minlength=bins) / count
    return mean_conf, acc, count


def plot_reliability(before: np.ndarray, after: np.ndarray, labels: np.ndarray, temperature: float,
                     path: str | Path, title: str = "reliability (validation tracks)") -> Path:
    """Reliability diagram PNG: per-bin accuracy against confidence, uncalibrated and at ``temperature``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    for probs, name, colour in ((before, "T = 1", "tab:red"), (after, f"T = {temperature:.3g}", "tab:blue")):
        conf, acc, count = reliability_bins(probs, labels)
        m = count > 0
        ece = expected_calibration_error(probs, labels)
        ax.plot(conf[m], acc[m], marker="o", color=colour, label=f"{name} (ECE {ece:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("top-1 confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}, {len(labels)} tracks", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return atomic.savefig(fig, path, dpi=90)
