"""The champion alias moves only to a version that beats the holder on the same validation split (real MLflow)."""

from __future__ import annotations

import mlflow
import pytest


@pytest.fixture()
def client(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = mlflow.tracking.MlflowClient(uri, registry_uri=uri)
    c.create_registered_model("genre")
    return c


def _version(client, tmp_path) -> str:
    return client.create_model_version("genre", source=str(tmp_path)).version


def test_champion_moves_only_on_a_better_score_on_the_same_split(client, tmp_path):
    from genre_ray.pipelines.train import _promote

    v1 = _version(client, tmp_path)
    assert "first champion" in _promote(client, "genre", v1, "champion", 0.80, "split-a")
    v2 = _version(client, tmp_path)
    assert "stays on version 1" in _promote(client, "genre", v2, "champion", 0.75, "split-a")  # worse
    v3 = _version(client, tmp_path)
    assert "stays on version 1" in _promote(client, "genre", v3, "champion", 0.80, "split-a")  # a tie is not a win
    assert str(client.get_model_version_by_alias("genre", "champion").version) == "1"
    v4 = _version(client, tmp_path)
    msg = _promote(client, "genre", v4, "champion", 0.99, "split-b")  # better, but on another split
    assert "another split" in msg and str(client.get_model_version_by_alias("genre", "champion").version) == "1"
    v5 = _version(client, tmp_path)
    assert "champion → version 5" in _promote(client, "genre", v5, "champion", 0.85, "split-a")
    holder = client.get_model_version_by_alias("genre", "champion")
    assert str(holder.version) == "5" and holder.tags["dataset_fingerprint"] == "split-a"
    assert float(holder.tags["val_track_accuracy"]) == pytest.approx(0.85)


def test_dataset_fingerprint_ignores_paths_but_not_splits():
    import pandas as pd

    from genre_ray.provenance import dataset_fingerprint

    a = pd.DataFrame({"track_id": ["t1", "t2", "t3"], "label": ["x", "y", "x"], "split": ["train", "val", "test"],
                      "path": ["/a/1.wav", "/a/2.wav", "/a/3.wav"]})
    moved = a.assign(path=["/b/1.wav", "/b/2.wav", "/b/3.wav"]).iloc[::-1]
    assert dataset_fingerprint(a, "f1") == dataset_fingerprint(moved, "f1")
    assert dataset_fingerprint(a, "f1") != dataset_fingerprint(a, "f2")
    assert dataset_fingerprint(a, "f1") != dataset_fingerprint(a.assign(split=["train", "test", "val"]), "f1")


def test_git_commit_and_versions():
    from genre_ray.provenance import git_commit, versions

    commit = git_commit()
    assert commit == "unknown" or len(commit.split("+")[0]) == 40
    assert set(versions()) == {"genre_ray", "torch", "ray", "mlflow"}


def test_git_commit_outside_a_checkout_comes_from_the_jobs_metadata(tmp_path, monkeypatch):
    """A Ray job's working_dir ships without .git: every cluster run was tagged `unknown`. The submitter can attach
    the commit (`ray job submit --metadata-json '{"git_commit": "…"}'`)."""
    import json

    from genre_ray.provenance import git_commit

    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert git_commit(tmp_path) == "unknown"
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {}, "metadata": {"git_commit": "abc123"}}))
    assert git_commit(tmp_path) == "abc123"


def test_a_hand_set_champion_is_kept_and_the_message_says_why(client, tmp_path):
    """An operator registered a version in the UI and set @champion on it: it has no genre-ray tags. The alias stays
    (a person chose it), and the message says so and how to move it — it blamed "another split (None ≠ …)"."""
    from genre_ray.pipelines.train import _promote

    client.create_registered_model("handpicked")
    manual = client.create_model_version("handpicked", source=str(tmp_path)).version
    client.set_registered_model_alias("handpicked", "champion", manual)
    new = client.create_model_version("handpicked", source=str(tmp_path)).version
    msg = _promote(client, "handpicked", new, "champion", 0.9, "split-a")
    assert "no genre-ray validation tags" in msg and "set_registered_model_alias" in msg and "None" not in msg
    assert str(client.get_model_version_by_alias("handpicked", "champion").version) == str(manual)
