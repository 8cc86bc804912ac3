"""One typed config per job: YAML file + ``key=value`` overrides, validated before any work starts.

Configs are pydantic models with ``extra="forbid"`` so a misspelt key fails with its name; nested keys
are overridden with dots (``features.window_s=2.0``); values are parsed as YAML (``epochs=5``,
``model_kwargs={channels: [8, 16, 32, 64]}``). Each job prints its config, saves it beside its outputs
(``config.yaml``) and logs it to MLflow as flat params.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from genre_ray.features import FeatureConfig


class ConfigError(ValueError):
    """A config that cannot run; the message says which key and why."""


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml())
        return path

    def flat(self) -> dict[str, Any]:
        """Flatten to ``{"a.b": value}`` for MLflow params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, v: Any) -> None:
            if isinstance(v, dict) and v:
                for k, x in v.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), x)
            else:
                out[prefix] = v

        walk("", self.model_dump(mode="json"))
        return out


def default_home() -> Path:
    """Project-local folder for MLflow's store, prepared data and outputs (``$GENRE_RAY_HOME`` or ./genre-ray-runs)."""
    return Path(os.environ.get("GENRE_RAY_HOME", "genre-ray-runs")).expanduser().resolve()


class RayConfig(_Base):
    address: str | None = Field(None, description="Ray address; None → RAY_ADDRESS or a new local instance")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a new local instance")


class PrepareConfig(_Base):
    source: str = Field(..., description="GTZAN-layout folder, FMA tracks.csv, or a CSV/Parquet manifest")
    out: str = Field(..., description="folder for the prepared Parquet windows")
    catalog: str = "auto"
    audio_dir: str | None = Field(None, description="FMA audio folder (when source is tracks.csv)")
    split: str = Field("random", description="random | predefined | gtzan-ff")
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    features: FeatureConfig = FeatureConfig()
    noise_copies: int = Field(0, ge=0, description="extra noisy copies of each training window")
    noise_snr_db: float = Field(20.0, description="SNR of the added white noise, dB")
    ray: RayConfig = RayConfig()

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in v) or abs(sum(v) - 1.0) > 1e-6 or v[0] <= 0:
            raise ValueError(f"split_fractions must be >= 0, train > 0, and sum to 1 (got {v})")
        return v


class TrainConfig(_Base):
    data: str = Field(..., description="prepared folder written by `genre-ray prepare`")
    out: str = Field(..., description="folder for checkpoints and the model bundle")
    model: str = "homebrew"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    pretrained: str | None = Field(None, description="local resnet18 ImageNet state_dict; nothing is downloaded")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1, description="per worker; effective batch = batch_size × num_workers")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(5.0, gt=0)
    bn_recalibrate_batches: int = Field(16, ge=0, description="precise-BN batches after each epoch (0 = off)")
    early_stop_patience: int | None = Field(None, ge=1, description="stop after this many epochs without a better val accuracy")
    seed: int = 0
    num_workers: int = Field(2, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per Ray Train worker (fractions allowed)")
    use_gpu: bool = False
    aggregate: str = "mean"
    experiment: str = "genre-ray"
    register_as: str | None = Field(None, description="MLflow registered-model name")
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _known(self) -> "TrainConfig":
        from genre_ray.evaluate import AGGREGATORS
        from genre_ray.models import MODELS

        MODELS.lookup(self.model)
        AGGREGATORS.lookup(self.aggregate)
        if self.pretrained and not Path(self.pretrained).expanduser().is_file():
            raise ValueError(f"pretrained weights file not found: {self.pretrained}")
        return self


class LabelConfig(_Base):
    input: str = Field(..., description="folder (recursive), glob, or CSV/Parquet manifest with a path column")
    model: str = Field(..., description="model bundle folder, or an MLflow URI (runs:/…, models:/name/version)")
    out: str = Field(..., description="output folder for the labels Parquet")
    hop_s: float | None = Field(None, gt=0, description="window hop; None → the model's training hop")
    aggregate: str = "mean"
    top_k: int = Field(3, ge=1)
    batch_size: int = Field(64, ge=1, description="windows per inference batch")
    num_actors: int = Field(1, ge=1)
    use_gpu: bool = False
    experiment: str = "genre-ray"
    ray: RayConfig = RayConfig()

    @field_validator("aggregate")
    @classmethod
    def _agg(cls, v: str) -> str:
        from genre_ray.evaluate import AGGREGATORS

        AGGREGATORS.lookup(v)
        return v


class DemoConfig(_Base):
    """``genre-ray demo``: sizes of the synthetic corpus and of the training run (the one place their defaults live)."""

    workdir: str | None = Field(None, description="folder for everything the demo writes (default: $GENRE_RAY_HOME/demo)")
    genres: int = Field(10, ge=2, le=10)
    per_genre: int = Field(24, ge=4, description="clips per genre")
    seconds: float = Field(12.0, gt=0, description="clip length")
    hop_s: float = Field(3.0, gt=0, description="window hop in seconds (3.0 = disjoint 3-s windows)")
    epochs: int = Field(8, ge=1)
    num_workers: int = Field(2, ge=1)
    num_cpus: int | None = Field(None, ge=1, description="CPUs for the local Ray")
    seed: int = 0


C = TypeVar("C", bound=_Base)


def _set_dotted(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        cur = d.get(p)
        if cur is None:
            cur = d[p] = {}
        elif not isinstance(cur, dict):
            raise ConfigError(f"cannot set {key!r}: {p!r} is not a section")
        d = cur
    d[parts[-1]] = value


def load_config(cls: type[C], path: str | Path | None = None, overrides: Sequence[str] = (), **values: Any) -> C:
    """Build ``cls`` from a YAML file, then ``values`` (CLI flags; None ignored), then ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping of keys to values")
        data.update(loaded)
    for k, v in values.items():
        if v is not None:
            _set_dotted(data, k, v)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        k, v = item.split("=", 1)
        _set_dotted(data, k.strip(), yaml.safe_load(v))
    if isinstance(data.get("features"), dict):  # merge partial feature overrides onto the defaults
        data["features"] = {**FeatureConfig().to_dict(), **data["features"]}
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(x) for x in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"invalid {cls.__name__}:\n" + "\n".join(lines)) from None

