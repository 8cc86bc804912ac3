"""Benchmark plumbing and --quick smoke runs (figures are measured by `genre-ray bench`, never asserted here)."""

from __future__ import annotations

import sys
from pathlib import Path

import soundfile as sf

from genre_ray.bench import BENCHMARKS, long_file, run_measured, synth_library
from genre_ray.cli import main


def test_memory_sampler_sees_a_child_allocation():
    code = "import numpy as np, time; a = np.ones(300 * 2**20 // 8); time.sleep(0.5)"
    m = run_measured([sys.executable, "-c", code], env={}, interval_s=0.05)
    assert m["returncode"] == 0
    assert 300 <= m["peak_rss_mb"]["driver"] < 1000 and m["peak_tree_rss_mb"] >= 300


def test_library_and_long_file_helpers(tmp_path):
    assert len(synth_library(tmp_path / "small", tracks=13, seconds=0.5)) == 13
    paths = synth_library(tmp_path / "lib", tracks=40, seconds=0.5)
    assert len(paths) == 40 and {p.suffix for p in paths} == {".wav", ".flac", ".mp3", ".ogg"}
    assert {(sf.info(p).samplerate, sf.info(p).channels) for p in paths} == {(22_050, 1)}
    cd = synth_library(tmp_path / "cd", tracks=10, seconds=0.5, sr=44_100, channels=2)
    assert {(sf.info(p).samplerate, sf.info(p).channels) for p in cd} == {(44_100, 2)}
    long = long_file(tmp_path / "long.flac", minutes=1.5)
    info = sf.info(long)
    assert info.frames == 90 * info.samplerate


def test_bench_cli_validates_arguments(capsys):
    assert {"label", "label-memory"} <= set(BENCHMARKS)
    assert main(["bench", "label", "--set", "bogus=1"]) == 2
    assert main(["bench", "nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# issue #7: stage benchmarks, the GPU path's pure parts
# ---------------------------------------------------------------------------------------------

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from genre_ray import accel  # noqa: E402
from genre_ray.bench import format_table, run_all  # noqa: E402
from genre_ray.bench import QUICK
from genre_ray.bench.stages import allocation_bound, shared_bound  # noqa: E402
from genre_ray.device_features import SegmentFeaturizer, track_segments  # noqa: E402
from genre_ray.features import FeatureConfig, track_window_images  # noqa: E402


def _rates(obj, path=""):
    """Every number under a key that names a rate (``*_per_s``, ``*per_s_*``), with its path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _rates(v, f"{path}.{k}")
    elif isinstance(obj, (int, float)) and "per_s" in path.rsplit(".", 1)[-1]:
        yield path, obj


def test_label_bounds_follow_where_each_featurize_mode_does_its_work():
    from genre_ray.bench.stages import _label_bounds

    per_core = {"decode": 600.0, "featurize": 300.0, "segment": 3000.0, "inference": 100.0, "write": 1e6}
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    # CPU, featurize tasks: decode + images on the CPU the 2 half-CPU actors leave (1), inference on 2 threads
    alloc, shared = _label_bounds(per_core, "cpu", cpu, 2, 2, 0.5, 1)
    assert alloc == pytest.approx(min(1 / (1 / 600 + 1 / 300), 2 * 100))
    assert shared == pytest.approx(shared_bound({k: v for k, v in per_core.items() if k != "segment"}, 2))
    # CPU, featurize=device: the tasks only decode and cut segments; the actors make the images and classify
    alloc, shared = _label_bounds(per_core, "device", cpu, 2, 2, 0.5, 1)
    assert alloc == pytest.approx(min(1 / (1 / 600 + 1 / 3000), 2 / (1 / 300 + 1 / 100)))
    assert shared == pytest.approx(shared_bound(per_core, 2))
    # GPU, featurize=device: the CPUs decode and cut; images and inference on the GPU (inference × threads)
    fast = {**per_core, "inference": 1e5}
    alloc, shared = _label_bounds(fast, "device", cuda, 16, 1, 1.0, 1)
    assert alloc == pytest.approx(16 / (1 / 600 + 1 / 3000))
    assert shared == pytest.approx(shared_bound({"decode": 600.0, "segment": 3000.0, "write": 1e6}, 16))
    # GPU, featurize=cpu: the CPU path's images cost the CPUs; a slow GPU caps both bounds
    alloc, shared = _label_bounds(per_core, "cpu", cuda, 16, 1, 1.0, 1)
    assert alloc == shared == pytest.approx(100.0)
    # GPU, featurize=device with the actor measured alone: the actors are a stage of their own (2 actors here)
    alloc, shared = _label_bounds({**fast, "actor": 500.0}, "device", cuda, 16, 2, 1.0, 1)
    assert alloc == shared == pytest.approx(1000.0)
    assert _label_bounds({**fast, "actor": 1e9}, "device", cuda, 16, 1, 1.0, 1) == _label_bounds(fast, "device", cuda,
                                                                                                16, 1, 1.0, 1)


def test_partial_results_survive_a_benchmark_that_dies(tmp_path):
    from genre_ray.bench import run_benchmark, save_partial

    def dies(workdir=None):
        save_partial({"benchmark": "dies", "first_phase": 1.0})
        raise RuntimeError("killed by its time limit")

    BENCHMARKS.register("test-dies")(dies)
    try:
        out = tmp_path / "r.json"
        with pytest.raises(RuntimeError):
            run_benchmark("test-dies", partial_out=out, workdir=str(tmp_path))
        assert json.loads(out.read_text()) == {"benchmark": "dies", "first_phase": 1.0, "partial": True}
        save_partial({"after": 1})  # outside a run: nowhere to write
        assert "after" not in out.read_text()
        out.unlink()
        with pytest.raises(RuntimeError):
            run_benchmark("test-dies", workdir=str(tmp_path))  # no --out: nothing written
        assert not out.exists()
    finally:
        del BENCHMARKS["test-dies"]


def test_repeated_library_links_every_file_under_new_names(tmp_path):
    from genre_ray.bench import repeated_library
    from genre_ray.pipelines.label import list_inputs

    paths = synth_library(tmp_path / "lib", tracks=10, seconds=0.5)
    root = repeated_library(tmp_path / "lib-x3", paths, 3)
    files = list_inputs(str(root))
    assert len(files) == 30 and len(set(files)) == 30
    assert sorted(Path(f).read_bytes() for f in files) == sorted(p.read_bytes() for p in paths for _ in range(3))
    assert repeated_library(tmp_path / "lib-x3", paths, 3) == root and len(list_inputs(str(root))) == 30


def test_bounds_of_a_pipeline():
    per_core = {"decode": 600.0, "featurize": 300.0, "inference": 100.0}
    # stages on their own CPUs: the slowest stage × its CPUs
    assert allocation_bound(per_core, {"decode": 1, "featurize": 1, "inference": 2}) == 200.0
    assert allocation_bound(per_core, {"decode": 0.25, "featurize": 1, "inference": 2}) == 150.0
    # every CPU runs any stage: one audio-second costs 1/600 + 1/300 + 1/100 CPU-seconds
    assert shared_bound(per_core, 2) == pytest.approx(2 / (1 / 600 + 1 / 300 + 1 / 100))


def test_precision_registry_picks_the_autocast_dtype():
    assert accel.autocast_dtype("cpu") is None  # fp32 on CPU
    assert accel.autocast_dtype("cuda", bf16_ok=True) is torch.bfloat16
    assert accel.autocast_dtype("cuda", bf16_ok=False) is None  # e.g. a T4: fp32, not emulated bf16
    assert accel.autocast_dtype("cpu", "bf16") is torch.bfloat16
    assert accel.autocast_dtype("cuda", "fp16", bf16_ok=False) is torch.float16
    with pytest.raises(ValueError, match="CUDA"):
        accel.autocast_dtype("cpu", "fp16")
    with pytest.raises(ValueError, match="unknown precision"):
        accel.autocast_dtype("cpu", "fp8")
    with accel.autocast_for("cpu", "bf16"):
        y = torch.nn.Linear(4, 2)(torch.ones(3, 4))
    assert y.dtype == torch.bfloat16
    with accel.autocast_for("cpu"):
        assert torch.nn.Linear(4, 2)(torch.ones(3, 4)).dtype == torch.float32


def test_models_and_inputs_are_channels_last_on_every_device():
    assert accel.memory_format("cuda") is torch.channels_last
    assert accel.memory_format("cpu") is torch.channels_last
    x = accel.to_input(torch.zeros(2, 1, 8, 8, dtype=torch.float16), "cpu")
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(1, 4, 3)
    ref = conv(torch.ones(2, 1, 8, 8))
    model = accel.prepare_model(conv, "cpu")
    assert model.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(model(x + 1), ref, atol=1e-6)


def test_a_bundle_saved_from_a_channels_last_model_stores_plain_tensors(tmp_path):
    from genre_ray.bundle import load_bundle, save_bundle
    from genre_ray.features import FeatureConfig
    from genre_ray.models import create_model

    model = accel.prepare_model(create_model("homebrew", num_classes=2, channels=[4, 4], dense=[8],
                                             input_size=[32, 32]), "cpu")
    save_bundle(tmp_path / "b", model, "homebrew", {"channels": [4, 4], "dense": [8], "input_size": [32, 32]},
                ["a", "b"], FeatureConfig())
    state = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)
    assert all(t.is_contiguous() for t in state.values())
    again = load_bundle(tmp_path / "b").build_model()
    x = torch.rand(3, 1, 32, 32)
    model.eval(), again.eval()
    assert torch.allclose(again(x), model(accel.to_input(x, "cpu")), atol=1e-6)


@pytest.mark.parametrize("seconds,hop_s,n_chunks,max_windows", [(20.0, 1.0, 7, 5), (9.7, 3.0, 1, 32),
                                                                  (4.0, 1.5, 3, 2), (2.0, 1.5, 1, 4)])
def test_device_featurization_matches_the_cpu_path(seconds, hop_s, n_chunks, max_windows):
    """Segments made where the audio is decoded, images made on the device: the CPU path's images (allclose)."""
    cfg = FeatureConfig(hop_s=hop_s)
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * cfg.sample_rate))
    wave = (0.3 * np.sin(t / 40.0) * np.sin(t / 9000.0) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    chunks = np.array_split(wave, n_chunks)
    pad = seconds < cfg.window_s
    ref = list(track_window_images(chunks, cfg, pad_short=pad))
    ref_images = np.concatenate([i for i, _ in ref]).astype(np.float32)
    segs = track_segments(chunks, cfg, pad_short=pad, max_windows=max_windows)
    assert all(len(s.frame_offsets) <= max_windows for s in segs)
    feat = SegmentFeaturizer(cfg, "cpu")
    # a bigger call first: its samples stay in the featurizer's buffer, between and after the next call's segments
    feat.images([s.samples[::-1] * 3 for s in segs] * 2, [s.frame_offsets for s in segs] * 2)
    images = feat.images([s.samples for s in segs], [s.frame_offsets for s in segs])
    assert images.shape == ref_images.shape and images.dtype == torch.float32
    np.testing.assert_allclose(images.numpy(), ref_images, atol=2e-3)  # float16 rounding of the reference
    # in any order, one segment a call or all at once: the same images
    again = torch.cat([feat.images([s.samples], [s.frame_offsets]) for s in segs])
    np.testing.assert_array_equal(again.numpy(), images.numpy())
    # offsets whose frames would reach past the segment's samples: refused, not computed from what lies beyond
    with pytest.raises(ValueError, match="reach past"):
        feat.images([segs[0].samples[:-1]], [segs[0].frame_offsets])
    np.testing.assert_allclose(np.concatenate([s.starts_s for s in segs]), np.concatenate([s for _, s in ref]))
    assert [s.first for s in segs] == list(np.cumsum([0] + [len(s.frame_offsets) for s in segs[:-1]]))


def test_untrained_benchmark_bundles_per_architecture(tmp_path):
    import torch

    from genre_ray.bench import demo_bundle
    from genre_ray.bundle import load_bundle

    for arch in ("homebrew", "resnet18"):
        bundle = load_bundle(str(demo_bundle(tmp_path / arch, arch=arch)))
        assert bundle.model_name == arch and len(bundle.classes) == 10
        with torch.no_grad():
            assert bundle.build_model().eval()(torch.zeros((2, *bundle.features.image_shape))).shape == (2, 10)


def test_table_and_quick_sizes_cover_the_benchmarks():
    assert {"decode", "spectrogram", "prepare", "train", "label", "cache", "label-memory"} <= set(BENCHMARKS)
    assert set(QUICK) <= set(BENCHMARKS)
    text = format_table({"benchmark": "x", "table": [["decode wav", 1234.5, "audio-s/s"]]})
    assert "decode wav" in text and "1,234.50" in text


def test_cpu_benchmarks_quick_via_the_cli(tmp_path, capsys):
    out = tmp_path / "decode.json"
    assert main(["bench", "decode", "--quick", "--set", f"workdir={tmp_path}", "--set", "formats=wav,flac,mp3",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["formats"]) == {"wav", "flac", "mp3"}
    assert all(result["formats"][f]["audio_s_per_s"] > 0 for f in result["formats"])
    steps = result["formats"]["mp3"]["steps"]  # where the time goes: codec, downmix, resampling
    assert steps["backend"] == "soundfile" and steps["sr_in"] == 44_100 and steps["channels"] == 2
    assert all(steps[k]["audio_s_per_s"] > 0 for k in ("read", "downmix", "resample"))
    assert sum(steps[k]["share"] for k in ("read", "downmix", "resample")) == pytest.approx(1.0, abs=0.01)
    assert result["quick"] and result["host"]["cpu_count"] >= 1 and len(result["host"]["loadavg"]) == 3
    assert "decode flac (1 core)" in capsys.readouterr().err
    assert main(["bench", "spectrogram", "--quick", "--set", f"workdir={tmp_path}", "--out", str(out)]) == 0
    cases = json.loads(out.read_text())["cases"]
    assert {"track_windower_cpu_1_thread", "segments_cpu_1_thread", "mel_only_cpu_1_thread"} <= set(cases)
    assert all(v["audio_s_per_s"] > 0 for v in cases.values())
    assert main(["bench", "all", "--skip", "nope"]) == 2


@pytest.mark.integration
def test_bench_all_quick(ray_session, mlflow_home, tmp_path):
    """Every Ray benchmark once at --quick size on the session's Ray: well-formed JSON, positive rates.
    (label-memory starts its own Ray per case in subprocesses; it is left to `genre-ray bench`.)"""
    result = run_all(quick=True, workdir=str(tmp_path), skip=["decode", "spectrogram", "inference", "label-memory"],
                     num_cpus=2, hop_s=1.5)
    json.dumps(result)  # JSON-able
    res = result["results"]
    assert set(res) == {"prepare", "train", "cache", "label"}
    assert not [r["error"] for r in res.values() if "error" in r]
    rates = dict(_rates(res))
    assert len(rates) >= 15 and all(v > 0 for v in rates.values()), rates
    assert res["prepare"]["windows"] > 0 and res["prepare"]["hop_s"] == res["train"]["hop_s"] == 1.5
    # 6-s clips, 3-s windows every 1.5 s: 3 windows a track
    assert res["prepare"]["windows"] == 3 * QUICK["prepare"]["tracks"]
    assert res["train"]["ray_vs_bare"] > 0 and res["train"]["bare_loop"]["samples_per_s"] > 0
    # Ray Train's own epochs, read back from the run's MLflow history: one per epoch, its median the reported rate
    per_epoch = res["train"]["ray_train_per_epoch"]
    assert len(per_epoch) == QUICK["train"]["epochs"] and all(r > 0 for r in per_epoch)
    assert res["train"]["ray_train_samples_per_s"] == pytest.approx(float(np.median(per_epoch)), abs=0.06)  # rounded
    assert res["label"]["end_to_end"]["status"] == {"ok": QUICK["label"]["tracks"]}
    assert set(res["label"]["stages"]["inference_windows_per_s_by_batch"]) == {"16", "64"}
    assert res["label"]["stages"]["inference_bare_windows_per_s"] > 0 and res["label"]["stages"]["inference_vs_bare"] > 0
    assert res["label"]["stages"]["inference_bare_unfolded_windows_per_s"] > 0
    assert 0 < res["label"]["efficiency"]["efficiency_shared"]
    e2e = res["label"]["end_to_end"]
    assert 0 < res["label"]["efficiency"]["work_efficiency_cpu"] and e2e["machine_cpu_seconds"] > 0
    assert 0 < e2e["startup_s"] <= e2e["label_seconds"] and e2e["steady_audio_s_per_s"] >= 0
    assert res["label"]["efficiency"]["steady_efficiency_shared"] >= 0
    stages = res["label"]["stages"]
    assert set(stages["before_end_to_end"]) == set(stages["after_end_to_end"]) == {"decode", "featurize", "segment",
                                                                                    "inference", "write"}
    # the decode-only pass over the same files and CPUs, and labelling against it
    dec = res["label"]["decode_pass"]
    assert dec["audio_s"] == pytest.approx(QUICK["label"]["tracks"] * QUICK["label"]["seconds"], rel=0.01)
    assert dec["end_to_end_vs_decode"] == round(e2e["audio_s_per_s"] / dec["audio_s_per_s"], 3)
    assert 1 <= dec["max_concurrent"] <= 2 and 0 < dec["busy_fraction"] <= 1.0
    assert dec["in_task_audio_s_per_s_per_core"] == pytest.approx(dec["audio_s"] / dec["busy_s"], rel=0.02)
    node = res["label"]["node_decode"]
    assert node["processes"] == 2 and node["audio_s"] == dec["audio_s"] and node["audio_s_per_s"] > 0
    assert node["steady_vs_node"] == round(e2e["steady_audio_s_per_s"] / node["audio_s_per_s"], 3)
    assert stages["decode_audio_s_per_s_one_core"] == max(stages["before_end_to_end"]["decode"],
                                                          stages["after_end_to_end"]["decode"])
    assert res["cache"]["cases"]["uint8 (x·255, rounded) snappy"]["max_abs_error"] <= 0.5 / 255 + 1e-3
    assert res["cache"]["cases"]["float16 (current) none"]["max_abs_error"] == 0.0


def test_featurizer_call_rate_counts_the_windows_of_each_call():
    from genre_ray.bench.stages import featurizer_call_rate

    cfg = FeatureConfig(hop_s=1.5)
    wave = np.random.default_rng(0).standard_normal(22_050 * 12).astype(np.float32) * 0.1
    segs = track_segments([wave], cfg, 1.5, max_windows=32)
    assert sum(len(s.frame_offsets) for s in segs) == 7  # 12-s track, 3-s windows every 1.5 s
    per_call = 2 * len(segs) + 1  # the track's segments cycled
    expect = sum(len(segs[i % len(segs)].frame_offsets) for i in range(per_call))
    r = featurizer_call_rate(wave, cfg, 1.5, SegmentFeaturizer(cfg, "cpu"), torch.device("cpu"), per_call, calls=2)
    assert r["windows_per_call"] == expect and r["segments_per_call"] == per_call
    assert r["audio_s_per_s"] == pytest.approx(r["windows_per_s"] * 1.5, rel=1e-3)


def test_actor_call_rate_times_the_device_actor_on_the_jobs_calls(tmp_path):
    """The featurize=device actor alone on Arrow calls of the job's size (CPU: 64 windows → 2 segment rows), and
    the NumPy-batch A/B, over at least ``min_calls`` calls."""
    from genre_ray.bench import demo_bundle, synth_library
    from genre_ray.bench.stages import actor_call_rate
    from genre_ray.bundle import load_bundle

    paths = synth_library(tmp_path / "lib", 3, 7.0)
    bundle = load_bundle(str(demo_bundle(tmp_path / "bundle")))
    r = actor_call_rate(paths, bundle, torch.device("cpu"), threads=1, batch_size=8, min_calls=3)
    assert r["rows_per_call"] == 2 and r["calls"] == 3
    assert 0 < r["windows_per_call"] <= 2 * 32
    for fmt in ("arrow", "numpy"):
        assert r[f"{fmt}_audio_s_per_s"] == pytest.approx(r[f"{fmt}_windows_per_s"] * bundle.features.hop_s, rel=1e-3)
    assert r["audio_s_per_s"] == r["arrow_audio_s_per_s"] > 0


def test_busy_profile_counts_overlap_and_fill():
    from genre_ray.bench.stages import busy_profile

    spans = [(0.0, 2.0), (1.0, 3.0), (1.5, 2.5), (3.0, 4.0)]  # three at once at 1.5–2.0
    p = busy_profile(spans, wall_s=4.0, cpus=2)
    assert p["max_concurrent"] == 3 and p["busy_s"] == 6.0 and p["busy_fraction"] == 0.75
    assert busy_profile([], 1.0, 2) == {"max_concurrent": 0, "busy_fraction": 0.0, "busy_s": 0}


def test_stage_sample_keeps_the_librarys_format_mix():
    from genre_ray.bench.stages import stage_sample

    # the bench library's layout: sorted by genre folder, 5 files of each format per genre
    lib = sorted(Path(f"/lib/{g}/{g}.{i:05d}.{fmt}") for g in "abcdefghij" for fmt in ("wav", "flac", "mp3", "ogg")
                 for i in range(5))
    sample = stage_sample(lib)
    assert len(sample) == 24 and len(set(sample)) == 24
    assert {s: sum(p.suffix == s for p in sample) for s in (".wav", ".flac", ".mp3", ".ogg")} == dict.fromkeys(
        (".wav", ".flac", ".mp3", ".ogg"), 6)
    assert len({p.parent for p in sample}) >= 9  # spread over the genres, not the first folders
    # uneven mix: 30 wav + 10 mp3 → 18 + 6; a library smaller than the sample is taken whole
    uneven = [Path(f"/l/{i}.wav") for i in range(30)] + [Path(f"/l/{i}.mp3") for i in range(10)]
    got = stage_sample(uneven)
    assert (sum(p.suffix == ".wav" for p in got), sum(p.suffix == ".mp3" for p in got)) == (18, 6)
    assert sorted(stage_sample(uneven[:5])) == sorted(uneven[:5])


def test_inference_sweep_times_host_and_device_images(tmp_path):
    import torch

    from genre_ray.bench import demo_bundle
    from genre_ray.bench.stages import inference_sweep
    from genre_ray.bundle import load_bundle

    bundle = load_bundle(str(demo_bundle(tmp_path / "bundle")))
    for on_device in (False, True):
        rates = inference_sweep(bundle, [2, 4], 8, 1, torch.device("cpu"), on_device=on_device)
        assert set(rates) == {2, 4} and all(r > 0 for r in rates.values())


def test_new_shape_cost_times_first_and_repeated_passes():
    import torch

    from genre_ray.bench.stages import new_shape_cost
    from genre_ray.models import create_model

    model = create_model("homebrew", 3, **{"input_size": [32, 32], "channels": [4, 8]})
    got = new_shape_cost(model, (1, 32, 32), torch.device("cpu"), sizes=(3, 5))
    assert got["sizes"] == [3, 5] and len(got["first_ms"]) == len(got["again_ms"]) == 2
    assert all(t > 0 for t in got["first_ms"] + got["again_ms"])
    assert isinstance(got["extra_ms_per_new_shape"], float)


def test_after_warmup_is_the_median_of_the_epochs_after_the_first():
    from genre_ray.bench.stages import after_warmup

    assert after_warmup([1_000.0]) is None
    assert after_warmup([1_000.0, 9_000.0, 11_000.0]) == 10_000.0  # not min(9,000, 11,000), as a 3-epoch median is
    assert after_warmup([1_000.0, 9_000.0, 11_000.0, 10_000.0]) == 10_000.0


def test_inference_benchmark_runs_the_stage_alone(tmp_path):
    """`bench inference` at --quick size on CPU: host images vs the bare model, no compile unless asked."""
    from genre_ray.bench import run_benchmark

    got = run_benchmark("inference", quick=True, workdir=str(tmp_path))
    assert got["arch"] == "homebrew" and set(got["host_images"]) == {"16", "64"}
    assert got["bare"] > 0 and got["host_vs_bare"] == round(got["host_images"][str(got["best_batch"])] / got["bare"], 3)
    assert got["bare_by_batch"] == {str(got["best_batch"]): got["bare"]}  # the ratio's two sides at one batch size
    assert "compiled" not in got and "device_images" not in got  # CPU: no device images, no compile by default


@pytest.mark.slow
def test_compiled_inference_compiles_once_and_times_both_inputs(tmp_path):
    import torch

    from genre_ray.bench import demo_bundle
    from genre_ray.bench.stages import compiled_inference
    from genre_ray.bundle import load_bundle

    from torch._dynamo.utils import counters

    bundle = load_bundle(str(demo_bundle(tmp_path / "bundle")))
    torch._dynamo.reset()
    counters.clear()
    got = compiled_inference(bundle, 8, 16, 1, torch.device("cpu"))
    assert counters["stats"]["unique_graphs"] == 1  # the bare passes reuse the stage's graph: nothing recompiled
    assert got["batch_size"] == 8 and got["windows"] == 16 and got["compile_s"] > 0
    assert all(got[k] > 0 for k in ("host_images", "device_images", "bare"))
    assert got["device_vs_bare"] == round(got["device_images"] / got["bare"], 3)
