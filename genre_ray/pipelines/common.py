"""Small Ray helpers shared by the drivers: start or join Ray, print a job's config."""

from __future__ import annotations

import logging
import os

import ray

from genre_ray.config import RayConfig, _Base

log = logging.getLogger("genre_ray")


def init_ray(cfg: RayConfig) -> None:
    """Join ``cfg.address`` / ``$RAY_ADDRESS`` (cluster, ``ray job submit``), else start a local Ray on loopback.

    Reuses an already-initialised Ray (tests share one per session).
    """
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=cfg.num_cpus, _node_ip_address="127.0.0.1", dashboard_host="127.0.0.1",
                 configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = os.environ.get("GENRE_RAY_PROGRESS", "0") == "1"


def announce(name: str, cfg: _Base) -> None:
    """Print the job's full config at start (what runs is what is logged)."""
    print(f"== genre-ray {name} ==\n{cfg.to_yaml()}", flush=True)
