"""Sliding-window inference for one track — pure functions shared by the label job (inside Ray tasks and
actors) and ``genre-ray predict`` (in-process). No Ray here.

A track is featurized as a stream (:func:`featurize_stream`): decode in bounded blocks → one spectrogram per
track sliced into windows (:class:`genre_ray.features.TrackWindower`) → :class:`WindowBatch` items of at most
``max_windows`` images, then one :class:`TrackEnd` that says how the track went. Nothing ever holds a whole
long track's images, so a 75-minute file costs the same memory as a 30-second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from genre_ray import audio
from genre_ray import atomic
from genre_ray.embedding import track_embedding, window_outputs
from genre_ray.evaluate import aggregate_track, top_k
from genre_ray.features import FeatureConfig, TrackWindower, min_padded_samples
from genre_ray.registry import Registry
from genre_ray.uncertainty import LOW_SAMPLE_RATE, PADDED, UncertaintyRule, vote_entropy

log = logging.getLogger("genre_ray")

STATUS_OK, STATUS_ERROR, STATUS_TOO_SHORT = "ok", "error", "too-short"
STATUSES = (STATUS_OK, STATUS_ERROR, STATUS_TOO_SHORT)
SILENCE_PEAK = 1e-5
"""A track whose peak ``|sample|`` is at most this (−100 dBFS) is silent: an error row, not a guess."""

TOO_SHORT: Registry[bool] = Registry("too-short policy")
"""What to do with a track shorter than one window: ``pad`` it with zeros to one window, or ``skip`` it."""
TOO_SHORT.register("pad")(True)
TOO_SHORT.register("skip")(False)


@dataclass
class WindowBatch:
    """Consecutive windows of one track: ``images (n, 1, H, W)`` float16, ``starts_s (n,)``, first index ``first``."""

    path: str
    first: int
    images: np.ndarray
    starts_s: np.ndarray


@dataclass
class TrackEnd:
    """How a track went: ``n_windows`` windows were emitted before it (discard them unless ``status == ok``)."""

    path: str
    duration_s: float
    n_windows: int
    status: str
    error: str = ""


def featurize_stream(path: str | Path, features: FeatureConfig, hop_s: float | None = None, too_short: str = "pad",
                     max_windows: int = 32, block_s: float = 10.0) -> Iterator[WindowBatch | TrackEnd]:
    """Decode ``path`` block by block and yield its window images; the last item is always a :class:`TrackEnd`.

    Never raises for a bad file: unreadable/corrupt/empty → ``error``; decoding failed part-way → status ``ok`` from
    the audio before the failure, with a ``truncated: …`` note in ``error`` (warned); silent (peak ≤ :data:`SILENCE_PEAK`)
    → ``error``; shorter than one window → one zero-padded window (``too_short="pad"``, status ``ok`` with a
    note in ``error``) or ``too-short`` with no windows (``"skip"``); both warn. Memory: O(``block_s`` of
    audio + ``max_windows`` images) whatever the track's length.
    """
    path = str(path)
    windower = TrackWindower(features, hop_s, pad_short=TOO_SHORT.lookup(too_short), max_windows=max_windows)
    sr = features.sample_rate
    emitted = 0
    notes: list[str] = []
    info: dict[str, Any] = {}
    try:
        try:
            for chunk in audio.decode_stream(path, sr, block_s=block_s, info=info):
                for images, starts in windower.push(chunk):
                    yield WindowBatch(path, emitted, images, starts)
                    emitted += len(images)
        except audio.TruncatedAudio as exc:  # a cut-off or corrupt tail: labelled from what decoded
            notes.append(truncated_note(exc))
        for images, starts in windower.finish():
            yield WindowBatch(path, emitted, images, starts)
            emitted += len(images)
    except Exception as exc:  # an unreadable file is a row with a reason, not a crash
        yield TrackEnd(path, windower.n_samples / sr, emitted, STATUS_ERROR, f"{type(exc).__name__}: {exc}")
        return
    duration = windower.n_samples / sr
    if windower.peak <= SILENCE_PEAK:
        yield TrackEnd(path, duration, emitted, STATUS_ERROR,
                       f"silent: peak amplitude {windower.peak:.1e} ≤ {SILENCE_PEAK:.0e} (−100 dBFS)")
        return
    if emitted == 0:
        msg = too_short_note(duration, features, windower.pad_short)
        log.warning("%s: %s", path, msg)
        yield TrackEnd(path, duration, 0, STATUS_TOO_SHORT, msg)
        return
    if windower.padded:
        notes.append(padded_note(duration, features))
    if low := low_sample_rate_note(info.get("sample_rate"), features):
        notes.append(low)
    for note in notes:
        log.warning("%s: %s", path, note)
    yield TrackEnd(path, duration, emitted, STATUS_OK, "; ".join(notes))


def low_sample_rate_note(source_sr: int | None, features: FeatureConfig) -> str:
    """The note of an ok row whose file's own sample rate leaves the top of its spectrogram empty — its Nyquist
    frequency below the highest the mel filterbank covers (``f_max``, else the model's Nyquist) — or ``""``.
    :func:`label_row` flags such a row uncertain (``low-sample-rate``): an 8-kHz phone recording, resampled to
    22,050 Hz, has nothing above 4 kHz, and the model never saw such images."""
    top = features.f_max or features.sample_rate / 2
    if not source_sr or source_sr / 2 >= top:
        return ""
    return (f"{LOW_SAMPLE_RATE}: recorded at {source_sr} Hz, nothing above {source_sr / 2:g} Hz; "
            f"the model's spectrograms reach {top:g} Hz")


def padded_note(duration: float, features: FeatureConfig) -> str:
    """The note an ok row carries when its file was shorter than one window and labelled from one zero-padded
    window; :func:`label_row` flags such a row uncertain (``padded``): the model never saw zero-padded audio."""
    return f"{PADDED}: {duration:.2f} s is shorter than one {features.window_s:g} s window"


def too_short_note(duration: float, cfg: FeatureConfig, pad: bool) -> str:
    """The note of a track that got no window: shorter than one window (and, with padding on, than the
    :func:`~genre_ray.features.min_padded_samples` a padded window needs)."""
    need = f" and than the {min_padded_samples(cfg) / cfg.sample_rate:.2f} s a padded window needs" if pad else ""
    return f"too short: {duration:.2f} s is shorter than one {cfg.window_s:g} s window{need} (skipped)"


def truncated_note(exc: "audio.TruncatedAudio") -> str:
    """The note an ok row carries when its file stopped decoding part-way (``truncated: …``), or decoded to its
    end past damage — corrupt packets skipped, a second decoder taking over (``damaged: …``)."""
    if isinstance(exc, audio.DamagedAudio):
        return f"damaged: {exc.reason}; labelled from the {exc.decoded_s:.2f} s decoded"
    return f"truncated: decoding stopped after {exc.decoded_s:.2f} s ({exc.reason}); labelled from the audio before"


@dataclass
class TrackImages:
    """One track cut into windows: ``images (n, 1, H, W)`` float16, ``starts_s (n,)``; ``n == 0`` unless ok."""

    path: str
    duration_s: float
    images: np.ndarray
    starts_s: np.ndarray
    status: str
    error: str = ""


def featurize_track(path: str | Path, features: FeatureConfig, hop_s: float | None = None,
                    too_short: str = "pad") -> TrackImages:
    """All windows of a (short) track at once, through :func:`featurize_stream`; errors never raise."""
    images, starts = [np.zeros((0, *features.image_shape), np.float16)], [np.zeros(0)]
    for item in featurize_stream(path, features, hop_s, too_short):
        if isinstance(item, WindowBatch):
            images.append(item.images)
            starts.append(item.starts_s)
        else:
            end = item
    if end.status != STATUS_OK:
        images, starts = images[:1], starts[:1]
    return TrackImages(end.path, end.duration_s, np.concatenate(images), np.concatenate(starts), end.status, end.error)


def label_row(path: str, duration_s: float, status: str, error: str, window_probs: np.ndarray | None,
              classes: Sequence[str], how: str, k: int, extra: dict[str, Any], rule: UncertaintyRule | None = None,
              window_features: np.ndarray | None = None, embeddings: bool = False) -> dict[str, Any]:
    """Build one labels row from a track's ``(n, C)`` (calibrated) window probabilities (None/empty unless status
    is ok): aggregated probabilities, top-k, ``vote_entropy``, ``uncertain`` + ``uncertain_reason`` by ``rule``
    (default :class:`UncertaintyRule`), and with ``embeddings`` the track ``embedding`` — the mean of
    ``window_features (n, D)``, L2-normalised, as a list (None unless ok)."""
    rule = rule or UncertaintyRule()
    row: dict[str, Any] = {"path": path, "duration_s": float(duration_s), "n_windows": 0, "genre": None,
                           "confidence": float("nan"), "top_k_genres": [], "top_k_probs": [],
                           **{f"p_{c}": float("nan") for c in classes}, "vote_entropy": float("nan"),
                           "uncertain": False, "uncertain_reason": "",
                           **({"embedding": None} if embeddings else {}), **extra, "status": status, "error": error}
    if status == STATUS_OK and window_probs is not None and len(window_probs):
        probs = aggregate_track(window_probs, how)
        best = top_k(probs[None], classes, min(k, len(classes)))[0]
        entropy = vote_entropy(window_probs)
        notes = error.split("; ")
        reason = rule.reason(best[0][1], entropy, padded=any(n.startswith(f"{PADDED}:") for n in notes),
                             low_sample_rate=any(n.startswith(f"{LOW_SAMPLE_RATE}:") for n in notes))
        row.update({"n_windows": int(len(window_probs)), "genre": best[0][0], "confidence": best[0][1],
                    "top_k_genres": [g for g, _ in best], "top_k_probs": [p for _, p in best],
                    **{f"p_{c}": float(probs[i]) for i, c in enumerate(classes)},
                    "vote_entropy": entropy, "uncertain": bool(reason), "uncertain_reason": reason})
        if embeddings and window_features is not None:
            row["embedding"] = track_embedding(window_features).tolist()
    return row


def path_text(path: str) -> str:
    """A path (or message) as the labels table writes it: as it is when it is valid UTF-8. A file name that is not
    (Latin-1 names copied onto a UTF-8 system, which Python lists with surrogate escapes) gets each undecodable byte
    written as ``\\xNN``: Parquet strings are UTF-8, and one such name used to fail a whole shard and every rerun."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        try:
            raw = path.encode("utf-8", "surrogateescape")  # the name's bytes, as the file system has them
        except UnicodeEncodeError:  # a surrogate that is no escaped byte
            raw = path.encode("utf-8", "backslashreplace")
        return raw.decode("utf-8", "backslashreplace")


def utf8_row(row: dict[str, Any]) -> dict[str, Any]:
    """A labels row with every string :func:`path_text`-safe (the path, and an error message that quotes it)."""
    return {k: path_text(v) if isinstance(v, str) else v for k, v in row.items()}


def model_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """12-hex digest of a model's weights: the same weights under any URI (path, runs:/, models:/…) match."""
    h = hashlib.sha1()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:12]


def label_key(model_id: str, feature_hash: str, hop_s: float, how: str, too_short: str, k: int,
              **options: Any) -> str:
    """12-hex digest of everything that decides a labels row: which weights, which images, which windows, which
    aggregation and how many top genres, plus ``options`` (JSON values: the temperature, the uncertainty
    thresholds, whether embeddings are written)."""
    blob = json.dumps({"model": model_id, "features": feature_hash, "hop_s": round(float(hop_s), 6), "how": how,
                       "too_short": too_short, "top_k": int(k), **options}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def predict_file(model: nn.Module, path: str | Path, features: FeatureConfig, classes: Sequence[str],
                 hop_s: float | None = None, how: str = "mean", k: int = 3, device: torch.device | None = None,
                 batch_size: int = 64, too_short: str = "pad", temperature: float = 1.0,
                 rule: UncertaintyRule | None = None,
                 embeddings: bool = False) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Label one file in-process → ``(labels row, window_probs (n, C), starts_s (n,))``, streaming its windows;
    window probabilities are ``softmax(logits / temperature)``; ``embeddings`` adds the row's ``embedding``."""
    device = device or torch.device("cpu")
    model = model.to(device)
    probs, starts = [np.zeros((0, len(classes)), np.float32)], [np.zeros(0)]
    feats: list[np.ndarray] = []
    for item in featurize_stream(path, features, hop_s, too_short, max_windows=batch_size):
        if isinstance(item, WindowBatch):
            p, f = window_outputs(model, item.images, device, batch_size, temperature, embeddings)
            probs.append(p)
            starts.append(item.starts_s)
            if f is not None:
                feats.append(f)
        else:
            end = item
    ok = end.status == STATUS_OK
    p, s = (np.concatenate(probs), np.concatenate(starts)) if ok else (probs[0], starts[0])
    f = np.concatenate(feats) if ok and feats else None
    row = label_row(end.path, end.duration_s, end.status, end.error, p, classes, how, k, {}, rule, f, embeddings)
    return row, p, s


def plot_prediction(rows: Sequence[dict[str, Any]], timelines: Sequence[tuple[np.ndarray, np.ndarray]],
                    classes: Sequence[str], window_s: float, path: str | Path) -> Path:
    """PNG with one row per track: a bar chart of its genre probabilities and a timeline of window probabilities.

    ``timelines[i] = (window_probs (n, C), starts_s (n,))``; each window is drawn at its centre.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 2, figsize=(13, 3.2 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2.2]})
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for (bar, line), row, (probs, starts) in zip(axes, rows, timelines):
        name = Path(str(row["path"])).name
        p = np.array([row.get(f"p_{c}", np.nan) for c in classes], dtype=float)
        bar.barh(range(len(classes)), np.nan_to_num(p), color=[colours(i) for i in range(len(classes))])
        bar.set_yticks(range(len(classes)), classes)
        bar.invert_yaxis()
        bar.set_xlim(0, 1)
        bar.set_xlabel("probability")
        bar.set_title(f"{name}: {row.get('genre') or row['status']}", fontsize=10)
        for i, c in enumerate(classes):
            if len(probs):
                line.plot(starts + window_s / 2, probs[:, i], color=colours(i), label=c, lw=1.4)
        line.set_ylim(0, 1)
        line.set_xlabel("time (s, window centre)")
        line.set_ylabel("probability")
        line.set_title(f"timeline — {len(probs)} windows over {row['duration_s']:.1f} s", fontsize=10)
        if len(probs):
            line.legend(fontsize=7, ncol=2, loc="upper right")
        line.grid(alpha=0.3)
    fig.tight_layout()
    return atomic.savefig(fig, path, dpi=90)
