"""Ray Data ``label``: a music library → sliding windows → model in an actor pool → per-track verdicts →
Parquet shards, one row per input file, streaming and resumable.

Pipeline::

    list files (driver; minus those already labelled by the same model + features + windows)
      → map_batches(featurize_batch)   CPU tasks: streamed decode, ONE spectrogram per track sliced into
                                       windows (bounded memory); rows = windows + one "end" row per track
      → map_batches(Classifier, compute=ActorPoolStrategy)   batched inference (GPU + bf16 when asked)
        (featurize=actor, the default without GPUs: one map_batches(TrackClassifier) — the actors run
         featurize_batch themselves, paths in, the same rows out; featurize=device: label_device.py)
      → iter_batches on the driver     per-track aggregation as soon as a track's windows are all in
      → ShardWriter                    OUT/labels/part-*.parquet (+ OUT/timeline/), temp file + rename

The two Ray Data stages live in :mod:`genre_ray.pipelines.label_workers` (what the worker processes import);
this module is the driver. A SIGKILLed driver leaves only complete shards; a rerun into the same ``OUT`` skips every file that already
has a row with the same ``label_key`` (model weights + feature hash + hop + aggregation + too-short + top-k),
so the union of shards has exactly one row per input file. Also written: ``OUT/config.yaml``,
``OUT/summary.json``, ``OUT/errors.csv``, ``OUT/genres.png`` (and ``labels.csv`` / ``labels.jsonl``,
``tags.csv`` when asked); the summary and those files are logged as one MLflow run.
"""

from __future__ import annotations

import glob
import json
import logging
import contextlib
import math
import os
import re
import stat
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from genre_ray import atomic, preflight, tracking
from genre_ray.tracking import model_version
from genre_ray.bundle import Bundle
from genre_ray.catalog import is_audio_file, list_audio_files
from genre_ray.config import ConfigError, LabelConfig, absolute_paths, file_uri_path, local_path
from genre_ray.inference import (STATUS_ERROR, STATUS_OK, label_key, label_row, model_fingerprint, path_text,
                                 utf8_row)
from genre_ray.embedding import embedding_dim
from genre_ray.pipelines.common import announce, check_job_outputs, init_ray
from genre_ray.provenance import git_commit, versions
from genre_ray.pipelines.label_workers import (CALL_WINDOWS, END, MAX_WINDOWS, WINDOW, Classifier,  # noqa: F401
                                               FeaturizeWorker, call_windows, featurize_batch)
from genre_ray.registry import Registry
from genre_ray.report import REPORT_FILE, write_report
from genre_ray.uncertainty import DEFAULT_THRESHOLD, UncertaintyRule, write_review_list

log = logging.getLogger("genre_ray")

LABELS, TIMELINE = "labels", "timeline"
LOCK_FILE = ".genre-ray-label.lock"  # held while a run writes OUT (atomic.exclusive)
FLUSH_S = 30.0  # write a shard at least this often while rows are pending
BLOCK_BYTES = 16 * 2**20
"""Ray Data block size for this job (default 128 MiB): a long track's windows leave its featurize task in blocks
of this size, so neither the task nor the object store holds much more of one track at a time."""
ACTORS_PER_GPU = 2  # classifier actors per GPU by default (:func:`actor_plan`)
DECODE_ACTOR_FILES = 4
"""Files per call of a decode actor (``decode_workers="actors"``): a decode-only pass over 800 × 30-s files on the
2-core box ran at 2,582–2,600 audio-s/s with 4, 2,412–2,787 with 16, against 2,091–2,387 for the tasks (three
alternating rounds of a throwaway script, 2026-11-26). Through :func:`genre_ray.bench.stages.decode_pass` (three
alternating rounds): steady state 5,087–5,665 audio-s/s with actors, 4,182–4,284 with tasks, two plain processes
4,609–5,194 — over the whole ~9-s pass, start-up included, 2,626–2,891 vs 2,444–2,792. Over 10,000 × 30-s files
(``genre-ray bench label --set num_cpus=2 --set repeat=50``, two runs, 2026-11-26/27): 4,896 and 4,431 audio-s/s
with actors, 3,988 and 3,881 with tasks, two plain processes 5,287 and 5,133 (the machine 99 % vs 84–85 % busy)."""
FEATURIZE_MEMORY = 800 * 2**20
"""Memory a featurize task reserves: its use is bounded by design (blocks of audio, ``MAX_WINDOWS`` images),
whatever the track's length — Ray Data measured 635 MiB per worker at most (interpreter + torch + one track's
blocks; `make demo`, 2026-11-26) and asked for ~800. Declaring it also keeps Ray Data from fusing featurization into
the classifier actors, so decoding runs in CPU tasks alongside inference instead of inside the (possibly GPU) actor."""


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


def _is_uri(s: str) -> bool:
    return "://" in s and not s.startswith("file://")


def list_inputs(spec: str, notes: dict[str, Any] | None = None) -> list[str]:
    """A folder (recursive, symlink loops never followed), a glob, or a CSV/Parquet manifest with a ``path``
    column; local or an object-store URI (``s3://``, ``gs://`` … through fsspec). Local paths come back absolute
    (:func:`local_key`), so ``lib/x.wav``, ``./lib/x.wav`` and ``/music/lib/x.wav`` are one input and a rerun
    finds what an earlier one labelled from any folder. Duplicates are dropped. For a local folder, ``notes``
    collects what the walk left out (:func:`genre_ray.catalog.list_audio_files`: files not named like audio by
    extension, folders it could not read — noted, not fatal)."""
    if _is_uri(spec):
        files = _list_uri(spec)
    else:
        files = _list_local(spec, notes)
    if not files:
        hint = ""
        if not _is_uri(spec) and "[" in os.path.dirname(spec) and glob.has_magic(spec):
            literal = os.path.join(glob.escape(os.path.dirname(spec)), os.path.basename(spec))
            hint = f" ('[' starts a character class in a glob: for a folder named with brackets write {literal!r})"
        raise ValueError(f"no audio files found in {spec}{hint}")
    unique = list(dict.fromkeys(local_key(f) for f in files))
    if len(unique) < len(files):
        log.info("%s: %d duplicate entr%s dropped (one file, one row)", spec, len(files) - len(unique),
                 "y" if len(files) - len(unique) == 1 else "ies")
    return unique


def local_key(path: str) -> str:
    """How a labels row names its file: a local path made absolute (``os.path.abspath``: ``.``/``..`` folded, symlinks
    kept as named, so the row names the file the user listed); a URI as it is."""
    return local_path(path)


def _list_local(spec: str, notes: dict[str, Any] | None = None) -> list[str]:
    spec = file_uri_path(spec)
    p = Path(spec).expanduser()
    if p.is_dir():
        return [str(f) for f in list_audio_files(p, notes=notes)]
    if p.is_file() and p.suffix.lower() in (".csv", ".parquet", ".pq"):
        return _manifest(pd.read_parquet(p) if p.suffix.lower() != ".csv" else pd.read_csv(p), str(p), p.parent)
    if p.is_file():
        return [str(p)]
    if not glob.has_magic(spec):
        raise FileNotFoundError(f"label input not found: {spec}")
    return _glob_audio(str(p))


def _glob_audio(spec: str) -> list[str]:
    """Audio files matching the glob ``spec`` under the folder walk's rules (:func:`list_audio_files`): symlinked
    folders are never entered (``glob.glob``'s ``**`` follows them — a link to a parent folder listed one file 41
    times), links named like audio are kept even when dangling or looping (decoding reports them), folders named
    like audio and hidden names are skipped. Sorted."""
    parts = Path(spec).parts
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    found, links = set(), 0
    for f in root.glob(str(Path(*parts[fixed:]))):  # pathlib's ** does not recurse into symlinked folders
        inner = f.parts[len(root.parts):]  # what the pattern matched (Path(".").parts is empty)
        if any(x.startswith(".") for x in inner) or not is_audio_file(f.name) or os.path.isdir(f):
            continue
        if any(os.path.islink(Path(*f.parts[:i])) for i in range(len(root.parts) + 1, len(f.parts))):
            links += 1  # through a symlinked folder (matched by a * of its own)
            continue
        found.add(str(f))
    if links:
        log.info("%s: %d match(es) through symlinked folders left out (as a folder walk does)", spec, links)
    return sorted(found)


def _list_uri(spec: str) -> list[str]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(spec)
    proto = spec.split("://", 1)[0]
    if spec.lower().endswith((".csv", ".parquet", ".pq")):
        with fs.open(root, "rb") as f:
            df = pd.read_csv(f) if spec.lower().endswith(".csv") else pd.read_parquet(f)
        return _manifest(df, spec, None)
    found = fs.find(root) if fs.isdir(root) else fs.glob(root)
    return sorted(f"{proto}://{f}" for f in found if is_audio_file(f))


def _manifest(df: pd.DataFrame, name: str, base: Path | None) -> list[str]:
    """The manifest's ``path`` column, relative paths taken from ``base`` (its folder); empty cells are skipped
    with a warning (a blank row is not an input)."""
    if "path" not in df.columns:
        raise ValueError(f"{name}: manifest needs a 'path' column (has {list(df.columns)})")
    out, blank = [], 0
    for x in df["path"].tolist():
        x = "" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x).strip()
        if not x:
            blank += 1
            continue
        out.append(x if base is None or Path(x).is_absolute() or "://" in x else str(base / x))
    if blank:
        log.warning("%s: %d row(s) with an empty path skipped", name, blank)
    return out


# ---------------------------------------------------------------------------------------------
# output: atomic Parquet shards, resume
# ---------------------------------------------------------------------------------------------


def labels_schema(classes: list[str], embedding_dim: int | None = None) -> pa.Schema:
    """The labels table (one row per input file); documented in the README. ``embedding_dim`` adds the
    ``embedding`` column: ``list<float32>``, every value of length ``embedding_dim`` (in the schema metadata as
    ``genre_ray.embedding_dim``), null unless ok. Not ``fixed_size_list``: pyarrow 25 writes a null
    fixed-size list to Parquet but cannot read it back ("Expected all lists to be of size=D")."""
    s, f = pa.string(), pa.float64()
    emb = [pa.field("embedding", pa.list_(pa.float32()),
                    metadata={"genre_ray.embedding_dim": str(embedding_dim)})] if embedding_dim else []
    return pa.schema([("path", s), ("duration_s", f), ("n_windows", pa.int64()), ("genre", s), ("confidence", f),
                      ("top_k_genres", pa.list_(s)), ("top_k_probs", pa.list_(f)),
                      *[(f"p_{c}", f) for c in classes],
                      ("vote_entropy", f), ("uncertain", pa.bool_()), ("uncertain_reason", s), *emb,
                      ("model_name", s), ("model_uri", s), ("model_version", s), ("model_id", s),
                      ("feature_hash", s), ("label_key", s), ("status", s), ("error", s), ("file_stamp", s)])


def file_stamp(path: str) -> str | None:
    """``"<size>:<mtime_ns>"`` of a local file (None for an object-store URI or a file that cannot be stat'ed): a
    rerun relabels a file whose stamp differs from its row's — the same path with new audio."""
    if _is_uri(path):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


def timeline_schema(classes: list[str]) -> pa.Schema:
    """The optional per-window table: one row per classified window of every ok track."""
    return pa.schema([("path", pa.string()), ("window", pa.int64()), ("start_s", pa.float64()),
                      ("end_s", pa.float64()), *[(f"p_{c}", pa.float32()) for c in classes],
                      ("label_key", pa.string())])


def _write_atomic(table: pa.Table, path: Path) -> None:
    """Write ``path`` so that it either does not exist or is complete (:func:`genre_ray.atomic.atomic_path`)."""
    with atomic.atomic_path(path) as tmp:
        pq.write_table(table, tmp)


class ShardWriter:
    """``OUT/labels/part-<run>-<n>.parquet`` (and the matching ``OUT/timeline/`` shard, written first, so a labels
    shard — the commit mark — never exists without its timeline)."""

    def __init__(self, out: Path, classes: list[str], timeline: bool, embedding_dim: int | None = None,
                 stamps: dict[str, str | None] | None = None):
        self.labels_dir, self.timeline_dir = out / LABELS, out / TIMELINE
        self.stamps = stamps or {}  # input path → file_stamp taken when the run listed it
        self.schema, self.tl_schema = labels_schema(classes, embedding_dim), timeline_schema(classes)
        self.timeline = timeline
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.n = 0
        self.labels_dir.mkdir(parents=True, exist_ok=True)
        if timeline:
            self.timeline_dir.mkdir(parents=True, exist_ok=True)

    def write(self, rows: list[dict[str, Any]], windows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        name = f"part-{self.run}-{self.n:05d}.parquet"
        rows = [{**utf8_row(r), "file_stamp": self.stamps.get(r["path"])} for r in rows]
        windows = [{**w, "path": path_text(w["path"])} for w in windows]
        if self.timeline and windows:
            _write_atomic(pa.Table.from_pylist(windows, schema=self.tl_schema), self.timeline_dir / name)
        _write_atomic(pa.Table.from_pylist(rows, schema=self.schema), self.labels_dir / name)
        self.n += 1


class Resume(NamedTuple):
    """What :func:`prepare_output` found in ``OUT``: paths already labelled (to skip) and, of those, the errored ones
    — as :func:`local_key` and :func:`path_text` name them — and how many rows it took out because their file
    changed or is gone."""

    done: set[str]
    errored: set[str]
    changed: int = 0
    removed: int = 0


def prepare_output(out: Path, key: str, overwrite: bool, retry_errors: bool = False,
                   listed: dict[str, str] | None = None, scope: str | None = None,
                   unreadable: tuple[str, ...] = ()) -> Resume:
    """Make ``out`` ready to (re)label → :class:`Resume`.

    Leftovers of a killed run (temp files, timeline shards without their labels shard) are removed. Shards
    with another ``label_key`` (another model, features or window setting) stop the job unless ``overwrite``,
    which removes every shard. ``retry_errors``: the error rows are taken out of their shards (each rewritten
    atomically, without them; an error row has no timeline rows), so those files are labelled again — a run killed
    after this relabels them too, and never leaves two rows for one file.

    ``listed`` (this run's inputs: row name → path) takes out, the same way (timeline shard first, so a kill in
    between leaves a row that the next run takes out again): the row of a listed file whose ``file_stamp`` differs
    from the file's now (new audio at the same path: relabelled), and — when the input is a folder (``scope``) — the
    row of an unlisted file under it that is gone (deleted or moved: its new path is labelled as a new file). Gone
    means ``lstat`` says "no such file" while its folder is there: a row under an ``unreadable`` folder, under a
    folder that is not there (a drive not mounted), outside ``scope`` (one ``OUT`` may gather several inputs), or
    from a glob, a manifest or an object store is kept.
    """
    labels_dir, timeline_dir = out / LABELS, out / TIMELINE
    for d in (labels_dir, timeline_dir):
        for tmp in d.glob(".*.tmp") if d.is_dir() else ():
            tmp.unlink()
    shards = sorted(labels_dir.glob("*.parquet")) if labels_dir.is_dir() else []
    if overwrite:
        for d in (labels_dir, timeline_dir):
            for f in d.glob("*.parquet") if d.is_dir() else ():
                f.unlink()
        return Resume(set(), set())
    committed = {s.name for s in shards}
    for f in timeline_dir.glob("*.parquet") if timeline_dir.is_dir() else ():
        if f.name not in committed:
            f.unlink()
    done: set[str] = set()
    errored: set[str] = set()
    changed = removed = 0
    for shard in shards:
        names = pq.read_schema(shard).names
        t = pq.read_table(shard, columns=["path", "label_key", "status", *(["file_stamp"] if "file_stamp" in names
                                                                              else [])])
        keys = set(t.column("label_key").to_pylist())
        if keys - {key}:
            raise ConfigError(f"{labels_dir} holds labels made with another model, feature or window setting "
                              f"(label_key {sorted(keys - {key})}, now {key}); label into a new --out or pass "
                              "--set overwrite=true to relabel everything")
        paths = [local_key(x) for x in t.column("path").to_pylist()]  # older runs kept paths as given
        bad = [st == STATUS_ERROR for st in t.column("status").to_pylist()]
        stamps = t.column("file_stamp").to_pylist() if "file_stamp" in names else [None] * len(paths)
        drop = [retry_errors and b for b in bad]
        if listed is not None:
            now = file_stamps([listed[p] for p, st, d in zip(paths, stamps, drop) if p in listed and st and not d])
            for i, (p, stamp) in enumerate(zip(paths, stamps)):
                if drop[i]:
                    continue
                if p in listed:
                    if stamp is not None and now.get(listed[p]) not in (None, stamp):
                        drop[i], changed = True, changed + 1
                elif _gone(p, scope, unreadable):
                    drop[i], removed = True, removed + 1
        if any(drop):
            gone = {p for p, d in zip(paths, drop) if d}
            tl = timeline_dir / shard.name
            if tl.is_file():  # first: a labels row without its timeline is taken out again by the next run
                whole = pq.read_table(tl)
                keep = [local_key(x) not in gone for x in whole.column("path").to_pylist()]
                if not all(keep):  # error rows (retry_errors) have no timeline rows: nothing to rewrite
                    _rewrite(whole.filter(pa.array(keep)), tl)
            _rewrite(pq.read_table(shard).filter(pa.array([not d for d in drop])), shard)
            paths, bad = [p for p, d in zip(paths, drop) if not d], [b for b, d in zip(bad, drop) if not d]
        done.update(paths)
        errored.update(x for x, b in zip(paths, bad) if b)
    return Resume(done, errored, changed, removed)


def _gone(path: str, scope: str | None, unreadable: tuple[str, ...]) -> bool:
    """Whether the row of an unlisted ``path`` names a file that is gone (see :func:`prepare_output`)."""
    if scope is None or _is_uri(path) or not path.startswith(scope.rstrip(os.sep) + os.sep):
        return False
    if any(path.startswith(u.rstrip(os.sep) + os.sep) for u in unreadable):
        return False
    if not os.path.isdir(os.path.dirname(path)):  # a drive not mounted, a folder moved: say nothing of its files
        return False
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:  # permission, I/O: not known to be gone
        return False
    return stat.S_ISDIR(st.st_mode)  # a folder took its name: the file the row named is gone (its files are listed)


def file_stamps(paths: list[str], threads: int = 16) -> dict[str, str | None]:
    """:func:`file_stamp` of every path, ``threads`` at a time (a network share answers a stat in milliseconds: one
    at a time, 100,000 files took minutes before any work)."""
    if len(paths) < 64:
        return {p: file_stamp(p) for p in paths}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return dict(zip(paths, pool.map(file_stamp, paths, chunksize=256)))


def _rewrite(table: pa.Table, path: Path) -> None:
    """``path`` atomically replaced by ``table``, or removed when the table is empty."""
    if table.num_rows:
        _write_atomic(table, path)
    else:
        path.unlink()


def read_labels(out: str | Path) -> pd.DataFrame:
    """All rows of ``OUT/labels`` (every shard), sorted by path."""
    d = Path(out) / LABELS
    shards = sorted(d.glob("*.parquet")) if d.is_dir() else []
    if not shards:
        return pd.DataFrame()
    tables = [pq.read_table(s) for s in shards]  # shards written before file_stamp lack it: promoted to nulls
    return pa.concat_tables(tables, promote_options="default").to_pandas().sort_values("path", ignore_index=True)


# ---------------------------------------------------------------------------------------------
# driver-side aggregation
# ---------------------------------------------------------------------------------------------


class TrackAssembler:
    """Collects window probabilities per track from the (unordered) stream and finishes a track — one labels
    row (+ its timeline rows) — once its ``end`` row and all the windows it announced have arrived."""

    def __init__(self, classes: list[str], how: str, k: int, window_s: float, extra: dict[str, Any],
                 rule: UncertaintyRule | None = None, embeddings: bool = False):
        self.classes, self.how, self.k, self.window_s, self.extra = classes, how, k, window_s, extra
        self.rule, self.embeddings = rule, embeddings
        self.windows: dict[str, dict[int, tuple[float, np.ndarray, np.ndarray | None]]] = {}
        self.ends: dict[str, dict[str, Any]] = {}

    def add(self, batch: dict[str, np.ndarray]) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        touched = []
        for i in range(len(batch["path"])):
            path = str(batch["path"][i])
            if batch["kind"][i] == WINDOW:
                emb = batch["emb"][i] if self.embeddings else None
                self.windows.setdefault(path, {})[int(batch["window"][i])] = (float(batch["start_s"][i]),
                                                                              batch["probs"][i], emb)
            else:
                self.ends[path] = {k: batch[k][i] for k in ("duration_s", "n_windows", "status", "error")}
            touched.append(path)
        for path in dict.fromkeys(touched):
            end = self.ends.get(path)
            if end is not None and len(self.windows.get(path, {})) >= int(end["n_windows"]):
                yield self._finish(path, self.ends.pop(path), self.windows.pop(path, {}))

    def _finish(self, path: str, end: dict[str, Any], windows: dict[int, tuple[float, np.ndarray, np.ndarray | None]]):
        status, error = str(end["status"]), str(end["error"])
        order = sorted(windows)
        probs = np.stack([windows[i][1] for i in order]) if order and status == STATUS_OK else None
        feats = np.stack([windows[i][2] for i in order]) if probs is not None and self.embeddings else None
        row = label_row(path, float(end["duration_s"]), status, error, probs, self.classes, self.how, self.k,
                        self.extra, self.rule, feats, self.embeddings)
        timeline = []
        if probs is not None:
            for j, i in enumerate(order):
                start = windows[i][0]
                timeline.append({"path": path, "window": i, "start_s": start, "end_s": start + self.window_s,
                                 **{f"p_{c}": float(probs[j, c_i]) for c_i, c in enumerate(self.classes)},
                                 "label_key": self.extra["label_key"]})
        return row, timeline

    @property
    def pending(self) -> int:
        return len(set(self.windows) | set(self.ends))


class Progress:
    """One log line of files done at most every ``every_s`` seconds (and a last one); the throughput figures of the
    summary: over the whole labelling stream, and in steady state — from the first batch of finished tracks to the
    last, without the pipeline's start-up (workers starting, models loading, the first windows in flight)."""

    def __init__(self, total: int, every_s: float, already: int):
        self.total, self.every_s, self.already = total, every_s, already
        self.t0 = self.last = time.time()
        self.done = self.not_ok = 0
        self.audio_s = 0.0
        self.first_t: float | None = None  # when the first batch of finished tracks arrived
        self.first_audio = 0.0  # audio seconds in that batch
        self.last_t = self.t0

    def restart(self) -> None:
        """Start the clock now (after Ray is up): throughput is measured over the labelling stream."""
        self.t0 = self.last = self.last_t = time.time()

    def update(self, row: dict[str, Any], now: float | None = None) -> None:
        """Count one finished track; ``now``: when its batch arrived (tracks of one batch share it)."""
        now = time.time() if now is None else now
        if self.first_t is None or now == self.first_t:
            self.first_t = now
            self.first_audio += row["duration_s"]
        self.last_t = now
        self.done += 1
        self.not_ok += row["status"] != STATUS_OK
        self.audio_s += row["duration_s"]
        self.maybe_print()

    def update_batch(self, rows: list[dict[str, Any]]) -> None:
        """Count the tracks one stream batch finished: they arrived together, at one time (the steady rate is
        measured from the end of the first such batch)."""
        now = time.time()
        for row in rows:
            self.update(row, now)

    @property
    def startup_s(self) -> float:
        """Seconds from the start of the stream to the first finished track."""
        return (self.first_t - self.t0) if self.first_t is not None else 0.0

    def since(self, t_start: float) -> float:
        """Seconds from ``t_start`` (the job's start) to the first finished track (0 when none finished)."""
        return (self.first_t - t_start) if self.first_t is not None else 0.0

    @contextlib.contextmanager
    def heartbeat(self, state: Callable[[], str]) -> Iterator[None]:
        """While the block runs, a line every ``every_s`` seconds in which no track finished — a stalled stream (a
        lost node, actors waiting for resources) is said, not silent: ``[label] waiting: no track finished for …``
        and ``state()`` (what the cluster has)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.every_s):
                idle = time.time() - self.last_t
                if idle >= self.every_s:
                    try:
                        what = state()
                    except Exception as exc:  # noqa: BLE001 - a heartbeat never fails the job
                        what = f"cluster state unavailable: {str(exc).splitlines()[0][:120]}"
                    print(f"[label] waiting: no track finished for {idle:.0f} s ({self.done}/{self.total} files); "
                          f"{what}", flush=True)

        thread = threading.Thread(target=beat, name="label-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    @property
    def steady_audio_s_per_s(self) -> float:
        """Audio seconds per second after the first batch of finished tracks (0 when everything came at once)."""
        if self.first_t is None or self.last_t <= self.first_t:
            return 0.0
        return (self.audio_s - self.first_audio) / (self.last_t - self.first_t)

    def maybe_print(self, force: bool = False) -> None:
        now = time.time()
        if force or now - self.last >= self.every_s:
            self.last = now
            dt = max(now - self.t0, 1e-9)
            pct = 100.0 * self.done / max(self.total, 1)
            print(f"[label] {self.done}/{self.total} files ({pct:.0f}%; {self.not_ok} not ok; "
                  f"{self.already} done before) · {self.audio_s / dt:.0f} audio-s/s · {self.done / dt:.2f} files/s",
                  flush=True)


# ---------------------------------------------------------------------------------------------
# exports, plots, tags
# ---------------------------------------------------------------------------------------------

Exporter = Callable[[pd.DataFrame, Path], Path]
EXPORTERS: Registry[Exporter] = Registry("labels export format")


def export_path(out: Path, fmt: str) -> Path:
    """Where the ``fmt`` export of the labels lies: ``OUT/labels.<fmt>``."""
    return out / f"labels.{fmt}"


@EXPORTERS.register("csv")
def _export_csv(df: pd.DataFrame, out: Path) -> Path:
    flat = df.drop(columns=["embedding"], errors="ignore")  # D floats per row: in the Parquet and labels.jsonl
    for col in ("top_k_genres", "top_k_probs"):
        flat[col] = flat[col].map(lambda xs: "|".join(f"{x:.6g}" if isinstance(x, float) else str(x) for x in xs))
    with atomic.atomic_path(export_path(out, "csv")) as tmp:
        flat.to_csv(tmp, index=False)
    return export_path(out, "csv")


_ESCAPED_SLASH = re.compile(r"(?<!\\)((?:\\\\)*)\\/")
r"""``\/`` in pandas' JSON — an escaped ``/``, not preceded by a backslash that is itself escaped."""


@EXPORTERS.register("jsonl")
def _export_jsonl(df: pd.DataFrame, out: Path, rows_per_chunk: int = 10_000) -> Path:
    r"""One JSON object per line. Paths keep their slashes: pandas writes ``/`` as ``\/`` (valid JSON, but a
    ``grep /music/…`` finds nothing), so each chunk's text is unescaped before it is written."""
    df = df.assign(top_k_genres=df["top_k_genres"].map(list), top_k_probs=df["top_k_probs"].map(list))
    with atomic.atomic_path(export_path(out, "jsonl")) as tmp:  # a run killed while writing leaves the old file whole
        with open(tmp, "w", encoding="utf-8") as f:
            for i in range(0, len(df), rows_per_chunk):  # bounded memory: a chunk's text at a time
                text = df.iloc[i:i + rows_per_chunk].to_json(orient="records", lines=True, force_ascii=False)
                f.write(_ESCAPED_SLASH.sub(r"\1/", text).rstrip("\n") + "\n")
    return export_path(out, "jsonl")


def write_exports(table: pd.DataFrame, out: Path, requested: list[str]) -> list[Path]:
    """Each export ``requested`` (``LabelConfig.export``) and each one an earlier run left in ``out`` that this run
    did not ask for: that one is rewritten too, so no ``labels.csv``/``labels.jsonl`` beside ``labels/`` describes
    an older run (a rerun without ``--export`` used to leave the first run's file, silently out of date).
    → the files written."""
    earlier = [f for f in EXPORTERS if f not in requested and export_path(out, f).is_file()]
    written = [EXPORTERS.lookup(fmt)(table, out) for fmt in [*requested, *earlier]]
    for fmt in earlier:
        print(f"[label] {export_path(out, fmt).name} (written by an earlier run) rewritten with this run's labels",
              flush=True)
    return written


def plot_genres(counts: dict[str, int], path: Path, title: str) -> Path:
    """Bar chart of how many files got each genre."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(counts)
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * max(len(names), 1), 3.5))
    ax.bar(names, [counts[n] for n in names], color="tab:blue")
    ax.set_ylabel("files")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return atomic.savefig(fig, path, dpi=90)


def write_tags(table: pd.DataFrame, out: Path, dry_run: bool, tag_uncertain: bool = False,
               real: dict[str, str] | None = None) -> pd.DataFrame:
    """Write each ok file's top genre into its tags (or list the changes); the plan/result is appended to
    ``OUT/tags.csv`` (columns ``when``, ``dry_run``, ``path``, ``genre``, ``previous``, ``action``, ``reason``; an
    ``unchanged`` file is not listed). A track flagged ``uncertain`` is left untagged (``skipped``, with the reason)
    unless ``tag_uncertain``: a guess the model itself doubts should not land in the user's files. ``real`` maps a
    row's name to the file (a name written with ``\\xNN`` escapes); a written file's row gets its new
    ``file_stamp``, so the next run does not take the tag write for new audio."""
    from genre_ray.tags import TagResult, write_genre_tag

    real = real or {}
    results = []
    ok = table.loc[table["status"] == STATUS_OK]
    doubt = ok["uncertain"].fillna(False).astype(bool) if "uncertain" in ok else pd.Series(False, index=ok.index)
    why = ok["uncertain_reason"].fillna("") if "uncertain_reason" in ok else pd.Series("", index=ok.index)
    for path, genre, unsure, reason in zip(ok["path"], ok["genre"], doubt, why):
        if _is_uri(path):
            results.append(TagResult(path, genre, "", "skipped", "object-store files are not tagged"))
        elif unsure and not tag_uncertain:
            results.append(TagResult(path, genre, "", "skipped", f"uncertain ({reason or 'flagged'}): "
                                     "tag_uncertain=true tags it anyway"))
        else:
            r = write_genre_tag(real.get(path, path), genre, dry_run)
            results.append(TagResult(path, r.genre, r.previous, r.action, r.reason))
    df = pd.DataFrame([r.__dict__ for r in results], columns=["path", "genre", "previous", "action", "reason"])
    df.insert(0, "when", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    df.insert(1, "dry_run", bool(dry_run))
    _append_tag_log(out / "tags.csv", df[df["action"] != "unchanged"])
    written = {p: real.get(p, p) for p in df.loc[df["action"] == "written", "path"]}
    if written:
        restamp(out, written)
    counts = df["action"].value_counts().to_dict()
    print(f"[label] tags{' (dry run)' if dry_run else ''}: {counts} → {out / 'tags.csv'}", flush=True)
    return df


def _append_tag_log(path: Path, rows: pd.DataFrame) -> None:
    """Append ``rows`` to the tag log, never rewriting it: each run's ``previous`` column is the record of the tags
    a file had before (a later run, even a dry run, used to overwrite the first run's record of the user's own
    genres). A log in an older layout (no ``when`` column) is moved aside to ``tags.before.csv`` first."""
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
        if header != list(rows.columns):
            path.replace(path.with_name("tags.before.csv"))
    if rows.empty and path.is_file():
        return
    new = not path.is_file()
    with open(path, "a", encoding="utf-8", newline="") as fh:
        rows.to_csv(fh, index=False, header=new)


def restamp(out: Path, files: dict[str, str]) -> int:
    """Set the ``file_stamp`` of the rows named in ``files`` (row name → file) to the files' stamps now, rewriting
    only the shards that hold them → rows updated."""
    labels_dir = out / LABELS
    stamps = file_stamps(list(files.values()))
    n = 0
    for shard in sorted(labels_dir.glob("*.parquet")) if labels_dir.is_dir() else []:
        if "file_stamp" not in pq.read_schema(shard).names:
            continue
        t = pq.read_table(shard)
        names = t.column("path").to_pylist()
        hits = [i for i, p in enumerate(names) if p in files]
        if not hits:
            continue
        col = t.column("file_stamp").to_pylist()
        for i in hits:
            col[i] = stamps.get(files[names[i]]) or col[i]
        _write_atomic(t.set_column(t.schema.get_field_index("file_stamp"), "file_stamp",
                                   pa.array(col, pa.string())), shard)
        n += len(hits)
    return n


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------


def _label_stream(cfg: LabelConfig, todo: list[str], bundle: Bundle, hop: float, extra: dict[str, Any],
                  writer: ShardWriter, progress: Progress) -> None:
    init_ray(cfg.ray)
    ctx = ray.data.DataContext.get_current()
    saved = ctx.target_max_block_size
    ctx.target_max_block_size = BLOCK_BYTES
    try:
        _stream(cfg, todo, bundle, hop, extra, writer, progress)
    finally:
        ctx.target_max_block_size = saved


def featurize_mode(cfg: LabelConfig, use_gpu: bool) -> str:
    """The config's ``featurize``; ``auto`` → ``actor`` on a CPU-only run (every stage in the classifier actors:
    on the 2-core box +5 % and +28 % audio-s/s end to end over ``cpu`` in two ``genre-ray bench label`` pairs,
    +20–25 % with the report-size CNN, 2026-11-26), ``device`` with GPUs: the CPU tasks only decode, the GPU makes
    the images. With the spectrogram in the tasks an audio-second costs a core 1.16 ms instead of 0.54 (H200 node,
    one core: decode 0.54, spectrogram 0.62), so ``cpu`` on 16 cores can never pass ~13,800 audio-s/s — which
    ``device`` reached (13,228 steady, ``benchmarks/gpu.sh``, 2026-11-26) with a ceiling twice as high."""
    if cfg.featurize != "auto":
        return cfg.featurize
    return "device" if use_gpu else "actor"


def actor_plan(cfg: LabelConfig, cpus: float, gpus: float, use_gpu: bool, mode: str = "cpu") -> tuple[int, float]:
    """``(num_actors, actor_cpus)`` for a cluster of ``cpus`` CPUs and ``gpus`` GPUs and featurize ``mode``: the
    config's values where set.

    With GPUs: :data:`ACTORS_PER_GPU` actors per GPU (a share of it each), 1 CPU each — one actor's thread turns
    a call's rows into device tensors and probability rows while the other's batch runs on the GPU (ResNet18,
    featurize=device, 4,000 × 30-s files on one H200 + 16 cores: steady state 8,764 → 13,228 audio-s/s, end to
    end 4,380 → 5,253, one actor vs two, ``benchmarks/gpu.sh`` 2026-11-26) — unless their CPUs would then exceed
    half the cluster's (decoding needs them more): one per GPU. Where Ray sees no GPU yet, one actor.

    CPU only, ``actor`` mode: one single-thread actor per CPU, 1 CPU each (each runs every stage). CPU only,
    ``cpu``/``device`` mode: one single-thread actor per CPU, 0.5 CPU
    reserved each, so half the logical CPUs stay free for featurize tasks; the OS shares the cores between both
    stages as their work comes (inference costs ~2× what decoding + spectrograms cost, so actors that could only
    use their reserved half would leave cores idle). On the 2-core box: steady-state 419 → 517 audio-s/s over one
    1-CPU actor (``genre-ray bench label``, 2026-11-26).
    """
    if use_gpu:
        n, c = max(1, int(gpus)), 1.0
        if int(gpus) >= 1 and n * ACTORS_PER_GPU * (cfg.actor_cpus or c) <= cpus / 2:  # most CPUs left to decoding
            n *= ACTORS_PER_GPU
    else:
        n, c = max(1, int(cpus)), (1.0 if mode == "actor" else 0.5)
    return (cfg.num_actors or n), (cfg.actor_cpus or c)


def input_blocks(files: int, cpus: int, files_per_block: int = 16) -> int:
    """Blocks of the input path list (one Ray Data task or actor call each): at least 4 per CPU (the tasks
    balance), at most ``files_per_block`` files each (:attr:`FeaturizeStage.files_per_block`)."""
    return max(1, min(files, max(4 * cpus, math.ceil(files / files_per_block))))


def actor_gpus(num_actors: int, gpus: float, use_gpu: bool, asked: float | None = None) -> float:
    """GPUs reserved per classifier actor: 1 each, or an equal share when there are more actors than GPUs
    (``num_actors=2`` on one GPU: two actors, 0.5 GPU each, so one prepares its batch while the other's runs).
    Where Ray sees no GPU yet (an autoscaling cluster whose GPU nodes start when asked for), several actors ask
    for :data:`ACTORS_PER_GPU` to a GPU, as they would share one GPU node: ``num_actors: 8`` brings up 4 GPUs.
    ``asked`` (the config's ``actor_gpus``) wins whenever GPUs are used."""
    if not use_gpu:
        return 0.0
    if asked:
        return asked
    if gpus == 0:
        return round(1.0 / ACTORS_PER_GPU, 4) if num_actors > 1 else 1.0
    return round(gpus / num_actors, 4) if gpus < num_actors else 1.0


def cluster_state() -> str:
    """One line on what the Ray cluster has now: alive nodes, free CPUs and GPUs (the label heartbeat's)."""
    alive = sum(1 for n in ray.nodes() if n.get("Alive"))
    free, total = ray.available_resources(), ray.cluster_resources()
    gpu = f", GPU {free.get('GPU', 0):g}/{total['GPU']:g} free" if total.get("GPU") else ""
    return f"Ray: {alive} node(s) alive, CPU {free.get('CPU', 0):g}/{total.get('CPU', 0):g} free{gpu}"


def _stream(cfg: LabelConfig, todo: list[str], bundle: Bundle, hop: float, extra: dict[str, Any],
            writer: ShardWriter, progress: Progress) -> None:
    cpus = int(ray.available_resources().get("CPU", 1))
    cluster = ray.cluster_resources()
    gpus = cluster.get("GPU", 0)
    use_gpu = cfg.use_gpu if cfg.use_gpu is not None else gpus > 0
    if use_gpu and gpus == 0:
        log.warning("use_gpu=true and this Ray cluster has no GPU yet: the classifier actors wait until it has one "
                    "(an autoscaler adding GPU nodes)")
    mode = featurize_mode(cfg, use_gpu)
    num_actors, actor_cpus = actor_plan(cfg, cluster.get("CPU", 1), gpus, use_gpu, mode)
    if mode == "actor":  # each actor takes whole files: no more actors than files (Ray Data warns of idle ones)
        num_actors = max(1, min(num_actors, len(todo)))
    gpu_share = actor_gpus(num_actors, gpus, use_gpu, cfg.actor_gpus)
    where = ("each decoding, featurizing and classifying whole tracks" if mode == "actor"
             else f"featurize {cfg.decode_workers} ({mode}) on the other CPUs")
    print(f"[label] featurize={mode}: {num_actors} classifier actor(s) × {actor_cpus:g} "
          f"CPU{f' + {gpu_share:g} GPU' if use_gpu else ''}, {where}", flush=True)
    from genre_ray.pipelines.label_device import FEATURIZE_STAGES  # cpu: images from tasks; device: waveforms

    stage = FEATURIZE_STAGES.lookup(mode)
    n_blocks = input_blocks(len(todo), cpus, stage.files_per_block)
    actor_kwargs = {"bundle": bundle, "batch_size": cfg.batch_size, "use_gpu": use_gpu,
                    "threads": max(1, round(actor_cpus)), "embeddings": cfg.embeddings, "compile": cfg.torch_compile}
    ds = ray.data.from_items([{"path": f} for f in todo], override_num_blocks=n_blocks)
    if stage.featurize is None:  # the actors run every stage: paths in, probabilities out
        ds = ds.map_batches(stage.classifier, batch_size=1, batch_format="numpy",
                            fn_constructor_kwargs={**actor_kwargs, "hop_s": hop, "too_short": cfg.too_short},
                            num_gpus=gpu_share, num_cpus=actor_cpus, memory=FEATURIZE_MEMORY,
                            compute=ray.data.ActorPoolStrategy(size=num_actors))
    else:
        featurize = {"fn_kwargs": {"features": bundle.features, "hop_s": hop, "too_short": cfg.too_short},
                     "batch_format": "numpy", "num_cpus": 1, "memory": FEATURIZE_MEMORY}
        if cfg.decode_workers == "actors":  # long-lived processes, DECODE_ACTOR_FILES files a call
            decoders = max(1, min(int(cluster.get("CPU", 1) - num_actors * actor_cpus),
                                  math.ceil(len(todo) / DECODE_ACTOR_FILES)))  # no idle decoders on a few files
            # a restarted actor's call is retried 3 times (as a task is), not forever (Ray Data's actor default): a
            # file that crashes its decoder's process fails the run (resumable) instead of hanging it. Ray 2.60
            # marks remote args deprecated (removal in 2.64, no named parameter yet); Ray is pinned in pyproject.toml
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
                ds = ds.map_batches(FeaturizeWorker, fn_constructor_kwargs={"fn": stage.featurize},
                                    batch_size=DECODE_ACTOR_FILES, compute=ray.data.ActorPoolStrategy(size=decoders),
                                    max_task_retries=3, **featurize)
        else:  # a task per block of up to files_per_block files, one file a call
            ds = ds.map_batches(stage.featurize, batch_size=1, **featurize)
        ds = ds.map_batches(stage.classifier, fn_constructor_kwargs=actor_kwargs,
                            batch_size=max(1, call_windows(cfg.batch_size, use_gpu, cfg.call_windows)
                                           // stage.windows_per_row),
                            batch_format=stage.batch_format, num_gpus=gpu_share, num_cpus=actor_cpus,
                            compute=ray.data.ActorPoolStrategy(size=num_actors))
    assembler = TrackAssembler(bundle.classes, cfg.aggregate, cfg.top_k, bundle.features.window_s, extra,
                               uncertainty_rule(cfg, bundle), cfg.embeddings)
    done: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []  # finished tracks not yet in a shard

    def flush(n: int) -> None:
        batch = done[:n]
        del done[:n]  # out first: a write cut short (a second signal, a full disk) is relabelled, never written twice
        writer.write([r for r, _ in batch], [w for _, tl in batch for w in tl])

    progress.restart()
    last_flush = time.time()
    streamed = False
    try:
        with progress.heartbeat(cluster_state):
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
                finished = list(assembler.add(batch))
                done.extend(finished)
                progress.update_batch([row for row, _ in finished])
                while len(done) >= cfg.shard_rows:
                    flush(cfg.shard_rows)
                    last_flush = time.time()
                if done and time.time() - last_flush >= FLUSH_S:
                    flush(len(done))
                    last_flush = time.time()
                progress.maybe_print()
        streamed = True
    finally:  # stopped (Ctrl-C, SIGTERM, a failed stage) or done: every finished track is kept for the rerun
        pending = len(done)
        if pending and streamed:
            flush(pending)
        elif pending:
            try:
                flush(pending)
            except Exception as exc:  # noqa: BLE001 - on the way out through another error, that error is the news
                log.warning("[label] %d finished track(s) not written on the way out (%s: %s); the rerun labels them",
                            pending, type(exc).__name__, exc)
    if assembler.pending:
        raise RuntimeError(f"{assembler.pending} track(s) never completed in the stream; rerun to finish them")


def uncertainty_rule(cfg: LabelConfig, bundle: Bundle) -> UncertaintyRule:
    """The config's ``uncertain_threshold``, else the bundle's (fitted on validation), else the default."""
    threshold = cfg.uncertain_threshold if cfg.uncertain_threshold is not None else bundle.uncertain_threshold
    return UncertaintyRule(threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
                           vote_entropy_threshold=cfg.vote_entropy_threshold)


def _absolute(cfg: LabelConfig) -> LabelConfig:
    """``cfg`` with its local paths absolute — input, out, a local model bundle, the review list — as they go into
    the config printed and saved, MLflow's params and every labels row (``model_uri``): a shared tracking store or a
    table read from another folder can tell them apart."""
    return absolute_paths(cfg, "out", "input", "review_list", if_exists=("model",))


def run_label(cfg: LabelConfig) -> dict[str, Any]:
    check_job_outputs(cfg, "out", "review_list")
    cfg = _absolute(cfg)
    announce("label", cfg)
    if cfg.use_gpu and not (cfg.ray.address or os.environ.get("RAY_ADDRESS")):  # a local Ray: its GPUs are known
        import torch

        local_gpus = ray.cluster_resources().get("GPU", 0) if ray.is_initialized() else torch.cuda.device_count()
        if local_gpus == 0:  # the classifier actors would wait for ever
            raise ConfigError("use_gpu=true, and this machine has no CUDA GPU for the local Ray this job starts "
                              "(drop use_gpu, or submit the job to a cluster with GPU nodes)")
    t0 = time.time()
    notes: dict[str, Any] = {}
    try:
        files = list_inputs(cfg.input, notes)
    except (FileNotFoundError, ValueError, PermissionError) as exc:  # no input at all: a setting, not a bad file
        raise ConfigError(f"input={cfg.input}: {exc}") from None
    _print_listing_notes(notes)
    local = Path(cfg.model).expanduser().exists()
    preflight.model_store(cfg.model)  # a models:/ URI and no store to read it from: said before setup creates one
    bundle = preflight.label_model(cfg.model) if local else None  # a local bundle: checked before MLflow is touched
    tracking.setup(cfg.experiment)  # an unreachable tracking server fails here: nothing written, no model fetched
    bundle = bundle or preflight.label_model(cfg.model)  # an MLflow URI: fetched once the store is known good
    if cfg.aggregate is None:  # the model's own: its temperature and threshold were fitted with it
        cfg = cfg.model_copy(update={"aggregate": bundle.aggregate})
        print(f"[label] windows aggregated per track with the model's rule: {cfg.aggregate}", flush=True)
    hop = bundle.features.hop_s if cfg.hop_s is None else cfg.hop_s
    model_id = model_fingerprint(bundle.state_dict or {})
    rule = uncertainty_rule(cfg, bundle)
    dim = embedding_dim(bundle.build_model()) if cfg.embeddings else None
    key = label_key(model_id, bundle.features.hash(), hop, cfg.aggregate, cfg.too_short, cfg.top_k,
                    temperature=round(bundle.temperature, 8), uncertain_threshold=round(rule.threshold, 8),
                    vote_entropy_threshold=round(rule.vote_entropy_threshold, 8), embedding_dim=dim)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic.exclusive(out / LOCK_FILE, f"out={out}", error=ConfigError):  # one run writes OUT at a time
        extra = {"model_name": bundle.model_name, "model_uri": cfg.model, "model_version": model_version(cfg.model),
                 "model_id": model_id, "feature_hash": bundle.features.hash(), "label_key": key}
        listed = {path_text(f): f for f in files}  # a row's name → the file
        scope = local_key(cfg.input) if not _is_uri(cfg.input) and Path(cfg.input).expanduser().is_dir() else None
        resume = prepare_output(out, key, cfg.overwrite, cfg.retry_errors, listed, scope,
                                tuple(notes.get("unreadable_dirs") or ()))
        if not cfg.timeline and any((out / TIMELINE).glob("*.parquet")):  # one OUT, one kind of output
            cfg = cfg.model_copy(update={"timeline": True})
            print(f"[label] {out / TIMELINE} exists: the files labelled now get their timeline too (timeline: true)",
                  flush=True)
        cfg.save(out / "config.yaml")  # after the check: a refused run leaves the folder's config as it was
        todo = [f for name, f in listed.items() if name not in resume.done]
        skipped = len(files) - len(todo)
        if cfg.timeline and skipped and not any((out / TIMELINE).glob("*.parquet")):
            print(f"[label] WARNING: timeline asked for, and the {skipped} file(s) labelled before in {out} have none: "
                  "only the files labelled now get one (overwrite: true relabels every file with its timeline)",
                  flush=True)
        print(f"[label] {len(files)} files: {skipped} already labelled (label_key {key}), {len(todo)} to do",
              flush=True)
        if resume.changed or resume.removed:
            print(f"[label] {resume.changed} file(s) changed since labelled (size or modification time): labelled "
                  f"again; {resume.removed} row(s) of files no longer there taken out of {out / LABELS}", flush=True)
        errored = resume.errored & set(listed)
        if errored:
            print(f"[label] {len(errored)} of them failed in an earlier run (OUT/errors.csv): --retry-errors labels "
                  "them again", flush=True)
        # the MLflow run opens before the work: a run killed or failed part-way is there (RUNNING / FAILED) with its
        # params, and the rerun that resumes it says so (genre_ray.resumed, metric skipped)
        before = _close_dead_run(out)  # a SIGKILLed run of this OUT stayed RUNNING in MLflow for ever
        with mlflow.start_run(run_name=f"label {Path(cfg.input).name or cfg.input}") as run:
            atomic.write_json(out / RUN_FILE, {"run_id": run.info.run_id})
            mlflow.set_tags({"genre_ray.job": "label", "genre_ray.resumed": str(skipped > 0).lower(),
                             **({"genre_ray.previous_run": before} if before else {}),
                             "git_commit": git_commit(), **{f"version.{k}": v for k, v in versions().items()}})
            tracking.log_params({**cfg.flat(), "model_id": model_id, "label_key": key,
                                 "model_version_resolved": extra["model_version"]})  # what @champion meant then
            try:
                summary = _label_and_summarise(cfg, files, todo, skipped, bundle, hop, extra, dim, rule, key,
                                               model_id, out, t0, resume, notes)
            except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or `ray job stop`'s SIGTERM: stopped, not failed
                mlflow.end_run("KILLED")  # the rerun resumes it and names it (genre_ray.previous_run)
                raise
            _log_mlflow(summary, out)
    _print_summary(summary)
    return summary


RUN_FILE = "label_run.json"
"""``OUT/label_run.json``: the MLflow run of the last label run into OUT (written as it starts)."""


def _close_dead_run(out: Path) -> str | None:
    """The MLflow run id of the previous label run into ``out``, marked KILLED if it is still RUNNING — its driver is
    dead (SIGKILL): the caller holds OUT's lock; a run stopped by Ctrl-C or ``ray job stop`` marked itself KILLED.
    None when there was none (or the store does not know it)."""
    path = out / RUN_FILE
    if not path.is_file():
        return None
    try:
        rid = json.loads(path.read_text())["run_id"]
        client = mlflow.tracking.MlflowClient()
        if client.get_run(rid).info.status == "RUNNING":
            client.set_terminated(rid, status="KILLED")
            print(f"[label] the previous run into {out} (MLflow run {rid}) died part-way: marked KILLED, resumed "
                  "by this one", flush=True)
        return rid
    except Exception:  # noqa: BLE001 - unreadable state or a run deleted from MLflow: nothing to close
        return None


def _print_listing_notes(notes: dict[str, Any]) -> None:
    """Say what the folder walk left out: files by extension (top 8) and folders it could not read."""
    skipped = notes.get("skipped_ext") or {}
    if skipped:
        top = ", ".join(f"{ext} {n}" for ext, n in list(skipped.items())[:8])
        print(f"[label] {sum(skipped.values())} file(s) not named like audio left out ({top}"
              f"{', …' if len(skipped) > 8 else ''}); audio extensions: genre_ray.catalog.AUDIO_EXTENSIONS", flush=True)
    for folder in notes.get("unreadable") or []:
        print(f"[label] WARNING: folder not readable, its files are not labelled: {folder}", flush=True)
    if notes.get("hidden") or notes.get("symlinked_folders"):
        print(f"[label] left out of the folder walk: {notes.get('hidden', 0)} hidden entr(ies) (names starting "
              f"with '.'), {notes.get('symlinked_folders', 0)} symlinked folder(s) (never entered: give one as its "
              "own --input to label it)", flush=True)


def _label_and_summarise(cfg: LabelConfig, files: list[str], todo: list[str], skipped: int, bundle: Bundle,
                         hop: float, extra: dict[str, Any], dim: int | None, rule: UncertaintyRule, key: str,
                         model_id: str, out: Path, t0: float, resume: Resume | None = None,
                         notes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Label ``todo`` into ``out``, then the summary of every listed file and the files that go with it."""
    progress = Progress(len(todo), cfg.progress_s, skipped)
    if todo:
        writer = ShardWriter(out, bundle.classes, cfg.timeline, dim, stamps=file_stamps(todo))
        _label_stream(cfg, todo, bundle, hop, extra, writer, progress)
        progress.maybe_print(force=True)
    label_s = time.time() - progress.t0 if todo else 0.0

    table = read_labels(out)
    names = {path_text(f) for f in files}
    table = table[table["path"].map(local_key).isin(names)].reset_index(drop=True)
    summary = _summarise(cfg, files, table, progress, skipped, label_s, time.time() - t0, key, model_id, out)
    summary.update({"first_track_s": round(progress.since(t0), 2),  # job start (listing the input) → first track
                    "uncertain": int(table["uncertain"].sum()), "temperature": bundle.temperature,
                    "uncertain_threshold": rule.threshold, "vote_entropy_threshold": rule.vote_entropy_threshold,
                    "embedding_dim": dim, "relabelled_changed": resume.changed if resume else 0,
                    "removed_gone": resume.removed if resume else 0,
                    "unreadable_folders": list((notes or {}).get("unreadable") or []),
                    "not_audio_by_extension": dict((notes or {}).get("skipped_ext") or {}),
                    "hidden_left_out": int((notes or {}).get("hidden") or 0),
                    "symlinked_folders_left_out": int((notes or {}).get("symlinked_folders") or 0)})
    if cfg.review_list:
        path, n = write_review_list(table, cfg.review_list)
        summary["review_list"] = str(path)
        print(f"[label] review list: {n} uncertain track(s), most uncertain first → {path}", flush=True)
    summary["exports"] = [str(p) for p in write_exports(table, out, list(cfg.export))]
    if cfg.write_tags:
        tags = write_tags(table, out, cfg.dry_run, cfg.tag_uncertain, real={path_text(f): f for f in files})
        summary["tags"] = {k: int(v) for k, v in tags["action"].value_counts().items()}
    atomic.write_json(out / "summary.json", summary)
    return summary


def _summarise(cfg: LabelConfig, files: list[str], table: pd.DataFrame, progress: Progress, skipped: int,
               label_s: float, total_s: float, key: str, model_id: str, out: Path) -> dict[str, Any]:
    counts = {k: int(v) for k, v in table["status"].value_counts().items()}
    ok = table[table["status"] == STATUS_OK]
    genres = {k: int(v) for k, v in ok["genre"].value_counts().items()}
    bad = table[table["status"] != STATUS_OK][["path", "status", "error"]]
    with atomic.atomic_path(out / "errors.csv") as tmp:
        bad.to_csv(tmp, index=False)
    plot_genres(genres, out / "genres.png", f"genres of {len(ok)} files")
    return {
        "files": len(files), "rows": len(table), "labelled_now": progress.done, "skipped_already_labelled": skipped,
        "missing": len({path_text(f) for f in files} - set(table["path"].map(local_key))), "status": counts,
        "hours_of_audio": round(float(table["duration_s"].sum()) / 3600, 4),
        "audio_s_per_s": round(progress.audio_s / label_s, 2) if label_s > 0 and progress.done else 0.0,
        "files_per_s": round(progress.done / label_s, 3) if label_s > 0 and progress.done else 0.0,
        "label_seconds": round(label_s, 2), "seconds": round(total_s, 2),
        "startup_s": round(progress.startup_s, 2), "steady_audio_s_per_s": round(progress.steady_audio_s_per_s, 2),
        "genres": genres,
        "errors": bad.head(50).to_dict("records"), "labels": str(out / LABELS), "model": cfg.model,
        "model_id": model_id, "label_key": key, "input": cfg.input,
    }


def _log_mlflow(summary: dict[str, Any], out: Path) -> None:
    """The run's results into the active MLflow run: counts and throughput as metrics, OUT's files as artifacts."""
    status = summary["status"]
    mlflow.log_metrics({"files": summary["files"], "ok": status.get(STATUS_OK, 0),
                        "errors": status.get(STATUS_ERROR, 0), "too_short": status.get("too-short", 0),
                        "labelled_now": summary["labelled_now"], "skipped": summary["skipped_already_labelled"],
                        "relabelled_changed": summary.get("relabelled_changed", 0),
                        "removed_gone": summary.get("removed_gone", 0),
                        "unreadable_folders": len(summary.get("unreadable_folders") or []),
                        "hours_of_audio": summary["hours_of_audio"], "audio_s_per_s": summary["audio_s_per_s"],
                        "files_per_s": summary["files_per_s"], "seconds": summary["seconds"],
                        "steady_audio_s_per_s": summary["steady_audio_s_per_s"], "startup_s": summary["startup_s"],
                        "first_track_s": summary.get("first_track_s", 0.0)})
    mlflow.log_metric("uncertain", summary.get("uncertain", 0))
    try:  # OUT/report.html: the whole library on one self-contained page (genre_ray/report.py)
        write_report(out)
    except Exception as exc:  # the labels are written already; a report bug must not lose the run's record
        log.warning("label: %s not written: %s: %s", REPORT_FILE, type(exc).__name__, exc)
    for name in ("summary.json", "config.yaml", "errors.csv", "genres.png", "tags.csv", REPORT_FILE):
        if (out / name).is_file():
            mlflow.log_artifact(str(out / name))
    if summary.get("review_list"):
        mlflow.log_artifact(summary["review_list"])


def _print_summary(s: dict[str, Any]) -> None:
    genres = ", ".join(f"{g} {n}" for g, n in s["genres"].items()) or "—"
    print("\n".join([
        "== genre-ray label: summary ==",
        f"files:        {s['files']} ({s['labelled_now']} labelled now, {s['skipped_already_labelled']} already done)",
        f"status:       {s['status']}",
        f"audio:        {s['hours_of_audio']:.3f} h",
        f"throughput:   {s['audio_s_per_s']} audio-s/s, {s['files_per_s']} files/s ({s['label_seconds']} s labelling, "
        f"{s['seconds']} s total); steady state {s.get('steady_audio_s_per_s', 0)} audio-s/s after "
        f"{s.get('startup_s', 0)} s of pipeline start-up ({s.get('first_track_s', 0)} s from the job's start to its "
        f"first track)",
        f"genres:       {genres}",
        f"uncertain:    {s.get('uncertain', 0)} (calibrated confidence < {s.get('uncertain_threshold', float('nan')):.3g} "
        f"or vote entropy > {s.get('vote_entropy_threshold', float('nan')):.3g}; temperature "
        f"{s.get('temperature', 1.0):.3g})",
        f"labels:       {s['labels']}",
        *([f"NOT READ:     {len(s['unreadable_folders'])} folder(s) could not be listed: "
           f"{'; '.join(s['unreadable_folders'][:3])}"] if s.get("unreadable_folders") else []),
    ]), flush=True)
