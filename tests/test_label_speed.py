"""The label job's speed knobs, without Ray: the inference batch size chosen by measurement, the actor plan, the
channels_last classifier, the start-up / steady-state figures of the summary. (Speeds are measured by
``genre-ray bench label``, never by a test: these tests check the logic with a synthetic cost.)"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from genre_ray import accel
from genre_ray.config import LabelConfig
from genre_ray.pipelines.label import Progress, actor_gpus, actor_plan, featurize_mode
from genre_ray.pipelines.label_workers import CALL_WINDOWS, Classifier, call_windows
from label_lib import sharp_bundle


def _burn(seconds: float) -> None:
    t = time.process_time()
    while time.process_time() - t < seconds:
        pass


def _fake_forward(cost_per_window: dict[int, float]):
    """A forward pass whose CPU cost per window depends on the batch size (cheapest at the dict's minimum)."""
    calls = []

    def run(images: np.ndarray, batch_size: int) -> None:
        calls.append((len(images), batch_size))
        _burn(len(images) * cost_per_window[batch_size])

    return run, calls


def _tune(tuner: accel.BatchSizeTuner, run, windows_per_call: int, max_calls: int = 200) -> int:
    """Drive ``tuner`` as the actor does: real calls at ``tuner.size`` until it settles; → calls made."""
    for n in range(1, max_calls + 1):
        size = tuner.size
        t0 = tuner.clock()
        run(np.zeros((windows_per_call, 1, 8, 8), np.float16), size)
        if tuner.record(size, windows_per_call, tuner.clock() - t0):
            return n
    raise AssertionError(f"never settled: {tuner.rates}")


def test_batch_size_tuner_chooses_during_real_calls_and_stops_after_the_peak():
    cost = {2: 4e-4, 4: 2e-4, 8: 1e-4, 16: 3e-4, 32: 3e-4, 64: 3e-4}
    run, calls = _fake_forward(cost)
    tuner = accel.BatchSizeTuner("cpu", min_windows=64)
    assert tuner.size == 2 and tuner.best is None  # nothing measured: start at the smallest
    n = _tune(tuner, run, windows_per_call=32)
    assert tuner.best == 8 and tuner.size == 8
    assert list(tuner.rates) == [2, 4, 8, 16]  # 16 < 0.9 × the best so far: 32 and 64 never tried
    assert n == 4 * 3  # per size: one warm-up call (not counted) + 64 windows in 32-window calls
    assert [bs for _, bs in calls] == [2] * 3 + [4] * 3 + [8] * 3 + [16] * 3
    # settled: later calls run at the best size and change nothing
    rates = dict(tuner.rates)
    assert not tuner.record(8, 32, 1.0) and tuner.rates == rates and tuner.size == 8


def test_batch_size_tuner_ignores_calls_at_other_sizes_and_tries_every_size_when_rising():
    tuner = accel.BatchSizeTuner("cpu", candidates=[4, 2], min_windows=10)
    assert tuner.size == 2
    assert not tuner.record(4, 100, 1.0) and not tuner.record(2, 0, 1.0)  # not the size measured / no windows
    assert not tuner.record(2, 10, 1.0)  # warm-up
    assert not tuner.record(2, 10, 1.0) and tuner.size == 4 and tuner.rates == {2: 10.0}
    assert not tuner.record(4, 10, 1.0)  # warm-up at 4
    assert tuner.record(4, 10, 0.5) and tuner.best == 4 and tuner.rates == {2: 10.0, 4: 20.0}  # the last size
    assert accel.BatchSizeTuner("cuda").sizes == sorted(accel.BATCH_CANDIDATES["cuda"])


def test_call_windows_is_at_least_the_forward_batch():
    assert call_windows(None, False) == CALL_WINDOWS[False]
    assert call_windows(None, True) == CALL_WINDOWS[True]
    assert call_windows(4096, True) == 4096 and call_windows(8, False) == CALL_WINDOWS[False]
    assert call_windows(4, False, requested=4) == 4 and call_windows(16, False, requested=4) == 16


@pytest.mark.parametrize("kw,cpus,gpus,use_gpu,expect", [
    ({}, 2, 0, False, (2, 1.0)),           # CPU box, featurize=auto → actor: one single-thread actor per CPU
    ({"featurize": "cpu"}, 2, 0, False, (2, 0.5)),  # featurize tasks: half the CPUs reserved for the actors
    ({"featurize": "cpu"}, 16, 0, False, (16, 0.5)),
    ({}, 32, 4, True, (8, 1.0)),           # GPU node: two actors per GPU (0.5 GPU each, test_actor_gpus)
    ({}, 16, 1, True, (2, 1.0)),
    ({}, 4, 4, True, (4, 1.0)),            # 8 actors' CPUs would exceed half of 4: one per GPU
    ({}, 8, 0, True, (1, 1.0)),            # use_gpu asked where Ray sees no GPU: one actor (it will fall back)
    ({"num_actors": 3, "featurize": "cpu"}, 16, 0, False, (3, 0.5)),
    ({"num_actors": 1, "actor_cpus": 0.5}, 2, 0, False, (1, 0.5)),
    ({"actor_cpus": 2.0}, 8, 2, True, (2, 2.0)),
])
def test_actor_plan(kw, cpus, gpus, use_gpu, expect):
    cfg = LabelConfig(input="x", model="m", out="o", **kw)
    assert actor_plan(cfg, cpus, gpus, use_gpu, featurize_mode(cfg, use_gpu)) == expect


@pytest.mark.parametrize("num_actors,gpus,use_gpu,expect", [
    (1, 0, False, 0.0), (4, 4, True, 1.0), (2, 4, True, 1.0),  # one GPU each, spare GPUs left free
    (2, 1, True, 0.5), (3, 1, True, 0.3333), (4, 2, True, 0.5),  # more actors than GPUs: an equal share each
    (1, 0, True, 1.0),  # use_gpu where Ray sees no GPU yet (an autoscaling cluster adds one): a whole GPU is asked for
    (8, 0, True, 0.5),  # … and several actors ask for two to a GPU: num_actors 8 starts 4 GPU nodes, not 8
])
def test_actor_gpus(num_actors, gpus, use_gpu, expect):
    assert actor_gpus(num_actors, gpus, use_gpu) == expect


def test_actor_gpus_asked_for_wins_over_what_ray_sees_at_start():
    """configs/label-library.yaml: 8 actors at 0.5 GPU. One GPU node left up at start gave them 0.125 each, all on
    that node, and the autoscaler was never asked for the other three."""
    assert actor_gpus(8, 1, True, asked=0.5) == 0.5 and actor_gpus(8, 0, True, asked=0.5) == 0.5
    assert actor_gpus(8, 1, False, asked=0.5) == 0.0  # no GPUs used: nothing reserved


def test_featurize_auto_is_actor_without_gpus_and_tasks_with_them():
    auto = LabelConfig(input="x", model="m", out="o")
    assert auto.featurize == "auto"
    assert featurize_mode(auto, use_gpu=False) == "actor" and featurize_mode(auto, use_gpu=True) == "device"
    for mode in ("actor", "cpu", "device"):
        assert featurize_mode(auto.model_copy(update={"featurize": mode}), use_gpu=True) == mode


def test_classifier_measures_its_batch_size_and_gives_the_same_probabilities(tmp_path, capsys):
    from genre_ray.bundle import load_bundle
    from genre_ray.pipelines.label import WINDOW

    bundle = load_bundle(sharp_bundle(tmp_path / "b"))
    rng = np.random.default_rng(0)
    images = rng.random((10, *bundle.features.image_shape), dtype=np.float32).astype(np.float16)
    batch = {"path": np.array(["a"] * 10, object), "kind": np.array([WINDOW] * 10, object), "image": images}
    auto = Classifier(bundle, None, use_gpu=False, embeddings=True)
    auto.tuner.min_windows = 10
    assert auto.batch_size == accel.BATCH_CANDIDATES["cpu"][0]  # no probe at start: measured during the calls
    fixed = Classifier(bundle, 3, use_gpu=False, embeddings=True)
    b = fixed(dict(batch))
    for _ in range(3 * len(accel.BATCH_CANDIDATES["cpu"])):
        a = auto(dict(batch))
        np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-5)  # at every batch size tried
        np.testing.assert_allclose(a["emb"], b["emb"], atol=1e-4)
    assert auto.tuner.best in accel.BATCH_CANDIDATES["cpu"] and auto.batch_size == auto.tuner.best
    out = capsys.readouterr().out
    assert "batch size" in out
    # its start-up, told once per actor: the process's age when the actor began (imports), then the model's build
    assert re.search(r"classifier ready on cpu: \d+\.\d s after its process started, then \d+\.\d s building", out)
    assert "image" not in a
    # the actor runs the folded form (accel.inference_model), its convolutions still in the fast layout
    convs = [p for p in auto.model.embed_graph.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=accel.memory_format("cpu")) for p in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in auto.model.embed_graph.modules())


@pytest.mark.slow
def test_process_age_counts_from_the_process_start():
    """What the actor's start-up line reports: a fresh process that sleeps 1 s before asking is at least 1 s old,
    and no older than the wall time around it."""
    code = ("import time; time.sleep(1.0); from genre_ray.pipelines.label_workers import process_age_s; "
            "print(process_age_s())")
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    wall = time.time() - t0
    assert 1.0 <= float(out) <= wall + 0.05


def test_progress_start_up_and_steady_state():
    p = Progress(total=4, every_s=1e9, already=0)
    p.restart()
    t0 = p.t0
    p.update({"status": "ok", "duration_s": 30.0}, now=t0 + 5.0)   # first batch: two tracks at once
    p.update({"status": "ok", "duration_s": 30.0}, now=t0 + 5.0)
    p.update({"status": "ok", "duration_s": 60.0}, now=t0 + 6.0)
    p.update({"status": "error", "duration_s": 0.0}, now=t0 + 7.0)
    assert p.startup_s == pytest.approx(5.0)
    assert p.steady_audio_s_per_s == pytest.approx(60.0 / 2.0)  # after the first batch: 60 audio-s in 2 s
    assert p.done == 4 and p.not_ok == 1 and p.audio_s == 120.0
    q = Progress(total=1, every_s=1e9, already=0)
    q.update({"status": "ok", "duration_s": 30.0}, now=q.t0 + 1.0)
    assert q.steady_audio_s_per_s == 0.0  # one batch only: no steady state to speak of


def test_progress_counts_a_stream_batch_at_one_time(monkeypatch):
    """The job's path (update_batch, no clock passed): every track of one batch arrives at the same time, so the
    steady rate starts after the whole first batch — a clock read per track counted all but its first track."""
    import genre_ray.pipelines.label as label

    ticks = iter(float(t) for t in range(100, 200))
    monkeypatch.setattr(label.time, "time", lambda: next(ticks))
    p = Progress(total=6, every_s=1e9, already=0)
    p.restart()
    ok = {"status": "ok", "duration_s": 30.0}
    p.update_batch([ok, ok, ok])
    first = p.first_t
    p.update_batch([ok, ok, ok])
    assert p.first_audio == 90.0
    assert p.steady_audio_s_per_s == pytest.approx(90.0 / (p.last_t - first))


def test_train_splits_are_cached_in_memory_when_small(tmp_path):
    from genre_ray.config import TrainConfig
    from genre_ray.pipelines.prepare import split_dir
    from genre_ray.pipelines.train import cache_splits, split_bytes

    for split, size in (("train", 3000), ("val", 1000), ("test", 99999)):
        d = split_dir(tmp_path, split)
        d.mkdir(parents=True, exist_ok=True)
        (d / "part-0.parquet").write_bytes(b"x" * size)
    assert split_bytes(tmp_path) == 4000  # train + val only
    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "o"))
    assert cfg.cache_in_memory is None
    assert cache_splits(cfg, object_store_bytes=16001) and not cache_splits(cfg, object_store_bytes=16000)
    assert not cache_splits(cfg, object_store_bytes=0)  # unknown store size: stream
    assert cache_splits(cfg.model_copy(update={"cache_in_memory": True}), object_store_bytes=0)
    assert not cache_splits(cfg.model_copy(update={"cache_in_memory": False}), object_store_bytes=1e12)
    assert not cache_splits(cfg.model_copy(update={"deterministic_data": True}), object_store_bytes=1e12)


def test_device_cache_rule(tmp_path, monkeypatch):
    from genre_ray.config import TrainConfig
    from genre_ray.pipelines.train import DEVICE_CACHE_SHARE, device_cache_on

    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "o"))
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert cfg.device_cache is None
    assert device_cache_on(cfg, cpu, 10**12, small_splits=True) and not device_cache_on(cfg, cpu, 1, small_splits=False)
    free = 8 * 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 80 * 2**30))
    assert device_cache_on(cfg, gpu, int(DEVICE_CACHE_SHARE * free) - 1)
    assert not device_cache_on(cfg, gpu, int(DEVICE_CACHE_SHARE * free) + 1, small_splits=True)
    assert device_cache_on(cfg.model_copy(update={"device_cache": True}), gpu, 10**15)
    assert not device_cache_on(cfg.model_copy(update={"device_cache": False}), cpu, 1, small_splits=True)


@pytest.mark.slow
def test_compiled_classifier_compiles_once_and_gives_the_same_probabilities(tmp_path):
    """``torch_compile``: one static forward shape — calls of any size, the last batch padded — and the eager
    classifier's probabilities and embeddings. (Compiling on CPU takes tens of seconds: one small model, once.)"""
    import torch._dynamo

    from genre_ray.bundle import load_bundle
    from genre_ray.pipelines.label import WINDOW
    from genre_ray.pipelines.label_workers import COMPILE_BATCH

    bundle = load_bundle(sharp_bundle(tmp_path / "b"))
    rng = np.random.default_rng(0)
    eager = Classifier(bundle, 4, use_gpu=False, embeddings=True)
    assert Classifier(bundle, None, use_gpu=False, compile=True).batch_size == COMPILE_BATCH["cpu"]
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = Classifier(bundle, 4, use_gpu=False, embeddings=True, compile=True)
    assert compiled.tuner is None and compiled.batch_size == 4
    for n in (7, 4, 1):  # 4 + 3 padded, 4, 1 padded
        images = rng.random((n, *bundle.features.image_shape), dtype=np.float32).astype(np.float16)
        batch = {"path": np.array(["a"] * n, object), "kind": np.array([WINDOW] * n, object), "image": images}
        a, b = compiled(dict(batch)), eager(dict(batch))
        assert a["probs"].shape == (n, len(bundle.classes)) and a["emb"].shape == b["emb"].shape
        np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-5)
        np.testing.assert_allclose(a["emb"], b["emb"], atol=1e-4)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # compiled once for all three calls


def test_progress_heartbeat_speaks_while_nothing_finishes(capsys):
    p = Progress(total=5, every_s=0.05, already=0)
    p.restart()
    with p.heartbeat(lambda: "Ray: 1 node(s) alive"):
        time.sleep(0.4)
    out = capsys.readouterr().out
    assert "[label] waiting: no track finished for" in out and "(0/5 files); Ray: 1 node(s) alive" in out
    time.sleep(0.2)
    assert capsys.readouterr().out == ""  # the thread ends with the block

    def broken() -> str:
        raise ConnectionError("GCS unreachable")

    q = Progress(total=2, every_s=0.05, already=0)
    with q.heartbeat(broken):
        time.sleep(0.3)
    assert "cluster state unavailable: GCS unreachable" in capsys.readouterr().out

    busy = Progress(total=100, every_s=0.5, already=0)
    with busy.heartbeat(lambda: "x"):
        for _ in range(100):  # a track every 10 ms: never idle for a whole period (0.5 s: margin for a loaded box)
            busy.update({"status": "ok", "duration_s": 1.0})
            time.sleep(0.01)
    assert "waiting" not in capsys.readouterr().out
