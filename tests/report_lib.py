"""A labelled library written straight as the label job's Parquet shards (its own schema functions), for the report
tests and the report size/speed measurement — no label job run. Deterministic for a given seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from genre_ray.pipelines.label import LABELS, TIMELINE, labels_schema, timeline_schema

CLASSES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
WINDOW_S, HOP_S = 3.0, 1.5


def library(n: int, seed: int = 0, classes: list[str] = CLASSES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(labels, timeline)`` of ``n`` files: every 17th an ``error``, every 29th ``too-short``, the rest ``ok`` with
    window probabilities whose mean is the track's; ``uncertain`` when confidence < 0.5."""
    rng = np.random.default_rng(seed)
    c = len(classes)
    paths = [f"/music/artist{i % 97:02d}/album{i % 7}/track{i:06d}{'.flac' if i % 3 else '.mp3'}" for i in range(n)]
    status = np.array(["ok"] * n, dtype=object)
    status[np.arange(n) % 17 == 5] = "error"
    status[np.arange(n) % 29 == 7] = "too-short"
    ok = status == "ok"
    duration = np.round(rng.uniform(6.0, 30.0, n), 2)
    duration[status == "too-short"] = 1.2
    duration[status == "error"] = 0.0
    n_win = np.where(ok, np.floor((duration - WINDOW_S) / HOP_S).astype(int) + 1, 0)
    owner = np.repeat(np.arange(n), n_win)  # window → its track (vectorised: 100,000 tracks in seconds)
    logits = rng.normal(0, 1.0, (len(owner), c)) + rng.normal(0, 2.5, (n, c))[owner]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    track_probs = np.full((n, c), np.nan)
    sums = np.zeros((n, c))
    np.add.at(sums, owner, p)
    track_probs[ok] = sums[ok] / n_win[ok, None]
    first = np.concatenate([[0], np.cumsum(n_win)[:-1]])
    window = np.arange(len(owner)) - first[owner]
    starts = window * HOP_S
    timeline = pd.DataFrame({"path": np.asarray(paths, dtype=object)[owner], "window": window, "start_s": starts,
                             "end_s": starts + WINDOW_S, **{f"p_{k}": p[:, j].astype(np.float32)
                                                              for j, k in enumerate(classes)}})
    top = np.where(ok, np.nan_to_num(track_probs, nan=-1).argmax(axis=1), -1)
    conf = np.where(ok, np.nan_to_num(track_probs).max(axis=1), np.nan)
    order = np.argsort(-np.nan_to_num(track_probs, nan=-1), axis=1)[:, :3]
    labels = pd.DataFrame({
        "path": paths, "duration_s": duration, "n_windows": n_win.astype(np.int64),
        "genre": [classes[t] if t >= 0 else None for t in top], "confidence": conf,
        "top_k_genres": [[classes[j] for j in o] if k else [] for o, k in zip(order, ok)],
        "top_k_probs": [[float(track_probs[i, j]) for j in o] if ok[i] else [] for i, o in enumerate(order)],
        **{f"p_{k}": track_probs[:, j] for j, k in enumerate(classes)},
        "vote_entropy": np.where(ok, rng.uniform(0, 1, n), np.nan),
        "uncertain": pd.array([bool(x < 0.5) if k else None for x, k in zip(conf, ok)], dtype="boolean"),
        "uncertain_reason": [("low confidence" if x < 0.5 else "") if k else "" for x, k in zip(conf, ok)],
        "model_name": "homebrew", "model_uri": "bundle", "model_version": "", "model_id": "m" * 16,
        "feature_hash": "f" * 16, "label_key": "k" * 16, "status": status,
        "error": ["DecodeError: not audio <b>&amp;</b>" if s == "error" else "shorter than one window" if
                  s == "too-short" else "" for s in status],
    })
    timeline["label_key"] = "k" * 16
    return labels, timeline


def write_library(out: Path, labels: pd.DataFrame, timeline: pd.DataFrame | None, classes: list[str] = CLASSES,
                  shards: int = 2, drop: tuple[str, ...] = ()) -> Path:
    """Write ``labels`` (and ``timeline``) as ``shards`` shards of ``OUT/labels`` (``OUT/timeline``) with the label
    job's schemas; ``drop`` removes columns (labels written before a column existed)."""
    schema = labels_schema(classes)
    (out / LABELS).mkdir(parents=True, exist_ok=True)
    cols = [f.name for f in schema]
    frame = labels.reindex(columns=cols)
    for k, part in enumerate(np.array_split(np.arange(len(frame)), shards)):
        t = pa.Table.from_pandas(frame.iloc[part].reset_index(drop=True), schema=schema, preserve_index=False)
        for name, kind in (("vote_entropy", pa.float64()), ("uncertain", pa.bool_())):  # the calibration columns,
            if name not in t.column_names and name in labels.columns:  # should this schema predate them
                t = t.append_column(pa.field(name, kind), pa.array(labels[name].iloc[part], kind, from_pandas=True))
        pq.write_table(t.drop_columns([d for d in drop if d in t.column_names]), out / LABELS / f"part-{k:05d}.parquet")
    if timeline is not None and len(timeline):
        (out / TIMELINE).mkdir(parents=True, exist_ok=True)
        tl_schema = timeline_schema(classes)
        t = pa.Table.from_pandas(timeline.reindex(columns=[f.name for f in tl_schema]), schema=tl_schema,
                                 preserve_index=False)
        pq.write_table(t, out / TIMELINE / "part-00000.parquet")
    return out
