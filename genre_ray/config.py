"""One typed config per job: YAML file + ``key=value`` overrides, validated before any work starts.

Configs are pydantic models with ``extra="forbid"`` so a misspelt key fails with its name; nested keys
are overridden with dots (``features.window_s=2.0``); values are parsed as YAML (``epochs=5``,
``model_kwargs={channels: [8, 16, 32, 64]}``). Each job prints its config, saves it beside its outputs
(``config.yaml``) and logs it to MLflow as flat params.
"""

from __future__ import annotations

import os
import typing
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Sequence, TypeVar

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from genre_ray.features import FeatureConfig
from genre_ray.registry import Registry


class ConfigError(ValueError):
    """A config that cannot run; the message says which key and why."""


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, v: Any, info: Any) -> Any:
        """``epochs=true`` is a mistake, not 1: pydantic's lax mode would take a bool for an int or float field."""
        if isinstance(v, bool) and info.field_name in cls.model_fields:
            ann = cls.model_fields[info.field_name].annotation
            kinds = set(typing.get_args(ann)) or {ann}
            if bool not in kinds and kinds & {int, float}:
                raise ValueError(f"a number, not {str(v).lower()}")
        return v

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from genre_ray import atomic

        atomic.write_text(path, self.to_yaml())
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


def local_path(path: str) -> str:
    """A local path made absolute (``~`` expanded, ``.``/``..`` folded, symlinks kept: ``os.path.abspath``; a
    ``file://`` URI as the path it names); another URI (``s3://…``, ``models:/…``) as given."""
    path = file_uri_path(path)
    return path if "://" in path or path.startswith("models:") else os.path.abspath(os.path.expanduser(path))


def file_uri_path(path: str) -> str:
    """``file:///music/a%20b.flac`` → ``/music/a b.flac``; anything else as given."""
    if not path.startswith("file://"):
        return path
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(path).path)


def absolute_paths(cfg: C, *names: str, if_exists: Sequence[str] = ()) -> C:
    """``cfg`` with the local paths in ``names`` (when set) and in ``if_exists`` (when such a file or folder exists:
    a model may be a bundle folder or a registry URI) made absolute by :func:`local_path` — as every job prints,
    saves and logs its config, and as Ray workers, which run in other working folders, read it."""
    update = {name: local_path(getattr(cfg, name)) for name in names if getattr(cfg, name)}
    update.update({name: local_path(getattr(cfg, name)) for name in if_exists
                   if getattr(cfg, name) and Path(getattr(cfg, name)).expanduser().exists()})
    return cfg.model_copy(update=update)  # pydantic adds the updated names to model_fields_set


def _aggregation_or_none(name: str | None) -> str | None:
    """An aggregation name, checked against the registry (mean | logmean | vote), or None: the model's own."""
    from genre_ray.evaluate import AGGREGATORS

    if name is not None:
        AGGREGATORS.lookup(name)
    return name


def default_home() -> Path:
    """Project-local folder for MLflow's store, prepared data and outputs (``$GENRE_RAY_HOME`` or ./genre-ray-runs)."""
    return Path(os.environ.get("GENRE_RAY_HOME", "genre-ray-runs")).expanduser().resolve()


def _auto_is_null(value: Any) -> Any:
    """``auto`` (any case) for a setting whose null means "decided by the job": the same as null."""
    return None if isinstance(value, str) and value.strip().lower() == "auto" else value


AutoBool = Annotated[bool | None, BeforeValidator(_auto_is_null)]
"""A switch whose null (also spelt ``auto``) lets the job decide."""
AutoInt = Annotated[int | None, BeforeValidator(_auto_is_null)]
AutoFloat = Annotated[float | None, BeforeValidator(_auto_is_null)]


class RayConfig(_Base):
    address: str | None = Field(None, description="Ray address; None → RAY_ADDRESS or a new local instance")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a new local instance")
    dashboard: AutoBool = Field(None, description="a new local instance starts Ray's dashboard (127.0.0.1:8265): "
                                   "null → when its packages are installed (ray[default]; a bare `ray` install, as "
                                   "on the GPU machine's kit, has none); true → always (Ray fails without them); "
                                   "false → no dashboard UI or modules (Ray keeps a minimal head) — they and the "
                                   "agent used ~4 % of a 2-core box's CPU time while labelling")
    worker_niceness: int | None = Field(None, ge=0, le=19, description="Unix niceness of the Ray worker processes "
                                        "(tasks, actors, Ray Train workers) of a new local instance; null → Ray's "
                                        "own default, 15 (workers yield to Ray's raylet/GCS and to the driver). 0 "
                                        "puts them level with every other process: a GPU trainer's launch thread is "
                                        "not pre-empted by the node's other work. On a cluster it is the cluster's "
                                        "setting: `ray start --system-config='{\"worker_niceness\": 0}'`")


class PrepareConfig(_Base):
    source: str = Field(..., description="GTZAN-layout folder, FMA tracks.csv, or a CSV/Parquet manifest")
    out: str = Field(..., description="folder for the prepared Parquet windows")
    catalog: str = "auto"
    audio_dir: str | None = Field(None, description="FMA audio folder (when source is tracks.csv)")
    subset: str | None = Field("auto", description="FMA subset: small | medium | large | full | null (every row "
                               "with audio); auto = the audio folder's (fma_medium → medium), else every row")
    split: str = Field("auto", description="auto (predefined when the source gives every track a split — a "
                       "manifest's split column, FMA's set/split — else random) | random (seeded, stratified, "
                       "grouped by artist) | predefined | gtzan-ff")
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)

    @field_validator("split")
    @classmethod
    def _split_known(cls, v: str) -> str:
        from genre_ray.splits import SPLIT_STRATEGIES

        if v != "auto":
            SPLIT_STRATEGIES.lookup(v)
        return v
    seed: int = 0
    features: FeatureConfig = FeatureConfig()
    noise_copies: int = Field(0, ge=0, description="extra noisy copies of each training window")
    noise_snr_db: float = Field(20.0, description="SNR of the added white noise, dB")
    offset_copies: int = Field(0, ge=0, description="extra copies of each training track cut from a random offset "
                               "in (0, hop): windows between the regular ones")
    fail_on_error: bool = Field(False, description="exit status 1 when any track fails to decode (default: only "
                                "when none succeeds); failed tracks are always listed in meta.json")
    content_hash_s: float = Field(10.0, ge=0, description="seconds of decoded audio hashed per track (tracks.parquet "
                                  "content_hash) so copies of one recording in two splits are caught; 0 = off")
    allow_leakage: bool = Field(False, description="a track, file, recording or artist in two splits only warns "
                                "(reproduces leaky published settings; see genre_ray/leakage.py)")
    experiment: str = Field("genre-ray", description="MLflow experiment of the prepare run (config, counts, "
                            "meta.json, tracks.parquet)")
    ray: RayConfig = RayConfig()

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in v) or abs(sum(v) - 1.0) > 1e-6 or v[0] <= 0:
            raise ValueError(f"split_fractions must be >= 0, train > 0, and sum to 1 (got {v})")
        return v


class AugmentConfig(_Base):
    """Training-only batch augmentation (see ``genre_ray.augment``); all zeros = off."""

    freq_masks: int = Field(0, ge=0, description="SpecAugment frequency masks per image")
    freq_max: float = Field(0.15, ge=0, le=1, description="max mask height, fraction of the image")
    time_masks: int = Field(0, ge=0, description="SpecAugment time masks per image")
    time_max: float = Field(0.15, ge=0, le=1, description="max mask width, fraction of the image")
    mixup_alpha: float = Field(0.0, ge=0, description="mixup Beta(α, α); 0 = off")


FINETUNE_MODES = ("full", "fixed", "discriminative")
SELECT_METRICS = {"val_accuracy": "max", "val_track_accuracy": "max", "val_loss": "min"}


class TrainConfig(_Base):
    data: str = Field(..., description="prepared folder written by `genre-ray prepare`")
    out: str = Field(..., description="folder for checkpoints and the model bundle")
    model: str = "homebrew"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    pretrained: str | None = Field(None, description="local resnet18 ImageNet state_dict, or 'auto' = torchvision's "
                                   "cache dir if the file is there; nothing is downloaded")
    finetune: str = Field("full", description="full | fixed (frozen backbone: fixed features) | discriminative "
                          "(backbone lr = lr × backbone_lr_factor)")
    backbone_lr_factor: float = Field(0.1, gt=0, le=1, description="backbone lr multiplier in discriminative mode")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1, description="per worker; effective batch = batch_size × num_workers")
    lr: float = Field(1e-3, gt=0, description="base lr, not rescaled with world size (scale it yourself: "
                      "lr × num_workers is the usual linear rule)")
    optimizer: str = Field("adam", description="adam | adamw | sgd")
    weight_decay: float = Field(0.0, ge=0)
    schedule: str = Field("cosine", description="cosine | step | exponential | constant (per step, after warm-up)")
    warmup_epochs: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(5.0, gt=0)
    augment: AugmentConfig = AugmentConfig()
    bn_recalibrate_batches: int = Field(16, ge=0, description="precise-BN batches after each epoch (0 = off)")
    fused_optimizer: AutoBool = Field(None, description="torch's fused optimizer update; null → on when the "
                                         "parameters are on a GPU (training.make_optimizer)")
    cudnn_benchmark: bool = Field(True, description="on a GPU: cuDNN times its convolution algorithms on the first "
                                  "batch of each shape and keeps the fastest (torch.backends.cudnn.benchmark); "
                                  "false → its heuristics (and no timing run)")
    select_metric: str = Field("val_accuracy", description="val_accuracy | val_track_accuracy | val_loss: "
                               "picks the best checkpoint and drives early stopping")
    early_stop_patience: int | None = Field(None, ge=1, description="stop after this many epochs without a better "
                                            "select_metric")
    seed: int = 0
    deterministic_data: bool = Field(False, description="Ray Data feeds the training shards in a fixed order "
                                     "(preserve_order) with a seeded local shuffle: the same seed and data give the same "
                                     "run on the CPU; off by default — the order then mixes the parallel reads, a better "
                                     "shuffle than the local buffer alone")
    num_workers: int = Field(2, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per Ray Train worker (fractions allowed)")
    use_gpu: bool = False
    torch_compile: bool = Field(False, description="torch.compile the model in each worker (off: on short runs "
                                "compilation costs more than it saves)")
    prefetch_batches: int = Field(2, ge=0, description="batches Ray Data prepares ahead of the training step "
                                  "(iter_torch_batches; pinned host memory when use_gpu)")
    cache_in_memory: AutoBool = Field(None, description="read the prepared train/val splits once into Ray's "
                                         "object store before training, so an epoch does not start a Parquet read "
                                         "again; None → when their files take under a quarter of the object store "
                                         "(not with deterministic_data)")
    device_cache: AutoBool = Field(None, description="each worker reads its share of the train split once into "
                                      "its device's memory and draws every epoch's batches there, in a seeded random "
                                      "order over the whole share (no host→GPU copy per step); None → on a GPU worker "
                                      "when the share takes under a quarter of the GPU's free memory, on a CPU "
                                      "worker when the splits are small enough for cache_in_memory")
    max_failures: int = Field(2, ge=-1, description="worker-group restarts from the last checkpoint (-1 = forever)")
    checkpoints_to_keep: int = Field(2, ge=1)
    storage_path: str | None = Field(None, description="Ray Train storage (shared FS or s3://… for multi-node); "
                                     "default OUT/ray_results")
    aggregate: str = "mean"
    experiment: str = "genre-ray"
    register_as: str | None = Field(None, description="MLflow registered-model name")
    champion_alias: str = Field("champion", description="alias moved to a new version only when it beats the current "
                                "holder on the same validation split")
    allow_leakage: bool = Field(False, description="train although a track, file, recording or artist is in two "
                                "splits (warns; the MLflow run is tagged genre_ray.leakage = ALLOWED: …)")
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _known(self) -> "TrainConfig":
        from genre_ray.evaluate import AGGREGATORS
        from genre_ray.models import MODELS
        from genre_ray.training import OPTIMIZERS, SCHEDULES

        MODELS.lookup(self.model)
        AGGREGATORS.lookup(self.aggregate)
        OPTIMIZERS.lookup(self.optimizer)
        SCHEDULES.lookup(self.schedule)
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {', '.join(FINETUNE_MODES)} (got {self.finetune!r})")
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(f"select_metric must be one of {', '.join(SELECT_METRICS)} (got {self.select_metric!r})")
        if self.finetune != "full" and self.model != "resnet18":
            raise ValueError(f"finetune={self.finetune!r} needs a pretrained backbone (model resnet18), "
                             f"not {self.model!r}")
        if self.finetune != "full" and not self.pretrained:  # a frozen or slowed random backbone learns nothing
            raise ValueError(f"finetune={self.finetune!r} needs ImageNet weights: give --pretrained FILE (or "
                             "pretrained: auto with torchvision's cached resnet18 file)")
        if self.pretrained and self.pretrained != "auto" and not Path(self.pretrained).expanduser().is_file():
            raise ValueError(f"pretrained weights file not found: {self.pretrained}")
        if self.pretrained and self.model != "resnet18":
            raise ValueError(f"pretrained weights apply to resnet18 only (model is {self.model!r})")
        return self


@dataclass(frozen=True)
class Distribution:
    """One search-space distribution: how ``args`` are checked and which ``ray.tune`` function builds it.

    ``check(args)`` raises ValueError on malformed arguments and returns them normalised plus the values worth
    validating against :class:`TrainConfig` (bounds, every choice); ``spread`` = the args go to ``tune_fn`` one by
    one (``uniform(low, high)``) instead of as one list (``choice([...])``); ``discrete`` = usable by the grid searcher.
    """

    tune_fn: str
    check: Callable[[Any], tuple[Any, list[Any]]]
    spread: bool
    discrete: bool


def _number(x: Any, what: str) -> float:
    if isinstance(x, bool):
        raise ValueError(f"{what} must be a number (got {x!r})")
    try:
        return float(x)  # YAML reads 1e-4 (no dot) as a string
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number (got {x!r})") from None


def _bounds(args: Any, positive: bool = False, integer: bool = False) -> tuple[Any, list[Any]]:
    if not isinstance(args, (list, tuple)) or len(args) != 2:
        raise ValueError(f"expects [low, high] (got {args!r})")
    low, high = (_number(a, "bound") for a in args)
    if integer:
        if low != int(low) or high != int(high):
            raise ValueError(f"bounds must be integers (got {args!r})")
        low, high = int(low), int(high)
    if not low < high:
        raise ValueError(f"low must be < high (got {args!r})")
    if positive and low <= 0:
        raise ValueError(f"bounds must be > 0 (got {args!r})")
    return [low, high], [low, high - 1 if integer else high]


_SCIENTIFIC = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _values(args: Any) -> tuple[Any, list[Any]]:
    if not isinstance(args, (list, tuple)) or not args:
        raise ValueError(f"expects a non-empty list of values (got {args!r})")
    # YAML 1.1 reads 1e-7 (no dot) as a string: such values are numbers
    values = [float(v) if isinstance(v, str) and _SCIENTIFIC.match(v) else v for v in args]
    return values, values


#: ``{name: args}`` in a search space → ``ray.tune.<tune_fn>`` (the mapping is applied in genre_ray/pipelines/tune.py)
DISTRIBUTIONS: Registry[Distribution] = Registry("search-space distribution")
DISTRIBUTIONS.register("uniform")(Distribution("uniform", _bounds, spread=True, discrete=False))
DISTRIBUTIONS.register("loguniform")(Distribution("loguniform", lambda a: _bounds(a, positive=True), True, False))
DISTRIBUTIONS.register("randint")(Distribution("randint", lambda a: _bounds(a, integer=True), True, False))  # [low, high)
DISTRIBUTIONS.register("choice")(Distribution("choice", _values, spread=False, discrete=True))
DISTRIBUTIONS.register("grid")(Distribution("grid_search", _values, spread=False, discrete=True))

#: built-in searchers (grid: every combination of `grid`/`choice` values; random: `num_samples` draws) and
#: schedulers (asha: asynchronous successive halving on the validation metric; fifo: every trial runs to the end)
LABEL_EXPORTS = ("csv", "jsonl")  # names of label.EXPORTERS (a test keeps each list and its registry alike)
TOO_SHORT_POLICIES = ("pad", "skip")  # inference.TOO_SHORT
FEATURIZE_MODES = ("actor", "cpu", "device")  # label_device.FEATURIZE_STAGES ("auto" picks one of them)
TUNE_SEARCHERS = ("random", "grid")
TUNE_SCHEDULERS = ("asha", "fifo")
#: TrainConfig keys a sweep may not vary: paths and registry names, resources, and `epochs` (ASHA's budget)
FIXED_TRAIN_KEYS = frozenset({"data", "out", "epochs", "ray", "experiment", "register_as", "champion_alias",
                              "allow_leakage",
                              "storage_path", "num_workers", "cpus_per_worker", "use_gpu", "max_failures",
                              "checkpoints_to_keep", "select_metric"})


def _space_key_error(key: str) -> str | None:
    """Why ``key`` (dotted) is not a TrainConfig key a sweep may vary, or None when it is."""
    import typing

    parts, cls = key.split("."), TrainConfig
    if parts[0] in FIXED_TRAIN_KEYS:
        return f"{parts[0]!r} is fixed for a sweep (set it under train:)"
    for i, part in enumerate(parts):
        field = cls.model_fields.get(part)
        if field is None:
            return f"unknown key {part!r} of {cls.__name__} (known: {', '.join(sorted(cls.model_fields))})"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if i == len(parts) - 1:
                return f"{key!r} is a section; sweep one of its keys ({key}.<key>)"
            cls = ann
        elif typing.get_origin(ann) is dict:
            return None if i == len(parts) - 2 else f"{key!r}: give one key below {part!r} ({part}.<key>)"
        elif i < len(parts) - 1:
            return f"{'.'.join(parts[:i + 1])!r} is not a section"
    return None


class TuneConfig(_Base):
    """``genre-ray tune``: a Ray Tune sweep of :class:`TrainConfig` over a declared search space.

    ``train`` holds the fixed part (any TrainConfig key except ``data``/``out``, which come from here);
    ``search_space`` maps dotted TrainConfig keys to one distribution each, e.g.
    ``{lr: {loguniform: [1.0e-4, 1.0e-2]}, model_kwargs.channels: {choice: [[8, 16, 32, 32], [16, 32, 64, 64]]}}``.
    Every key and every bound/choice is validated against TrainConfig before Ray starts.
    """

    data: str = Field(..., description="prepared folder written by `genre-ray prepare`")
    out: str = Field(..., description="sweep folder: config, Tune state (resume), summary, best_config.yaml, best/")
    train: dict[str, Any] = Field(default_factory=dict, description="the fixed TrainConfig keys of every trial; "
                                  "num_workers defaults to 1 (a plain Tune function trial; > 1 = a TorchTrainer "
                                  "per trial)")
    search_space: dict[str, dict[str, Any]] = Field(..., description="dotted TrainConfig key → {distribution: "
                                                    f"args}}; distributions: {', '.join(DISTRIBUTIONS)}")
    searcher: str = Field("random", description=" | ".join(TUNE_SEARCHERS))
    num_samples: int = Field(8, ge=1, description="trials (random), or repetitions of the grid (grid)")
    seed: int | None = Field(0, description="searcher seed (None = unseeded)")
    scheduler: str = Field("asha", description=" | ".join(TUNE_SCHEDULERS))
    grace_period: int = Field(1, ge=1, description="ASHA: epochs every trial gets before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA: keep the best 1/reduction_factor at each rung")
    max_concurrent_trials: int | None = Field(2, ge=1, description="trials at once (None = as many as fit)")
    trial_cpus: float = Field(1.0, gt=0, description="CPUs per trial (single-worker trials: its torch threads; "
                              "multi-worker trials: the trial's driver only, e.g. 0.1 — the workers take "
                              "train.cpus_per_worker each)")
    trial_gpus: float = Field(0.0, ge=0, description="GPUs per trial worker, fractions allowed (0.5 = two trials "
                              "share a GPU); needs train.use_gpu")
    max_trial_failures: int = Field(0, ge=0, description="times Tune retries a failed trial before it counts as failed")
    checkpoint_trials: bool = Field(True, description="single-worker trials checkpoint every epoch (num_to_keep=1), "
                                    "so a resumed sweep continues an interrupted trial instead of restarting it")
    snapshot_s: float = Field(5.0, gt=0, description="seconds between Tune experiment-state snapshots: a trial "
                              "finished less than this before a driver crash may run again on resume")
    name: str = Field("sweep", description="Tune experiment name (STORAGE/NAME is what a rerun resumes)")
    storage_path: str | None = Field(None, description="Tune storage (shared FS or s3://… on a cluster); default "
                                     "OUT/ray_results")
    resume: bool = Field(True, description="rerunning into an OUT with an unfinished sweep resumes it (Tuner.restore)")
    retrain: bool = Field(True, description="retrain the best config for full epochs (run_train) and register it")
    retrain_epochs: int | None = Field(None, ge=1, description="epochs of the retrain (default: train.epochs)")
    retrain_num_workers: int | None = Field(None, ge=1, description="Ray Train workers of the retrain (default: "
                                            "train.num_workers)")
    experiment: str = Field("genre-ray", description="MLflow experiment of the parent, trial and retrain runs")
    ray: RayConfig = RayConfig()

    @field_validator("searcher")
    @classmethod
    def _searcher(cls, v: str) -> str:
        if v not in TUNE_SEARCHERS:
            raise ValueError(f"unknown searcher {v!r}; known: {', '.join(TUNE_SEARCHERS)}")
        return v

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        if v not in TUNE_SCHEDULERS:
            raise ValueError(f"unknown scheduler {v!r}; known: {', '.join(TUNE_SCHEDULERS)}")
        return v

    @model_validator(mode="after")
    def _valid_sweep(self) -> "TuneConfig":
        base = self.base()  # the fixed part alone must be a valid TrainConfig
        if not self.search_space:
            raise ValueError("search_space is empty: declare at least one key, e.g. lr: {loguniform: [1.0e-4, 1.0e-2]}")
        for key, spec in self.search_space.items():
            if not isinstance(spec, dict) or len(spec) != 1:
                raise ValueError(f"search_space.{key}: give exactly one distribution, e.g. {{choice: [16, 32]}} "
                                 f"(got {spec!r}); known: {', '.join(DISTRIBUTIONS)}")
            why = _space_key_error(key)
            if why:
                raise ValueError(f"search_space.{key}: {why}")
            (name, args), = spec.items()
            try:
                dist = DISTRIBUTIONS.lookup(name)
                args, probes = dist.check(args)
            except ValueError as exc:
                raise ValueError(f"search_space.{key}: {name}: {exc}") from None
            if self.searcher == "grid" and not dist.discrete:
                raise ValueError(f"search_space.{key}: searcher grid needs discrete values (choice or grid), "
                                 f"not {name}; or use searcher random")
            self.search_space[key] = {name: args}  # normalised (numbers parsed)
            for value in probes:
                try:
                    self.trial_config({key: value})
                except ValueError as exc:
                    raise ValueError(f"search_space.{key}: value {value!r} is not a valid {key}: "
                                     f"{_first_error(exc)}") from None
        if self.trial_gpus > 0 and not base.use_gpu:
            raise ValueError("trial_gpus > 0 needs train.use_gpu: true")
        if base.use_gpu and base.num_workers == 1 and self.trial_gpus == 0:
            raise ValueError("train.use_gpu with single-worker trials needs trial_gpus > 0 (e.g. 1 or 0.5)")
        return self

    def _train_dict(self) -> dict[str, Any]:
        bad = sorted({"data", "out"} & set(self.train))
        if bad:
            raise ValueError(f"train.{bad[0]}: set {bad[0]} at the top level of the tune config, not under train")
        return {"num_workers": 1, "experiment": self.experiment, **self.train,
                "data": self.data, "out": str(Path(self.out) / "best")}

    def base(self) -> TrainConfig:
        """The fixed part as a TrainConfig (``out`` = OUT/best, where the retrain writes)."""
        try:
            return TrainConfig.model_validate(self._train_dict())
        except ValidationError as exc:
            raise ValueError(f"train.{_first_error(exc, TrainConfig)}") from None

    def trial_config(self, values: dict[str, Any]) -> TrainConfig:
        """The TrainConfig of one trial: the fixed part with ``values`` (dotted keys → sampled values) applied."""
        import copy

        data = copy.deepcopy(self._train_dict())
        for key, value in values.items():
            _set_dotted(data, key, value)
        return TrainConfig.model_validate(data)


def _first_error(exc: Exception, cls: type[BaseModel] = None) -> str:
    if isinstance(exc, ValidationError):
        e = exc.errors()[0]
        return f"{'.'.join(str(x) for x in e['loc']) or '<root>'}: {e['msg']}{_did_you_mean(cls, e) if cls else ''}"
    return str(exc)


class LabelConfig(_Base):
    input: str = Field(..., description="folder (recursive), glob, or CSV/Parquet manifest with a path column")
    model: str = Field(..., description="model bundle folder, or an MLflow URI (runs:/…, models:/name/version)")
    out: str = Field(..., description="output folder for the labels Parquet")
    hop_s: float | None = Field(None, gt=0, description="window hop; None → the model's training hop")
    aggregate: str | None = Field(None, description="mean | logmean | vote: window probabilities → track verdict; "
                                  "None → the model's (as trained and calibrated; mean for older bundles)")
    top_k: int = Field(3, ge=1)
    fail_on_error: bool = Field(False, description="exit status 1 when any file is not labelled (error/too-short; "
                                "default: only when none is); every file always gets its row")
    too_short: str = Field("pad", description="a file shorter than one window: pad (zero-pad to one window, "
                           "status ok, when it holds a tenth of a window; too-short below) | skip (status "
                           "too-short); both warn")
    batch_size: AutoInt = Field(None, ge=1, description="windows per forward pass; None → the fastest on each "
                                   "classifier actor's device, measured during its first calls (CPU: 2…64, "
                                   "GPU: 64…2048)")
    call_windows: AutoInt = Field(None, ge=1, description="windows per classifier-actor call (Ray Data batch; at "
                                     "least batch_size); None → 64 on CPU, 2048 on GPU. Smaller: results stream out "
                                     "sooner, more per-call overhead")
    num_actors: AutoInt = Field(None, ge=1, description="classifier actors (each loads the model once); None → "
                                   "two per GPU with use_gpu (0.5 GPU each: one prepares its call while the "
                                   "other's batch runs; one per GPU where two would take over half the CPUs), else "
                                   "one per CPU of the cluster (see actor_cpus); more actors than GPUs share them "
                                   "equally")
    actor_cpus: AutoFloat = Field(None, gt=0, description="CPUs reserved per classifier actor (torch threads = "
                                     "max(1, round(actor_cpus))); None → 1 with use_gpu or featurize=actor, else 0.5: "
                                     "one-thread actors on half the logical CPUs, the featurize tasks on the rest, the "
                                     "OS sharing the cores between whichever stage has work")
    actor_gpus: AutoFloat = Field(None, gt=0, le=1, description="GPU share reserved per classifier actor with "
                                  "use_gpu; None → 1, or an equal share of the GPUs Ray sees at start when there are "
                                  "more actors (0.5 when it sees none yet). Set it with num_actors on a cluster whose "
                                  "GPU nodes start on demand: num_actors 8 × 0.5 asks for 4 GPUs however many are "
                                  "up when the job starts")
    use_gpu: AutoBool = Field(None, description="one GPU per classifier actor, bf16 autocast; None → when the "
                                 "Ray cluster has GPUs")
    torch_compile: bool = Field(False, description="torch.compile each classifier actor's model (one static shape: "
                                "every forward batch is batch_size windows — None → 1,024 on GPU, 64 on CPU — the "
                                "last of a call zero-padded). Costs tens of seconds per actor at start-up: for large "
                                "libraries on GPUs (ResNet18 inference on an H100: 43,097 → 64,500 windows/s in "
                                "raw PyTorch)")
    shard_rows: int = Field(256, ge=1, description="label rows per Parquet shard (a shard is the unit of resume)")
    overwrite: bool = Field(False, description="relabel everything (default: resume, skipping files already "
                            "labelled by the same model, features and windows)")
    retry_errors: bool = Field(False, description="on a rerun, label again the files whose row says error (fixed "
                               "files, a network mount that was down); their old rows are replaced")
    timeline: bool = Field(False, description="also write OUT/timeline/*.parquet: one row per window with its probabilities")
    export: list[str] = Field(default_factory=list, description="extra copies of the labels: csv, jsonl")
    write_tags: bool = Field(False, description="write the top genre into each file's tags (mutagen); audio untouched")
    dry_run: bool = Field(False, description="with write_tags: only list the tag changes (OUT/tags.csv)")
    tag_uncertain: bool = Field(False, description="with write_tags: also tag the tracks flagged uncertain (default: "
                                "they are left untagged, listed in OUT/tags.csv as skipped)")
    progress_s: float = Field(10.0, gt=0, description="seconds between progress lines")
    featurize: str = Field("auto", description="where spectrograms are made: actor (each classifier actor decodes, "
                           "featurizes and classifies whole tracks: no featurize tasks, no images between "
                           "processes; for CPU-only clusters) | cpu (decode tasks ship window images to the "
                           "classifier actors) | device (decode tasks ship waveform segments; the classifier actor "
                           "makes the images, on its GPU with use_gpu) | auto (actor without GPUs, else device)")
    decode_workers: str = Field("actors", description="how featurize=cpu|device (the GPU paths) runs its CPU "
                                "stage: actors (a pool of long-lived decode actors, one per CPU the classifier "
                                "actors leave, each call a few files: no task start between blocks; decode-only "
                                "over 10,000 files on 2 CPUs 0.86–0.93 × the node's plain decode rate, tasks "
                                "0.75–0.76) | tasks (Ray Data tasks, one per block of up to 64 files: they follow "
                                "an autoscaling cluster's new nodes, a fixed actor pool does not)")
    embeddings: bool = Field(True, description="write each track's embedding (window penultimate features averaged, "
                             "L2-normalised) as the labels' `embedding` column, for `genre-ray similar`")
    uncertain_threshold: float | None = Field(None, ge=0, le=1, description="calibrated top-1 probability below "
                                              "which a track is uncertain; None → the model bundle's (from validation)")
    vote_entropy_threshold: float = Field(0.7, ge=0, le=1, description="normalised entropy of the per-window top-1 "
                                          "vote above which a track is uncertain (windows disagree)")
    review_list: str | None = Field(None, description="CSV of the uncertain tracks, most uncertain first")
    experiment: str = "genre-ray"
    ray: RayConfig = RayConfig()

    @field_validator("aggregate")
    @classmethod
    def _agg(cls, v: str | None) -> str | None:
        return _aggregation_or_none(v)

    @field_validator("too_short")
    @classmethod
    def _too_short(cls, v: str) -> str:
        if v not in TOO_SHORT_POLICIES:
            raise ValueError(f"too_short must be {' or '.join(TOO_SHORT_POLICIES)} (got {v!r})")
        return v

    @field_validator("export")
    @classmethod
    def _export(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in LABEL_EXPORTS]
        if bad:
            raise ValueError(f"unknown export format(s) {bad}; known: {', '.join(LABEL_EXPORTS)}")
        return list(dict.fromkeys(v))

    @field_validator("featurize")
    @classmethod
    def _featurize(cls, v: str) -> str:
        if v != "auto" and v not in FEATURIZE_MODES:
            raise ValueError(f"featurize must be auto, {', '.join(FEATURIZE_MODES[:-1])} or {FEATURIZE_MODES[-1]} "
                             f"(got {v!r})")
        return v

    @field_validator("decode_workers")
    @classmethod
    def _decode_workers(cls, v: str) -> str:
        if v not in ("tasks", "actors"):
            raise ValueError(f"decode_workers must be tasks or actors (got {v!r})")
        return v

    @model_validator(mode="after")
    def _dry_run_with_tags(self) -> "LabelConfig":
        if self.dry_run and not self.write_tags:  # alone it would label the whole library and list nothing
            raise ValueError("dry_run lists the tag changes of write_tags: pass both (--write-tags --dry-run)")
        if self.tag_uncertain and not self.write_tags:
            raise ValueError("tag_uncertain applies to write_tags: pass both (--write-tags --tag-uncertain)")
        return self


class EvaluateConfig(_Base):
    """``genre-ray evaluate``: a trained model scored on a prepared split (no Ray: one process reads the windows)."""

    model: str = Field(..., description="model bundle folder, or an MLflow URI (runs:/…/model, models:/name@alias)")
    data: str = Field(..., description="prepared folder written by `genre-ray prepare` (its images must be the "
                      "model's: same feature hash)")
    split: str = Field("test", description="train | val | test")
    out: str | None = Field(None, description="folder for results.json and the confusion matrices (default: "
                            "MLflow artifacts only)")
    aggregate: str | None = Field(None, description="window → track aggregation; None → the bundle's (as trained), "
                                  "else mean")
    batch_size: int = Field(128, ge=1)
    experiment: str = "genre-ray"

    @field_validator("split")
    @classmethod
    def _split(cls, v: str) -> str:
        if v not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test (got {v!r})")
        return v

    @field_validator("aggregate")
    @classmethod
    def _agg(cls, v: str | None) -> str | None:
        return _aggregation_or_none(v)


class DemoConfig(_Base):
    """``genre-ray demo``: sizes of the synthetic corpus and of the training run (the one place their defaults live)."""

    workdir: str | None = Field(None, description="folder for everything the demo writes (default: $GENRE_RAY_HOME/demo)")
    genres: int = Field(10, ge=2, le=10)
    per_genre: int = Field(24, ge=4, description="clips per genre")
    seconds: float = Field(12.0, gt=0, description="clip length")
    hop_s: float = Field(3.0, gt=0, description="window hop in seconds (3.0 = disjoint 3-s windows)")
    epochs: int = Field(10, ge=1)
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


def _yaml_problem(exc: Exception) -> str:
    """A YAML parser error in one line: what is wrong, and where (line, column)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{getattr(exc, 'problem', None) or exc}{where}"


def load_config(cls: type[C], path: str | Path | None = None, overrides: Sequence[str] = (), **values: Any) -> C:
    """Build ``cls`` from a YAML file, then ``values`` (CLI flags; None ignored), then ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {_yaml_problem(exc)}") from None
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
        try:
            value = yaml.safe_load(v)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item}: the value is not valid YAML: {_yaml_problem(exc)} (quote the whole "
                              "--set argument in the shell; YAML lists and mappings need their closing ] or })") from None
        _set_dotted(data, k.strip(), value)
    if isinstance(data.get("features"), dict):  # merge partial feature overrides onto the defaults
        data["features"] = {**FeatureConfig().to_dict(), **data["features"]}
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(x) for x in e['loc']) or '<root>'}: {e['msg']}{_did_you_mean(cls, e)}"
                 for e in exc.errors()]
        raise ConfigError(f"invalid {cls.__name__}:\n" + "\n".join(lines)) from None


def _did_you_mean(cls: type[BaseModel], error: dict[str, Any]) -> str:
    """For an unknown key, the closest known one of its section (``epoch`` → ``epochs``)."""
    import difflib

    if error.get("type") != "extra_forbidden" or not error.get("loc"):
        return ""
    model: Any = cls
    for part in error["loc"][:-1]:  # walk down to the section that holds the key
        field = getattr(model, "model_fields", {}).get(part)
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return ""
    close = difflib.get_close_matches(str(error["loc"][-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""

