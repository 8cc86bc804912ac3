"""Bad settings fail before any work: one clear message naming the problem, exit status 2 (3: MLflow unreachable),
nothing written, no MLflow store touched, no Ray started. And safe-by-default loading, writes and logging."""

from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genre_ray import atomic
from genre_ray.bundle import WEIGHTS, save_bundle
from genre_ray.cli import main
from genre_ray.features import FeatureConfig
from genre_ray.models import create_model
from genre_ray.tracking import redact

ROOT = Path(__file__).resolve().parents[1]
SMALL = FeatureConfig(n_mels=32, height=32, width=32)
CLASSES = ["blues", "metal", "pop"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh GENRE_RAY_HOME: the default MLflow store would be created in it by any job that got that far."""
    monkeypatch.setenv("GENRE_RAY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "home"


@pytest.fixture
def prepared(tmp_path):
    """The part of a prepared folder every job reads first (meta.json), as `genre-ray prepare` writes it."""
    d = tmp_path / "prepared"
    d.mkdir()
    atomic.write_json(d / "meta.json", {"classes": CLASSES, "features": SMALL.to_dict(), "feature_hash": SMALL.hash(),
                                        "tracks": {"train": 6, "val": 3, "test": 3},
                                        "windows": {"train": 30, "val": 15, "test": 15}, "failed": []})
    import pandas as pd

    pd.DataFrame({"track_id": [f"{i:040x}" for i in range(12)], "rel_path": [f"g/{i}.wav" for i in range(12)],
                  "label": [CLASSES[i % 3] for i in range(12)],
                  "split": ["train"] * 6 + ["val"] * 3 + ["test"] * 3}).to_parquet(d / "tracks.parquet")
    return d


@pytest.fixture
def bundle(tmp_path):
    kw = {"channels": [4, 4, 8, 8], "dense": [8], "input_size": [32, 32]}
    return save_bundle(tmp_path / "bundle", create_model("homebrew", num_classes=3, **kw).eval(), "homebrew", kw,
                       CLASSES, SMALL)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.device_count() > 0


def _cases(tmp: Path, prepared: Path, bundle: Path) -> list[tuple[list[str], str]]:
    lib = tmp / "lib"
    lib.mkdir(exist_ok=True)
    (lib / "notes.txt").write_text("no audio here")
    music = tmp / "music"
    music.mkdir(exist_ok=True)
    (music / "a.wav").write_bytes(b"")  # listed as audio (decoding would report it): the model is what fails
    not_bundle = tmp / "not-a-bundle"
    not_bundle.mkdir(exist_ok=True)
    out = str(tmp / "out")
    (tmp / "broken.yaml").write_text("epochs: [2\n")
    import soundfile as sf

    for name in ("p1", "p2"):
        sf.write(tmp / f"{name}.wav", np.zeros(2205, np.float32), 22_050)
    (tmp / "partial.csv").write_text("path,label,split\np1.wav,a,train\np2.wav,b,\n")
    return [
        (["train", "--config", str(tmp / "broken.yaml"), "--data", str(prepared), "--out", out],
         "broken.yaml: not valid YAML"),
        (["train", "--data", str(prepared), "--out", out, "--set", "model_kwargs={channels: [8"],
         "the value is not valid YAML"),
        (["train", "--data", str(prepared), "--out", out, "--set", "epoch=3"], "epoch: Extra inputs are not "
         "permitted (did you mean 'epochs'?)"),
        (["label", "--input", str(lib), "--model", str(bundle), "--out", out, "--set", "ray.num_cpu=2"],
         "(did you mean 'num_cpus'?)"),
        (["train", "--data", str(prepared), "--out", out, "--set", "batch_size=many"], "batch_size"),
        (["prepare", "--source", str(prepared), "--out", out, "--set", "features.n_mel=64"], "n_mel"),
        (["label", "--input", str(lib), "--model", str(bundle), "--out", out, "--set", "top_k=0"], "top_k"),
        (["train", "--data", str(tmp / "nowhere"), "--out", out], "not found: " + str(tmp / "nowhere")),
        (["train", "--data", str(lib), "--out", out], "not a prepared folder"),
        (["tune", "--data", str(tmp / "nowhere"), "--out", out, "--set", "search_space={lr: {grid: [0.01]}}"],
         "not found"),
        (["prepare", "--source", str(tmp / "nowhere"), "--out", out], "source not found"),
        (["label", "--input", str(tmp / "nowhere"), "--model", str(bundle), "--out", out], "not found"),
        (["label", "--input", str(lib), "--model", str(bundle), "--out", out], "no audio files"),
        (["label", "--input", str(music), "--model", str(not_bundle), "--out", out], "not a genre-ray model bundle"),
        (["label", "--input", str(music), "--model", str(bundle), "--out", str(music / "a.wav")],
         f"out={music / 'a.wav'}: exists and is not a folder"),
        (["label", "--input", str(music), "--model", str(bundle), "--out", out, "--dry-run"],
         "dry_run lists the tag changes of write_tags"),
        (["label", "--input", str(music), "--model", str(bundle), "--out", out, "--num-cpus", "0"], "num_cpus"),
        (["label", "--input", str(music), "--model", str(bundle), "--out", out, "--tag-uncertain"],
         "tag_uncertain applies to write_tags"),
        *([(["label", "--input", str(music), "--model", str(bundle), "--out", out, "--set", "use_gpu=true"], "no CUDA GPU")]
          if not _has_gpu() else []),
        (["evaluate", "--model", str(bundle), "--data", str(prepared), "--out", str(music / "a.wav")],
         "exists and is not a folder"),
        (["train", "--data", str(prepared), "--out", str(music / "a.wav")], "out=" + str(music / "a.wav") + ": exists"),
        (["train", "--data", str(prepared), "--out", out, "--set", f"storage_path={music / 'a.wav'}"],
         "storage_path=" + str(music / "a.wav") + ": exists and is not a folder"),
        (["prepare", "--source", str(music), "--out", str(music / "a.wav")], "exists and is not a folder"),
        (["tune", "--data", str(prepared), "--out", str(music / "a.wav"), "--set", "search_space={lr: {grid: [0.01]}}"],
         "exists and is not a folder"),
        (["evaluate", "--model", str(bundle), "--data", str(prepared), "--split", "holdout"], "split must be"),
        (["prepare", "--source", str(tmp / "partial.csv"), "--out", out, "--split", "predefined"],
         "split=predefined: split strategy 'predefined': 1 of 2 track(s) have no split"),
        (["train", "--data", str(prepared), "--out", out, "--set", "model_kwargs.num_classes=5"],
         "num_classes=5 but the dataset has 3 classes"),
        (["train", "--data", str(prepared), "--out", out, "--set", "model_kwargs.input_size=[216, 216]"],
         "does not fit the data's images (1, 32, 32)"),
        (["train", "--data", str(prepared), "--out", out, "--set", "model_kwargs.kernel_sizes=[3, 3]"],
         "kernel_sizes (2) must match channels (4)"),
        (["tune", "--data", str(prepared), "--out", out, "--set", "train={model_kwargs: {input_size: [216, 216]}}",
          "--set", "search_space={lr: {loguniform: [1e-4, 1e-2]}}"], "does not fit the data's images"),
    ]


def test_every_bad_setting_is_one_message_and_exit_2_before_any_work(tmp_path, home, prepared, bundle, capsys):
    for argv, needle in _cases(tmp_path, prepared, bundle):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err, (argv, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 12, err
        assert not (tmp_path / "out").exists(), argv  # nothing written
        assert not (home / "mlflow.db").exists(), argv  # MLflow not reached: it comes after the checks


def test_unreachable_tracking_server_exits_3_before_ray(tmp_path, prepared):
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "RAY_ADDRESS": ""}
    proc = subprocess.run([sys.executable, "-m", "genre_ray.cli", "train", "--data", str(prepared), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "127.0.0.1:9" in proc.stderr and "Traceback" not in proc.stderr
    assert "Started a local Ray instance" not in proc.stdout + proc.stderr


class _Boom:  # what a hostile "weights.pt" might carry: unpickling it would run os.system
    def __reduce__(self):
        return (os.system, ("touch /tmp/genre-ray-pwned",))


def test_a_bundle_carrying_code_is_refused_and_nothing_runs(tmp_path, bundle, home, capsys):
    marker = Path("/tmp/genre-ray-pwned")
    marker.unlink(missing_ok=True)
    with open(bundle / WEIGHTS, "wb") as f:
        pickle.dump({"conv.weight": _Boom()}, f)
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.wav").write_bytes(b"")
    assert main(["label", "--input", str(lib), "--model", str(bundle), "--out", str(tmp_path / "out")]) == 2
    assert "not a plain tensor state_dict; refused" in capsys.readouterr().err
    assert main(["predict", "--model", str(bundle), str(lib / "a.wav")]) == 2
    assert not marker.exists()


def test_every_torch_load_is_weights_only_and_no_shell():
    """Static check of the package, jobs and cluster scripts: torch.load(…, weights_only=True) only; no shell=True,
    os.system or os.popen anywhere."""
    files = [*ROOT.glob("genre_ray/**/*.py"), *ROOT.glob("jobs/*.py"), *ROOT.glob("cluster/**/*.py")]
    assert len(files) > 20
    for f in files:
        tree = ast.parse(f.read_text(), str(f))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if name.endswith("torch.load"):
                assert kw.get("weights_only") == "True", f"{f}:{node.lineno} torch.load without weights_only=True"
            assert kw.get("shell") != "True", f"{f}:{node.lineno} shell=True"
            assert name not in ("os.system", "os.popen"), f"{f}:{node.lineno} {name}"


def test_mlflow_server_script_binds_loopback_by_default():
    text = (ROOT / "cluster" / "mlflow-server.sh").read_text()
    assert 'host="${MLFLOW_HOST:-127.0.0.1}"' in text and '--host "$host"' in text


def test_secrets_never_reach_logged_params():
    assert redact("ray.address", "ray://alice:hunter2@head:10001") == "ray://alice:***@head:10001"
    assert redact("storage_path", "s3://bucket/runs") == "s3://bucket/runs"
    for key in ("db_password", "api_key", "aws.secret", "hf_token", "access-key", "credentials"):
        assert redact(key, "hunter2") == "***", key
    assert redact("lr", 0.001) == "0.001" and redact("author", "x") == "x" and redact("x", None) == "None"


def test_an_output_folder_is_written_by_one_run_at_a_time(tmp_path):
    """flock, not a pid file: a second holder is refused naming the first; the lock goes with its holder."""
    lock = tmp_path / ".lock"
    with atomic.exclusive(lock, "out=x"):
        with pytest.raises(atomic.Busy, match=f"out=x is in use by another run \\(pid {os.getpid()};"):
            with atomic.exclusive(lock, "out=x"):
                pass
    with atomic.exclusive(lock, "out=x"):  # released: free again
        pass


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "meta.json"
    atomic.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "trunc')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]  # no temporary left behind
    atomic.write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 2}


def test_config_trees_and_client_params_are_redacted_too(tmp_path):
    """The tune job logs its trials' params through a client (not the active run) and its config file as an artifact:
    both pass the same rule as every job's params."""
    import mlflow

    from genre_ray.tracking import log_params, redact_tree

    tree = {"storage_path": "s3://AKIA:hunter2@bucket/tune", "train": {"lr": 0.001, "api_key": "sekret",
            "model_kwargs": {"token": 5}, "tags": ["ray://bob:pw@head:1", 3]}, "note": None}
    assert redact_tree(tree) == {"storage_path": "s3://AKIA:***@bucket/tune", "train": {
        "lr": 0.001, "api_key": "***", "model_kwargs": {"token": "***"}, "tags": ["ray://bob:***@head:1", 3]},
        "note": None}
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    rid = client.create_run(client.create_experiment("redact")).info.run_id
    log_params({f"k{i}": i for i in range(150)} | {"train.api_key": "sekret", "ray.address": "ray://a:pw@h:1"},
               client, rid)
    params = client.get_run(rid).data.params
    assert len(params) == 152 and params["train.api_key"] == "***" and params["ray.address"] == "ray://a:***@h:1"


def test_file_uris_name_local_paths(tmp_path):
    """``--input file:///music/My%20Album`` is the folder it names (it was refused as "not found")."""
    from genre_ray.config import ConfigError, local_path
    from genre_ray.pipelines.label import list_inputs
    from genre_ray.preflight import existing_path

    folder = tmp_path / "My Album"
    folder.mkdir()
    (folder / "a.wav").write_bytes(b"RIFF")
    uri = folder.as_uri()
    assert "%20" in uri
    existing_path(uri, "label input")
    assert list_inputs(uri) == [str(folder / "a.wav")] and local_path(uri + "/a.wav") == str(folder / "a.wav")
    with pytest.raises(ConfigError, match="not found"):
        existing_path((tmp_path / "nowhere").as_uri(), "label input")
