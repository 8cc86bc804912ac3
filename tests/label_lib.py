"""Helpers for the labelling tests: a small sharp (untrained) model bundle and a synthetic library with nested
folders, mixed formats, sample rates and channel counts, plus one file of each bad kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from genre_ray import audio
from genre_ray.bundle import save_bundle
from genre_ray.features import FeatureConfig
from genre_ray.models import create_model
from genre_ray.synth import synth_clip, clip_seed

# smoke size: 48×48 images of 2-s windows every 1 s (the product default is 216×216, 3 s / 1.5 s)
FEATURES = FeatureConfig(window_s=2.0, hop_s=1.0, n_fft=1024, hop_length=256, n_mels=48, height=48, width=48)
CLASSES = ["blues", "classical", "metal", "reggae"]
KWARGS = {"channels": [8, 8, 16, 16], "dense": [32], "dropout": 0.0, "input_size": [48, 48]}

# (relative path, genre, seconds, sample rate, channels)
GOOD = [
    ("blues/b1.wav", "blues", 4.0, 22_050, 1),
    ("blues/live/b2.flac", "blues", 5.5, 44_100, 2),
    ("classical/c1.ogg", "classical", 4.5, 32_000, 1),
    ("classical/old/deep/c2.mp3", "classical", 5.0, 44_100, 2),
    ("metal/m1.m4a", "metal", 4.0, 48_000, 2),
    ("metal/m2.wav", "metal", 6.0, 16_000, 1),
    ("reggae/r1.flac", "reggae", 4.0, 22_050, 2),
    ("reggae/dub/r2.mp3", "reggae", 3.0, 22_050, 1),
]
BAD = {  # name → expected status
    "bad/corrupt.flac": "error",
    "bad/empty.wav": "error",
    "bad/not-audio.mp3": "error",
    "bad/silent.wav": "error",
    "bad/short.wav": "too-short",
}


def sharp_bundle(path: Path) -> Path:
    """An untrained homebrew model whose logits are scaled up, so window probabilities are far from uniform and
    differ from window to window (a strong check that two paths compute the same thing)."""
    torch.manual_seed(0)
    model = create_model("homebrew", num_classes=len(CLASSES), **KWARGS)
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
    return save_bundle(path, model.eval(), "homebrew", KWARGS, CLASSES, FEATURES)


def write_file(path: Path, wave: np.ndarray, sr: int) -> None:
    """``wave (T,)`` or ``(T, C)`` float32 → ``path`` with a real encoder (libsndfile, or PyAV for m4a)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".m4a":
        import av

        data = wave if wave.ndim == 2 else wave[:, None]
        with av.open(str(path), "w") as out:
            stream = out.add_stream("aac", rate=sr)
            stream.layout = "stereo" if data.shape[1] == 2 else "mono"
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T), format="fltp", layout=stream.layout)
            frame.sample_rate = sr
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return
    fmt = {".mp3": {"format": "MP3"}, ".ogg": {"subtype": "VORBIS"}}.get(path.suffix, {})
    sf.write(path, wave, sr, **fmt)


def make_library(root: Path) -> dict[str, str]:
    """Write the library; returns ``{absolute path: expected status}``."""
    expected = {}
    for i, (rel, genre, seconds, sr, ch) in enumerate(GOOD):
        y = synth_clip(genre, seconds, sr=22_050, rng=np.random.default_rng(clip_seed(7, genre, i)))
        y = audio.resample(y.astype(np.float32), 22_050, sr)
        if ch == 2:  # two different channels: the left one delayed a little and quieter
            y = np.stack([0.7 * np.roll(y, 50), y], axis=1)
        write_file(root / rel, y, sr)
        expected[str(root / rel)] = "ok"
    (root / "bad").mkdir(parents=True, exist_ok=True)
    (root / "bad/corrupt.flac").write_bytes(b"fLaC" + np.random.default_rng(0).bytes(3000))
    (root / "bad/empty.wav").write_bytes(b"")
    (root / "bad/not-audio.mp3").write_text("this is a text file, not audio\n" * 40)
    sf.write(root / "bad/silent.wav", np.zeros(3 * 22_050, np.float32), 22_050)
    sf.write(root / "bad/short.wav", 0.3 * np.sin(np.arange(11_025) * 0.05).astype(np.float32), 22_050)
    expected.update({str(root / k): v for k, v in BAD.items()})
    return expected
