"""Shared fixtures: one local Ray per session (loopback, 2 CPUs), a per-session MLflow sqlite store."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """A real local single-node Ray (``ray.init(num_cpus=2)`` on 127.0.0.1), shared by the whole session."""
    import ray

    from genre_ray.pipelines.common import start_local_ray

    if not ray.is_initialized():
        start_local_ray(2, log_to_driver=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_home(tmp_path_factory):
    """Point GENRE_RAY_HOME (and so the default sqlite MLflow store) at a session temp folder."""
    home = tmp_path_factory.mktemp("genre_ray_home")
    old = {k: os.environ.get(k) for k in ("GENRE_RAY_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["GENRE_RAY_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
