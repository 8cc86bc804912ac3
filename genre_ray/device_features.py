"""Spectrogram + windowing on the inference device (GPU) from waveform segments — no Ray.

The CPU path (:class:`genre_ray.features.TrackWindower`) ships ``(n, 1, H, W)`` images from the decode tasks
to the classifier. On a GPU node that spends the CPUs on STFTs the GPU could do in microseconds, and with
overlapping windows it ships every sample many times. Here the decode side cuts a track into **segments**
(:class:`SegmentWindower`, same window grid, same bounded memory): the samples that the STFT frames of up to
``max_windows`` consecutive windows need, once, plus each window's first frame. The device side
(:class:`SegmentFeaturizer`) lays a batch of segments back to back on the device, computes their frames in one
STFT and slices the windows out of them — the same images as the CPU path (frame ``j`` is the STFT of samples
``[j·hop_length − n_fft/2, j·hop_length + n_fft/2)`` of the track either way), up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genre_ray.features import FeatureConfig, TrackWindower, db_to_images, mel_filterbank, window_frames


@dataclass
class Segment:
    """Samples for windows ``first … first + n − 1`` of one track.

    ``samples (L,)`` float32 starts at track sample ``frame0·hop_length − n_fft/2`` (zeros before the track
    start and after its end); ``frame_offsets (n,)`` int64 = each window's first STFT frame counted from the
    segment's first frame; ``starts_s (n,)`` the windows' start times.
    """

    first: int
    samples: np.ndarray
    frame_offsets: np.ndarray
    starts_s: np.ndarray


class SegmentWindower(TrackWindower):
    """:class:`TrackWindower`'s window grid and streaming, but ``push``/``finish`` return :class:`Segment` lists
    instead of images (no STFT on this side). Segments are full — ``max_windows`` windows each — but a track's
    last (``finish``): a decoder's 10-s block holds ~3 windows at a 3-s hop, and one segment per block made rows
    of ~3 windows, so an actor call of ``call_windows // max_windows`` rows carried a tenth of the windows it was
    sized for. Memory: O(one block of audio + one segment) — the samples of ``max_windows`` windows, ≈ 100 s at a
    3-s hop (8.5 MB), ≈ 11 s at 0.25 s; pushed chunks are joined once, when a segment is cut."""

    def __init__(self, cfg: FeatureConfig, hop_s: float | None = None, pad_short: bool = False,
                 max_windows: int = 32, block_frames: int = 512):
        super().__init__(cfg, hop_s, pad_short, max_windows, block_frames)
        self._pending: list[np.ndarray] = []

    def _add(self, chunk: np.ndarray) -> None:
        self._pending.append(chunk)  # joined in _emit: no copy of the whole buffer per pushed block

    def _emit(self, final: bool) -> list[Segment]:  # type: ignore[override]
        out = []
        ready = self._ready(final)
        while self.n_windows < ready and (final or ready - self.n_windows >= self.max_windows):
            if self._pending:
                self._buf = np.concatenate([self._buf, *self._pending])
                self._pending = []
            idx = np.arange(self.n_windows, min(ready, self.n_windows + self.max_windows))
            f0 = np.array([self._frame0(int(i)) for i in idx], np.int64)
            f_a, f_b = int(f0[0]), int(f0[-1]) + self.nf
            lo, hi = f_a * self.hl - self.half, (f_b - 1) * self.hl - self.half + self.cfg.n_fft
            seg = self._buf[lo - self._buf0: hi - self._buf0]
            if seg.shape[0] < hi - lo:  # past the end of the track: zeros
                seg = np.pad(seg, (0, hi - lo - seg.shape[0]))
            out.append(Segment(int(idx[0]), np.ascontiguousarray(seg, np.float32), f0 - f_a,
                               idx * self.hop / self.cfg.sample_rate))
            self.n_windows = int(idx[-1]) + 1
            self._forget()
        return out

    def _forget(self) -> None:
        keep_s = self._frame0(self.n_windows) * self.hl - self.half
        if keep_s > self._buf0:
            self._buf = self._buf[keep_s - self._buf0:]
            self._buf0 = keep_s


def track_segments(chunks, cfg: FeatureConfig, hop_s: float | None = None, pad_short: bool = False,
                   max_windows: int = 32) -> list[Segment]:
    """All segments of a track given as ``(t,)`` waveform chunks (convenience for tests and benchmarks)."""
    w = SegmentWindower(cfg, hop_s, pad_short, max_windows)
    out: list[Segment] = []
    for chunk in chunks:
        out += w.push(chunk)
    return out + w.finish()


class SegmentFeaturizer:
    """Segments → ``(N, 1, H, W)`` float32 images on ``device``, in fp32 (no autocast: dB of bf16 power is too coarse).

    ``images(samples, offsets)``: ``samples`` a list of ``(L_s,)`` arrays (any read-only views: they are copied
    straight to the device, one copy each, no host buffer), ``offsets`` a list of ``(n_s,)`` window frame offsets;
    images come out segment by segment.

    On the device the segments lie back to back in one 1-D buffer (kept between calls), each starting at a multiple of
    ``hop_length`` (:func:`segment_layout`), so ONE 1-D STFT gives every segment's frames — frame ``k`` of segment
    ``s`` is frame ``start_s / hop_length + k`` of the buffer — and the frames that straddle two segments are never
    read. The earlier layout (segments padded to the longest and stacked, in host memory) moved up to twice the
    bytes and made one extra host copy: at the label actor's call size it ran at 19,940 audio-s/s on an H100,
    27 × slower than a plain mel spectrogram of the same audio (``benchmarks/results/2026-11-26-nvidia-h100-80gb-hbm3-session2-stages.json``).
    """

    def __init__(self, cfg: FeatureConfig, device: torch.device | str = "cpu"):
        cfg.check_current()
        self.cfg, self.device = cfg, torch.device(device)
        self.window = torch.hann_window(cfg.n_fft, device=self.device)
        self.fbank = mel_filterbank(cfg).to(self.device)
        self.nf = window_frames(cfg)
        self._arange = torch.arange(self.nf, device=self.device)
        self._flat = torch.zeros(0, device=self.device)

    def _buffer(self, n: int) -> torch.Tensor:
        """The first ``n`` samples of a buffer kept between calls (grown when needed). Between and after the
        segments it holds zeros or earlier calls' samples: only frames that straddle segments see them, and those
        are never read. Kept because a fresh 80-MB zeroed buffer cost 67 ms a call on the 2-core box's CPU (page
        faults), five times the copies that fill it."""
        if self._flat.numel() < n:
            self._flat = torch.zeros(n + n // 4, dtype=torch.float32, device=self.device)
        return self._flat[:n]

    @torch.no_grad()
    def images(self, samples: list[np.ndarray], offsets: list[np.ndarray]) -> torch.Tensor:
        if not samples:
            return torch.zeros((0, *self.cfg.image_shape), device=self.device)
        cfg = self.cfg
        lengths = [s.shape[0] for s in samples]
        counts = [len(o) for o in offsets]
        reach = [(int(np.max(o)) + self.nf - 1) * cfg.hop_length + cfg.n_fft if len(o) else 0 for o in offsets]
        if any(r > n for r, n in zip(reach, lengths)):
            raise ValueError("a window's frames reach past its segment's samples (segments come from SegmentWindower)")
        starts, total = segment_layout(lengths, cfg.hop_length, cfg.n_fft)
        flat = self._buffer(total)
        for s, start in zip(samples, starts):  # host → device straight from the row's memory
            flat[start: start + s.shape[0]].copy_(_host_tensor(s), non_blocking=True)
        # each window's first frame, counted in the buffer's frames
        first = np.repeat(starts // cfg.hop_length, counts) + np.concatenate([np.asarray(o, np.int64) for o in offsets])
        first_t = torch.from_numpy(first).to(self.device, non_blocking=True)
        spec = torch.stft(flat, n_fft=cfg.n_fft, hop_length=cfg.hop_length, window=self.window, center=False,
                          return_complex=True)  # (F, frames)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(power.T, self.fbank)  # (frames, n_mels)
        db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        windows = db[first_t[:, None] + self._arange[None]]  # (N, nf, n_mels)
        return db_to_images(windows.transpose(1, 2).contiguous(), cfg)


def segment_layout(lengths: list[int], hop_length: int, n_fft: int) -> tuple[np.ndarray, int]:
    """Where each of ``lengths`` segments starts in :class:`SegmentFeaturizer`'s 1-D device buffer: back to back,
    each at a multiple of ``hop_length`` → ``(starts (S,) int64, buffer length)`` (``n_fft`` samples of room at the end)."""
    slots = -(-np.asarray(lengths, np.int64) // hop_length) * hop_length
    starts = np.concatenate([[0], np.cumsum(slots)[:-1]]).astype(np.int64)
    return starts, int(slots.sum()) + n_fft


def _host_tensor(a: np.ndarray) -> torch.Tensor:
    """A CPU tensor over ``a``'s memory, also when ``a`` is a read-only view (rows of an Arrow block): it is only
    read, as the source of one copy."""
    if not a.flags.writeable:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "non-writable tensors": this one is never written
            return torch.from_numpy(a)
    return torch.from_numpy(a)
