"""Prepare's per-track windowing (no Ray): noise and random-offset copies for training only; catalogs refused before
any work; tracks that cannot be read take no split slot (integration: a real local Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from genre_ray.features import FeatureConfig
from genre_ray.pipelines.prepare import track_windows

FEATURES = FeatureConfig(n_mels=32, height=32, width=32, hop_s=3.0)  # disjoint 3-s windows


def _rows(tmp_path, split, **kw):
    rng = np.random.default_rng(0)
    path = tmp_path / "clip.wav"
    t = np.arange(int(9.5 * 22050)) / 22050
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32), 22050)
    row = {"track_id": "ab12cd34ef", "label_idx": 1, "path": str(path), "split": split}
    return list(track_windows(row, FEATURES, seed=0, **kw))


def test_offset_copies_fall_between_the_regular_windows(tmp_path):
    rows = _rows(tmp_path, "train", noise_copies=1, noise_snr_db=10.0, offset_copies=2)
    clean = [r for r in rows if not r["augmented"]]
    assert [r["start_s"] for r in clean] == [0.0, 3.0, 6.0]  # 9.5 s → three disjoint 3-s windows
    extra = [r for r in rows if r["augmented"]]
    noisy, shifted = extra[:3], extra[3:]
    assert [r["start_s"] for r in noisy] == [0.0, 3.0, 6.0]
    assert len(shifted) >= 4
    offsets = {round(r["start_s"] % 3.0, 6) for r in shifted}
    assert all(0 < o < 3.0 for o in offsets)
    assert all(r["image"].shape == (1, 32, 32) and r["error"] == "" for r in rows)
    assert not np.array_equal(noisy[0]["image"], clean[0]["image"])
    # deterministic per seed and track
    again = _rows(tmp_path, "train", noise_copies=1, noise_snr_db=10.0, offset_copies=2)
    assert [r["start_s"] for r in again] == [r["start_s"] for r in rows]


def test_val_and_test_windows_stay_clean(tmp_path):
    for split in ("val", "test"):
        rows = _rows(tmp_path, split, noise_copies=2, noise_snr_db=10.0, offset_copies=2)
        assert [r["start_s"] for r in rows] == [0.0, 3.0, 6.0] and not any(r["augmented"] for r in rows)


def _track(tmp_path, name, wave, track_id="ab12cd34ef", split="train", **kw):
    sf.write(tmp_path / name, wave.astype(np.float32), 22050)
    row = {"track_id": track_id, "label_idx": 1, "path": str(tmp_path / name), "split": split}
    return list(track_windows(row, FEATURES, seed=0, **kw))


def test_silent_and_too_short_tracks_are_reported_not_dropped(tmp_path):
    """A silent clip and a training clip shorter than one window each give one `_failed` row saying why (meta.json
    lists them): a silent clip teaches nothing about its label, and a short one used to vanish without a word."""
    for name, seconds, why in (("silent.wav", 9.5, "silent"), ("short.wav", 1.0, "shorter than one 3.0 s window")):
        t = np.arange(int(seconds * 22050)) / 22050
        wave = np.zeros_like(t) if name == "silent.wav" else 0.3 * np.sin(2 * np.pi * 440 * t)
        rows = _track(tmp_path, name, wave, noise_copies=1, noise_snr_db=10.0, offset_copies=1)
        assert len(rows) == 1 and rows[0]["split"] == "_failed" and why in rows[0]["error"], rows
        assert rows[0]["track_id"] == "ab12cd34ef" and rows[0]["window_idx"] == -1


def test_noise_copies_differ_between_tracks(tmp_path):
    """The noise of a training copy is seeded by the seed and the track: two tracks with the same audio (or two
    quiet intros) do not get the very same noise, which would teach the model that noise pattern."""
    rng = np.random.default_rng(0)
    t = np.arange(int(6.5 * 22050)) / 22050
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)
    a, b = (_track(tmp_path, f"{tid}.wav", wave, track_id=tid, noise_copies=1, noise_snr_db=10.0)
            for tid in ("ab12cd34ef", "0123456789"))
    clean = [(x["image"], y["image"]) for x, y in zip(a, b) if not x["augmented"]]
    noisy = [(x["image"], y["image"]) for x, y in zip(a, b) if x["augmented"]]
    assert len(clean) == len(noisy) == 2
    assert all(np.array_equal(x, y) for x, y in clean)
    assert not any(np.array_equal(x, y) for x, y in noisy)
    again = _track(tmp_path, "ab12cd34ef.wav", wave, track_id="ab12cd34ef", noise_copies=1, noise_snr_db=10.0)
    assert all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, again))  # and repeatable


def _manifest(tmp_path, rows):
    import pandas as pd

    from genre_ray.synth import write_corpus

    clips = write_corpus(tmp_path / "audio", genres=["blues", "rock"], per_genre=4, seconds=4.0)
    table = pd.DataFrame([{"path": str(clips[i]) if i is not None else str(tmp_path / "gone.wav"), "label": lab}
                          for i, lab in rows])
    table.to_csv(tmp_path / "m.csv", index=False)
    return tmp_path / "m.csv"


def test_bad_catalogs_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """Labels differing only in case became separate classes; a GTZAN folder given one level too high became one
    class (train then failed); catalog errors were tracebacks (exit 1). All: one line, exit 2, nothing written."""
    from genre_ray import cli

    monkeypatch.setenv("GENRE_RAY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    clash = _manifest(tmp_path, [(0, "Hip-Hop"), (1, "hip-hop "), (4, "Rock")])
    assert cli.main(["prepare", "--source", str(clash), "--out", str(tmp_path / "p1")]) == 2
    assert "differ only in case" in capsys.readouterr().err
    assert cli.main(["prepare", "--source", str(tmp_path), "--out", str(tmp_path / "p2"), "--set",
                     "content_hash_s=0"]) == 2
    err = capsys.readouterr().err
    assert "at least 2" in err and f"did you mean --source {tmp_path / 'audio'}" in err
    assert not (tmp_path / "p1").exists() and not (tmp_path / "p2").exists() and not (tmp_path / "home").exists()


@pytest.mark.integration
def test_missing_files_take_no_split_slot(tmp_path, capsys, ray_session, mlflow_home):
    """A listed file that is not there was assigned a split before anything was read: a genre's only val track
    could be a missing file, and meta.json counted it."""
    import json

    from genre_ray import cli

    rows = [(i, "blues") for i in range(4)] + [(i, "rock") for i in range(4, 8)] + [(None, "rock")]
    src = _manifest(tmp_path, rows)
    out = tmp_path / "prepared"
    assert cli.main(["prepare", "--source", str(src), "--out", str(out), "--set", "features.n_mels=32",
                     "--set", "features.height=32", "--set", "features.width=32"]) == 0
    printed = capsys.readouterr().out
    assert "1 track(s) left out before the split (file not found): gone.wav" in printed
    meta = json.loads((out / "meta.json").read_text())
    assert [d["rel_path"] for d in meta["dropped_before_split"]] == ["gone.wav"] and meta["failed"] == []
    assert sum(meta["tracks"].values()) == 8
