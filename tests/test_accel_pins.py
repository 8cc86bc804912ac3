"""Pins for genre_ray/accel.py."""

from __future__ import annotations

import contextlib

import torch

from genre_ray import accel


def test_autocast_for_passes_the_precisions_dtype(monkeypatch):
    """precision=fp16/bf16 on CUDA: torch.autocast gets that dtype (its CUDA default is fp16 — bf16 would silently
    become fp16 if the dtype were not passed)."""
    seen = []
    monkeypatch.setattr(accel.torch, "autocast", lambda device_type, **kw: (seen.append((device_type, kw)),
                                                                            contextlib.nullcontext())[1])
    accel.autocast_for("cuda", "fp16")
    accel.autocast_for("cuda", "bf16")
    accel.autocast_for("cpu", "bf16")
    assert seen == [("cuda", {"dtype": torch.float16}), ("cuda", {"dtype": torch.bfloat16}),
                    ("cpu", {"dtype": torch.bfloat16})]
    assert isinstance(accel.autocast_for("cpu", "fp32"), contextlib.nullcontext)


def _net(body, dim):
    class Net(torch.nn.Module):
        embedding_dim = dim

        def __init__(self):
            super().__init__()
            self.body, self.head = body, torch.nn.Linear(dim, 2)

        def embed(self, x):
            return self.body(x)

        def classify(self, e):
            return self.head(e)

        def forward(self, x):
            return self.classify(self.embed(x))

    return Net().eval()


def _order(fast):
    mods = dict(fast.embed_graph.named_modules())
    return [type(mods[n.target]).__name__ for n in fast.embed_graph.graph.nodes if n.op == "call_module"]


def test_non_monotone_activations_stay_before_their_pool():
    """GELU/SiLU dip below zero: max does not commute with them, so max-pool must not be moved ahead."""
    for act in (torch.nn.GELU(), torch.nn.SiLU(), torch.nn.ELU(), torch.nn.Hardswish()):
        body = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), act, torch.nn.MaxPool2d(2), torch.nn.Flatten())
        m = _net(body, 4 * 8 * 8)
        fast = accel.inference_model(m)
        assert _order(fast) == ["Conv2d", type(act).__name__, "MaxPool2d", "Flatten"], type(act).__name__
        x = torch.randn(3, 1, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(fast(x), m(x))


class _TwoUsers(torch.nn.Module):
    """The activation's output feeds the pool and a second branch: the pool must not move ahead of it."""

    def __init__(self):
        super().__init__()
        self.conv, self.act, self.pool = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2)

    def forward(self, x):
        a = self.act(self.conv(x))
        return torch.cat([self.pool(a).flatten(1), a.mean(dim=(2, 3))], dim=1)


def test_an_activation_with_other_users_is_not_moved():
    m = _net(_TwoUsers(), 4 * 8 * 8 + 4)
    fast = accel.inference_model(m)
    x = torch.randn(3, 1, 16, 16) - 0.3
    with torch.no_grad():
        torch.testing.assert_close(fast(x), m(x))
