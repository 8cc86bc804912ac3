"""Model registry, shapes, resnet18 1-channel adaptation from a local weights file, bundles."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18

from genre_ray.bundle import load_bundle, save_bundle
from genre_ray.features import FeatureConfig
from genre_ray.models import MODELS, create_model


def test_registry_and_unknown_name():
    assert {"homebrew", "resnet18"} <= set(MODELS)
    with pytest.raises(ValueError, match="unknown model .vgg99.; known"):
        create_model("vgg99", 10)


@pytest.mark.parametrize("name,kw", [("homebrew", {}), ("homebrew", {"channels": [4, 8, 8, 8], "kernel_sizes": [5, 3, 3, 3],
                                                                     "dense": [32, 16], "global_pool": True}),
                                     ("resnet18", {})])
def test_forward_shapes(name, kw):
    m = create_model(name, 7, **kw).eval()
    assert m(torch.randn(2, 1, 216, 216)).shape == (2, 7)
    assert m.embed(torch.randn(2, 1, 216, 216)).shape == (2, m.embedding_dim)


def test_homebrew_is_the_report_net():
    m = create_model("homebrew", 10)
    kinds = [type(x).__name__ for x in m.features]
    assert kinds == ["Conv2d", "BatchNorm2d", "LeakyReLU", "MaxPool2d", "Dropout"] * 4
    assert all(x.negative_slope == 0.2 for x in m.features if isinstance(x, torch.nn.LeakyReLU))
    assert [l.out_features for l in m.head if isinstance(l, torch.nn.Linear)] == [364, 182]


def test_resnet18_loads_local_weights_and_sums_conv1(tmp_path):
    ref = resnet18(weights=None)
    torch.nn.init.normal_(ref.conv1.weight)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    m = create_model("resnet18", 10, pretrained=str(path))
    torch.testing.assert_close(m.backbone.conv1.weight, ref.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(m.backbone.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        create_model("resnet18", 10, pretrained=str(tmp_path / "nope.pth"))


def test_resnet18_fixed_features_trains_only_the_head():
    m = create_model("resnet18", 4, freeze_backbone=True)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"}
    m.train()
    assert not m.backbone.training


def test_bundle_roundtrip(tmp_path):
    model = create_model("homebrew", 3, channels=[4, 4, 4, 4], dense=[8, 8]).eval()
    save_bundle(tmp_path / "b", model, "homebrew", {"channels": [4, 4, 4, 4], "dense": [8, 8]},
                ["a", "b", "c"], FeatureConfig(hop_s=3.0), meta={"run_id": "x"})
    b = load_bundle(tmp_path / "b")
    assert b.classes == ["a", "b", "c"] and b.features.hop_s == 3.0 and b.meta["run_id"] == "x"
    x = torch.randn(2, 1, 216, 216)
    torch.testing.assert_close(b.build_model()(x), model(x))
    with pytest.raises(FileNotFoundError):
        load_bundle(tmp_path / "missing")


def test_resnet18_conv1_conversion_matches_the_rgb_model_on_grey_images(tmp_path):
    """Summing conv1's RGB filters gives the 1-channel model exactly what the RGB model sees on a grey image
    replicated to 3 channels."""
    torch.manual_seed(0)
    ref = resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    m = create_model("resnet18", 10, pretrained=str(path)).eval()
    grey = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ours = m.embed(grey)
        ref.fc = torch.nn.Identity()
        theirs = ref(grey.expand(-1, 3, -1, -1))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_pretrained_auto_uses_torchvision_cache_only_if_the_file_is_there(tmp_path):
    from genre_ray.models.resnet import TORCHVISION_FILE, resolve_pretrained

    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        assert resolve_pretrained("auto") is None  # not there → scratch, nothing downloaded
        f = tmp_path / "hub" / "checkpoints" / TORCHVISION_FILE
        f.parent.mkdir(parents=True)
        torch.save(resnet18(weights=None).state_dict(), f)
        assert resolve_pretrained("auto") == str(f)
        assert resolve_pretrained(None) is None and resolve_pretrained("/x.pth") == "/x.pth"
    finally:
        torch.hub.set_dir(old)
