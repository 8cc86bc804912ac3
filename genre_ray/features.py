"""Log-mel spectrogram images — defined once, used by prepare, training, label and predict alike.

``FeatureConfig`` holds every number that shapes an image. The image of a window is: mel power
spectrogram → dB → per-image normalisation to ``[0, 1]`` → resized to ``H × W`` (log-frequency on y with
row 0 the lowest band, time on x).

Tracks (prepare, label, predict) go through :class:`TrackWindower` / :func:`track_window_images`: the
spectrogram is computed **once per track**, frame by frame in bounded blocks, and each window's image is
a slice of it — frame ``j`` is the STFT of samples ``[j·hop_length − n_fft/2, j·hop_length + n_fft/2)``
of the track (zeros outside it), and window ``i`` (starting at sample ``s = i·hop``) covers frames
``round(s / hop_length) …`` ``+ window_samples // hop_length + 1``. ``LogMel`` / :func:`images_from_frames`
compute the same picture for isolated ``(B, T)`` windows (zeros outside each window): equal to the track
path for a track that is exactly one window, and for train-time use on batches of waveforms.
No Ray here; runs on CPU or GPU.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that shapes a spectrogram image; its :meth:`hash` tags prepared data, models and labels."""

    sample_rate: int = 22_050
    window_s: float = 3.0  # length of one image in seconds
    hop_s: float = 1.5  # window hop for training (disjoint when == window_s) and default for labelling
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    f_min: float = 20.0
    f_max: float | None = None  # None → sample_rate / 2
    top_db: float = 80.0  # dynamic range kept below each image's peak
    height: int = 216
    width: int = 216
    version: int = 2  # image semantics: 1 = STFT per window (≤ 0.1), 2 = one spectrogram per track, sliced

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate <= 0:
            problems.append(f"sample_rate must be > 0 (got {self.sample_rate})")
        if self.window_s <= 0 or self.hop_s <= 0:
            problems.append(f"window_s and hop_s must be > 0 (got {self.window_s}, {self.hop_s})")
        if self.n_fft <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
            problems.append("n_fft, hop_length and n_mels must be > 0")
        if self.height <= 0 or self.width <= 0:
            problems.append(f"image size must be > 0 (got {self.height}×{self.width})")
        f_max = self.f_max if self.f_max is not None else self.sample_rate / 2
        if not 0 <= self.f_min < f_max <= self.sample_rate / 2:
            problems.append(f"need 0 <= f_min < f_max <= sample_rate/2 (got {self.f_min}, {f_max})")
        if self.top_db <= 0:
            problems.append(f"top_db must be > 0 (got {self.top_db})")
        if problems:
            raise ValueError("invalid FeatureConfig: " + "; ".join(problems))

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_s * self.sample_rate))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, self.height, self.width)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        """Inverse of :meth:`to_dict`; a dict without ``version`` was written before versions existed (= 1)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown FeatureConfig keys: {sorted(unknown)}")
        return cls(**{"version": 1, **d})

    def check_current(self) -> None:
        """Raise when images of this config can no longer be computed (data or model made by an older genre-ray)."""
        if self.version != FEATURE_VERSION:
            raise ValueError(f"feature version {self.version} (hash {self.hash()}) is not the current image definition "
                             f"(version {FEATURE_VERSION}: one spectrogram per track, sliced into windows); re-run "
                             "`genre-ray prepare` and retrain the model")

    def hash(self) -> str:
        """Stable 12-hex digest of the config (window/hop included: they decide what a window is)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


FEATURE_VERSION = 2
"""Current image semantics (see :attr:`FeatureConfig.version`)."""


def mel_filterbank(cfg: FeatureConfig) -> torch.Tensor:
    """Slaney-scale, area-normalised mel filterbank ``(n_fft // 2 + 1, n_mels)`` float32."""
    import torchaudio.functional as AF

    return AF.melscale_fbanks(
        n_freqs=cfg.n_fft // 2 + 1,
        f_min=cfg.f_min,
        f_max=cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2,
        n_mels=cfg.n_mels,
        sample_rate=cfg.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )


class LogMel(nn.Module):
    """``(B, T)`` float waveforms → ``(B, 1, H, W)`` float32 log-mel images in ``[0, 1]``.

    Per image: power mel spectrogram ``(n_mels, frames)``, ``10·log10(max(P, 1e-10))`` dB, referenced
    to the image's own peak (so loudness does not change the picture; the reference never drops below
    ``-100 + top_db`` dB, so digital silence maps to 0), clipped to ``top_db`` below it and scaled to
    ``[0, 1]``, then bilinearly resized to ``H × W``.
    """

    AMIN_DB = -100.0

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.register_buffer("fbank", mel_filterbank(cfg), persistent=False)

    @torch.no_grad()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        wave = wave.float()
        spec = torch.stft(
            wave, n_fft=cfg.n_fft, hop_length=cfg.hop_length, window=self.window,
            center=True, pad_mode="constant", return_complex=True,
        )  # (B, F, frames)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(power.transpose(1, 2), self.fbank).transpose(1, 2)  # (B, n_mels, frames)
        db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        return db_to_images(db, cfg)


AMIN_DB = LogMel.AMIN_DB


def db_to_images(db: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """``(B, n_mels, frames)`` mel dB → ``(B, 1, H, W)`` float32 images in ``[0, 1]``.

    Each image is referenced to its own peak (never below ``-100 + top_db`` dB, so silence maps to 0),
    clipped to ``top_db`` below it, scaled to ``[0, 1]`` and bilinearly resized to ``H × W``.
    """
    peak = db.amax(dim=(1, 2), keepdim=True).clamp(min=AMIN_DB + cfg.top_db)
    img = ((db - peak + cfg.top_db) / cfg.top_db).clamp(0.0, 1.0).unsqueeze(1)  # (B, 1, M, frames)
    if img.shape[-2:] != (cfg.height, cfg.width):
        img = F.interpolate(img, size=(cfg.height, cfg.width), mode="bilinear", align_corners=False)
    return img


@functools.lru_cache(maxsize=8)
def _cpu_logmel(cfg: FeatureConfig) -> LogMel:
    return LogMel(cfg).eval()


def images_from_frames(frames: np.ndarray, cfg: FeatureConfig, batch: int = 64) -> np.ndarray:
    """Numpy convenience on CPU: ``(n, window_samples)`` float32 → ``(n, 1, H, W)`` float16 images."""
    out = np.empty((frames.shape[0], *cfg.image_shape), np.float16)
    module = _cpu_logmel(cfg)
    for i in range(0, frames.shape[0], batch):
        out[i : i + batch] = module(torch.from_numpy(frames[i : i + batch])).numpy().astype(np.float16)
    return out


# ---------------------------------------------------------------------------------------------
# whole tracks: one spectrogram per track, sliced into windows, in bounded memory
# ---------------------------------------------------------------------------------------------


def window_frames(cfg: FeatureConfig) -> int:
    """Spectrogram frames per window image: ``window_samples // hop_length + 1`` (as ``LogMel`` with centring)."""
    return cfg.window_samples // cfg.hop_length + 1


@functools.lru_cache(maxsize=8)
def _stft_consts(cfg: FeatureConfig) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.hann_window(cfg.n_fft), mel_filterbank(cfg)


MIN_PADDED_SHARE = 10
"""A track shorter than one window is zero-padded to one (``pad_short``) only when it holds at least a tenth of a
window (0.3 s of a 3-s window): milliseconds of audio padded to a window make an image of near silence that a model
still labels, confidently — a cut-off download's first kilobyte once came back ``blues`` at 0.90."""


def min_padded_samples(cfg: FeatureConfig) -> int:
    """Fewest samples a track needs to be labelled from one zero-padded window (:data:`MIN_PADDED_SHARE`)."""
    return max(1, -(-cfg.window_samples // MIN_PADDED_SHARE))


class TrackWindower:
    """Streaming featurizer for one track: push ``(t,)`` float32 waveform chunks (at ``cfg.sample_rate``), get
    window images back; memory stays O(``block_frames`` + ``max_windows``) whatever the track's length.

    ``push(chunk)`` / ``finish()`` return lists of ``(images (n, 1, H, W) float16, starts_s (n,) float64)`` with
    ``1 <= n <= max_windows``, in window order. Window ``i`` starts at sample ``i * hop`` (``hop`` =
    ``round(hop_s * sample_rate)``, default ``cfg.hop_s``); only complete windows are made, except that a
    track shorter than one window gives one zero-padded window when ``pad_short``. The spectrogram is
    computed in blocks of ``block_frames`` frames at fixed frame indices, so the images depend only on the
    samples, never on how they were chunked. After ``finish()``: ``n_samples``, ``peak`` (max ``|x|``),
    ``n_windows`` and ``padded`` describe the track.
    """

    def __init__(self, cfg: FeatureConfig, hop_s: float | None = None, pad_short: bool = False,
                 max_windows: int = 32, block_frames: int = 512):
        cfg.check_current()
        self.cfg, self.pad_short, self.max_windows, self.block_frames = cfg, pad_short, max_windows, block_frames
        self.hop = int(round((cfg.hop_s if hop_s is None else hop_s) * cfg.sample_rate))
        if self.hop <= 0:
            raise ValueError(f"window hop must be > 0 samples (got hop_s={hop_s})")
        self.win, self.nf, self.hl, self.half = cfg.window_samples, window_frames(cfg), cfg.hop_length, cfg.n_fft // 2
        self._window, self._fbank = _stft_consts(cfg)
        self._buf = np.zeros(self.half, np.float32)  # samples from absolute index _buf0 (centring pad)
        self._buf0 = -self.half
        self._mel = np.zeros((cfg.n_mels, 0), np.float32)  # dB frames from absolute frame _mel0
        self._mel0 = 0
        self.n_samples, self.peak, self.n_windows, self.padded, self._done = 0, 0.0, 0, False, False

    # frames ---------------------------------------------------------------------------------
    def _frame0(self, i: int) -> int:
        return (i * self.hop + self.hl // 2) // self.hl  # round(start / hop_length), halves up

    def _block_end(self, f: int) -> int:
        """One past the last frame of the block holding frame ``f``."""
        return (f // self.block_frames + 1) * self.block_frames

    def _samples_for(self, f_end: int) -> int:
        """Samples (from the track start) that frames ``< f_end`` reach into."""
        return (f_end - 1) * self.hl - self.half + self.cfg.n_fft

    def _compute(self, f_end: int) -> None:
        """Compute dB frames up to ``f_end`` (exclusive), always in whole blocks ``[b·B, (b+1)·B)``."""
        while self._mel0 + self._mel.shape[1] < f_end:
            f_a = self._mel0 + self._mel.shape[1]
            f_b = self._block_end(f_a)
            lo, hi = f_a * self.hl - self.half, (f_b - 1) * self.hl - self.half + self.cfg.n_fft
            seg = self._buf[lo - self._buf0: hi - self._buf0]
            if seg.shape[0] < hi - lo:  # past the end of the track: zeros (finish() only)
                seg = np.pad(seg, (0, hi - lo - seg.shape[0]))
            spec = torch.stft(torch.from_numpy(np.ascontiguousarray(seg)), n_fft=self.cfg.n_fft, hop_length=self.hl,
                              window=self._window, center=False, return_complex=True)  # (F, f_b - f_a)
            power = spec.real.square() + spec.imag.square()
            mel = torch.matmul(power.T, self._fbank).T  # (n_mels, frames)
            db = (10.0 * torch.log10(torch.clamp(mel, min=1e-10))).numpy()
            self._mel = np.concatenate([self._mel, db], axis=1)

    def _ready(self, final: bool) -> int:
        """Index one past the last window that can be emitted now."""
        total = self.n_samples
        n = 0 if total < self.win else 1 + (total - self.win) // self.hop
        if final and n == 0 and total >= min_padded_samples(self.cfg) and self.pad_short:
            n, self.padded = 1, True
        if not final:  # window i needs the samples of the whole block holding its last frame
            while n > self.n_windows and self._samples_for(self._block_end(self._frame0(n - 1) + self.nf - 1)) > total:
                n -= 1
        return n

    def _emit(self, final: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        ready = self._ready(final)
        while self.n_windows < ready:
            idx = np.arange(self.n_windows, min(ready, self.n_windows + self.max_windows))
            f0 = np.array([self._frame0(int(i)) for i in idx])
            self._compute(int(f0[-1]) + self.nf)
            cols = f0[:, None] - self._mel0 + np.arange(self.nf)[None]
            db = torch.from_numpy(self._mel[:, cols].transpose(1, 0, 2).copy())  # (n, n_mels, nf)
            images = db_to_images(db, self.cfg).numpy().astype(np.float16)
            out.append((images, idx * self.hop / self.cfg.sample_rate))
            self.n_windows = int(idx[-1]) + 1
            self._forget()
        return out

    def _forget(self) -> None:
        """Drop the frames and samples no later window needs."""
        keep_f = min(self._frame0(self.n_windows), self._mel0 + self._mel.shape[1])  # computing resumes block-aligned
        if keep_f > self._mel0:
            self._mel = self._mel[:, keep_f - self._mel0:]
            self._mel0 = keep_f
        keep_s = keep_f * self.hl - self.half
        if keep_s > self._buf0:
            self._buf = self._buf[keep_s - self._buf0:]
            self._buf0 = keep_s

    # public ---------------------------------------------------------------------------------
    def push(self, chunk: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Add ``(t,)`` float32 samples; return the windows that became complete."""
        if self._done:
            raise RuntimeError("push() after finish()")
        chunk = np.asarray(chunk, np.float32).reshape(-1)
        if chunk.size:
            self.peak = max(self.peak, float(np.abs(chunk).max()))
            self._add(chunk)
            self.n_samples += chunk.shape[0]
        return self._emit(final=False)

    def _add(self, chunk: np.ndarray) -> None:
        self._buf = np.concatenate([self._buf, chunk])

    def finish(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """End of track: return the remaining windows (and the zero-padded one of a short track)."""
        self._done = True
        return self._emit(final=True)


def track_window_images(chunks: Iterable[np.ndarray], cfg: FeatureConfig, hop_s: float | None = None,
                        pad_short: bool = False, max_windows: int = 32) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream a track's ``(t,)`` waveform chunks → ``(images (n, 1, H, W) float16, starts_s (n,))`` batches.

    The one featurization used by prepare, label and predict (see :class:`TrackWindower`).
    """
    w = TrackWindower(cfg, hop_s, pad_short, max_windows)
    for chunk in chunks:
        yield from w.push(chunk)
    yield from w.finish()
