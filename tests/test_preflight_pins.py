"""Pins for genre_ray/preflight.py: each check refuses its case with a ConfigError before any work."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from genre_ray import preflight
from genre_ray.config import ConfigError
from genre_ray.features import FeatureConfig


def _prepared(folder, windows=None, features=None, tracks=True):
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"features": features or FeatureConfig().to_dict(), "windows": windows or {"train": 10, "val": 2, "test": 2}}
    (folder / "meta.json").write_text(json.dumps(meta))
    if tracks:
        pd.DataFrame({"track_id": ["a"], "split": ["train"]}).to_parquet(folder / "tracks.parquet")
    return str(folder)


def _legacy():
    return {k: v for k, v in FeatureConfig().to_dict().items() if k != "version"}  # version 1 images


def test_a_good_prepared_folder_passes(tmp_path):
    assert preflight.prepared_data(_prepared(tmp_path / "p"))["windows"]["val"] == 2


@pytest.mark.parametrize("kw,needle", [
    ({"windows": {"train": 10, "val": 0}}, "need train and val windows"),
    ({"windows": {"train": 0, "val": 3}}, "need train and val windows"),
    ({"tracks": False}, "tracks.parquet is missing"),
    ({"features": _legacy()}, "re-run `genre-ray prepare`"),
])
def test_a_prepared_folder_that_cannot_train_is_refused(tmp_path, kw, needle):
    with pytest.raises(ConfigError, match=needle):
        preflight.prepared_data(_prepared(tmp_path / "p", **kw))


def test_a_glob_input_is_not_checked_as_a_path():
    preflight.existing_path("/music/**/*.flac", "label input")
    preflight.existing_path("/music/[ab]*.mp3", "label input")
    preflight.existing_path("s3://bucket/lib", "label input")
    with pytest.raises(ConfigError, match="not found"):
        preflight.existing_path("/no/such/folder", "label input")


def test_a_model_whose_output_is_not_one_logit_per_class_is_refused(monkeypatch):
    import genre_ray.models as models

    class Wrong(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 7)

    monkeypatch.setattr(models, "create_model", lambda name, num_classes, **kw: Wrong())
    with pytest.raises(ConfigError, match="outputs of shape"):
        preflight.model_fits("homebrew", {}, ["a", "b", "c"], FeatureConfig())


def test_a_bundle_of_an_older_image_definition_is_refused_for_labelling(tmp_path):
    from genre_ray.bundle import save_bundle
    from genre_ray.models import create_model

    old = FeatureConfig.from_dict(_legacy())
    kw = {"channels": [4, 4, 4, 4], "dense": [8]}
    folder = save_bundle(tmp_path / "b", create_model("homebrew", 2, **kw).eval(), "homebrew", kw, ["a", "b"], old)
    with pytest.raises(ConfigError, match="re-run `genre-ray prepare`"):
        preflight.label_model(str(folder))
