"""Benchmark plumbing (the benchmarks themselves are run by hand: `genre-ray bench label`, `label-memory`)."""

from __future__ import annotations

import sys

import soundfile as sf

from genre_ray.bench import BENCHMARKS, long_file, run_measured, synth_library
from genre_ray.cli import main


def test_memory_sampler_sees_a_child_allocation():
    code = "import numpy as np, time; a = np.ones(300 * 2**20 // 8); time.sleep(0.5)"
    m = run_measured([sys.executable, "-c", code], env={}, interval_s=0.05)
    assert m["returncode"] == 0
    assert 300 <= m["peak_rss_mb"]["driver"] < 1000 and m["peak_tree_rss_mb"] >= 300


def test_library_and_long_file_helpers(tmp_path):
    assert len(synth_library(tmp_path / "small", tracks=13, seconds=0.5)) == 13
    paths = synth_library(tmp_path / "lib", tracks=40, seconds=0.5)
    assert len(paths) == 40 and {p.suffix for p in paths} == {".wav", ".flac", ".mp3", ".ogg"}
    long = long_file(tmp_path / "long.flac", minutes=1.5)
    info = sf.info(long)
    assert info.frames == 90 * info.samplerate


def test_bench_cli_validates_arguments(capsys):
    assert {"label", "label-memory"} <= set(BENCHMARKS)
    assert main(["bench", "label", "--set", "bogus=1"]) == 2
    assert main(["bench", "nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
