"""Ray Train failure handling on the local cluster: a training worker killed mid-run is replaced, a killed driver's
rerun continues its run; training resumes from the last checkpoint, and the MLflow history has every epoch exactly
once."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import mlflow
import pytest

from genre_ray.config import PrepareConfig, RayConfig, TrainConfig
from genre_ray.features import FeatureConfig
from genre_ray.synth import write_corpus
from procs import kill_driver_when

pytestmark = pytest.mark.integration

EPOCHS = 5


def _train_workers():
    import ray
    from ray.util.state import list_actors

    return list_actors(address=ray.get_runtime_context().gcs_address,
                       filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, ray_session, mlflow_home):
    from genre_ray.pipelines.prepare import run_prepare

    work = tmp_path_factory.mktemp("train-faults")
    write_corpus(work / "corpus", genres=3, per_genre=8, seconds=6.0, seed=3)
    run_prepare(PrepareConfig(source=str(work / "corpus"), out=str(work / "prepared"),
                              split_fractions=(0.5, 0.25, 0.25), features=FeatureConfig(n_mels=32, height=32, width=32),
                              ray=RayConfig()))
    return work / "prepared"


def test_killed_worker_resumes_from_last_checkpoint(tmp_path, prepared, ray_session, mlflow_home):
    from genre_ray.pipelines.train import run_train

    cfg = TrainConfig(data=str(prepared), out=str(tmp_path / "train"), epochs=EPOCHS, batch_size=8,
                      num_workers=2, cpus_per_worker=0.5, max_failures=2, experiment="faults",
                      model_kwargs={"channels": [4, 8, 8, 8], "dense": [16]})
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("report", run_train(cfg)), daemon=True)
    thread.start()

    from genre_ray import tracking

    client = mlflow.tracking.MlflowClient(tracking.tracking_uri())
    killed = None
    deadline = time.time() + 600
    while thread.is_alive() and time.time() < deadline and killed is None:
        time.sleep(1.0)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments() if e.name == "faults"])
        if not runs:
            continue
        steps = {m.step for m in client.get_metric_history(runs[0].info.run_id, "val_accuracy")}
        if len(steps) >= 2:  # two epochs checkpointed: kill one worker in the middle of the third
            workers = _train_workers()
            if workers:
                killed = workers[-1].pid
                os.kill(killed, signal.SIGKILL)
    thread.join(timeout=900)
    assert killed is not None, "training finished before a worker could be killed"
    assert "report" in box, "training did not finish after the worker was killed"
    report = box["report"]
    run = client.get_run(report["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags.get("genre_ray.restarts") == "1"
    history = client.get_metric_history(report["run_id"], "val_accuracy")
    assert sorted(m.step for m in history) == list(range(EPOCHS)), "gap or repeat in the epoch history"
    resumed = client.get_metric_history(report["run_id"], "resumed_at_epoch")
    assert len(resumed) == 1 and 2 <= resumed[0].value < EPOCHS
    assert report["epochs_run"] == EPOCHS and report["test"]["track"]["n"] > 0


def test_killed_driver_reruns_into_the_same_run_from_its_last_checkpoint(tmp_path, prepared, ray_session, mlflow_home):
    """`genre-ray train` SIGKILLed after two checkpointed epochs; the same command again continues that MLflow run
    from the last checkpoint (Ray Train finds it under the same run name): every epoch once, one run, FINISHED."""
    from genre_ray import tracking
    from genre_ray.config import load_config
    from genre_ray.pipelines.train import RUN_FILE, run_train

    out = tmp_path / "train"
    sets = {"epochs": EPOCHS, "batch_size": 8, "num_workers": 1, "cpus_per_worker": 0.5, "experiment": "driver-kill",
            "model_kwargs": {"channels": [4, 8, 8, 8], "dense": [16]}}
    argv = ["train", "--data", str(prepared), "--out", str(out)]
    for k, v in sets.items():
        argv += ["--set", f"{k}={json.dumps(v)}"]
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    client = mlflow.tracking.MlflowClient(tracking.tracking_uri())

    def two_epochs_logged() -> bool:
        if not (out / RUN_FILE).is_file():
            return False
        return len(client.get_metric_history(json.loads((out / RUN_FILE).read_text())["run_id"], "val_accuracy")) >= 2

    code, log = kill_driver_when([sys.executable, "-m", "genre_ray.cli", *argv], env, two_epochs_logged)
    run_id = json.loads((out / RUN_FILE).read_text())["run_id"] if (out / RUN_FILE).is_file() else None
    assert code == -signal.SIGKILL and run_id, log[-3000:]
    done_before = len(client.get_metric_history(run_id, "val_accuracy"))
    assert 2 <= done_before < EPOCHS and client.get_run(run_id).info.status == "RUNNING"

    again = [f"{k}={json.dumps(v)}" for k, v in sets.items()]  # the same command, in this process
    report = run_train(load_config(TrainConfig, None, again, data=str(prepared), out=str(out)))
    assert report["run_id"] == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["genre_ray.driver_resumes"] == "1"
    steps = sorted(m.step for m in client.get_metric_history(run_id, "val_accuracy"))
    assert steps == list(range(EPOCHS)), "gap or repeat in the epoch history"
    resumed = client.get_metric_history(run_id, "resumed_at_epoch")
    assert len(resumed) == 1 and resumed[0].value >= done_before
    assert report["epochs_run"] == EPOCHS and (out / "bundle").is_dir()

    from genre_ray import atomic
    from genre_ray.config import ConfigError
    from genre_ray.pipelines.train import LOCK_FILE, resumable_run

    with atomic.exclusive(out / LOCK_FILE, "a run"):  # another driver training into OUT: refused
        with pytest.raises(ConfigError, match="is in use by another run"):
            run_train(load_config(TrainConfig, None, again, data=str(prepared), out=str(out)))
    # a dead driver's RUNNING run: resumed with the same config and data; a re-prepared data folder (another
    # fingerprint: other labels, splits or images) starts a new run — old weights are never resumed under new classes
    exp = client.get_experiment_by_name("driver-kill").experiment_id
    state = json.loads((out / RUN_FILE).read_text())
    same = load_config(TrainConfig, None, again, data=str(prepared), out=str(out))
    running = client.create_run(exp).info.run_id
    (out / RUN_FILE).write_text(json.dumps({**state, "run_id": running}))
    assert state["data"] and resumable_run(out / RUN_FILE, same, client, state["data"])["run_id"] == running
    assert resumable_run(out / RUN_FILE, same, client, "another-fingerprint") is None
    # with another config: a new run, the old one marked KILLED
    stale = client.create_run(exp).info.run_id
    (out / RUN_FILE).write_text(json.dumps({**state, "run_id": stale}))
    other = load_config(TrainConfig, None, [*again, "epochs=2"], data=str(prepared), out=str(out))
    assert resumable_run(out / RUN_FILE, other, client) is None and client.get_run(stale).info.status == "KILLED"


def _one_val_track_for_rank(prepared, dst, rank: int, world: int):
    """A copy of ``prepared`` whose val split is one track, the one :func:`rank_rows` gives to ``rank``."""
    import shutil

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import ray.data  # noqa: F401  (the image column's Arrow tensor type)

    from genre_ray.pipelines.train import rank_rows

    shutil.copytree(prepared, dst)
    val = dst / "windows" / "split=val"
    files = sorted(val.glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    ids = np.unique(table["track_id"].to_numpy(zero_copy_only=False))
    track = ids[rank_rows(ids, rank, world)][0]
    keep = table.filter(pc.equal(table["track_id"], track))
    for f in files:
        f.unlink()
    pq.write_table(keep, val / "only.parquet")
    meta = json.loads((dst / "meta.json").read_text())
    meta["windows"]["val"] = keep.num_rows
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


@pytest.mark.parametrize("rank", [0, 1])
def test_two_workers_finish_when_one_worker_has_no_validation_track(tmp_path, prepared, ray_session, mlflow_home,
                                                                    rank):
    """Each worker scores the validation tracks :func:`rank_rows` gives it; with few tracks one gets none. Its
    validation once skipped every forward pass while the other worker's DDP forward waited in a buffer broadcast:
    the epoch never ended."""
    from genre_ray.pipelines.train import run_train

    data = _one_val_track_for_rank(prepared, tmp_path / "data", rank, 2)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "train"), epochs=1, batch_size=8, num_workers=2,
                      cpus_per_worker=0.5, experiment="faults", model_kwargs={"channels": [4, 8, 8, 8], "dense": [16]})
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("report", run_train(cfg)), daemon=True)
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive(), "training hung: a worker without validation tracks deadlocked the epoch"
    assert box["report"]["val"]["track"]["n"] == 1
