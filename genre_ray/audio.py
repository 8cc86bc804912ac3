"""Audio core: decode → mono float32 at a target rate, window framing, noise augmentation.

Pure functions (numpy, soundfile, soxr, PyAV) — no Ray, no torch.

Decoding uses a registry of backends tried in order: ``soundfile`` (libsndfile, bundled in its
wheel: wav, flac, ogg/vorbis, opus, mp3, aiff, au — the fastest here) then ``pyav`` (FFmpeg, bundled
in its wheel: m4a/aac, wma and everything else). Resampling goes through ``soxr`` (high quality).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soxr

from genre_ray.registry import Registry

DEFAULT_SR = 22_050


class DecodeError(RuntimeError):
    """A file could not be decoded by any backend; the message names the file and each backend's error."""


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------

Backend = Callable[[str], tuple[np.ndarray, int]]
"""A backend reads ``path`` and returns ``(samples (T, C) float32, sample_rate)``."""

DECODERS: Registry[Backend] = Registry("decoder")
register_decoder = DECODERS.register


@register_decoder("soundfile")
def _decode_soundfile(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return data, int(sr)


@register_decoder("pyav")
def _decode_pyav(path: str) -> tuple[np.ndarray, int]:
    import av

    chunks: list[np.ndarray] = []
    with av.open(path) as container:
        if not container.streams.audio:
            raise DecodeError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        sr = int(stream.codec_context.sample_rate or stream.rate or 0)
        # Convert every frame to packed float32 in the source layout; downmix happens later.
        resampler = av.AudioResampler(format="fltp")
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().T.astype(np.float32, copy=False))  # (t, C)
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().T.astype(np.float32, copy=False))
    if not chunks:
        return np.zeros((0, 1), np.float32), sr
    return np.concatenate(chunks, axis=0), sr


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Downmix ``(T, C)`` or ``(T,)`` float audio to ``(T,)`` float32 by averaging channels."""
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    return samples.mean(axis=1, dtype=np.float32)


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono ``(T,)`` float32 from ``sr_in`` to ``sr_out`` Hz → ``(round(T * sr_out / sr_in),)``."""
    if sr_in == sr_out or wave.size == 0:
        return wave.astype(np.float32, copy=False)
    return soxr.resample(wave, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def decode(path: str | Path, sr: int = DEFAULT_SR, backends: tuple[str, ...] | None = None) -> np.ndarray:
    """Decode any supported audio file to mono float32 at ``sr`` Hz.

    Returns ``(T,)`` float32 with ``T ≈ duration_s * sr``. Tries each backend in ``DECODERS`` order
    (or ``backends``); raises :class:`DecodeError` naming the file and every backend's error when none
    reads it, or when the file decodes to zero samples or a non-positive sample rate.
    """
    path = str(path)
    errors: list[str] = []
    for name in backends or tuple(DECODERS):
        try:
            data, sr_in = DECODERS[name](path)
        except Exception as exc:  # each backend raises its own types; we report them all
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).strip()[:200]}")
            continue
        if sr_in <= 0:
            errors.append(f"{name}: invalid sample rate {sr_in}")
            continue
        if data.shape[0] == 0:
            raise DecodeError(f"{path}: decoded to zero samples (empty audio)")
        wave = to_mono(data)
        if not np.isfinite(wave).all():
            wave = np.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)
        return resample(wave, sr_in, sr)
    raise DecodeError(f"{path}: no decoder could read it ({'; '.join(errors)})")


# ---------------------------------------------------------------------------------------------
# framing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Windows:
    """Fixed-length windows cut from one waveform.

    ``frames``: ``(n, win)`` float32 view or copy; ``starts_s``: ``(n,)`` float64 start times in seconds.
    """

    frames: np.ndarray
    starts_s: np.ndarray


def window_count(n_samples: int, win: int, hop: int, pad_last: bool = False) -> int:
    """Number of windows of ``win`` samples every ``hop`` samples in a signal of ``n_samples``.

    Without ``pad_last`` only complete windows count: ``0`` if ``n_samples < win`` else
    ``1 + (n_samples - win) // hop``. With ``pad_last`` a trailing partial window (and a signal
    shorter than one window) counts too, to be zero-padded: ``max(1, ceil((n_samples - win) / hop) + 1)``.
    """
    if win <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive (got win={win}, hop={hop})")
    if n_samples <= 0:
        return 0
    if n_samples < win:
        return 1 if pad_last else 0
    full = 1 + (n_samples - win) // hop
    if pad_last and (full - 1) * hop + win < n_samples:
        return full + 1
    return full


def frame(wave: np.ndarray, sr: int, win_s: float, hop_s: float, pad_last: bool = False) -> Windows:
    """Cut ``(T,)`` audio into windows of ``win_s`` seconds every ``hop_s`` seconds.

    ``hop_s == win_s`` gives disjoint windows, ``hop_s < win_s`` overlapping ones, ``hop_s > win_s``
    gaps. Returns :class:`Windows` with ``frames (n, round(win_s*sr))`` and ``starts_s (n,)`` where
    window ``i`` starts at sample ``i * round(hop_s*sr)``; ``n = window_count(T, win, hop, pad_last)``.
    """
    win, hop = int(round(win_s * sr)), int(round(hop_s * sr))
    n = window_count(wave.shape[0], win, hop, pad_last)
    if n == 0:
        return Windows(np.zeros((0, win), np.float32), np.zeros((0,), np.float64))
    need = (n - 1) * hop + win
    if need > wave.shape[0]:
        wave = np.pad(wave, (0, need - wave.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(wave, win)[::hop][:n]
    starts = np.arange(n, dtype=np.float64) * hop / sr
    return Windows(np.array(frames, dtype=np.float32, copy=True), starts)  # writable, owns its memory


# ---------------------------------------------------------------------------------------------
# augmentation
# ---------------------------------------------------------------------------------------------


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise at ``snr_db`` dB signal-to-noise ratio.

    ``wave``: ``(..., T)`` float32; the SNR is measured per leading index (per window) over the last
    axis. Silent inputs get no noise (the SNR is undefined). Returns a new array of the same shape.
    """
    power = np.mean(np.square(wave, dtype=np.float64), axis=-1, keepdims=True)
    noise_std = np.sqrt(power / (10.0 ** (snr_db / 10.0)))
    noise = rng.standard_normal(wave.shape).astype(np.float32) * noise_std.astype(np.float32)
    return (wave + noise).astype(np.float32, copy=False)
