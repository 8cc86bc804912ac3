"""genre_ray.tracking: which store, and failing fast — naming the URI — when a tracking server is not there.
The end-to-end checks against a real `mlflow server` and a real Ray head are in test_cluster.py."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from genre_ray import tracking
from genre_ray.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_default_store_is_sqlite_under_home_and_env_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("GENRE_RAY_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri() == "http://127.0.0.1:5999"


def test_unreachable_server_fails_in_seconds_naming_the_uri(monkeypatch):
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    t0 = time.time()
    with pytest.raises(tracking.TrackingError, match=f"MLflow tracking server {uri} is unreachable"):
        tracking.setup("genre-ray-test")
    assert time.time() - t0 < 5  # MLflow's own HTTP retries would take minutes


def test_silent_server_times_out_after_the_configured_wait(monkeypatch):
    with socket.socket() as s:  # accepts connections (backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"
        monkeypatch.setenv("GENRE_RAY_MLFLOW_TIMEOUT_S", "1.5")
        t0 = time.time()
        with pytest.raises(tracking.TrackingError, match=f"{uri} is unreachable .*waited up to 1.5 s"):
            tracking.check_server(uri)
        assert 1.0 < time.time() - t0 < 10


def test_bad_timeout_setting_is_named(monkeypatch):
    monkeypatch.setenv("GENRE_RAY_MLFLOW_TIMEOUT_S", "soon")
    with pytest.raises(tracking.TrackingError, match="GENRE_RAY_MLFLOW_TIMEOUT_S='soon'"):
        tracking.check_server("http://127.0.0.1:1")


def test_an_http_server_that_is_not_mlflow_is_reachable_but_not_usable(monkeypatch):
    class NotMlflow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotMlflow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{srv.server_address[1]}"
        tracking.check_server(uri)  # an HTTP answer: something is there
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        with pytest.raises(tracking.TrackingError, match=f"MLflow tracking store {uri} is not usable"):
            tracking.setup("genre-ray-test")
    finally:
        srv.shutdown()
        srv.server_close()


def test_non_http_stores_are_not_probed():
    for uri in ("sqlite:////nonexistent/mlflow.db", "postgresql://u:p@127.0.0.1:1/db", "databricks"):
        tracking.check_server(uri)


def test_sqlite_store_setup_creates_the_experiment(monkeypatch, tmp_path):
    monkeypatch.setenv("GENRE_RAY_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri, exp_id = tracking.setup("genre-ray-tracking-test")
    assert uri.startswith("sqlite:///") and (tmp_path / "mlflow.db").is_file()
    assert tracking.setup("genre-ray-tracking-test")[1] == exp_id


@pytest.mark.parametrize("store", ["home", "env"])
def test_sqlite_artifacts_live_beside_the_database_not_in_the_working_folder(monkeypatch, tmp_path, store):
    """MLflow 3's ``set_tracking_uri`` exports MLFLOW_TRACKING_URI, which once made ``setup`` think the user had
    chosen the store and leave the artifact location to MLflow: ``./mlruns`` in whatever folder the job ran from."""
    import mlflow

    home, cwd = tmp_path / "home", tmp_path / "music"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("GENRE_RAY_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # recorded, so that the value setup exports is undone after
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    db_dir = home
    if store == "env":  # the user's own sqlite file: its artifacts beside it too
        db_dir = tmp_path / "team"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db_dir / 'runs.db'}")
    _, exp_id = tracking.setup(f"genre-ray-artifacts-{store}")
    with mlflow.start_run(experiment_id=exp_id):
        mlflow.log_text("hello", "note.txt")
    assert list((db_dir / "mlartifacts").rglob("note.txt"))
    assert not list(cwd.rglob("*")), "nothing may land in the folder the job ran from"


def test_cli_exits_3_with_one_line_and_writes_nothing(monkeypatch, tmp_path, capsys):
    """The train command with an unreachable server: status 3, the URI in one message, no output folder.

    Uses a prepared folder's metadata only (train reads it before it checks MLflow); Ray is never started.
    """
    import json

    import pandas as pd

    from genre_ray.features import FeatureConfig

    data = tmp_path / "prepared"
    data.mkdir()
    features = FeatureConfig()
    (data / "meta.json").write_text(json.dumps({
        "classes": ["a", "b"], "features": features.to_dict(), "feature_hash": features.hash(),
        "tracks": {"train": 2, "val": 1, "test": 1}, "windows": {"train": 4, "val": 2, "test": 2}, "failed": []}))
    pd.DataFrame({"track_id": ["t1", "t2"], "path": ["a.wav", "b.wav"], "label": ["a", "b"],
                  "split": ["train", "val"]}).to_parquet(data / "tracks.parquet")
    uri = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = tmp_path / "out"
    assert main(["train", "--data", str(data), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert f"genre-ray train: MLflow tracking server {uri} is unreachable" in err
    assert not out.exists()


def test_label_with_an_unreachable_server_writes_nothing(monkeypatch, tmp_path, capsys):
    """The label command checks the tracking server before listing inputs, fetching the model or writing."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.wav").write_bytes(b"RIFF")
    uri = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = tmp_path / "labels"
    assert main(["label", "--input", str(lib), "--model", "models:/nothing/1", "--out", str(out)]) == 3
    assert f"genre-ray label: MLflow tracking server {uri} is unreachable" in capsys.readouterr().err
    assert not out.exists()


def test_predict_from_the_registry_with_an_unreachable_server_exits_3_in_seconds(monkeypatch, tmp_path, capsys):
    """predict took 4 minutes of MLflow's HTTP retries to fail on a models:/ URI; now the model check asks first."""
    uri = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    t0 = time.time()
    assert main(["predict", str(tmp_path / "a.wav"), "--model", "models:/genre@champion"]) == 3
    assert time.time() - t0 < 20
    assert f"MLflow tracking server {uri} is unreachable" in capsys.readouterr().err


def test_model_version_names_the_number_a_registry_uri_stands_for(tmp_path, monkeypatch):
    """Evaluate and label record which version they used: `latest` or an alias once came out as the word itself."""
    import mlflow

    from genre_ray.tracking import model_version

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = mlflow.MlflowClient(uri)
    client.create_registered_model("g")
    for _ in range(3):
        client.create_model_version("g", source=str(tmp_path))
    client.set_registered_model_alias("g", "champion", "2")
    assert [model_version(u, client) for u in ("models:/g/1", "models:/g@champion", "models:/g/latest",
                                               "models:/g/Nope", "runs:/abc/model", "models:/g")] == ["1", "2", "3", "", "", ""]


def test_epoch_logger_logs_each_starts_facts_and_each_epoch_once(tmp_path):
    """Training workers never open the MLflow store (rank 0 may run on a node that cannot reach the driver's sqlite
    file): each (re)start reports what it knows before its first epoch and the driver's EpochLogger logs it — also
    for a restart that fails again before finishing an epoch."""
    from mlflow.tracking import MlflowClient

    from genre_ray.pipelines.train import INFO_KEY, SELECTION, EpochLogger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("t", artifact_location=(tmp_path / "a").as_uri())).info.run_id
    logger = EpochLogger(uri, run_id)
    effective = {"device_cache": False, "fused_optimizer": False, "device": "cpu"}
    logger.after_report(None, [{INFO_KEY: {"effective": effective}}, {INFO_KEY: {}}], None)  # the first start
    logger.after_report(None, [{"epoch": 0, "val_accuracy": 0.5, SELECTION: 0.5}] * 2, None)
    logger.after_report(None, [{INFO_KEY: {"resumed_at_epoch": 1, "effective": effective}}], None)  # a restart …
    logger.after_report(None, [{INFO_KEY: {"resumed_at_epoch": 1, "effective": effective}}], None)  # … failing again
    logger.after_report(None, [{"epoch": 1, "val_accuracy": 0.75, SELECTION: 0.75}], None)
    run = client.get_run(run_id)
    assert run.data.tags["genre_ray.restarts"] == "2"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "resumed_at_epoch")] == [(1, 1.0), (2, 1.0)]
    assert {k: v for k, v in run.data.params.items() if k.startswith("effective.")} == {
        "effective.device_cache": "False", "effective.fused_optimizer": "False", "effective.device": "cpu"}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val_accuracy")] == [(0, 0.5), (1, 0.75)]
    assert SELECTION not in run.data.metrics and "epoch" not in run.data.metrics


def test_train_resume_state_new_run_only_when_the_state_or_the_run_is_gone(tmp_path, monkeypatch):
    """OUT/train_run.json unreadable, or its MLflow run deleted from the store: a new run. A store that does not
    answer is an error — reading it as "start afresh" once abandoned a run's checkpoints for a blip."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from genre_ray.config import TrainConfig
    from genre_ray.pipelines.train import resumable_run

    cfg = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "out"))
    state = tmp_path / "train_run.json"
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    state.write_text("{not json")
    assert resumable_run(state, cfg, client) is None
    state.write_text('{"run_id": "0123456789abcdef0123456789abcdef", "config": {}}')
    assert resumable_run(state, cfg, client) is None  # no such run in the store
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MlflowException):
        resumable_run(state, cfg, mlflow.tracking.MlflowClient(f"http://127.0.0.1:{port}"))


@pytest.mark.parametrize("command", ["predict", "label"])
def test_a_registry_uri_with_no_store_here_says_where_it_looked_and_creates_none(monkeypatch, tmp_path, capsys, command):
    """From a folder without the jobs' store, `--model models:/…` said only "not found" — and left an empty
    genre-ray-runs/mlflow.db behind in that folder."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("GENRE_RAY_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.wav").write_bytes(b"RIFF")
    argv = (["predict", "lib/a.wav"] if command == "predict" else
            ["label", "--input", str(tmp_path / "lib"), "--out", str(tmp_path / "labels")])
    assert main([*argv, "--model", "models:/genre-ray@champion"]) == 2
    err = capsys.readouterr().err
    assert f"no MLflow store at {tmp_path / 'genre-ray-runs' / 'mlflow.db'}" in err and "GENRE_RAY_HOME" in err
    assert not (tmp_path / "genre-ray-runs").exists() and not (tmp_path / "labels").exists()
