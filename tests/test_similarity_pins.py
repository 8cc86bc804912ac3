"""Pins for genre_ray/similarity.py: "most similar first; ties by row"."""

from __future__ import annotations

import numpy as np
import pytest

from genre_ray.similarity import EmbeddingIndex, SimilarityError, nearest, resolve_track


def test_ties_are_broken_by_row_when_every_row_is_returned():
    v = np.tile(np.array([[0.6, 0.8]], np.float32), (4, 1))  # four copies of one recording
    rows, sims = nearest(v, v[0], k=10)
    assert rows.tolist() == [0, 1, 2, 3]
    rows, _ = nearest(v, v[0], k=10, exclude=0)
    assert rows.tolist() == [1, 2, 3]
    v2 = np.array([[1, 0], [0.6, 0.8], [0.6, 0.8], [0, 1]], np.float32)
    rows, _ = nearest(v2, np.array([0.6, 0.8], np.float32), k=3)
    assert rows.tolist() == [1, 2, 3] or rows.tolist()[:2] == [1, 2]


def test_ties_are_broken_by_row_when_only_some_are_returned():
    """200 copies of one recording: the 5 nearest are the first 5 rows (argpartition alone kept an arbitrary few)."""
    v = np.tile(np.array([[0.6, 0.8]], np.float32), (200, 1))
    rows, _ = nearest(v, v[0], k=5, exclude=0)
    assert rows.tolist() == [1, 2, 3, 4, 5]


def test_a_substring_that_matches_several_tracks_is_refused_not_guessed():
    idx = EmbeddingIndex(np.array(["/m/a/song.flac", "/m/b/song.flac"], object), np.array(["x", "y"], object),
                         np.eye(2, dtype=np.float32))
    with pytest.raises(SimilarityError, match="matches 2 tracks"):
        resolve_track(idx, "song.flac")
    assert resolve_track(idx, "b/song") == 1


def test_embeddings_of_different_lengths_are_refused(tmp_path):
    """Two label runs with different models into one OUT: 2-d and 4-d vectors must not be reshaped into a garbled
    index (6 floats → three 2-d 'tracks' for two paths)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genre_ray.similarity import load_index

    (tmp_path / "labels").mkdir()
    for name, emb in (("a", [0.6, 0.8]), ("b", [0.5, 0.5, 0.5, 0.5])):
        pq.write_table(pa.table({"path": [f"/m/{name}.flac"], "genre": ["x"], "status": ["ok"],
                                 "embedding": pa.array([emb], pa.list_(pa.float32()))}),
                       tmp_path / "labels" / f"part-{name}.parquet")
    with pytest.raises(SimilarityError, match="different lengths"):
        load_index(tmp_path)


def test_a_track_that_did_not_decode_is_named_as_such_not_as_unknown(tmp_path):
    """`genre-ray similar corrupt` said "no labelled track matches", though the file was in the labels as an error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genre_ray.similarity import load_index

    (tmp_path / "labels").mkdir()
    pq.write_table(pa.table({"path": ["/m/a.flac", "/m/corrupt.mp3"], "genre": ["x", None], "status": ["ok", "error"],
                             "error": ["", "no decoder could read it"],
                             "embedding": pa.array([[0.6, 0.8], None], pa.list_(pa.float32()))}),
                   tmp_path / "labels" / "part-0.parquet")
    idx = load_index(tmp_path)
    assert idx.paths.tolist() == ["/m/a.flac"]
    with pytest.raises(SimilarityError, match=r"/m/corrupt.mp3 has no embedding to compare: it is in the labels with "
                                              r"status error: no decoder could read it"):
        resolve_track(idx, "corrupt")
    with pytest.raises(SimilarityError, match="no labelled track matches 'nothing'"):
        resolve_track(idx, "nothing")
