"""Leakage guard: the same track (by id, by file, by audio content) or the same artist in two splits.

Pure (numpy, pandas, hashlib; audio decoding for :func:`file_content_hash`) — no Ray. The prepare job adds a
``content_hash`` column to ``tracks.parquet`` (:func:`file_content_hash`, run in Ray tasks); the train driver
and prepare call :func:`find_leakage` on the track table and :func:`enforce` on the result *before* any
Ray work:

- a leak is a :class:`~genre_ray.splits.LeakageError` naming the first offenders and their count;
- ``allow=True`` (``--allow-leakage``, config key ``allow_leakage``) turns it into a loud warning, and
  :func:`leakage_tags` marks the MLflow run (``genre_ray.leakage = "ALLOWED: …"``) — this exists only to
  reproduce leaky published settings, whose numbers are then not comparable with a clean split.

Keys compared across splits (registry :data:`LEAKAGE_KEYS`; a key whose column is absent is skipped and
reported in :attr:`LeakageReport.unchecked`):

``track_id``      the catalog id (hash of the relative path)
``path``          the file, resolved (``./a.wav``, ``a.wav`` and a symlink to it are one file)
``content_hash``  SHA-1 of the first :data:`HASH_SECONDS` s of decoded mono 22,050 Hz audio quantised to
                  int16, after leading digital silence: byte copies and lossless re-encodes (wav ↔ flac,
                  another container) collide; a lossy re-encode (mp3 of a wav) does not
``artist``        case- and space-insensitive artist name, when known
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from genre_ray.catalog import is_uri, normalize_split
from genre_ray.registry import Registry
from genre_ray.splits import SPLITS, LeakageError, artist_key

logger = logging.getLogger(__name__)

HASH_SECONDS = 10.0
"""Seconds of audio (after leading digital silence) hashed by :func:`content_hash`."""
HASH_SAMPLE_RATE = 22_050
"""Rate the audio is decoded and resampled to before hashing (the features' rate)."""
CONTENT_HASH = "content_hash"
"""Column of the prepared ``tracks.parquet`` holding :func:`file_content_hash` (``None`` when undecodable/silent)."""
TAG = "genre_ray.leakage"
"""MLflow tag of a training run: ``none (checked by …)`` or ``ALLOWED: …``."""
SHOWN = 5
"""Offenders named in an error message (the count is always given)."""
METADATA_KEYS = ("track_id", "path", "artist")
"""The keys known from the catalog alone (prepare checks them before Ray starts, the content hash later)."""

__all__ = ["CONTENT_HASH", "HASH_SECONDS", "LEAKAGE_KEYS", "METADATA_KEYS", "LeakageError", "LeakageReport",
           "Offender", "TAG", "content_hash", "enforce", "file_content_hash", "find_leakage", "leakage_tags"]


# ---------------------------------------------------------------------------------------------
# content hash
# ---------------------------------------------------------------------------------------------


def content_hash(wave: np.ndarray, sample_rate: int = HASH_SAMPLE_RATE, seconds: float = HASH_SECONDS) -> str | None:
    """``wave (T,)`` mono float in [-1, 1] → SHA-1 hex of its first ``seconds`` after leading digital silence.

    Samples are quantised to int16 (``rint(x × 32767)``, clipped) first, so a float round trip or a lossless
    re-encode gives the same digest. Leading samples that quantise to 0 are skipped (two tracks that both start
    with silence are not "the same"); an all-silent wave has no content to compare: ``None``. A wave shorter
    than ``seconds`` is hashed whole. The rate and length are part of the digest.
    """
    q = np.clip(np.rint(np.asarray(wave, dtype=np.float64).reshape(-1) * 32767.0), -32768, 32767).astype("<i2")
    nonzero = np.flatnonzero(q)
    if nonzero.size == 0:
        return None
    start = int(nonzero[0])
    q = q[start:start + int(round(seconds * sample_rate))]
    h = hashlib.sha1(f"genre-ray-content:{sample_rate}:{seconds:g}:".encode())
    h.update(q.tobytes())
    return h.hexdigest()


def file_content_hash(path: str, sample_rate: int = HASH_SAMPLE_RATE, seconds: float = HASH_SECONDS,
                      max_silence_s: float = 120.0) -> str | None:
    """:func:`content_hash` of a file, decoding only what it needs (streamed: at most ``max_silence_s`` of leading
    silence + ``seconds``). ``None`` for a silent start that long; raises ``audio.DecodeError`` if unreadable."""
    from genre_ray import audio

    need = int(round(seconds * sample_rate))
    cap = need + int(round(max_silence_s * sample_rate))
    blocks: list[np.ndarray] = []
    have, first = 0, None
    stream = audio.decode_stream(path, sample_rate, block_s=min(10.0, max(seconds, 1.0)))
    try:
        for block in stream:
            if first is None:
                nz = np.flatnonzero(np.rint(block * 32767.0))
                if nz.size:
                    first = have + int(nz[0])
            blocks.append(block)
            have += block.shape[0]
            if (first is not None and have - first >= need) or have >= cap:
                break
    finally:
        stream.close()
    if not blocks:
        return None
    return content_hash(np.concatenate(blocks)[:cap], sample_rate, seconds)


# ---------------------------------------------------------------------------------------------
# keys and report
# ---------------------------------------------------------------------------------------------

KeyFn = Callable[[pd.DataFrame], "pd.Series | None"]
"""``key(table) -> Series`` aligned with the table (``None`` entries = unknown), or ``None`` when the table
lacks the column."""

LEAKAGE_KEYS: Registry[KeyFn] = Registry("leakage key")
"""What :func:`find_leakage` compares across splits, in order."""


def _column(table: pd.DataFrame, name: str) -> pd.Series | None:
    return table[name].astype(object) if name in table.columns else None


def _real_path(value: object) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value)
    return text if is_uri(text) else os.path.realpath(os.path.expanduser(text))


def _clean(value: object) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return str(value) or None


LEAKAGE_KEYS.register("track_id")(lambda t: _column(t, "track_id"))
LEAKAGE_KEYS.register("path")(
    lambda t: t["path"].map(_real_path).astype(object) if "path" in t.columns else None)
LEAKAGE_KEYS.register(CONTENT_HASH)(
    lambda t: t[CONTENT_HASH].map(_clean).astype(object) if CONTENT_HASH in t.columns else None)
LEAKAGE_KEYS.register("artist")(
    lambda t: t["artist"].map(artist_key).astype(object) if "artist" in t.columns else None)


@dataclass(frozen=True)
class Offender:
    """One key found in several splits: ``by`` (a :data:`LEAKAGE_KEYS` name), the key, its splits, its tracks."""

    by: str
    key: str
    splits: tuple[str, ...]
    tracks: tuple[str, ...]

    def describe(self, shown: int = 3) -> str:
        key = f"{self.key[:12]}…" if self.by == CONTENT_HASH else repr(self.key)
        names = ", ".join(self.tracks[:shown]) + (f", +{len(self.tracks) - shown}" if len(self.tracks) > shown else "")
        return f"{self.by} {key} in {'/'.join(self.splits)} ({names})"


@dataclass(frozen=True)
class LeakageReport:
    """What :func:`find_leakage` found: offenders (sorted by key kind, then key) and which keys were checked."""

    offenders: tuple[Offender, ...]
    checked_by: tuple[str, ...]
    unchecked: tuple[str, ...] = field(default=())

    @property
    def leaks(self) -> bool:
        return bool(self.offenders)

    @property
    def count(self) -> int:
        """Distinct offending keys (a track leaking by id, path and content counts three times)."""
        return len(self.offenders)

    def counts(self) -> dict[str, int]:
        """Offenders per key kind, e.g. ``{"artist": 2, "content_hash": 1}``."""
        out: dict[str, int] = {}
        for o in self.offenders:
            out[o.by] = out.get(o.by, 0) + 1
        return out

    def message(self, shown: int = SHOWN) -> str:
        if not self.leaks:
            return f"no split leakage (checked by {', '.join(self.checked_by)})"
        kinds = ", ".join(f"{n} by {k}" for k, n in self.counts().items())
        first = "; ".join(o.describe() for o in self.offenders[:shown])
        more = f"; and {self.count - shown} more" if self.count > shown else ""
        return f"split leakage: {self.count} tracks/artists in several splits ({kinds}): {first}{more}"


def find_leakage(tracks: pd.DataFrame, keys: tuple[str, ...] | None = None) -> LeakageReport:
    """Every :data:`LEAKAGE_KEYS` key (or those in ``keys``) that occurs in more than one split of ``tracks``.

    ``tracks`` is a track table (``split`` plus any of ``track_id, path, rel_path, content_hash, artist``); rows
    without a split and ``None`` keys are ignored. Tracks are named by ``rel_path`` (else ``path``, else
    ``track_id``). Deterministic: offenders sorted by key kind (registry order), then key.
    """
    if "split" not in tracks.columns:
        raise ValueError(f"find_leakage needs a 'split' column; table has {list(tracks.columns)}")
    names = next((tracks[c].astype(str) for c in ("rel_path", "path", "track_id") if c in tracks.columns),
                 pd.Series([str(i) for i in tracks.index], index=tracks.index))
    split = tracks["split"].map(normalize_split)
    offenders: list[Offender] = []
    checked, unchecked = [], []
    for by in keys or tuple(LEAKAGE_KEYS):
        values = LEAKAGE_KEYS.lookup(by)(tracks)
        if values is None:
            unchecked.append(by)
            continue
        checked.append(by)
        frame = pd.DataFrame({"key": values, "split": split, "name": names}).dropna(subset=["key", "split"])
        for key, group in frame.groupby("key", sort=True):
            spans = sorted(set(group["split"]), key=lambda s: SPLITS.index(s) if s in SPLITS else len(SPLITS))
            if len(spans) > 1:
                offenders.append(Offender(by, str(key), tuple(spans), tuple(sorted(set(group["name"])))))
    return LeakageReport(tuple(offenders), tuple(checked), tuple(unchecked))


def enforce(report: LeakageReport, allow: bool, where: str) -> LeakageReport:
    """Raise :class:`LeakageError` for a leaky split unless ``allow``; then warn loudly instead. Returns ``report``.

    Keys that could not be checked are logged (``content_hash`` absent = data prepared before content hashes:
    checked by path, track id and artist only).
    """
    if CONTENT_HASH in report.unchecked:
        logger.warning("%s: no %s column (data prepared before content hashes): checked by %s only — "
                       "re-run prepare to also catch copies of one recording under two names",
                       where, CONTENT_HASH, ", ".join(report.checked_by))
    if not report.leaks:
        logger.info("%s: %s", where, report.message())
        return report
    if not allow:
        raise LeakageError(f"{where}: {report.message()}. A model would be tested on what it trained on. Fix the "
                           "split (the random split groups by artist) or pass --allow-leakage (key allow_leakage) "
                           "to reproduce a leaky setting on purpose; the run is then tagged as not comparable.")
    banner = "!" * 100
    logger.warning("\n%s\n%s: LEAKAGE ALLOWED — %s.\nResults of this run are NOT comparable with a clean split.\n%s",
                   banner, where, report.message(), banner)
    return report


def leakage_tags(report: LeakageReport) -> dict[str, str]:
    """MLflow tags of a run trained on ``report``'s split: :data:`TAG` (+ ``TAG.offenders`` when leaky)."""
    checked = ", ".join(report.checked_by)
    if not report.leaks:
        return {TAG: f"none (checked by {checked})"}
    return {TAG: f"ALLOWED: {report.count} tracks/artists in several splits — results are not comparable",
            f"{TAG}.offenders": report.message(shown=20)[:5000]}
