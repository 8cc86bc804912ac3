"""``genre-ray demo``: synthesise → prepare → train (2 Ray Train workers on CPU) → label unseen clips.

Everything lands in one work folder; MLflow uses the default project-local store unless
``MLFLOW_TRACKING_URI`` is set.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from genre_ray import tracking
from genre_ray.config import DemoConfig, LabelConfig, PrepareConfig, RayConfig, TrainConfig, default_home
from genre_ray.features import FeatureConfig
from genre_ray.pipelines.label import run_label
from genre_ray.pipelines.prepare import run_prepare
from genre_ray.pipelines.train import run_train
from genre_ray.synth import write_corpus

UNSEEN_START = 1000  # clip numbers of the labelling set: never in the training corpus
UNSEEN_FORMATS = ("wav", "flac", "mp3", "ogg")
DEMO_MODEL_NAME = "genre-ray-demo"  # the registered model the demo trains (alias @champion)


def run_demo(cfg: DemoConfig, model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    t0 = time.time()
    workdir, genres, per_genre, seconds, hop_s = cfg.workdir, cfg.genres, cfg.per_genre, cfg.seconds, cfg.hop_s
    epochs, num_workers, num_cpus, seed = cfg.epochs, cfg.num_workers, cfg.num_cpus, cfg.seed
    work = Path(workdir) if workdir else default_home() / "demo"
    ray_cfg = RayConfig(num_cpus=num_cpus)
    print(f"[demo] synthesising {genres} genres × {per_genre} clips × {seconds:g} s → {work / 'corpus'}", flush=True)
    write_corpus(work / "corpus", genres=genres, per_genre=per_genre, seconds=seconds, seed=seed)
    # Unseen clips for labelling, in several encoded formats (real decoders on real files).
    for i, fmt in enumerate(UNSEEN_FORMATS):
        write_corpus(work / "unseen", genres=genres, per_genre=1, seconds=seconds, seed=seed,
                     start_index=UNSEEN_START + i, fmt=fmt)

    run_prepare(PrepareConfig(source=str(work / "corpus"), out=str(work / "prepared"), seed=seed,
                              features=FeatureConfig(hop_s=hop_s), ray=ray_cfg))
    report = run_train(TrainConfig(data=str(work / "prepared"), out=str(work / "train"), model="homebrew",
                                   model_kwargs=model_kwargs or {"channels": [16, 32, 64, 64], "dense": [128, 64],
                                                                 "dropout": 0.2, "conv_dropout": 0.0},
                                   epochs=epochs, batch_size=16, lr=2e-3, num_workers=num_workers, seed=seed,
                                   cpus_per_worker=0.5, register_as=DEMO_MODEL_NAME,
                                   ray=ray_cfg))
    # overwrite: the folder is the demo's own, and each demo run labels with the model it has just trained (a second
    # `make demo` used to stop here, refusing labels "made with another model" — the first run's)
    summary = run_label(LabelConfig(input=str(work / "unseen"), model=report["bundle"], out=str(work / "unseen-labels"),
                                    overwrite=True, ray=ray_cfg))
    labels = pd.read_parquet(summary["labels"])
    truth = labels["path"].map(lambda p: Path(p).parent.name)
    unseen_acc = float((labels["genre"] == truth).mean())
    test_acc = report["test"]["track"]["accuracy"]
    uri = tracking.tracking_uri()
    result = {"test_track_accuracy": test_acc, "unseen_label_accuracy": unseen_acc,
              "seconds": round(time.time() - t0, 1), "labels": summary["labels"], "mlflow": uri,
              "run_id": report["run_id"]}
    beside = Path(sys.executable).parent / "mlflow"  # this venv's, on PATH or not (make demo does not activate it)
    mlflow_cmd = str(beside) if beside.is_file() else "mlflow"
    ui = f"{mlflow_cmd} ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000" if uri.startswith("sqlite") \
        else f"open {uri}"
    print("\n".join([
        "",
        "== genre-ray demo: done ==",
        f"held-out test tracks: per-track accuracy {test_acc:.3f} ({report['test']['track']['n']} tracks, "
        f"{genres} genres, chance {1 / genres:.2f})",
        f"unseen clips labelled: {len(labels)} files ({', '.join(UNSEEN_FORMATS)}), accuracy {unseen_acc:.3f}",
        f"labels:      {summary['labels']}",
        f"model:       {report['bundle']}  (MLflow: {report['model_uri']})",
        *([f"registered:  {report['registered']}; {report['alias']} — e.g. genre-ray predict FILE --model "
           f"models:/{DEMO_MODEL_NAME}@champion"] if report.get("registered") else []),
        f"MLflow runs: {uri}  (train run {report['run_id']})",
        f"browse:      {ui}   then open http://127.0.0.1:5000",
        f"wall time:   {result['seconds']} s",
    ]), flush=True)
    return result
