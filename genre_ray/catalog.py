"""Catalogs: any dataset layout → one **track table** (a pandas DataFrame).

Pure (os, pandas, pyarrow) — no Ray, no audio decoding: files are found, never opened.

Track table contract (one row per track, sorted by ``rel_path``, ``track_id`` unique):

============  ==========================================================================
column        meaning
============  ==========================================================================
``track_id``  ``str`` — first 16 hex digits of the SHA-1 of ``rel_path`` (:func:`track_id`);
              stable across machines because it hashes the path *relative to the dataset root*
``path``      ``str`` — absolute local path, or a URI (``s3://…``, ``gs://…``) left unchanged
``rel_path``  ``str`` — POSIX path relative to the dataset root (or the path as given when it
              lies outside the root, e.g. a URI)
``label``     ``str`` — genre name
``artist``    ``str`` or missing (``None``/``NaN``) when unknown
``split``     ``"train" | "val" | "test"`` or missing when not assigned (see :mod:`genre_ray.splits`)
============  ==========================================================================

Loaders are registered in :data:`CATALOGS` with :func:`register_catalog`; :func:`load_catalog`
picks one by name or guesses it from the source (``kind="auto"``):

- ``"gtzan"`` — :func:`from_gtzan`: a folder ``root/<genre>/<file>``;
- ``"fma"`` — :func:`from_fma`: FMA's ``fma_metadata/tracks.csv`` + an ``fma_<size>/`` audio folder;
- ``"manifest"`` — :func:`from_manifest`: a CSV/Parquet file with ``path,label[,artist][,split]``.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import logging
import os
import re
import unicodedata
from pathlib import Path, PurePath
from typing import Any, Callable

import pandas as pd

from genre_ray.registry import Registry

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS: tuple[str, ...] = (
    ".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".au", ".aiff", ".aif", ".wma",
    ".oga", ".aifc", ".w64", ".caf", ".m4b", ".mka", ".webm", ".wv", ".mp2", ".ape", ".ac3", ".dsf", ".snd",
)  # fmt: skip
"""File extensions treated as audio (lower-case; matched case-insensitively): what libsndfile or FFmpeg decode."""

TABLE_COLUMNS: tuple[str, ...] = ("track_id", "path", "rel_path", "label", "artist", "split")
"""Columns of a track table, in order (loaders may append extra columns after these)."""

SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
"""Accepted spellings of split names (case-insensitive) → canonical ``train``/``val``/``test``."""

FMA_SUBSETS: tuple[str, ...] = ("small", "medium", "large")
"""FMA subsets from smallest to largest; each one contains the ones before it."""

_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")

# ---------------------------------------------------------------------------------------------
# ids, paths, file listing
# ---------------------------------------------------------------------------------------------


def track_id(rel_path: str | PurePath) -> str:
    """Stable id of a track: the first 16 hex digits of SHA-1 of its POSIX relative path.

    ``rel_path`` is hashed exactly as given (UTF-8) after turning a ``Path`` (or, on Windows,
    back-slashes) into POSIX form — callers pass the path relative to the dataset root, so the id
    does not depend on where the dataset is mounted.

    >>> track_id("blues/blues.00000.wav")
    '...'  # doctest: +SKIP
    """
    if isinstance(rel_path, PurePath):
        text = rel_path.as_posix()
    else:
        text = str(rel_path)
        if os.sep != "/":
            text = text.replace(os.sep, "/")
    if not text:
        raise ValueError("track_id() needs a non-empty relative path")
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def is_uri(path: str) -> bool:
    """True when ``path`` has a URL scheme such as ``s3://`` or ``file://``."""
    return bool(_URI_RE.match(path))


def is_audio_file(name: str | PurePath) -> bool:
    """True when the file name ends with one of :data:`AUDIO_EXTENSIONS` (any case)."""
    return str(name).lower().endswith(AUDIO_EXTENSIONS)


def list_audio_files(root: str | os.PathLike[str], recursive: bool = True,
                     notes: dict[str, Any] | None = None) -> list[Path]:
    """All audio files under ``root`` (by extension), sorted.

    Walks with ``os.walk(followlinks=False)``: symlinked *directories* are never entered (so a
    symlink loop cannot hang the walk; their count is logged), symlinked *files* are kept, and so
    are dangling or looping links named like audio (every such entry is an input: decoding reports it as an
    error with the reason, so nothing in the folder goes unaccounted). Directories are skipped even when named
    like ``album.wav``.
    Hidden entries (names starting with ``.``, e.g. macOS ``._blues.00000.wav`` resource forks)
    are skipped. Returned paths start with ``root`` as given.

    ``notes`` (a dict, optional) collects what was left out: ``skipped_ext`` (extension → count of files not
    named like audio), ``unreadable`` (folders that could not be listed, with the reason), ``unreadable_dirs``
    (those folders, absolute), ``hidden`` and ``symlinked_folders`` (counts). With ``notes`` an
    unreadable folder is noted and the walk goes on (the label job labels the rest and says so); without, its
    ``OSError`` is raised (a training catalog must not silently lose a folder).

    Raises ``FileNotFoundError`` if ``root`` does not exist and ``NotADirectoryError`` if it is
    not a folder.
    """
    root_path = Path(root)
    if not root_path.exists():
        raise FileNotFoundError(f"audio folder not found: {root_path}")
    if not root_path.is_dir():
        raise NotADirectoryError(f"not a folder: {root_path}")

    found: list[Path] = []
    skipped_links = hidden = 0

    skipped_ext: dict[str, int] = {}
    unreadable: list[str] = []
    unreadable_dirs: list[str] = []

    def _raise(err: OSError) -> None:  # surface permission problems instead of silently skipping
        if notes is None:
            raise err
        unreadable.append(f"{err.filename}: {err.strerror or err}")
        unreadable_dirs.append(os.path.abspath(str(err.filename)))

    for dirpath, dirnames, filenames in os.walk(root_path, followlinks=False, onerror=_raise):
        kept = []
        for d in dirnames:
            if d.startswith("."):
                hidden += 1
                continue
            if os.path.islink(os.path.join(dirpath, d)):
                skipped_links += 1
                continue
            kept.append(d)
        dirnames[:] = sorted(kept) if recursive else []
        for name in filenames:
            if not is_audio_file(name):
                if not name.startswith("."):
                    ext = os.path.splitext(name)[1].lower() or "(none)"
                    skipped_ext[ext] = skipped_ext.get(ext, 0) + 1
                continue
            if name.startswith("."):
                hidden += 1
                continue
            full = os.path.join(dirpath, name)
            if not os.path.isdir(full):  # files, file symlinks, and broken/looping links: decode reports those
                found.append(Path(full))
    if skipped_links:
        logger.info("list_audio_files(%s): did not enter %d symlinked folder(s)", root_path, skipped_links)
    if notes is not None:
        notes["skipped_ext"] = dict(sorted(skipped_ext.items(), key=lambda kv: -kv[1]))
        notes["unreadable"] = unreadable
        notes["unreadable_dirs"] = unreadable_dirs
        notes["hidden"], notes["symlinked_folders"] = hidden, skipped_links
    if hidden:
        logger.info("list_audio_files(%s): skipped %d hidden entries (names starting with '.': folders, and files "
                    "named like audio)", root_path, hidden)
    return sorted(found)


def normalize_split(value: Any) -> str | None:
    """Map a split spelling to ``"train"``/``"val"``/``"test"``; missing/blank → ``None``.

    Unknown values raise ``ValueError`` listing the accepted spellings.
    """
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value).strip().lower()
    if not text:
        return None
    try:
        return SPLIT_ALIASES[text]
    except KeyError:
        raise ValueError(
            f"unknown split value {value!r}; accepted (case-insensitive): {sorted(SPLIT_ALIASES)}"
        ) from None


def _clean_optional(value: Any) -> str | None:
    """``str`` stripped, or ``None`` for missing/blank values."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value).strip()
    return text or None


def _refuse_case_variants(labels: pd.Series) -> None:
    """``ValueError`` when two labels differ only in case or spacing ("Hip-Hop" / "hip-hop", "Rock" / "ROCK "):
    they would silently become separate classes that split one genre's tracks."""
    counts = labels.value_counts()
    groups: dict[str, list[str]] = {}
    for name in counts.index:
        groups.setdefault(" ".join(str(name).casefold().split()), []).append(str(name))
    clashes = [g for g in groups.values() if len(g) > 1]
    if clashes:
        shown = "; ".join(" / ".join(f"{n!r} ({counts[n]})" for n in g) for g in clashes[:5])
        raise ValueError(f"labels that differ only in case or spacing would be separate classes: {shown} "
                         "(tracks in brackets); write each genre one way in the source")


def make_table(records: list[dict[str, Any]] | pd.DataFrame, extra_columns: list[str] | None = None) -> pd.DataFrame:
    """Build a track table from rows holding ``path``, ``rel_path``, ``label`` (+ ``artist``, ``split``).

    Computes ``track_id`` from ``rel_path``, sorts by ``rel_path``, resets the index and checks that
    ids are unique (``ValueError`` naming the duplicated ``rel_path`` values otherwise).
    """
    df = pd.DataFrame(records).copy() if not isinstance(records, pd.DataFrame) else records.copy()
    for col in ("path", "rel_path", "label"):
        if col not in df.columns:
            raise ValueError(f"make_table: missing column {col!r}")
    for col in ("artist", "split"):
        if col not in df.columns:
            df[col] = None
    df["path"] = pd.Series([str(v) for v in df["path"]], index=df.index, dtype=str)
    df["rel_path"] = pd.Series([str(v) for v in df["rel_path"]], index=df.index, dtype=str)
    # NFC: "Música" typed with a combining accent and without is one class (they print identically)
    df["label"] = pd.Series([unicodedata.normalize("NFC", str(v).strip()) for v in df["label"]], index=df.index,
                            dtype=str)
    _refuse_case_variants(df["label"])
    df["artist"] = pd.Series([_clean_optional(v) for v in df["artist"]], index=df.index, dtype=object)
    splits = []
    for rel, v in zip(df["rel_path"], df["split"]):
        try:
            splits.append(normalize_split(v))
        except ValueError as err:  # which track: a manifest of thousands of rows
            raise ValueError(f"track {rel}: {err}") from None
    df["split"] = pd.Series(splits, index=df.index, dtype=object)
    df["track_id"] = pd.Series([track_id(v) for v in df["rel_path"]], index=df.index, dtype=str)
    dup = df["rel_path"].duplicated(keep=False)
    if dup.any():
        names = sorted(df.loc[dup, "rel_path"].unique())
        raise ValueError(f"{len(names)} track path(s) listed more than once, e.g. {names[:5]}")
    dup_ids = df["track_id"].duplicated(keep=False)
    if dup_ids.any():  # a SHA-1 prefix collision: astronomically unlikely, but say so if it happens
        raise ValueError(f"track_id collision for {sorted(df.loc[dup_ids, 'rel_path'])[:5]}")
    extras = [c for c in (extra_columns or []) if c in df.columns and c not in TABLE_COLUMNS]
    df = df[list(TABLE_COLUMNS) + extras]
    return df.sort_values("rel_path", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------

CatalogLoader = Callable[..., pd.DataFrame]
"""A loader takes the source (path) as first argument plus keyword options → track table."""

CATALOGS: Registry[CatalogLoader] = Registry("catalog")
"""Catalog loaders by name (filled by :func:`register_catalog`)."""
register_catalog = CATALOGS.register


# ---------------------------------------------------------------------------------------------
# GTZAN-style folders
# ---------------------------------------------------------------------------------------------


@register_catalog("gtzan")
def from_gtzan(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Track table for a folder laid out like GTZAN: ``root/<genre>/<file>``.

    Rule: the label is the **first path component under root**, so ``root/rock/a.wav`` and
    ``root/rock/live/b.wav`` are both ``rock``. Audio files lying directly in ``root`` have no
    genre folder: they are skipped and counted in a warning. ``artist`` and ``split`` are unknown
    (missing). Hidden files and symlinked folders are skipped (see :func:`list_audio_files`).
    """
    root_path = Path(root)
    if not root_path.exists():
        raise FileNotFoundError(f"GTZAN root not found: {root_path}")
    root_abs = Path(os.path.abspath(root_path))
    records = []
    loose: list[str] = []
    for f in list_audio_files(root_path):
        rel = f.relative_to(root_path)
        if len(rel.parts) < 2:
            loose.append(rel.as_posix())
            continue
        records.append({"path": str(root_abs / rel), "rel_path": rel.as_posix(), "label": rel.parts[0]})
    if loose:
        logger.warning(
            "from_gtzan(%s): skipped %d audio file(s) directly in the root (no genre folder), e.g. %s",
            root_path, len(loose), loose[:3],
        )  # fmt: skip
    if not records:
        raise ValueError(
            f"no tracks found under {root_abs}: searched recursively for files ending in "
            f"{', '.join(AUDIO_EXTENSIONS)} inside genre folders (layout root/<genre>/<file>)"
            + (f"; {len(loose)} file(s) directly in the root were skipped" if loose else "")
        )
    return make_table(records)


# ---------------------------------------------------------------------------------------------
# FMA (Free Music Archive)
# ---------------------------------------------------------------------------------------------

_FMA_COLUMNS = {
    "label": ("track", "genre_top"),
    "artist": ("artist", "name"),
    "split": ("set", "split"),
    "subset": ("set", "subset"),
    "artist_id": ("artist", "id"),
}


def is_fma_tracks_csv(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is FMA's ``tracks.csv``: 2-row column header with ``track/genre_top`` and ``set/split``."""
    p = Path(path)
    if p.suffix.lower() != ".csv" or not p.is_file():
        return False
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            top, sub = next(reader), next(reader)
    except (StopIteration, UnicodeDecodeError, csv.Error, OSError):
        return False
    pairs = set(zip((c.strip() for c in top), (c.strip() for c in sub)))
    return {_FMA_COLUMNS["label"], _FMA_COLUMNS["split"]} <= pairs


def _read_fma_tracks(tracks_csv: Path) -> pd.DataFrame:
    """Read FMA's ``tracks.csv`` (``header=[0, 1]``, ``index_col=0``) with an integer track-id index.

    The third header line (``track_id,,,…``) is taken by pandas as the index name; if a reader or a
    hand-made file leaves it as a data row, it is dropped here.
    """
    try:
        df = pd.read_csv(tracks_csv, header=[0, 1], index_col=0, low_memory=False)
    except (ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{tracks_csv}: cannot read as FMA tracks.csv (2-row header expected): {err}") from err
    optional = (_FMA_COLUMNS["artist"], _FMA_COLUMNS["artist_id"])
    missing = [c for c in _FMA_COLUMNS.values() if c not in df.columns and c not in optional]
    if missing:
        raise ValueError(f"{tracks_csv}: missing FMA column(s) {missing} (found {len(df.columns)} columns)")
    ids = pd.to_numeric(pd.Series(df.index, index=df.index), errors="coerce")
    bad = ids.isna()
    if bad.any():
        name_rows = bad & (pd.Series(df.index.astype(str), index=df.index).str.strip() == "track_id")
        if (bad & ~name_rows).any():
            raise ValueError(f"{tracks_csv}: non-integer track ids, e.g. {list(df.index[bad & ~name_rows][:5])}")
        df, ids = df[~bad], ids[~bad]
    df.index = ids.astype("int64").to_numpy()
    return df


def _find_fma_audio_dir(tracks_csv: Path) -> Path:
    """Guess the audio folder: a sibling ``fma_*`` folder (not ``fma_metadata``) of the csv or of its folder."""
    here = tracks_csv.parent.resolve()
    candidates: set[Path] = set()
    for base in (here, here.parent):
        if not base.is_dir():
            continue
        for entry in base.iterdir():
            if entry.name.startswith("fma_") and entry.name != "fma_metadata" and entry.is_dir() and entry != here:
                candidates.add(entry)
    if len(candidates) == 1:
        return candidates.pop()
    if not candidates:
        raise ValueError(
            f"no FMA audio folder found for {tracks_csv}: looked for fma_* folders in {here} and {here.parent}; "
            "pass audio_dir=..."
        )
    raise ValueError(
        f"several FMA audio folders next to {tracks_csv}: {sorted(str(c) for c in candidates)}; "
        "pass audio_dir=... to choose one"
    )


def _id_text(value: Any) -> str:
    """An id as written: ``12`` for 12, 12.0 (a column with gaps reads as float) or ``"12"``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def fma_rel_path(tid: int) -> str:
    """FMA audio path of track ``tid`` relative to the audio folder: ``'000/000002.mp3'`` for 2."""
    name = f"{int(tid):06d}"
    return f"{name[:3]}/{name}.mp3"


@register_catalog("fma")
def from_fma(
    tracks_csv: str | os.PathLike[str],
    audio_dir: str | os.PathLike[str] | None = None,
    subset: str | None = "auto",
) -> pd.DataFrame:
    """Track table for the Free Music Archive (FMA) dataset.

    - ``tracks_csv``: ``fma_metadata/tracks.csv`` (3-line header; read with ``header=[0, 1]``).
    - ``audio_dir``: the ``fma_<size>`` folder with ``000/000002.mp3``-style files; ``None`` → the
      only ``fma_*`` folder (other than ``fma_metadata``) beside the csv or beside its folder.
    - ``subset``: ``"small"``, ``"medium"``, ``"large"`` (``"full"`` = ``"large"``) or ``None`` for all
      rows. Subsets nest (small ⊂ medium ⊂ large), so ``"medium"`` keeps small and medium rows. ``"auto"``
      (default): the audio folder's own (``fma_medium`` → medium, ``fma_full``/``fma_large`` → large), else all.

    ``label`` = ``track/genre_top`` (rows without one are dropped, and counted: most of medium/large has none),
    ``artist`` = ``artist/name`` with its ``artist/id`` (``"Unknown (#12)"``: two artists of one name are two
    groups for the artist-disjoint split and the leakage check),
    ``split`` = ``set/split`` mapped training→train, validation→val, test→test. ``rel_path`` is the
    path under ``audio_dir``. Tracks whose audio file is missing are dropped with a logged count.
    """
    csv_path = Path(tracks_csv)
    if not csv_path.is_file():
        raise FileNotFoundError(f"FMA tracks.csv not found: {csv_path}")
    audio_path = Path(audio_dir) if audio_dir is not None else _find_fma_audio_dir(csv_path)
    if not audio_path.is_dir():
        raise FileNotFoundError(f"FMA audio folder not found: {audio_path}")

    df = _read_fma_tracks(csv_path)
    n_rows = len(df)
    if subset == "auto":
        names = [audio_path.name.lower(), audio_path.resolve().name.lower()]  # as given first: a link fma_medium → x
        subset = next((s for n in names for s in (*FMA_SUBSETS, "full") if n == f"fma_{s}"), None)
        logger.warning("from_fma: subset %s (from the audio folder's name %s; set subset= to choose)",
                       subset or "none: every row with audio", audio_path.name)
    if subset is not None:
        wanted = {"full": "large"}.get(subset.strip().lower(), subset.strip().lower())
        if wanted not in FMA_SUBSETS:
            raise ValueError(f"unknown FMA subset {subset!r}; choose one of {list(FMA_SUBSETS)}, 'full' or None")
        rank = {name: i for i, name in enumerate(FMA_SUBSETS)}
        levels = df[_FMA_COLUMNS["subset"]].map(lambda s: rank.get(str(s).strip().lower(), len(rank)) if pd.notna(s) else len(rank))
        df = df[levels <= rank[wanted]]
    n_subset = len(df)
    labels = df[_FMA_COLUMNS["label"]].map(_clean_optional)
    df = df[labels.notna()]
    labels = labels[labels.notna()]
    n_labelled = len(df)
    if n_subset < n_rows or n_labelled < n_subset:
        logger.warning("from_fma: %d of %d row(s) outside subset %s; %d of the rest without a genre_top (dropped)",
                       n_rows - n_subset, n_rows, subset, n_subset - n_labelled)

    audio_abs = Path(os.path.abspath(audio_path))
    present = {p.relative_to(audio_path).as_posix() for p in list_audio_files(audio_path)}
    artists = df[_FMA_COLUMNS["artist"]] if _FMA_COLUMNS["artist"] in df.columns else pd.Series(None, index=df.index)
    if _FMA_COLUMNS["artist_id"] in df.columns:  # names repeat across artists ("Unknown"): the id tells them apart
        ids = df[_FMA_COLUMNS["artist_id"]]
        artists = pd.Series([f"{_clean_optional(n) or ''} (#{_id_text(i)})".strip() if _clean_optional(i) is not None
                             else n for n, i in zip(artists, ids)], index=df.index)
    records = []
    missing_files = 0
    for tid, label, artist, split in zip(df.index, labels, artists, df[_FMA_COLUMNS["split"]]):
        rel = fma_rel_path(tid)
        if rel not in present:
            missing_files += 1
            continue
        records.append({"path": str(audio_abs / rel), "rel_path": rel, "label": label, "artist": artist, "split": split})
    if missing_files:
        logger.warning(
            "from_fma: dropped %d of %d track(s) whose audio file is missing under %s", missing_files, n_labelled, audio_abs
        )
    if not records:
        raise ValueError(
            f"no FMA tracks found: {n_rows} rows in {csv_path}, {n_labelled} with a genre_top in subset {subset!r}, "
            f"none with an audio file under {audio_abs} (expected e.g. {fma_rel_path(2)})"
        )
    return make_table(records)


# ---------------------------------------------------------------------------------------------
# manifests (CSV / Parquet)
# ---------------------------------------------------------------------------------------------

MANIFEST_REQUIRED: tuple[str, ...] = ("path", "label")
MANIFEST_OPTIONAL: tuple[str, ...] = ("artist", "split")


def _read_manifest(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise ValueError(f"manifest must be .csv or .parquet: {path}")


@register_catalog("manifest")
def from_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Track table from a CSV or Parquet manifest with columns ``path,label[,artist][,split]``.

    - Column names are matched after stripping spaces and lower-casing.
    - Relative ``path`` values are resolved against the manifest's folder; URIs (``s3://…``) are kept
      unchanged. ``rel_path`` is the path relative to the manifest's folder when the file lies under
      it, else the path as given (so ids stay stable when the folder moves).
    - ``split`` values are normalised (train/training, val/valid/validation, test); blank → missing;
      anything else raises ``ValueError``.
    - Other columns (e.g. ``duration_s``) are carried along after the standard ones; ``track_id`` and
      ``rel_path`` columns in the file are ignored (recomputed).
    - Files are not checked for existence (a manifest may list URIs).
    """
    mpath = Path(path)
    if not mpath.is_file():
        raise FileNotFoundError(f"manifest not found: {mpath}")
    raw = _read_manifest(mpath)
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in MANIFEST_REQUIRED if c not in raw.columns]
    if missing:
        raise ValueError(
            f"manifest {mpath} lacks required column(s) {missing}; found {list(raw.columns)} "
            f"(expected {list(MANIFEST_REQUIRED)} plus optional {list(MANIFEST_OPTIONAL)})"
        )
    if raw.columns.duplicated().any():
        raise ValueError(f"manifest {mpath} has duplicated column names: {list(raw.columns)}")
    if raw.empty:
        raise ValueError(f"no tracks found: manifest {mpath} has no rows")
    ignored = [c for c in ("track_id", "rel_path") if c in raw.columns]
    if ignored:
        logger.warning("from_manifest(%s): ignoring column(s) %s; they are recomputed from 'path'", mpath, ignored)

    base = os.path.normpath(os.path.abspath(mpath.parent))
    paths = raw["path"].map(_clean_optional)
    labels = raw["label"].map(_clean_optional)
    for col, values in (("path", paths), ("label", labels)):
        if values.isna().any():
            rows = [int(i) + 2 for i in values.index[values.isna()][:5]]  # +2: header line, 1-based
            raise ValueError(f"manifest {mpath}: {int(values.isna().sum())} row(s) with empty {col!r} (lines {rows}…)")

    resolved, rels = [], []
    for p in paths:
        if is_uri(p):
            resolved.append(p)
            rels.append(p)
            continue
        full = os.path.normpath(p if os.path.isabs(p) else os.path.join(base, p))
        resolved.append(full)
        try:
            inside = os.path.commonpath([base, full]) == base
        except ValueError:  # different drives on Windows
            inside = False
        rels.append(Path(os.path.relpath(full, base)).as_posix() if inside else Path(p).as_posix())

    table = pd.DataFrame({"path": resolved, "rel_path": rels, "label": labels.to_numpy()}, index=raw.index)
    for col in MANIFEST_OPTIONAL:
        table[col] = raw[col].to_numpy() if col in raw.columns else None
    extras = [c for c in raw.columns if c not in TABLE_COLUMNS]
    for col in extras:
        table[col] = raw[col].to_numpy()
    try:
        return make_table(table, extra_columns=extras)
    except ValueError as err:
        raise ValueError(f"manifest {mpath}: {err}") from err


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------


def detect_kind(source: str | os.PathLike[str]) -> str:
    """Guess the catalog kind: a folder → ``gtzan``; FMA's ``tracks.csv`` → ``fma``; other csv/parquet → ``manifest``."""
    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"catalog source not found: {p}")
    if p.is_dir():
        return "gtzan"
    if p.name.lower() == "tracks.csv" and is_fma_tracks_csv(p):
        return "fma"
    if p.suffix.lower() in _MANIFEST_SUFFIXES:
        return "manifest"
    raise ValueError(
        f"cannot tell what kind of catalog {p} is (expected a folder, FMA tracks.csv, or a .csv/.parquet "
        f"manifest); pass kind= one of {sorted(CATALOGS)}"
    )


def load_catalog(source: str | os.PathLike[str], kind: str = "auto", **kw: Any) -> pd.DataFrame:
    """Load any supported dataset as a track table.

    ``kind`` is a key of :data:`CATALOGS` or ``"auto"`` (see :func:`detect_kind`). Extra keywords go
    to the loader, e.g. ``load_catalog("fma_metadata/tracks.csv", audio_dir="fma_small", subset="small")``.

    Raises ``ValueError`` for an unknown kind (listing the known ones) or when no tracks are found,
    ``FileNotFoundError`` naming the path when ``source`` does not exist.
    """
    if kind != "auto" and kind not in CATALOGS:
        raise ValueError(f"unknown catalog kind {kind!r}; known kinds: {['auto', *sorted(CATALOGS)]}")
    if not Path(source).exists():
        raise FileNotFoundError(f"catalog source not found: {source}")
    chosen = detect_kind(source) if kind == "auto" else kind
    loader = CATALOGS[chosen]
    try:
        inspect.signature(loader).bind(source, **kw)
    except TypeError as err:
        raise TypeError(
            f"catalog kind {chosen!r} ({loader.__name__}) does not accept options {sorted(kw)}: {err}"
        ) from None
    logger.debug("load_catalog(%s): kind=%s", source, chosen)
    table = loader(source, **kw)
    if table.empty:  # loaders raise already; this guards third-party registrations
        raise ValueError(f"no tracks found in {source} (kind {chosen!r})")
    return table
