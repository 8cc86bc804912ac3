"""Ray Train ``train``: DDP over prepared windows, rank-0 MLflow logging and checkpoints, then a per-track
evaluation of the best checkpoint on the held-out splits, and the model bundle logged to MLflow.

Effective batch size = ``batch_size × num_workers``; the learning rate is not rescaled automatically.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn

from genre_ray import tracking
from genre_ray.bundle import save_bundle
from genre_ray.config import TrainConfig
from genre_ray.evaluate import aggregate, classification_metrics, plot_confusion
from genre_ray.features import FeatureConfig
from genre_ray.models import create_model
from genre_ray.pipelines.common import announce, init_ray
from genre_ray.pipelines.prepare import load_meta, split_dir
from genre_ray.training import (Totals, cosine_schedule, eval_epoch, make_optimizer, predict_probs,
                                seed_everything, train_epoch, unwrap)

CKPT_FILE = "state.pt"


def _model_kwargs(cfg: TrainConfig, features: FeatureConfig) -> dict[str, Any]:
    kw = dict(cfg.model_kwargs)
    if cfg.model == "homebrew":
        kw.setdefault("input_size", [features.height, features.width])
    if cfg.pretrained:
        kw["pretrained"] = cfg.pretrained
    return kw


def _batches(shard, batch_size: int, shuffle: bool):
    for b in shard.iter_torch_batches(batch_size=batch_size, local_shuffle_buffer_size=4 * batch_size if shuffle else None):
        yield b["image"], b["label_idx"]


def _allreduce(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs in every Ray Train worker. Only rank 0 talks to MLflow and writes checkpoints."""
    cfg = TrainConfig.model_validate(config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if not cfg.use_gpu:  # intra-op threads = reserved CPUs; more would oversubscribe the node
        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    seed_everything(cfg.seed)  # same init everywhere; DDP also broadcasts rank 0's weights
    model = create_model(cfg.model, num_classes=len(config["classes"]), **config["model_kwargs"])
    model = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    steps_per_epoch = max(1, -(-config["n_train"] // (cfg.batch_size * world)))
    scheduler = cosine_schedule(optimizer, cfg.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    start_epoch, best, since_best = 0, -1.0, 0

    ckpt = ray.train.get_checkpoint()
    if ckpt:  # resume after a failure
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / CKPT_FILE, map_location="cpu", weights_only=True)
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, since_best = state["epoch"] + 1, state["best"], state["since_best"]

    if rank == 0:
        mlflow.set_tracking_uri(config["tracking_uri"])
        mlflow.start_run(run_id=config["run_id"])
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    for epoch in range(start_epoch, cfg.epochs):
        seed_everything(cfg.seed * 1000 + epoch * 10 + rank)
        t0 = time.time()
        tr = train_epoch(model, _batches(train_shard, cfg.batch_size, True), optimizer, loss_fn, device,
                         scheduler, cfg.grad_clip, cfg.bn_recalibrate_batches)
        va = eval_epoch(model, _batches(val_shard, cfg.batch_size, False), loss_fn, device)
        tr_s, va_s = (Totals.summary(_allreduce(t.as_tensor())) for t in (tr, va))
        improved = va_s["accuracy"] > best
        best, since_best = (va_s["accuracy"], 0) if improved else (best, since_best + 1)
        metrics = {"epoch": epoch, "train_loss": tr_s["loss"], "train_accuracy": tr_s["accuracy"],
                   "val_loss": va_s["loss"], "val_accuracy": va_s["accuracy"], "best_val_accuracy": best,
                   "lr": scheduler.get_last_lr()[0], "epoch_seconds": time.time() - t0,
                   "samples_per_second": tr_s["n"] / max(time.time() - t0, 1e-9)}
        stop = cfg.early_stop_patience is not None and since_best >= cfg.early_stop_patience
        if rank == 0:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if k != "epoch"}, step=epoch)
            with tempfile.TemporaryDirectory() as d:
                torch.save({"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "epoch": epoch, "best": best,
                            "since_best": since_best}, Path(d) / CKPT_FILE)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
            print(f"epoch {epoch}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k != "epoch"),
                  flush=True)
        else:
            ray.train.report(metrics)
        if stop:
            break
    if rank == 0:
        mlflow.end_run()


def evaluate_split(model: nn.Module, prepared: str | Path, split: str, classes: list[str], how: str,
                   batch_size: int = 128) -> dict[str, Any]:
    """Per-window and per-track metrics of ``model`` on a prepared split (driver side, CPU or GPU)."""
    ds = ray.data.read_parquet(str(split_dir(prepared, split)), columns=["track_id", "label_idx", "image"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    probs, labels, ids = [], [], []
    for b in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
        probs.append(predict_probs(model, b["image"], device, batch_size))
        labels.append(b["label_idx"])
        ids.append(b["track_id"])
    if not probs:
        return {}
    p, y, t = np.concatenate(probs), np.concatenate(labels), np.concatenate(ids)
    track_ids, track_probs = aggregate(p, t, how)
    first_label = {tid: lab for tid, lab in zip(t, y)}
    track_labels = np.array([first_label[tid] for tid in track_ids])
    return {"window": classification_metrics(p, y, classes),
            "track": classification_metrics(track_probs, track_labels, classes)}


def _check_cpus_left_for_data(cfg: TrainConfig) -> None:
    """Ray Data streams the shards with CPU tasks: if the workers reserve every CPU the job would hang."""
    total = ray.cluster_resources().get("CPU", 0)
    reserved = cfg.num_workers * cfg.cpus_per_worker
    if total - reserved < 1:
        raise ValueError(
            f"{cfg.num_workers} workers × {cfg.cpus_per_worker} CPUs = {reserved:g} of the cluster's {total:g} CPUs; "
            "Ray Data needs at least one CPU left to feed them. Lower num_workers or cpus_per_worker "
            "(e.g. --set cpus_per_worker=0.5) or add CPUs.")


def run_train(cfg: TrainConfig) -> dict[str, Any]:
    announce("train", cfg)
    meta = load_meta(cfg.data)
    classes, features = meta["classes"], FeatureConfig.from_dict(meta["features"])
    if meta["windows"].get("train", 0) == 0 or meta["windows"].get("val", 0) == 0:
        raise ValueError(f"{cfg.data}: need train and val windows, found {meta['windows']}")
    uri, _ = tracking.setup(cfg.experiment)  # fails before Ray starts if MLflow is unusable
    init_ray(cfg.ray)
    _check_cpus_left_for_data(cfg)
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    model_kwargs = _model_kwargs(cfg, features)

    with mlflow.start_run(run_name=f"train-{cfg.model}") as run:
        tracking.log_params({**cfg.flat(), **{f"features.{k}": v for k, v in features.to_dict().items()},
                             "feature_hash": meta["feature_hash"], "classes": ",".join(classes),
                             "n_train_windows": meta["windows"]["train"], "n_val_windows": meta["windows"]["val"]})
        mlflow.set_tags({"genre_ray.job": "train", "genre_ray.model": cfg.model})
        mlflow.log_artifact(str(out / "config.yaml"))
        datasets = {s: ray.data.read_parquet(str(split_dir(cfg.data, s)), columns=["image", "label_idx"])
                    for s in ("train", "val")}
        trainer = ray.train.torch.TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"cfg": cfg.model_dump(mode="json"), "classes": classes, "model_kwargs": model_kwargs,
                               "n_train": meta["windows"]["train"], "tracking_uri": uri, "run_id": run.info.run_id},
            scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                                  resources_per_worker={"CPU": cfg.cpus_per_worker}),
            run_config=ray.train.RunConfig(
                name=f"train-{run.info.run_id[:12]}", storage_path=str(out / "ray_results"),
                checkpoint_config=ray.train.CheckpointConfig(
                    num_to_keep=2, checkpoint_score_attribute="val_accuracy", checkpoint_score_order="max"),
            ),
            datasets=datasets,
        )
        t0 = time.time()
        result = trainer.fit()
        fit_s = time.time() - t0
        best_ckpt, best_metrics = max(result.best_checkpoints, key=lambda cm: cm[1]["val_accuracy"])
        with best_ckpt.as_directory() as d:
            state = torch.load(Path(d) / CKPT_FILE, map_location="cpu", weights_only=True)
        arch_kwargs = {k: v for k, v in model_kwargs.items() if k != "pretrained"}  # weights come from the checkpoint
        model = create_model(cfg.model, num_classes=len(classes), **arch_kwargs)
        model.load_state_dict(state["model"])

        report: dict[str, Any] = {"run_id": run.info.run_id, "best_epoch": int(best_metrics["epoch"]),
                                  "fit_seconds": round(fit_s, 1)}
        for split in ("val", "test"):
            if meta["windows"].get(split, 0) == 0:
                continue
            res = evaluate_split(model, cfg.data, split, classes, cfg.aggregate)
            report[split] = res
            for level in ("window", "track"):
                m = res[level]
                mlflow.log_metrics({f"{split}_{level}_accuracy": m["accuracy"], f"{split}_{level}_macro_f1": m["macro_f1"],
                                    f"{split}_{level}_ece": m["ece"]})
            png = plot_confusion(res["track"]["confusion"], classes, out / f"confusion_{split}_track.png",
                                 f"{split} per-track confusion ({cfg.model})")
            mlflow.log_artifact(str(png), artifact_path="plots")

        bundle_dir = save_bundle(out / "bundle", model, cfg.model, arch_kwargs,
                                 classes, features, meta={"run_id": run.info.run_id, "best_epoch": report["best_epoch"],
                                                          "metrics": {k: report[k]["track"]["accuracy"] for k in ("val", "test") if k in report}})
        (out / "results.json").write_text(json.dumps(report, indent=2))
        mlflow.log_artifact(str(out / "results.json"))
        info = mlflow.pytorch.log_model(
            model, name="model", extra_files=[str(bundle_dir / "bundle.json"), str(bundle_dir / "weights.pt")],
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "genre-ray"],
            serialization_format="pickle",  # the bundle inside (weights_only) is what label/predict load
            registered_model_name=cfg.register_as,
        )
        report["model_uri"] = info.model_uri
        report["bundle"] = str(bundle_dir)
    test_acc = report.get("test", {}).get("track", {}).get("accuracy")
    print(f"trained {cfg.model}: best epoch {report['best_epoch']}, held-out test per-track accuracy "
          f"{test_acc if test_acc is None else round(test_acc, 4)}; bundle {bundle_dir}; MLflow run {run.info.run_id}",
          flush=True)
    return report
