"""Ray Train failure handling on the local cluster: a training worker killed mid-run is replaced, training
resumes from the last checkpoint, and the MLflow history has every epoch exactly once."""

from __future__ import annotations

import os
import signal
import threading
import time

import mlflow
import pytest

from genre_ray.config import PrepareConfig, RayConfig, TrainConfig
from genre_ray.features import FeatureConfig
from genre_ray.synth import write_corpus

pytestmark = pytest.mark.integration

EPOCHS = 5


def _train_workers():
    import ray
    from ray.util.state import list_actors

    return list_actors(address=ray.get_runtime_context().gcs_address,
                       filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])


def test_killed_worker_resumes_from_last_checkpoint(tmp_path, ray_session, mlflow_home):
    from genre_ray.pipelines.prepare import run_prepare
    from genre_ray.pipelines.train import run_train

    write_corpus(tmp_path / "corpus", genres=3, per_genre=8, seconds=6.0, seed=3)
    run_prepare(PrepareConfig(source=str(tmp_path / "corpus"), out=str(tmp_path / "prepared"),
                              split_fractions=(0.5, 0.25, 0.25), features=FeatureConfig(n_mels=32, height=32, width=32),
                              ray=RayConfig()))
    cfg = TrainConfig(data=str(tmp_path / "prepared"), out=str(tmp_path / "train"), epochs=EPOCHS, batch_size=8,
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
