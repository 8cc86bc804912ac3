"""Leakage guard (genre_ray/leakage.py): content hashes, offenders by track/file/recording/artist, the refusal before
MLflow and Ray start in train and prepare, --allow-leakage, and (integration) prepare → train on a manifest that
holds one recording under two names in two splits."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genre_ray.leakage import (CONTENT_HASH, TAG, LeakageError, content_hash, enforce, file_content_hash,
                               find_leakage, leakage_tags)

UNREACHABLE_MLFLOW = "http://127.0.0.1:9"  # discard port: nothing listens


class _Records(logging.Handler):
    """Collects log records of one logger (the suite runs with -p no:logging, so no caplog)."""

    def __init__(self, name: str):
        super().__init__(logging.DEBUG)
        self.logger, self.messages = logging.getLogger(name), []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> "_Records":
        self.logger.addHandler(self)
        self.old, self.logger.level = self.logger.level, logging.DEBUG
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.old)


def _tone(seconds: float, freq: float, sr: int = 22_050, lead_silence_s: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(int(freq))
    wave = (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    return np.concatenate([np.zeros(int(lead_silence_s * sr), np.float32), wave])


# ------------------------------------------------------------------------------------------ content hash


def test_content_hash_of_copies_reencodes_and_silence(tmp_path):
    wave = _tone(12.0, 440.0)
    sf.write(tmp_path / "a.wav", wave, 22_050, subtype="PCM_16")
    sf.write(tmp_path / "copy under another name.flac", sf.read(tmp_path / "a.wav", dtype="int16")[0], 22_050)
    sf.write(tmp_path / "late.wav", np.concatenate([np.zeros(22_050, np.float32), wave]), 22_050, subtype="PCM_16")
    sf.write(tmp_path / "other.wav", _tone(12.0, 330.0), 22_050, subtype="PCM_16")
    sf.write(tmp_path / "silent.wav", np.zeros(22_050 * 3, np.float32), 22_050, subtype="PCM_16")
    h = {p.name: file_content_hash(str(p)) for p in sorted(tmp_path.iterdir())}
    assert len(h["a.wav"]) == 40
    assert h["a.wav"] == h["copy under another name.flac"] == h["late.wav"]  # lossless re-encode; lead-in silence
    assert h["other.wav"] != h["a.wav"] and h["silent.wav"] is None
    # only the first 10 s count: a different ending does not matter, a different start does
    longer = np.concatenate([wave[: 11 * 22_050], _tone(5.0, 880.0)])
    assert content_hash(longer) == content_hash(wave) != content_hash(wave[100:])
    assert content_hash(wave, seconds=5.0) != content_hash(wave)  # the length is part of the digest


def test_file_hash_reads_past_a_long_silent_lead_in(tmp_path):
    """A copy with a long digital-silence lead-in hashes as the original: the file is read until ``seconds`` of
    audio after the silence, however the decoder's blocks fall (it stopped after ``seconds`` of samples, and a
    20-s lead-in left the copy with 1.8 s of content — a different hash, a leak not caught)."""
    wave = _tone(12.0, 440.0)
    sf.write(tmp_path / "a.wav", wave, 22_050, subtype="PCM_16")
    sf.write(tmp_path / "late.wav", np.concatenate([np.zeros(20 * 22_050, np.float32), wave]), 22_050,
             subtype="PCM_16")
    sf.write(tmp_path / "short late.wav", np.concatenate([np.zeros(3 * 22_050, np.float32), wave]), 22_050,
             subtype="PCM_16")
    a = file_content_hash(str(tmp_path / "a.wav"))
    assert a is not None and file_content_hash(str(tmp_path / "late.wav")) == a
    two = file_content_hash(str(tmp_path / "a.wav"), seconds=2.0)
    assert file_content_hash(str(tmp_path / "short late.wav"), seconds=2.0) == two != a


# ------------------------------------------------------------------------------------------ offenders


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "track_id": ["t1", "t2", "t3", "t4", "t5", "t6", "t1"],
        "rel_path": ["a/x.wav", "a/y.wav", "b/z.wav", "c/copy.flac", "d/w.wav", "./d/w.wav", "a/x-again.wav"],
        "path": ["/m/a/x.wav", "/m/a/y.wav", "/m/b/z.wav", "/m/c/copy.flac", "/m/d/w.wav", "/m/./d/w.wav",
                 "/m/a/x-again.wav"],
        "artist": ["Ann", "ann ", None, None, "Bo", "Cy", None],
        "content_hash": ["h1", "h2", "h3", "h3", "h5", "h6", None],
        "split": ["train", "test", "train", "test", "val", "test", "validation"],
    })


def test_find_leakage_names_each_offender():
    report = find_leakage(_table())
    assert report.checked_by == ("track_id", "path", CONTENT_HASH, "artist") and report.unchecked == ()
    found = {(o.by, o.key, o.splits, o.tracks) for o in report.offenders}
    assert found == {
        ("track_id", "t1", ("train", "val"), ("a/x-again.wav", "a/x.wav")),
        ("path", "/m/d/w.wav", ("val", "test"), ("./d/w.wav", "d/w.wav")),  # one file named twice
        (CONTENT_HASH, "h3", ("train", "test"), ("b/z.wav", "c/copy.flac")),  # one recording, two names
        ("artist", "ann", ("train", "test"), ("a/x.wav", "a/y.wav")),  # case and spaces ignored
    }
    assert report.count == 4 and report.counts() == {"track_id": 1, "path": 1, CONTENT_HASH: 1, "artist": 1}
    clean = _table().iloc[[0, 2, 4]]
    assert not find_leakage(clean).leaks
    assert not find_leakage(_table().assign(split=["train"] * 7)).leaks  # duplicates inside one split are no leak


def test_enforce_refuses_naming_the_offenders_or_warns_when_allowed():
    report = find_leakage(_table())
    with pytest.raises(LeakageError) as err:
        enforce(report, allow=False, where="train data/x")
    msg = str(err.value)
    assert msg.startswith("train data/x: split leakage: 4 tracks/artists in several splits")
    for name in ("'t1'", "a/x-again.wav", "c/copy.flac", "'ann'", "d/w.wav", "--allow-leakage"):
        assert name in msg
    many = pd.DataFrame({"track_id": [f"t{i}" for i in range(9)] * 2, "split": ["train"] * 9 + ["test"] * 9})
    with pytest.raises(LeakageError, match=r"9 tracks/artists .*'t0' .*; and 4 more"):
        enforce(find_leakage(many), allow=False, where="prepare")
    with _Records("genre_ray.leakage") as logs:
        assert enforce(report, allow=True, where="train x") is report
    assert any("LEAKAGE ALLOWED" in m and "NOT comparable" in m for m in logs.messages)
    tags = leakage_tags(report)
    assert tags[TAG] == "ALLOWED: 4 tracks/artists in several splits — results are not comparable"
    assert "c/copy.flac" in tags[f"{TAG}.offenders"]
    assert leakage_tags(find_leakage(_table().iloc[[0, 2]])) == {
        TAG: "none (checked by track_id, path, content_hash, artist)"}


def test_data_prepared_before_content_hashes_is_checked_by_the_rest():
    old = _table().drop(columns=[CONTENT_HASH]).iloc[[2, 3]]  # the copy: invisible without hashes
    report = find_leakage(old)
    assert report.unchecked == (CONTENT_HASH,) and not report.leaks
    with _Records("genre_ray.leakage") as logs:
        enforce(report, allow=False, where="train old")
    assert any("no content_hash column" in m and "checked by track_id, path, artist only" in m
               for m in logs.messages)


# ------------------------------------------------------------------------------------------ drivers


def _prepared(folder: Path, tracks: pd.DataFrame) -> Path:
    """The parts of a prepared folder the train driver reads before anything else."""
    from genre_ray.features import FeatureConfig

    folder.mkdir(parents=True)
    features = FeatureConfig()
    (folder / "meta.json").write_text(json.dumps({"classes": ["a", "b"], "features": features.to_dict(),
                                                  "feature_hash": features.hash(),
                                                  "windows": {"train": 10, "val": 2, "test": 2}}))
    tracks.to_parquet(folder / "tracks.parquet")
    return folder


@pytest.fixture()
def unreachable_mlflow(monkeypatch):
    """MLflow and Ray that cannot start: a step that reached either would fail with another error than leakage."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", UNREACHABLE_MLFLOW)
    monkeypatch.setenv("GENRE_RAY_MLFLOW_TIMEOUT_S", "2")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")


def test_train_refuses_a_leaky_split_before_mlflow_and_ray(tmp_path, capsys, unreachable_mlflow):
    from genre_ray.cli import main

    tracks = pd.DataFrame({"track_id": ["t1", "t2", "t3"], "rel_path": ["x/1.wav", "x/2.wav", "y/3.wav"],
                           "label": ["a", "a", "b"], "artist": ["Nina", "nina", "Otto"],
                           "split": ["train", "test", "train"]})
    data = _prepared(tmp_path / "prepared", tracks)
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err  # 3 would mean MLflow was contacted first
    assert "split leakage: 1 tracks/artists" in err and "artist 'nina' in train/test (x/1.wav, x/2.wav)" in err
    assert not (tmp_path / "out").exists()
    # --allow-leakage: no refusal — the job goes on to MLflow (unreachable here: exit 3, still nothing written)
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "out"), "--allow-leakage"])
    err = capsys.readouterr().err
    assert code == 3 and "unreachable" in err and not (tmp_path / "out").exists()


def test_tune_refuses_a_leaky_split_before_mlflow_and_ray(tmp_path, capsys, unreachable_mlflow):
    from genre_ray.cli import main

    tracks = pd.DataFrame({"track_id": ["t1", "t2"], "rel_path": ["x/1.wav", "x/1-copy.wav"], "label": ["a", "b"],
                           "content_hash": ["c0ffee" * 6, "c0ffee" * 6], "split": ["train", "val"]})
    data = _prepared(tmp_path / "prepared", tracks)
    args = ["tune", "--config", str(Path(__file__).parents[1] / "configs" / "tune-smoke.yaml"), "--data", str(data),
            "--out", str(tmp_path / "sweep")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "tune" in err and "content_hash c0ffeec0ffee… in train/val (x/1-copy.wav, x/1.wav)" in err
    assert main([*args, "--set", "train.allow_leakage=true"]) == 3  # allowed: on to MLflow (unreachable here)
    assert not (tmp_path / "sweep").exists()


def test_prepare_refuses_a_manifest_with_an_artist_in_two_splits(tmp_path, capsys, unreachable_mlflow):
    from genre_ray.cli import main

    for name in ("a1", "a2", "b1"):
        sf.write(tmp_path / f"{name}.wav", _tone(1.0, 220.0), 22_050)
    (tmp_path / "m.csv").write_text("path,label,artist,split\na1.wav,a,Kim,train\na2.wav,a,KIM,test\n"
                                    "b1.wav,b,Lee,train\n")
    code = main(["prepare", "--source", str(tmp_path / "m.csv"), "--out", str(tmp_path / "prep"),
                 "--split", "predefined"])
    err = capsys.readouterr().err
    assert code == 2 and "prepare: split leakage" in err and "artist 'kim' in train/test (a1.wav, a2.wav)" in err
    assert not (tmp_path / "prep").exists()


# ------------------------------------------------------------------------------------------ end to end


@pytest.mark.integration
def test_copy_under_two_names_refused_then_allowed_and_tagged(tmp_path, ray_session, mlflow_home, monkeypatch):
    """A manifest whose test split holds a FLAC copy of a training WAV: prepare finds it by content hash (Ray tasks)
    before writing a window; with allow_leakage it prepares, train refuses, and train --allow-leakage tags the run."""
    import mlflow

    from genre_ray.config import PrepareConfig, TrainConfig
    from genre_ray.pipelines.prepare import run_prepare
    from genre_ray.pipelines.train import run_train

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    rows = []
    for g, (label, base) in enumerate((("low", 180.0), ("high", 900.0))):
        for k, split in enumerate(("train", "train", "val", "test")):
            name = f"{label}/{label}{k}.wav"
            (tmp_path / label).mkdir(exist_ok=True)
            sf.write(tmp_path / name, _tone(4.0, base * (1 + 0.05 * k)), 22_050, subtype="PCM_16")
            rows.append((name, label, split))
    pcm, sr = sf.read(tmp_path / "low/low0.wav", dtype="int16")
    sf.write(tmp_path / "low/renamed copy.flac", pcm, sr)
    rows.append(("low/renamed copy.flac", "low", "test"))
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(tmp_path / "m.csv", index=False)

    features = {"window_s": 2.0, "hop_s": 1.0, "n_fft": 1024, "hop_length": 256, "n_mels": 32, "height": 32,
                "width": 32}
    prep = dict(source=str(tmp_path / "m.csv"), out=str(tmp_path / "prep"), split="predefined", features=features)
    with pytest.raises(LeakageError, match=r"content_hash \w{12}… in train/test \(low/low0.wav, low/renamed copy.flac\)"):
        run_prepare(PrepareConfig(**prep))
    assert not (tmp_path / "prep" / "windows").exists() and not (tmp_path / "prep" / "tracks.parquet").exists()

    meta = run_prepare(PrepareConfig(**prep, allow_leakage=True))
    assert meta["leakage"]["offenders"] == 1 and meta["leakage"]["allowed"] is True
    tracks = pd.read_parquet(tmp_path / "prep" / "tracks.parquet")
    hashes = dict(zip(tracks["rel_path"], tracks[CONTENT_HASH]))
    assert hashes["low/low0.wav"] == hashes["low/renamed copy.flac"] and len(set(hashes.values())) == 8

    train = dict(data=str(tmp_path / "prep"), out=str(tmp_path / "train"), epochs=1, batch_size=8, num_workers=1,
                 cpus_per_worker=0.5, model_kwargs={"channels": [4, 8, 8, 8], "dense": [16], "dropout": 0.0},
                 bn_recalibrate_batches=0)
    with pytest.raises(LeakageError, match="renamed copy.flac"):
        run_train(TrainConfig(**train))
    assert not (tmp_path / "train").exists()
    report = run_train(TrainConfig(**train, allow_leakage=True))
    tags = mlflow.tracking.MlflowClient().get_run(report["run_id"]).data.tags
    assert tags[TAG] == "ALLOWED: 1 tracks/artists in several splits — results are not comparable"
    assert "renamed copy.flac" in tags[f"{TAG}.offenders"]
    assert os.path.isdir(tmp_path / "train" / "bundle")
