"""Per-track inference pieces (no Ray): featurize, label rows, and the label job's input listing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genre_ray.features import FeatureConfig
from genre_ray.inference import featurize_stream, featurize_track, label_row
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
    # each probability beside its own genre: the p_ columns and top_k_probs in the order of the genres they name
    assert [row["p_a"], row["p_b"], row["p_c"]] == pytest.approx([0.6, 0.3, 0.1])
    assert row["top_k_probs"] == pytest.approx([0.6, 0.3])
    err = label_row("y.wav", 0.0, "error", "boom", None, ["a", "b", "c"], "mean", 2, {})
    assert err["genre"] is None and np.isnan(err["p_a"]) and err["error"] == "boom"


def test_a_track_ending_in_long_silence_is_not_silent(tmp_path):
    """A track whose last decoded block is all zeros (a long silent outro) is labelled, not refused as silent."""
    t = np.arange(3 * 22_050) / 22_050
    y = np.concatenate([0.3 * np.sin(2 * np.pi * 440 * t), np.zeros(25 * 22_050)]).astype(np.float32)
    sf.write(tmp_path / "outro.wav", y, 22_050)
    track = featurize_track(tmp_path / "outro.wav", CFG, hop_s=3.0)
    assert track.status == "ok" and track.error == "" and track.images.shape[0] == 9


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


def test_list_inputs_are_absolute_whatever_the_spelling(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    a, b = write(lib / "a.wav", 1.0), write(lib / "sub" / "b.flac", 1.0)
    pd.DataFrame({"path": ["a.wav", "./sub/../sub/b.flac", str(lib / "a.wav")]}).to_csv(lib / "m.csv", index=False)
    monkeypatch.chdir(tmp_path)
    for spec in ("lib", "./lib/", "lib/../lib", str(lib), "lib/m.csv", "./lib/**/*.*"):
        assert list_inputs(spec) == [a, b], spec  # one input per file, named absolutely, duplicates gone


def test_glob_inputs_follow_the_folder_walk_rules(tmp_path):
    """``glob``'s ``**`` follows symlinked folders: a link to a parent folder listed one file 41 times."""
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    a, b = write(lib / "a.wav", 1.0), write(lib / "sub" / "b.wav", 1.0)
    write(tmp_path / "elsewhere" / "c.wav", 1.0)
    write(lib / ".hidden.wav", 1.0)
    (lib / "sub" / "up").symlink_to("..")  # a loop
    (lib / "linked").symlink_to(tmp_path / "elsewhere")  # a symlinked folder: not entered by a folder walk
    (lib / "dangling.wav").symlink_to(lib / "gone.wav")  # kept: decoding reports it as an error row
    (lib / "album.wav").mkdir()  # a folder named like audio
    walk = list_inputs(str(lib))
    assert walk == sorted([a, b, str(lib / "dangling.wav")])
    assert list_inputs(str(lib / "**" / "*.wav")) == walk
    assert list_inputs(str(lib / "*" / "*.wav")) == [b]


def test_manifest_rows_without_a_path_are_skipped_not_fatal(tmp_path, caplog):
    a = write(tmp_path / "a.wav", 1.0)
    (tmp_path / "m.csv").write_text('path,artist\na.wav,x\n"",y\n,z\n')
    with caplog.at_level("WARNING", logger="genre_ray"):
        assert list_inputs(str(tmp_path / "m.csv")) == [a]
    assert "2 row(s) with an empty path skipped" in caplog.text


def test_a_cut_off_file_is_labelled_from_what_decodes_with_a_note(tmp_path):
    """Both featurizers (host images and device segments) give a cut-off FLAC status ok, its windows from the audio
    before the cut, and a `truncated:` note in `error`, as a truncated WAV or MP3 decodes what is there."""
    from genre_ray.pipelines.label_device import segment_stream

    full = write(tmp_path / "full.flac", 30.0)
    data = open(full, "rb").read()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    end = list(featurize_stream(str(tmp_path / "cut.flac"), CFG, hop_s=3.0))[-1]
    seg_end = list(segment_stream(str(tmp_path / "cut.flac"), CFG, 3.0, "pad"))[-1]
    assert end.status == seg_end["status"] == "ok" and 3 <= end.n_windows == seg_end["n_windows"] < 10
    assert end.error.startswith("truncated: decoding stopped after") and seg_end["error"] == end.error
    assert 10 < end.duration_s < 20


def test_predict_aggregates_with_the_models_own_rule(tmp_path, capsys):
    """A bundle's temperature and threshold were fitted with its training aggregation: predict (and label) use it
    unless told otherwise — they used `mean` whatever the model was trained with."""
    import json

    import torch
    from label_lib import CLASSES, FEATURES, KWARGS

    from genre_ray.bundle import save_bundle
    from genre_ray.cli import main
    from genre_ray.models import create_model
    from genre_ray.synth import synth_clip

    torch.manual_seed(0)
    model = create_model("homebrew", num_classes=len(CLASSES), **KWARGS)
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
    bundle = save_bundle(tmp_path / "b", model.eval(), "homebrew", KWARGS, CLASSES, FEATURES, meta={"aggregate": "vote"})
    wav = tmp_path / "x.wav"
    sf.write(wav, synth_clip("metal", 8.0, 22_050, rng=1), 22_050)

    def probs(*extra):
        assert main(["predict", str(wav), "--model", str(bundle), "--json", *extra]) == 0
        row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        return [row[f"p_{c}"] for c in CLASSES]

    default, vote, mean = probs(), probs("--aggregate", "vote"), probs("--aggregate", "mean")
    assert default == vote and default != mean
