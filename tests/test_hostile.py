"""Hostile inputs (tests/hostile.py) through every entry point: the folder walk, featurization, ``predict``,
``label`` and ``prepare``. Each finishes; every input is accounted for exactly once (ok, or a row/entry with a
reason); the exit status is non-zero only with ``--fail-on-error`` or when nothing succeeded."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from genre_ray import cli
from genre_ray.catalog import list_audio_files
from genre_ray.config import PrepareConfig
from genre_ray.inference import featurize_track
from genre_ray.outcome import exit_status
from hostile import make_hostile, restore_permissions
from label_lib import FEATURES, sharp_bundle

LONG_MINUTES = 8.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile")
    root = work / "library"
    expected = make_hostile(root, long_minutes=LONG_MINUTES)
    bundle = sharp_bundle(work / "bundle")
    yield work, root, expected, bundle
    restore_permissions(root)


def _check(expected: dict[str, str], status: dict[str, str], reason: dict[str, str]) -> None:
    assert sorted(status) == sorted(expected)  # every input exactly once (dict keys: no duplicates)
    for path, want in expected.items():
        got = status[path]
        if want == "ok":
            assert got == "ok", (path, got, reason[path])
        elif want == "error":
            assert got != "ok" and reason[path], (path, got)
        if got != "ok":
            assert reason[path].strip(), f"{path}: {got} without a reason"


def test_exit_status_rule():
    assert exit_status(3, 0) == 0 and exit_status(3, 2) == 0 and exit_status(0, 0) == 1 and exit_status(0, 5) == 1
    assert exit_status(3, 2, fail_on_error=True) == 1 and exit_status(3, 0, fail_on_error=True) == 0


def test_folder_walk_lists_every_entry_once(corpus):
    _, root, expected, _ = corpus
    listed = [str(p) for p in list_audio_files(root)]
    assert len(listed) == len(set(listed)) and sorted(listed) == sorted(expected)
    assert not any(p.endswith("album.wav") for p in listed)  # the directory itself is not an input


def test_featurize_gives_every_file_a_verdict_with_a_reason(corpus):
    _, _, expected, _ = corpus
    results = {p: featurize_track(p, FEATURES, too_short="skip") for p in expected}
    _check(expected, {p: r.status for p, r in results.items()}, {p: r.error for p, r in results.items()})
    by_name = {Path(p).name: r for p, r in results.items()}
    assert by_name["long.flac"].duration_s == pytest.approx(LONG_MINUTES * 60, abs=0.1)
    assert "dangling symlink" in by_name["dangling.wav"].error and "symlink loop" in by_name["self-loop.wav"].error
    assert "empty file" in by_name["empty.wav"].error and "silent" in by_name["silent.wav"].error
    assert by_name["short-0.3s.wav"].status == "too-short"


def test_predict_reports_every_file_and_exits_by_the_rule(corpus, capsys):
    _, root, expected, bundle = corpus
    paths = sorted(expected)
    rc = cli.main(["predict", "--model", str(bundle), "--json", "--", *paths])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert rc == 0
    _check(expected, {r["path"]: r["status"] for r in rows}, {r["path"]: r["error"] for r in rows})
    short = next(r for r in rows if r["path"].endswith("short-0.3s.wav"))
    assert short["status"] == "ok" and "padded" in short["error"]  # predict pads by default (label: too_short)
    assert short["uncertain"] and "padded" in short["uncertain_reason"]  # …and says how little that verdict means
    assert cli.main(["predict", "--model", str(bundle), "--fail-on-error", "--", *paths]) == 1
    capsys.readouterr()
    bad = [p for p, want in expected.items() if want == "error"]
    assert cli.main(["predict", "--model", str(bundle), "--", *bad]) == 1  # nothing succeeded
    assert "dangling symlink" in capsys.readouterr().err


@pytest.mark.integration
def test_label_accounts_for_every_file(corpus, ray_session, mlflow_home):
    from genre_ray.pipelines.label import read_labels

    work, root, expected, bundle = corpus
    out = work / "labels"
    args = ["label", "--input", str(root), "--model", str(bundle), "--out", str(out), "--set", "too_short=skip",
            "--set", "batch_size=64"]
    assert cli.main(args) == 0
    labels = read_labels(out)
    assert labels["path"].is_unique
    _check(expected, dict(zip(labels["path"], labels["status"])), dict(zip(labels["path"], labels["error"])))
    errors = pd.read_csv(out / "errors.csv")
    assert sorted(errors["path"]) == sorted(labels.loc[labels["status"] != "ok", "path"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == len(expected) and summary["missing"] == 0
    # a rerun resumes (nothing left to do) and, asked to, fails on the files that could not be labelled
    assert cli.main([*args, "--fail-on-error"]) == 1
    assert len(read_labels(out)) == len(expected)


@pytest.mark.integration
def test_prepare_accounts_for_every_track(corpus, ray_session, tmp_path):
    import pyarrow.parquet as pq

    work, root, expected, _ = corpus
    out = tmp_path / "prepared"
    cfg_file = tmp_path / "prepare.yaml"
    PrepareConfig(source=str(root), out=str(out), features=FEATURES, seed=3).save(cfg_file)
    assert cli.main(["prepare", "--config", str(cfg_file), "--fail-on-error"]) == 1  # some tracks failed
    tracks = pd.read_parquet(out / "tracks.parquet")
    meta = json.loads((out / "meta.json").read_text())
    # unreadable files take no split slot: left out before the split, each with its reason
    dropped = {str(root / d["rel_path"]): d["error"] for d in meta["dropped_before_split"]}
    assert dropped and all(e.startswith("does not decode: ") for e in dropped.values())
    assert tracks["path"].is_unique and sorted([*tracks["path"], *dropped]) == sorted(expected)
    failed = {f["track_id"]: f["error"] for f in meta["failed"]}
    windows = pq.read_table(out / "windows", columns=["track_id", "split", "window_idx", "augmented"]).to_pandas()
    windows = windows[windows["split"] != "_failed"]
    assert not windows.duplicated(["track_id", "window_idx", "augmented"]).any()
    with_windows = set(windows["track_id"])
    status = {}
    for row in tracks.itertuples():
        assert (row.track_id in failed) != (row.track_id in with_windows), row.path  # exactly one of the two
        status[row.path] = "error" if row.track_id in failed else "ok"
    status.update({p: "error" for p in dropped})
    _check(expected, status, {**{p: failed.get(t, "") for p, t in zip(tracks["path"], tracks["track_id"])}, **dropped})
    assert meta["tracks"] == {s: int(((tracks["split"] == s) & ~tracks["track_id"].isin(failed)).sum())
                              for s in ("train", "val", "test")}  # tracks with windows, not the failed
    long_id = tracks.loc[tracks["path"].str.endswith("long.flac"), "track_id"].item()
    assert (windows["track_id"] == long_id).sum() == int((LONG_MINUTES * 60 - FEATURES.window_s) / FEATURES.hop_s) + 1
