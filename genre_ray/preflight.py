"""Checks every job runs before it starts Ray or writes anything: a bad setting is one clear :class:`ConfigError`
(exit status 2) naming the problem — never a stack trace from a Ray worker minutes later.

Pure functions (no Ray): the prepared data exists and is current, the model can be built for the data's classes and
fits its images (one dummy forward pass on the CPU), the label input and model are usable.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from genre_ray.config import ConfigError, file_uri_path
from genre_ray.features import FeatureConfig


def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def existing_path(path: str, what: str) -> None:
    """A local ``path`` (or ``file://`` URI) must exist (other URIs are checked by the job that opens them)."""
    path = file_uri_path(path)
    if not _is_uri(path) and not any(ch in path for ch in "*?[") and not Path(path).expanduser().exists():
        raise ConfigError(f"{what} not found: {path}")


def _holds_audio(folder: Path, look: int = 200) -> bool:
    """Whether one of the first ``look`` files below ``folder`` is audio by its name (a music folder given where
    prepared data belongs)."""
    from genre_ray.catalog import is_audio_file

    for i, f in enumerate(p for p in folder.rglob("*") if p.is_file()):
        if is_audio_file(f.name):
            return True
        if i >= look:
            break
    return False


def prepared_data(path: str) -> dict[str, Any]:
    """``meta.json`` of a folder written by ``genre-ray prepare``, checked: it exists, its images are of the current
    definition, and it has train and val windows."""
    existing_path(path, "prepared data folder (data)")
    meta_file = Path(path) / "meta.json"
    if not meta_file.is_file():
        audio = _holds_audio(Path(path))
        raise ConfigError(f"data={path} is not a prepared folder (no meta.json{'; it holds audio' if audio else ''}): "
                          f"make one with `genre-ray prepare --source {path if audio else 'AUDIO_DIR'} --out "
                          "PREPARED_DIR` and give --data PREPARED_DIR")
    try:
        meta = json.loads(meta_file.read_text())
        features = FeatureConfig.from_dict(meta["features"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{meta_file} is unreadable ({type(exc).__name__}: {exc}); re-run `genre-ray prepare`") from None
    try:
        features.check_current()
    except ValueError as exc:
        raise ConfigError(f"data={path}: {exc}") from None
    if not (Path(path) / "tracks.parquet").is_file():
        raise ConfigError(f"data={path}: tracks.parquet is missing (an interrupted prepare?); re-run `genre-ray prepare`")
    windows = meta.get("windows", {})
    if windows.get("train", 0) == 0 or windows.get("val", 0) == 0:
        raise ConfigError(f"data={path}: need train and val windows, found {windows}")
    return meta


def model_fits(model: str, model_kwargs: dict[str, Any], classes: list[str], features: FeatureConfig) -> None:
    """The model builds for the dataset's classes and maps one ``(1, 1, H, W)`` image of ``features`` to
    ``(1, len(classes))`` logits; otherwise a :class:`ConfigError` naming the mismatch."""
    import torch

    from genre_ray.models import create_model

    kwargs = dict(model_kwargs)
    n = kwargs.pop("num_classes", len(classes))
    if n != len(classes):
        raise ConfigError(f"model_kwargs.num_classes={n} but the dataset has {len(classes)} classes {classes}; "
                          "drop num_classes (it comes from the data)")
    try:
        net = create_model(model, num_classes=len(classes), **kwargs).eval()
    except pickle.UnpicklingError:
        raise ConfigError(f"model {model!r}: {kwargs.get('pretrained')} is not a plain tensor state_dict; refused "
                          "(weights are loaded with weights_only=True: nothing in a file is ever executed)") from None
    except Exception as exc:  # noqa: BLE001 - any constructor error is a setting error, named
        raise ConfigError(f"model {model!r} with model_kwargs {model_kwargs}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    shape = (1, *features.image_shape)
    try:
        with torch.no_grad():
            out = net(torch.zeros(shape))
    except RuntimeError as exc:
        raise ConfigError(f"model {model!r} with model_kwargs {model_kwargs} does not fit the data's images "
                          f"{tuple(features.image_shape)} (features: {features.height}×{features.width}): "
                          f"{str(exc).splitlines()[0]}") from None
    if tuple(out.shape) != (1, len(classes)):
        raise ConfigError(f"model {model!r} gives outputs of shape {tuple(out.shape)} for one image, expected "
                          f"(1, {len(classes)})")


def model_store(uri: str) -> str | None:
    """The MLflow store a ``models:/``/``runs:/`` model URI is read from (None for a folder or another URI), checked:
    an unreachable server raises :class:`~genre_ray.tracking.TrackingError` in seconds, a sqlite store that is not
    there a :class:`ConfigError` — before anything opens it (opening creates an empty one in the current folder)."""
    from genre_ray import tracking

    if Path(uri).expanduser().exists() or not uri.startswith(("models:", "runs:")):
        return None
    store = tracking.tracking_uri()
    tracking.check_server(store)  # unreachable: TrackingError in seconds, not MLflow's retries
    if problem := tracking.missing_store(store):
        raise ConfigError(f"model={uri}: {problem}")
    return store


def label_model(uri: str):
    """Load the label job's model bundle (folder or MLflow URI) and check its features are current."""
    from genre_ray import tracking
    from genre_ray.bundle import load_bundle

    store = model_store(uri)
    try:
        bundle = load_bundle(uri)
    except FileNotFoundError as exc:
        raise ConfigError(f"model={uri}: {exc}") from None
    except pickle.UnpicklingError:
        raise ConfigError(f"model={uri}: its weights are not a plain tensor state_dict; refused (bundles are loaded "
                          "with weights_only=True: nothing in a file is ever executed)") from None
    except Exception as exc:  # noqa: BLE001 - a format/MLflow error, named for the user
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        where = f" from the MLflow store {tracking.redact('uri', store)}" if store else ""
        raise ConfigError(f"model={uri} cannot be loaded{where}: {type(exc).__name__}: {first}") from None
    try:
        bundle.features.check_current()
    except ValueError as exc:
        raise ConfigError(f"model={uri}: {exc}") from None
    return bundle
