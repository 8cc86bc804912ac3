"""Configs: YAML + overrides, and bad configs fail before any work with the key named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from genre_ray.cli import main
from genre_ray.config import (ConfigError, EvaluateConfig, LabelConfig, PrepareConfig, TrainConfig, TuneConfig,
                              load_config)


def test_yaml_flags_and_overrides(tmp_path):
    f = tmp_path / "train.yaml"
    f.write_text("data: d\nout: o\nepochs: 3\nmodel_kwargs: {channels: [8, 8, 8, 8]}\n")
    cfg = load_config(TrainConfig, f, ["lr=0.01", "ray.num_cpus=2"], epochs=None, num_workers=1)
    assert (cfg.epochs, cfg.lr, cfg.num_workers, cfg.ray.num_cpus) == (3, 0.01, 1, 2)
    assert cfg.model_kwargs == {"channels": [8, 8, 8, 8]}
    assert cfg.flat()["model_kwargs.channels"] == [8, 8, 8, 8]
    p = load_config(PrepareConfig, overrides=["source=s", "out=o", "features.window_s=2.0"])
    assert p.features.window_s == 2.0 and p.features.n_mels == 128
    cfg.save(tmp_path / "saved.yaml")
    assert load_config(TrainConfig, tmp_path / "saved.yaml") == cfg


@pytest.mark.parametrize("cls,overrides,needle", [
    (TrainConfig, ["data=d", "out=o", "epoch=3"], "epoch"),
    (TrainConfig, ["data=d", "out=o", "model=vgg"], "unknown model"),
    (TrainConfig, ["data=d", "out=o", "epochs=0"], "epochs"),
    (TrainConfig, ["out=o"], "data"),
    (TrainConfig, ["data=d", "out=o", "pretrained=/no/such.pth"], "not found"),
    (TrainConfig, ["data=d", "out=o", "epochs=true"], "a number, not true"),  # pydantic's lax mode: 1 epoch
    (TrainConfig, ["data=d", "out=o", "lr=false"], "a number, not false"),
    (TrainConfig, ["data=d", "out=o", "model=resnet18", "finetune=fixed"], "needs ImageNet weights"),
    (TrainConfig, ["data=d", "out=o", "model=resnet18", "finetune=discriminative"], "needs ImageNet weights"),
    (TuneConfig, ["data=d", "out=o", "search_space={lr: {choice: [0.1]}}", "train={epoch: 2}"], "did you mean 'epochs'"),
    (PrepareConfig, ["source=s", "out=o", "split_fractions=[0.5, 0.1, 0.1]"], "sum to 1"),
    (PrepareConfig, ["source=s", "out=o", "features.hop_s=-1"], "hop_s"),
    (LabelConfig, ["input=i", "model=m", "out=o", "aggregate=median"], "aggregate"),
])
def test_bad_config_names_the_key(cls, overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(cls, overrides=overrides)


def test_cli_bad_config_exits_2_before_work(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "lr=-1"]) == 2
    assert "lr" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigError, match="not found"):
        load_config(TrainConfig, tmp_path / "missing.yaml")


SHIPPED = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
REQUIRED = {"prepare": (PrepareConfig, {"source": "s", "out": "o"}), "train": (TrainConfig, {"data": "d", "out": "o"}),
            "label": (LabelConfig, {"input": "i", "model": "m", "out": "o"}),
            "tune": (TuneConfig, {"data": "d", "out": "o"}),
            "evaluate": (EvaluateConfig, {"model": "m", "data": "d"})}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    """Each configs/<job>-*.yaml is a valid config of its job (paths given on the command line may be absent)."""
    cls, required = REQUIRED[path.name.split("-")[0]]
    data = yaml.safe_load(path.read_text())
    cfg = load_config(cls, path, [f"{k}={v}" for k, v in required.items() if k not in data])
    assert cfg.model_dump(exclude_unset=False)


def test_train_config_cross_field_errors():
    with pytest.raises(ConfigError, match="needs a pretrained backbone"):
        load_config(TrainConfig, overrides=["data=d", "out=o", "finetune=fixed"])
    with pytest.raises(ConfigError, match="finetune must be one of"):
        load_config(TrainConfig, overrides=["data=d", "out=o", "model=resnet18", "finetune=half"])
    with pytest.raises(ConfigError, match="unknown lr schedule"):
        load_config(TrainConfig, overrides=["data=d", "out=o", "schedule=warmup-cosine-restart"])
    with pytest.raises(ConfigError, match="augment.freq_masks"):
        load_config(TrainConfig, overrides=["data=d", "out=o", "augment.freq_masks=-1"])
    with pytest.raises(ConfigError, match="select_metric"):
        load_config(TrainConfig, overrides=["data=d", "out=o", "select_metric=val_f1"])
    cfg = load_config(TrainConfig, overrides=["data=d", "out=o", "augment.time_masks=2"])
    assert cfg.augment.time_masks == 2 and cfg.augment.freq_masks == 0


def test_train_workers_leave_ray_data_a_cpu_and_gpu_asks_are_checked(tmp_path, caplog):
    """The README's `genre-ray train … --num-workers 2` on a 2-core machine: the default 1 CPU per worker would
    reserve every CPU (Ray Data could not feed the workers): lowered and said. A value the config sets is kept or
    refused, never changed; use_gpu on a local Ray without GPUs is refused (Ray Train would wait for ever)."""
    from genre_ray.config import ConfigError, TrainConfig
    from genre_ray.pipelines.train import check_gpus, fit_cpus_per_worker

    cfg = TrainConfig(data="d", out="o", num_workers=2)
    assert fit_cpus_per_worker(cfg, 2).cpus_per_worker == 0.5
    three = TrainConfig(data="d", out="o", num_workers=3)  # before Ray: 3 CPUs; then Ray sees 2: lowered again
    assert fit_cpus_per_worker(three, 3).cpus_per_worker == 0.5
    assert fit_cpus_per_worker(fit_cpus_per_worker(three, 3), 2).cpus_per_worker == 0.25
    assert fit_cpus_per_worker(cfg, 16) is cfg
    assert fit_cpus_per_worker(TrainConfig(data="d", out="o", num_workers=3), 2).cpus_per_worker == 0.25
    with pytest.raises(ConfigError, match=r"2 workers × 1 CPUs = 2 of the cluster's 2 CPUs"):
        fit_cpus_per_worker(TrainConfig(data="d", out="o", num_workers=2, cpus_per_worker=1.0), 2)
    with pytest.raises(ConfigError, match="at least one CPU left"):
        fit_cpus_per_worker(cfg, 1)
    gpu = TrainConfig(data="d", out="o", num_workers=2, use_gpu=True)
    with pytest.raises(ConfigError, match=r"asks for 2 GPU worker\(s\); this Ray has 1 GPU"):
        check_gpus(gpu, 1, joined_cluster=False)
    with caplog.at_level("WARNING", logger="genre_ray"):
        check_gpus(gpu, 0, joined_cluster=True)  # a cluster's autoscaler may add GPU nodes: said, not refused
    assert "waits until the cluster has them" in caplog.text
    check_gpus(gpu, 2, joined_cluster=False)
    check_gpus(cfg, 0, joined_cluster=False)


def test_train_paths_are_made_absolute_for_the_workers(tmp_path, monkeypatch):
    """A relative `--pretrained` passed the driver's check, then failed in every Ray Train worker (their working
    folder is not the user's)."""
    import torch

    from genre_ray.config import TrainConfig
    from genre_ray.pipelines.train import _absolute

    monkeypatch.chdir(tmp_path)
    torch.save({}, tmp_path / "w.pth")
    cfg = TrainConfig(data="prepared", out="runs/x", model="resnet18", pretrained="w.pth", storage_path="store")
    fixed = _absolute(cfg)
    assert fixed.pretrained == str(tmp_path / "w.pth") and fixed.data == str(tmp_path / "prepared")
    assert fixed.out == str(tmp_path / "runs" / "x") and fixed.storage_path == str(tmp_path / "store")
    assert "cpus_per_worker" not in fixed.model_fields_set  # what the user chose is still known after the copy
    monkeypatch.chdir("/")
    TrainConfig.model_validate(fixed.model_dump(mode="json"))  # as a worker validates it, elsewhere


def test_absolute_paths_folds_relative_paths_and_keeps_uris(tmp_path, monkeypatch):
    from genre_ray.config import EvaluateConfig, TrainConfig, absolute_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bundle").mkdir()
    cfg = TrainConfig(data="a/../data", out="~/runs", storage_path="s3://bucket/ckpt")
    fixed = absolute_paths(cfg, "data", "out", "storage_path", "pretrained")
    assert fixed.data == str(tmp_path / "data")  # `..` folded, as label keys are
    assert fixed.out == os.path.expanduser("~/runs")
    assert fixed.storage_path == "s3://bucket/ckpt" and fixed.pretrained is None
    assert {"data", "out"} <= fixed.model_fields_set  # what the user chose survives the copy
    ev = EvaluateConfig(model="bundle", data="d")
    assert absolute_paths(ev, if_exists=("model",)).model == str(tmp_path / "bundle")
    assert absolute_paths(ev.model_copy(update={"model": "models:/genre@champion"}), if_exists=("model",)).model \
        == "models:/genre@champion"
    assert absolute_paths(ev.model_copy(update={"model": "gone"}), if_exists=("model",)).model == "gone"


def test_a_cold_cluster_is_waited_for_not_refused(caplog):
    """A joined autoscaling cluster may have no worker node yet (cluster/aws.yaml: min 0, a 0-CPU head): the shipped
    GTZAN configs were refused there with exit 2. A Ray this job started is still refused (nothing will come)."""
    from genre_ray.pipelines.train import fit_cpus_per_worker

    cfg = TrainConfig(data="d", out="o", num_workers=4, cpus_per_worker=4.0)
    assert fit_cpus_per_worker(cfg, 0, joined_cluster=True) is cfg
    assert "waits until they do" in caplog.text
    with pytest.raises(ConfigError):
        fit_cpus_per_worker(cfg, 0)


def test_fixed_features_without_imagenet_weights_is_refused(tmp_path, monkeypatch):
    """`finetune: fixed` with `pretrained: auto` and no cached file froze a random backbone and trained a head on it."""
    import torch

    from genre_ray.features import FeatureConfig
    from genre_ray.pipelines.train import _model_kwargs

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty torchvision cache
    cfg = TrainConfig(data="d", out="o", model="resnet18", pretrained="auto", finetune="fixed")
    with pytest.raises(ConfigError, match="finetune=fixed needs ImageNet weights"):
        _model_kwargs(cfg, FeatureConfig())
    with pytest.raises(ConfigError, match="finetune=discriminative needs ImageNet weights"):
        _model_kwargs(cfg.model_copy(update={"finetune": "discriminative"}), FeatureConfig())
    full = cfg.model_copy(update={"finetune": "full"})
    assert "pretrained" not in _model_kwargs(full, FeatureConfig())  # from scratch, said, allowed


def test_tune_paths_are_absolute_in_best_config(tmp_path, monkeypatch):
    """A sweep's best_config.yaml kept `data: prepared`: trained from another folder it named nothing, or other data."""
    from genre_ray.pipelines.tune import _absolute_tune

    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.pth").write_bytes(b"")
    cfg = load_config(TuneConfig, overrides=["data=prepared", "out=sweeps/s1", "search_space={lr: {choice: [0.1]}}",
                                             "train={model: resnet18, pretrained: w.pth}"])
    got = _absolute_tune(cfg)
    assert got.data == str(tmp_path / "prepared") and got.out == str(tmp_path / "sweeps" / "s1")
    assert got.train["pretrained"] == str(tmp_path / "w.pth") and got.base().pretrained == str(tmp_path / "w.pth")


def test_auto_is_null_for_settings_the_job_decides():
    """The README says `device_cache` and `cache_in_memory` default to auto: `--set device_cache=auto` was refused."""
    from genre_ray.config import LabelConfig, RayConfig, TrainConfig

    cfg = TrainConfig(data="d", out="o", device_cache="auto", cache_in_memory="Auto", fused_optimizer="auto")
    assert cfg.device_cache is None and cfg.cache_in_memory is None and cfg.fused_optimizer is None
    lab = LabelConfig(input="i", model="m", out="o", batch_size="auto", call_windows="auto", num_actors="auto",
                      actor_cpus="auto", use_gpu="auto")
    assert (lab.batch_size, lab.call_windows, lab.num_actors, lab.actor_cpus, lab.use_gpu) == (None,) * 5
    assert RayConfig(dashboard="auto").dashboard is None
    assert TrainConfig(data="d", out="o", device_cache=True).device_cache is True
    with pytest.raises(ValueError, match="device_cache"):
        TrainConfig(data="d", out="o", device_cache="sometimes")
    with pytest.raises(ValueError, match="grad_clip"):  # null there is "no clipping", not a decision: no auto
        TrainConfig(data="d", out="o", grad_clip="auto")


def test_label_config_names_match_the_registries_that_run_them():
    """The config validates names before Ray starts, without importing the Ray pipelines: its lists and the
    registries (and the CLI's choices) must not drift apart."""
    from genre_ray.cli import build_parser
    from genre_ray.config import FEATURIZE_MODES, LABEL_EXPORTS, TOO_SHORT_POLICIES
    from genre_ray.inference import TOO_SHORT
    from genre_ray.pipelines.label import EXPORTERS
    from genre_ray.pipelines.label_device import FEATURIZE_STAGES

    assert sorted(LABEL_EXPORTS) == sorted(EXPORTERS)
    assert sorted(TOO_SHORT_POLICIES) == sorted(TOO_SHORT)
    assert sorted(FEATURIZE_MODES) == sorted(FEATURIZE_STAGES)
    label = build_parser()._subparsers._group_actions[0].choices["label"]
    export = next(a for a in label._actions if a.dest == "export")
    assert list(export.choices) == list(LABEL_EXPORTS)
