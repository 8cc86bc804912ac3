"""Pins for genre_ray/tags.py: an unchanged genre leaves the file alone; non-Latin genres survive."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from genre_ray.tags import write_genre_tag


def _audio(path, fmt):
    sf.write(path, np.zeros(2205, np.float32), 22_050, format=fmt)
    return path


@pytest.mark.parametrize("name,fmt", [("x.flac", "FLAC"), ("x.wav", "WAV"), ("x.aiff", "AIFF")])
def test_a_file_whose_genre_is_already_right_is_not_rewritten(tmp_path, name, fmt):
    path = _audio(tmp_path / name, fmt)
    assert write_genre_tag(path, "blues").action == "written"
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = path.read_bytes()
    r = write_genre_tag(path, "blues")
    assert (r.action, r.previous) == ("unchanged", "blues")
    assert path.stat().st_mtime_ns == 1_000_000_000 and path.read_bytes() == before  # untouched: no new file_stamp


@pytest.mark.parametrize("name,fmt", [("x.wav", "WAV"), ("x.aiff", "AIFF")])
def test_id3_genres_keep_characters_outside_latin1(tmp_path, name, fmt):
    path = _audio(tmp_path / name, fmt)
    assert write_genre_tag(path, "Ελληνική μουσική").action == "written"
    assert write_genre_tag(path, "Ελληνική μουσική", dry_run=True).previous == "Ελληνική μουσική"
