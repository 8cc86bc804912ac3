"""Per-track inference pieces (no Ray): featurize, label rows, and the label job's input listing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genre_ray.features import FeatureConfig
from genre_ray.inference import featurize_track, label_row
from genre_ray.pipelines.label import list_inputs

CFG = FeatureConfig(n_mels=32, height=32, width=32)


def write(path, seconds, sr=22_050, silent=False):
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t) if silent else 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, y.astype(np.float32), sr)
    return str(path)


def test_featurize_windows_padding_and_errors(tmp_path):
    t = featurize_track(write(tmp_path / "a.wav", 7.0), CFG)
    assert t.status == "ok" and t.images.shape == (3, 1, 32, 32)  # 0, 1.5, 3.0 (4.5 + 3 > 7)
    np.testing.assert_allclose(t.starts_s, [0.0, 1.5, 3.0])
    assert featurize_track(tmp_path / "a.wav", CFG, hop_s=3.0).images.shape[0] == 2
    short = featurize_track(write(tmp_path / "short.wav", 0.3), CFG)
    assert short.status == "ok" and short.images.shape[0] == 1 and "padded" in short.error
    silent = featurize_track(write(tmp_path / "silent.wav", 5.0, silent=True), CFG)
    assert silent.status == "error" and "silent" in silent.error
    (tmp_path / "bad.mp3").write_bytes(b"ID3" + bytes(500))
    bad = featurize_track(tmp_path / "bad.mp3", CFG)
    assert bad.status == "error" and "bad.mp3" in bad.error and bad.images.shape == (0, 1, 32, 32)


def test_label_row():
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1]])
    row = label_row("x.wav", 6.0, "ok", "", probs, ["a", "b", "c"], "mean", 2, {"model_uri": "m"})
    assert row["genre"] == "a" and row["confidence"] == pytest.approx(0.6) and row["n_windows"] == 2
    assert row["top_k_genres"] == ["a", "b"] and row["p_b"] == pytest.approx(0.3) and row["model_uri"] == "m"
    err = label_row("y.wav", 0.0, "error", "boom", None, ["a", "b", "c"], "mean", 2, {})
    assert err["genre"] is None and np.isnan(err["p_a"]) and err["error"] == "boom"


def test_list_inputs_folder_glob_manifest(tmp_path):
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    a, b = write(lib / "a.wav", 1.0), write(lib / "sub" / "b.flac", 1.0)
    (lib / "notes.txt").write_text("not audio")
    assert list_inputs(str(lib)) == sorted([a, b])
    assert list_inputs(str(lib / "**" / "*.flac")) == [b]
    pd.DataFrame({"path": ["a.wav", "sub/b.flac"]}).to_csv(lib / "m.csv", index=False)
    assert list_inputs(str(lib / "m.csv")) == [a, b]
    pd.DataFrame({"file": ["a.wav"]}).to_csv(lib / "bad.csv", index=False)
    with pytest.raises(ValueError, match="path"):
        list_inputs(str(lib / "bad.csv"))
    with pytest.raises(FileNotFoundError):
        list_inputs(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio"):
        list_inputs(str(tmp_path / "empty"))
