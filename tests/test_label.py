"""The Ray Data label job on a real local Ray and MLflow store: a mixed library (nested folders, formats, sample
rates, channel counts, bad files) → one row per file equal to ``predict``; resume; SIGKILL + rerun."""

from __future__ import annotations

import json
import os
import signal
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

from genre_ray.bundle import load_bundle
from genre_ray.config import LabelConfig
from genre_ray.inference import predict_file
from genre_ray.uncertainty import UncertaintyRule
from label_lib import CLASSES, make_library, sharp_bundle
from procs import kill_driver_when

pytestmark = pytest.mark.integration

P_COLS = [f"p_{c}" for c in CLASSES]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, ray_session, mlflow_home):
    from genre_ray.pipelines.label import run_label

    work = tmp_path_factory.mktemp("label")
    expected = make_library(work / "library")
    bundle = sharp_bundle(work / "bundle")
    cfg = LabelConfig(input=str(work / "library"), model=str(bundle), out=str(work / "out"), too_short="skip",
                      batch_size=16, shard_rows=3, timeline=True, export=["csv", "jsonl"],
                      review_list=str(work / "review.csv"), uncertain_threshold=0.9)
    summary = run_label(cfg)
    return work, expected, bundle, cfg, summary


def test_one_row_per_file_with_the_right_status(setup):
    from genre_ray.pipelines.label import read_labels

    work, expected, _, _, summary = setup
    labels = read_labels(work / "out")
    assert sorted(labels["path"]) == sorted(expected) and labels["path"].is_unique
    assert dict(zip(labels["path"], labels["status"])) == expected
    bad = labels[labels["status"] != "ok"]
    assert (bad["error"].str.len() > 0).all() and bad["genre"].isna().all() and (bad["n_windows"] == 0).all()
    assert bad[P_COLS].isna().all().all()
    assert summary["status"] == {"ok": 8, "error": 4, "too-short": 1} and summary["labelled_now"] == 13
    assert len(list((work / "out" / "labels").glob("*.parquet"))) == 5  # shards of 3 rows
    ok = labels[labels["status"] == "ok"]
    assert (ok[P_COLS].sum(axis=1) - 1).abs().max() < 1e-5
    assert (ok["top_k_genres"].map(len) == 3).all() and (ok["genre"] == ok["top_k_genres"].map(lambda g: g[0])).all()
    assert ok["model_name"].eq("homebrew").all() and ok["feature_hash"].eq(load_bundle(setup[2]).features.hash()).all()


def test_labels_equal_predict_on_the_same_files(setup):
    from genre_ray.pipelines.label import read_labels

    work, expected, bundle_dir, _, _ = setup
    labels = read_labels(work / "out").set_index("path")
    timeline = pd.read_parquet(work / "out" / "timeline").sort_values(["path", "window"])
    b = load_bundle(bundle_dir)
    model = b.build_model()
    for path, status in expected.items():
        row, probs, starts = predict_file(model, path, b.features, b.classes, too_short="skip", embeddings=True,
                                          rule=UncertaintyRule(threshold=0.9))
        got = labels.loc[path]
        assert got["status"] == row["status"] and got["n_windows"] == row["n_windows"] == len(probs), path
        if status != "ok":
            assert got["embedding"] is None and not got["uncertain"], path
            continue
        assert got["genre"] == row["genre"], path
        emb = np.asarray(got["embedding"], np.float64)
        assert emb.shape == (model.embedding_dim,) and abs(np.linalg.norm(emb) - 1) < 1e-5, path
        np.testing.assert_allclose(emb, row["embedding"], atol=1e-5, err_msg=path)
        assert got["uncertain"] == row["uncertain"] and got["uncertain_reason"] == row["uncertain_reason"], path
        assert got["vote_entropy"] == pytest.approx(row["vote_entropy"]), path
        np.testing.assert_allclose(got[P_COLS].astype(float), [row[c] for c in P_COLS], atol=1e-5, err_msg=path)
        tl = timeline[timeline["path"] == path]
        np.testing.assert_allclose(tl["start_s"], starts)
        np.testing.assert_allclose(tl[P_COLS].to_numpy(), probs, atol=1e-5, err_msg=path)
    assert len(timeline) == labels["n_windows"].sum()
    review = pd.read_csv(work / "review.csv")  # --review-list: the uncertain ok rows, most uncertain first
    want = labels[(labels["status"] == "ok") & labels["uncertain"].astype(bool)]
    assert sorted(review["path"]) == sorted(want.index) and review["confidence"].is_monotonic_increasing
    assert len(review) >= 1 and list(review.columns) == ["path", "genre", "confidence", "vote_entropy", "reason"]
    assert ((review["confidence"] < 0.9) == review["reason"].str.contains("low-confidence")).all()
    assert ((review["vote_entropy"] > 0.7) == review["reason"].str.contains("windows-disagree")).all()


def test_summary_exports_and_mlflow_run(setup):
    work, expected, _, _, summary = setup
    out = work / "out"
    saved = json.loads((out / "summary.json").read_text())
    assert saved["files"] == len(expected) and saved["audio_s_per_s"] > 0 and saved["files_per_s"] > 0
    assert 0 < saved["startup_s"] <= saved["label_seconds"] and saved["steady_audio_s_per_s"] >= 0
    assert sum(saved["genres"].values()) == 8 and saved["hours_of_audio"] > 0
    assert len(pd.read_csv(out / "errors.csv")) == 5
    assert sorted(saved["exports"]) == sorted([str(out / "labels.csv"), str(out / "labels.jsonl")])
    csv, jsonl = pd.read_csv(out / "labels.csv"), pd.read_json(out / "labels.jsonl", lines=True)
    assert sorted(csv["path"]) == sorted(jsonl["path"]) == sorted(expected)
    assert "embedding" not in csv.columns and jsonl["embedding"].dropna().map(len).eq(32).sum() == 8
    runs = mlflow.search_runs(filter_string="tags.`genre_ray.job` = 'label'", search_all_experiments=True)
    run = runs[runs["params.out"] == str(out)].iloc[0]
    assert run["metrics.files"] == len(expected) and run["metrics.ok"] == 8 and run["metrics.errors"] == 4
    assert run["params.model_id"] == summary["model_id"] and run["metrics.startup_s"] == saved["startup_s"]
    assert run["status"] == "FINISHED" and run["tags.genre_ray.resumed"] == "false"
    assert run["tags.mlflow.runName"] == "label library" and run["tags.version.ray"]
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"])}
    assert {"summary.json", "errors.csv", "genres.png", "config.yaml"} <= arts


def test_rerun_skips_what_is_labelled_and_refuses_another_model_setting(setup, monkeypatch):
    from genre_ray.pipelines.label import read_labels, run_label

    work, expected, _, cfg, _ = setup
    before = read_labels(work / "out")
    again = run_label(cfg)
    assert again["labelled_now"] == 0 and again["skipped_already_labelled"] == len(expected)
    pd.testing.assert_frame_equal(read_labels(work / "out"), before)
    monkeypatch.chdir(work)  # the same library and output named from elsewhere: still one row per file
    for spelling in ("library", "./library/", "library/../library"):
        again = run_label(cfg.model_copy(update={"input": spelling, "out": "out"}))
        assert again["labelled_now"] == 0 and again["rows"] == len(expected) and again["missing"] == 0
    pd.testing.assert_frame_equal(read_labels(work / "out"), before)
    from genre_ray import atomic
    from genre_ray.config import ConfigError
    from genre_ray.pipelines.label import LOCK_FILE

    with atomic.exclusive(work / "out" / LOCK_FILE, "a run"):  # another run writing OUT: refused, nothing touched
        with pytest.raises(ConfigError, match="is in use by another run"):
            run_label(cfg.model_copy(update={"overwrite": True}))
    pd.testing.assert_frame_equal(read_labels(work / "out"), before)
    retried = run_label(cfg.model_copy(update={"retry_errors": True}))  # the 4 unreadable files, once more
    assert retried["labelled_now"] == (before["status"] == "error").sum() == 4
    after = read_labels(work / "out")
    assert retried["rows"] == len(after) == len(expected) and not after["path"].duplicated().any()
    pd.testing.assert_frame_equal(after.drop(columns="error"), before.drop(columns="error"))
    with pytest.raises(ValueError, match="overwrite=true"):
        run_label(cfg.model_copy(update={"hop_s": 0.5}))
    assert len(read_labels(work / "out")) == len(expected)


def test_sigkill_partway_then_rerun_gives_exactly_the_uninterrupted_result(setup, ray_session, tmp_path):
    """The driver is a `genre-ray label` subprocess on the session's Ray; SIGKILL it once a shard is written."""
    from genre_ray.pipelines.label import read_labels, run_label

    work, expected, bundle, cfg, _ = setup
    out = tmp_path / "killed"
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address,
           "GENRE_RAY_HOME": os.environ["GENRE_RAY_HOME"]}
    cmd = [sys.executable, "-m", "genre_ray.cli", "label", "--input", cfg.input, "--model", str(bundle),
           "--out", str(out), "--set", "too_short=skip", "--set", "batch_size=4", "--set", "call_windows=4", "--set", "shard_rows=1",
           "--set", "progress_s=1", "--set", "uncertain_threshold=0.9", "--timeline"]
    code, log = kill_driver_when(cmd, env, lambda: bool(list((out / "labels").glob("*.parquet"))), timeout_s=240,
                                 poll_s=0.05)
    assert code == -signal.SIGKILL, log[-3000:]
    partial = read_labels(out)
    assert 1 <= len(partial) < len(expected), log[-3000:]
    assert partial["path"].is_unique

    killed_run = json.loads((out / "label_run.json").read_text())["run_id"]
    assert mlflow.MlflowClient().get_run(killed_run).info.status == "RUNNING"  # its driver is dead
    resumed = run_label(cfg.model_copy(update={"out": str(out)}))
    client = mlflow.MlflowClient()
    assert client.get_run(killed_run).info.status == "KILLED"  # was RUNNING for ever
    new_run = json.loads((out / "label_run.json").read_text())["run_id"]
    assert client.get_run(new_run).data.tags["genre_ray.previous_run"] == killed_run
    assert resumed["skipped_already_labelled"] == len(partial)
    assert resumed["labelled_now"] == len(expected) - len(partial)
    got, want = read_labels(out), read_labels(work / "out")
    assert got["path"].tolist() == sorted(expected)  # exactly one row per input file
    cols = ["path", "status", "genre", "n_windows", "top_k_genres", "label_key", "error"]
    pd.testing.assert_frame_equal(got[cols], want[cols])
    np.testing.assert_allclose(got[P_COLS].to_numpy(), want[P_COLS].to_numpy(), atol=1e-5)
    timeline = pd.read_parquet(out / "timeline")
    assert len(timeline) == got["n_windows"].sum()
    assert not timeline.duplicated(["path", "window"]).any()


def test_library_changes_between_runs_and_names_that_are_not_utf8(setup, tmp_path):
    """A file replaced at the same path is labelled again (its row was kept for ever, with the old genre); a deleted
    file's row and timeline leave OUT (report and `similar` read every shard); a Latin-1 file name is labelled (one
    such name failed the whole shard, and every rerun); files left out by extension are counted; a refused run
    leaves OUT's config.yaml as it was."""
    from genre_ray.pipelines.label import read_labels, run_label

    work, _, bundle, base, _ = setup
    lib = tmp_path / "lib"
    src = sorted(p for p in (work / "library").rglob("*") if p.suffix in (".wav", ".flac") and "bad" not in p.parts)
    lib.mkdir()
    a, b, c = (lib / "a.wav", lib / "b.flac", lib / "c.wav")
    for dst, s in zip((a, b, c), src):
        dst.write_bytes(s.read_bytes())
    latin1 = os.path.join(os.fsencode(lib), b"caf\xe9.wav")  # not valid UTF-8: Python lists it with an escape
    with open(latin1, "wb") as fh:
        fh.write(src[0].read_bytes())
    (lib / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (lib / "notes.txt").write_text("liner notes")
    (lib / "track.oga").write_bytes((work / "library" / "classical" / "c1.ogg").read_bytes())
    (lib / "._a.wav").write_bytes(b"\0\5\26\7")  # a macOS resource fork: hidden, left out, counted
    os.symlink(work / "library", lib / "elsewhere")  # a symlinked folder: never entered, counted
    cfg = base.model_copy(update={"input": str(lib), "out": str(tmp_path / "out"), "review_list": None,
                                  "export": [], "shard_rows": 2})
    first = run_label(cfg)
    assert first["rows"] == 5 and first["missing"] == 0 and first["status"] == {"ok": 5}
    assert first["not_audio_by_extension"] == {".jpg": 1, ".txt": 1}
    assert (first["hidden_left_out"], first["symlinked_folders_left_out"]) == (1, 1)
    rows = read_labels(tmp_path / "out")
    assert str(lib / "caf\\xe9.wav") in set(rows["path"]) and rows["file_stamp"].notna().all()

    a.write_bytes((work / "library" / "metal" / "m2.wav").read_bytes())  # new audio at an old path
    b.unlink()
    again = run_label(cfg.model_copy(update={"timeline": False}))  # OUT has a timeline: kept for the relabelled
    assert again["relabelled_changed"] == 1 and again["removed_gone"] == 1 and again["labelled_now"] == 1
    rows = read_labels(tmp_path / "out")
    assert len(rows) == 4 and not rows["path"].duplicated().any() and str(b) not in set(rows["path"])
    model = load_bundle(bundle)
    want, probs, _ = predict_file(model.build_model(), a, model.features, model.classes, how=cfg.aggregate or "mean",
                                  k=cfg.top_k, temperature=model.temperature)
    got = rows.set_index("path").loc[str(a)]
    assert got["n_windows"] == want["n_windows"] == len(probs) and got["genre"] == want["genre"]
    timeline = pd.read_parquet(tmp_path / "out" / "timeline")
    assert str(b) not in set(timeline["path"]) and (timeline["path"] == str(a)).sum() == want["n_windows"]
    assert not timeline.duplicated(["path", "window"]).any()

    assert run_label(cfg)["labelled_now"] == 0  # nothing changed: the Latin-1 name is found as labelled too
    saved = (tmp_path / "out" / "config.yaml").read_text()
    with pytest.raises(ValueError, match="overwrite=true"):
        run_label(cfg.model_copy(update={"hop_s": 0.5}))
    assert (tmp_path / "out" / "config.yaml").read_text() == saved


def test_a_stopped_label_run_is_killed_not_failed(setup, tmp_path, monkeypatch):
    """`ray job stop` reaches the driver as SystemExit (SIGTERM): the run said FAILED, like a crash."""
    import genre_ray.pipelines.label as label

    _, _, _, cfg, _ = setup

    def stopped(*a, **kw):
        raise SystemExit(143)

    monkeypatch.setattr(label, "_label_and_summarise", stopped)
    out = tmp_path / "stopped"
    with pytest.raises(SystemExit):
        label.run_label(cfg.model_copy(update={"out": str(out)}))
    run_id = json.loads((out / "label_run.json").read_text())["run_id"]
    assert mlflow.MlflowClient().get_run(run_id).info.status == "KILLED"


def test_an_interrupted_stream_keeps_every_finished_track(setup, tmp_path, monkeypatch, capsys):
    """Ctrl-C (or `ray job stop`) mid-stream: the finished tracks not yet in a shard are written before the driver
    goes, and the rerun labels only the rest — exactly one row per file. (The rerun asks for a timeline the first
    run did not write: it says the files labelled before have none.)"""
    import genre_ray.pipelines.label as label
    from genre_ray.pipelines.label import read_labels

    _, expected, _, cfg, _ = setup
    monkeypatch.setattr(label, "FLUSH_S", 1e9)  # no shard by time: only shard_rows or the end would write one
    real_update, seen = label.Progress.update, []

    def interrupted(self, row, now=None):
        real_update(self, row, now)
        seen.append(row["path"])
        if len(seen) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(label.Progress, "update", interrupted)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        label.run_label(cfg.model_copy(update={"out": str(out), "shard_rows": 1000, "timeline": False}))
    kept = read_labels(out)
    # all three, though no shard was due (and the other tracks their stream batch had finished with them)
    assert set(seen) <= set(kept["path"])
    monkeypatch.setattr(label.Progress, "update", real_update)
    resumed = label.run_label(cfg.model_copy(update={"out": str(out), "shard_rows": 1000}))
    assert resumed["skipped_already_labelled"] == len(kept)
    assert resumed["labelled_now"] == len(expected) - len(kept)
    assert f"the {len(kept)} file(s) labelled before" in capsys.readouterr().out
    assert sorted(read_labels(out)["path"]) == sorted(expected)
