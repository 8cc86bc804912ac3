"""Audio core: decode → mono float32 at a target rate, window framing, noise augmentation.

Pure functions (numpy, soundfile, soxr, PyAV) — no Ray, no torch.

Decoding uses a registry of backends tried in order: ``soundfile`` (libsndfile, bundled in its
wheel: wav, flac, ogg/vorbis, opus, mp3, aiff, au — the fastest here) then ``pyav`` (FFmpeg, bundled
in its wheel: m4a/aac, wma and everything else). Resampling goes through ``soxr`` (high quality).
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soxr

from genre_ray.registry import Registry

DEFAULT_SR = 22_050


class DecodeError(RuntimeError):
    """A file could not be decoded by any backend; the message names the file and each backend's error."""


class TruncatedAudio(DecodeError):
    """Decoding failed part-way, after ``decoded_s`` seconds of audio (a cut-off download, a corrupt tail). Raised by
    :func:`decode_stream` only once everything decoded before the failure has been yielded, so a caller that can use
    part of a file (the label job: "labelled from the first 43.5 s") catches it and goes on; to any other it is a
    :class:`DecodeError`. ``reason``: the decoder's error."""

    def __init__(self, path: str, decoded_s: float, reason: str):
        super().__init__(f"{path}: decoding stopped after {decoded_s:.2f} s: {reason}")
        self.decoded_s, self.reason = decoded_s, reason


class DamagedAudio(TruncatedAudio):
    """Decoded to its end, but not cleanly: corrupt packets were skipped, or the first decoder failed part-way and
    the next one decoded on from the same sample (a bad rip, a download with a damaged stretch). Raised by
    :func:`decode_stream` after everything has been yielded; ``decoded_s``: the audio decoded, ``reason``: what
    was damaged. A :class:`TruncatedAudio`: a caller that labels part of a file labels this one too."""

    def __init__(self, path: str, decoded_s: float, reason: str):
        DecodeError.__init__(self, f"{path}: damaged: {reason}")
        self.decoded_s, self.reason = decoded_s, reason


class _PacketsSkipped(Exception):
    """End of a PyAV stream that skipped ``count`` corrupt packets (every good one was yielded)."""

    def __init__(self, count: int):
        super().__init__(f"{count} corrupt packet(s)")
        self.count = count


MAX_BAD_PACKETS = 200
"""Corrupt packets a PyAV stream skips before it gives up (then the file is truncated there): a damaged stretch
of an MP3 or AAC file is a few packets, a file of garbage after its header is thousands."""


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
    """Downmix ``(T, C)`` or ``(T,)`` float audio to ``(T,)`` float32 by averaging channels.

    The channels are summed column by column, then divided by ``C``: for up to 7 channels the same float32
    numbers as ``samples.mean(axis=1, dtype=np.float32)`` (8 or more: within float32 rounding), whose reduction
    over a 2-wide inner axis is ~20× slower — it took 31–61 % of a stereo wav/flac/mp3/ogg file's whole
    :func:`decode_stream` (60-s 44.1-kHz clips, one core, 2-core box, 2026-11-27).
    """
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    channels = samples.shape[1]
    if channels == 1:  # a view where already float32 (a copy cost a quarter of a mono wav's decode)
        return samples[:, 0].astype(np.float32, copy=False)
    out = np.add(samples[:, 0], samples[:, 1], dtype=np.float32)  # a new array: the decoder's is never written
    for c in range(2, channels):
        out += samples[:, c]
    out /= np.float32(channels)
    return out


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
    check_local_file(path)
    errors: list[str] = []
    for name in backends or tuple(DECODERS):
        try:
            data, sr_in = DECODERS[name](path)
        except Exception as exc:  # each backend raises its own types; we report them all
            errors.append(_backend_error(name, exc))
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
# streaming decode (bounded memory, any length)
# ---------------------------------------------------------------------------------------------

StreamBackend = Callable[[object, int], tuple[int, Iterator[np.ndarray]]]
"""A streaming backend opens a path or binary file object and returns ``(sample_rate, blocks)`` where
``blocks`` yields ``(t, C)`` float32 arrays of at most ``block_frames`` (source-rate) frames each. Opening
(header parsing) happens before it returns, so an unreadable file fails there."""

STREAM_DECODERS: Registry[StreamBackend] = Registry("streaming decoder")


MPEG_FRAME = 1152
"""Samples per MPEG audio frame (Layer I's 384 and MPEG-2/2.5 Layer III's 576 divide it). MP3 blocks are cut at
multiples of it, which keeps the :func:`_soundfile_reader` fallback (``SoundFile.read``) exact: see there."""


def _soundfile_reader(f: object) -> Callable[[int], np.ndarray]:
    """``read(frames) → (≤ frames, C)`` float32 blocks of an open ``soundfile.SoundFile``, read straight through
    libsndfile's ``sf_readf_float``.

    ``SoundFile.read`` (soundfile 0.13–0.14) follows every read with an absolute seek to where it stopped, and
    libsndfile's MP3 decoder answers a seek by re-priming libmpg123: it prints ``part2_3_length … too large`` lines
    for every block after the first (MPEG-2 LSF files: 20 of 40 of the bench's 22,050-Hz mono MP3s), and after a
    read that ended inside an MPEG frame it returned **wrong samples** (up to 0.1 of full scale over ~200 samples:
    13 of 50 files at 22,080-frame blocks). Reading without the seek is exact at any block size (40 MP3s × 10,007-,
    22,080- and 480,000-frame blocks: at most 1.2e-7 from a whole-file read, no lines printed); ``decode_stream``
    is as fast either way (10 files a format, mono and stereo, two A/Bs of 4 alternating rounds: 0.86–1.11 ×, no
    consistent sign). Where soundfile's internals differ, ``SoundFile.read``."""
    import soundfile as sf

    lib, ffi, handle = getattr(sf, "_snd", None), getattr(sf, "_ffi", None), getattr(f, "_file", None)
    if lib is None or ffi is None or handle is None or not hasattr(lib, "sf_readf_float"):
        return lambda frames: f.read(frames, dtype="float32", always_2d=True)

    failed: list[int] = []  # an error after some frames were read: those frames first, the error on the next read

    def read(frames: int) -> np.ndarray:
        if failed:
            raise sf.LibsndfileError(failed[0], "Error reading the file: ")
        out = np.empty((frames, f.channels), np.float32)
        n = lib.sf_readf_float(handle, ffi.cast("float *", ffi.from_buffer(out)), frames)
        err = lib.sf_error(handle)
        if err:
            if n <= 0:
                raise sf.LibsndfileError(err, "Error reading the file: ")
            failed.append(err)
        return out[:max(0, n)]

    return read


@STREAM_DECODERS.register("soundfile")
def _stream_soundfile(src: object, block_frames: int) -> tuple[int, Iterator[np.ndarray]]:
    import soundfile as sf

    f = sf.SoundFile(src)
    if f.format == "MP3":  # reads end on frame boundaries (see MPEG_FRAME)
        block_frames = max(MPEG_FRAME, block_frames // MPEG_FRAME * MPEG_FRAME)
    read = _soundfile_reader(f)

    def blocks() -> Iterator[np.ndarray]:
        with f:
            while True:
                data = read(block_frames)
                if data.shape[0] == 0:
                    return
                yield data

    return int(f.samplerate), blocks()


@STREAM_DECODERS.register("pyav")
def _stream_pyav(src: object, block_frames: int) -> tuple[int, Iterator[np.ndarray]]:
    import av

    container = av.open(src)
    if not container.streams.audio:
        container.close()
        raise DecodeError("no audio stream")
    stream = container.streams.audio[0]
    sr = int(stream.codec_context.sample_rate or stream.rate or 0)

    skipped = [0]  # corrupt packets passed over (decoded() counts them, blocks() reports them)

    def decoded() -> Iterator[object]:
        """The stream's frames, packet by packet: a corrupt packet (FFmpeg's InvalidDataError) is skipped and
        counted — one bad packet costs its ~26 ms, not the rest of the file — up to :data:`MAX_BAD_PACKETS`."""
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                skipped[0] += 1
                if skipped[0] > MAX_BAD_PACKETS:
                    raise
                continue
            yield from frames

    def blocks() -> Iterator[np.ndarray]:
        resampler = av.AudioResampler(format="fltp")  # planar float32 in the source layout
        pending: list[np.ndarray] = []
        n = 0
        failure: Exception | None = None
        with container:
            try:
                frames = (out for frame in decoded() for out in resampler.resample(frame))
                for out in itertools.chain(frames, resampler.resample(None)):
                    pending.append(out.to_ndarray().T.astype(np.float32, copy=False))  # (t, C)
                    n += pending[-1].shape[0]
                    if n >= block_frames:
                        yield np.concatenate(pending)
                        pending, n = [], 0
            except Exception as exc:  # noqa: BLE001 - what decoded before the failure is yielded first
                failure = exc
        if pending:
            yield np.concatenate(pending)
        if failure is not None:
            raise failure
        if skipped[0]:
            raise _PacketsSkipped(skipped[0])

    return sr, blocks()


LIBSNDFILE_NOT_FOUND = "File does not exist or is not a regular file (possibly a pipe?)"
"""What libsndfile says of a file it does not recognise (random bytes named .wav) — read as "file missing"."""


def _backend_error(name: str, exc: Exception) -> str:
    """One backend's failure for a file :func:`check_local_file` has passed (it exists, is regular and readable), in
    the words a user needs."""
    text = str(exc).strip()
    if LIBSNDFILE_NOT_FOUND in text:
        text = "format not recognised"
    return f"{name}: {type(exc).__name__}: {text[:200]}"


def check_local_file(path: str) -> None:
    """Fail early, with the reason in words, for a local path that cannot be audio: missing, a dangling or looping
    symlink, a directory/FIFO/device (reading a FIFO would block forever), empty, or unreadable. URIs pass."""
    if "://" in path and not path.startswith("file://"):
        return
    local = path[len("file://"):] if path.startswith("file://") else path
    try:
        os.stat(local)
    except PermissionError:  # a folder on the way cannot be searched: not "no such file"
        raise DecodeError(f"{path}: permission denied (a folder on its path cannot be searched)") from None
    except OSError:
        pass
    if not os.path.exists(local):
        if os.path.islink(local):
            try:
                os.stat(local)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise DecodeError(f"{path}: symlink loop") from None
            raise DecodeError(f"{path}: dangling symlink (target {os.readlink(local)!r} does not exist)")
        raise DecodeError(f"{path}: no such file")
    st = os.stat(local)
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (FIFO, socket or device)"
        raise DecodeError(f"{path}: {kind}")
    if st.st_size == 0:
        raise DecodeError(f"{path}: empty file (0 bytes)")
    if not os.access(local, os.R_OK):
        raise DecodeError(f"{path}: permission denied (mode {stat.filemode(st.st_mode)})")


def _open_source(path: str) -> object:
    """A local path as is; ``s3://``, ``gs://`` … through fsspec (its filesystem package must be installed)."""
    if "://" in path and not path.startswith("file://"):
        import fsspec

        return fsspec.open(path, "rb").open()
    return path[len("file://"):] if path.startswith("file://") else path


def decode_stream(path: str | Path, sr: int = DEFAULT_SR, block_s: float = 10.0,
                  backends: tuple[str, ...] | None = None, info: dict | None = None) -> Iterator[np.ndarray]:
    """Decode any supported file to mono float32 at ``sr`` Hz in blocks, holding O(``block_s``) audio at a time.

    Yields ``(t,)`` float32 blocks (``t`` ≈ ``block_s * sr``; the last one shorter); their concatenation
    matches :func:`decode` within resampler tolerance. Backends (``STREAM_DECODERS`` order, or
    ``backends``) are tried until one opens the file; resampling uses ``soxr.ResampleStream`` (HQ).
    Raises :class:`DecodeError` naming the file when no backend opens it, when it decodes to zero
    samples, or when decoding fails before any audio; :class:`TruncatedAudio` (a ``DecodeError``) when it fails
    part-way — after yielding every sample decoded up to there (the resampler's tail included). ``info``, when
    given, receives ``sample_rate`` (the file's own, before resampling) and ``backend`` once a decoder opens it.
    """
    path = str(path)
    check_local_file(path)
    errors: list[str] = []
    names = tuple(backends or STREAM_DECODERS)
    block_frames = max(1, int(block_s * 48_000))
    for i, name in enumerate(names):
        opened = _open_stream(path, name, block_frames, errors)
        if opened is None:
            continue
        sr_in, blocks = opened
        if info is not None:
            info.update(sample_rate=sr_in, backend=name)
        yield from _mono_resampled(path, _spliced(path, name, sr_in, blocks, names[i + 1:], block_frames), sr_in, sr)
        return
    raise DecodeError(f"{path}: no decoder could read it ({'; '.join(errors)})")


def _open_stream(path: str, name: str, block_frames: int, errors: list[str]) -> tuple[int, Iterator[np.ndarray]] | None:
    """Backend ``name``'s ``(sample rate, blocks)`` for ``path``, or None with the reason appended to ``errors``."""
    src = None
    try:
        src = _open_source(path)
        sr_in, blocks = STREAM_DECODERS[name](src, block_frames)
    except Exception as exc:  # each backend raises its own types; we report them all
        errors.append(_backend_error(name, exc))
        if src is not None and not isinstance(src, str):
            src.close()
        return None
    if sr_in <= 0:
        errors.append(f"{name}: invalid sample rate {sr_in}")
        return None
    return sr_in, blocks


class _Recovered(Exception):
    """End of a stream that decoded to its end, but not cleanly (``reason``): :class:`DamagedAudio` to callers."""


def _spliced(path: str, name: str, sr_in: int, blocks: Iterator[np.ndarray], others: tuple[str, ...],
             block_frames: int) -> Iterator[np.ndarray]:
    """Backend ``name``'s ``(t, C)`` blocks; when it fails part-way — or decodes nothing (a WAV whose header says
    0 bytes of data) — the next backend that opens the file at the same rate and channel count decodes on from the
    same sample (what the first gave is skipped), so a file one decoder gives up on loses only what no decoder
    reads. Ends with :class:`_Recovered` when a second decoder or skipped packets were needed; with the first
    failure when no other decoder gets further."""
    done, channels, failure = 0, None, None
    try:
        for block in blocks:
            channels = block.shape[1]
            done += block.shape[0]
            yield block
    except _PacketsSkipped as exc:
        raise _Recovered(f"{name} skipped {exc}") from None
    except Exception as exc:  # noqa: BLE001 - handed to the next backend, reported if none does better
        failure = exc
    if failure is None and done > 0:
        return
    why = (f"{name} stopped after {done / sr_in:.2f} s ({type(failure).__name__}: {str(failure).strip()[:160]})"
           if failure is not None else f"{name} decoded no samples")
    for other in others:
        opened = _open_stream(path, other, block_frames, [])
        if opened is None or opened[0] != sr_in:
            continue
        skip, more, extra = done, opened[1], 0
        try:
            for block in more:
                if channels is not None and block.shape[1] != channels:
                    break
                if skip >= block.shape[0]:
                    skip -= block.shape[0]
                    continue
                block, skip = block[skip:], 0
                extra += block.shape[0]
                yield block
        except _PacketsSkipped as exc:
            if extra:
                raise _Recovered(f"{why}; {other} decoded on to the end and skipped {exc}") from None
        except Exception:  # noqa: BLE001 - this one failed too: the first failure is the news
            if extra:
                raise _Recovered(f"{why}; {other} decoded {extra / sr_in:.2f} s more, then failed") from None
        else:
            if extra:
                raise _Recovered(f"{why}; {other} decoded on to the end") from None
    if failure is not None:
        raise failure


def _mono_resampled(path: str, blocks: Iterator[np.ndarray], sr_in: int, sr: int) -> Iterator[np.ndarray]:
    stream = soxr.ResampleStream(sr_in, sr, 1, dtype="float32", quality="HQ") if sr_in != sr else None
    total = 0
    failure: Exception | None = None
    try:
        for data in blocks:
            wave = to_mono(data)
            if not np.isfinite(wave).all():
                wave = np.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)
            total += wave.shape[0]
            out = stream.resample_chunk(wave) if stream is not None else wave
            if out.shape[0]:
                yield out.astype(np.float32, copy=False)
    except DecodeError:
        raise
    except _Recovered as exc:
        failure = exc
    except Exception as exc:
        if total == 0:
            raise DecodeError(f"{path}: decoding failed at the start: {type(exc).__name__}: "
                              f"{str(exc).strip()[:200]}") from exc
        failure = exc
    if total == 0:
        raise DecodeError(f"{path}: decoded to zero samples (empty audio)")
    if stream is not None:
        tail = stream.resample_chunk(np.zeros(0, np.float32), last=True)
        if tail.shape[0]:
            yield tail.astype(np.float32, copy=False)
    if isinstance(failure, _Recovered):
        raise DamagedAudio(path, total / sr_in, str(failure))
    if failure is not None:
        raise TruncatedAudio(path, total / sr_in, f"{type(failure).__name__}: {str(failure).strip()[:200]}") \
            from failure


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
