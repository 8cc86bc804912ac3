"""Audio core against known signals, and real decoders on real encoded files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from genre_ray import audio

SR = 22_050


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    "n,win,hop,pad,expected",
    [(100, 10, 10, False, 10), (105, 10, 10, False, 10), (105, 10, 10, True, 11), (100, 10, 5, False, 19),
     (9, 10, 5, False, 0), (9, 10, 5, True, 1), (0, 10, 5, True, 0), (10, 10, 3, False, 1), (20, 10, 30, False, 1)],
)
def test_window_count(n, win, hop, pad, expected):
    assert audio.window_count(n, win, hop, pad) == expected


def test_frame_disjoint_and_overlapping_offsets_exact():
    wave = np.arange(10 * SR, dtype=np.float32)
    w = audio.frame(wave, SR, 3.0, 3.0)  # disjoint: 0, 3, 6 (9..12 incomplete)
    assert w.frames.shape == (3, 3 * SR)
    np.testing.assert_allclose(w.starts_s, [0.0, 3.0, 6.0])
    assert w.frames[1, 0] == 3 * SR and w.frames[2, -1] == 9 * SR - 1
    w = audio.frame(wave, SR, 3.0, 1.5)  # overlapping: 0, 1.5, ..., 6.0 → 5 windows
    assert w.frames.shape == (5, 3 * SR)
    np.testing.assert_allclose(w.starts_s, np.arange(5) * 1.5)
    for i, s in enumerate(w.starts_s):
        assert w.frames[i, 0] == int(round(s * SR))
    w = audio.frame(wave, SR, 3.0, 1.5, pad_last=True)  # + a zero-padded window at 7.5 s
    assert w.frames.shape[0] == 6 and w.frames[5, -1] == 0.0


def test_frame_short_signal():
    assert audio.frame(np.ones(SR, np.float32), SR, 3.0, 1.5).frames.shape == (0, 3 * SR)
    padded = audio.frame(np.ones(SR, np.float32), SR, 3.0, 1.5, pad_last=True)
    assert padded.frames.shape == (1, 3 * SR) and padded.frames[0, :SR].all() and not padded.frames[0, SR:].any()


def test_add_noise_hits_requested_snr():
    rng = np.random.default_rng(0)
    clean = np.stack([tone(440, 2.0), tone(880, 2.0, amp=0.05)])
    for snr in (0.0, 10.0, 30.0):
        noisy = audio.add_noise(clean, snr, rng)
        noise = noisy - clean
        measured = 10 * np.log10(np.mean(clean**2, axis=1) / np.mean(noise**2, axis=1))
        np.testing.assert_allclose(measured, snr, atol=0.2)
    silent = np.zeros((1, 1000), np.float32)
    assert not audio.add_noise(silent, 10.0, rng).any()


def test_resample_keeps_frequency_and_length():
    x = tone(1000, 1.0, sr=44_100)
    y = audio.resample(x, 44_100, SR)
    assert y.shape == (SR,) and y.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * SR / len(y) - 1000) < 2


def test_downmix_and_decode_wav(tmp_path):
    left, right = tone(440, 1.0, 44_100), tone(440, 1.0, 44_100, amp=0.1)
    p = tmp_path / "stereo.wav"
    sf.write(p, np.stack([left, right], axis=1), 44_100, subtype="FLOAT")
    y = audio.decode(p, SR)
    ref = audio.resample((left + right) / 2, 44_100, SR)
    assert y.shape == ref.shape and np.max(np.abs(y - ref)) < 1e-5


@pytest.mark.parametrize("channels", [1, 2, 3, 6, 8])
def test_to_mono_is_the_channel_mean_exactly_and_leaves_its_input(channels):
    rng = np.random.default_rng(channels)
    x = rng.uniform(-1, 1, (9_001, channels)).astype(np.float32)
    before = x.copy()
    y = audio.to_mono(x)
    assert y.shape == (9_001,) and y.dtype == np.float32
    mean = x.mean(axis=1, dtype=np.float32)
    if channels <= 7:  # the same float32 numbers, bit for bit (NumPy sums 8+ channels in another order)
        assert np.array_equal(y, mean)
    assert np.abs(y - mean).max() <= 2e-7
    assert np.array_equal(x, before) and (channels == 1 or not np.shares_memory(x, y))
    interleaved = np.asfortranarray(x)  # any memory layout (PyAV's planar frames arrive transposed)
    assert np.array_equal(audio.to_mono(interleaved), y)
    assert np.allclose(audio.to_mono(x.astype(np.float64)), y, atol=1e-7)
    mono = x[:, 0]
    assert np.array_equal(audio.to_mono(mono), mono)


def _encode_all(tmp_path, wave: np.ndarray, sr: int) -> dict[str, str]:
    """Write ``wave`` with real encoders: libsndfile for wav/flac/ogg/opus/mp3, FFmpeg (PyAV) for m4a/AAC."""
    paths = {}
    for ext, kw in {"wav": {"subtype": "PCM_16"}, "flac": {}, "ogg": {"subtype": "VORBIS"},
                    "opus": {"format": "OGG", "subtype": "OPUS"}, "mp3": {"format": "MP3"}}.items():
        p = tmp_path / f"clip.{ext}"
        sf.write(p, wave, sr if ext != "opus" else 48_000, **kw) if ext != "opus" else \
            sf.write(p, audio.resample(wave, sr, 48_000), 48_000, **kw)
        paths[ext] = str(p)
    import av

    p = tmp_path / "clip.m4a"
    with av.open(str(p), "w") as out:
        stream = out.add_stream("aac", rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(wave[None, :], format="flt", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    paths["m4a"] = str(p)
    return paths


def test_every_format_decodes_to_the_same_samples(tmp_path):
    sr = 44_100
    t = np.arange(3 * sr) / sr
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t)).astype(np.float32)
    ref = audio.resample(wave, sr, SR)
    ref_spec = np.abs(np.fft.rfft(ref[SR // 2: SR // 2 + 16384]))
    for ext, path in _encode_all(tmp_path, wave, sr).items():
        y = audio.decode(path, SR)
        assert y.dtype == np.float32 and y.ndim == 1
        # codecs add priming delay/padding: length within 0.1 s, spectrum the same shape
        assert abs(len(y) - len(ref)) < 0.1 * SR, ext
        # align by cross-correlation, then compare waveforms (lossy codecs: loose tolerance)
        seg = ref[SR // 2: SR // 2 + 8192]
        lag = int(np.argmax(np.correlate(y[: SR + 8192], seg, mode="valid")))
        aligned = y[lag: lag + 8192]
        snr = 10 * np.log10(np.sum(seg**2) / max(np.sum((aligned - seg) ** 2), 1e-12))
        assert snr > (60 if ext in ("wav", "flac") else 12), f"{ext}: SNR {snr:.1f} dB"
        spec = np.abs(np.fft.rfft(y[lag: lag + 16384]))  # y[lag] ↔ ref[SR // 2]
        assert np.corrcoef(spec, ref_spec)[0, 1] > 0.95, ext


def test_decode_errors_name_the_file(tmp_path):
    bad = tmp_path / "noise.flac"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(audio.DecodeError, match="noise.flac"):
        audio.decode(bad)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(audio.DecodeError, match="empty.wav"):
        audio.decode(empty)
    with pytest.raises(audio.DecodeError, match="missing.wav"):
        audio.decode(tmp_path / "missing.wav")


def test_streamed_mp3_equals_the_whole_file_at_any_block_size(tmp_path, capfd):
    """soundfile's read seeks to where it stopped after every read; libsndfile's MP3 decoder then re-primes
    libmpg123, which printed ``part2_3_length`` errors and, after a read ending inside an MPEG frame, returned wrong
    samples (up to 0.1 over ~200 samples for these synthesised clips at 22,080-frame blocks). decode_stream reads
    through sf_readf_float without the seek: exact at any block size, nothing printed."""
    import soundfile as sf

    from genre_ray.synth import write_corpus

    paths = write_corpus(tmp_path, genres=["classical"], per_genre=4, seconds=30, seed=0, start_index=2000, fmt="mp3")
    capfd.readouterr()
    for p in paths:
        whole = audio.decode(str(p), 22_050)
        for block_s in (0.46, 10.0):  # 22,080 and 480,000 source frames asked for
            streamed = np.concatenate(list(audio.decode_stream(str(p), 22_050, block_s=block_s)))
            assert streamed.shape == whole.shape
            np.testing.assert_allclose(streamed, whole, atol=1e-5, err_msg=f"{p.name} block_s={block_s}")
        raw, _ = sf.read(str(p), dtype="float32", always_2d=True)
        with sf.SoundFile(str(p)) as f:  # the reader alone, at a block size that is no multiple of a frame
            read, blocks = audio._soundfile_reader(f), []
            while len(block := read(10_007)):
                blocks.append(block)
        np.testing.assert_allclose(np.concatenate(blocks), raw, atol=1e-6, err_msg=p.name)
    assert "part2_3_length" not in capfd.readouterr().err  # libmpg123 re-primed by a seek prints these


def test_a_cut_off_flac_yields_what_decodes_then_says_where_it_stopped(tmp_path):
    """A FLAC cut at 60 % of its bytes: libsndfile reads ~36 s, then "lost sync". Every sample before that is
    yielded (the read that hit the error included), then TruncatedAudio says how far it got; a file broken from
    its first frame is a plain DecodeError."""
    y = tone(440, 60.0, sr=44_100)
    sf.write(tmp_path / "full.flac", y, 44_100)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: int(len(data) * 0.6)])
    got: list[np.ndarray] = []
    with pytest.raises(audio.TruncatedAudio, match=r"cut\.flac: decoding stopped after \d+\.\d\d s: ") as info:
        for block in audio.decode_stream(tmp_path / "cut.flac", SR, block_s=10.0):
            got.append(block)
    wave = np.concatenate(got)
    assert 30 < info.value.decoded_s < 60 and isinstance(info.value, audio.DecodeError)
    assert abs(wave.shape[0] / SR - info.value.decoded_s) < 0.01  # nothing decoded was dropped
    whole = np.concatenate(list(audio.decode_stream(tmp_path / "full.flac", SR)))
    np.testing.assert_allclose(wave[: SR * 20], whole[: SR * 20], atol=1e-4)
    first_frame = data.index(b"\xff\xf8", 4)  # FLAC's frame sync code: the metadata ends there
    (tmp_path / "broken.flac").write_bytes(data[:first_frame] + bytes(len(data) // 2))  # header, then zeros
    with pytest.raises(audio.DecodeError) as info:
        list(audio.decode_stream(tmp_path / "broken.flac", SR))
    assert not isinstance(info.value, audio.TruncatedAudio)


def test_nan_and_inf_samples_decode_as_silence(tmp_path):
    """A float WAV holding NaN/inf samples (a broken export) decodes to finite samples, streamed or whole: one NaN
    made the whole track's spectrogram — and its label — NaN."""
    wave = tone(440.0, 2.0)
    bad = [10, 5_000, 30_000]
    wave[bad] = [np.nan, np.inf, -np.inf]
    sf.write(tmp_path / "nan.wav", wave, SR, subtype="FLOAT")
    assert not np.isfinite(sf.read(tmp_path / "nan.wav", dtype="float32")[0]).all()  # they are in the file
    for got in (np.concatenate(list(audio.decode_stream(tmp_path / "nan.wav", SR, block_s=0.5))),
                audio.decode(tmp_path / "nan.wav", SR)):
        assert got.shape == wave.shape and np.isfinite(got).all()
        assert (got[bad] == 0).all()
        keep = np.isfinite(wave)
        np.testing.assert_array_equal(got[keep], wave[keep])



def _mp3(path, seconds: float, sr: int = 44_100) -> bytes:
    sf.write(path, np.stack([tone(440, seconds, sr=sr), tone(660, seconds, sr=sr)], axis=1), sr, format="MP3")
    return path.read_bytes()


def test_a_damaged_stretch_costs_its_packets_not_the_rest_of_the_file(tmp_path):
    """3 KB of garbage inside an MP3 (a bad rip, a damaged download): libsndfile gives up there, PyAV decodes on from
    the same sample and skips the corrupt packets — the file decodes to its end, with DamagedAudio saying what
    happened; the label job labels it ok with a ``damaged:`` note. Garbage near the start once cost the whole file."""
    from genre_ray.features import FeatureConfig
    from genre_ray.inference import TrackEnd, featurize_stream

    data = bytearray(_mp3(tmp_path / "clean.mp3", 30.0))
    for at in (0.2, 0.6):
        bad = bytearray(data)
        i = int(len(bad) * at)
        bad[i:i + 3000] = np.random.default_rng(1).bytes(3000)
        path = tmp_path / f"bad{int(at * 10)}.mp3"
        path.write_bytes(bytes(bad))
        got: list[np.ndarray] = []
        with pytest.raises(audio.DamagedAudio, match="damaged: .*corrupt packet") as info:
            for block in audio.decode_stream(path, SR):
                got.append(block)
        decoded = sum(len(b) for b in got) / SR
        assert decoded > 29.0 and info.value.decoded_s == pytest.approx(decoded, abs=0.05)
        end = [x for x in featurize_stream(path, FeatureConfig()) if isinstance(x, TrackEnd)][0]
        assert end.status == "ok" and end.error.startswith("damaged: ") and end.duration_s > 29.0


def test_a_wav_whose_header_says_no_data_is_decoded_by_the_next_decoder(tmp_path):
    """An unfinished recording leaves a WAV whose data size is still 0: libsndfile reads no samples, PyAV reads them."""
    y = tone(440, 5.0, sr=SR)
    sf.write(tmp_path / "ok.wav", y, SR, subtype="PCM_16")
    raw = bytearray((tmp_path / "ok.wav").read_bytes())
    at = raw.index(b"data") + 4
    raw[at:at + 4] = (0).to_bytes(4, "little")
    (tmp_path / "unfinished.wav").write_bytes(bytes(raw))
    got: list[np.ndarray] = []
    with pytest.raises(audio.DamagedAudio, match="soundfile decoded no samples; pyav decoded on to the end"):
        for block in audio.decode_stream(tmp_path / "unfinished.wav", SR):
            got.append(block)
    np.testing.assert_allclose(np.concatenate(got), y, atol=1e-4)


def test_a_cut_off_aac_stream_keeps_every_frame_decoded_before_the_cut(tmp_path):
    """ADTS AAC cut at 60 %: the frames PyAV decoded before the broken packet are yielded (they were dropped with
    the block they sat in)."""
    import av

    sr = 44_100
    y = tone(440, 10.0, sr=sr)
    with av.open(str(tmp_path / "full.aac"), "w", format="adts") as out:
        stream = out.add_stream("aac", rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(y[None, :], format="flt", layout="mono")
        frame.sample_rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    data = (tmp_path / "full.aac").read_bytes()
    (tmp_path / "cut.aac").write_bytes(data[: int(len(data) * 0.6)])
    got: list[np.ndarray] = []
    try:
        for block in audio.decode_stream(tmp_path / "cut.aac", SR):
            got.append(block)
    except audio.TruncatedAudio:
        pass
    assert 5.5 < sum(len(b) for b in got) / SR < 6.5
