"""Log-mel spectrogram images — defined once, used by prepare, training, label and predict alike.

``FeatureConfig`` holds every number that shapes an image; ``LogMel`` turns a batch of windows
``(B, T)`` into images ``(B, 1, H, W)``: mel power spectrogram → dB → per-image normalisation to
``[0, 1]`` → resized to ``H × W`` (log-frequency on y with row 0 the lowest band, time on x).
No Ray here; runs on CPU or GPU.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass

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
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown FeatureConfig keys: {sorted(unknown)}")
        return cls(**d)

    def hash(self) -> str:
        """Stable 12-hex digest of the config (window/hop included: they decide what a window is)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


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
        peak = db.amax(dim=(1, 2), keepdim=True).clamp(min=self.AMIN_DB + cfg.top_db)
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
