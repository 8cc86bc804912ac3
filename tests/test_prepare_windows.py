"""Prepare's per-track windowing (no Ray): noise and random-offset copies for training only."""

from __future__ import annotations

import numpy as np
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
