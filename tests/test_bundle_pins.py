"""Pins for genre_ray/bundle.py."""

from __future__ import annotations

import json

import pytest
import torch

from genre_ray import bundle as bundle_mod
from genre_ray.bundle import BUNDLE_JSON, WEIGHTS, load_bundle, save_bundle
from genre_ray.features import FeatureConfig
from genre_ray.models import create_model

KW = {"channels": [4, 4, 4, 4], "dense": [8], "dropout": 0.5}
CLASSES = ["a", "b", "c"]


def _save(path, **kw):
    torch.manual_seed(0)
    model = create_model("homebrew", len(CLASSES), **KW).eval()
    return model, save_bundle(path, model, "homebrew", KW, CLASSES, FeatureConfig(), **kw)


def test_a_built_model_is_in_eval_mode_so_labels_are_deterministic(tmp_path):
    _, folder = _save(tmp_path / "b")
    net = load_bundle(folder).build_model()
    assert not net.training and not any(m.training for m in net.modules())
    x = torch.randn(2, 1, 216, 216)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x))  # dropout 0.5 is off


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    """A bundle whose weights.pt lacks a tensor (or has a stray one) must not load with random weights."""
    _, folder = _save(tmp_path / "b")
    state = torch.load(folder / WEIGHTS, weights_only=True)
    state.pop(sorted(state)[0])
    torch.save(state, folder / WEIGHTS)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_bundle(folder).build_model()


def test_a_save_killed_while_writing_weights_keeps_the_old_weights(tmp_path, monkeypatch):
    model, folder = _save(tmp_path / "b")
    before = (folder / WEIGHTS).read_bytes()

    def dies_midway(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 truncated")
        raise OSError("disk full")

    monkeypatch.setattr(bundle_mod.torch, "save", dies_midway)
    with pytest.raises(OSError):
        save_bundle(folder, model, "homebrew", KW, CLASSES, FeatureConfig())
    assert (folder / WEIGHTS).read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == sorted([BUNDLE_JSON, WEIGHTS])


def test_a_pretrained_path_in_model_kwargs_is_never_read_at_load(tmp_path):
    """Training records `pretrained` (an ImageNet file on the training machine); labelling elsewhere must not need it."""
    torch.manual_seed(0)
    model = create_model("resnet18", len(CLASSES)).eval()
    folder = save_bundle(tmp_path / "r", model, "resnet18", {"pretrained": str(tmp_path / "gone.pth")}, CLASSES,
                         FeatureConfig())
    net = load_bundle(folder).build_model()
    x = torch.randn(1, 1, 216, 216)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x))


def test_meta_round_trips_and_its_aggregate_wins(tmp_path):
    _, folder = _save(tmp_path / "b", meta={"run_id": "r1", "aggregate": "vote"},
                      calibration={"temperature": 1.5, "aggregate": "logmean"})
    b = load_bundle(folder)
    assert b.meta == {"run_id": "r1", "aggregate": "vote"} and b.aggregate == "vote"
    doc = json.loads((folder / BUNDLE_JSON).read_text())
    assert doc["feature_hash"] == FeatureConfig().hash()
    _, old = _save(tmp_path / "old")
    assert load_bundle(old).aggregate == "mean"
