"""MLflow helpers: where the store is, experiments, params from configs, artifacts. No Ray here.

Default store: ``sqlite:///<home>/mlflow.db`` with artifacts in ``<home>/mlartifacts`` (home =
``$GENRE_RAY_HOME`` or ./genre-ray-runs); ``MLFLOW_TRACKING_URI`` overrides it. Browse with
``mlflow ui --backend-store-uri sqlite:///<home>/mlflow.db --host 127.0.0.1``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow

from genre_ray.config import default_home

MAX_PARAM_LEN = 6000


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be used; raised before any work starts."""


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{default_home() / 'mlflow.db'}"


def setup(experiment: str) -> tuple[str, str]:
    """Point MLflow at the store, make sure ``experiment`` exists, and return ``(tracking_uri, experiment_id)``.

    Fails fast with :class:`TrackingError` when the store cannot be reached.
    """
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is None:
            artifacts = None
            if uri.startswith("sqlite:///") and not os.environ.get("MLFLOW_TRACKING_URI"):
                artifacts = (default_home() / "mlartifacts").as_uri()
            exp_id = mlflow.create_experiment(experiment, artifact_location=artifacts)
        else:
            exp_id = exp.experiment_id
    except Exception as exc:
        raise TrackingError(f"MLflow tracking store {uri} is not usable: {type(exc).__name__}: {exc}") from exc
    mlflow.set_experiment(experiment_id=exp_id)
    return uri, exp_id


def log_params(params: dict[str, Any]) -> None:
    clean = {k: (str(v)[:MAX_PARAM_LEN] if v is not None else "None") for k, v in params.items()}
    items = list(clean.items())
    for i in range(0, len(items), 100):
        mlflow.log_params(dict(items[i:i + 100]))
