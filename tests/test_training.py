"""Plain training functions (no Ray): steps learn, precise BN fixes lagging statistics, schedules."""

from __future__ import annotations

import torch
from torch import nn

from genre_ray.training import cosine_schedule, eval_epoch, make_optimizer, recalibrate_bn, train_epoch

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
    sched = cosine_schedule(opt, total_steps=10 * 8)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    for _ in range(10):
        tr = train_epoch(model, batches, opt, nn.CrossEntropyLoss(), CPU, sched, grad_clip=1.0, bn_batches=4)
    ev = eval_epoch(model, batches, nn.CrossEntropyLoss(), CPU)
    assert tr.n == 256 and ev.correct / ev.n > 0.9
    assert abs(sched.get_last_lr()[0] - 1e-2 * 0.05) < 1e-6  # decayed to the floor


def test_cosine_warmup():
    opt = make_optimizer(nn.Linear(1, 1), 1.0, 0.0)
    s = cosine_schedule(opt, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(s.get_last_lr()[0])
        opt.step()
        s.step()
    assert lrs[0] == 0.5 and lrs[1] == 1.0 and lrs[2] == 1.0 and lrs[-1] < lrs[5] < lrs[2]
