"""Ray Data ``prepare``: track table → decode → windows → log-mel images → Parquet, one row per window.

Splits are assigned per track (per artist where known) **before** windowing, so no window of a held-out
track is ever trained on. Output layout::

    OUT/config.yaml        the PrepareConfig that made it
    OUT/meta.json          classes, FeatureConfig (+ hash), counts per split, failed tracks
    OUT/tracks.parquet     the track table with its split
    OUT/windows/split=train|val|test/*.parquet   rows: track_id, label_idx, window_idx, start_s,
                           augmented, image (fixed-shape tensor 1×H×W float16)
    OUT/windows/split=_failed/*.parquet          one row per track that could not be decoded
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import ray

from genre_ray import audio
from genre_ray import atomic, preflight, tracking
from genre_ray.catalog import load_catalog
from genre_ray.config import ConfigError, PrepareConfig, absolute_paths
from genre_ray.features import FeatureConfig, track_window_images
from genre_ray.leakage import CONTENT_HASH, METADATA_KEYS, enforce, file_content_hash, find_leakage
from genre_ray.inference import SILENCE_PEAK
from genre_ray.pipelines.common import announce, check_job_outputs, init_ray
from genre_ray.splits import LeakageError, assign_splits, resolve_split, split_summary

FAILED = "_failed"
SMALL_COLUMNS = ["track_id", "label_idx", "window_idx", "start_s", "augmented", "error"]
IMAGE_WRITE_ARGS: dict[str, Any] = {"use_dictionary": SMALL_COLUMNS, "write_statistics": SMALL_COLUMNS}
"""pyarrow Parquet writer options for the windows: the image column PLAIN-encoded, without min/max statistics (the
other columns as pyarrow's defaults). A float16 image is a list of 46,656 values; pyarrow tries a dictionary for
every column by default, which made writing 2.2× and reading 3.9× slower (552 → 1,238 written and 677 → 2,652 read
windows/s on one core, 30-s synthetic tracks, 3-s windows every 0.25 s, best of 3; files 15 % larger: 40.5 vs 35.2
MB for 436 windows; ``genre-ray bench cache``). Same schema either way: data prepared before reads the same."""


def track_windows(row: dict[str, Any], features: FeatureConfig, noise_copies: int, noise_snr_db: float,
                  seed: int, offset_copies: int = 0) -> Iterator[dict[str, Any]]:
    """One track row → its window rows (or one ``_failed`` row carrying the error). Runs in Ray tasks.

    Training tracks also get ``noise_copies`` noisy copies and ``offset_copies`` copies cut from a random offset
    (``augmented=True``); val/test windows stay clean and on the regular grid.
    """
    base = {"track_id": row["track_id"], "label_idx": int(row["label_idx"])}
    empty = np.zeros(features.image_shape, np.float16)
    try:
        # the label job's featurization exactly: streamed decode, one spectrogram per track, sliced. One difference
        # on purpose: a file whose decoding fails part-way (audio.TruncatedAudio) is left out and reported here — a
        # training set takes whole files only — while the label job labels such a file from what decoded
        wave = np.concatenate(list(audio.decode_stream(row["path"], features.sample_rate)))
        peak = float(np.abs(wave).max())
        if peak <= SILENCE_PEAK:  # a silent clip teaches nothing about its label: reported, as label does
            raise ValueError(f"silent: peak amplitude {peak:.1e} ≤ {SILENCE_PEAK:.0e} (−100 dBFS)")
        images, starts = _windows(wave, features)
        if images.shape[0] == 0:
            raise ValueError(f"{row['path']}: {wave.shape[0] / features.sample_rate:.2f} s is shorter "
                             f"than one {features.window_s} s window")
    except Exception as exc:  # reported in meta.json, never fatal
        yield {**base, "split": FAILED, "window_idx": -1, "start_s": 0.0, "augmented": False,
               "image": empty, "error": f"{type(exc).__name__}: {exc}"}
        return
    parts = [(images, starts, False)]
    if row["split"] == "train" and (noise_copies > 0 or offset_copies > 0):
        rng = np.random.default_rng([seed, int(row["track_id"][:8], 16)])
        for _ in range(noise_copies):  # white noise at noise_snr_db below the track's power
            parts.append((*_windows(audio.add_noise(wave, noise_snr_db, rng), features), True))
        for _ in range(offset_copies):  # the same audio cut from a random offset in (0, hop): windows in between
            shift = int(rng.integers(1, max(2, features.hop_samples)))
            im, st = _windows(wave[shift:], features)
            parts.append((im, st + shift / features.sample_rate, True))
    for images, starts, augmented in parts:
        for i in range(len(images)):
            yield {**base, "split": row["split"], "window_idx": i, "start_s": float(starts[i]),
                   "augmented": augmented, "image": images[i], "error": ""}


def _windows(wave: np.ndarray, features: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(T,)`` track → all its complete windows: ``images (n, 1, H, W)`` float16, ``starts_s (n,)``."""
    out = list(track_window_images([wave], features))
    if not out:
        return np.zeros((0, *features.image_shape), np.float16), np.zeros(0)
    return np.concatenate([i for i, _ in out]), np.concatenate([s for _, s in out])


def _log_mlflow(cfg: PrepareConfig, meta: dict[str, Any], out: Path) -> None:
    """One MLflow run per prepared dataset: the config, the split actually used, counts per split, the failed
    tracks, and meta.json / config.yaml / tracks.parquet as artifacts; tagged with its dataset fingerprint (what
    train runs on this data carry too). Imports here: Ray's workers import this module for ``track_windows``."""
    import mlflow
    import pandas as pd

    from genre_ray.provenance import dataset_fingerprint, git_commit, versions

    tracks = pd.read_parquet(out / "tracks.parquet")  # as train reads it: the same fingerprint
    with mlflow.start_run(run_name=f"prepare {Path(cfg.source).name}"):
        mlflow.set_tags({"genre_ray.job": "prepare", "git_commit": git_commit(),
                         "dataset_fingerprint": dataset_fingerprint(tracks, meta["feature_hash"]),
                         **{f"version.{k}": v for k, v in versions().items()}})
        tracking.log_params({**cfg.flat(), "split_strategy": meta["split_strategy"], "feature_hash": meta["feature_hash"],
                             "classes": ",".join(meta["classes"])})
        mlflow.log_metrics({**{f"tracks_{k}": v for k, v in meta["tracks"].items()},
                            **{f"windows_{k}": v for k, v in meta["windows"].items()},
                            "failed": len(meta["failed"]), "seconds": meta["seconds"]})
        for name in ("meta.json", "config.yaml", "tracks.parquet"):
            mlflow.log_artifact(str(out / name))


def run_prepare(cfg: PrepareConfig) -> dict[str, Any]:
    check_job_outputs(cfg, "out")
    cfg = absolute_paths(cfg, "source", "out", "audio_dir")  # as logged and saved
    announce("prepare", cfg)
    t0 = time.time()
    preflight.existing_path(cfg.source, "source")
    options = {**({"audio_dir": cfg.audio_dir} if cfg.audio_dir else {}),
               **({"subset": cfg.subset} if cfg.subset != "auto" else {})}
    try:
        tracks = load_catalog(cfg.source, kind=cfg.catalog, **options)
    except (ValueError, TypeError) as exc:  # a catalog the loader cannot use: the setting, named, exit 2
        raise ConfigError(f"source={cfg.source}: {exc}") from None
    strategy = resolve_split(cfg.split, tracks)  # auto: the source's own splits when it gives them all
    # a listed file that is not there, or (random split, hashed first) one that does not decode, takes no split
    # slot: a genre's only val track must not be a missing file
    tracks, dropped = _drop(tracks, [("://" not in p and not os.path.lexists(p)) for p in tracks["path"]],
                            "file not found")
    if cfg.content_hash_s > 0 and strategy == "random":  # hash first: the random split keeps copies together
        tracking.setup(cfg.experiment)  # an unusable MLflow store fails before Ray starts
        init_ray(cfg.ray)
        errors: list[str] = []
        tracks[CONTENT_HASH] = content_hashes(tracks["path"].tolist(), cfg.content_hash_s, errors)
        tracks, more = _drop(tracks, [bool(e) for e in errors], "does not decode", errors)
        dropped += more
    _check_classes(tracks, cfg.source)
    try:
        tracks = assign_splits(tracks, strategy=strategy, fractions=cfg.split_fractions, seed=cfg.seed)
    except ValueError as exc:  # e.g. predefined with tracks that have no split: the setting, not a crash
        if isinstance(exc, LeakageError):
            raise
        raise ConfigError(f"split={strategy}: {exc}") from None
    leak = enforce(find_leakage(tracks, METADATA_KEYS), cfg.allow_leakage, "prepare")  # before Ray starts
    classes = sorted(tracks["label"].unique())
    tracks["label_idx"] = tracks["label"].map({c: i for i, c in enumerate(classes)}).astype(int)
    print(split_summary(tracks).to_string(), flush=True)

    tracking.setup(cfg.experiment)  # after the split checks, before Ray and before anything is written
    init_ray(cfg.ray)
    if cfg.content_hash_s > 0:  # copies of one recording under two names: before any window is written
        if CONTENT_HASH not in tracks.columns:
            tracks[CONTENT_HASH] = content_hashes(tracks["path"].tolist(), cfg.content_hash_s)
        leak = enforce(find_leakage(tracks), cfg.allow_leakage, "prepare")
    else:
        print("prepare: content_hash_s=0: no content hashes, so copies of one recording under two names are not "
              "checked", flush=True)
    out = Path(cfg.out)
    # meta.json marks a complete folder: gone first, so a re-run killed part-way leaves a folder every job refuses
    # ("no meta.json — run prepare"), never an old meta.json over new tracks and windows
    (out / "meta.json").unlink(missing_ok=True)
    if (out / "windows").exists():
        shutil.rmtree(out / "windows")  # a re-run replaces the windows, never mixes two runs
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    with atomic.atomic_path(out / "tracks.parquet") as tmp:
        tracks.to_parquet(tmp, index=False)

    # tracks in a seeded random order, so each written block mixes genres (catalogs are sorted by genre folder): a
    # reader that keeps the file order (deterministic_data) still sees mixed batches after its local shuffle
    order = np.random.default_rng(cfg.seed).permutation(len(tracks))
    records = tracks.iloc[order][["track_id", "path", "label_idx", "split"]].to_dict("records")
    n_blocks = max(1, min(len(records), int(ray.available_resources().get("CPU", 1)) * 4))
    ds = ray.data.from_items(records, override_num_blocks=n_blocks).flat_map(
        track_windows,
        fn_kwargs={"features": cfg.features, "noise_copies": cfg.noise_copies,
                   "noise_snr_db": cfg.noise_snr_db, "seed": cfg.seed, "offset_copies": cfg.offset_copies},
    )
    ds.write_parquet(str(out / "windows"), partition_cols=["split"], **IMAGE_WRITE_ARGS)

    counts = windows_per_split(out)
    rel = dict(zip(tracks["track_id"], tracks["rel_path"]))
    failed = [{"rel_path": rel.get(f["track_id"], ""), **f} for f in read_failed(out)]
    usable = tracks[~tracks["track_id"].isin({f["track_id"] for f in failed})]
    _warn_empty_classes(usable, classes)
    meta = {
        "classes": classes,
        "features": cfg.features.to_dict(),
        "feature_hash": cfg.features.hash(),
        "tracks": {s: int((usable["split"] == s).sum()) for s in ("train", "val", "test")},  # with windows
        "dropped_before_split": dropped,
        "windows": counts,
        "failed": failed,
        "leakage": {"checked_by": list(leak.checked_by), "offenders": leak.count, "allowed": bool(leak.leaks),
                    "content_hash_s": cfg.content_hash_s},
        "seconds": round(time.time() - t0, 2),
        "split_strategy": strategy,
    }
    atomic.write_json(out / "meta.json", meta)
    _log_mlflow(cfg, meta, out)
    for f in failed[:5]:
        print(f"prepare: failed: {f['rel_path'] or f['track_id']}: {f['error']}", flush=True)
    print(f"prepared {sum(counts.values())} windows from {len(usable)} tracks ({len(failed)} failed"
          f"{', first ones above; all in meta.json' if failed else ''}) in {meta['seconds']} s → {out}", flush=True)
    return meta


def _drop(tracks: pd.DataFrame, mask: list[bool], reason: str,
          details: list[str] | None = None) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """``tracks`` without the masked rows, and those rows as ``{rel_path, error}`` (printed, the first few)."""
    if not any(mask):
        return tracks, []
    m = pd.Series(mask, index=tracks.index)
    why = [f"{reason}: {d}" if d else reason for d in (details or [""] * len(mask))]
    gone = [{"rel_path": r, "error": w} for r, w, k in zip(tracks["rel_path"], why, mask) if k]
    shown = ", ".join(g["rel_path"] for g in gone[:5]) + (", …" if len(gone) > 5 else "")
    print(f"prepare: {len(gone)} track(s) left out before the split ({reason}): {shown} (meta.json: "
          "dropped_before_split)", flush=True)
    return tracks[~m].reset_index(drop=True), gone


def _check_classes(tracks: pd.DataFrame, source: str) -> None:
    """ConfigError for fewer than 2 classes (a GTZAN folder given one level too high reads as one genre)."""
    classes = sorted(tracks["label"].unique())
    if len(classes) >= 2:
        return
    hint = ""
    if len(classes) == 1 and Path(source).is_dir() and (Path(source) / classes[0]).is_dir():
        hint = f" — a GTZAN-layout folder holds one folder per genre: did you mean --source {Path(source) / classes[0]}?"
    raise ConfigError(f"source={source}: {len(classes)} class(es) {classes}; a classifier needs at least 2{hint}")


def _warn_empty_classes(usable: pd.DataFrame, classes: list[str]) -> None:
    """Say which genre has no usable track in a split: no training track (it cannot be learnt) or no held-out one
    (its accuracy is not measured)."""
    for split in ("train", "val", "test"):
        held = set(usable.loc[usable["split"] == split, "label"])
        empty = [c for c in classes if c not in held]
        if empty:
            print(f"prepare: WARNING: no usable {split} track for {len(empty)} genre(s): {', '.join(empty[:10])}"
                  + (" — the model cannot learn them" if split == "train" else " — not measured there"), flush=True)


def _hash_row(row: dict[str, Any], seconds: float) -> dict[str, Any]:
    try:
        digest, error = file_content_hash(row["path"], seconds=seconds), ""
    except Exception as exc:  # noqa: BLE001 - unreadable: the caller leaves the track out, with this reason
        digest, error = None, f"{type(exc).__name__}: {str(exc)[:300]}"
    return {"i": row["i"], CONTENT_HASH: digest, "error": error}


def content_hashes(paths: list[str], seconds: float, errors: list[str] | None = None) -> list[str | None]:
    """:func:`~genre_ray.leakage.file_content_hash` of every path (first ``seconds`` only), in Ray tasks, in order;
    None for a silent start or an unreadable file, whose reason goes to ``errors`` (in order; "" when read)."""
    if errors is not None:
        errors[:] = [""] * len(paths)
    if not paths:
        return []
    n_blocks = max(1, min(len(paths), int(ray.available_resources().get("CPU", 1)) * 4))
    rows = (ray.data.from_items([{"i": i, "path": p} for i, p in enumerate(paths)], override_num_blocks=n_blocks)
            .map(_hash_row, fn_kwargs={"seconds": seconds}).take_all())
    out: list[str | None] = [None] * len(paths)
    for r in rows:
        out[int(r["i"])] = r[CONTENT_HASH]
        if errors is not None:
            errors[int(r["i"])] = r["error"]
    return out


def split_dir(prepared: str | Path, split: str) -> Path:
    return Path(prepared) / "windows" / f"split={split}"


def windows_per_split(prepared: str | Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    counts = {}
    for s in ("train", "val", "test"):
        d = split_dir(prepared, s)
        counts[s] = sum(pq.ParquetFile(f).metadata.num_rows for f in d.glob("*.parquet")) if d.exists() else 0
    return counts


def read_failed(prepared: str | Path) -> list[dict[str, str]]:
    import pyarrow.parquet as pq

    d = split_dir(prepared, FAILED)
    if not d.exists():
        return []
    rows = []
    for f in sorted(d.glob("*.parquet")):
        t = pq.read_table(f, columns=["track_id", "error"])
        rows += t.to_pylist()
    return rows


