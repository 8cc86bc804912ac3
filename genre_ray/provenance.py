"""Where a result came from: code version, library versions, and a fingerprint of the data split. No Ray here."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pandas as pd


def git_commit(path: str | Path | None = None) -> str:
    """The commit of the checkout holding ``path`` (default: this package), ``+dirty`` when it has local
    changes; outside a git checkout — a Ray job's working_dir copy ships without ``.git`` — the ``git_commit`` the
    submitter attached to the job (``ray job submit --metadata-json '{"git_commit": "…"}'``), else ``"unknown"``."""
    found = _checkout_commit(path)
    if found != "unknown":
        return found
    return str((submitted_job().get("metadata") or {}).get("git_commit") or "unknown")


def submitted_job() -> dict:
    """What Ray's job supervisor hands the driver of a submitted job (``ray job submit``): ``{"runtime_env": …,
    "metadata": …}``; ``{}`` outside one."""
    import json
    import os

    try:
        job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    except ValueError:
        return {}
    return job if isinstance(job, dict) else {}


def _checkout_commit(path: str | Path | None) -> str:
    where = Path(path or __file__).resolve()
    where = where if where.is_dir() else where.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    """Versions of the libraries a result depends on: torch's with its build (``+cu130``), Ray's and MLflow's as
    installed (Ray itself is imported only by the pipelines)."""
    from importlib import metadata

    import torch

    import genre_ray

    def installed(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {"genre_ray": genre_ray.__version__, "torch": torch.__version__, "ray": installed("ray"),
            "mlflow": installed("mlflow")}


def dataset_fingerprint(tracks: pd.DataFrame, feature_hash: str) -> str:
    """16-hex digest of which track is in which split with which label, plus the feature config.

    Built from ``track_id`` (a hash of the relative path), ``label`` and ``split`` only, so the same dataset
    prepared on another machine (other absolute paths) has the same fingerprint, and any change of split,
    labels or features changes it.
    """
    cols = [c for c in ("track_id", "label", "split") if c in tracks.columns]
    rows = tracks[cols].astype(str).sort_values(cols).itertuples(index=False, name=None)
    h = hashlib.sha256(feature_hash.encode())
    for row in rows:
        h.update(("\x1f".join(row) + "\n").encode())
    return h.hexdigest()[:16]
