"""Train/val/test splits of a track table — per track and per artist, *before* any windowing.

Pure (numpy, pandas) — no Ray. Strategies are registered in :data:`SPLIT_STRATEGIES` with
:func:`register_split_strategy`:

- ``"random"`` (default): seeded, stratified by label, grouped by artist when the table knows any
  artist (all tracks of one artist land in one split; a track without an artist is its own group);
- ``"predefined"``: keep the table's own ``split`` column (e.g. FMA's official split, or a manifest's);
- ``"gtzan-ff"``: the fault-filtered GTZAN partition (Kereliuk, Sturm & Larsen 2015) shipped as package
  data in ``genre_ray/data/gtzan_ff/``, matched by (genre, clip number) whatever the file extension.

:func:`assign_splits` applies a strategy; :func:`check_no_leakage` verifies that no track and no artist
sits in two splits; :func:`split_summary` counts tracks per split × label.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from genre_ray.catalog import normalize_split
from genre_ray.registry import Registry

logger = logging.getLogger(__name__)

SPLITS: tuple[str, str, str] = ("train", "val", "test")
"""Canonical split names, in order (``fractions`` arguments follow this order)."""

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)

UNASSIGNED = "unassigned"
"""Row name used by :func:`split_summary` for tracks without a split."""


class LeakageError(ValueError):
    """A track or an artist appears in more than one split."""


SplitStrategy = Callable[..., pd.Series]
"""``strategy(table, *, fractions, seed) -> Series`` of split names (or ``None``) aligned with ``table.index``."""

SPLIT_STRATEGIES: Registry[SplitStrategy] = Registry("split strategy")
"""Split strategies by name (filled by :func:`register_split_strategy`)."""
register_split_strategy = SPLIT_STRATEGIES.register


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def artist_key(value: Any) -> str | None:
    """Artist identity used for grouping and leakage checks: stripped and case-folded; blank → ``None``."""
    if _is_missing(value):
        return None
    text = " ".join(str(value).split()).casefold()
    return text or None


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    fr = np.asarray(list(fractions), dtype=float)
    if fr.shape != (len(SPLITS),):
        raise ValueError(f"fractions must have {len(SPLITS)} values for {SPLITS}, got {list(fractions)}")
    if not np.all(np.isfinite(fr)) or np.any(fr < 0):
        raise ValueError(f"fractions must be finite and >= 0, got {list(fractions)}")
    if not math.isclose(float(fr.sum()), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must sum to 1, got {list(fractions)} (sum {fr.sum():.6g})")
    return fr


def _require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} needs column(s) {missing}; table has {list(table.columns)}")


# ---------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------


@register_split_strategy("random")
def random_split(table: pd.DataFrame, *, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0) -> pd.Series:
    """Seeded split, stratified by label and grouped by artist.

    Groups: one per (normalised, see :func:`artist_key`) artist; tracks without an artist form one group per
    ``content_hash`` when the table has that column (copies of one recording under two names — GTZAN has some —
    stay together), else groups of one. A group never straddles splits.

    Algorithm (deterministic for a given ``seed`` and table content, independent of row order):

    1. *coverage* — for each label (rarest first) and each split with a positive fraction that has no
       track of that label yet, place one not-yet-placed group holding the label there (random pick
       among groups small enough for that split's target, else the smallest). Every split therefore
       gets each label whenever the label has at least 3 groups (one per split).
    2. *fill* — the remaining groups, in seeded random order, each go to the split where they reduce
       the distance to the per-label targets ``fraction × label count`` the most (ties: the split
       furthest below its target, relatively).

    Returns a ``Series`` of ``"train"``/``"val"``/``"test"`` aligned with ``table.index``.
    """
    _require_columns(table, ("track_id", "label"), "split strategy 'random'")
    fr = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    n = len(table)
    if n == 0:
        return pd.Series([], index=table.index, dtype=object)

    labels = table["label"].astype(str).to_numpy()
    ids = table["track_id"].astype(str).to_numpy()
    artists = table["artist"] if "artist" in table.columns else pd.Series([None] * n, index=table.index)
    hashes = table["content_hash"] if "content_hash" in table.columns else pd.Series([None] * n, index=table.index)
    keys = [  # an artist's tracks form one group; so do copies of one recording (same content hash)
        f"artist:{a}" if a is not None else f"content:{h}" if isinstance(h, str) and h else f"track:{t}"
        for a, h, t in zip((artist_key(v) for v in artists), hashes, ids)
    ]

    # group and label indices, from sorted names so the result does not depend on row order
    group_names, group_of_row = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    label_names, label_of_row = np.unique(labels, return_inverse=True)
    n_groups, n_labels = len(group_names), len(label_names)
    counts = np.zeros((n_groups, n_labels), dtype=np.int64)
    np.add.at(counts, (group_of_row, label_of_row), 1)
    sizes = counts.sum(axis=1)
    rank = np.empty(n_groups, dtype=np.int64)
    rank[rng.permutation(n_groups)] = np.arange(n_groups)  # seeded random order of groups

    target = fr[:, None] * counts.sum(axis=0)[None, :]  # (3, L) tracks wanted per split and label
    current = np.zeros_like(target)
    placed = np.full(n_groups, -1, dtype=np.int64)
    active = [k for k in range(len(SPLITS)) if fr[k] > 0]

    def place(g: int, k: int) -> None:
        placed[g] = k
        current[k] += counts[g]

    # 1. coverage: each active split gets each label, rarest labels first
    has_label = counts > 0
    groups_per_label = has_label.sum(axis=0)
    for lab in sorted(range(n_labels), key=lambda i: (groups_per_label[i], label_names[i])):
        missing = [k for k in active if current[k, lab] == 0]
        if not missing:
            continue
        candidates = [g for g in np.flatnonzero(has_label[:, lab]) if placed[g] < 0]
        candidates.sort(key=lambda g: rank[g])
        # if groups are short, serve splits in SPLITS order (train first); then smallest fraction first
        missing = sorted(missing[: len(candidates)], key=lambda k: (fr[k], k))
        for k in missing:
            room = max(1.0, target[k, lab] - current[k, lab])
            fitting = [g for g in candidates if sizes[g] <= room]
            g = fitting[0] if fitting else min(candidates, key=lambda c: (sizes[c], rank[c]))
            candidates.remove(g)
            place(g, k)
    short = [
        f"{label_names[lab]!s} ({int(groups_per_label[lab])} group(s))"
        for lab in range(n_labels)
        if any(current[k, lab] == 0 for k in active)
    ]
    if short:
        logger.warning("random split: too few tracks/artists to put every label in every split: %s", short)

    # 2. fill: remaining groups in random order, best reduction of |current - target|
    safe_target = np.maximum(target, 1e-9)
    for g in sorted(np.flatnonzero(placed < 0), key=lambda g: rank[g]):
        c = counts[g]
        best_k, best_key = active[0], None
        for k in active:
            delta = float(np.sum(np.abs(current[k] + c - target[k]) - np.abs(current[k] - target[k])))
            relative_room = float(np.sum(c * (target[k] - current[k]) / safe_target[k]))
            key = (delta, -relative_room, k)
            if best_key is None or key < best_key:
                best_k, best_key = k, key
        place(g, best_k)

    split_names = np.asarray(SPLITS, dtype=object)[placed[group_of_row]]
    return pd.Series(split_names, index=table.index, dtype=object)


@register_split_strategy("predefined")
def predefined_split(table: pd.DataFrame, *, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0) -> pd.Series:
    """Keep the table's own ``split`` column (normalised: training→train, validation→val …).

    ``fractions`` and ``seed`` are ignored. Raises ``ValueError`` if the column is absent or any
    track has no split.
    """
    _require_columns(table, ("split",), "split strategy 'predefined'")
    values = pd.Series([normalize_split(v) for v in table["split"]], index=table.index, dtype=object)
    missing = values.isna()
    if missing.any():
        name_col = "rel_path" if "rel_path" in table.columns else "track_id" if "track_id" in table.columns else None
        examples = list(table.loc[missing, name_col][:5]) if name_col else list(table.index[missing][:5])
        raise ValueError(
            f"split strategy 'predefined': {int(missing.sum())} of {len(table)} track(s) have no split, "
            f"e.g. {examples}; fill the 'split' column or use strategy 'random'"
        )
    return values


GTZAN_FF_FILES: dict[str, str] = {
    "train": "train_filtered.txt",
    "val": "valid_filtered.txt",
    "test": "test_filtered.txt",
}
"""Package-data list file of each split of the fault-filtered GTZAN partition."""

_GTZAN_NAME = re.compile(r"^(?P<genre>[A-Za-z]+)\.(?P<num>\d+)(?:\.[A-Za-z0-9]+)?$")


def gtzan_clip_key(name: str) -> tuple[str, int] | None:
    """``(genre, clip number)`` of a GTZAN file name or path, any extension; ``None`` if not GTZAN-like.

    >>> gtzan_clip_key("blues/blues.00012.wav"), gtzan_clip_key("Rock.00007.au"), gtzan_clip_key("x.mp3")
    (('blues', 12), ('rock', 7), None)
    """
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    m = _GTZAN_NAME.match(base)
    if not m:
        return None
    return m.group("genre").lower(), int(m.group("num"))


def _read_package_list(file_name: str) -> str:
    try:
        return (resources.files("genre_ray") / "data" / "gtzan_ff" / file_name).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, TypeError, NotADirectoryError):
        # fallback for unusual installs (e.g. namespace package quirks): the file beside this module
        return (Path(__file__).parent / "data" / "gtzan_ff" / file_name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def gtzan_ff_lists() -> Mapping[tuple[str, int], str]:
    """``{(genre, clip number): split}`` of the fault-filtered GTZAN partition (930 clips: 443/197/290).

    Read once from package data with ``importlib.resources``. The mapping is read-only.
    """
    from types import MappingProxyType

    out: dict[tuple[str, int], str] = {}
    for split, file_name in GTZAN_FF_FILES.items():
        for line_no, line in enumerate(_read_package_list(file_name).splitlines(), start=1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            key = gtzan_clip_key(entry)
            if key is None:
                raise ValueError(f"gtzan-ff list {file_name}:{line_no}: not a GTZAN clip name: {entry!r}")
            if key in out and out[key] != split:
                raise ValueError(f"gtzan-ff lists put {entry!r} in both {out[key]!r} and {split!r}")
            out[key] = split
    return MappingProxyType(out)


@register_split_strategy("gtzan-ff")
def gtzan_ff_split(table: pd.DataFrame, *, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0) -> pd.Series:
    """The fault-filtered GTZAN partition, matched by (genre, clip number) from the file name.

    ``blues.00012.wav``, ``blues/blues.00012.au`` and ``s3://b/x/blues.00012.mp3`` all match the list
    entry ``blues/blues.00012.wav``. Tracks not in any list get ``None`` (:func:`assign_splits` drops
    them). ``fractions`` and ``seed`` are ignored. Raises ``ValueError`` when no track matches.
    """
    name_col = "rel_path" if "rel_path" in table.columns else "path"
    _require_columns(table, (name_col,), "split strategy 'gtzan-ff'")
    lists = gtzan_ff_lists()
    keys = [gtzan_clip_key(str(v)) for v in table[name_col]]
    values = pd.Series([lists.get(k) if k is not None else None for k in keys], index=table.index, dtype=object)
    if values.notna().sum() == 0:
        examples = list(table[name_col][:3])
        raise ValueError(
            f"split strategy 'gtzan-ff': none of the {len(table)} track(s) matches the fault-filtered GTZAN lists. "
            "gtzan-ff needs GTZAN file names like 'blues.00012.wav' (genre.NNNNN.<ext>, any extension); "
            f"got e.g. {examples}"
        )
    matched = pd.Series([k for k, v in zip(keys, values) if v is not None])
    dup = matched.duplicated(keep=False)
    if dup.any():
        logger.warning(
            "gtzan-ff: %d track(s) share a (genre, clip) with another track (e.g. both .wav and .au), e.g. %s",
            int(dup.sum()), sorted(set(matched[dup]))[:3],
        )  # fmt: skip
    return values


# ---------------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------------


def resolve_split(strategy: str, table: pd.DataFrame) -> str:
    """The split strategy to use: ``auto`` → ``predefined`` when the source gave every track a split (a manifest's
    ``split`` column, FMA's ``set/split``), else ``random``; any other name as it is. Says when a source's own
    splits are not used: ``random`` asked for although every track has one, or only some tracks have one."""
    given = table["split"].notna() if "split" in table.columns else pd.Series(False, index=table.index)
    if strategy == "auto":
        if len(table) and given.all():
            logger.info("split: auto → predefined (the source gives every track its split)")
            return "predefined"
        if given.any():
            logger.warning("split: auto → random: %d of %d tracks have a split in the source, the rest none; fill "
                           "the split column and pass split=predefined to keep the source's", int(given.sum()),
                           len(table))
        else:
            logger.info("split: auto → random (the source gives no splits)")
        return "random"
    if strategy == "random" and len(table) and given.all():
        logger.warning("split=random re-splits the tracks: the source's own split column (every track has one) is "
                       "not used; split=predefined (or auto, the default) keeps it")
    return strategy


def assign_splits(
    table: pd.DataFrame,
    strategy: str = "random",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> pd.DataFrame:
    """Return a copy of ``table`` with its ``split`` column set by ``strategy`` (see :data:`SPLIT_STRATEGIES`).

    Rows that get no split (e.g. GTZAN clips outside the gtzan-ff lists) are dropped and counted in
    the log; the index is reset. ``fractions`` (train, val, test) and ``seed`` are used by ``"random"``.
    The result is checked with :func:`check_no_leakage`: a leak raises for ``"random"`` (a bug) and is
    logged as a warning for strategies that take the split from outside (``predefined``, ``gtzan-ff``).
    """
    split_fn = SPLIT_STRATEGIES.lookup(strategy)
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"assign_splits expects a pandas DataFrame track table, got {type(table).__name__}")
    if table.empty:
        raise ValueError("assign_splits: the track table is empty")
    _check_fractions(fractions)
    splits = split_fn(table, fractions=tuple(fractions), seed=seed)
    out = table.copy()
    out["split"] = pd.Series(list(splits.reindex(table.index)), index=table.index, dtype=object)
    unassigned = out["split"].isna()
    if unassigned.any():
        logger.warning(
            "assign_splits(%s): dropped %d of %d track(s) that no split claims", strategy, int(unassigned.sum()), len(out)
        )
        out = out[~unassigned]
    out = out.reset_index(drop=True)
    try:
        check_no_leakage(out)
    except LeakageError as err:
        if strategy == "random":
            raise
        logger.warning("assign_splits(%s): %s", strategy, err)
    return out


def check_no_leakage(table: pd.DataFrame) -> None:
    """Raise :class:`LeakageError` naming offenders if a ``track_id`` or a non-null artist is in two splits.

    Rows without a split are ignored; artists are compared with :func:`artist_key` (case-insensitive).
    """
    _require_columns(table, ("track_id", "split"), "check_no_leakage")
    split = pd.Series([normalize_split(v) for v in table["split"]], index=table.index, dtype=object)
    has = split.notna()
    problems: list[str] = []

    def _offenders(keys: pd.Series, what: str) -> None:
        frame = pd.DataFrame({"key": keys[has], "split": split[has]}).dropna()
        spans = frame.groupby("key")["split"].agg(lambda s: sorted(set(s), key=SPLITS.index))
        bad = spans[spans.map(len) > 1]
        if len(bad):
            shown = ", ".join(f"{k!r} ({'/'.join(v)})" for k, v in list(bad.items())[:10])
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            problems.append(f"{len(bad)} {what} in more than one split: {shown}{more}")

    _offenders(table["track_id"].astype(object), "track_id(s)")
    if "artist" in table.columns:
        _offenders(pd.Series([artist_key(a) for a in table["artist"]], index=table.index, dtype=object), "artist(s)")
    if problems:
        raise LeakageError("split leakage: " + "; ".join(problems))


def split_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Track counts per split (rows: train, val, test[, unassigned]) × label (columns, sorted) + ``total``.

    >>> split_summary(table)  # doctest: +SKIP
    label  blues  rock  total
    split
    train     70    70    140
    val       15    15     30
    test      15    15     30
    """
    _require_columns(table, ("label",), "split_summary")
    if "split" in table.columns:
        split = [normalize_split(v) or UNASSIGNED for v in table["split"]]
    else:
        split = [UNASSIGNED] * len(table)
    frame = pd.DataFrame({"split": split, "label": table["label"].astype(str).to_numpy()})
    counts = frame.groupby(["split", "label"]).size().unstack(fill_value=0)
    rows = list(SPLITS) + ([UNASSIGNED] if UNASSIGNED in counts.index else [])
    cols = sorted(frame["label"].unique())
    counts = counts.reindex(index=rows, columns=cols, fill_value=0).astype("int64")
    counts["total"] = counts.sum(axis=1)
    counts.index.name = "split"
    counts.columns.name = "label"
    return counts
