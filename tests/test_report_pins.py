"""Pins for genre_ray/report.py and genre_ray/tracking.py's probe."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genre_ray import report


def _labels(rows):
    return pd.DataFrame(rows, columns=["path", "genre", "confidence", "duration_s", "n_windows", "status", "error"])


def test_a_path_labelled_twice_keeps_its_last_row(tmp_path):
    d = tmp_path / "labels"
    d.mkdir()
    for name, genre in (("part-1.parquet", "rock"), ("part-2.parquet", "jazz")):
        pq.write_table(pa.Table.from_pandas(_labels([["/m/a.wav", genre, 0.9, 30.0, 10, "ok", ""]])), d / name)
    labels, _, _ = report.read_labels_dir(tmp_path)
    assert list(labels["genre"]) == ["jazz"]


def test_the_timeline_keeps_every_track_that_fits_the_budget_exactly():
    classes = ["a", "b", "c"]
    labels = _labels([["/m/x.wav", "a", 0.9, 4.0, 2, "ok", ""], ["/m/y.wav", "b", 0.9, 4.0, 2, "ok", ""]])
    tl = pd.DataFrame({"path": ["/m/x.wav"] * 2 + ["/m/y.wav"] * 2, "window": [0, 1, 0, 1],
                       "start_s": [0.0, 1.0, 0.0, 1.0], "end_s": [2.0, 3.0, 2.0, 3.0],
                       "p_a": [0.8] * 4, "p_b": [0.1] * 4, "p_c": [0.1] * 4})
    # top1: 6 bytes a window; the first track's 2 windows take exactly 12
    got = report._timeline_payload(labels, tl, classes, budget=12)
    assert got["mode"] == "top1" and got["tracks_embedded"] == 1 and got["rows"] == [0]


def test_script_json_has_no_markup_characters():
    text = report._json_for_script({"t": "</script><b>AC&DC</b>", "n": 1})
    assert not any(c in text for c in "<>&")
    import json

    assert json.loads(text)["t"] == "</script><b>AC&DC</b>"


def test_the_report_is_readable_by_others_whatever_the_umask(tmp_path):
    d = tmp_path / "labels"
    d.mkdir()
    pq.write_table(pa.Table.from_pandas(_labels([["/m/a.wav", "rock", 0.9, 30.0, 10, "ok", ""]])), d / "p.parquet")
    old = os.umask(0o077)
    try:
        out = report.write_report(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_an_https_tracking_server_is_probed_too():
    from genre_ray.tracking import TrackingError, check_server

    with pytest.raises(TrackingError, match="unreachable"):
        check_server("https://127.0.0.1:9", timeout_s=2)
