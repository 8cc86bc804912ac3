"""Nearest tracks by cosine similarity of their embeddings (the labels' ``embedding`` column) — exact search in
NumPy, no Ray.

Track embeddings are unit vectors, so cosine similarity is a dot product: one ``(N, D) @ (D,)`` matrix-vector
product and an ``argpartition`` — O(N·D) time and the ``(N, D)`` float32 matrix in memory (see the README for
what that means at 100k–1M tracks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

EMBEDDING = "embedding"


class SimilarityError(ValueError):
    """A query that cannot be answered (no embeddings, no/ambiguous track match); the message says why."""


@dataclass
class EmbeddingIndex:
    """``paths (N,)``, ``genres (N,)`` (top-1 label), ``vectors (N, D)`` float32 unit rows; ``left_out``: path →
    why a labelled file has no embedding (its status and error), to say so when one is asked for."""

    paths: np.ndarray
    genres: np.ndarray
    vectors: np.ndarray
    left_out: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)


def load_index(labels_out: str | Path) -> EmbeddingIndex:
    """The ok rows with an embedding from ``OUT/labels/*.parquet`` (or a folder/file of label shards)."""
    root = Path(labels_out)
    folder = root / "labels" if (root / "labels").is_dir() else root
    shards = sorted(folder.glob("*.parquet")) if folder.is_dir() else [folder] if folder.is_file() else []
    if not shards:
        raise SimilarityError(f"no labels Parquet under {labels_out} (give the --out of `genre-ray label`)")
    tables = []
    for s in shards:
        names = pq.read_schema(s).names
        if EMBEDDING not in names:
            raise SimilarityError(f"{s} has no '{EMBEDDING}' column: label with embeddings on "
                                  "(`--set embeddings=true`, the default) into a new --out")
        part = pq.read_table(s, columns=["path", "genre", "status", EMBEDDING, *(["error"] if "error" in names else [])])
        if "error" not in names:
            part = part.append_column("error", pa.nulls(part.num_rows, pa.string()))
        tables.append(part)
    t = pa.concat_tables(tables)
    keep = pc.and_(pc.equal(t["status"], "ok"), pc.is_valid(t[EMBEDDING]))
    out = t.filter(pc.invert(keep))
    left_out = {p: f"status {st}" + (f": {e}" if e else "") for p, st, e in
                zip(out["path"].to_pylist(), out["status"].to_pylist(), out["error"].to_pylist())}
    t = t.filter(keep)
    if t.num_rows == 0:
        return EmbeddingIndex(np.array([], object), np.array([], object), np.zeros((0, 0), np.float32), left_out)
    col = t[EMBEDDING].combine_chunks()
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if len(set(lengths.tolist())) != 1:
        raise SimilarityError(f"{labels_out}: embeddings of different lengths {sorted(set(lengths.tolist()))}")
    vectors = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, int(lengths[0]))
    return EmbeddingIndex(np.array(t["path"].to_pylist(), object), np.array(t["genre"].to_pylist(), object),
                          vectors, left_out)


def resolve_track(index: EmbeddingIndex, query: str) -> int:
    """Row of ``query``: a path exactly as stored (a local file's path in any spelling: ``./lib/x.flac``, as the
    label job stores it, absolute), else the one path containing it as a substring."""
    import os

    spellings = [query] if "://" in query else [query, os.path.abspath(os.path.expanduser(query))]
    for q in spellings:
        exact = np.flatnonzero(index.paths == q)
        if len(exact):
            return int(exact[0])
    hits = [i for i, p in enumerate(index.paths) if query in p]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        unusable = [p for p in index.left_out if p in spellings or query in p]
        if len(unusable) == 1:  # labelled, but it did not decode (or was skipped): nothing to compare
            raise SimilarityError(f"{unusable[0]} has no embedding to compare: it is in the labels with "
                                  f"{index.left_out[unusable[0]]}")
        raise SimilarityError(f"no labelled track matches {query!r} ({len(index)} tracks with embeddings)")
    shown = "\n  ".join(str(index.paths[i]) for i in hits[:10])
    more = f"\n  … and {len(hits) - 10} more" if len(hits) > 10 else ""
    raise SimilarityError(f"{query!r} matches {len(hits)} tracks; give more of the path:\n  {shown}{more}")


def nearest(vectors: np.ndarray, query: np.ndarray, k: int, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by cosine similarity: ``vectors (N, D)`` unit rows, ``query (D,)`` →
    ``(rows (k',), similarities (k',))``, most similar first, ``k' = min(k, N - excluded)``; ties by row."""
    sims = vectors @ query.astype(np.float32)
    if exclude is not None:
        sims[exclude] = -np.inf
    n = len(sims) - (exclude is not None)
    k = max(0, min(k, n))
    if k == 0:
        return np.zeros(0, int), np.zeros(0, np.float32)
    if k < len(sims):  # the k best, and every row tied with the k-th (argpartition keeps an arbitrary few of them)
        kth = sims[np.argpartition(-sims, k - 1)[k - 1]]
        part = np.flatnonzero(sims >= kth)
    else:
        part = np.arange(len(sims))
    order = part[np.lexsort((part, -sims[part]))][:k]
    return order, sims[order]


def similar(labels_out: str | Path, track: str, k: int = 10) -> tuple[str, list[tuple[str, str, float]]]:
    """``(the resolved track's path, [(path, genre, cosine similarity)] of its k nearest other tracks)``."""
    index = load_index(labels_out)
    if len(index) == 0:
        raise SimilarityError(f"{labels_out}: no ok track with an embedding")
    i = resolve_track(index, track)
    rows, sims = nearest(index.vectors, index.vectors[i], k, exclude=i)
    return str(index.paths[i]), [(str(index.paths[j]), str(index.genres[j]), float(s)) for j, s in zip(rows, sims)]
