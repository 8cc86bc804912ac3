"""The label job's Ray Data stages — what runs in its worker processes: ``featurize_batch`` (CPU tasks: paths →
window rows + one end row per track) and :class:`Classifier` (actors: window rows → probabilities).

No Ray and no MLflow here, and only what these stages need is imported (torch, the decoders, the features and
the model code; torchvision only when a ResNet is built): every featurize worker and classifier actor imports
this module when it starts, and that import is on the job's critical path — ``genre_ray.pipelines.label`` with
MLflow, pandas and the report took 9.0 s to import on the 2-core box, this module 3–4 s.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterator

import numpy as np
import torch

from genre_ray import accel
from genre_ray.bundle import Bundle
from genre_ray.embedding import embedding_dim, window_outputs
from genre_ray.features import FeatureConfig
from genre_ray.inference import TrackEnd, WindowBatch, featurize_stream

WINDOW, END = "w", "end"
CALL_WINDOWS = {False: 64, True: 2048}
"""Windows per classifier-actor call (Ray Data batch) on CPU / GPU, at least one forward batch: Ray Data's per-batch
overhead is paid once per call, the model runs ``batch_size`` windows at a time inside it. Small enough on CPU that
the first results leave the actor within a second (a 2-core CPU classifies ~150 windows/s)."""
COMPILE_BATCH = {"cpu": 64, "cuda": 1024}  # forward batch of a compiled classifier without batch_size
MAX_WINDOWS = 32  # windows per featurized batch: bounds a featurize task's memory for any track length


def call_windows(batch_size: int | None, use_gpu: bool, requested: int | None = None) -> int:
    """Windows per Ray Data batch handed to a classifier actor: ``requested`` (the config's ``call_windows``) or
    :data:`CALL_WINDOWS`, and at least the forward batch."""
    return max(requested or CALL_WINDOWS[bool(use_gpu)], batch_size or 0)


def featurize_batch(batch: dict[str, np.ndarray], features: FeatureConfig, hop_s: float, too_short: str,
                    max_windows: int = MAX_WINDOWS) -> Iterator[dict[str, np.ndarray]]:
    """Paths → batches of window rows, then one ``end`` row per track (status, duration, windows emitted).

    Every batch has the same columns: ``path, kind, window, start_s, image (n, 1, H, W) float16, duration_s,
    n_windows, status, error``; ``end`` rows carry an all-zero image. Runs in Ray tasks; never raises for a file.
    """
    for path in batch["path"]:
        for item in featurize_stream(str(path), features, hop_s, too_short, max_windows=max_windows):
            if isinstance(item, WindowBatch):
                n = len(item.images)
                yield {"path": np.full(n, item.path, object), "kind": np.full(n, WINDOW, object),
                       "window": np.arange(item.first, item.first + n), "start_s": item.starts_s.astype(np.float64),
                       "image": item.images, "duration_s": np.zeros(n), "n_windows": np.zeros(n, np.int64),
                       "status": np.full(n, "", object), "error": np.full(n, "", object)}
            else:
                yield _end_batch(item, features)


class FeaturizeWorker:
    """A featurize function (``featurize_batch``, ``segment_batch``) as a Ray Data actor: the same calls and rows, in
    a process that stays for the whole run (``LabelConfig.decode_workers="actors"``) instead of a task per block."""

    def __init__(self, fn: Callable[..., Iterator[dict[str, np.ndarray]]]):
        self.fn = fn

    def __call__(self, batch: dict[str, np.ndarray], **kwargs) -> Iterator[dict[str, np.ndarray]]:
        yield from self.fn(batch, **kwargs)


def _end_batch(end: TrackEnd, features: FeatureConfig) -> dict[str, np.ndarray]:
    return {"path": np.array([end.path], object), "kind": np.array([END], object), "window": np.array([-1]),
            "start_s": np.zeros(1), "image": np.zeros((1, *features.image_shape), np.float16),
            "duration_s": np.array([end.duration_s]), "n_windows": np.array([end.n_windows], np.int64),
            "status": np.array([end.status], object), "error": np.array([end.error], object)}


def process_age_s() -> float | None:
    """Seconds since this process started (Linux ``/proc``; None elsewhere): in a fresh actor, its start-up and
    imports."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Classifier:
    """Actor: holds the model once; turns the window rows of a batch into calibrated ``probs (n, C)`` (softmax of
    logits / the bundle's temperature) and, with ``embeddings``, penultimate features ``emb (n, D)`` from the
    same forward pass (NaN on end rows). ``batch_size`` None: the fastest forward batch on this actor's device,
    chosen by measurement during its first calls (:class:`genre_ray.accel.BatchSizeTuner`)."""

    def __init__(self, bundle: Bundle, batch_size: int | None, use_gpu: bool, threads: int = 1,
                 embeddings: bool = False, compile: bool = False):
        t0, age = time.time(), process_age_s()
        torch.set_num_threads(threads)
        self.device = accel.pick_device(use_gpu)
        # BatchNorm folded, pools before activations (accel.inference_model): +27 % windows/s, the demo's CNN on CPU
        self.model = accel.inference_model(accel.prepare_model(bundle.build_model(), self.device))
        self.n_classes = len(bundle.classes)
        self.temperature, self.embeddings = bundle.temperature, embeddings
        self.dim = embedding_dim(self.model) if embeddings else 0
        self.compiled = compile
        if compile:  # one static shape: a fixed batch, the last one of a call padded (no tuner: each size compiles)
            batch_size = batch_size or COMPILE_BATCH[self.device.type]
            accel.compile_embed(self.model)
        # batch_size None: chosen during the first calls by measurement (accel.BatchSizeTuner), not by a probe
        self.tuner = accel.BatchSizeTuner(self.device) if batch_size is None else None
        self.fixed_batch_size, self.threads = batch_size, threads
        # where a labelling run's start-up goes: the process's start and imports, then the model onto its device
        print(f"[label] classifier ready on {self.device.type}: "
              f"{f'{age:.1f} s after its process started, then ' if age is not None else ''}"
              f"{time.time() - t0:.1f} s building the model", flush=True)

    @property
    def batch_size(self) -> int:
        return self.fixed_batch_size or self.tuner.size

    def _forward(self, images: np.ndarray | torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        # host images on CUDA: copies overlapped with the model (pinned memory, side stream) — 29,888–32,098 vs
        # 23,215–24,036 windows/s for ResNet18 at batch 256–2,048 on an H100 (genre-ray bench label, 2026-11-26)
        return window_outputs(self.model, images, self.device, batch_size, self.temperature, self.embeddings,
                              overlap=self.device.type == "cuda", pad=self.compiled)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = {k: v for k, v in batch.items() if k != "image"}
        return self.outputs(rows, batch["image"][batch["kind"] == WINDOW])

    def outputs(self, rows: dict[str, np.ndarray], window_images: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        """``rows`` (no image column) + the ``(n_window_rows, 1, H, W)`` images of their window rows, in order
        (NumPy, or a tensor on this actor's device) → ``rows`` with ``probs`` (and ``emb``); NaN on end rows."""
        is_window = rows["kind"] == WINDOW
        probs = np.full((len(is_window), self.n_classes), np.nan, np.float32)
        emb = np.full((len(is_window), self.dim), np.nan, np.float32) if self.embeddings else None
        if is_window.any():
            size = self.batch_size
            t0 = self.tuner.clock() if self.tuner else 0.0
            p, f = self._forward(window_images, size)
            if self.tuner and self.tuner.record(size, int(is_window.sum()), self.tuner.clock() - t0):
                print(f"[label] classifier on {self.device.type} ({self.threads} thread(s)): batch size "
                      f"{self.tuner.best} (windows/s by batch size, measured on the first windows: "
                      f"{self.tuner.rates})", flush=True)
            probs[is_window] = p
            if emb is not None:
                emb[is_window] = f
        out = dict(rows)
        out["probs"] = probs
        if emb is not None:
            out["emb"] = emb
        return out


class TrackClassifier(Classifier):
    """Actor that runs every stage of a track in one process: paths → :func:`featurize_batch` → the model. For
    CPU-only clusters: one single-thread actor per CPU, no featurize tasks, no window images between processes
    (the images are made and classified where they are needed; only paths go in and probabilities come out).
    Yields the :class:`Classifier`'s rows, ≥ ``max(MAX_WINDOWS, batch size)`` windows at a time (the decoder's
    10-s blocks give ~3 windows each; the rest of a call's windows and end rows with its last yield): the model
    runs whole forward batches and Ray Data builds one block per track instead of one per 10 s of audio: 553 → 576
    audio-s/s labelling 1,000 × 30-s files on the 2-core box (Ray Data's part of the actors' CPU 8 → 3 %; 2
    alternating runs each, throwaway script, 2026-11-26)."""

    def __init__(self, bundle: Bundle, batch_size: int | None, use_gpu: bool, threads: int = 1,
                 embeddings: bool = False, hop_s: float | None = None, too_short: str = "pad", compile: bool = False):
        super().__init__(bundle, batch_size, use_gpu, threads, embeddings, compile)
        self.features, self.too_short = bundle.features, too_short
        self.hop_s = bundle.features.hop_s if hop_s is None else hop_s

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        pending: list[dict[str, np.ndarray]] = []
        windows, enough = 0, max(MAX_WINDOWS, self.batch_size)
        for rows in featurize_batch(batch, self.features, self.hop_s, self.too_short):
            pending.append(rows)
            windows += int((rows["kind"] == WINDOW).sum())
            if windows >= enough:
                yield super().__call__(concat_rows(pending))
                pending, windows = [], 0
        if pending:
            yield super().__call__(concat_rows(pending))


def concat_rows(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Batches with the same columns → one batch (rows in order)."""
    if len(batches) == 1:
        return batches[0]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
