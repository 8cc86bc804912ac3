"""Small Ray helpers shared by the drivers: start or join Ray, print a job's config."""

from __future__ import annotations

import logging
import os
import socket

import ray
from ray._private import ray_constants

from genre_ray.config import ConfigError, RayConfig, _Base
from genre_ray.provenance import submitted_job

log = logging.getLogger("genre_ray")


def job_working_dir() -> str | None:
    """The ``working_dir`` of the Ray job this driver runs as (``ray job submit --working-dir``), else None. Such a
    driver runs in a temporary copy of it that Ray deletes: what it writes there under a relative path is lost."""
    return (submitted_job().get("runtime_env") or {}).get("working_dir") or None


FOLDER_OUTPUTS = ("out", "storage_path")
"""Job settings naming an output folder (the rest of a job's outputs are files, such as label's review_list)."""


def check_job_outputs(cfg: _Base, *outputs: str) -> None:
    """Before any work: refuse an output folder (``out``, ``storage_path``) that is an existing file; and, in a
    submitted Ray job with a ``working_dir``, relative output paths and an MLflow store that would land in the
    job's temporary folder (both would be deleted with it, silently)."""
    for name in set(outputs) & set(FOLDER_OUTPUTS):
        value = getattr(cfg, name, None)
        if value and "://" not in str(value) and os.path.exists(os.path.expanduser(value)) \
                and not os.path.isdir(os.path.expanduser(value)):
            raise ConfigError(f"{name}={value}: exists and is not a folder")
    where = job_working_dir()
    if where is None:
        return
    relative = [f"{name}={getattr(cfg, name)}" for name in outputs if getattr(cfg, name, None)
                and "://" not in str(getattr(cfg, name)) and not os.path.isabs(os.path.expanduser(getattr(cfg, name)))]
    if relative:
        raise ConfigError(f"{', '.join(relative)}: relative, and this Ray job runs in a temporary copy of its "
                          f"working_dir ({where}) that Ray deletes — give absolute paths on storage every node can "
                          "reach (or an s3://… URI where the setting takes one)")
    home = os.environ.get("GENRE_RAY_HOME")
    if not os.environ.get("MLFLOW_TRACKING_URI") and not (home and os.path.isabs(os.path.expanduser(home))):
        raise ConfigError("this Ray job would keep its MLflow runs in a sqlite store inside its temporary working_dir "
                          f"copy ({where}), deleted with it: set MLFLOW_TRACKING_URI (the team's server, "
                          "cluster/runtime-env.yaml) or an absolute GENRE_RAY_HOME in the job's env_vars")


def init_ray(cfg: RayConfig) -> None:
    """Join ``cfg.address`` / ``$RAY_ADDRESS`` (cluster, ``ray job submit``), else start a local Ray on loopback.

    Reuses an already-initialised Ray (tests share one per session).
    """
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        if loopback_only_gcs(address):
            ray_constants.ENABLE_RAY_CLUSTER = False  # join at 127.0.0.1, as given (see start_local_ray)
        if cfg.worker_niceness is not None:
            log.warning("ray.worker_niceness=%s is ignored when joining a running cluster (%s): it is the cluster's "
                        "own setting (ray start --system-config='{\"worker_niceness\": %s}')", cfg.worker_niceness,
                        address, cfg.worker_niceness)
        ray.init(address=address, log_to_driver=True)
    else:
        extra = {} if cfg.worker_niceness is None else {"_system_config": {"worker_niceness": cfg.worker_niceness}}
        start_local_ray(cfg.num_cpus, include_dashboard=cfg.dashboard, **extra)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = os.environ.get("GENRE_RAY_PROGRESS", "0") == "1"


def loopback_only_gcs(address: str, routable: str | None = None, timeout_s: float = 1.0) -> bool:
    """True for ``127.0.0.1:PORT`` / ``localhost:PORT`` when that port answers on loopback but not on the machine's
    routable address: a Ray head in single-node mode (:func:`start_local_ray`, ``cluster/start-local-head.sh``).

    Ray swaps a loopback address for the machine's one before connecting — right for a head listening on 0.0.0.0,
    a minute of retries and a failure for one listening on 127.0.0.1 only.
    """
    host, _, port = address.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        return False
    routable = routable or ray.util.get_node_ip_address()
    if routable in ("127.0.0.1", "localhost"):
        return True
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError:
        return False  # nothing on loopback either: let Ray report it
    try:
        socket.create_connection((routable, int(port)), timeout=timeout_s).close()
    except OSError:
        return True
    return False


def start_local_ray(num_cpus: int | None, **kwargs) -> None:
    """Start a single-node Ray whose every process (GCS, raylet, agents, dashboard, workers) listens on 127.0.0.1.

    Ray rewrites ``_node_ip_address="127.0.0.1"`` to the host's routable address, and its GCS, raylet, agents and
    workers then listen there and on 0.0.0.0. Its single-node mode — the default on macOS/Windows, switched by
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when Ray is imported — keeps all of them on loopback; this sets it
    for this process only (a cluster never comes through here). Ray is pinned in pyproject.toml;
    tests/test_loopback.py checks every socket the session's Ray processes listen on.
    """
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", dashboard_host="127.0.0.1",
             configure_logging=False, **kwargs)


def announce(name: str, cfg: _Base) -> None:
    """Print the job's full config at start (what runs is what is logged)."""
    print(f"== genre-ray {name} ==\n{cfg.to_yaml()}", flush=True)
