"""``genre-ray label --set featurize=device``: decode tasks ship waveform segments, the classifier actor makes the
images (on its GPU with ``use_gpu``) — the CPUs only decode.

Stages::

    map_batches(segment_batch)   CPU tasks: streamed decode → SegmentWindower → one row per segment (the samples
                                 of ≤ MAX_WINDOWS windows, once) + one "end" row per track
    map_batches(SegmentClassifier, ActorPoolStrategy)   SegmentFeaturizer on the actor's device → float16 window
                                 images, kept on the device → the label job's Classifier model (same
                                 probabilities, same row format)

Only the waveform crosses to the device (each sample once, not once per overlapping window); the images are made,
rounded to float16 like the CPU path's, and classified there. The CPU work — the STFTs — is gone from the decode
tasks, which is the point on a GPU node whose CPUs are the bottleneck. The window rows leaving the actor are those of the CPU path (``path, kind, window, start_s, … probs``), so the
driver's TrackAssembler, shards and resume work unchanged. Images match the CPU path up to float rounding
(``tests/test_bench.py::test_device_featurization_matches_the_cpu_path``, ``tests/test_label_device.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import torch

from genre_ray import audio
from genre_ray.bundle import Bundle
from genre_ray.device_features import SegmentFeaturizer, SegmentWindower
from genre_ray.features import FeatureConfig
from genre_ray.inference import (
    SILENCE_PEAK,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_TOO_SHORT,
    TOO_SHORT,
    low_sample_rate_note,
    padded_note,
    too_short_note,
    truncated_note,
)
from genre_ray.pipelines.label_workers import (
    END,
    MAX_WINDOWS,
    WINDOW,
    Classifier,
    TrackClassifier,
    featurize_batch,
)
from genre_ray.registry import Registry

SEGMENT = "seg"


def segment_stream(path: str, features: FeatureConfig, hop_s: float | None, too_short: str,
                   max_windows: int = MAX_WINDOWS, block_s: float = 10.0) -> Iterator[dict]:
    """One track → segment rows then one end row (the statuses of :func:`genre_ray.inference.featurize_stream`:
    error for unreadable or silent audio, too-short or a padded window). Never raises for a file."""
    w = SegmentWindower(features, hop_s, pad_short=TOO_SHORT.lookup(too_short), max_windows=max_windows)
    sr, emitted = features.sample_rate, 0

    def seg_row(s) -> dict:
        return {"kind": SEGMENT, "first": s.first, "samples": s.samples, "offsets": s.frame_offsets,
                "starts": s.starts_s}

    notes: list[str] = []
    info: dict = {}
    try:
        try:
            for chunk in audio.decode_stream(path, sr, block_s=block_s, info=info):
                for s in w.push(chunk):
                    emitted += len(s.frame_offsets)
                    yield seg_row(s)
        except audio.TruncatedAudio as exc:  # labelled from what decoded, as featurize_stream does
            notes.append(truncated_note(exc))
        for s in w.finish():
            emitted += len(s.frame_offsets)
            yield seg_row(s)
    except Exception as exc:
        yield _end(w.n_samples / sr, emitted, STATUS_ERROR, f"{type(exc).__name__}: {exc}")
        return
    duration = w.n_samples / sr
    if w.peak <= SILENCE_PEAK:
        yield _end(duration, emitted, STATUS_ERROR,
                   f"silent: peak amplitude {w.peak:.1e} ≤ {SILENCE_PEAK:.0e} (−100 dBFS)")
    elif emitted == 0:
        yield _end(duration, 0, STATUS_TOO_SHORT, too_short_note(duration, features, w.pad_short))
    else:
        if w.padded:
            notes.append(padded_note(duration, features))
        if low := low_sample_rate_note(info.get("sample_rate"), features):
            notes.append(low)
        yield _end(duration, emitted, STATUS_OK, "; ".join(notes))


def _end(duration_s: float, n_windows: int, status: str, error: str) -> dict:
    return {"kind": END, "duration_s": duration_s, "n_windows": n_windows, "status": status, "error": error}


RAGGED = {"samples": np.float32, "offsets": np.int64, "starts": np.float64}
"""A segment row's ragged columns and their dtypes. They travel as raw bytes (Arrow ``binary``), not as Ray's
variable-shaped tensors: turning one-row batches into Ray Data blocks cost the decode tasks 1 CPU-s per 6,600
audio-s that way — a quarter of what decoding costs — and 1 per 20,800 as bytes (best of 5, 16 × 30-s tracks,
2-core box, 2026-11-26)."""


def ragged(batch: dict[str, np.ndarray], column: str, i: int) -> np.ndarray:
    """Row ``i``'s ``column`` (one of :data:`RAGGED`) as a read-only array over the row's bytes (no copy)."""
    return np.frombuffer(batch[column][i], RAGGED[column])


def arrow_rows(table: pa.Table) -> dict[str, np.ndarray]:
    """A block of :func:`segment_batch` rows as Ray Data hands it to the actor with ``batch_format="pyarrow"`` →
    the NumPy batch :func:`window_rows` and :func:`segment_images` read, without copying the samples: each
    :data:`RAGGED` cell is a zero-copy slice of its Arrow column's data buffer (``ragged`` reads it as before).
    With ``batch_format="numpy"`` Ray copies every binary cell into a Python ``bytes`` object — 25.6 ms per
    64-row call of 30-s tracks (81 MiB of samples) on the 2-core box, a copy the actor's one core paid before the
    samples' one copy to the device."""
    out = {}
    for name in table.column_names:
        col = table.column(name)
        if name not in RAGGED:
            out[name] = col.to_numpy(zero_copy_only=False)
            continue
        cells = np.empty(len(col), object)
        i = 0
        for chunk in col.chunks:
            if pa.types.is_binary(chunk.type) or pa.types.is_large_binary(chunk.type):
                width = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
                offs = np.frombuffer(chunk.buffers()[1], width)[chunk.offset: chunk.offset + len(chunk) + 1]
                data = chunk.buffers()[2]
                for a, b in zip(offs[:-1], offs[1:]):
                    cells[i] = data.slice(int(a), int(b - a)) if data is not None else b""
                    i += 1
            else:  # not binary (should not happen): Python objects, as Ray's numpy format would give
                for v in chunk.to_pylist():
                    cells[i] = v
                    i += 1
        out[name] = cells
    return out


GROUP_BYTES = 8 * 2**20
"""Segment rows go out together, up to this many bytes of samples per batch (across the task's tracks; the rest at
the task's end): Ray Data turns each yielded batch into a block column by column, ~1 ms a batch on the 2-core box —
17 % of a decode task's time with one batch per segment (cProfile, 24 × 30-s tracks) — and the actor then fetches
and stitches every block of its call (32 of them for a call of 30-s tracks with one block per track)."""


def segment_batch(batch: dict[str, np.ndarray], features: FeatureConfig, hop_s: float, too_short: str,
                  max_windows: int = MAX_WINDOWS, group_bytes: int = GROUP_BYTES) -> Iterator[dict[str, np.ndarray]]:
    """Paths → batches of rows: each track's segments (``samples``, ``offsets``, ``starts``: ragged, as bytes — read
    them with :func:`ragged`), then its end row; a batch closes once it holds ``group_bytes`` of samples (one segment
    more when a single one is larger), and at the last path. Rows keep their order; a batch may hold several tracks.
    Columns as the CPU path's where they overlap: ``path, kind, first, duration_s, n_windows, status, error``.
    Runs in Ray tasks."""
    group: list[dict] = []
    size = 0
    for path in batch["path"]:
        for row in segment_stream(str(path), features, hop_s, too_short, max_windows):
            group.append({**row, "path": str(path)})
            size += row["samples"].nbytes if row["kind"] == SEGMENT else 0
            if size >= group_bytes:
                yield _rows_batch(group)
                group, size = [], 0
    if group:
        yield _rows_batch(group)


def _rows_batch(rows: list[dict]) -> dict[str, np.ndarray]:
    n = len(rows)
    ragged_cols = {k: np.empty(n, object) for k in RAGGED}
    for k, dtype in RAGGED.items():
        for i, r in enumerate(rows):
            ragged_cols[k][i] = np.ascontiguousarray(r.get(k, ()), dtype).tobytes()
    return {"path": np.array([r["path"] for r in rows], object), "kind": np.array([r["kind"] for r in rows], object),
            "first": np.array([r.get("first", -1) for r in rows], np.int64), **ragged_cols,
            "duration_s": np.array([float(r.get("duration_s", 0.0)) for r in rows]),
            "n_windows": np.array([int(r.get("n_windows", 0)) for r in rows], np.int64),
            "status": np.array([r.get("status", "") for r in rows], object),
            "error": np.array([r.get("error", "") for r in rows], object)}


def segment_images(batch: dict[str, np.ndarray], featurizer: SegmentFeaturizer) -> torch.Tensor:
    """The window images of a batch's segment rows, segment by segment: ``(n_windows, 1, H, W)`` float16 on the
    featurizer's device (rounded to float16 as the CPU path's images are)."""
    seg_rows = np.flatnonzero(np.asarray(batch["kind"]) == SEGMENT)
    images = featurizer.images([ragged(batch, "samples", i) for i in seg_rows],
                               [ragged(batch, "offsets", i) for i in seg_rows])
    return images.to(torch.float16)


def window_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Segment + end rows → the CPU path's window + end rows, without the ``image`` column: ``path, kind, window,
    start_s, duration_s, n_windows, status, error``. Window rows come in the order of :func:`segment_images`."""
    is_seg = np.asarray(batch["kind"]) == SEGMENT
    cols: dict[str, list] = {k: [] for k in ("path", "kind", "window", "start_s", "duration_s", "n_windows", "status",
                                             "error")}
    for i in range(len(is_seg)):
        if is_seg[i]:
            starts = ragged(batch, "starts", i)
            n = len(starts)
            first = int(batch["first"][i])
            cols["path"] += [batch["path"][i]] * n
            cols["kind"] += [WINDOW] * n
            cols["window"] += list(range(first, first + n))
            cols["start_s"] += list(starts)
            cols["duration_s"] += [0.0] * n
            cols["n_windows"] += [0] * n
            cols["status"] += [""] * n
            cols["error"] += [""] * n
        else:
            for c in ("path", "duration_s", "n_windows", "status", "error"):
                cols[c].append(batch[c][i])
            cols["kind"].append(END)
            cols["window"].append(-1)
            cols["start_s"].append(0.0)
    return {"path": np.array(cols["path"], object), "kind": np.array(cols["kind"], object),
            "window": np.array(cols["window"], np.int64), "start_s": np.array(cols["start_s"], np.float64),
            "duration_s": np.array(cols["duration_s"], np.float64),
            "n_windows": np.array(cols["n_windows"], np.int64), "status": np.array(cols["status"], object),
            "error": np.array(cols["error"], object)}


def expand_segments(batch: dict[str, np.ndarray], featurizer: SegmentFeaturizer) -> dict[str, np.ndarray]:
    """Segment + end rows → exactly the CPU path's window + end rows, ``image (n, 1, H, W)`` float16 in host memory
    (end rows carry a zero image). The actor does not use this: it keeps the images on its device."""
    rows = window_rows(batch)
    image = np.zeros((len(rows["kind"]), *featurizer.cfg.image_shape), np.float16)
    image[rows["kind"] == WINDOW] = segment_images(batch, featurizer).cpu().numpy()
    return {**rows, "image": image}


class SegmentClassifier(Classifier):
    """The label job's :class:`Classifier` behind a :class:`SegmentFeaturizer` on the same device."""

    def __init__(self, bundle: Bundle, batch_size: int | None, use_gpu: bool, threads: int = 1, **kwargs):
        super().__init__(bundle, batch_size, use_gpu, threads, **kwargs)
        self.featurizer = SegmentFeaturizer(bundle.features, self.device)

    def __call__(self, batch: dict[str, np.ndarray] | pa.Table) -> dict[str, np.ndarray]:
        # Arrow in (the label job's batch_format): the samples go from the block's memory to the device, one copy;
        # the images never leave the device: STFT → float16 windows → the model, one batch after another
        if isinstance(batch, pa.Table):
            batch = arrow_rows(batch)
        return self.outputs(window_rows(batch), segment_images(batch, self.featurizer))


@dataclass(frozen=True)
class FeaturizeStage:
    """The two Ray Data stages of one ``featurize`` mode: the CPU task function, the actor class, how many
    windows one row of the task's output carries (an actor's call is ``call_windows // windows_per_row`` rows),
    at most how many input files one task (or, ``actor``, one actor call) takes, and the batch format of the
    actor's calls.

    ``files_per_block``: Ray Data costs ~70 ms per task on the 2-core box (the driver's executor and the raylet
    compete with the tasks for the cores), a lot beside decoding 16 × 30-s clips (~0.3 s): a decode-only pass over
    1,000 such files reached 1,835 audio-s/s in 63 tasks, 2,281 in 16 and 2,438 in 8, against 3,170 for two plain
    processes (2026-11-26, medians of 3 alternating runs of a throwaway script timing Ray Data's decode-only pass —
    :func:`genre_ray.bench.stages.decode_pass`'s layout — at each block count). Featurize
    tasks stream their rows out in 16-MiB blocks whatever the task's length, so they take 64 files. An ``actor``
    call's probability rows are small and leave the actor only when the call ends: 16 files, so results (and a
    killed run's completed shards) keep coming."""

    featurize: Callable[..., Iterator[dict[str, np.ndarray]]] | None  # None: the actor featurizes too
    classifier: type
    windows_per_row: int
    files_per_block: int
    batch_format: str = "numpy"  # what the actor's calls get from Ray Data ("pyarrow": the rows' memory, no copy)


FEATURIZE_STAGES: Registry[FeaturizeStage] = Registry("featurize mode")
FEATURIZE_STAGES.register("cpu")(FeaturizeStage(featurize_batch, Classifier, 1, 64))
FEATURIZE_STAGES.register("actor")(FeaturizeStage(None, TrackClassifier, 1, 16))
FEATURIZE_STAGES.register("device")(FeaturizeStage(segment_batch, SegmentClassifier, MAX_WINDOWS, 64, "pyarrow"))
