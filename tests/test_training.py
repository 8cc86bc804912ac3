"""Plain training functions (no Ray): steps learn, precise BN fixes lagging statistics, schedules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from genre_ray.training import (EarlyStopping, epoch_seed, lr_schedule, make_optimizer, predict_logits, recalibrate_bn,
                                train_epoch, train_step)

CPU = torch.device("cpu")


def test_recalibrate_bn_uses_exact_stats_with_dropout_off():
    net = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2))
    nn.init.ones_(net[1].weight)
    net[2].running_mean.fill_(100.0)
    xs = [torch.full((4, 1, 3, 3), 2.0), torch.full((4, 1, 3, 3), 4.0)]
    assert recalibrate_bn(net, xs, CPU)
    torch.testing.assert_close(net[2].running_mean, torch.full((2,), 3.0))
    # with dropout off each batch is constant: the variance is the unbiased batch variance = 0
    torch.testing.assert_close(net[2].running_var, torch.zeros(2))
    assert net[2].momentum == 0.1 and net.training
    assert not recalibrate_bn(nn.Linear(2, 2), xs, CPU)


def test_train_epoch_learns_a_separable_problem():
    torch.manual_seed(0)
    x = torch.randn(256, 1, 8, 8)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2))
    opt = make_optimizer(model, 1e-2, 0.0)
    sched = lr_schedule(opt, "cosine", 10 * 8)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    for _ in range(10):
        tr = train_epoch(model, batches, opt, nn.CrossEntropyLoss(), CPU, sched, grad_clip=1.0, bn_batches=4)
    accuracy = (predict_logits(model, x, CPU).argmax(1) == y).float().mean().item()
    assert tr.n == 256 and accuracy > 0.9
    assert abs(sched.get_last_lr()[0] - 1e-2 * 0.05) < 1e-6  # decayed to the floor


def test_cosine_warmup():
    opt = make_optimizer(nn.Linear(1, 1), 1.0, 0.0)
    s = lr_schedule(opt, "cosine", 10, 2)
    lrs = []
    for _ in range(10):
        lrs.append(s.get_last_lr()[0])
        opt.step()
        s.step()
    assert lrs[0] == 0.5 and lrs[1] == 1.0 and lrs[2] == 1.0 and lrs[-1] < lrs[5] < lrs[2]


def test_schedules_registry_and_warmup_per_group():
    from genre_ray.training import SCHEDULES, lr_schedule

    assert {"cosine", "step", "exponential", "constant"} <= set(SCHEDULES)
    for name, end in (("step", 0.01), ("exponential", 0.01), ("constant", 1.0), ("cosine", 0.05)):
        opt = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))], "lr": 1.0},
                               {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.1}])
        s = lr_schedule(opt, name, total_steps=102, warmup_steps=2)
        lrs = []
        for _ in range(102):
            lrs.append([g["lr"] for g in opt.param_groups])
            opt.step()
            s.step()
        assert lrs[0] == [0.5, 0.05] and lrs[2] == [1.0, 0.1]  # warm-up, then the base lrs
        assert abs(lrs[-1][0] - end) < 0.02 and abs(lrs[-1][1] - end / 10) < 0.002, (name, lrs[-1])
        assert all(a[0] >= b[0] - 1e-12 for a, b in zip(lrs[2:], lrs[3:]))  # never increases after warm-up


def test_discriminative_param_groups():
    from genre_ray.models import create_model
    from genre_ray.training import param_groups

    m = create_model("resnet18", 4)
    groups = {g["name"]: g for g in make_optimizer(m, 1e-3, 0.0, "adam", backbone_lr_factor=0.1).param_groups}
    assert groups["head"]["lr"] == 1e-3 and abs(groups["backbone"]["lr"] - 1e-4) < 1e-12
    assert {id(p) for p in groups["head"]["params"]} == {id(p) for p in m.classifier.parameters()}
    n = sum(p.numel() for g in groups.values() for p in g["params"])
    assert n == sum(p.numel() for p in m.parameters())
    assert [g["name"] for g in param_groups(m, 1e-3)] == ["all"]
    assert type(make_optimizer(m, 1e-3, 0.01)).__name__ == "AdamW"
    assert type(make_optimizer(m, 1e-3, 0.0, "sgd")).__name__ == "SGD"


def test_fixed_features_leave_the_backbone_bit_identical():
    """Fixed-features mode: training steps change the head only — backbone weights and BN statistics stay."""
    from genre_ray.augment import BatchAugment
    from genre_ray.models import create_model

    torch.manual_seed(0)
    m = create_model("resnet18", 3, freeze_backbone=True)
    before = {k: v.clone() for k, v in m.backbone.state_dict().items()}
    head_before = m.classifier.weight.clone()
    opt = make_optimizer(m, 1e-2, 0.01, "adamw")
    x, y = torch.rand(8, 1, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    aug = BatchAugment(num_classes=3, freq_masks=1, time_masks=1, mixup_alpha=0.2)
    train_epoch(m, [(x, y)] * 3, opt, nn.CrossEntropyLoss(), CPU, bn_batches=2, augment=aug)
    after = m.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a frozen backbone tensor changed"
    assert not torch.equal(head_before, m.classifier.weight)


def test_totals_never_read_a_tensor_back_during_the_pass(monkeypatch):
    """A per-step ``float(loss)`` makes a GPU step wait for the previous one; the sums stay on the device and are
    read once. (On CPU: any tensor → Python number conversion inside ``add`` raises here.)"""
    from genre_ray.training import Totals

    torch.manual_seed(0)
    steps = [(torch.rand(()) * 3, torch.randn(8, 5), torch.randint(0, 5, (8,))) for _ in range(6)]
    want_loss = sum(float(loss) * 8 for loss, _, _ in steps)
    want_correct = sum(int((logits.argmax(1) == y).sum()) for _, logits, y in steps)
    t = Totals()
    with monkeypatch.context() as m:
        for name in ("item", "__float__", "__int__", "tolist"):
            m.setattr(torch.Tensor, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("host sync")))
        for loss, logits, y in steps:
            t.add(loss, logits, y)
    assert t.n == 48 and t.correct == want_correct and abs(t.loss_sum - want_loss) < 1e-9
    torch.testing.assert_close(Totals.summary(t.as_tensor())["loss"], want_loss / 48)
    assert Totals().loss_sum == 0.0 and Totals().correct == 0


def test_device_cache_epochs_cover_every_row_once_in_a_seeded_order():
    from genre_ray.training import DeviceCache

    x = torch.arange(10, dtype=torch.float16).reshape(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    y = torch.arange(10)
    cache = DeviceCache.load([(x[:4], y[:4]), (x[4:], y[4:])], CPU)
    assert len(cache) == 10 and cache.images.dtype == torch.float16 and cache.nbytes == x.nbytes + y.nbytes

    def epoch(seed):
        got = list(cache.batches(4, seed))
        assert [len(b[1]) for b in got] == [4, 4, 2]
        for images, labels in got:  # rows stay paired
            assert torch.equal(images[:, 0, 0, 0].long(), labels)
        return torch.cat([labels for _, labels in got]).tolist()

    first = epoch(3)
    assert sorted(first) == list(range(10)) and first != list(range(10))
    assert epoch(3) == first and epoch(4) != first
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        DeviceCache(x, y[:9])
    with pytest.raises(ValueError, match="no training rows"):
        DeviceCache.load([], CPU)


@pytest.mark.parametrize("name,wd", [("adam", 0.0), ("adamw", 0.01), ("sgd", 0.0)])
def test_fused_optimizer_is_automatic_on_gpus_only_and_updates_alike(name, wd):
    def run(fused):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
        opt = make_optimizer(m, 1e-2, wd, name, fused=fused)
        for i in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(m(torch.randn(8, 6, generator=torch.Generator().manual_seed(i))),
                                        torch.arange(8) % 3).backward()
            opt.step()
        return opt, [p.detach().clone() for p in m.parameters()]

    auto, p_auto = run(None)
    fused, p_fused = run(True)
    assert not auto.defaults.get("fused") and fused.defaults["fused"] is True  # CPU parameters: not fused by default
    for a, b in zip(p_auto, p_fused):
        torch.testing.assert_close(a, b)


def test_cudnn_autotune_only_touches_cuda():
    from genre_ray.accel import cudnn_autotune

    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        assert not cudnn_autotune("cpu") and not torch.backends.cudnn.benchmark
        assert cudnn_autotune(torch.device("cuda", 0)) and torch.backends.cudnn.benchmark  # the flag alone: no GPU
        assert not cudnn_autotune("cuda", on=False) and not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = before


def test_each_validation_row_is_scored_by_exactly_one_worker():
    """Ray's split of the val set (equal=True) dropped rows to even the shards out; now every worker reads it whole
    and scores the tracks that fall to its rank: each row once, a track's windows on one worker."""
    from genre_ray.pipelines.train import rank_rows

    ids = np.array([f"{i * 7919:040x}" for i in range(101) for _ in range(3)])  # 101 tracks × 3 windows
    for world in (1, 2, 3, 4):
        masks = np.stack([rank_rows(ids, r, world) for r in range(world)])
        assert (masks.sum(axis=0) == 1).all()
        for r in range(world):
            assert not (set(ids[masks[r]]) & set(ids[~masks[r]]))  # a track is on one worker only
    assert 0 < rank_rows(ids, 0, 2).sum() < len(ids)


def test_checkpoint_selection_breaks_ties_toward_the_earliest_epoch():
    """Early stopping counts from the first epoch that reached the best value; the checkpoint the driver picks (and
    Ray Train keeps) is that epoch's, not a later tie's."""
    from genre_ray.pipelines.train import selection_score

    acc = [selection_score(v, e, "val_track_accuracy") for e, v in enumerate([0.9, 1.0, 1.0, 0.95])]
    assert max(range(4), key=acc.__getitem__) == 1
    loss = [selection_score(v, e, "val_loss") for e, v in enumerate([0.5, 0.2, 0.2, 0.3])]
    assert max(range(4), key=loss.__getitem__) == 1


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def test_train_step_uses_this_batch_gradient_only():
    """Each step's gradient is its own batch's: a missing ``zero_grad`` would add the previous step's."""
    xa, ya = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    xb, yb = torch.randn(4, 1, 4, 4), torch.tensor([2, 2, 1, 0])
    model, loss_fn = _tiny(), nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_step(model, xa, ya, opt, loss_fn, CPU)
    ref = _tiny()
    ref.load_state_dict(model.state_dict())  # the weights after step 1 (as they are before step 2's update)
    loss_fn(ref(xb), yb).backward()
    before = [p.detach().clone() for p in model.parameters()]
    train_step(model, xb, yb, opt, loss_fn, CPU)
    for p, r, b in zip(model.parameters(), ref.parameters(), before):
        torch.testing.assert_close(p.grad, r.grad)
        torch.testing.assert_close(p.detach(), b - 0.1 * r.grad)


def test_train_step_clips_the_gradient_norm():
    x, y = 100 * torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))
    model = _tiny()
    train_step(model, x, y, torch.optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss(), CPU, grad_clip=1e-3)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()]))
    assert float(norm) <= 1e-3 + 1e-6


def test_train_step_trains_against_the_augments_targets():
    """Mixup returns soft targets: the loss is taken against them, not against the batch's hard labels."""
    x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    soft = torch.nn.functional.one_hot((y + 1) % 3, 3).float()
    model = _tiny()
    loss, logits = train_step(model, x, y, torch.optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss(), CPU,
                              augment=lambda xx, yy: (xx, soft))
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits, soft))
    assert not torch.isclose(loss, nn.functional.cross_entropy(logits, y))


def test_train_epoch_recalibrates_bn_on_its_last_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(32, 2))
    batches = [(torch.randn(4, 1, 4, 4) + i, torch.randint(0, 2, (4,))) for i in range(8)]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # weights fixed: the statistics are those of the last batches
    train_epoch(model, batches, opt, nn.CrossEntropyLoss(), CPU, bn_batches=2)
    bn = model[1]
    assert int(bn.num_batches_tracked) == 2  # reset, then exactly the last 2 batches (8 without recalibration)
    with torch.no_grad():
        h = model[0](torch.cat([b[0] for b in batches[-2:]]))
    torch.testing.assert_close(bn.running_mean, h.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-5)


def test_predict_logits_runs_the_model_in_eval_mode():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 3))
    model.train()
    x = torch.randn(8, 1, 4, 4)
    a, b = predict_logits(model, x, CPU), predict_logits(model, x, CPU)
    assert not model.training
    torch.testing.assert_close(a, b)


def test_epoch_seeds_differ_per_rank_and_epoch():
    seeds = {epoch_seed(0, e, r) for e in range(3) for r in range(4)}
    assert len(seeds) == 12 and epoch_seed(0, 0, 1) != epoch_seed(0, 1, 0)
    assert epoch_seed(1, 0, 0) != epoch_seed(0, 0, 0) and epoch_seed(3, 2, 1) == epoch_seed(3, 2, 1)


@pytest.mark.parametrize("mode, values, improved", [
    ("max", [0.5, 0.6, 0.6, 0.55], [True, True, False, False]),  # a tie is not an improvement
    ("min", [0.5, 0.4, 0.45, 0.4], [True, True, False, False]),
])
def test_early_stopping_improvement_is_strict_and_directional(mode, values, improved):
    es = EarlyStopping(mode, patience=None)
    assert [es.update(v) for v in values] == improved
    assert es.best == values[1] and es.since_best == 2 and not es.stop  # no patience: never stops


def test_early_stopping_stops_after_exactly_patience_epochs_without_improvement():
    es = EarlyStopping("max", patience=2)
    stops = []
    for v in [0.5, 0.7, 0.7, 0.6]:
        es.update(v)
        stops.append(es.stop)
    assert stops == [False, False, False, True]
    resumed = EarlyStopping("max", patience=2, best=0.7, since_best=2)  # restored from a checkpoint
    assert resumed.stop and not resumed.is_better(0.7) and resumed.is_better(0.71)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping("maximum", 1)


def test_train_and_tune_build_the_same_parts_from_a_config():
    """One builder for a Ray Train worker and a single-worker Tune trial: channels_last, torch_compile, the LR
    schedule over the workers' shared steps — a sweep once trained without compile or channels_last."""
    from genre_ray.config import TrainConfig
    from genre_ray.pipelines.train import build_parts, checkpoint_state, epoch_metrics

    cfg = TrainConfig(data="d", out="o", model="homebrew", epochs=3, batch_size=4, torch_compile=True,
                      schedule="cosine", model_kwargs={"channels": [2, 2, 2, 2], "dense": [4], "input_size": [16, 16]})
    parts = build_parts(cfg, 3, dict(cfg.model_kwargs), n_train=40, world=2, device=torch.device("cpu"))
    conv = next(m for m in parts.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert parts.model._compiled_call_impl is not None  # compiled in place
    assert parts.plateau.mode == "max" and parts.plateau.patience == cfg.early_stop_patience
    alone = build_parts(cfg.model_copy(update={"torch_compile": False}), 3, dict(cfg.model_kwargs), 40, 1,
                        torch.device("cpu"))
    for p in (parts, alone):
        for _ in range(cfg.epochs * 5):  # 40 samples / (4 × 2 workers) = 5 steps per epoch
            p.optimizer.step()
            p.scheduler.step()
    # two workers share the samples: their schedule is at its end after 15 steps, one worker's half-way (30)
    assert parts.scheduler.get_last_lr()[0] < 0.1 * alone.scheduler.get_last_lr()[0]
    parts.plateau.update(0.5)
    m = epoch_metrics(cfg, parts, 2, {"loss": 1.0, "accuracy": 0.5, "n": 40},
                      {"val_loss": 1.0, "val_accuracy": 0.5, "val_track_accuracy": 0.5}, 0.0, 2.0)
    assert m["patience_stop"] == 0 and m["samples_per_second"] == 20.0 and m["best_val_accuracy"] == 0.5
    state = checkpoint_state(parts, 2, m)
    assert state["epoch"] == 2 and "_orig_mod" not in "".join(state["model"])  # loadable into a plain model


def test_stop_reason_of_a_trial():
    from genre_ray.pipelines.tune import stop_reason

    assert stop_reason({"training_iteration": 5}, 5) == "completed"
    assert stop_reason({"training_iteration": 2, "patience_stop": 1}, 5) == "patience"
    assert stop_reason({"training_iteration": 2, "patience_stop": 0}, 5) == "asha"
    assert stop_reason({}, 5) == "asha"


def test_a_gpu_asked_for_but_not_seen_is_an_error(monkeypatch):
    from genre_ray import accel

    assert accel.pick_device(False).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="use_gpu is set, but this process sees no CUDA device"):
        accel.pick_device(True)
