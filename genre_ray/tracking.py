"""MLflow helpers: where the store is, experiments, params from configs, artifacts. No Ray here.

Default store: ``sqlite:///<home>/mlflow.db`` with artifacts in ``<home>/mlartifacts`` (home =
``$GENRE_RAY_HOME`` or ./genre-ray-runs); ``MLFLOW_TRACKING_URI`` overrides it — on a cluster, a team
tracking server such as ``http://mlflow.internal:5000`` (``cluster/mlflow-server.sh``). Browse with
``mlflow ui --backend-store-uri sqlite:///<home>/mlflow.db --host 127.0.0.1``.

Every job calls :func:`setup` before it starts Ray or writes an output: an unreachable server fails the job
in seconds with :class:`TrackingError` naming the URI, instead of MLflow's minutes of HTTP retries after
half the work is done. ``mlflow`` itself is imported lazily so that importing :class:`TrackingError`
(the CLI does) stays cheap.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from genre_ray.config import default_home

MAX_PARAM_LEN = 6000
#: seconds to wait for a tracking server's ``/health`` before giving up (``$GENRE_RAY_MLFLOW_TIMEOUT_S``)
DEFAULT_TIMEOUT_S = 10.0


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be used; raised before any work starts."""


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{default_home() / 'mlflow.db'}"


def _timeout_s() -> float:
    raw = os.environ.get("GENRE_RAY_MLFLOW_TIMEOUT_S")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise TrackingError(f"GENRE_RAY_MLFLOW_TIMEOUT_S={raw!r} is not a number of seconds") from None


def check_server(uri: str, timeout_s: float | None = None) -> None:
    """Raise :class:`TrackingError` unless the HTTP(S) tracking server at ``uri`` answers within ``timeout_s``.

    Asks ``<uri>/health`` once. Any HTTP answer (even 401/403 from an authenticating proxy) proves the
    server is there — MLflow's own calls then report what is wrong; no answer (refused, unknown host,
    timeout) fails here. Non-HTTP URIs (sqlite, postgresql, databricks…) are not probed.
    """
    if not uri.startswith(("http://", "https://")):
        return
    timeout_s = _timeout_s() if timeout_s is None else timeout_s
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # the server answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({type(reason).__name__}: {reason}; waited up to "
            f"{timeout_s:g} s for {url}). Nothing was started or written. Start the server "
            f"(cluster/mlflow-server.sh), fix MLFLOW_TRACKING_URI, or unset it to log to the local sqlite store."
        ) from exc


def missing_store(uri: str | None = None) -> str | None:
    """Why a model URI (``models:/``, ``runs:/``) cannot be read from the sqlite store at ``uri`` (default
    :func:`tracking_uri`) — the file is not there — or None. Asked before MLflow opens it: opening creates an empty
    store, in whatever folder the command ran from."""
    uri = uri or tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):])
    if db.is_file():
        return None
    return (f"no MLflow store at {db}: the jobs keep theirs in genre-ray-runs/mlflow.db under the folder they ran "
            "from (or $GENRE_RAY_HOME); run from that folder, or set GENRE_RAY_HOME or MLFLOW_TRACKING_URI to it")


def use_store() -> str:
    """Point MLflow at the project's store (:func:`tracking_uri`) to read from it — a ``runs:/`` or ``models:/``
    model URI — without creating an experiment; an unreachable server raises :class:`TrackingError`."""
    uri = tracking_uri()
    check_server(uri)  # before importing mlflow: an unreachable server fails in seconds
    import mlflow

    mlflow.set_tracking_uri(uri)  # (MLflow 3 also exports it as MLFLOW_TRACKING_URI)
    return uri


def setup(experiment: str) -> tuple[str, str]:
    """Point MLflow at the store, make sure ``experiment`` exists, and return ``(tracking_uri, experiment_id)``.

    Fails fast with :class:`TrackingError` when the store cannot be reached; call it before starting Ray
    or creating output folders so that a failure leaves nothing half-written.
    """
    uri = use_store()  # an unreachable server fails here, in seconds

    import mlflow

    artifacts = None  # a tracking server picks its own (mlflow-artifacts:/ when it serves artifacts)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        db.parent.mkdir(parents=True, exist_ok=True)
        # beside the database, whoever chose it: MLflow's own default is ./mlruns in whatever folder the job ran from
        artifacts = (db.parent.resolve() / "mlartifacts").as_uri()
    try:
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is None:
            exp_id = mlflow.create_experiment(experiment, artifact_location=artifacts)
        else:
            exp_id = exp.experiment_id
    except Exception as exc:
        raise TrackingError(f"MLflow tracking store {uri} is not usable: {type(exc).__name__}: {exc}") from exc
    mlflow.set_experiment(experiment_id=exp_id)
    return uri, exp_id


SECRET_KEY = re.compile(r"(pass(word|wd)?|secret|token|api[_-]?key|access[_-]?key|credential)", re.I)
URI_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^/@:\s]*):(?P<pw>[^/@\s]*)@", re.I)


def redact(key: str, value: Any) -> str:
    """A param value as logged: secrets never reach MLflow — a key that names one (password, token, secret, api_key,
    access_key, credential) logs ``***``, and ``scheme://user:password@host`` URIs lose the password."""
    if value is None:
        return "None"
    text = str(value)
    if SECRET_KEY.search(key.rsplit(".", 1)[-1]):
        return "***"
    return URI_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def redact_tree(value: Any, key: str = "") -> Any:
    """A config (nested dicts and lists, as ``model_dump(mode="json")`` gives) with :func:`redact`'s rule applied to
    every leaf, types kept where nothing is hidden: what a config file logged as an artifact may show."""
    if isinstance(value, dict):
        return {k: redact_tree(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_tree(v, key) for v in value]
    if value is None or not (isinstance(value, str) or SECRET_KEY.search(key.rsplit(".", 1)[-1])):
        return value
    return redact(key, value)


def log_params(params: dict[str, Any], client: Any = None, run_id: str | None = None) -> None:
    """Log ``params`` to the active run — or to ``run_id`` through ``client`` — redacted (:func:`redact`), each
    value cut to ``MAX_PARAM_LEN``, in batches of 100 (MLflow's limit per call)."""
    import mlflow
    from mlflow.entities import Param

    items = [Param(k, redact(k, v)[:MAX_PARAM_LEN]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        if client is None:
            mlflow.log_params({p.key: p.value for p in items[i:i + 100]})
        else:
            client.log_batch(run_id, params=items[i:i + 100])


def model_version(uri: str, client: Any = None) -> str:
    """Registered-model version a ``models:/name/N``, ``models:/name@alias``, ``models:/name/latest`` or
    ``models:/name/<stage>`` URI stands for, as a number ("" for other URIs, or when the registry cannot say);
    ``client`` (default: the current tracking URI's) asks the registry."""
    if not uri.startswith("models:/"):
        return ""
    ref = uri[len("models:/"):].strip("/")
    try:
        import mlflow

        client = client or mlflow.tracking.MlflowClient()
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return str(client.get_model_version_by_alias(name, alias).version)
        name, _, version = ref.partition("/")
        if version.isdigit() or not version:
            return version
        if version.lower() == "latest":
            found = client.search_model_versions(f"name='{name}'")
            return str(max(int(v.version) for v in found)) if found else ""
        found = client.get_latest_versions(name, stages=[version])  # a stage name (MLflow's older registry)
        return str(found[0].version) if found else ""
    except Exception:  # noqa: BLE001 - an unreachable registry must not stop labelling or evaluating
        return ""
