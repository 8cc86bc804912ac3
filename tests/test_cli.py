"""The command line: every subcommand has a useful --help, jobs/ entry points delegate to it, synth works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from genre_ray.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("synth", "prepare", "train", "label", "predict", "demo")


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"genre-ray {cmd}" in out and len(out.splitlines()) > 5


@pytest.mark.parametrize("job", ["prepare", "train", "label"])
def test_job_entry_points_delegate_to_the_cli(job):
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / f"{job}.py"), "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and f"genre-ray {job}" in r.stdout
    assert "ray job submit" in (ROOT / "jobs" / f"{job}.py").read_text()


def test_synth_cli_writes_gtzan_layout(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "c"), "--genres", "2", "--per-genre", "2", "--seconds", "1"]) == 0
    assert sorted(p.relative_to(tmp_path / "c").as_posix() for p in (tmp_path / "c").rglob("*.wav")) == [
        "blues/blues.00000.wav", "blues/blues.00001.wav", "classical/classical.00000.wav",
        "classical/classical.00001.wav"]


def test_train_refuses_to_starve_ray_data(tmp_path, ray_session, mlflow_home):
    """Workers that reserve every CPU would leave Ray Data nothing to stream with: a clear error, no run."""
    from genre_ray.config import ConfigError, TrainConfig
    from genre_ray.features import FeatureConfig
    from genre_ray.pipelines.train import run_train

    small = FeatureConfig(n_mels=32, height=32, width=32)
    (tmp_path / "meta.json").write_text(json.dumps({"classes": ["a", "b"], "features": small.to_dict(), "feature_hash": "x",
                                                    "windows": {"train": 10, "val": 2, "test": 2}}))
    import pandas as pd

    pd.DataFrame({"track_id": ["t1"], "label": ["a"], "split": ["train"]}).to_parquet(tmp_path / "tracks.parquet")
    with pytest.raises(ConfigError, match="at least one CPU"):  # the config's own 1 CPU each: kept, so refused
        run_train(TrainConfig(data=str(tmp_path), out=str(tmp_path / "o"), num_workers=2, cpus_per_worker=1.0))
    assert not (tmp_path / "o").exists()


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    import genre_ray.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "synth", interrupted)
    assert main(["synth", "nowhere"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flags,needle", [
    (["--hop", "0"], "--hop: must be a positive number"), (["--hop", "-1"], "--hop: must be a positive number"),
    (["--hop", "nan"], "--hop: must be a positive number"), (["--top-k", "0"], "--top-k: must be at least 1"),
    (["--aggregate", "median"], "--aggregate 'median': choose one of logmean, mean, vote"),
])
def test_predict_refuses_bad_flags_in_one_line_before_loading_anything(flags, needle, tmp_path, capsys):
    try:  # argparse exits 2 on a bad value; main returns 2 on a ConfigError
        code = main(["predict", str(tmp_path / "a.wav"), "--model", str(tmp_path / "no-such-bundle"), *flags])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


@pytest.mark.parametrize("args,needle", [(["--format", "aac"], "unknown audio format 'aac'"),
                                         (["--genres", "11"], "genres must be between 1 and 10"),
                                         (["--seconds", "-1"], "seconds must be > 0"),
                                         (["--sr", "0"], "sr must be >= 8000 Hz")])
def test_synth_refuses_bad_arguments_in_one_line(args, needle, tmp_path, capsys):
    """They were 16-line tracebacks (rc 1); every other command answers bad input with one line and exit 2."""
    assert main(["synth", str(tmp_path / "c"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genre-ray synth: ") and needle in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


def test_synth_into_a_path_below_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["synth", str(tmp_path / "f" / "c")]) == 2
    assert f"{tmp_path / 'f'} is a file, not a folder" in capsys.readouterr().err


def test_training_on_an_audio_folder_says_to_prepare_it_first(tmp_path, capsys):
    """The hint was `genre-ray prepare --out <the music folder>`: prepared data written into the music."""
    (tmp_path / "lib" / "rock").mkdir(parents=True)
    (tmp_path / "lib" / "rock" / "a.mp3").write_bytes(b"ID3")
    assert main(["train", "--data", str(tmp_path / "lib"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"prepare --source {tmp_path / 'lib'} --out PREPARED_DIR" in err and "it holds audio" in err
