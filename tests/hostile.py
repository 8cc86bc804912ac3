"""A hostile-input corpus, written by the tests (nothing but this generator is committed).

``make_hostile(root)`` lays out a GTZAN-style folder ``root/<genre>/…`` with a few good clips per genre and one of
every kind of bad input a real library holds: empty, truncated, random bytes, text and PNG named as audio, silence,
a 0.3-s clip, a long file, odd sample rates / channel counts / sample formats, hostile names, a directory named
``album.wav``, symlink loops, a dangling symlink, a mode-000 file and a WAV whose header lies about its size.

Each entry says what a user may expect: ``"ok"`` (must label), ``"error"`` (must be a reported error or skip row),
or ``"any"`` (either, as long as it is accounted for exactly once — e.g. a truncated MP3 decodes partially, and a
mode-000 file is readable when the tests run as root).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from genre_ray.synth import clip_seed, synth_clip
from label_lib import write_file

GENRES = ("blues", "metal")
GOOD_PER_GENRE = 6
SR = 22_050


def _clip(genre: str, i: int, seconds: float) -> np.ndarray:
    return synth_clip(genre, seconds, sr=SR, rng=np.random.default_rng(clip_seed(11, genre, i))).astype(np.float32)


def _resample(y: np.ndarray, sr: int) -> np.ndarray:
    from genre_ray import audio

    return audio.resample(y, SR, sr)


def make_hostile(root: Path, long_minutes: float = 8.0) -> dict[str, str]:
    """Write the corpus under ``root``; returns ``{path as listed: "ok" | "error" | "any"}`` for every entry a
    folder walk should account for (files named like audio that are not directories)."""
    exp: dict[str, str] = {}

    def put(rel: str, expect: str) -> Path:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        exp[str(p)] = expect
        return p

    # good clips: enough per genre for a stratified train/val/test split
    for g in GENRES:
        for i in range(GOOD_PER_GENRE):
            fmt = ("wav", "flac", "mp3", "ogg")[i % 4]
            write_file(put(f"{g}/good {i}.{fmt}", "ok"), _clip(g, i, 4.0), SR)

    b, m = GENRES
    # -- unreadable or not audio at all
    put(f"{b}/empty.wav", "error").write_bytes(b"")
    put(f"{m}/random-bytes.flac", "error").write_bytes(np.random.default_rng(1).bytes(20_000))
    put(f"{b}/readme.mp3", "error").write_text("this is a text file, not audio\n" * 200)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imsave(put(f"{m}/cover.png.ogg", "error"), np.random.default_rng(2).random((32, 32)), format="png")
    # -- truncated MP3: the first 40 % of a real one (decoders recover what is there, or fail cleanly)
    tmp = root / ".tmp-full.mp3"
    write_file(tmp, _clip(b, 20, 6.0), SR)
    data = tmp.read_bytes()
    tmp.unlink()
    put(f"{b}/truncated.mp3", "any").write_bytes(data[: int(len(data) * 0.4)])
    # -- silence and too short
    sf.write(put(f"{m}/silent.wav", "error"), np.zeros(4 * SR, np.float32), SR)
    sf.write(put(f"{b}/short-0.3s.wav", "any"), _clip(b, 21, 0.3), SR)  # padded or skipped: a setting
    # -- a long file (tiled, written block by block)
    with sf.SoundFile(put(f"{m}/long.flac", "ok"), "w", SR, 1) as f:
        block = _clip(m, 22, 30.0)
        for _ in range(int(long_minutes * 2)):
            f.write(block)
    # -- odd rates, channel counts and sample formats
    sf.write(put(f"{b}/8k-mono.wav", "ok"), _resample(_clip(b, 23, 4.0), 8_000), 8_000)
    y96 = _resample(_clip(m, 24, 4.0), 96_000)
    six = np.stack([y96 * (0.3 + 0.1 * c) for c in range(6)], axis=1)
    sf.write(put(f"{m}/96k-6ch.wav", "ok"), six, 96_000)
    sf.write(put(f"{b}/pcm24.wav", "ok"), _clip(b, 25, 4.0), SR, subtype="PCM_24")
    sf.write(put(f"{m}/float32.wav", "ok"), _clip(m, 26, 4.0), SR, subtype="FLOAT")
    # -- hostile names
    write_file(put(f"{b}/with space and 'quotes' \"too\".wav", "ok"), _clip(b, 27, 4.0), SR)
    write_file(put(f"{m}/ünïcødé 日本語 ♪.flac", "ok"), _clip(m, 28, 4.0), SR)
    write_file(put(f"{b}/-leading-dash.mp3", "ok"), _clip(b, 29, 4.0), SR)
    write_file(put(f"{m}/--help.wav", "ok"), _clip(m, 30, 4.0), SR)
    # -- a directory named like audio (not an input itself; the clip inside it is)
    write_file(put(f"{b}/album.wav/inside.flac", "ok"), _clip(b, 31, 4.0), SR)
    # -- symlinks: a folder loop (never entered), a file link pointing at itself, a dangling link, a good link
    (root / m / "loop").symlink_to(root / m, target_is_directory=True)
    os.symlink("self-loop.wav", put(f"{m}/self-loop.wav", "error"))
    os.symlink(str(root / "nowhere" / "gone.wav"), put(f"{b}/dangling.wav", "error"))
    outside = root.parent / f"{root.name}-outside" / "linked.wav"  # outside the corpus: not a duplicate track
    write_file(outside, _clip(m, 34, 4.0), SR)
    os.symlink(str(outside), put(f"{m}/link-to-good.wav", "ok"))
    # -- mode 000 (unreadable, except to root)
    p = put(f"{m}/mode000.wav", "any")
    sf.write(p, _clip(m, 32, 4.0), SR)
    os.chmod(p, 0)
    # -- a WAV whose header claims ~4 GiB of data
    p = put(f"{b}/huge-header.wav", "any")
    sf.write(p, _clip(b, 33, 4.0), SR, subtype="PCM_16")
    raw = bytearray(p.read_bytes())
    i = raw.find(b"data")
    raw[4:8] = (0xFFFFFFF0).to_bytes(4, "little")
    raw[i + 4:i + 8] = (0xFFFFFF00).to_bytes(4, "little")
    p.write_bytes(bytes(raw))
    return exp


def restore_permissions(root: Path) -> None:
    """Let pytest's tmp cleanup remove the mode-000 file."""
    for p in root.rglob("mode000.wav"):
        if not p.is_symlink():
            os.chmod(p, 0o644)
