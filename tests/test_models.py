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
    (tmp_path / "notes.pth").write_text("not a model")
    with pytest.raises(ValueError, match="notes.pth is not a PyTorch weights file"):
        create_model("resnet18", 10, pretrained=str(tmp_path / "notes.pth"))
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")  # a whole module: classes in the pickle
    with pytest.raises(ValueError, match="module.pth holds Python objects besides tensors"):
        create_model("resnet18", 10, pretrained=str(tmp_path / "module.pth"))


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
    # imagenet_norm: the grey image standardised as torchvision's ImageNet transform does, up to the mean of its
    # per-channel constants (0.449 / 0.226 for 0.485-0.406 / 0.229-0.225)
    normed = create_model("resnet18", 10, pretrained=str(path), imagenet_norm=True).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ours, theirs = normed.embed(grey), ref((grey.expand(-1, 3, -1, -1) - mean) / std)
    assert torch.nn.functional.cosine_similarity(ours, theirs).min() > 0.99


def test_train_standardises_inputs_only_when_imagenet_weights_are_loaded(tmp_path):
    """Loaded ImageNet weights expect standardised images (their frozen BatchNorm statistics were measured on
    them); the flag rides in the bundle's model kwargs. From scratch, or for the homebrew CNN, nothing changes."""
    from genre_ray.config import TrainConfig
    from genre_ray.features import FeatureConfig
    from genre_ray.pipelines.train import _model_kwargs

    path = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    f = FeatureConfig()
    kw = _model_kwargs(TrainConfig(data="d", out="o", model="resnet18", pretrained=str(path)), f)
    assert kw["imagenet_norm"] is True and kw["pretrained"] == str(path)
    assert "imagenet_norm" not in _model_kwargs(TrainConfig(data="d", out="o", model="resnet18"), f)
    x = torch.rand(2, 1, 64, 64)
    plain = create_model("resnet18", 4).eval()
    normed = create_model("resnet18", 4, imagenet_norm=True).eval()
    normed.load_state_dict(plain.state_dict())  # same weights, no new parameters: old bundles load as they were
    with torch.no_grad():
        assert not torch.allclose(plain(x), normed(x))


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


def _with_running_stats(m: torch.nn.Module) -> torch.nn.Module:
    """A few training-mode passes so every BatchNorm's running stats differ from the identity (a fold that
    ignored them would show)."""
    m.train()
    with torch.no_grad():
        for s in range(3):
            m(torch.randn(4, 1, 216, 216) * (s + 1) + s)
    return m.eval()


@pytest.mark.parametrize("name,kw", [("homebrew", {"channels": [8, 16, 16, 16], "dense": [32, 16]}), ("resnet18", {}),
                                     ("resnet18", {"imagenet_norm": True})])
def test_inference_model_folds_batchnorm_and_pools_first_with_the_same_outputs(name, kw):
    from genre_ray import accel
    from genre_ray.embedding import window_outputs

    torch.manual_seed(0)
    m = accel.prepare_model(_with_running_stats(create_model(name, 5, **kw)), "cpu")
    fast = accel.inference_model(m)
    assert isinstance(fast, accel.InferenceModel) and fast.embedding_dim == m.embedding_dim
    graph = fast.embed_graph
    assert not any(isinstance(q, torch.nn.BatchNorm2d) for q in graph.modules())
    assert any(isinstance(q, torch.nn.BatchNorm2d) for q in m.modules())  # the original is untouched
    mods = dict(graph.named_modules())
    calls = [type(mods[n.target]) for n in graph.graph.nodes if n.op == "call_module"]
    pools = [i for i, t in enumerate(calls) if t is torch.nn.MaxPool2d]
    assert pools and all(calls[i + 1] in (torch.nn.ReLU, torch.nn.LeakyReLU) for i in pools)  # activation after
    x = accel.to_input(torch.randn(6, 1, 216, 216), "cpu")
    with torch.no_grad():
        torch.testing.assert_close(fast(x), m(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(fast.embed(x), m.embed(x), atol=1e-4, rtol=1e-4)
    p_fast, e_fast = window_outputs(fast, x.numpy().astype("float16"), torch.device("cpu"), 4)
    p, e = window_outputs(m, x.numpy().astype("float16"), torch.device("cpu"), 4)
    assert abs(p_fast - p).max() < 1e-5 and abs(e_fast - e).max() < 1e-4
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()


def test_inference_model_leaves_a_decreasing_activation_before_its_pool():
    from genre_ray import accel

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.LeakyReLU(-0.5), torch.nn.MaxPool2d(2),
                              torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten())

    class Net(torch.nn.Module):
        embedding_dim = 4 * 4 * 4

        def __init__(self):
            super().__init__()
            self.net, self.head = net, torch.nn.Linear(64, 2)

        def embed(self, x):
            return self.net(x)

        def classify(self, e):
            return self.head(e)

        def forward(self, x):
            return self.classify(self.embed(x))

    m = Net().eval()
    fast = accel.inference_model(m)
    mods = dict(fast.embed_graph.named_modules())
    order = [type(mods[n.target]).__name__ for n in fast.embed_graph.graph.nodes if n.op == "call_module"]
    # a negative slope is not monotone: max-pool must not move ahead of it; the ReLU's pool does
    assert order == ["Conv2d", "LeakyReLU", "MaxPool2d", "MaxPool2d", "ReLU", "Flatten"]
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), m(x))


def test_inference_model_returns_an_untraceable_model_unchanged():
    from genre_ray import accel

    class DataDependent(torch.nn.Module):
        embedding_dim = 2

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def embed(self, x):
            return self.lin(x) if x.sum() > 0 else -self.lin(x)  # control flow on values: fx cannot trace it

        def classify(self, e):
            return e

    m = DataDependent().train()
    assert accel.inference_model(m) is m and not m.training
