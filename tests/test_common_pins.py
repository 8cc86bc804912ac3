"""Pins for genre_ray/pipelines/common.py: check_job_outputs outside a submitted Ray job."""

from __future__ import annotations

import pytest

from genre_ray.config import ConfigError, LabelConfig, TrainConfig
from genre_ray.pipelines.common import check_job_outputs


def test_an_existing_output_folder_is_fine_an_existing_file_is_refused(tmp_path, monkeypatch):
    """A rerun into the same --out (resume) must pass; only a file where the folder should be is refused."""
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    (tmp_path / "out").mkdir()
    check_job_outputs(LabelConfig(input="i", model="m", out=str(tmp_path / "out")), "out")  # existing folder: resume
    check_job_outputs(LabelConfig(input="i", model="m", out=str(tmp_path / "new")), "out")  # not there yet
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        check_job_outputs(LabelConfig(input="i", model="m", out=str(tmp_path / "file")), "out")
    with pytest.raises(ConfigError, match="storage_path=.*not a folder"):
        check_job_outputs(TrainConfig(data="d", out=str(tmp_path / "out"), storage_path=str(tmp_path / "file")),
                          "out", "storage_path")
    check_job_outputs(TrainConfig(data="d", out=str(tmp_path / "out"), storage_path="s3://bucket/x"),
                      "out", "storage_path")  # a URI is never checked locally


def test_a_relative_genre_ray_home_in_a_submitted_job_is_refused(tmp_path, monkeypatch):
    """A relative GENRE_RAY_HOME resolves inside the job's temporary working_dir copy: the sqlite MLflow store would
    be deleted with it, as with no GENRE_RAY_HOME at all."""
    import json

    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR",
                       json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_abc.zip"}}))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = LabelConfig(input="i", model="m", out=str(tmp_path / "labels"))
    monkeypatch.setenv("GENRE_RAY_HOME", "runs-home")
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI"):
        check_job_outputs(cfg, "out")
    monkeypatch.setenv("GENRE_RAY_HOME", str(tmp_path / "home"))
    check_job_outputs(cfg, "out")


def test_a_machine_whose_own_address_is_loopback_joins_at_loopback():
    from genre_ray.pipelines.common import loopback_only_gcs

    assert loopback_only_gcs("127.0.0.1:6379", routable="127.0.0.1") is True
    assert loopback_only_gcs("localhost:6379", routable="localhost") is True
    assert loopback_only_gcs("10.0.0.5:6379", routable="127.0.0.1") is False
