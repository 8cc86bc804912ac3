"""Pins for genre_ray/config.py: every bad setting fails at load time, naming the key — before any work."""

from __future__ import annotations

import pytest

from genre_ray.config import (ConfigError, EvaluateConfig, LabelConfig, PrepareConfig, TrainConfig, TuneConfig,
                              load_config, local_path)

T = ["data=d", "out=o"]
L = ["input=i", "model=m", "out=o"]
S = ["data=d", "out=o"]


@pytest.mark.parametrize("cls,overrides,needle", [
    (PrepareConfig, ["source=s", "out=o", "split_fractions=[1.2, -0.1, -0.1]"], "split_fractions"),
    (PrepareConfig, ["source=s", "out=o", "split_fractions=[0.0, 0.5, 0.5]"], "train > 0"),
    (TrainConfig, T + ["label_smoothing=1.0"], "label_smoothing"),
    (TrainConfig, T + ["backbone_lr_factor=0"], "backbone_lr_factor"),
    (TrainConfig, T + ["num_workers=0"], "num_workers"),
    (TuneConfig, S + ["search_space={lr: {uniform: [0.1, 0.1]}}"], "low must be < high"),
    (TuneConfig, S + ["search_space={lr: {loguniform: [0, 0.1]}}"], "must be > 0"),
    (TuneConfig, S + ["searcher=grid", "search_space={lr: {uniform: [0.001, 0.1]}}"], "discrete"),
    (TuneConfig, S + ["trial_gpus=1", "search_space={lr: {choice: [0.1]}}"], "needs train.use_gpu"),
    (TuneConfig, S + ["train={use_gpu: true}", "search_space={lr: {choice: [0.1]}}"], "trial_gpus > 0"),
    (TuneConfig, S + ["search_space={epochs: {choice: [1, 2]}}"], "fixed for a sweep"),
    (TuneConfig, S + ["search_space={num_workers: {choice: [1, 2]}}"], "fixed for a sweep"),
    (LabelConfig, L + ["dry_run=true"], "dry_run"),
    (LabelConfig, L + ["tag_uncertain=true"], "tag_uncertain"),
    (LabelConfig, L + ["uncertain_threshold=1.5"], "uncertain_threshold"),
    (LabelConfig, L + ["use_gpu=true", "actor_gpus=2"], "actor_gpus"),
    (LabelConfig, L + ["top_k=0"], "top_k"),
    (LabelConfig, L + ["too_short=drop"], "too_short"),
    (LabelConfig, L + ["ray.worker_niceness=20"], "worker_niceness"),
    (EvaluateConfig, ["model=m", "data=d", "split=validation"], "split"),
    (TrainConfig, T + ["epochs5"], "not key=value"),
    (TrainConfig, T + ["lr=0.1", "lr.x=2"], "not a section"),
])
def test_bad_setting_is_refused_at_load(cls, overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(cls, overrides=overrides)


def test_pretrained_weights_are_for_resnet18_only(tmp_path):
    weights = tmp_path / "r18.pth"
    weights.write_bytes(b"x")
    with pytest.raises(ConfigError, match="resnet18 only"):
        load_config(TrainConfig, overrides=T + [f"pretrained={weights}"])
    assert load_config(TrainConfig, overrides=T + ["model=resnet18", f"pretrained={weights}"]).pretrained == str(weights)


def test_good_values_next_to_the_bounds_load():
    assert load_config(PrepareConfig, overrides=["source=s", "out=o", "split_fractions=[1.0, 0.0, 0.0]"])
    assert load_config(LabelConfig, overrides=L + ["export=[csv, jsonl, csv]"]).export == ["csv", "jsonl"]
    assert load_config(LabelConfig, overrides=L + ["batch_size=AUTO", "use_gpu=Auto"]).batch_size is None
    assert load_config(LabelConfig, overrides=L + ["ray.worker_niceness=19", "uncertain_threshold=1"])
    assert local_path("models:/genre/3") == "models:/genre/3" and local_path("s3://b/x") == "s3://b/x"
