"""Ray Train ``train``: DDP over prepared windows, rank-0 checkpoints and reports (logged to MLflow by the driver's
:class:`EpochLogger`: workers never open the store), then a per-track
evaluation of the best checkpoint on the held-out splits, and the model bundle logged to MLflow.

Effective batch size = ``batch_size × num_workers``; the learning rate is not rescaled automatically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable, NamedTuple

import mlflow
import numpy as np
import pandas as pd
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn

from genre_ray import accel, tracking
from genre_ray import atomic, preflight
from genre_ray.bundle import save_bundle
from genre_ray.augment import BatchAugment
from genre_ray.config import SELECT_METRICS, ConfigError, TrainConfig, absolute_paths
from genre_ray.evaluate import aggregate, per_class_metrics, plot_confusion, plot_curves, score_logits
from genre_ray.features import FeatureConfig
from genre_ray.leakage import enforce, find_leakage, leakage_tags
from genre_ray.models import create_model
from genre_ray.pipelines.calibrate import calibrate_and_log, split_logits
from genre_ray.pipelines.common import announce, check_job_outputs, init_ray
from genre_ray.pipelines.prepare import split_dir
from genre_ray.provenance import dataset_fingerprint, git_commit, versions
from genre_ray.training import (DeviceCache, EarlyStopping, Totals, epoch_seed, lr_schedule, make_optimizer, predict_logits,
                                seed_everything, train_epoch, unwrap)

log = logging.getLogger("genre_ray")

CKPT_FILE = "state.pt"
CURVES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_track_accuracy")


def _model_kwargs(cfg: TrainConfig, features: FeatureConfig) -> dict[str, Any]:
    kw = dict(cfg.model_kwargs)
    if cfg.model == "homebrew":
        kw.setdefault("input_size", [features.height, features.width])
    if cfg.finetune == "fixed":
        kw["freeze_backbone"] = True
    if cfg.pretrained:
        from genre_ray.models.resnet import resolve_pretrained

        path = resolve_pretrained(cfg.pretrained)
        if path:
            kw["pretrained"] = path
            kw.setdefault("imagenet_norm", True)  # the images standardised as the ImageNet weights expect
        elif cfg.finetune != "full":  # a random backbone, frozen or slowed: only a head on noise features trains
            raise ConfigError(f"finetune={cfg.finetune} needs ImageNet weights, and pretrained=auto found none "
                              "($TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth); give --pretrained FILE")
        else:
            print("train: no ImageNet weights found for pretrained=auto; training from scratch", flush=True)
    return kw


def _batches(shard, batch_size: int, shuffle: bool, prefetch_batches: int = 1, pin_memory: bool = False,
             seed: int | None = None):
    """``(images, labels)`` torch batches of a Ray Data shard, ``prefetch_batches`` made ahead of the step (in
    pinned host memory when ``pin_memory``: the copy to the GPU then overlaps compute); the local shuffle is seeded
    with ``seed`` so that a run is repeatable."""
    for b in shard.iter_torch_batches(batch_size=batch_size, local_shuffle_buffer_size=4 * batch_size if shuffle else None,
                                      local_shuffle_seed=seed if shuffle else None,
                                      prefetch_batches=prefetch_batches, pin_memory=pin_memory):
        yield b["image"], b["label_idx"]


def split_bytes(data: str | Path, splits: tuple[str, ...] = ("train", "val")) -> int:
    """Bytes of the prepared splits' Parquet files."""
    return sum(f.stat().st_size for split in splits for f in Path(split_dir(data, split)).rglob("*.parquet"))


def cache_splits(cfg: TrainConfig, object_store_bytes: float) -> bool:
    """Whether to materialise the train/val splits before training (``cfg.cache_in_memory``; None → when their
    files take under a quarter of the object store, unless ``deterministic_data``: float16 images barely compress, so the in-memory blocks are
    about the files' size). Each epoch of a streamed split starts a Parquet read again — on the 2-core box that
    start-up was a third of a 200-window epoch (``genre-ray bench train``)."""
    if cfg.cache_in_memory is not None:
        return cfg.cache_in_memory
    if cfg.deterministic_data:  # a cached split did not give the same metrics twice (tests/test_determinism.py)
        return False
    return 0 < split_bytes(cfg.data) < 0.25 * object_store_bytes


def row_bytes(features: FeatureConfig) -> int:
    """Bytes of one prepared training row in memory: its float16 image and int64 label."""
    return int(np.prod(features.image_shape)) * 2 + 8


DEVICE_CACHE_SHARE = 0.25
"""``device_cache: null`` keeps a GPU worker's share of the train split on the GPU when it takes under this share of
the GPU's free memory (the rest: the model, its activations and the optimizer)."""


def device_cache_on(cfg: TrainConfig, device: torch.device, share_bytes: int, small_splits: bool = False) -> bool:
    """``cfg.device_cache``, or (None): on a CUDA ``device``, whether ``share_bytes`` of training data fit the rule
    of :data:`DEVICE_CACHE_SHARE`; on CPU, ``small_splits`` — the splits were small enough to be read into the
    object store (:func:`cache_splits`), so the workers' shares together take that much host memory once more. On
    the 2-core box, quick bench (``genre-ray bench train --quick``, tiny epochs): 5.8 → 19.0 samples/s through Ray
    Train, the bare loop 16–17; at the bench's full size 18.7 vs 18.6 already (the CNN dominates there)."""
    if cfg.device_cache is not None:
        return cfg.device_cache
    if device.type != "cuda":
        return small_splits
    free, _ = torch.cuda.mem_get_info(device)
    return share_bytes < DEVICE_CACHE_SHARE * free


def worker_print(msg: str) -> None:
    """One line from a Ray Train worker, printed once. Ray Train 2.60 patches ``print`` in its workers to log through
    the root logger and, where Ray has wrapped ``sys.stdout``, to print too: each epoch line reached the driver twice.
    A print to the process's own stdout (``sys.__stdout__``) takes the plain path only."""
    print(msg, file=sys.__stdout__, flush=True)


def load_device_cache(shard, cfg: TrainConfig, device: torch.device, who: str) -> DeviceCache:
    """The whole of ``shard`` (a Ray Data shard or dataset of prepared rows) in a :class:`DeviceCache` on
    ``device``, read once; says how much it holds."""
    t0 = time.time()
    cache = DeviceCache.load(_batches(shard, max(cfg.batch_size, 256), False, cfg.prefetch_batches,
                                      device.type == "cuda"), device)
    worker_print(f"[{who}] {len(cache)} training windows kept on {device} ({cache.nbytes / 2**20:.0f} MiB, read in "
                 f"{time.time() - t0:.1f} s)")
    return cache


def _data_config(cfg: TrainConfig) -> "ray.train.DataConfig":
    """Ray Train's data ingest options, with ``preserve_order`` when ``cfg.deterministic_data`` (repeatable runs)."""
    options = ray.train.DataConfig.default_ingest_options()
    options.preserve_order = options.preserve_order or cfg.deterministic_data
    # val is not split: Ray's split is equal=True, which drops rows to even the shards out (9 val windows on 2
    # workers scored 0.5); every worker reads it all and scores the tracks that fall to its rank (:func:`validate`)
    return ray.train.DataConfig(datasets_to_split=["train"], execution_options=options)


def _allreduce(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` summed over the workers, on the CPU. The reduction runs on ``device``: NCCL (GPU workers) reduces
    CUDA tensors only ("No backend type associated with device type cpu", seen on an H100)."""
    if dist.is_available() and dist.is_initialized():
        t = t.to(device)
        dist.all_reduce(t)
    return t.cpu()


def _broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank. Each rank recalibrates BatchNorm on its own
    batches (:func:`recalibrate_bn`, no collectives); this makes every rank validate the model rank 0 checkpoints.
    Explicit, so no rank depends on DDP's hidden per-forward broadcast — a rank with no validation track would
    never make that call while the others wait in it."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for b in unwrap(model).buffers():
            dist.broadcast(b.data, src=0)


def _allgather(obj: Any) -> list[Any]:
    if dist.is_available() and dist.is_initialized():
        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def rank_rows(track_ids: np.ndarray, rank: int, world: int) -> np.ndarray:
    """``(B,)`` mask of the rows whose track falls to ``rank`` of ``world``: a stable function of the track id, so
    every row of a dataset that each worker reads whole is scored by exactly one worker, whatever order each reads
    it in, and a track's windows stay together."""
    if world <= 1:
        return np.ones(len(track_ids), bool)
    return np.array([zlib.crc32(str(t).encode()) % world == rank for t in track_ids], bool)


def validate(model: nn.Module, shard, batch_size: int, device: torch.device, classes: list[str],
             how: str, rank: int = 0, world: int = 1) -> dict[str, float]:
    """Validation over the whole val split: each of the ``world`` workers reads it all and scores its tracks
    (:func:`rank_rows`); window loss/accuracy and per-track accuracy (windows aggregated with the label job's
    :func:`aggregate`), identical on every rank. The model runs unwrapped: a DDP forward is a collective, and a
    rank may hold no validation track."""
    model = unwrap(model)
    probs, labels, ids = [], [], []
    for b in shard.iter_batches(batch_size=batch_size, batch_format="numpy"):
        mine = rank_rows(b["track_id"], rank, world)
        if not mine.any():
            continue
        b = {k: v[mine] for k, v in b.items()}
        logits = predict_logits(model, torch.from_numpy(np.ascontiguousarray(b["image"])), device)
        probs.append(torch.softmax(logits, dim=1).cpu().numpy())
        labels.append(b["label_idx"])
        ids.append(b["track_id"])
    local = (np.concatenate(probs) if probs else np.zeros((0, len(classes)), np.float32),
             np.concatenate(labels) if labels else np.zeros(0, np.int64),
             np.concatenate(ids) if ids else np.zeros(0, object))
    parts = _allgather(local)
    p, y, t = (np.concatenate([part[i] for part in parts]) for i in range(3))
    if len(y) == 0:
        return {"val_loss": float("nan"), "val_accuracy": float("nan"), "val_track_accuracy": float("nan")}
    nll = -np.log(np.clip(p[np.arange(len(y)), y.astype(int)], 1e-12, 1.0))
    track_ids, track_probs = aggregate(p, t, how)
    first = dict(zip(t, y))
    track_y = np.array([first[i] for i in track_ids])
    return {"val_loss": float(nll.mean()), "val_accuracy": float((p.argmax(1) == y).mean()),
            "val_track_accuracy": float((track_probs.argmax(1) == track_y).mean())}


def restore_checkpoint(ckpt: "ray.train.Checkpoint", model: nn.Module, optimizer: torch.optim.Optimizer,
                       scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """Load a training checkpoint (``weights_only``) into model, optimizer and scheduler; returns its state
    (``epoch``, ``best``, ``since_best``, ``metrics``)."""
    with ckpt.as_directory() as d:
        state = torch.load(Path(d) / CKPT_FILE, map_location="cpu", weights_only=True)
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state


SELECTION = "selection_score"
"""The checkpoint score Ray Train keeps and the driver picks by: ``select_metric`` signed so higher is better, minus a
hair per epoch, so a tie goes to the earliest epoch — the one early stopping counts from."""


def selection_score(value: float, epoch: int, metric: str) -> float:
    return (-value if SELECT_METRICS[metric] == "min" else value) - 1e-9 * epoch


class TrainParts(NamedTuple):
    """What one training process builds from its config (:func:`build_parts`): the same for a Ray Train worker and
    a Tune trial, so a sweep trains exactly what the training job would."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: nn.Module
    augment: BatchAugment
    plateau: EarlyStopping


def build_parts(cfg: TrainConfig, num_classes: int, model_kwargs: dict[str, Any], n_train: int, world: int,
                device: torch.device, wrap: Callable[[nn.Module], nn.Module] = lambda m: m) -> TrainParts:
    """Seed, model (on ``device``, channels_last where it pays, then ``wrap`` — Ray Train's ``prepare_model`` —
    and ``torch_compile``), optimizer, LR schedule over ``n_train`` samples shared by ``world`` workers, loss,
    batch augmentation and early stopping, as ``cfg`` says."""
    seed_everything(cfg.seed)  # same init everywhere; DDP also broadcasts rank 0's weights
    model = create_model(cfg.model, num_classes=num_classes, **model_kwargs)
    accel.cudnn_autotune(device, cfg.cudnn_benchmark)
    model = wrap(model.to(device, memory_format=accel.memory_format(device)))
    if cfg.torch_compile:
        unwrap(model).compile()  # in place: state_dict keys unchanged
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.optimizer,
                               cfg.backbone_lr_factor if cfg.finetune == "discriminative" else 1.0, cfg.fused_optimizer)
    steps_per_epoch = max(1, -(-n_train // (cfg.batch_size * world)))
    scheduler = lr_schedule(optimizer, cfg.schedule, cfg.epochs * steps_per_epoch,
                            int(round(cfg.warmup_epochs * steps_per_epoch)), steps_per_epoch)
    return TrainParts(model, optimizer, scheduler, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
                      BatchAugment(num_classes=num_classes, **cfg.augment.model_dump()),
                      EarlyStopping(SELECT_METRICS[cfg.select_metric], cfg.early_stop_patience))


def epoch_metrics(cfg: TrainConfig, parts: TrainParts, epoch: int, train: dict[str, float], val: dict[str, float],
                  t0: float, train_s: float) -> dict[str, Any]:
    """One epoch's report (Ray Train's and Tune's alike): train/val figures, the best value so far, learning rates,
    throughput, whether early stopping ends the run here (``patience_stop``) and the checkpoint score."""
    lrs = parts.scheduler.get_last_lr()
    return {"epoch": epoch, "train_loss": train["loss"], "train_accuracy": train["accuracy"], **val,
            f"best_{cfg.select_metric}": parts.plateau.best, "lr": lrs[0],
            **({"lr_backbone": lrs[1]} if len(lrs) > 1 else {}),
            "epoch_seconds": time.time() - t0, "samples_per_second": train["n"] / max(train_s, 1e-9),
            "patience_stop": int(parts.plateau.stop),
            SELECTION: selection_score(val[cfg.select_metric], epoch, cfg.select_metric)}


def checkpoint_state(parts: TrainParts, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint holds (``CKPT_FILE``; :func:`restore_checkpoint` reads it back)."""
    return {"model": unwrap(parts.model).state_dict(), "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(), "epoch": epoch, "best": parts.plateau.best,
            "since_best": parts.plateau.since_best, "metrics": metrics}


def resume_parts(ckpt: "ray.train.Checkpoint", parts: TrainParts) -> int:
    """Load a checkpoint into ``parts`` (weights, optimizer, schedule, early-stopping state); the epoch to go on at."""
    state = restore_checkpoint(ckpt, parts.model, parts.optimizer, parts.scheduler)
    parts.plateau.best, parts.plateau.since_best = state["best"], state["since_best"]
    return state["epoch"] + 1


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs in every Ray Train worker. Only rank 0 writes checkpoints and reports the epoch's metrics (which
    :class:`EpochLogger` puts into MLflow). With ``report_info``, every (re)start first reports what it found —
    the epoch it resumes at, what auto settings became (``INFO_KEY``) — which the driver logs: no worker opens the
    MLflow store."""
    cfg = TrainConfig.model_validate(config["cfg"])
    classes = config["classes"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if not cfg.use_gpu:  # intra-op threads = reserved CPUs; more would oversubscribe the node
        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    device = ray.train.torch.get_device()
    parts = build_parts(cfg, len(classes), config["model_kwargs"], config["n_train"], world, device,
                        wrap=ray.train.torch.prepare_model)
    model, optimizer, plateau = parts.model, parts.optimizer, parts.plateau
    start_epoch = 0
    # workers never talk to MLflow: rank 0 may run on a node that cannot reach the driver's store (a sqlite file on
    # the driver's disk). What this (re)start learnt is its own first report, and EpochLogger — on the
    # driver's node — logs it (``report_info``; a sweep's trials report none: its driver alone writes its runs).
    info: dict[str, Any] = {}

    ckpt = ray.train.get_checkpoint()
    if ckpt:  # a restart after a failure: continue after the last reported epoch
        start_epoch = resume_parts(ckpt, parts)
        info["resumed_at_epoch"] = start_epoch
        if rank == 0:
            worker_print(f"resumed from the checkpoint of epoch {start_epoch - 1}")

    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    cache = None
    # every worker decides alike (one with little free memory says no for all): the shards of a streaming split
    # are read in lockstep, so one worker reading its shard every epoch while another cached its own would stall
    per_row = config.get("row_bytes")  # a caller that does not say: no cache unless the config asks for one
    share = -(-config["n_train"] // world) * per_row if per_row else None
    on = device_cache_on(cfg, device, share, config.get("splits_cached", False)) if share else bool(cfg.device_cache)
    votes = _allreduce(torch.tensor([float(on)]), device)
    if int(votes[0]) == world and start_epoch < cfg.epochs:
        cache = load_device_cache(train_shard, cfg, device, f"train rank {rank}")
    # what the run's null (auto) settings became, beside the settings themselves
    info["effective"] = {"device_cache": int(votes[0]) == world, "fused_optimizer": bool(optimizer.defaults.get("fused")),
                         "device": str(device)}
    if config.get("report_info"):  # every rank reports (a report is collective), rank 0's carries the facts: logged
        # now, not with the first epoch — a restart that fails again before one, or has no epoch left, is counted too
        ray.train.report({INFO_KEY: info if rank == 0 else {}})
    stop = start_epoch >= cfg.epochs or plateau.stop
    for epoch in range(start_epoch, cfg.epochs):
        if stop:
            break
        seed = epoch_seed(cfg.seed, epoch, rank)
        seed_everything(seed)
        t0 = time.time()
        batches = (cache.batches(cfg.batch_size, seed) if cache is not None else
                   _batches(train_shard, cfg.batch_size, True, cfg.prefetch_batches, device.type == "cuda", seed=seed))
        tr = train_epoch(model, batches, optimizer, parts.loss_fn, device, parts.scheduler, cfg.grad_clip,
                         cfg.bn_recalibrate_batches, parts.augment if parts.augment.active else None)
        train_s = time.time() - t0
        tr_s = Totals.summary(_allreduce(tr.as_tensor(), device))
        _broadcast_buffers(model)
        va = validate(model, val_shard, cfg.batch_size, device, classes, cfg.aggregate, rank, world)
        plateau.update(va[cfg.select_metric])
        metrics = epoch_metrics(cfg, parts, epoch, tr_s, va, t0, train_s)
        stop = plateau.stop
        if rank == 0:
            with tempfile.TemporaryDirectory() as d:
                torch.save(checkpoint_state(parts, epoch, metrics), Path(d) / CKPT_FILE)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
            worker_print(f"epoch {epoch}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k not in NOT_LOGGED))
        else:
            ray.train.report(metrics)
        if stop and rank == 0:
            worker_print(f"early stop: {cfg.select_metric} has not improved for {plateau.since_best} epochs")


class EpochLogger(ray.train.UserCallback):
    """Logs each epoch's metrics to MLflow from the Ray Train controller, right after the controller has
    registered that epoch's checkpoint (Ray calls report callbacks after its checkpoint manager).

    Logging from the worker instead would race with failures: an epoch a worker logged but whose checkpoint
    the controller never registered is trained again after a restart and would be logged twice. Here an epoch
    is logged iff it can never be re-run, so the history has no gap and no repeat across restarts.
    """

    def __init__(self, tracking_uri: str, run_id: str):
        self.tracking_uri, self.run_id = tracking_uri, run_id

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        from mlflow.entities import Metric

        m = dict(metrics[0])  # rank 0's report (every rank reports the same all-reduced numbers)
        info = m.pop(INFO_KEY, None)
        client = mlflow.tracking.MlflowClient(self.tracking_uri)
        if info:  # a (re)start's own report, before its first epoch
            self.log_info(client, info)
        if "epoch" in m:
            now, step = int(time.time() * 1000), int(m["epoch"])
            client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in m.items()
                                                   if k not in NOT_LOGGED])

    def log_info(self, client: "mlflow.tracking.MlflowClient", info: dict[str, Any]) -> None:
        """The worker's facts of one (re)start: ``resumed_at_epoch`` (a restart from a checkpoint: counted in the
        ``genre_ray.restarts`` tag) and ``effective`` (what auto settings became, :func:`log_effective`)."""
        if "resumed_at_epoch" in info:
            restarts = int(client.get_run(self.run_id).data.tags.get("genre_ray.restarts", "0")) + 1
            client.set_tag(self.run_id, "genre_ray.restarts", str(restarts))
            client.log_metric(self.run_id, "resumed_at_epoch", info["resumed_at_epoch"], step=restarts)
        log_effective(client, self.run_id, info.get("effective", {}))


NOT_LOGGED = ("epoch", "patience_stop", SELECTION)
"""Report keys that are not MLflow metrics: the step itself, a flag (the run's early-stop shows in the log and
its epochs), the checkpoint score."""

INFO_KEY = "genre_ray_info"
"""Key of the report each (re)start of the workers makes before its first epoch: what the driver's
:class:`EpochLogger` logs for it (``resumed_at_epoch``, ``effective``)."""

FINAL_KEY = {"val": "val_final", "test": "test"}
"""MLflow key prefix of the selected checkpoint's scores per split (``val_final_track_accuracy``,
``test_track_accuracy``, …): ``val_track_accuracy`` is already the per-epoch validation curve, and one key with a
final value at step 0 drew the curve back to its start in the MLflow UI."""

LOCK_FILE = ".genre-ray-train.lock"
RUN_FILE = "train_run.json"
"""OUT/train_run.json: the MLflow run, the Ray Train run name and the config of the last run into OUT."""


def log_effective(client: "mlflow.tracking.MlflowClient", run_id: str, values: dict[str, Any]) -> None:
    """``effective.<key>`` params: what a setting left to the job (null = auto) became in this run — the config's
    own params keep what the user asked for. A resumed run that decides otherwise keeps the first value (MLflow
    params cannot change): said, not fatal."""
    for key, value in values.items():
        try:
            client.log_param(run_id, f"effective.{key}", value)
        except Exception as exc:  # noqa: BLE001 - a resumed run that decided another value: the record stays
            log.info("effective.%s=%s not logged: %s", key, value, str(exc).splitlines()[0][:200])


def _identity(cfg: TrainConfig) -> dict[str, Any]:
    """What makes two train configs the same run: everything but where Ray runs and how many CPUs a worker holds
    (lowered to fit whatever Ray the run meets: a rerun with more CPUs resumed nothing and started over)."""
    return {k: v for k, v in cfg.model_dump(mode="json").items() if k not in ("ray", "cpus_per_worker")}


def resumable_run(path: Path, cfg: TrainConfig, client: "mlflow.tracking.MlflowClient",
                  fingerprint: str | None = None) -> dict[str, Any] | None:
    """The run to resume when the same config was trained into OUT before, on the same prepared data (``fingerprint``:
    the same tracks, labels, splits and images — a re-prepared folder with another class order once resumed old
    weights under the new class names), and its driver died before the end (its
    MLflow run not FINISHED: RUNNING after a SIGKILL, FAILED or KILLED after an error or Ctrl-C): ``{run_id,
    ray_run, status}``; Ray Train restores the last checkpoint of a run of the same name and storage. None: start a
    new run (nothing there, another config or data, the run finished, or its MLflow run is gone)."""
    if not path.is_file():
        return None
    from mlflow.exceptions import MlflowException

    try:
        saved = json.loads(path.read_text())
        run = client.get_run(saved["run_id"])
    except (OSError, ValueError, KeyError, TypeError) as exc:  # unreadable state file: a new run
        print(f"[train] {path} is unreadable ({type(exc).__name__}: {exc}): starting a new run", flush=True)
        return None
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise  # the store did not answer: stopping beats abandoning the run's checkpoints for a new one
        print(f"[train] the MLflow run {saved.get('run_id')} of {path} is gone from the store: starting a new run",
              flush=True)
        return None
    before = {k: v for k, v in (saved.get("config") or {}).items() if k not in ("ray", "cpus_per_worker")}  # older
    changed = ("config" if before != _identity(cfg) else
               "prepared data (dataset fingerprint)" if None not in (saved.get("data"), fingerprint)
               and saved["data"] != fingerprint else None)
    if changed:
        print(f"[train] {path.parent} holds an earlier run with another {changed}: starting a new run", flush=True)
        if run.info.status == "RUNNING":  # its driver is gone (the caller holds OUT's lock): say so in MLflow
            client.set_terminated(saved["run_id"], status="KILLED")
        return None
    if run.info.status == "FINISHED":
        print(f"[train] {path.parent} holds a finished run of this config (MLflow run {saved['run_id']}): training "
              "again, a new run whose bundle, results and plots replace that run's files here (its MLflow run and "
              "registered versions stay)", flush=True)
        return None
    return {"run_id": saved["run_id"], "ray_run": saved["ray_run"], "status": run.info.status}


def fit_cpus_per_worker(cfg: TrainConfig, total_cpus: float, joined_cluster: bool = False) -> TrainConfig:
    """``cfg`` with workers that leave Ray Data a CPU to stream their shards with (all reserved: the job would hang).
    ``cpus_per_worker`` left at its default is lowered to fit — ``(total − 1) / num_workers``, in quarters: 0.5 for
    two workers on a 2-core machine — and said; one the config sets is kept, or refused (ConfigError) if it does not
    fit. On a cluster this job joined (``joined_cluster``) what does not fit is only said: an autoscaler may add
    nodes (a cold cluster starts with none)."""
    if total_cpus - cfg.num_workers * cfg.cpus_per_worker >= 1:
        return cfg
    fitted = math.floor(4 * (total_cpus - 1) / cfg.num_workers) / 4
    if joined_cluster and ("cpus_per_worker" in cfg.model_fields_set or fitted <= 0):
        log.warning("%d workers × %g CPUs (+1 for Ray Data) do not fit the cluster's %g CPUs now: Ray Train waits "
                    "until they do (an autoscaler adding nodes)", cfg.num_workers, cfg.cpus_per_worker, total_cpus)
        return cfg
    if "cpus_per_worker" in cfg.model_fields_set or fitted <= 0:
        raise ConfigError(
            f"{cfg.num_workers} workers × {cfg.cpus_per_worker:g} CPUs = {cfg.num_workers * cfg.cpus_per_worker:g} of "
            f"the cluster's {total_cpus:g} CPUs; Ray Data needs at least one CPU left to feed them. "
            + (f"Lower num_workers or cpus_per_worker (e.g. --set cpus_per_worker={fitted:g}) or add CPUs."
               if fitted > 0 else f"Give the job at least 2 CPUs (it has {total_cpus:g})."))
    print(f"[train] cpus_per_worker {cfg.cpus_per_worker:g} → {fitted:g}: {cfg.num_workers} workers on {total_cpus:g} "
          "CPUs, one left for Ray Data (set cpus_per_worker to choose)", flush=True)
    lowered = cfg.model_copy(update={"cpus_per_worker": fitted})
    lowered.__pydantic_fields_set__.discard("cpus_per_worker")  # still the job's choice: a later check may lower it
    return lowered


def check_gpus(cfg: TrainConfig, gpus: float, joined_cluster: bool) -> None:
    """``use_gpu`` on a Ray with too few GPUs: refused on a Ray this job started (none will appear: Ray Train would
    wait for ever); on a cluster, said (an autoscaler may add GPU nodes)."""
    if not cfg.use_gpu or gpus >= cfg.num_workers:
        return
    msg = f"use_gpu=true asks for {cfg.num_workers} GPU worker(s); this Ray has {gpus:g} GPU(s)"
    if not joined_cluster:
        raise ConfigError(msg + " (drop --use-gpu to train on the CPUs, or lower num_workers)")
    log.warning("%s: Ray Train waits until the cluster has them (an autoscaler adding GPU nodes)", msg)


def _absolute(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its local paths absolute (data, out, pretrained, storage_path): every Ray Train worker validates
    the config again in its own working folder, where a relative path names nothing."""
    return absolute_paths(cfg, "data", "out", "storage_path", *(("pretrained",) if cfg.pretrained != "auto" else ()))


def _registered_version(client: "mlflow.tracking.MlflowClient", name: str | None, run_id: str) -> str | None:
    """The version of registered model ``name`` made from ``run_id`` (its latest), if any."""
    if not name:
        return None
    try:
        found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except Exception:  # noqa: BLE001 - no such model yet
        return None
    return str(max(int(v.version) for v in found)) if found else None


def _calibration_words(cal: dict[str, Any]) -> str:
    """``calibrated, T = 0.8`` — or, when calibration was not fitted, ``T = 1, not calibrated: <why>``."""
    note = str(cal.get("note") or "fitted")
    if note == "fitted":
        return f"calibrated, T = {cal['temperature']:.3g}"
    return f"T = {cal['temperature']:.3g}, not calibrated: {note}"


def _describe(client: "mlflow.tracking.MlflowClient", cfg: TrainConfig, version: str, report: dict[str, Any],
              classes: list[str]) -> None:
    """Descriptions a registry browser reads: the version's (model, run, scores, split), the model's when empty."""
    def acc(split: str) -> str:
        value = report.get(split, {}).get("track", {}).get("accuracy")
        return "n/a" if value is None else f"{value:.4f}"

    client.update_model_version(cfg.register_as, version, description=(
        f"genre-ray {cfg.model} ({cfg.finetune if cfg.model == 'resnet18' else 'from scratch'}), run "
        f"{report['run_id']}, best epoch {report['best_epoch']}: per-track accuracy val {acc('val')}, test "
        f"{acc('test')} ({_calibration_words(report['calibration'])}); dataset fingerprint "
        f"{report['dataset_fingerprint']}. Label a library: genre-ray label --model models:/{cfg.register_as}/{version}; "
        f"a few files with plain MLflow: mlflow.pyfunc.load_model(URI).predict(pd.DataFrame({{'path': [...]}}))"))
    if not (client.get_registered_model(cfg.register_as).description or "").strip():
        client.update_registered_model(cfg.register_as, description=(
            f"Music-genre classifier trained by genre-ray on log-mel spectrogram windows; {len(classes)} genres: "
            f"{', '.join(classes)}. Alias @{cfg.champion_alias}: the best version on one validation split."))


def _promote(client: "mlflow.tracking.MlflowClient", name: str, version: str, alias: str, score: float,
             fingerprint: str) -> str:
    """Tag the new version with its validation score and split, and move ``alias`` to it only when there is no
    holder yet or it beats the holder on the same validation split (same dataset fingerprint)."""
    from mlflow.exceptions import MlflowException

    client.set_model_version_tag(name, version, "val_track_accuracy", f"{score:.6f}")
    client.set_model_version_tag(name, version, "dataset_fingerprint", fingerprint)
    try:
        holder = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        holder = None
    if holder is None:
        client.set_registered_model_alias(name, alias, version)
        return f"{alias} → version {version} (first {alias})"
    held = float(holder.tags.get("val_track_accuracy", "nan"))
    if "dataset_fingerprint" not in holder.tags:
        return (f"{alias} stays on version {holder.version}: it carries no genre-ray validation tags (set by hand?), "
                f"so it cannot be compared; if version {version} should replace it: MlflowClient()"
                f".set_registered_model_alias({name!r}, {alias!r}, {version!r})")
    if holder.tags.get("dataset_fingerprint") != fingerprint:
        return (f"{alias} stays on version {holder.version}: it was validated on another split "
                f"({holder.tags.get('dataset_fingerprint')} ≠ {fingerprint}); compare them on one split first")
    if score > held:
        client.set_registered_model_alias(name, alias, version)
        return f"{alias} → version {version} ({score:.4f} > {held:.4f} of version {holder.version})"
    return f"{alias} stays on version {holder.version} ({held:.4f} >= {score:.4f})"


def run_train(cfg: TrainConfig) -> dict[str, Any]:
    check_job_outputs(cfg, "out", "storage_path")
    cfg = _absolute(cfg)
    announce("train", cfg)
    joined = bool(cfg.ray.address or os.environ.get("RAY_ADDRESS"))
    if not joined and not ray.is_initialized():  # a local Ray this job starts: its CPUs and GPUs are known now
        cfg = fit_cpus_per_worker(cfg, cfg.ray.num_cpus or os.cpu_count() or 1)
        check_gpus(cfg, torch.cuda.device_count(), joined_cluster=False)
    meta = preflight.prepared_data(cfg.data)  # bad data or a model that cannot fit it: ConfigError, before Ray
    classes, features = meta["classes"], FeatureConfig.from_dict(meta["features"])
    preflight.model_fits(cfg.model, _model_kwargs(cfg, features), classes, features)
    tracks = pd.read_parquet(Path(cfg.data) / "tracks.parquet")
    fingerprint = dataset_fingerprint(tracks, meta["feature_hash"])
    leak = enforce(find_leakage(tracks), cfg.allow_leakage, f"train {cfg.data}")  # before MLflow and Ray
    uri, _ = tracking.setup(cfg.experiment)  # fails before Ray starts if MLflow is unusable
    init_ray(cfg.ray)
    cfg = fit_cpus_per_worker(cfg, ray.cluster_resources().get("CPU", 0), joined)
    check_gpus(cfg, ray.cluster_resources().get("GPU", 0), joined)
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # one driver trains into OUT at a time: a second is refused; holding the lock, a RUNNING run named in
    # OUT/train_run.json is a dead driver's (resumed, or marked KILLED when another config starts anew)
    with atomic.exclusive(out / LOCK_FILE, f"out={out}", error=ConfigError):
        cfg.save(out / "config.yaml")
        atomic.write_json(out / "classes.json", classes)
        model_kwargs = _model_kwargs(cfg, features)
        client = mlflow.tracking.MlflowClient(uri)
        resume = resumable_run(out / RUN_FILE, cfg, client, fingerprint)
        starter = mlflow.start_run(run_id=resume["run_id"]) if resume else mlflow.start_run(run_name=f"train {cfg.model} {out.name}")
        with starter as run:
            ray_run = resume["ray_run"] if resume else f"train-{run.info.run_id[:12]}"
            atomic.write_json(out / RUN_FILE, {"run_id": run.info.run_id, "ray_run": ray_run, "config": _identity(cfg),
                                               "data": fingerprint})
            if resume:  # params are logged already (MLflow refuses to change one); Ray Train finds the checkpoints
                drives = int(run.data.tags.get("genre_ray.driver_resumes", "0")) + 1
                mlflow.set_tag("genre_ray.driver_resumes", str(drives))
                print(f"[train] resuming MLflow run {run.info.run_id} ({resume['status']} before it finished) from its "
                      f"last checkpoint in {cfg.storage_path or out / 'ray_results'}/{ray_run}", flush=True)
            else:
                tracking.log_params({**cfg.flat(), **{f"features.{k}": v for k, v in features.to_dict().items()},
                                     "feature_hash": meta["feature_hash"], "classes": ",".join(classes),
                                     "n_train_windows": meta["windows"]["train"], "n_val_windows": meta["windows"]["val"],
                                     "effective_batch_size": cfg.batch_size * cfg.num_workers,
                                     "pretrained_file": model_kwargs.get("pretrained")})
            mlflow.set_tags({"genre_ray.job": "train", "genre_ray.model": cfg.model, "git_commit": git_commit(),
                             "dataset_fingerprint": fingerprint, **leakage_tags(leak),
                             **{f"version.{k}": v for k, v in versions().items()}})
            mlflow.log_artifact(str(out / "config.yaml"))
            mlflow.log_artifact(str(out / "classes.json"))
            datasets = {"train": ray.data.read_parquet(str(split_dir(cfg.data, "train")), columns=["image", "label_idx"]),
                        "val": ray.data.read_parquet(str(split_dir(cfg.data, "val")),
                                                     columns=["image", "label_idx", "track_id"])}
            cached = cache_splits(cfg, ray.cluster_resources().get("object_store_memory", 0))
            if not cached and not cfg.deterministic_data:
                # streamed every epoch: the files in a new random order each epoch (prepare writes a track's windows
                # together, and the local shuffle buffer holds only a few tracks), not the same order every epoch
                datasets["train"] = datasets["train"].randomize_block_order()
            log_effective(client, run.info.run_id, {
                "cache_in_memory": cached, "storage_path": cfg.storage_path or str(out / "ray_results"),
                "cpus_per_worker": cfg.cpus_per_worker, "model_kwargs": json.dumps(model_kwargs, sort_keys=True)})
            if cached:
                t_cache = time.time()
                datasets = {k: ds.materialize() for k, ds in datasets.items()}
                print(f"[train] train/val splits read into the object store once ({time.time() - t_cache:.1f} s)",
                      flush=True)
            trainer = ray.train.torch.TorchTrainer(
                train_loop_per_worker,
                train_loop_config={"cfg": cfg.model_dump(mode="json"), "classes": classes, "model_kwargs": model_kwargs,
                                   "n_train": meta["windows"]["train"], "report_info": True,
                                   "row_bytes": row_bytes(features), "splits_cached": cached},
                scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                                      resources_per_worker={"CPU": cfg.cpus_per_worker}),
                run_config=ray.train.RunConfig(
                    name=ray_run, storage_path=cfg.storage_path or str(out / "ray_results"),
                    checkpoint_config=ray.train.CheckpointConfig(
                        num_to_keep=cfg.checkpoints_to_keep, checkpoint_score_attribute=SELECTION,
                        checkpoint_score_order="max"),
                    failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
                    callbacks=[EpochLogger(uri, run.info.run_id)],
                ),
                datasets=datasets,
                dataset_config=_data_config(cfg),
            )
            t0 = time.time()
            result = trainer.fit()
            fit_s = time.time() - t0
            best_ckpt, best_metrics = max(result.best_checkpoints, key=lambda cm: cm[1][SELECTION])
            with best_ckpt.as_directory() as d:
                state = torch.load(Path(d) / CKPT_FILE, map_location="cpu", weights_only=True)
            arch_kwargs = {k: v for k, v in model_kwargs.items() if k != "pretrained"}  # weights come from the checkpoint
            model = create_model(cfg.model, num_classes=len(classes), **arch_kwargs)
            model.load_state_dict(state["model"])

            history = {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)] for k in CURVES}
            epochs_run = len(history["val_accuracy"])
            sps = [m.value for m in client.get_metric_history(run.info.run_id, "samples_per_second")]
            report: dict[str, Any] = {"run_id": run.info.run_id, "best_epoch": int(best_metrics["epoch"]),
                                      "epochs_run": epochs_run, "fit_seconds": round(fit_s, 1),
                                      "samples_per_second": round(float(np.median(sps)), 1) if sps else None,
                                      "dataset_fingerprint": fingerprint}
            mlflow.log_metrics({"fit_seconds": fit_s, "best_epoch": report["best_epoch"], "epochs_run": epochs_run})
            extra = [n for n, on in (("label smoothing", cfg.label_smoothing > 0),
                                     ("mixup", cfg.augment.mixup_alpha > 0)) if on]  # val_loss has neither
            curves = plot_curves(history, out / "training_curves.png", f"{cfg.model} training curves" + (
                f" (train_loss includes {' and '.join(extra)}: not comparable with val_loss)" if extra else ""))
            mlflow.log_artifact(str(curves), artifact_path="plots")
            # each split's window logits once: calibration is fitted on val's, then val and test are scored with
            # the fitted temperature — the numbers are those of the labels label/predict/evaluate give
            logits = {s: split_logits(model, cfg.data, s) for s in ("val", "test") if meta["windows"].get(s, 0) > 0}
            report["calibration"] = calibrate_and_log(logits["val"], cfg.aggregate, out, test=logits.get("test"))
            for split, (lg, y, ids) in logits.items():
                res = score_logits(lg, y, ids, classes, cfg.aggregate, report["calibration"]["temperature"])
                report[split] = res
                key = FINAL_KEY[split]  # val_track_accuracy is the per-epoch curve: the final score has its own key
                for level in ("window", "track"):
                    m = res[level]
                    mlflow.log_metrics({f"{key}_{level}_accuracy": m["accuracy"], f"{key}_{level}_macro_f1": m["macro_f1"],
                                        f"{key}_{level}_ece": m["ece"]})
                mlflow.log_metrics(per_class_metrics(f"{key}_track", res["track"]["per_class"]))
                png = plot_confusion(res["track"]["confusion"], classes, out / f"confusion_{split}_track.png",
                                     f"{split} per-track confusion ({cfg.model})")
                mlflow.log_artifact(str(png), artifact_path="plots")
            bundle_dir = save_bundle(out / "bundle", model, cfg.model, arch_kwargs, classes, features,
                                     meta={"run_id": run.info.run_id, "best_epoch": report["best_epoch"],
                                           "dataset_fingerprint": fingerprint, "aggregate": cfg.aggregate,
                                           "metrics": {k: report[k]["track"]["accuracy"] for k in ("val", "test") if k in report}},
                                     calibration=report["calibration"])
            atomic.write_json(out / "results.json", report)
            mlflow.log_artifact(str(out / "results.json"))
            # the logged model labels audio files through plain mlflow.pyfunc (genre_ray.mlflow_model); the bundle
            # inside is what label/predict/evaluate load by runs:/ or models:/ URI
            # a driver killed after registering and rerun: the run's version is kept, not registered twice
            earlier = _registered_version(client, cfg.register_as, run.info.run_id) if resume else None
            from genre_ray.mlflow_model import log_model as log_labeller  # driver only: workers never import it

            info = log_labeller(bundle_dir, classes, registered_model_name=None if earlier else cfg.register_as)
            report["model_uri"] = info.model_uri
            report["bundle"] = str(bundle_dir)
            if cfg.register_as and (earlier or info.registered_model_version is not None):
                version = earlier or str(info.registered_model_version)
                report["registered"] = f"models:/{cfg.register_as}/{version}"
                _describe(client, cfg, version, report, classes)
                report["alias"] = _promote(client, cfg.register_as, version, cfg.champion_alias,
                                           report.get("val", {}).get("track", {}).get("accuracy", float("nan")), fingerprint)
                print(f"registered {report['registered']}; {report['alias']}", flush=True)
            atomic.write_json(out / "results.json", report)
    test_acc = report.get("test", {}).get("track", {}).get("accuracy")
    print(f"trained {cfg.model}: best epoch {report['best_epoch']} of {epochs_run}, held-out test per-track accuracy "
          f"{test_acc if test_acc is None else round(test_acc, 4)}, {report['samples_per_second']} training samples/s "
          f"(all workers, median epoch); bundle {bundle_dir}; MLflow run {run.info.run_id}", flush=True)
    return report
