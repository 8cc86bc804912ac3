"""Fault injection on the local Ray cluster: a Ray worker process SIGKILLed in the middle of ``prepare``, ``label``
and ``tune`` (``train``: tests/test_train_faults.py; a killed *driver*: test_label.py and test_tune.py). Each job
finishes with a complete, duplicate-free result equal to an undisturbed run, and MLflow records what happened."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import mlflow
import numpy as np
import pandas as pd
import pytest

from genre_ray import tracking
from genre_ray.config import LabelConfig, PrepareConfig, RayConfig
from genre_ray.features import FeatureConfig
from genre_ray.synth import write_corpus
from procs import ray_workers

pytestmark = pytest.mark.integration

SMALL = FeatureConfig(n_mels=32, height=32, width=32)


def run_and_kill(job: Callable[[], Any], match: str, timeout_s: float = 600) -> tuple[Any, int | None]:
    """Run ``job`` in a thread; SIGKILL the first Ray worker process of *this* test session whose title starts with
    ``ray::`` and contains ``match`` (Ray titles a worker after the task or actor it is running). Returns the job's
    result and the killed pid (``None`` if no such worker showed up before the job ended)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = job()
        except BaseException as exc:  # surfaced below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    killed, deadline = None, time.time() + timeout_s
    while thread.is_alive() and killed is None and time.time() < deadline:
        for pid in ray_workers(match):
            os.kill(pid, signal.SIGKILL)
            killed = pid
            break
        time.sleep(0.05)
    thread.join(timeout=timeout_s)
    assert not thread.is_alive(), "job still running after the fault"
    if "error" in box:
        raise box["error"]
    return box.get("result"), killed


def _windows(prepared: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    t = pq.read_table(prepared / "windows", columns=["track_id", "split", "window_idx", "augmented", "image"])
    df = t.to_pandas()
    df["checksum"] = [float(np.asarray(im, np.float32).sum()) for im in df.pop("image")]
    return df.sort_values(["track_id", "augmented", "window_idx"]).reset_index(drop=True)


def test_prepare_survives_a_killed_worker(tmp_path, ray_session):
    from genre_ray.pipelines.prepare import run_prepare

    write_corpus(tmp_path / "corpus", genres=3, per_genre=8, seconds=8.0, seed=5)

    def cfg(out: str) -> PrepareConfig:
        return PrepareConfig(source=str(tmp_path / "corpus"), out=str(tmp_path / out), features=SMALL,
                             noise_copies=1, split_fractions=(0.5, 0.25, 0.25), ray=RayConfig())

    meta, killed = run_and_kill(lambda: run_prepare(cfg("faulted")), "track_windows")
    assert killed is not None, "prepare finished before a worker could be killed"
    reference = run_prepare(cfg("reference"))
    assert meta["windows"] == reference["windows"] and not meta["failed"]
    got, want = _windows(tmp_path / "faulted"), _windows(tmp_path / "reference")
    assert not got.duplicated(["track_id", "augmented", "window_idx"]).any()
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("featurize,stage,decode_workers", [
    ("cpu", "featurize_batch", "tasks"), ("cpu", "FeaturizeWorker", "actors"), ("cpu", "Classifier", "actors"),
    ("actor", "TrackClassifier", "actors")])
def test_label_survives_a_killed_worker(featurize, stage, decode_workers, tmp_path, ray_session, mlflow_home):
    from genre_ray.pipelines.label import read_labels, run_label
    from label_lib import make_library, sharp_bundle

    expected = make_library(tmp_path / "library")
    bundle = sharp_bundle(tmp_path / "bundle")

    def cfg(out: str) -> LabelConfig:
        return LabelConfig(input=str(tmp_path / "library"), model=str(bundle), out=str(tmp_path / out),
                           too_short="skip", batch_size=4, call_windows=4, shard_rows=3, featurize=featurize,
                           decode_workers=decode_workers, experiment=f"faults-label-{stage}")

    summary, killed = run_and_kill(lambda: run_label(cfg("faulted")), stage)
    assert killed is not None, f"label finished before a {stage} worker could be killed"
    assert summary["missing"] == 0 and summary["rows"] == len(expected)
    got = read_labels(tmp_path / "faulted").sort_values("path").reset_index(drop=True)
    assert got["path"].is_unique and sorted(got["path"]) == sorted(expected)
    run_label(cfg("reference"))
    want = read_labels(tmp_path / "reference").sort_values("path").reset_index(drop=True)
    cols = ["path", "status", "genre", "n_windows", "duration_s"] + [c for c in want.columns if c.startswith("p_")]
    pd.testing.assert_frame_equal(got[cols], want[cols], check_exact=False, atol=1e-5)
    client = mlflow.tracking.MlflowClient(tracking.tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name(f"faults-label-{stage}").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.metrics["files"] for r in runs} == {len(expected)}
