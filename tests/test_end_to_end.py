"""One real path through the house: synth → prepare (Ray Data) → train (Ray Train, 2 DDP workers) →
MLflow → label (Ray Data actor pool) → predict. Real Ray, real MLflow (sqlite), real decoders."""

from __future__ import annotations

import os
import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from genre_ray.cli import main
from genre_ray.config import LabelConfig, PrepareConfig, RayConfig, TrainConfig
from genre_ray.features import FeatureConfig
from genre_ray.synth import write_corpus

pytestmark = pytest.mark.integration

GENRES, PER_GENRE, EPOCHS = 4, 24, 10
# smoke size: 64×64 images (the product default is 216×216) keep the CPU test fast
FEATURES = FeatureConfig(n_mels=64, height=64, width=64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_session, mlflow_home):
    from genre_ray.pipelines.prepare import run_prepare
    from genre_ray.pipelines.train import run_train

    work = tmp_path_factory.mktemp("e2e")
    write_corpus(work / "corpus", genres=GENRES, per_genre=PER_GENRE, seconds=6.0, seed=1)
    meta = run_prepare(PrepareConfig(source=str(work / "corpus"), out=str(work / "prepared"), seed=0,
                                     split_fractions=(0.5, 0.25, 0.25), noise_copies=1, features=FEATURES,
                                     ray=RayConfig()))
    report = run_train(TrainConfig(data=str(work / "prepared"), out=str(work / "train"), epochs=EPOCHS, batch_size=16,
                                   lr=3e-3, num_workers=2, cpus_per_worker=0.5, register_as="genre-ray-e2e",
                                   device_cache=True,  # each DDP worker's shard read once, batches drawn in memory
                                   model_kwargs={"channels": [16, 32, 32, 32], "dense": [64], "dropout": 0.2,
                                                 "conv_dropout": 0.0}))
    return work, meta, report


def test_prepare_splits_per_track_before_windowing(trained):
    work, meta, _ = trained
    tracks = pd.read_parquet(work / "prepared" / "tracks.parquet")
    assert len(tracks) == GENRES * PER_GENRE and meta["failed"] == []
    assert tracks.groupby("split")["label"].nunique().to_dict() == {"test": GENRES, "train": GENRES, "val": GENRES}
    windows = {s: pd.read_parquet(work / "prepared" / "windows" / f"split={s}", columns=["track_id", "augmented"])
               for s in ("train", "val", "test")}
    ids = {s: set(w["track_id"]) for s, w in windows.items()}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    for s in ids:
        assert ids[s] == set(tracks.loc[tracks["split"] == s, "track_id"])
    # 6 s clips, 3 s windows every 1.5 s → 3 windows per track; training gets one noisy copy of each
    assert len(windows["val"]) == 3 * len(ids["val"])
    assert len(windows["train"]) == 2 * 3 * len(ids["train"]) and windows["train"]["augmented"].sum() == 3 * len(ids["train"])
    import ray

    row = ray.data.read_parquet(str(work / "prepared" / "windows" / "split=val")).take(1)[0]
    assert row["image"].shape == (1, 64, 64) and row["image"].dtype == "float16"
    assert 0.0 <= row["image"].min() and row["image"].max() <= 1.0
    # the image column is written PLAIN, without a dictionary or statistics (prepare.IMAGE_WRITE_ARGS); the small
    # columns keep pyarrow's defaults
    import pyarrow.parquet as pq

    meta_pq = pq.ParquetFile(next((work / "prepared" / "windows" / "split=train").glob("*.parquet"))).metadata
    chunks = {meta_pq.row_group(0).column(i).path_in_schema: meta_pq.row_group(0).column(i)
              for i in range(meta_pq.num_columns)}
    image = next(c for path, c in chunks.items() if path.startswith("image"))
    assert not any("DICTIONARY" in e for e in image.encodings) and not image.is_stats_set
    assert any("DICTIONARY" in e for e in chunks["track_id"].encodings) and chunks["track_id"].is_stats_set
    # the prepare run is in MLflow: its config, the split used, counts, its files; the same dataset fingerprint as
    # the train runs on this data
    runs = mlflow.search_runs(filter_string="tags.`genre_ray.job` = 'prepare'", search_all_experiments=True)
    run = runs[runs["params.out"] == str(work / "prepared")].iloc[0]
    assert run["params.split_strategy"] == "random" and run["metrics.tracks_train"] == meta["tracks"]["train"]
    assert run["metrics.windows_val"] == meta["windows"]["val"] and run["metrics.failed"] == 0
    assert run["tags.dataset_fingerprint"] == trained[2]["dataset_fingerprint"]
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"])}
    assert {"meta.json", "config.yaml", "tracks.parquet"} <= arts


def test_two_worker_ddp_learns_per_track_and_is_in_mlflow(trained):
    work, _, report = trained
    # held out = val + test tracks (48; neither is trained on); runs are not bit-reproducible across Ray schedules
    # (the streaming split deals other windows to each worker): seen 0.9375–1.0 held out, 0.917–1.0 test (2026-11-27,
    # 5 runs alone and one in the full suite) — the bounds leave room for that spread, far above chance (0.25)
    val, test = report["val"]["track"], report["test"]["track"]
    acc = (val["accuracy"] * val["n"] + test["accuracy"] * test["n"]) / (val["n"] + test["n"])
    assert acc >= 0.9, f"held-out per-track accuracy {acc} (val {val['accuracy']}, test {test['accuracy']})"
    assert test["accuracy"] >= 0.85, f"test per-track accuracy {test['accuracy']} (chance {1 / GENRES})"
    run = mlflow.get_run(report["run_id"])
    assert run.data.params["model"] == "homebrew" and run.data.params["num_workers"] == "2"
    # what the automatic settings became: the config's own params say null
    assert run.data.params["cache_in_memory"] == "None" and run.data.params["effective.cache_in_memory"] in ("True", "False")
    assert run.data.params["effective.device"] == "cpu" and run.data.params["effective.fused_optimizer"] == "False"
    feats = json.loads((work / "prepared" / "meta.json").read_text())["features"]
    assert json.loads(run.data.params["effective.model_kwargs"])["input_size"] == [feats["height"], feats["width"]]
    client = mlflow.tracking.MlflowClient()
    for curve in ("val_accuracy", "val_track_accuracy"):  # one point per epoch: the final scores have their own keys
        assert sorted(m.step for m in client.get_metric_history(report["run_id"], curve)) == list(range(EPOCHS)), curve
    assert run.data.metrics["test_track_accuracy"] == pytest.approx(test["accuracy"])
    assert run.data.metrics["val_final_track_accuracy"] == pytest.approx(val["accuracy"])
    registered = client.get_model_version("genre-ray-e2e", report["registered"].rsplit("/", 1)[1])
    assert report["run_id"] in registered.description and "per-track accuracy" in registered.description
    assert "genres" in client.get_registered_model("genre-ray-e2e").description
    assert Path(work / "train" / "bundle" / "bundle.json").is_file()
    # the logged MLflow model carries the bundle: label/predict can load it by URI
    from genre_ray.bundle import load_bundle

    assert load_bundle(report["model_uri"]).classes == load_bundle(work / "train" / "bundle").classes


def test_label_one_row_per_file_and_bad_files_reported(trained, tmp_path):
    from genre_ray.pipelines.label import run_label

    work, _, report = trained
    lib = tmp_path / "library"
    for i, fmt in enumerate(("wav", "flac", "mp3")):
        write_corpus(lib, genres=GENRES, per_genre=1, seconds=6.0, seed=1, start_index=500 + i, fmt=fmt)
    (lib / "corrupt.flac").write_bytes(b"\x00garbage" * 100)
    (lib / "empty.wav").write_bytes(b"")
    summary = run_label(LabelConfig(input=str(lib), model=report["bundle"], out=str(tmp_path / "out")))
    labels = pd.read_parquet(summary["labels"])
    files = sorted(str(p) for p in lib.rglob("*") if p.is_file())
    assert sorted(labels["path"]) == files  # exactly one row per input file
    bad = labels[labels["status"] != "ok"]
    assert sorted(Path(p).name for p in bad["path"]) == ["corrupt.flac", "empty.wav"]
    assert bad["error"].str.len().min() > 0
    good = labels[labels["status"] == "ok"]
    truth = good["path"].map(lambda p: Path(p).parent.name)
    assert (good["genre"] == truth).mean() >= 0.75
    p_cols = [c for c in labels.columns if c.startswith("p_")]
    assert len(p_cols) == GENRES and (good[p_cols].sum(axis=1) - 1).abs().max() < 1e-4
    assert (good["n_windows"] == 3).all() and set(good["top_k_genres"].map(len)) == {3}


def test_evaluate_scores_a_registered_model_on_the_test_split(trained, tmp_path, capsys):
    """`genre-ray evaluate` on the registered model: the same window and track accuracy (and ECE) training reported
    on test, per-track metrics, a confusion PNG, an MLflow run on the same split."""
    import os
    import subprocess
    import sys

    work, _, report = trained
    argv = ["evaluate", "--model", "models:/genre-ray-e2e/1", "--data", str(work / "prepared"), "--out",
            str(tmp_path / "eval")]
    # a fresh process, as a user runs it: nothing imported before (Ray's Arrow tensor type once went unregistered)
    proc = subprocess.run([sys.executable, "-m", "genre_ray.cli", *argv], env=dict(os.environ), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "== genre-ray evaluate: test ==" in proc.stdout, proc.stdout + proc.stderr
    res = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert res["window"]["accuracy"] == pytest.approx(report["test"]["window"]["accuracy"], abs=1e-9)
    # training scores test with the fitted temperature, as evaluate and the labels do: the same verdicts, the same ECE
    assert res["track"]["n"] == report["test"]["track"]["n"]
    assert res["track"]["accuracy"] == pytest.approx(report["test"]["track"]["accuracy"], abs=1e-9)
    assert res["track"]["ece"] == pytest.approx(report["test"]["track"]["ece"], abs=1e-4)
    assert (tmp_path / "eval" / "confusion_test_track.png").stat().st_size > 5000
    verdicts = pd.read_csv(tmp_path / "eval" / "predictions.csv")  # one row per test track, wrong ones first
    assert len(verdicts) == res["track"]["n"] and verdicts["rel_path"].notna().all()
    assert verdicts["correct"].mean() == pytest.approx(res["track"]["accuracy"])
    run = mlflow.get_run(res["run_id"])
    assert run.data.tags["genre_ray.job"] == "evaluate" and run.data.tags["same_split_as_training"] == "true"
    assert run.data.params["model_version_resolved"] == "1" and run.data.params["model_run_id"] == report["run_id"]
    assert run.data.metrics["test_track_accuracy"] == res["track"]["accuracy"]
    assert main([*argv[:-2], "--split", "holdout"]) == 2


def test_predict_cli_json(trained, capsys):
    work, _, report = trained
    clip = sorted((work / "corpus").rglob("*.wav"))[0]
    # through the MLflow model registry: the registered model carries the bundle
    assert main(["predict", str(clip), "--model", "models:/genre-ray-e2e/1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "ok" and len(out["timeline"]) == out["n_windows"] == 3



def test_predict_reads_a_registry_uri_from_the_project_store_in_a_new_process(trained, tmp_path):
    """A fresh `genre-ray predict` (no MLFLOW_TRACKING_URI, run from another folder) found no such model: MLflow
    looked in ./mlflow.db of the working folder instead of the project's store (GENRE_RAY_HOME)."""
    import subprocess
    import sys

    work, _, _ = trained
    clip = sorted((work / "corpus").rglob("*.wav"))[0]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", "genre_ray.cli", "predict", str(clip), "--model",
                           "models:/genre-ray-e2e/1", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "ok"
    assert not (tmp_path / "mlflow.db").exists()


def test_calibration_embeddings_and_similar(trained, tmp_path, capsys):
    """Issue #9: temperature fitted on val (ECE not worse), stored in the bundle and logged; held-out tracks'
    embeddings from the label job are unit vectors equal to predict's, and a track's nearest neighbour is
    of its own genre far above chance; `genre-ray similar` lists them."""
    import numpy as np

    from genre_ray.bundle import load_bundle
    from genre_ray.inference import predict_file
    from genre_ray.pipelines.label import read_labels, run_label
    from genre_ray.similarity import load_index, nearest

    work, _, report = trained
    cal = report["calibration"]
    tracks = pd.read_parquet(work / "prepared" / "tracks.parquet")
    assert cal["n_tracks"] == (tracks["split"] == "val").sum()
    assert cal["ece_after"] <= cal["ece_before"] + 1e-9 and cal["nll_after"] <= cal["nll_before"] + 1e-9
    bundle = load_bundle(report["bundle"])
    assert bundle.temperature == cal["temperature"] and bundle.uncertain_threshold == cal["uncertain_threshold"]
    run = mlflow.get_run(report["run_id"])
    assert run.data.metrics["temperature"] == pytest.approx(cal["temperature"])
    assert run.data.metrics["val_track_ece_calibrated"] == pytest.approx(cal["ece_after"])
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(report["run_id"], "plots")}
    assert "plots/reliability_val.png" in arts

    held = tracks[tracks["split"] != "train"]
    held[["path"]].to_csv(tmp_path / "held.csv", index=False)
    out = tmp_path / "out"
    summary = run_label(LabelConfig(input=str(tmp_path / "held.csv"), model=report["bundle"], out=str(out),
                                    review_list=str(tmp_path / "review.csv")))
    assert summary["status"] == {"ok": len(held)} and summary["temperature"] == cal["temperature"]
    index = load_index(out)
    assert len(index) == len(held)
    np.testing.assert_allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-5)
    genre = dict(zip(held["path"], held["label"]))
    truth = np.array([genre[p] for p in index.paths])
    first = [nearest(index.vectors, index.vectors[i], 1, exclude=i)[0][0] for i in range(len(index))]
    same = float(np.mean(truth[first] == truth))
    chance = (len(held) / GENRES - 1) / (len(held) - 1)
    assert same >= 0.8 and same > 3 * chance, f"nearest neighbour of the same genre {same} (chance {chance:.2f})"
    labels = read_labels(out).set_index("path")
    review = pd.read_csv(tmp_path / "review.csv")
    assert sorted(review["path"]) == sorted(labels.index[labels["uncertain"]])

    path = str(index.paths[0])
    row, _, _ = predict_file(bundle.build_model(), path, bundle.features, bundle.classes, embeddings=True,
                             temperature=bundle.temperature)
    np.testing.assert_allclose(row["embedding"], labels.loc[path, "embedding"], atol=1e-5)
    assert row["confidence"] == pytest.approx(labels.loc[path, "confidence"], abs=1e-5)

    capsys.readouterr()
    assert main(["similar", Path(path).name, "--labels", str(out), "-k", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"nearest to {path}:" and len(lines) == 2 + 5
    print(f"calibration: T={cal['temperature']:.4g}, val ECE {cal['ece_before']:.4f} → {cal['ece_after']:.4f}; "
          f"same-genre nearest neighbour {same:.3f} (chance {chance:.3f})")
