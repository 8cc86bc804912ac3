"""Ray Tune ``tune``: sweeps of :class:`~genre_ray.config.TrainConfig` over a declared search space, ASHA on the
validation metric, every trial a nested MLflow run, resumable, and the best config retrained and registered.

Trials run the training job's own code:

- ``train.num_workers == 1`` (the default): a Tune *function trainable* (:func:`single_worker_trial`) that runs
  :func:`~genre_ray.training.train_epoch` (with :class:`~genre_ray.augment.BatchAugment`,
  :func:`~genre_ray.training.make_optimizer`, :func:`~genre_ray.training.lr_schedule`) and the training job's
  :func:`~genre_ray.pipelines.train.validate` (per-track accuracy included) over the prepared Ray datasets,
  reporting one Tune result per epoch and (``checkpoint_trials``) a checkpoint, so an interrupted trial resumes;
- ``train.num_workers > 1``: a Tune function (:func:`multi_worker_trial`) that runs a ``TorchTrainer`` of
  :func:`~genre_ray.pipelines.train.train_loop_per_worker` — Ray Train V2's pattern (``Tuner(TorchTrainer)`` is
  deprecated): Train's reports reach Tune through ``ray.tune.integration.ray_train.TuneReportCallback``.

MLflow (one writer per run: this driver): a parent run per sweep (config, summary table, hyperparameter plot,
best config), a nested child run per trial written by :class:`TrialRuns` — a Tune callback in the driver —
from the results Tune receives (params = the trial's resolved TrainConfig, per-epoch metrics, FINISHED/FAILED).

Resume: the sweep state lives in ``STORAGE/NAME`` (default ``OUT/ray_results/sweep``) and ``OUT/sweep.json``
(the parent run); rerunning the same command after the driver died calls ``Tuner.restore``: finished trials are
kept (not re-run), interrupted ones continue from their last checkpoint, the same parent and child runs go on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import mlflow
import pandas as pd
import yaml
import ray
import ray.train
import ray.train.torch
import ray.tune
import torch
from mlflow.entities import Metric

from genre_ray import accel, tracking
from genre_ray import atomic, preflight
from genre_ray.config import (DISTRIBUTIONS, SELECT_METRICS, ConfigError, TrainConfig, TuneConfig, absolute_paths,
                              local_path)
from genre_ray.features import FeatureConfig
from genre_ray.pipelines.common import announce, check_job_outputs, init_ray
from genre_ray.pipelines.prepare import split_dir
from genre_ray.pipelines.train import (CKPT_FILE, _batches, _model_kwargs, build_parts, checkpoint_state,
                                      device_cache_on, epoch_metrics, load_device_cache, resume_parts, row_bytes,
                                      train_loop_per_worker, validate)
from genre_ray.leakage import enforce, find_leakage, leakage_tags
from genre_ray.provenance import dataset_fingerprint, git_commit, versions
from genre_ray.registry import Registry
from genre_ray.training import Totals, epoch_seed, seed_everything, train_epoch

log = logging.getLogger("genre_ray")

#: keys of OUT/config.yaml that define a sweep: a rerun with other values cannot resume it
SWEEP_IDENTITY = ("data", "train", "search_space", "searcher", "num_samples", "seed", "scheduler", "grace_period",
                  "reduction_factor", "name", "storage_path")
STOP_REASONS = ("completed", "asha", "patience", "error")


# ---------------------------------------------------------------- search space, searchers, schedulers

def param_space(cfg: TuneConfig) -> dict[str, Any]:
    """``cfg.search_space`` → a flat Tune param space ``{dotted key: tune domain}`` (grid searcher: choice → grid)."""
    space = {}
    for key, spec in cfg.search_space.items():
        (name, args), = spec.items()
        dist = DISTRIBUTIONS.lookup(name)
        fn = "grid_search" if cfg.searcher == "grid" and dist.discrete else dist.tune_fn
        space[key] = getattr(ray.tune, fn)(*args) if dist.spread else getattr(ray.tune, fn)(args)
    return space


def _basic_variants(cfg: TuneConfig):
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=cfg.seed, max_concurrent=cfg.max_concurrent_trials or 0)


SEARCHERS: Registry = Registry("searcher")  # name → cfg → Tune search algorithm (names: config.TUNE_SEARCHERS)
SEARCHERS.register("random")(_basic_variants)  # random draws of each distribution (× the grid of `grid` keys)
SEARCHERS.register("grid")(_basic_variants)  # every `choice`/`grid` key is a grid axis; num_samples repeats the grid


def _asha(cfg: TuneConfig, epochs: int):
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=min(cfg.grace_period, epochs),
                         reduction_factor=cfg.reduction_factor)  # metric and mode: from the Tuner's TuneConfig


def _fifo(cfg: TuneConfig, epochs: int):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


SCHEDULERS: Registry = Registry("scheduler")  # names: config.TUNE_SCHEDULERS
SCHEDULERS.register("asha")(_asha)
SCHEDULERS.register("fifo")(_fifo)


def trial_dirname(trial) -> str:
    """Trial folders named by trial id alone (the default name embeds every parameter value)."""
    return f"trial_{trial.trial_id}"


# ---------------------------------------------------------------- trials

def single_worker_trial(config: dict[str, Any], *, train_ds, val_ds, sweep: dict[str, Any]) -> None:
    """One trial in one process: the training job's own parts (:func:`~genre_ray.pipelines.train.build_parts`),
    epoch, validation and report code on the prepared datasets — one Tune report per epoch (with a checkpoint when
    ``checkpoint_trials``), resuming from Tune's checkpoint if any."""
    tcfg = TuneConfig.model_validate(sweep["tune"])
    cfg = tcfg.trial_config(config)
    classes, features = sweep["classes"], FeatureConfig.from_dict(sweep["features"])
    if not cfg.use_gpu:  # intra-op threads = the trial's CPUs
        torch.set_num_threads(max(1, int(tcfg.trial_cpus)))
    device = accel.pick_device(cfg.use_gpu)
    parts = build_parts(cfg, len(classes), _model_kwargs(cfg, features), sweep["n_train"], 1, device)
    start_epoch, plateau = 0, parts.plateau
    ckpt = ray.tune.get_checkpoint()
    if ckpt:  # the sweep was resumed, or Tune retried this trial
        start_epoch = resume_parts(ckpt, parts)
        print(f"trial resumed after epoch {start_epoch - 1}", flush=True)
    cache = None  # device_cache's rule, CPU auto off: trials run side by side and each would hold its own copy
    if start_epoch < cfg.epochs and not plateau.stop and device_cache_on(cfg, device, sweep["n_train"] * row_bytes(features)):
        cache = load_device_cache(train_ds, cfg, device, "tune trial")
    for epoch in range(start_epoch, cfg.epochs):
        if plateau.stop:  # resumed after the epoch that ended its patience
            break
        seed = epoch_seed(cfg.seed, epoch)
        seed_everything(seed)
        t0 = time.time()
        batches = (cache.batches(cfg.batch_size, seed) if cache is not None else
                   _batches(train_ds, cfg.batch_size, True, cfg.prefetch_batches, device.type == "cuda", seed=seed))
        tr = train_epoch(parts.model, batches, parts.optimizer, parts.loss_fn, device, parts.scheduler, cfg.grad_clip,
                         cfg.bn_recalibrate_batches, parts.augment if parts.augment.active else None)
        train_s = time.time() - t0
        va = validate(parts.model, val_ds, cfg.batch_size, device, classes, cfg.aggregate)
        plateau.update(va[cfg.select_metric])
        metrics = epoch_metrics(cfg, parts, epoch, Totals.summary(tr.as_tensor()), va, t0, train_s)
        if tcfg.checkpoint_trials:
            with tempfile.TemporaryDirectory() as d:
                torch.save(checkpoint_state(parts, epoch, metrics), Path(d) / CKPT_FILE)
                ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(d))
        else:
            ray.tune.report(metrics)
        if plateau.stop:
            break


def multi_worker_trial(config: dict[str, Any], *, train_ds, val_ds, sweep: dict[str, Any]) -> None:
    """One trial as a Ray Train run: a ``TorchTrainer`` of the training job's ``train_loop_per_worker`` whose
    per-epoch reports reach Tune through ``TuneReportCallback`` (Ray Train V2's Tune integration).

    The inner run has its own name per attempt and ``max_failures=0``: a worker failure fails the attempt and
    Tune's ``max_trial_failures`` decides on a retry, which starts the trial afresh (Train checkpoints are not
    carried across attempts: each attempt is a new Train run, and its trial's MLflow run is the sweep driver's).
    """
    from ray.tune.integration.ray_train import TuneReportCallback

    tcfg = TuneConfig.model_validate(sweep["tune"])
    cfg = tcfg.trial_config(config)
    features = FeatureConfig.from_dict(sweep["features"])
    trial_id = ray.tune.get_context().get_trial_id()
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": tcfg.trial_gpus} if cfg.use_gpu else {})}
    trainer = ray.train.torch.TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "classes": sweep["classes"],
                           "model_kwargs": _model_kwargs(cfg, features), "n_train": sweep["n_train"],
                           # device_cache's rules: on a GPU when the share fits; not on CPU, where trials run side
                           # by side and each would hold its own copy of the split
                           "row_bytes": row_bytes(features), "splits_cached": False},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                              resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=f"trial_{trial_id}-{uuid.uuid4().hex[:8]}", storage_path=sweep["train_storage"],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=0),
            callbacks=[TuneReportCallback()]),
        datasets={"train": train_ds, "val": val_ds},
    )
    trainer.fit()


TRIALS: Registry = Registry("trial kind")
TRIALS.register("single-worker")(single_worker_trial)
TRIALS.register("multi-worker")(multi_worker_trial)


# ---------------------------------------------------------------- MLflow: one child run per trial

class TrialRuns(ray.tune.Callback):
    """Writes one nested MLflow child run per trial from the driver (the only writer of those runs): params =
    the trial's resolved TrainConfig, one metric point per epoch Tune receives, FINISHED on completion (ASHA or
    patience stops included), FAILED with the error on failure.

    Pickled into the Tune state and so present again after ``Tuner.restore``: it finds a restored trial's run by
    its ``genre_ray.trial_id`` tag and never logs an epoch twice (an epoch already logged keeps its first value).
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, tune_cfg: dict[str, Any]):
        self.tracking_uri, self.experiment_id, self.parent_run_id = tracking_uri, experiment_id, parent_run_id
        self.tune_cfg = tune_cfg
        self._runs: dict[str, str] = {}
        self._steps: dict[str, set[int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_runs": {}, "_steps": {}}  # looked up again after a restore

    def _client(self):
        return mlflow.tracking.MlflowClient(self.tracking_uri)

    def run_id(self, trial) -> str:
        tid = trial.trial_id
        if tid in self._runs:
            return self._runs[tid]
        client = self._client()
        found = client.search_runs([self.experiment_id], f"tags.genre_ray.trial_id = '{tid}' and "
                                   f"tags.mlflow.parentRunId = '{self.parent_run_id}'")
        if found:
            rid = found[0].info.run_id
            if found[0].info.status != "RUNNING":
                client.update_run(rid, status="RUNNING")
            history = client.get_metric_history(rid, "val_loss")
            self._steps[tid] = {m.step for m in history}
        else:
            tcfg = TuneConfig.model_validate(self.tune_cfg)
            values = {k: trial.config.get(k) for k in tcfg.search_space}
            run = client.create_run(self.experiment_id, run_name=f"trial-{tid}", tags={
                "mlflow.parentRunId": self.parent_run_id, "genre_ray.trial_id": tid, "genre_ray.job": "tune-trial"})
            rid = run.info.run_id
            try:
                params = {k: v for k, v in tcfg.trial_config(values).flat().items() if k not in ("data", "out")}
            except ValueError as exc:  # an invalid combination: the trial will fail; log what was drawn
                params = {}
                client.set_tag(rid, "genre_ray.config_error", str(exc)[:5000])
            params.update({f"space.{k}": v for k, v in values.items()})
            tracking.log_params(params, client, rid)  # redacted, as every job's params
            self._steps[tid] = set()
        self._runs[tid] = rid
        return rid

    def on_trial_start(self, iteration, trials, trial, **info):
        self.run_id(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        rid = self.run_id(trial)
        step = int(result.get("epoch", result.get("training_iteration", 1) - 1))
        if step in self._steps[trial.trial_id]:
            return  # logged before the sweep was interrupted; this epoch was re-run from an older checkpoint
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in result.items() if k in _REPORTED and v is not None]
        self._client().log_batch(rid, metrics=metrics)
        self._steps[trial.trial_id].add(step)

    def on_trial_complete(self, iteration, trials, trial, **info):
        client, rid = self._client(), self.run_id(trial)
        reason = stop_reason(trial.last_result or {}, TuneConfig.model_validate(self.tune_cfg).base().epochs)
        client.set_tag(rid, "genre_ray.stop_reason", reason)
        client.set_terminated(rid, "FINISHED")

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A trial whose worker died is restarted from its last checkpoint: counted on its run, never hidden."""
        client, rid = self._client(), self.run_id(trial)
        restarts = int(client.get_run(rid).data.tags.get("genre_ray.restarts", "0")) + 1
        client.set_tag(rid, "genre_ray.restarts", str(restarts))
        client.set_tag(rid, "genre_ray.last_failure", _error_text(trial)[-2000:])

    def on_trial_error(self, iteration, trials, trial, **info):
        client, rid = self._client(), self.run_id(trial)
        client.set_tag(rid, "genre_ray.stop_reason", "error")
        client.set_tag(rid, "genre_ray.error", _error_text(trial)[-5000:])
        client.set_terminated(rid, "FAILED")


#: result keys mirrored into a trial's MLflow run (Tune adds its own bookkeeping keys to every result)
_REPORTED = {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_track_accuracy", "lr", "epoch_seconds",
             "samples_per_second", *(f"best_{m}" for m in SELECT_METRICS)}


def stop_reason(last: dict[str, Any], planned_epochs: int) -> str:
    """Why a trial that did not fail stopped, from its last result: it ran every planned epoch (``completed``), its
    early stopping ended it (``patience``), or the scheduler did (``asha``; FIFO never stops a trial early)."""
    epochs = int(last.get("training_iteration", 0) or 0)
    return "completed" if epochs >= planned_epochs else "patience" if last.get("patience_stop") else "asha"


def _error_text(trial) -> str:
    """The trial's error trace: the driver's local error file (written before the callbacks run), else storage."""
    local = trial.error_file
    if local and Path(local).is_file():
        return Path(local).read_text()
    try:
        err = trial.get_error()
    except Exception:  # storage unreachable
        err = None
    return str(err or "failed (no error file)")


# ---------------------------------------------------------------- summary

def summarize(results, cfg: TuneConfig, runs: dict[str, str]) -> pd.DataFrame:
    """One row per trial, best first: id, status, why it stopped, epochs run, best and last metric, the values of
    every search-space key, the child run id. Failed trials come last."""
    base = cfg.base()
    metric, mode = base.select_metric, SELECT_METRICS[base.select_metric]
    rows = []
    for r in results:
        tid = Path(r.path).name.removeprefix("trial_")
        m = r.metrics or {}
        epochs = int(m.get("training_iteration", 0) or 0)
        status = "ERROR" if r.error else "TERMINATED"
        reason = "error" if r.error else stop_reason(m, base.epochs)
        row = {"trial_id": tid, "status": status, "stop_reason": reason, "epochs": epochs,
               f"best_{metric}": m.get(f"best_{metric}", float("nan")), f"last_{metric}": m.get(metric, float("nan")),
               **{k: r.config.get(k) for k in cfg.search_space}, "run_id": runs.get(tid, ""),
               "error": "" if not r.error else str(r.error).strip().splitlines()[-1][:300]}
        rows.append(row)
    df = pd.DataFrame(rows)
    key = f"best_{metric}"
    df["_ok"] = df["status"] == "TERMINATED"
    df = df.sort_values(["_ok", key], ascending=[False, mode == "min"], na_position="last").drop(columns="_ok")
    df.insert(0, "rank", range(1, len(df) + 1))
    return df.reset_index(drop=True)


def _markdown(df: pd.DataFrame) -> str:
    cols = [c for c in df.columns if c not in ("run_id", "error")]

    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) and not math.isnan(v) else "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(row[c]) for c in cols) + " |" for _, row in df.iterrows()]
    errors = df[df["status"] == "ERROR"]
    if len(errors):
        lines += ["", "Failed trials:"] + [f"- {r.trial_id}: {r.error}" for r in errors.itertuples()]
    return "\n".join(lines) + "\n"


def plot_hyperparameters(df: pd.DataFrame, cfg: TuneConfig, path: Path) -> Path:
    """One panel per search-space key: its value (x; categorical values as labels, log scale for loguniform)
    against each trial's best validation metric (y); trials stopped early in orange, completed in blue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = f"best_{cfg.base().select_metric}"
    keys = list(cfg.search_space)
    ok = df[df["status"] == "TERMINATED"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        (dist, _), = cfg.search_space[key].items()
        values = list(ok[key])
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            xs = [float(v) for v in values]
        else:
            labels = sorted({json.dumps(v) for v in df[key]})
            xs = [labels.index(json.dumps(v)) for v in values]
            ax.set_xticks(range(len(labels)), [lab[:18] for lab in labels], rotation=20, fontsize=7)
        colors = ["tab:blue" if r == "completed" else "tab:orange" for r in ok["stop_reason"]]
        ax.scatter(xs, ok[metric], c=colors, s=36, edgecolors="k", linewidths=0.5)
        if dist == "loguniform":
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    failed = int((df["status"] == "ERROR").sum())
    fig.suptitle(f"{len(ok)} trials (orange: stopped early){f'; {failed} failed, not shown' if failed else ''}",
                 fontsize=9)
    fig.tight_layout()
    return atomic.savefig(fig, path, dpi=110)


# ---------------------------------------------------------------- driver

def _identity(cfg: TuneConfig) -> dict[str, Any]:
    dump = cfg.model_dump(mode="json")
    return {k: dump[k] for k in SWEEP_IDENTITY}


def _check_resources(cfg: TuneConfig, base: TrainConfig, joined_cluster: bool = False) -> None:
    """A trial the Ray this job started cannot hold is refused (it would wait for ever); on a cluster this job
    joined it is said — an autoscaler may add the nodes (a cold cluster starts with none)."""
    total = ray.cluster_resources()
    need_cpu = cfg.trial_cpus + (base.num_workers * base.cpus_per_worker if base.num_workers > 1 else 0)
    problems = []
    if need_cpu > total.get("CPU", 0):
        problems.append(f"one trial needs {need_cpu:g} CPUs; the cluster has {total.get('CPU', 0):g}. Lower "
                        "trial_cpus or train.cpus_per_worker.")
    if base.use_gpu and total.get("GPU", 0) <= 0:
        problems.append("train.use_gpu is set but the cluster has no GPU.")
    if problems and not joined_cluster:
        raise ConfigError(" ".join(problems))
    for problem in problems:
        log.warning("%s Trials wait until the cluster has them (an autoscaler adding nodes).", problem)
    # no CPU needs to stay free for Ray Data (unlike `genre-ray train`): the datasets are materialised before the
    # trials start, and iterating (or splitting) materialised blocks runs no read tasks


def _open_parent(cfg: TuneConfig, out: Path, client, exp_id: str, resuming: bool) -> tuple[str, bool]:
    """The sweep's parent run: the one in OUT/sweep.json when resuming, else a new one. → (run id, reused)."""
    state_file = out / "sweep.json"
    if resuming and state_file.is_file():
        rid = json.loads(state_file.read_text())["parent_run_id"]
        client.update_run(rid, status="RUNNING")
        return rid, True
    run = client.create_run(exp_id, run_name=f"tune {cfg.name} {Path(cfg.out).name}", tags={"genre_ray.job": "tune", "git_commit": git_commit(),
                                                                      **{f"version.{k}": v for k, v in versions().items()}})
    return run.info.run_id, False


@contextmanager
def runs_closed_on_exit(client: "mlflow.tracking.MlflowClient", exp_id: str, parent: str) -> Iterator[None]:
    """On the way out through an exception — ``ray job stop``'s SIGTERM reaches the driver as ``SystemExit``, Ctrl-C
    as ``KeyboardInterrupt`` — mark the sweep's run and every trial run still RUNNING as KILLED (FAILED for any other
    error): runs written through the client have no ``with`` block to end them. A rerun resumes them."""
    try:
        yield
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED"
        try:
            open_trials = client.search_runs([exp_id], f"tags.mlflow.parentRunId = '{parent}' and "
                                                       "attributes.status = 'RUNNING'")
            for run_id in [r.info.run_id for r in open_trials] + [parent]:
                if client.get_run(run_id).info.status == "RUNNING":
                    client.set_terminated(run_id, status)
        except Exception as close_exc:  # the store itself may be what failed: the original error matters more
            log.warning("tune: could not mark the sweep's MLflow runs %s: %s", status, close_exc)
        raise


def _absolute_tune(cfg: TuneConfig) -> TuneConfig:
    """``cfg`` with data/out/storage_path and the trials' ``train.pretrained`` file absolute: ``best_config.yaml``
    kept a relative ``data`` that named another folder (or nothing) when trained from elsewhere."""
    cfg = absolute_paths(cfg, "data", "out", "storage_path")
    pretrained = cfg.train.get("pretrained")
    if pretrained and pretrained != "auto":
        cfg = cfg.model_copy(update={"train": {**cfg.train, "pretrained": local_path(str(pretrained))}})
    return cfg


def run_tune(cfg: TuneConfig) -> dict[str, Any]:
    """Run (or resume) the sweep, summarise it in MLflow, save ``best_config.yaml`` and retrain the best config."""
    check_job_outputs(cfg, "out", "storage_path")
    cfg = _absolute_tune(cfg)  # as printed, saved, logged and written into best_config.yaml
    announce("tune", cfg)
    base = cfg.base()
    meta = preflight.prepared_data(cfg.data)  # bad data or a base model that cannot fit it: ConfigError, before Ray
    classes, features = meta["classes"], FeatureConfig.from_dict(meta["features"])
    preflight.model_fits(base.model, _model_kwargs(base, features), classes, features)
    out = Path(cfg.out).resolve()
    saved = out / "config.yaml"
    state_file = out / "sweep.json"
    finished = state_file.is_file() and json.loads(state_file.read_text()).get("status") == "finished"
    if saved.is_file() and (cfg.resume or finished):  # another config into a used --out: refused, finished or not
        old = yaml.safe_load(saved.read_text())
        try:  # a sweep saved before its paths were made absolute: compared as absolute too
            old = _identity(_absolute_tune(TuneConfig.model_validate(old)))
        except Exception:  # noqa: BLE001 - an unreadable old config: compared as written
            pass
        diff = sorted(k for k, v in _identity(cfg).items() if old.get(k) != v)
        if diff:
            raise ConfigError(f"{out} holds a {'finished ' if finished else ''}sweep with other settings "
                              f"({', '.join(diff)}); " + ("choose another --out for a new sweep" if finished else
                                                          f"resume it with its own config ({saved}) or choose "
                                                          "another --out"))
    if finished:
        result = json.loads((out / "tune_results.json").read_text())
        print(f"tune: the sweep in {out} has finished already (best trial {result['best']['trial_id']}, "
              f"{result['metric']} {result['best']['value']:.4f}); choose another --out for a new sweep", flush=True)
        return result
    storage = cfg.storage_path or str(out / "ray_results")
    exp_path = f"{storage.rstrip('/')}/{cfg.name}"
    resuming = ray.tune.Tuner.can_restore(exp_path)  # reads the storage only; Ray need not run
    if resuming and not cfg.resume:
        raise ConfigError(f"{exp_path} holds a sweep already and resume is off: choose another --out (or name)")
    leak = enforce(find_leakage(pd.read_parquet(Path(cfg.data) / "tracks.parquet")), base.allow_leakage,
                   f"tune {cfg.data}")  # before MLflow and Ray, as in train
    uri, exp_id = tracking.setup(cfg.experiment)
    # read when the Tune loop starts; the config's value wins over an earlier sweep's or the shell's
    if os.environ.get("TUNE_GLOBAL_CHECKPOINT_S", f"{cfg.snapshot_s:g}") != f"{cfg.snapshot_s:g}":
        log.warning("TUNE_GLOBAL_CHECKPOINT_S=%s in the environment is replaced by snapshot_s=%g",
                    os.environ["TUNE_GLOBAL_CHECKPOINT_S"], cfg.snapshot_s)
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = f"{cfg.snapshot_s:g}"
    # each trial checkpoint (num_to_keep=1) forces a state snapshot — what resume relies on; don't warn about it
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    init_ray(cfg.ray)
    _check_resources(cfg, base, joined_cluster=bool(cfg.ray.address or os.environ.get("RAY_ADDRESS")))
    out.mkdir(parents=True, exist_ok=True)
    client = mlflow.tracking.MlflowClient(uri)
    parent, reused = _open_parent(cfg, out, client, exp_id, resuming)
    cfg.save(saved)
    tracks = pd.read_parquet(Path(cfg.data) / "tracks.parquet")
    fingerprint = dataset_fingerprint(tracks, meta["feature_hash"])
    if not reused:
        flat = {**{k: v for k, v in cfg.flat().items() if not k.startswith("search_space.")},
                **{f"search_space.{k}": json.dumps(v) for k, v in cfg.search_space.items()},
                "feature_hash": meta["feature_hash"], "classes": ",".join(classes)}
        tracking.log_params(flat, client, parent)
        client.set_tag(parent, "dataset_fingerprint", fingerprint)
        for key, value in leakage_tags(leak).items():
            client.set_tag(parent, key, value)
        with tempfile.TemporaryDirectory() as d:  # the saved config, secrets hidden (tracking.redact)
            shown = Path(d) / saved.name
            shown.write_text(yaml.safe_dump(tracking.redact_tree(cfg.model_dump(mode="json")), sort_keys=False))
            client.log_artifact(parent, str(shown))
    atomic.write_text(state_file, json.dumps({"parent_run_id": parent, "experiment_path": exp_path, "status": "running"}))

    with runs_closed_on_exit(client, exp_id, parent):  # a stopped job (SIGTERM) or a failure leaves no RUNNING run
        t0 = time.time()
        datasets = {split: ray.data.read_parquet(str(split_dir(cfg.data, split)), columns=columns).materialize()
                    for split, columns in (("train", ["image", "label_idx"]), ("val", ["image", "label_idx", "track_id"]))}
        kind = "single-worker" if base.num_workers == 1 else "multi-worker"
        sweep = {"tune": cfg.model_dump(mode="json"), "classes": classes, "features": features.to_dict(),
                 "n_train": meta["windows"]["train"], "train_storage": f"{storage.rstrip('/')}/train"}
        trainable = ray.tune.with_parameters(TRIALS.lookup(kind), train_ds=datasets["train"], val_ds=datasets["val"],
                                             sweep=sweep)
        gpus = cfg.trial_gpus if kind == "single-worker" else 0
        trainable = ray.tune.with_resources(trainable, {"cpu": cfg.trial_cpus, "gpu": gpus})
        metric, mode = base.select_metric, SELECT_METRICS[base.select_metric]
        if resuming:
            print(f"tune: resuming the sweep in {exp_path} (finished trials are kept)", flush=True)
            tuner = ray.tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True, resume_errored=False)
        else:
            tuner = ray.tune.Tuner(
                trainable, param_space=param_space(cfg),
                tune_config=ray.tune.TuneConfig(
                    metric=metric, mode=mode, num_samples=cfg.num_samples,
                    search_alg=SEARCHERS.lookup(cfg.searcher)(cfg),
                    scheduler=SCHEDULERS.lookup(cfg.scheduler)(cfg, base.epochs),
                    trial_dirname_creator=trial_dirname, reuse_actors=True),
                run_config=ray.tune.RunConfig(
                    name=cfg.name, storage_path=storage, verbose=1,
                    checkpoint_config=ray.tune.CheckpointConfig(num_to_keep=1),
                    failure_config=ray.tune.FailureConfig(max_failures=cfg.max_trial_failures),
                    callbacks=[TrialRuns(uri, exp_id, parent, cfg.model_dump(mode="json"))]))
        results = tuner.fit()
        sweep_s = time.time() - t0

        runs = {r.data.tags["genre_ray.trial_id"]: r.info.run_id for r in client.search_runs(
            [exp_id], f"tags.mlflow.parentRunId = '{parent}' and tags.genre_ray.job = 'tune-trial'")}
        df = summarize(results, cfg, runs)
        with atomic.atomic_path(out / "summary.csv") as tmp:
            df.to_csv(tmp, index=False)
        atomic.write_text(out / "summary.md", _markdown(df))
        plot_hyperparameters(df, cfg, out / "hyperparameters.png")
        for name in ("summary.csv", "summary.md", "hyperparameters.png"):
            client.log_artifact(parent, str(out / name))
        counts = df["stop_reason"].value_counts().to_dict()
        client.log_batch(parent, metrics=[Metric(k, float(v), int(time.time() * 1000), 0) for k, v in {
            "n_trials": len(df), "n_failed": counts.get("error", 0), "n_stopped_early": counts.get("asha", 0),
            "n_patience_stopped": counts.get("patience", 0), "sweep_seconds": sweep_s}.items()])
        print(f"tune: {len(df)} trials in {sweep_s:.0f} s — " + ", ".join(f"{v} {k}" for k, v in counts.items()) +
              f"\n{_markdown(df)}", flush=True)
        ok = df[df["status"] == "TERMINATED"].dropna(subset=[f"best_{metric}"])
        if ok.empty:
            client.set_terminated(parent, "FAILED")
            raise RuntimeError(f"every trial of the sweep failed; see {out / 'summary.md'} and the trial errors in "
                               f"{exp_path}")
        best_row = ok.iloc[0]
        best_values = {k: best_row[k] for k in cfg.search_space}
        best_values = {k: (v.item() if hasattr(v, "item") else v) for k, v in best_values.items()}
        best_cfg = cfg.trial_config(best_values).model_copy(update={
            "epochs": cfg.retrain_epochs or base.epochs, "num_workers": cfg.retrain_num_workers or base.num_workers,
            "out": str(out / "best")})
        best_cfg = TrainConfig.model_validate(best_cfg.model_dump())
        best_cfg.save(out / "best_config.yaml")
        client.log_artifact(parent, str(out / "best_config.yaml"))
        client.log_metric(parent, f"best_{metric}", float(best_row[f"best_{metric}"]))
        client.set_tag(parent, "genre_ray.best_trial_id", best_row["trial_id"])
        if isinstance(best_row["run_id"], str) and best_row["run_id"]:  # findable among the trial runs in the UI too
            client.set_tag(best_row["run_id"], "genre_ray.best_trial", "true")
        print(f"tune: best trial {best_row['trial_id']} ({metric} {best_row[f'best_{metric}']:.4f}): "
              + ", ".join(f"{k}={v}" for k, v in best_values.items()) + f"\nbest config: {out / 'best_config.yaml'}\n"
              + best_cfg.to_yaml(), flush=True)
        report: dict[str, Any] = {
            "parent_run_id": parent, "experiment_path": exp_path, "metric": metric, "mode": mode,
            "sweep_seconds": round(sweep_s, 1), "resumed": bool(resuming),
            "trials": json.loads(df.to_json(orient="records")),
            "best": {"trial_id": best_row["trial_id"], "value": float(best_row[f"best_{metric}"]), "values": best_values,
                     "run_id": best_row["run_id"], "config": str(out / "best_config.yaml")}}
        if cfg.retrain:
            from genre_ray.pipelines.train import run_train

            print(f"tune: retraining the best config for {best_cfg.epochs} epochs", flush=True)
            retrain = run_train(best_cfg)
            client.set_tag(retrain["run_id"], "mlflow.parentRunId", parent)
            client.set_tag(retrain["run_id"], "genre_ray.job", "tune-retrain")
            client.set_tag(parent, "genre_ray.retrain_run_id", retrain["run_id"])
            test_acc = retrain.get("test", {}).get("track", {}).get("accuracy")
            if test_acc is not None:
                client.log_metric(parent, "retrain_test_track_accuracy", float(test_acc))
            report["retrain"] = {k: retrain.get(k) for k in ("run_id", "model_uri", "registered", "alias", "bundle",
                                                              "best_epoch", "epochs_run")}
            report["retrain"]["test_track_accuracy"] = test_acc
        atomic.write_json(out / "tune_results.json", report, default=str)
        client.log_artifact(parent, str(out / "tune_results.json"))
        client.set_terminated(parent, "FINISHED")
        atomic.write_text(state_file, json.dumps({"parent_run_id": parent, "experiment_path": exp_path, "status": "finished"}))
        return report
