"""Stage benchmarks (issue #7): decode, spectrogram, prepare, train (Ray Train vs a bare loop), label stages
(+ pipeline efficiency), spectrogram cache formats. Registered in :data:`genre_ray.bench.core.BENCHMARKS`.

Every benchmark returns a JSON-able dict with a ``table`` (rows ``[what, value, unit]``) that
``genre-ray bench`` prints. Rates are measured, never asserted; ``core.QUICK`` holds the CI-friendly sizes
(``genre-ray bench NAME --quick``). Ray runs in this process (``init_ray``: an already running Ray is reused);
MLflow runs of the train/label benchmarks go to a private sqlite store in the benchmark's work folder.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from genre_ray.bench.core import (DEMO_KWARGS, _workdir, demo_bundle, register_benchmark, synth_library,
                                  synth_workers)

SR = 22_050


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (restored afterwards)."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def private_mlflow(home: Path) -> Iterator[None]:
    """MLflow runs of a benchmark go to ``home/mlflow.db`` (``GENRE_RAY_HOME``), not the user's store."""
    keys = ("GENRE_RAY_HOME", "MLFLOW_TRACKING_URI")
    old = {k: os.environ.get(k) for k in keys}
    os.environ["GENRE_RAY_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls of ``fn`` (≥ 1) and the last result."""
    best, out = math.inf, None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def rate(n: float, seconds: float) -> float:
    return round(n / seconds, 2) if seconds > 0 else 0.0


def allocation_bound(per_core: dict[str, float], cpus: dict[str, float]) -> float:
    """Throughput the stages allow when stage ``s`` runs on ``cpus[s]`` CPUs at ``per_core[s]`` units/s per CPU:
    the slowest stage's ``per_core × cpus`` (a stage with no CPUs of its own, e.g. the driver's writer, counts at
    one CPU)."""
    return min(per_core[s] * (cpus.get(s) or 1.0) for s in per_core)


def shared_bound(per_core: dict[str, float], total_cpus: float) -> float:
    """Throughput the stages allow when every CPU may run any stage: ``total_cpus / Σ_s 1 / per_core[s]``
    (each unit of work costs ``Σ 1/r_s`` CPU-seconds)."""
    return total_cpus / sum(1.0 / r for r in per_core.values())


def _stereo_clip(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """``(T, 2)`` float32: a synthetic rock clip and a slightly different right channel."""
    from genre_ray.synth import clip_seed, synth_clip

    left = synth_clip("rock", seconds, sr=sr, rng=np.random.default_rng(clip_seed(seed, "rock", 0)))
    right = np.roll(left, 37) * 0.9
    return np.stack([left, right], axis=1).astype(np.float32)


def write_clip(path: Path, wave: np.ndarray, sr: int) -> Path:
    """Write ``(T, C)`` float32 as ``path``'s format: soundfile for wav/flac/mp3/ogg, PyAV (AAC) for m4a."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".m4a":
        import av

        with av.open(str(path), "w", format="mp4") as out:
            stream = out.add_stream("aac", rate=sr)
            stream.layout = "stereo" if wave.shape[1] == 2 else "mono"
            for i in range(0, len(wave), 1024):
                block = np.ascontiguousarray(wave[i:i + 1024].T)
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=stream.layout.name)
                frame.sample_rate = sr
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return path
    import soundfile as sf

    from genre_ray.synth import _format_for

    major, subtype = _format_for(path.suffix)
    with sf.SoundFile(path, "w", samplerate=sr, channels=wave.shape[1], format=major, subtype=subtype) as f:
        for i in range(0, len(wave), 1 << 16):
            f.write(wave[i:i + (1 << 16)])
    return path


def _decode_all(path: str | Path) -> int:
    from genre_ray import audio

    return sum(len(b) for b in audio.decode_stream(str(path), SR))


def _prepared_dir(work: Path, tracks: int, seconds: float, hop_s: float) -> Path:
    """Where :func:`_prepared` keeps the prepared folder of that corpus size and hop."""
    return work / (f"prepared-{tracks}x{seconds:g}s" + (f"-hop{hop_s:g}s" if hop_s != 3.0 else ""))


def _prepared(work: Path, tracks: int, seconds: float, num_cpus: int, hop_s: float = 3.0) -> tuple[Path, float]:
    """A prepared folder of ``tracks`` synthetic wav clips, windows every ``hop_s`` seconds (made once; reused by
    train/cache) → (path, prepare s)."""
    from genre_ray.config import PrepareConfig
    from genre_ray.features import FeatureConfig
    from genre_ray.pipelines.common import init_ray
    from genre_ray.pipelines.prepare import run_prepare
    from genre_ray.synth import write_corpus

    out = _prepared_dir(work, tracks, seconds, hop_s)
    if (out / "meta.json").is_file():
        return out, -1.0
    corpus = work / f"corpus-{tracks}x{seconds:g}s"
    if not (corpus / ".complete").is_file():
        write_corpus(corpus, genres=10, per_genre=max(1, tracks // 10), seconds=seconds, workers=synth_workers())
        (corpus / ".complete").touch()
    cfg = PrepareConfig(source=str(corpus), out=str(out), features=FeatureConfig(hop_s=hop_s),
                        ray={"num_cpus": num_cpus})
    init_ray(cfg.ray)
    t0 = time.perf_counter()
    run_prepare(cfg)
    return out, time.perf_counter() - t0


def _load_split(prepared: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """All images ``(N, 1, H, W)`` float16 and labels ``(N,)`` of a prepared split, read with pyarrow."""
    import pyarrow.parquet as pq

    from genre_ray.pipelines.prepare import split_dir

    t = pq.read_table(split_dir(prepared, split), columns=["image", "label_idx"])
    images = t.column("image").combine_chunks().to_numpy_ndarray()
    return np.ascontiguousarray(images), t.column("label_idx").to_numpy()


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (``/proc/stat``: all but idle and iowait) — what a job and
    every process it started (Ray's workers, actors that exit before the job ends) burned, on an otherwise idle
    box. Subtract two readings for an interval; 0.0 where ``/proc/stat`` is missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# decode
# ---------------------------------------------------------------------------------------------


def decode_steps(path: str | Path, repeats: int = 3) -> dict[str, Any]:
    """Where one file's ``audio.decode_stream`` time goes, each step alone on this thread (best of ``repeats``):
    the backend's blocks (the codec, and libsndfile's or PyAV's conversion to float32), the downmix
    (``audio.to_mono``) and the resampling to 22,050 Hz (``soxr.ResampleStream`` HQ, as the stream runs it);
    audio-s/s of each and its share of their sum."""
    import soxr

    from genre_ray import audio

    path = str(path)
    for name in audio.STREAM_DECODERS:  # the backend decode_stream would use: the first that opens the file
        try:
            sr_in, blocks = audio.STREAM_DECODERS[name](path, 480_000)
            break
        except Exception:  # noqa: BLE001 - the next backend is tried, as decode_stream does
            continue
    else:
        raise audio.DecodeError(f"{path}: no decoder could read it")
    raw = list(blocks)
    seconds = sum(len(b) for b in raw) / sr_in

    def read() -> None:
        for _ in audio.STREAM_DECODERS[name](path, 480_000)[1]:
            pass

    mono = [audio.to_mono(b) for b in raw]

    def resample() -> None:
        stream = soxr.ResampleStream(sr_in, SR, 1, dtype="float32", quality="HQ")
        for b in mono:
            stream.resample_chunk(b)
        stream.resample_chunk(np.zeros(0, np.float32), last=True)

    times = {"read": best_time(read, repeats)[0],
             "downmix": best_time(lambda: [audio.to_mono(b) for b in raw], repeats)[0],
             "resample": best_time(resample, repeats)[0] if sr_in != SR else 0.0}
    total = sum(times.values())
    return {"backend": name, "sr_in": sr_in, "channels": int(raw[0].shape[1]) if raw and raw[0].ndim == 2 else 1,
            **{k: {"audio_s_per_s": rate(seconds, t), "share": round(t / total, 3) if total else 0.0}
               for k, t in times.items()}}


@register_benchmark("decode")
def bench_decode(seconds: float = 60.0, repeats: int = 3, formats: str = "wav,flac,mp3,ogg,m4a", sr_in: int = 44_100,
                 workdir: str | None = None) -> dict[str, Any]:
    """Audio-seconds decoded per second on one core (one process, one thread): ``audio.decode_stream`` — decode,
    downmix, soxr resampling to 22,050 Hz, what prepare and label run — on a ``seconds`` stereo clip per format."""
    work = _workdir(workdir, "decode")
    wave = _stereo_clip(seconds, sr_in)
    results: dict[str, Any] = {}
    table = []
    with torch_threads(1):
        for fmt in [f.strip() for f in formats.split(",") if f.strip()]:
            path = work / f"clip-{seconds:g}s-{sr_in}.{fmt}"
            try:
                if not path.is_file():
                    write_clip(path, wave, sr_in)
                _decode_all(path)  # warm-up (codec set-up, page cache)
                secs, n = best_time(lambda: _decode_all(path), repeats)
            except Exception as exc:  # e.g. no AAC encoder in this PyAV build
                results[fmt] = {"skipped": f"{type(exc).__name__}: {exc}"}
                continue
            results[fmt] = {"audio_s_per_s": rate(n / SR, secs), "x_realtime_per_core": rate(n / SR, secs),
                            "seconds": round(secs, 4), "bytes": path.stat().st_size,
                            "steps": decode_steps(path, repeats)}
            table.append([f"decode {fmt} (1 core)", results[fmt]["audio_s_per_s"], "audio-s/s"])
    return {"benchmark": "decode", "clip_seconds": seconds, "sr_in": sr_in, "channels": 2, "repeats": repeats,
            "formats": results, "table": table}


# ---------------------------------------------------------------------------------------------
# spectrogram
# ---------------------------------------------------------------------------------------------


def _windower_run(wave: np.ndarray, cfg, hop_s: float) -> int:
    from genre_ray.features import track_window_images

    chunks = (wave[i:i + 10 * SR] for i in range(0, len(wave), 10 * SR))
    return sum(len(im) for im, _ in track_window_images(chunks, cfg, hop_s))


def _segments_run(wave: np.ndarray, cfg, hop_s: float, feat, device: torch.device) -> int:
    from genre_ray.device_features import track_segments

    segs = track_segments((wave[i:i + 10 * SR] for i in range(0, len(wave), 10 * SR)), cfg, hop_s)
    n = 0
    for i in range(0, len(segs), 8):  # 8 segments (≤ 256 windows) per device call
        part = segs[i:i + 8]
        n += len(feat.images([s.samples for s in part], [s.frame_offsets for s in part]))
    _sync(device)
    return n


def featurizer_call_rate(wave: np.ndarray, cfg, hop_s: float, feat, device: torch.device, per_call: int,
                         calls: int) -> dict[str, float]:
    """The device side alone at the label actor's call size: ``per_call`` segments of the track (its segments
    repeated) per :meth:`SegmentFeaturizer.images` call, host arrays in, images on ``device`` out; windows/s and
    audio-s/s (windows × hop) over ``calls`` calls after a warm-up call."""
    from genre_ray.device_features import track_segments

    segs = track_segments([wave], cfg, hop_s)
    batch = [segs[i % len(segs)] for i in range(per_call)]
    samples, offsets = [s.samples for s in batch], [s.frame_offsets for s in batch]
    feat.images(samples, offsets)
    _sync(device)
    t0 = time.perf_counter()
    n = sum(len(feat.images(samples, offsets)) for _ in range(calls))
    _sync(device)
    secs = time.perf_counter() - t0
    return {"windows_per_s": rate(n, secs), "audio_s_per_s": rate(n * hop_s, secs), "segments_per_call": per_call,
            "windows_per_call": n // calls}


@register_benchmark("spectrogram")
def bench_spectrogram(seconds: float = 120.0, hop_s: float = 3.0, repeats: int = 2,
                      workdir: str | None = None) -> dict[str, Any]:
    """Featurization rate (waveform → window images) of one ``seconds`` track: the CPU path (``TrackWindower``)
    on one thread and on all threads; the device path (``SegmentWindower`` + ``SegmentFeaturizer``) on CPU and,
    when CUDA is there, on the GPU; and the issue's plain mel spectrogram (n_fft 2048, hop 512, 128 mels)."""
    from genre_ray.device_features import SegmentFeaturizer
    from genre_ray.features import FeatureConfig, mel_filterbank
    from genre_ray.synth import clip_seed, synth_clip

    cfg = FeatureConfig(hop_s=hop_s)
    wave = synth_clip("jazz", seconds, sr=SR, rng=np.random.default_rng(clip_seed(0, "jazz", 0))).astype(np.float32)
    cases: dict[str, Any] = {}
    threads_all = os.cpu_count() or 1
    _windower_run(wave[: 12 * SR], cfg, hop_s)  # warm-up: filterbank cache, torch's first calls
    _segments_run(wave[: 12 * SR], cfg, hop_s, SegmentFeaturizer(cfg, "cpu"), torch.device("cpu"))
    for name, threads in (("cpu_1_thread", 1), (f"cpu_{threads_all}_threads", threads_all)):
        with torch_threads(threads):
            secs, n = best_time(lambda: _windower_run(wave, cfg, hop_s), repeats)
            cases[f"track_windower_{name}"] = {"audio_s_per_s": rate(seconds, secs), "windows_per_s": rate(n, secs)}
            feat = SegmentFeaturizer(cfg, "cpu")
            secs, n = best_time(lambda: _segments_run(wave, cfg, hop_s, feat, torch.device("cpu")), repeats)
            cases[f"segments_{name}"] = {"audio_s_per_s": rate(seconds, secs), "windows_per_s": rate(n, secs)}
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        if device.type == "cuda":
            feat = SegmentFeaturizer(cfg, device)
            _segments_run(wave, cfg, hop_s, feat, device)  # warm-up
            secs, n = best_time(lambda: _segments_run(wave, cfg, hop_s, feat, device), max(repeats, 3))
            cases["segments_cuda"] = {"audio_s_per_s": rate(seconds, secs), "windows_per_s": rate(n, secs)}
            # the label actor's call: CALL_WINDOWS[GPU] windows as segments of MAX_WINDOWS, device work only
            from genre_ray.pipelines.label_workers import CALL_WINDOWS, MAX_WINDOWS

            cases["featurizer_cuda_actor_call"] = featurizer_call_rate(
                wave, cfg, hop_s, feat, device, CALL_WINDOWS[True] // MAX_WINDOWS, 10)
        # the recipe: a plain mel power spectrogram of the whole track
        window, fbank = torch.hann_window(2048, device=device), mel_filterbank(FeatureConfig()).to(device)
        x = torch.from_numpy(wave).to(device)

        def mel() -> torch.Tensor:
            s = torch.stft(x, 2048, 512, window=window, return_complex=True)
            m = torch.matmul((s.real.square() + s.imag.square()).T, fbank)
            _sync(device)
            return m

        with torch_threads(1 if device.type == "cpu" else threads_all):
            mel()
            secs, _ = best_time(mel, max(repeats, 3))
        cases[f"mel_only_{device.type}" + ("_1_thread" if device.type == "cpu" else "")] = {
            "audio_s_per_s": rate(seconds, secs)}
    table = [[f"spectrogram {k}", v["audio_s_per_s"], "audio-s/s"] for k, v in cases.items()]
    return {"benchmark": "spectrogram", "track_seconds": seconds, "hop_s": hop_s, "window_s": cfg.window_s,
            "image": list(cfg.image_shape), "cases": cases, "table": table}


# ---------------------------------------------------------------------------------------------
# prepare (Ray Data)
# ---------------------------------------------------------------------------------------------


@register_benchmark("prepare")
def bench_prepare(tracks: int = 40, seconds: float = 30.0, num_cpus: int = 2, hop_s: float = 3.0,
                  workdir: str | None = None) -> dict[str, Any]:
    """``genre-ray prepare`` through Ray Data on ``tracks`` synthetic wav clips, windows every ``hop_s`` s: windows/s
    and audio-s/s (wall time of ``run_prepare`` once Ray is up, catalog and Parquet writing included)."""
    import json
    import shutil

    work = _workdir(workdir, "prepare")
    out = _prepared_dir(work, tracks, seconds, hop_s)
    if out.exists():
        shutil.rmtree(out)  # always measure a fresh run
    prepared, secs = _prepared(work, tracks, seconds, num_cpus, hop_s)
    meta = json.loads((prepared / "meta.json").read_text())
    windows = sum(meta["windows"].values())
    audio_s = sum(meta["tracks"].values()) * seconds
    return {"benchmark": "prepare", "tracks": tracks, "seconds_per_track": seconds, "hop_s": hop_s, "num_cpus": num_cpus,
            "windows": windows, "prepare_s": round(secs, 2), "windows_per_s": rate(windows, secs),
            "audio_s_per_s": rate(audio_s, secs),
            "table": [["prepare windows/s (Ray Data)", rate(windows, secs), "windows/s"],
                      ["prepare audio-s/s (Ray Data)", rate(audio_s, secs), "audio-s/s"]]}


# ---------------------------------------------------------------------------------------------
# train: Ray Train vs the same step in a bare loop; cache read
# ---------------------------------------------------------------------------------------------


def bare_train_rate(model_name: str, model_kwargs: dict[str, Any], images: np.ndarray, labels: np.ndarray,
                    num_classes: int, batch_size: int, epochs: int, threads: int, device: torch.device,
                    lr: float = 1e-3, bn_batches: int = 16, seed: int = 0, compile: bool = False,
                    cudnn_benchmark: bool = True, fused_optimizer: bool | None = None) -> dict[str, float]:
    """Training samples/s of ``train_epoch`` (the Ray Train worker's step) over in-memory tensors, no Ray:
    ``images (N, 1, H, W)``, ``labels (N,)`` held on ``device`` (the issue's raw recipe: data already on the GPU) in a
    :class:`~genre_ray.training.DeviceCache`, a seeded shuffle per epoch; median over ``epochs`` epochs. ``compile``:
    ``torch.compile`` the model, as ``TrainConfig.torch_compile`` does in the Ray Train worker."""
    from torch import nn

    from genre_ray import accel
    from genre_ray.models import create_model
    from genre_ray.training import DeviceCache, lr_schedule, make_optimizer, seed_everything, train_epoch

    seed_everything(seed)
    accel.cudnn_autotune(device, cudnn_benchmark)  # as TrainConfig.cudnn_benchmark does in the Ray Train worker
    model = accel.prepare_model(create_model(model_name, num_classes=num_classes, **model_kwargs), device)  # as Ray's
    if compile:
        model.compile()  # in place, as the train loop does
    optimizer = make_optimizer(model, lr, fused=fused_optimizer)
    steps = max(1, -(-len(labels) // batch_size))
    scheduler = lr_schedule(optimizer, "cosine", epochs * steps)
    loss_fn = nn.CrossEntropyLoss()
    data = DeviceCache(torch.from_numpy(images).to(device), torch.from_numpy(labels.astype(np.int64)).to(device))
    rates = []
    with torch_threads(threads):
        for epoch in range(epochs):
            batches = data.batches(batch_size, seed * 1000 + epoch)
            _sync(device)
            t0 = time.perf_counter()
            totals = train_epoch(model, batches, optimizer, loss_fn, device, scheduler, 5.0, bn_batches)
            _sync(device)
            rates.append(totals.n / (time.perf_counter() - t0))
    return {"samples_per_s": round(float(np.median(rates)), 2), "epochs": epochs,
            "per_epoch": [round(r, 2) for r in rates], "after_warmup": after_warmup(rates)}


def after_warmup(per_epoch: list[float]) -> float | None:
    """Median samples/s of the epochs after the first — which carries cuDNN's autotuning, the allocator's growth
    and (with ``torch_compile``) compilation; None with one epoch. The median over every epoch, with three epochs,
    is the slower of the last two whenever the first is slowest: one noisy epoch decides it."""
    return round(float(np.median(per_epoch[1:])), 2) if len(per_epoch) > 1 else None


def cache_read_rate(prepared: Path, num_cpus: int, batch_size: int = 256) -> dict[str, float]:
    """Rows/s reading the prepared train split: pyarrow in this process, and Ray Data ``iter_torch_batches``."""
    import ray

    from genre_ray.pipelines.prepare import split_dir

    secs, (images, _) = best_time(lambda: _load_split(prepared), 2)
    ds = ray.data.read_parquet(str(split_dir(prepared, "train")), columns=["image", "label_idx"])
    ds.count()  # list files once (metadata) before timing
    t0 = time.perf_counter()
    n = sum(len(b["label_idx"]) for b in ds.iter_torch_batches(batch_size=batch_size, prefetch_batches=2))
    ray_s = time.perf_counter() - t0
    return {"pyarrow_rows_per_s": rate(len(images), secs), "pyarrow_mb_per_s": rate(images.nbytes / 2**20, secs),
            "ray_iter_torch_batches_rows_per_s": rate(n, ray_s)}


def _bare_in_worker(model_name: str, model_kwargs: dict[str, Any], images: np.ndarray, labels: np.ndarray,
                    num_classes: int, batch_size: int, epochs: int, threads: int, device_type: str,
                    **kw: Any) -> dict[str, Any]:
    """:func:`bare_train_rate` as a Ray task (``bench_train(bare_in_ray=True)``), with the task's niceness."""
    out = bare_train_rate(model_name, model_kwargs, np.array(images), np.array(labels), num_classes, batch_size,
                          epochs, threads, torch.device(device_type), **kw)  # copies: the object store's are read-only
    return {**out, "niceness": os.nice(0)}


def _niceness() -> int:
    """This process's Unix niceness (run as a Ray task: a Ray worker's)."""
    return os.nice(0)


@register_benchmark("train")
def bench_train(model: str = "homebrew", epochs: int = 3, bare_epochs: int = 3, batch_size: int | None = None,
                tracks: int = 40, seconds: float = 30.0, num_cpus: int = 2, cpus_per_worker: float = 1.0,
                use_gpu: bool | None = None, torch_compile: bool = False, cache_in_memory: bool | None = None,
                device_cache: bool | None = None, hop_s: float = 3.0, workdir: str | None = None,
                worker_niceness: int | None = None, cudnn_benchmark: bool = True,
                fused_optimizer: bool | None = None, bare_in_ray: bool = True, cache_read: bool = True) -> dict[str, Any]:
    """Training samples/s through Ray Train (``run_train``: 1 worker, median epoch; its shard streamed, held in the
    object store or on the device per ``cache_in_memory`` / ``device_cache``, None = the job's rules) and of the same
    ``train_epoch`` in a bare loop over tensors on the device in this process (ratio = Ray / bare), on a
    prepared synthetic corpus; plus the cache read throughput. ``model=homebrew`` uses the demo's CNN; batch size
    32 on CPU (the demo's), 128 on GPU. ``worker_niceness``: Ray's workers' (``RayConfig.worker_niceness``, when
    this process starts Ray; None = Ray's 15) — the bare loop runs at this process's; both are recorded.
    ``cudnn_benchmark``, ``fused_optimizer``: ``TrainConfig``'s, for both loops. ``bare_in_ray``: the bare loop
    once more inside a Ray task with the Ray Train worker's resources (a Ray worker process: its niceness, its
    environment, no Ray Train): near the bare loop → what Ray Train itself adds costs the difference; near Ray
    Train → the worker process does. ``cache_read``: also the prepared split's read throughput (pyarrow, Ray Data)."""
    import json

    import ray

    from genre_ray.bench.core import save_partial
    from genre_ray.config import RayConfig, TrainConfig
    from genre_ray.pipelines.common import init_ray
    from genre_ray.pipelines.train import run_train

    init_ray(RayConfig(num_cpus=num_cpus, worker_niceness=worker_niceness))  # before prepare's: the bench's settings
    work = _workdir(workdir, "train")
    prepared, _ = _prepared(work, tracks, seconds, num_cpus, hop_s)
    meta = json.loads((prepared / "meta.json").read_text())
    features_hw = [meta["features"]["height"], meta["features"]["width"]]
    use_gpu = torch.cuda.is_available() if use_gpu is None else use_gpu
    batch_size = batch_size or (128 if use_gpu else 32)
    kwargs = {**DEMO_KWARGS, "input_size": features_hw} if model == "homebrew" else {}
    cfg_kw: dict[str, Any] = {"data": str(prepared), "out": str(work / f"run-{model}"), "model": model,
                              "model_kwargs": kwargs, "epochs": epochs, "batch_size": batch_size, "num_workers": 1,
                              "cpus_per_worker": cpus_per_worker, "use_gpu": use_gpu, "experiment": "genre-ray-bench",
                              "ray": {"num_cpus": num_cpus}, "cudnn_benchmark": cudnn_benchmark,
                              "fused_optimizer": fused_optimizer}
    if torch_compile:
        cfg_kw["torch_compile"] = True
    cfg_kw["cache_in_memory"] = cache_in_memory  # None: the job's rule (cached when the splits are small)
    cfg_kw["device_cache"] = device_cache  # None: the job's rule (on a GPU when the worker's share fits)
    cfg = TrainConfig(**cfg_kw)
    device = torch.device("cuda" if use_gpu else "cpu")
    # the bare loop first (seconds), its figure saved: a run cut by a time limit during Ray Train keeps it
    images, labels = _load_split(prepared)
    bare = bare_train_rate(model, kwargs, images, labels, len(meta["classes"]), batch_size, bare_epochs,
                           max(1, int(cpus_per_worker)), device, lr=cfg.lr, bn_batches=cfg.bn_recalibrate_batches,
                           compile=torch_compile, cudnn_benchmark=cudnn_benchmark, fused_optimizer=fused_optimizer)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the GPU's memory back for the Ray Train worker
    worker_nice = ray.get(ray.remote(num_cpus=0)(_niceness).remote())
    in_ray = None
    if bare_in_ray:
        task = ray.remote(num_cpus=cpus_per_worker, num_gpus=1 if use_gpu else 0)(_bare_in_worker)
        in_ray = ray.get(task.remote(model, kwargs, images, labels, len(meta["classes"]), batch_size, bare_epochs,
                                     max(1, int(cpus_per_worker)), device.type, lr=cfg.lr,
                                     bn_batches=cfg.bn_recalibrate_batches, compile=torch_compile,
                                     cudnn_benchmark=cudnn_benchmark, fused_optimizer=fused_optimizer))
    del images, labels
    result: dict[str, Any] = {"benchmark": "train", "model": model, "model_kwargs": kwargs, "device": device.type,
                              "hop_s": hop_s, "cache_in_memory": cache_in_memory, "device_cache": device_cache,
                              "batch_size": batch_size, "torch_compile": torch_compile,
                              "cpus_per_worker": cpus_per_worker, "train_windows": meta["windows"]["train"],
                              "epochs": epochs, "bare_loop": bare, "bare_loop_in_ray_task": in_ray,
                              "cudnn_benchmark": cudnn_benchmark,
                              "fused_optimizer": fused_optimizer,
                              # Unix niceness: Ray starts its workers at 15 unless told otherwise; the bare loop
                              # runs at this process's
                              "niceness": {"bare_loop": os.nice(0), "ray_worker": worker_nice}}
    save_partial(result)
    with private_mlflow(work / "home"):
        report = run_train(cfg)
        from mlflow.tracking import MlflowClient

        from genre_ray.tracking import tracking_uri

        history = MlflowClient(tracking_uri()).get_metric_history(report["run_id"], "samples_per_second")
    ray_epochs = [m.value for m in sorted(history, key=lambda m: m.step)]
    ray_rate = float(report["samples_per_second"])
    ratio = round(ray_rate / bare["samples_per_s"], 3)
    result.update(ray_train_samples_per_s=ray_rate, ray_vs_bare=ratio,
                  ray_train_per_epoch=[round(r, 2) for r in ray_epochs],
                  ray_train_after_warmup=after_warmup(ray_epochs))
    if result["ray_train_after_warmup"] and bare["after_warmup"]:  # the steadier figure: epochs after the first
        result["ray_vs_bare_after_warmup"] = round(result["ray_train_after_warmup"] / bare["after_warmup"], 3)
    if in_ray:
        result["bare_in_ray_task_vs_bare"] = round(in_ray["samples_per_s"] / bare["samples_per_s"], 3)
    save_partial(result)
    cache = cache_read_rate(prepared, num_cpus) if cache_read else {"pyarrow_rows_per_s": None,
                                                                     "ray_iter_torch_batches_rows_per_s": None}
    return {**result, "cache_read": cache,
            "table": [[f"train {model} Ray Train (1 worker)", ray_rate, "samples/s"],
                      [f"train {model} bare loop", bare["samples_per_s"], "samples/s"],
                      ["train Ray / bare", ratio, "ratio"],
                      *([["train Ray / bare, epochs after the first", result["ray_vs_bare_after_warmup"], "ratio"]]
                        if "ray_vs_bare_after_warmup" in result else []),
                      *([[f"train {model} bare loop in a Ray task (niceness {in_ray['niceness']})",
                          in_ray["samples_per_s"], "samples/s"],
                         ["train bare in a Ray task / bare", result["bare_in_ray_task_vs_bare"], "ratio"]]
                        if in_ray else []),
                      ["cache read pyarrow", cache["pyarrow_rows_per_s"], "rows/s"],
                      ["cache read Ray Data iter_torch_batches", cache["ray_iter_torch_batches_rows_per_s"], "rows/s"]]}


# ---------------------------------------------------------------------------------------------
# label: each stage alone, then end to end
# ---------------------------------------------------------------------------------------------


def inference_sweep(bundle, batch_sizes: list[int], windows: int, threads: int, device: torch.device,
                    cpu_per_window: dict[int, float] | None = None, overlap: bool = False,
                    on_device: bool = False) -> dict[int, float]:
    """Bare inference windows/s of ``bundle``'s model on random float16 images per batch size (``windows``
    images each, after one warm-up batch), through the label actor's ``window_outputs`` (probabilities and
    embeddings from host arrays — the ``featurize=cpu`` path's images; ``overlap``: copies overlapped with compute
    on CUDA — or, ``on_device``, from a float16 tensor already on ``device``: the images ``featurize=device``, the
    GPU default, makes there); ``cpu_per_window``, when given, receives this thread's CPU seconds per window for
    each batch size."""
    from genre_ray import accel
    from genre_ray.embedding import window_outputs

    model = accel.inference_model(accel.prepare_model(bundle.build_model(), device))  # the label actors' form
    rng = np.random.default_rng(0)
    out = {}
    with torch_threads(threads):
        for bs in batch_sizes:
            n = max(bs, windows // bs * bs)
            images = rng.random((n, *bundle.features.image_shape), dtype=np.float32).astype(np.float16)
            if on_device:
                images = torch.from_numpy(images).to(device)
            window_outputs(model, images[:bs], device, bs, overlap=overlap)
            _sync(device)
            t0, c0 = time.perf_counter(), time.thread_time()
            window_outputs(model, images, device, bs, overlap=overlap)
            _sync(device)
            out[bs] = rate(n, time.perf_counter() - t0)
            if cpu_per_window is not None:
                cpu_per_window[bs] = (time.thread_time() - c0) / n
    return out


def bare_inference_rate(model: torch.nn.Module, image_shape: tuple[int, ...], batch_size: int, windows: int,
                        threads: int, device: torch.device) -> float:
    """Windows/s of the model alone — the ceiling of the label job's inference stage: one random batch already on
    ``device`` in the model's input layout, forward passes under the device's autocast, nothing copied to or from
    the host (the issue's "raw PyTorch" recipe); ``max(2, windows // batch_size)`` timed passes after a warm-up."""
    from genre_ray import accel

    reps = max(2, windows // batch_size)
    model.eval()
    with torch_threads(threads), torch.inference_mode(), accel.autocast_for(device):
        # made under inference_mode, as window_outputs' inputs are: a compiled model's guards tell the two kinds of
        # tensor apart, and would compile a second graph for a plain one
        x = accel.to_input(torch.rand((batch_size, *image_shape)), device)
        model(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            model(x)
        _sync(device)
        return rate(reps * batch_size, time.perf_counter() - t0)


def compiled_inference(bundle, batch_size: int, windows: int, threads: int, device: torch.device) -> dict[str, Any]:
    """The label job's inference stage and the bare model, both with the classifier actors' ``torch.compile``
    (:func:`genre_ray.accel.compile_embed`, one static batch shape, a call's last batch padded — ``LabelConfig.
    torch_compile``), in the same process on one compiled graph: windows/s of ``window_outputs`` from host float16
    images (copies overlapped, the ``featurize=cpu`` path) and from float16 images already on ``device`` (what
    ``featurize=device`` makes), and of the bare forward passes (:func:`bare_inference_rate`); the first call's
    seconds (compilation). → ``{"batch_size", "compile_s", "host_images", "device_images", "bare",
    "host_vs_bare", "device_vs_bare"}``."""
    from genre_ray import accel
    from genre_ray.embedding import window_outputs

    model = accel.compile_embed(accel.inference_model(accel.prepare_model(bundle.build_model(), device)))
    n = max(batch_size, windows // batch_size * batch_size)
    host = np.random.default_rng(0).random((n, *bundle.features.image_shape), dtype=np.float32).astype(np.float16)
    out: dict[str, Any] = {"batch_size": batch_size, "windows": n}
    with torch_threads(threads):
        t0 = time.perf_counter()
        window_outputs(model, host[:batch_size], device, batch_size, overlap=True, pad=True)
        _sync(device)
        out["compile_s"] = round(time.perf_counter() - t0, 2)
        for name, images, overlap in (("host_images", host, True),
                                      ("device_images", torch.from_numpy(host).to(device), False)):
            window_outputs(model, images[:batch_size], device, batch_size, overlap=overlap, pad=True)
            _sync(device)
            t0 = time.perf_counter()
            window_outputs(model, images, device, batch_size, overlap=overlap, pad=True)
            _sync(device)
            out[name] = rate(n, time.perf_counter() - t0)
    out["bare"] = bare_inference_rate(model, bundle.features.image_shape, batch_size, windows, threads, device)
    out["host_vs_bare"] = round(out["host_images"] / out["bare"], 3)
    out["device_vs_bare"] = round(out["device_images"] / out["bare"], 3)
    return out


@register_benchmark("inference")
def bench_inference(arch: str = "resnet18", batch_sizes: list[int] | None = None, windows: int = 8192,
                    threads: int = 1, compile: bool | None = None, compile_batch: int | None = None,
                    workdir: str | None = None) -> dict[str, Any]:
    """The label job's inference stage alone, no Ray, no audio: an untrained ``arch`` bundle (the demo's features)
    on random float16 images — windows/s per batch size from host images (copies overlapped on CUDA, as the
    ``featurize=cpu`` path) and, on CUDA, from images already on the device (the ``featurize=device`` default), the
    bare model (:func:`bare_inference_rate`, the issue's raw recipe) at the best batch; ``compile`` (None = on
    with CUDA): :func:`compiled_inference` at ``compile_batch`` (None = the actors' ``COMPILE_BATCH``)."""
    from genre_ray import accel
    from genre_ray.accel import BATCH_CANDIDATES
    from genre_ray.bundle import load_bundle
    from genre_ray.pipelines.label_workers import COMPILE_BATCH

    work = _workdir(workdir, "inference")
    bundle = load_bundle(str(demo_bundle(work / f"demo-bundle-{arch}", arch=arch)))
    device = _device()
    sizes = batch_sizes or list(BATCH_CANDIDATES[device.type])
    gpu = device.type == "cuda"
    host = inference_sweep(bundle, sizes, windows, threads, device, overlap=gpu)
    best = max(host, key=host.get)
    result: dict[str, Any] = {"benchmark": "inference", "arch": arch, "device": device.type, "threads": threads,
                              "windows": windows, "host_images": {str(k): v for k, v in host.items()},
                              "best_batch": best}
    if gpu:
        dev = inference_sweep(bundle, sizes, windows, threads, device, on_device=True)
        result["device_images"] = {str(k): v for k, v in dev.items()}
        result["best_batch_device_images"] = max(dev, key=dev.get)
    model = accel.inference_model(accel.prepare_model(bundle.build_model(), device))
    # every ratio at one batch size on both sides: the bare model at each side's best batch
    bare = {b: bare_inference_rate(model, bundle.features.image_shape, b, windows, threads, device)
            for b in sorted({best, result.get("best_batch_device_images", best)})}
    result["bare_by_batch"] = {str(b): r for b, r in bare.items()}
    result["bare"] = bare[best]
    result["host_vs_bare"] = round(host[best] / bare[best], 3)
    table = [[f"inference {arch}, host images, bs {best}", host[best], "windows/s"],
             [f"bare model {arch}, bs {best}", bare[best], "windows/s"],
             ["inference stage / bare, same batch (host images)", result["host_vs_bare"], "ratio"]]
    if gpu:
        bd = result["best_batch_device_images"]
        result["device_vs_bare"] = round(result["device_images"][str(bd)] / bare[bd], 3)
        table += [[f"inference {arch}, device images, bs {bd}", result["device_images"][str(bd)], "windows/s"],
                  [f"bare model {arch}, bs {bd}", bare[bd], "windows/s"],
                  ["inference stage / bare, same batch (device images)", result["device_vs_bare"], "ratio"]]
    if gpu if compile is None else compile:
        from genre_ray.bench.core import save_partial

        save_partial(result)  # compiling takes a while: the figures above are kept if it is cut
        comp = compiled_inference(bundle, compile_batch or COMPILE_BATCH[device.type], windows, threads, device)
        result["compiled"] = comp
        table += [[f"inference {arch} compiled, host images, bs {comp['batch_size']}", comp["host_images"], "windows/s"],
                  [f"inference {arch} compiled, device images", comp["device_images"], "windows/s"],
                  [f"bare model {arch} compiled", comp["bare"], "windows/s"],
                  ["compiled: stage / bare (host / device images)", f"{comp['host_vs_bare']} / {comp['device_vs_bare']}",
                   "ratio"],
                  ["compilation (first call)", comp["compile_s"], "s"]]
    result["table"] = table
    return result


def new_shape_cost(model: torch.nn.Module, image_shape: tuple[int, ...], device: torch.device,
                   sizes: tuple[int, ...] = (37, 53, 71, 97, 113)) -> dict[str, Any]:
    """What a batch size the model has not run before costs: the first forward pass at each of ``sizes`` against a
    second one at the same size, under the device's autocast. The label actors' calls end in batches of ever new
    sizes; on CUDA, cuDNN sets up its algorithms for each new input shape. → ``{"first_ms", "again_ms" (lists),
    "extra_ms_per_new_shape" (median of first − again)}``."""
    from genre_ray import accel

    model.eval()
    first, again = [], []
    with torch.inference_mode(), accel.autocast_for(device):
        for n in sizes:
            x = accel.to_input(torch.rand((n, *image_shape)), device)
            for out in (first, again):
                _sync(device)
                t0 = time.perf_counter()
                model(x)
                _sync(device)
                out.append(round((time.perf_counter() - t0) * 1000, 2))
    extra = float(np.median([a - b for a, b in zip(first, again)]))
    return {"sizes": list(sizes), "first_ms": first, "again_ms": again, "extra_ms_per_new_shape": round(extra, 2)}


def _write_rate(classes: list[str], tracks: int, windows_per_track: int, out: Path) -> float:
    """Tracks/s through the driver's TrackAssembler + ShardWriter on synthetic probabilities."""
    from genre_ray.pipelines.label import END, WINDOW, ShardWriter, TrackAssembler

    rng = np.random.default_rng(0)
    extra = {"model_name": "homebrew", "model_uri": "x", "model_version": "", "model_id": "x", "feature_hash": "x",
             "label_key": "x"}
    asm = TrackAssembler(classes, "mean", 3, 3.0, extra)
    writer = ShardWriter(out, classes, timeline=False)
    n = windows_per_track
    batches = []
    for t in range(tracks):
        path = f"/lib/{t}.wav"
        kind = np.array([WINDOW] * n + [END], object)
        batches.append({"path": np.full(n + 1, path, object), "kind": kind, "window": np.arange(n + 1),
                        "start_s": np.arange(n + 1) * 3.0, "duration_s": np.full(n + 1, 3.0 * n),
                        "n_windows": np.full(n + 1, n), "status": np.full(n + 1, "ok", object),
                        "error": np.full(n + 1, "", object),
                        "probs": rng.dirichlet(np.ones(len(classes)), n + 1).astype(np.float32)})
    t0 = time.perf_counter()
    rows = []
    for b in batches:
        rows += [r for r, _ in asm.add(b)]
    for i in range(0, len(rows), 256):
        writer.write(rows[i:i + 256], [])
    return rate(tracks, time.perf_counter() - t0)


def stage_sample(paths: list[Path], n: int = 24) -> list[Path]:
    """``n`` files for the stage passes with each format (file suffix) in the library's proportions (largest
    remainders), each format's share spread evenly over its sorted files (every genre). A plain stride over the
    sorted library follows its layout instead: the bench's 200-file library (50 of each format) gave 10 wav, 5 flac,
    5 ogg and 4 mp3 — wav decodes fastest, so the decode stage, the stage bound and the efficiency all moved."""
    groups: dict[str, list[Path]] = {}
    for p in paths:
        groups.setdefault(p.suffix.lower(), []).append(p)
    n = min(n, len(paths))
    exact = {k: n * len(v) / max(1, len(paths)) for k, v in groups.items()}
    take = {k: int(e) for k, e in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - take[k], reverse=True)[:n - sum(take.values())]:
        take[k] += 1
    out: list[Path] = []
    for j, (k, files) in enumerate(groups.items()):  # each format's picks staggered: other genres than the last's
        m = take[k]
        out += [files[int((i + j / len(groups)) * len(files) / m)] for i in range(m)]
    return out


def _label_stage_rates(paths: list[Path], bundle, batch_sizes: list[int] | None, infer_windows: int, threads: int,
                       device: torch.device, seconds: float, work: Path, ceilings: bool = True) -> dict[str, Any]:
    """The label job's stages alone, one core, no Ray: decode 24 tracks, make their window images (``featurize``,
    the CPU path) and their waveform segments (``segment``, what a ``featurize=device`` task does after decoding),
    the inference batch sweep, the driver's writer. Rates per core (audio-s/s; on CPU by the thread's CPU time),
    CPU seconds per audio second. ``ceilings``: also the bare model's rate and, on CUDA, the A/B without overlapped copies
    (``bare`` None without)."""
    from genre_ray import audio
    from genre_ray.accel import BATCH_CANDIDATES
    from genre_ray.device_features import track_segments
    from genre_ray.features import track_window_images

    sample = stage_sample(paths)  # every format in the library's proportions, every genre
    with torch_threads(1):
        track_window_images([np.zeros(SR * 4, np.float32)], bundle.features)  # warm-up: filterbank, first calls
        t0, c0 = time.perf_counter(), time.thread_time()
        waves = [np.concatenate(list(audio.decode_stream(str(p), SR))) for p in sample]
        dec_s, dec_cpu = time.perf_counter() - t0, time.thread_time() - c0
        audio_s = sum(len(w) for w in waves) / SR
        t0, c0 = time.perf_counter(), time.thread_time()
        n_win = sum(len(im) for w in waves for im, _ in track_window_images([w], bundle.features))
        feat_s, feat_cpu = time.perf_counter() - t0, time.thread_time() - c0
        t0, c0 = time.perf_counter(), time.thread_time()
        for w in waves:  # in 10-s blocks, as the decoder streams them
            track_segments((w[i:i + 10 * SR] for i in range(0, len(w), 10 * SR)), bundle.features)
        seg_s, seg_cpu = time.perf_counter() - t0, time.thread_time() - c0
    audio_per_window = audio_s / max(1, n_win)
    cpu_win: dict[int, float] = {}
    sweep = inference_sweep(bundle, batch_sizes or list(BATCH_CANDIDATES[device.type]), infer_windows, threads,
                            device, cpu_win, overlap=device.type == "cuda")  # as the job's Classifier does
    cpu_timed = device.type == "cpu" and threads == 1  # choose by CPU time: robust to other load on the box
    best_bs = min(cpu_win, key=cpu_win.get) if cpu_timed else max(sweep, key=sweep.get)
    from genre_ray import accel

    # the bare loop runs the job's model form (accel.inference_model): the ratio measures the pipeline, not the fold
    bare = bare_inference_rate(accel.inference_model(accel.prepare_model(bundle.build_model(), device)),
                               bundle.features.image_shape, best_bs, infer_windows, threads, device) if ceilings else None
    # … and the raw recipe as built (BatchNorm and all): what the fold itself is worth on this device
    bare_plain = bare_inference_rate(accel.prepare_model(bundle.build_model(), device), bundle.features.image_shape,
                                     best_bs, infer_windows, threads, device) if ceilings else None
    plain: dict[str, Any] = {}
    on_device: dict[str, Any] = {}
    shapes: dict[str, Any] = {}
    if ceilings and device.type == "cuda":  # A/B in the same run: synchronous host→GPU copies (the job overlaps them)
        try:
            plain = {str(k): v for k, v in inference_sweep(bundle, sorted(sweep), infer_windows, threads, device,
                                                           overlap=False).items()}
        except Exception as exc:  # a failure here must not cost the job's path's figures
            plain = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            shapes = new_shape_cost(accel.inference_model(accel.prepare_model(bundle.build_model(), device)),
                                    bundle.features.image_shape, device)
        except Exception as exc:
            shapes = {"error": f"{type(exc).__name__}: {exc}"}
        try:  # the GPU default's inference stage: featurize=device makes the images on the device
            on_device = {str(k): v for k, v in inference_sweep(bundle, sorted(sweep), infer_windows, threads, device,
                                                               on_device=True).items()}
        except Exception as exc:
            on_device = {"error": f"{type(exc).__name__}: {exc}"}
    write_tps = _write_rate(bundle.classes, 200, max(1, round(seconds / audio_per_window)), work / "write-bench")
    cpu_cost = {"decode": dec_cpu / audio_s, "featurize": feat_cpu / audio_s, "segment": seg_cpu / audio_s,
                "inference": cpu_win[best_bs] / audio_per_window if cpu_timed else 0.0,
                "write": 1.0 / (write_tps * seconds)}
    wall = {"decode": rate(audio_s, dec_s), "featurize": rate(audio_s, feat_s), "segment": rate(audio_s, seg_s),
            "inference": round(sweep[best_bs] * audio_per_window / threads, 2), "write": round(write_tps * seconds, 2)}
    per_core = dict(wall)
    if device.type == "cpu":  # CPU-time rates: the box's other load does not move them
        per_core.update(decode=rate(audio_s, dec_cpu), featurize=rate(audio_s, feat_cpu), segment=rate(audio_s, seg_cpu))
        if cpu_timed:
            per_core["inference"] = round(audio_per_window / cpu_win[best_bs], 2)
    return {"per_core": per_core, "wall": wall, "cpu_cost": cpu_cost, "sweep": sweep, "cpu_win": cpu_win,
            "best_bs": best_bs, "audio_per_window": audio_per_window, "bare": bare, "bare_plain": bare_plain,
            "not_overlapped": plain, "device_images": on_device, "new_shape": shapes}


def actor_call_rate(paths: list[Path], bundle, device: torch.device, threads: int, batch_size: int,
                    min_calls: int = 8) -> dict[str, Any]:
    """The ``featurize=device`` classifier actor alone, no Ray: :class:`SegmentClassifier` (images made and classified
    on ``device``, ``threads`` threads) called on the segment rows of ``paths`` exactly as the label job's actor gets
    them — Ray Data blocks of :func:`segment_batch`'s batches, stitched into calls of the job's size, as Arrow tables
    (the job's ``batch_format``) and, as an A/B in the same run, as Ray's NumPy batches of the same rows (binary
    cells copied into ``bytes``). The rows are reused until there are ``min_calls`` calls; one warm-up call. Its
    audio-s/s is the most one actor can pass, whatever the CPUs decode."""
    import pyarrow as pa
    from ray.data.block import BlockAccessor

    from genre_ray.pipelines.label_device import SegmentClassifier, arrow_rows, segment_batch, window_rows
    from genre_ray.pipelines.label_workers import MAX_WINDOWS, WINDOW, call_windows

    gpu = device.type == "cuda"
    rows_per_call = max(1, call_windows(batch_size, gpu) // MAX_WINDOWS)
    hop = bundle.features.hop_s
    blocks = [BlockAccessor.batch_to_block(b) for b in segment_batch(
        {"path": np.array([str(p) for p in paths], object)}, bundle.features, hop, "pad")]
    table = pa.concat_tables(blocks)
    while table.num_rows < rows_per_call * (min_calls + 1):
        table = pa.concat_tables([table, table])  # zero-copy: the same chunks again
    calls = [table.slice(i, rows_per_call) for i in range(0, table.num_rows - rows_per_call + 1, rows_per_call)]
    calls = calls[:min_calls + 1]
    windows = [int((window_rows(arrow_rows(c))["kind"] == WINDOW).sum()) for c in calls]
    actor = SegmentClassifier(bundle, batch_size=batch_size, use_gpu=gpu, threads=threads, embeddings=True)
    out: dict[str, Any] = {"rows_per_call": rows_per_call, "windows_per_call": round(float(np.mean(windows)), 1),
                           "calls": len(calls) - 1, "threads": threads}
    for name, convert in (("arrow", lambda c: c),
                          ("numpy", lambda c: BlockAccessor.for_block(c).to_batch_format("numpy"))):
        with torch_threads(threads):
            actor(convert(calls[0]))
            _sync(device)
            t0 = time.perf_counter()
            for c in calls[1:]:
                actor(convert(c))
            _sync(device)
            secs = time.perf_counter() - t0
        out[f"{name}_windows_per_s"] = rate(sum(windows[1:]), secs)
        out[f"{name}_audio_s_per_s"] = rate(sum(windows[1:]) * hop, secs)
    out["audio_s_per_s"] = out["arrow_audio_s_per_s"]  # the job's format
    return out


def _decode_only(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray Data task of :func:`decode_pass`: paths → the audio seconds each decodes to (decoded, then dropped) and
    when its decoding started and ended (wall clock)."""
    t0 = time.time()
    seconds = [_decode_all(p) / SR for p in batch["path"]]
    return {"seconds": np.array(seconds), "t0": np.full(len(seconds), t0), "t1": np.full(len(seconds), time.time())}


def busy_profile(spans: list[tuple[float, float]], wall_s: float, cpus: int) -> dict[str, float]:
    """Intervals of work → how many ran at once at most, and the share of ``cpus × wall_s`` they filled."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    busy = sum(b - a for a, b in spans)
    return {"max_concurrent": most, "busy_fraction": round(busy / max(wall_s * cpus, 1e-9), 3), "busy_s": round(busy, 2)}


class _DecodeOnly:
    """:func:`_decode_only` as a Ray Data actor (``decode_pass(workers="actors")``)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _decode_only(batch)


def decode_pass(files: list[str], num_cpus: int, files_per_block: int = 64,
                batch_size: int | None = 1, workers: str = "tasks") -> dict[str, float]:
    """The node's decode rate through Ray Data — the label job's input layout and task size for featurize tasks
    (one path per batch, 1 CPU per task, :func:`genre_ray.pipelines.label.input_blocks`), decoding to the job's
    sample rate, nothing else: what Ray leaves of the node's decode rate on the same CPUs, start-up included.
    ``steady``: after the first batch of decoded files, as the label job's steady state. ``batch_size``: files per
    Ray Data batch (the job's 1; None = the whole block). ``workers="actors"``: a pool of ``num_cpus`` decode actors,
    :data:`~genre_ray.pipelines.label.DECODE_ACTOR_FILES` files a call (``LabelConfig.decode_workers``); the busy
    profile then counts each call as one span. Run it on an otherwise idle machine: ``machine_busy_fraction``
    counts every process."""
    import ray

    from genre_ray.pipelines.label import DECODE_ACTOR_FILES, FEATURIZE_MEMORY, input_blocks

    t0, busy0 = time.time(), machine_busy_s()
    blocks = input_blocks(len(files), num_cpus, files_per_block)
    ds = ray.data.from_items([{"path": f} for f in files], override_num_blocks=blocks)
    if workers == "actors":
        ds = ds.map_batches(_DecodeOnly, batch_size=DECODE_ACTOR_FILES, batch_format="numpy", num_cpus=1,
                            memory=FEATURIZE_MEMORY, compute=ray.data.ActorPoolStrategy(size=num_cpus))
    else:
        ds = ds.map_batches(_decode_only, batch_size=batch_size, batch_format="numpy", num_cpus=1,
                            memory=FEATURIZE_MEMORY)
    total, first_t, first_audio, last_t = 0.0, None, 0.0, t0
    spans: list[tuple[float, float]] = []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        now, got = time.time(), float(batch["seconds"].sum())
        spans += list(zip(batch["t0"].tolist(), batch["t1"].tolist()))
        if first_t is None:
            first_t, first_audio = now, got
        total, last_t = total + got, now
    secs = last_t - t0
    machine = machine_busy_s() - busy0
    steady = (total - first_audio) / (last_t - first_t) if first_t is not None and last_t > first_t else 0.0
    busy = busy_profile(spans, secs, num_cpus)
    # decoding's own speed inside Ray's workers (a slow worker, not Ray's scheduling, shows here) and how full Ray
    # kept the CPUs (scheduling, start-up and per-task costs show there)
    return {"audio_s": round(total, 1), "seconds": round(secs, 2), "audio_s_per_s": rate(total, secs),
            "startup_s": round((first_t or t0) - t0, 2), "steady_audio_s_per_s": round(steady, 2),
            "in_task_audio_s_per_s_per_core": rate(total, busy["busy_s"]), **busy,
            # every process's CPU time over the pass ÷ (CPUs × the pass): with busy_fraction, says whether the CPUs
            # that were not decoding sat idle (scheduling gaps, start-up, the tail) or ran Ray's own work
            "machine_busy_fraction": round(machine / max(secs * num_cpus, 1e-9), 3), "files_per_block": files_per_block,
            "workers": workers}


_NODE_DECODER = """
import sys, time
from genre_ray.bench.stages import SR, _decode_all
files = open(sys.argv[1]).read().split("\\n")
print("ready", flush=True)
sys.stdin.readline()
total = sum(_decode_all(f) for f in files if f) / SR
print(total, time.time(), flush=True)
"""


def node_decode_rate(files: list[str], processes: int, work: Path) -> dict[str, float]:
    """The node's pure decode rate: ``processes`` Python processes (no Ray), each decoding every
    ``processes``-th file to the label job's sample rate, started together once all have imported the decoders;
    audio-s/s from the go signal until the last one finishes. The ceiling of a decode-bound labelling run."""
    import subprocess
    import sys

    work.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(processes):
        part = work / f"node-decode-{i}.txt"
        part.write_text("\n".join(files[i::processes]))
        procs.append(subprocess.Popen([sys.executable, "-c", _NODE_DECODER, str(part)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    ok = False
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a node-decode process failed to start")
        t0 = time.time()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        done = [p.stdout.readline().split() for p in procs]
        ok = all(len(d) == 2 for d in done)
        if not ok:
            raise RuntimeError("a node-decode process failed while decoding")
    finally:
        for p in procs:
            if not ok:
                p.kill()
            p.wait()
    audio_s = sum(float(d[0]) for d in done)
    secs = max(float(d[1]) for d in done) - t0
    return {"processes": processes, "audio_s": round(audio_s, 1), "seconds": round(secs, 2),
            "audio_s_per_s": rate(audio_s, secs)}


def _stage_figures(st: dict[str, Any], again: dict[str, Any] | None, threads: int, device: torch.device,
                   after_only: bool = False) -> tuple[dict[str, Any], dict[str, float], dict[str, float], list[list]]:
    """The ``stages`` section, the per-core rates and CPU costs the bounds use, and the table rows, from one or two
    passes of :func:`_label_stage_rates` (with two, the faster reading of each stage; ``after_only``: the one pass
    ran after the end-to-end run)."""
    per_core, cpu_cost = dict(st["per_core"]), dict(st["cpu_cost"])
    if again:
        per_core = {k: max(v, again["per_core"][k]) for k, v in per_core.items()}
        cpu_cost = {k: min(v, again["cpu_cost"][k]) if v and again["cpu_cost"][k] else v for k, v in cpu_cost.items()}
    sweep, best_bs = st["sweep"], st["best_bs"]
    vs_bare = round(sweep[best_bs] / st["bare"], 3) if st["bare"] else None
    dev = st.get("device_images") or {}
    dev_vs_bare = round(dev[str(best_bs)] / st["bare"], 3) if st["bare"] and str(best_bs) in dev else None
    stages = {
        "decode_audio_s_per_s_one_core": per_core["decode"], "featurize_audio_s_per_s_one_core": per_core["featurize"],
        "segment_audio_s_per_s_one_core": per_core["segment"],
        "inference_windows_per_s_by_batch": {str(k): v for k, v in sweep.items()}, "inference_threads": threads,
        "inference_windows_per_cpu_s_by_batch": {str(k): round(1 / v, 2) for k, v in st["cpu_win"].items() if v > 0},
        "inference_best_batch": best_bs, "inference_audio_s_per_s_per_cpu": per_core["inference"],
        "inference_bare_windows_per_s": st["bare"], "inference_vs_bare": vs_bare,
        "inference_bare_unfolded_windows_per_s": st.get("bare_plain"),
        "inference_copies_overlapped": device.type == "cuda",
        "inference_windows_per_s_by_batch_copies_not_overlapped": st["not_overlapped"],
        # featurize=device (the GPU default): the images are on the device already, no host copies at all
        "inference_windows_per_s_by_batch_device_images": st.get("device_images") or None,
        "inference_device_images_vs_bare": dev_vs_bare,
        "inference_new_batch_shape": st.get("new_shape") or None,  # CUDA: a batch size run for the first time
        "write_audio_s_per_s": per_core["write"], "audio_s_per_window": round(st["audio_per_window"], 4),
        "cpu_seconds_per_audio_s": {k: round(v, 6) for k, v in cpu_cost.items()},
        "before_end_to_end": None if after_only else st["per_core"],
        "after_end_to_end": st["per_core"] if after_only else (again["per_core"] if again else None),
        "wall_clock_rates_before": st["wall"], "timing": "CPU time of one thread" if device.type == "cpu" else "wall"}
    table = [["label stage: decode (1 core)", per_core["decode"], "audio-s/s"],
             ["label stage: featurize, CPU path (1 core)", per_core["featurize"], "audio-s/s"],
             ["label stage: segment, featurize=device tasks (1 core)", per_core["segment"], "audio-s/s"],
             [f"label stage: inference bs {best_bs} ({threads} thread)",
              round(per_core["inference"] / st["audio_per_window"] * threads, 2), "windows/s"]]
    if st["bare"]:
        table += [[f"label stage: bare model bs {best_bs} (on-device input, no copies)", st["bare"], "windows/s"],
                  [f"label stage: bare model bs {best_bs}, BatchNorm not folded (the plain recipe)", st.get("bare_plain"),
                   "windows/s"],
                  ["label stage: inference / bare model", vs_bare, "ratio"]]
    table += [[f"label stage: inference bs {k}, copies not overlapped", v, "windows/s"]
              for k, v in st["not_overlapped"].items() if k != "error"]
    table += [[f"label stage: inference bs {k}, images on the device (featurize=device)", v, "windows/s"]
              for k, v in dev.items() if k != "error"]
    if dev_vs_bare is not None:
        table.append(["label stage: inference on device images / bare model", dev_vs_bare, "ratio"])
    if (st.get("new_shape") or {}).get("extra_ms_per_new_shape") is not None:
        table.append(["label stage: first pass at a new batch size, extra", st["new_shape"]["extra_ms_per_new_shape"],
                      "ms"])
    table.append(["label stage: write (driver)", per_core["write"], "audio-s/s"])
    return stages, per_core, cpu_cost, table


def _label_bounds(per_core: dict[str, float], featurize: str, device: torch.device, num_cpus: int, num_actors: int,
                  actor_cpus: float, threads: int) -> tuple[float, float]:
    """``(allocated, shared)`` upper bounds of the label job's audio-s/s from its stages' per-core rates: (a) each
    stage on the CPUs it gets — featurize tasks on what the actors' reservation leaves (decode + images, or
    decode + segments with ``featurize=device``), actors on ``num_actors × threads`` (``featurize=device`` on CPU:
    the actors make the images too; ``featurize=actor``: every stage on the actors) — and (b) every CPU free to run
    any stage. On CUDA the GPU's inference rate caps both, and images made on the GPU cost the CPUs nothing."""
    gpu = device.type == "cuda"
    task_stage = "segment" if featurize == "device" else "featurize"
    tasks = 1.0 / (1.0 / per_core["decode"] + 1.0 / per_core[task_stage])  # the same task decodes and cuts
    inference = per_core["inference"] * threads if gpu else per_core["inference"]
    cpu_stages = {"decode": per_core["decode"], task_stage: per_core[task_stage], "write": per_core["write"]}
    if not gpu:
        cpu_stages["inference"] = per_core["inference"]
        if featurize == "device":  # the actors' CPU makes the images
            cpu_stages["featurize"] = per_core["featurize"]
            inference = 1.0 / (1.0 / per_core["featurize"] + 1.0 / per_core["inference"])
    task_cpus = num_cpus if gpu else max(num_cpus - num_actors * actor_cpus, 1e-9)
    alloc = allocation_bound({"tasks": tasks, "inference": inference, "write": per_core["write"]},
                             {"tasks": task_cpus, "inference": 1.0 if gpu else num_actors * threads, "write": 1.0})
    shared = shared_bound(cpu_stages, num_cpus)
    if featurize == "actor" and not gpu:  # every stage runs on the actors' threads
        alloc = shared_bound(cpu_stages, num_actors * threads)
    if gpu:
        shared = min(shared, inference)
    if featurize == "device" and per_core.get("actor"):  # measured: the actors are a serial stage of their own
        actors = per_core["actor"] * num_actors
        alloc, shared = min(alloc, actors), min(shared, actors)
    return alloc, shared


@register_benchmark("label")
def bench_label(tracks: int = 200, seconds: float = 30.0, num_cpus: int = 2, model: str | None = None,
                workdir: str | None = None, num_actors: int | None = None, actor_cpus: float | None = None,
                batch_size: int | None = None,
                batch_sizes: list[int] | None = None, infer_windows: int = 256, stages: bool = True,
                featurize: str = "auto", arch: str = "homebrew", repeat: int = 1, end_to_end_first: bool = False,
                decode_ceiling: bool = True, torch_compile: bool = False,
                call_windows: int | None = None, decode_blocks: list[int] | None = None,
                decode_workers: str | None = None, library_sr: int = 44_100,
                library_channels: int = 2, compile_ab: bool = False) -> dict[str, Any]:
    """``genre-ray label`` end to end (``run_label`` on this process's Ray: audio-s/s, windows/s over the
    labelling stream) and each stage alone on one core without Ray — decode, featurize, inference (bare model,
    batch-size sweep; the best is used end to end unless ``batch_size`` is given), writing; on CPU timed by the
    thread's CPU time, robust to whatever else the box runs — and the pipeline
    efficiency: end-to-end ÷ what the stages allow, (a) with the CPUs each stage gets and (b) with every CPU free
    to run any stage (:func:`_label_bounds`) — over the whole stream and in steady state (after the first finished
    tracks: without workers starting and models loading, a fixed cost of a few seconds that a library of 100,000
    songs does not notice).

    ``decode_ceiling``: also the node's pure decode rate on the same files — ``num_cpus`` processes without Ray
    (:func:`node_decode_rate`) and labelling ÷ it, the issue's "decode-bound" measure — and the same decoding
    through Ray Data (:func:`decode_pass`: what Ray's own overhead leaves of it). ``repeat``: the library's files
    hard-linked ``repeat`` times under other names (a long enough stream on a fast node without synthesising more).
    ``end_to_end_first``: label before the stage passes (the job picks its own batch size unless ``batch_size`` is
    given), one stage pass after; every phase's figures are saved as they come (:func:`genre_ray.bench.core.save_partial`).
    ``torch_compile``: the job's classifier actors compile their model (``LabelConfig.torch_compile``);
    ``call_windows``: windows per actor call (``LabelConfig.call_windows``; None = the job's default);
    ``decode_blocks``: the decode-only pass again at each of these files-per-task sizes (the job's is 64);
    ``decode_workers``: the job's ``decode_workers`` (None = its default; the decode-only pass runs with tasks and
    with actors). ``library_sr``/``library_channels``: the synthetic library's files — by default 44.1-kHz stereo,
    what music libraries hold (their decoding costs 3–6 × a 22,050-Hz mono file's per audio-second: two channels,
    twice the samples, then downmix and resampling); 22,050 and 1 for a GTZAN-like library. ``compile_ab`` (CUDA,
    with ``stages``; off by default — ``genre-ray bench inference`` measures it with more windows): last, the inference
    stage and the bare model both compiled (:func:`compiled_inference`)."""
    from genre_ray.bench.core import repeated_library, save_partial
    from genre_ray.bundle import load_bundle
    from genre_ray.config import LabelConfig
    from genre_ray.pipelines.label import actor_plan, featurize_mode, list_inputs, read_labels, run_label

    work = _workdir(workdir, "label")
    name = f"library-{tracks}x{seconds:g}s" + ("" if (library_sr, library_channels) == (SR, 1)
                                                else f"-{library_sr}Hz-{library_channels}ch")
    lib = work / name
    paths = synth_library(lib, tracks, seconds, sr=library_sr, channels=library_channels)
    if repeat > 1:
        lib = repeated_library(work / f"{name}-x{repeat}", paths, repeat)
    bundle_dir = Path(model) if model else demo_bundle(work / ("demo-bundle" + ("" if arch == "homebrew" else f"-{arch}")),
                                                       arch=arch)
    bundle = load_bundle(str(bundle_dir))
    device = _device()
    probe = LabelConfig(input=str(lib), model=str(bundle_dir), out=str(work / "out"), num_actors=num_actors,
                        actor_cpus=actor_cpus, featurize=featurize)
    decode_workers = decode_workers or probe.decode_workers
    featurize = featurize_mode(probe, device.type == "cuda")
    num_actors, actor_cpus = actor_plan(probe, num_cpus, torch.cuda.device_count(), device.type == "cuda", featurize)
    threads = max(1, round(actor_cpus))
    result: dict[str, Any] = {"benchmark": "label", "tracks": tracks, "repeat": repeat, "files": tracks * max(1, repeat),
                              "seconds_per_track": seconds,
                              "library": {"sample_rate": library_sr, "channels": library_channels,
                                          "formats": sorted({p.suffix.lstrip(".") for p in paths})},
                              "num_cpus": num_cpus, "num_actors": num_actors, "actor_cpus": actor_cpus,
                              "featurize": featurize, "device": device.type, "torch_compile": torch_compile,
                              "call_windows": call_windows, "decode_workers": decode_workers,
                              "model": str(model or (f"untrained {arch}" + (" (the demo's 16-32-64-64)" if arch == "homebrew"
                                                                        else "") + ", 216×216, 3-s windows, 3-s hop"))}
    table: list[list] = []
    st = None
    if stages and not end_to_end_first:
        # stage rates before and after the end-to-end run, the faster of the two kept: a shared box's speed drifts
        # by tens of percent over minutes, and the faster reading makes the bound higher (the efficiency lower)
        st = _label_stage_rates(paths, bundle, batch_sizes, infer_windows, threads, device, seconds, work)
        batch_size = batch_size or st["best_bs"]
        result["stages"] = _stage_figures(st, None, threads, device)[0]
        save_partial(result)
    cfg = LabelConfig(input=str(lib), model=str(bundle_dir), out=str(work / "out"), overwrite=True,
                      batch_size=batch_size, num_actors=num_actors, actor_cpus=actor_cpus, featurize=featurize,
                      experiment="genre-ray-bench", ray={"num_cpus": num_cpus}, progress_s=60.0,
                      torch_compile=torch_compile, call_windows=call_windows, decode_workers=decode_workers)
    busy0 = machine_busy_s()
    with private_mlflow(work / "home"):
        summary = run_label(cfg)
    cpu_used = machine_busy_s() - busy0  # every process on the machine: run this on an otherwise idle box
    labels = read_labels(work / "out")
    windows = int(labels["n_windows"].sum())
    e2e, steady = float(summary["audio_s_per_s"]), float(summary["steady_audio_s_per_s"])
    result["end_to_end"] = {"audio_s_per_s": e2e, "windows_per_s": rate(windows, summary["label_seconds"]),
                            "files_per_s": summary["files_per_s"], "label_seconds": summary["label_seconds"],
                            "startup_s": summary["startup_s"], "steady_audio_s_per_s": steady,
                            "batch_size": batch_size or "chosen by the job", "status": summary["status"],
                            "windows": windows, "machine_cpu_seconds": round(cpu_used, 1),
                            "machine_cpu_utilisation": round(cpu_used / max(summary["seconds"], 1e-9) / num_cpus, 3)}
    table += [["label end-to-end", e2e, "audio-s/s"],
              ["label end-to-end", result["end_to_end"]["windows_per_s"], "windows/s"],
              ["label start-up (stream start → first track)", summary["startup_s"], "s"],
              ["label steady state (after the first tracks)", steady, "audio-s/s"]]
    save_partial(result)
    if decode_ceiling:
        files = list_inputs(str(lib))
        node = node_decode_rate(files, num_cpus, work / "node-decode")
        result["node_decode"] = {**node, "end_to_end_vs_node": round(e2e / node["audio_s_per_s"], 3),
                                 "steady_vs_node": round(steady / node["audio_s_per_s"], 3)}
        table += [[f"node decode: {num_cpus} processes, no Ray", node["audio_s_per_s"], "audio-s/s"],
                  ["label end-to-end / node decode", result["node_decode"]["end_to_end_vs_node"], "ratio"],
                  ["label steady state / node decode", result["node_decode"]["steady_vs_node"], "ratio"]]
        save_partial(result)
        dec = decode_pass(files, num_cpus)
        result["decode_pass"] = {**dec, "end_to_end_vs_decode": round(e2e / dec["audio_s_per_s"], 3),
                                 "steady_vs_decode_steady": round(steady / dec["steady_audio_s_per_s"], 3)
                                 if dec["steady_audio_s_per_s"] else None}
        table += [[f"decode only through Ray Data ({num_cpus} CPUs)", dec["audio_s_per_s"], "audio-s/s"],
                  ["decode only, steady state", dec["steady_audio_s_per_s"], "audio-s/s"],
                  ["decode only: decoding's rate inside the Ray workers (per core)",
                   dec["in_task_audio_s_per_s_per_core"], "audio-s/s"],
                  [f"decode only: CPU-time share spent decoding (of {num_cpus} CPUs × the pass)", dec["busy_fraction"],
                   "ratio"],
                  ["decode only: files decoding at once (most)", dec["max_concurrent"], "files"],
                  ["label end-to-end / decode only", result["decode_pass"]["end_to_end_vs_decode"], "ratio"],
                  ["label steady / decode only steady", result["decode_pass"]["steady_vs_decode_steady"], "ratio"],
                  ["decode only: machine CPU-time share (every process)", dec["machine_busy_fraction"], "ratio"]]
        save_partial(result)
        act = decode_pass(files, num_cpus, workers="actors")
        result["decode_pass_actors"] = act
        table += [["decode only through Ray Data, decode actors", act["audio_s_per_s"], "audio-s/s"],
                  ["decode only, decode actors, steady state", act["steady_audio_s_per_s"], "audio-s/s"],
                  ["decode only, decode actors: machine CPU-time share", act["machine_busy_fraction"], "ratio"]]
        save_partial(result)
        for fpb in decode_blocks or []:
            d = decode_pass(files, num_cpus, fpb)
            result.setdefault("decode_pass_by_files_per_task", {})[str(fpb)] = d
            table += [[f"decode only, {fpb} files per task", d["audio_s_per_s"], "audio-s/s"],
                      [f"decode only, {fpb} files per task, steady state", d["steady_audio_s_per_s"], "audio-s/s"],
                      [f"decode only, {fpb} files per task: decoding / machine CPU-time share",
                       f"{d['busy_fraction']:.2f} / {d['machine_busy_fraction']:.2f}", "ratio"]]
            save_partial(result)
    if stages:
        after_only = st is None
        if after_only:
            st, again = _label_stage_rates(paths, bundle, batch_sizes, infer_windows, threads, device, seconds, work), None
        else:
            again = _label_stage_rates(paths, bundle, [st["best_bs"]], infer_windows, threads, device, seconds, work,
                                       ceilings=False)
        result["stages"], per_core, cpu_cost, stage_rows = _stage_figures(st, again, threads, device, after_only)
        table = stage_rows + table
        if featurize == "device":  # the classifier actor's own ceiling: featurizer + model + the rows' handling
            act = actor_call_rate(stage_sample(paths), bundle, device, threads,
                                  batch_size or st["best_bs"])
            result["stages"]["actor"] = act
            per_core["actor"] = act["audio_s_per_s"]
            table += [["label stage: featurize=device actor, Arrow calls (1 actor)", act["arrow_audio_s_per_s"],
                       "audio-s/s"],
                      ["label stage: featurize=device actor, NumPy calls (1 actor)", act["numpy_audio_s_per_s"],
                       "audio-s/s"]]
            save_partial(result)
        alloc, shared = _label_bounds(per_core, featurize, device, num_cpus, num_actors, actor_cpus, threads)
        result["efficiency"] = {"bound_allocated_audio_s_per_s": round(alloc, 2),
                                "bound_shared_cpus_audio_s_per_s": round(shared, 2),
                                "efficiency_allocated": round(e2e / alloc, 3), "efficiency_shared": round(e2e / shared, 3),
                                "steady_efficiency_allocated": round(steady / alloc, 3),
                                "steady_efficiency_shared": round(steady / shared, 3)}
        eff = result["efficiency"]
        table += [["label efficiency end-to-end (stage CPUs as allocated)", eff["efficiency_allocated"], "ratio"],
                  ["label efficiency end-to-end (all CPUs shared)", eff["efficiency_shared"], "ratio"],
                  ["label efficiency steady state (all CPUs shared)", eff["steady_efficiency_shared"], "ratio"]]
        used = ("decode", "segment", "featurize", "inference", "write") if featurize == "device" else (
            "decode", "featurize", "inference", "write")
        if all(cpu_cost[k] for k in used):  # CPU inference, 1 thread: every stage's CPU cost is known
            audio_total = float(labels["duration_s"].sum())
            work_eff = audio_total * sum(cpu_cost[k] for k in used) / max(cpu_used, 1e-9)
            result["efficiency"]["work_efficiency_cpu"] = round(work_eff, 3)
            table.append(["label work efficiency (stage CPU-s / machine CPU-s)", round(work_eff, 3), "ratio"])
        if compile_ab and device.type == "cuda":  # last: compiling takes a while, and everything above is saved
            from genre_ray.pipelines.label_workers import COMPILE_BATCH

            save_partial(result)
            try:
                comp = compiled_inference(bundle, batch_size or COMPILE_BATCH["cuda"], infer_windows, threads, device)
                table += [["label inference stage, torch.compile, host images", comp["host_images"], "windows/s"],
                          ["label inference stage, torch.compile, device images", comp["device_images"], "windows/s"],
                          ["bare model, torch.compile", comp["bare"], "windows/s"],
                          ["inference stage / bare, compiled (host / device images)",
                           f"{comp['host_vs_bare']} / {comp['device_vs_bare']}", "ratio"]]
            except Exception as exc:  # a compiler failure must not cost the figures above; it shows in the table
                comp = {"error": f"{type(exc).__name__}: {exc}"}
                table.append(["label inference stage, torch.compile", f"failed: {comp['error'][:80]}", ""])
            result["stages"]["inference_compiled"] = comp
    result["table"] = table
    return result


# ---------------------------------------------------------------------------------------------
# spectrogram cache formats
# ---------------------------------------------------------------------------------------------


def _tensor_table(images: np.ndarray, labels: np.ndarray):
    import pyarrow as pa
    from ray.data.extensions import ArrowTensorArray

    return pa.table({"image": ArrowTensorArray.from_numpy(images), "label_idx": pa.array(labels)})


CACHE_LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "float16 (current)": lambda x: x.astype(np.float16),
    "uint8 (x·255, rounded)": lambda x: np.round(x.astype(np.float32) * 255).astype(np.uint8),
    "float32": lambda x: x.astype(np.float32),
}
"""Image column encodings compared by ``bench cache`` (each a fixed-shape tensor column in Parquet)."""


@register_benchmark("cache")
def bench_cache(tracks: int = 40, seconds: float = 30.0, num_cpus: int = 2, repeats: int = 3,
                compressions: str = "snappy,none,zstd", hop_s: float = 3.0, workdir: str | None = None) -> dict[str, Any]:
    """Write and read throughput of the spectrogram cache: the prepared train windows rewritten as one Parquet file
    per layout (float16 — the current one —, uint8, float32), compression and encoding of the image column (``dict``:
    pyarrow's default, a dictionary tried for every column; ``plain``: no dictionary and no statistics for the
    image, what ``prepare`` writes — :data:`genre_ray.pipelines.prepare.IMAGE_WRITE_ARGS`); rows/s written, rows/s
    and MB/s read through pyarrow into a float32 ``(N, 1, H, W)`` array (what the model eats), file size; uint8's
    worst rounding error. Keys: ``"<layout> <compression>"`` (dict) and ``"<layout> <compression> plain"``."""
    import pyarrow.parquet as pq

    work = _workdir(workdir, "cache")
    prepared, _ = _prepared(work, tracks, seconds, num_cpus, hop_s)
    images, labels = _load_split(prepared)
    cases: dict[str, Any] = {}
    table = []
    encodings = {"": {}, " plain": {"use_dictionary": ["label_idx"], "write_statistics": ["label_idx"]}}
    for (layout, enc), (suffix, enc_args) in itertools.product(CACHE_LAYOUTS.items(), encodings.items()):
        arr = enc(images)
        for comp in [c.strip() for c in compressions.split(",") if c.strip()]:
            path = work / "layouts" / f"{layout.split()[0]}-{comp}{suffix.replace(' ', '-')}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            tab = _tensor_table(arr, labels)
            write_s, _ = best_time(lambda: pq.write_table(tab, path, compression=None if comp == "none" else comp,
                                                          **enc_args), repeats)

            def read() -> np.ndarray:
                t = pq.read_table(path, columns=["image"])
                x = t.column("image").combine_chunks().to_numpy_ndarray()
                return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)

            secs, x = best_time(read, repeats)
            key = f"{layout} {comp}{suffix}"
            cases[key] = {"rows_per_s": rate(len(x), secs), "decoded_mb_per_s": rate(x.nbytes / 2**20, secs),
                          "write_rows_per_s": rate(len(x), write_s),
                          "file_mb": round(path.stat().st_size / 2**20, 2),
                          "max_abs_error": float(np.abs(x - images.astype(np.float32)).max())}
            table.append([f"cache read {key}", cases[key]["rows_per_s"], "rows/s"])
    return {"benchmark": "cache", "rows": int(len(labels)), "image": list(images.shape[1:]), "cases": cases,
            "table": table}
