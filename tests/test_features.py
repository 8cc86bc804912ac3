"""Log-mel images: shape, range, a tone lands in the right band, loudness invariance, silence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genre_ray.features import (FeatureConfig, LogMel, TrackWindower, db_to_images, images_from_frames,
                                mel_filterbank, track_window_images)

CFG = FeatureConfig()


def tone(freq: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(CFG.window_samples) / CFG.sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def expected_row(freq: float) -> int:
    """Image row whose mel band responds most to ``freq`` (through the same filterbank, resized to H)."""
    fb = mel_filterbank(CFG).numpy()  # (F, M)
    band = int(np.argmax(fb[int(round(freq * CFG.n_fft / CFG.sample_rate))]))
    return int((band + 0.5) * CFG.height / CFG.n_mels)


def test_shape_dtype_range():
    img = images_from_frames(np.stack([tone(440), tone(3000)]), CFG)
    assert img.shape == (2, 1, 216, 216) and img.dtype == np.float16
    assert img.min() >= 0.0 and img.max() <= 1.0 and img.max() > 0.99


@pytest.mark.parametrize("freq", [220.0, 1000.0, 4000.0])
def test_pure_tone_peaks_in_the_right_mel_band(freq):
    img = images_from_frames(tone(freq)[None], CFG)[0, 0].astype(np.float32)
    peak = int(np.argmax(img.mean(axis=1)))
    assert abs(peak - expected_row(freq)) <= 3, (peak, expected_row(freq))


def test_higher_tone_higher_row_and_time_on_x():
    low = images_from_frames(tone(300)[None], CFG)[0, 0].astype(np.float32).mean(axis=1).argmax()
    high = images_from_frames(tone(5000)[None], CFG)[0, 0].astype(np.float32).mean(axis=1).argmax()
    assert high > low
    half = np.concatenate([tone(1000)[: CFG.window_samples // 2], np.zeros(CFG.window_samples // 2, np.float32)])
    img = images_from_frames(half[None], CFG)[0, 0].astype(np.float32)
    assert img[:, :90].mean() > 3 * img[:, 130:].mean()  # sound on the left half of x only


def test_loudness_invariant_and_silence_is_zero():
    a = images_from_frames(tone(1000, 0.5)[None], CFG).astype(np.float32)
    b = images_from_frames(tone(1000, 0.05)[None], CFG).astype(np.float32)
    assert np.abs(a - b).max() < 0.02
    silent = images_from_frames(np.zeros((1, CFG.window_samples), np.float32), CFG)
    assert not silent.any()


def test_module_matches_numpy_helper_and_runs_batched():
    x = np.random.default_rng(0).standard_normal((3, CFG.window_samples)).astype(np.float32)
    out = LogMel(CFG)(torch.from_numpy(x))
    assert out.shape == (3, 1, 216, 216)
    np.testing.assert_allclose(out.numpy(), images_from_frames(x, CFG).astype(np.float32), atol=1e-3)


def test_config_validation_and_hash():
    with pytest.raises(ValueError, match="window_s"):
        FeatureConfig(window_s=0)
    with pytest.raises(ValueError, match="f_max"):
        FeatureConfig(f_max=20_000)
    assert FeatureConfig().hash() == FeatureConfig().hash()
    assert FeatureConfig(hop_s=3.0).hash() != FeatureConfig().hash()
    assert FeatureConfig.from_dict(CFG.to_dict()) == CFG
    with pytest.raises(ValueError, match="unknown"):
        FeatureConfig.from_dict({"bogus": 1})


def test_non_square_images_are_height_by_width():
    cfg = FeatureConfig(n_mels=32, height=32, width=48)
    x = np.random.default_rng(0).standard_normal((2, cfg.window_samples)).astype(np.float32)
    assert images_from_frames(x, cfg).shape == (2, 1, 32, 48)
    wave = np.random.default_rng(1).standard_normal(3 * cfg.window_samples).astype(np.float32)
    imgs = np.concatenate([im for im, _ in track_window_images([wave], cfg)])
    assert imgs.shape[1:] == (1, 32, 48)


def test_db_to_images_references_the_peak_clips_and_resizes_bilinearly():
    cfg = FeatureConfig(n_mels=4, height=8, width=6, top_db=80.0)
    db = torch.tensor([[[0.0, -20.0, -40.0], [-60.0, -80.0, -100.0], [-10.0, -30.0, -50.0], [-5.0, -90.0, 0.0]]])
    scaled = ((db - 0.0 + 80.0) / 80.0).clamp(0, 1)  # peak 0 dB → 1, 80 dB below it or lower → 0
    expect = torch.nn.functional.interpolate(scaled[:, None], size=(8, 6), mode="bilinear", align_corners=False)
    torch.testing.assert_close(db_to_images(db, cfg), expect)
    torch.testing.assert_close(db_to_images(db - 10.0, cfg), expect)  # referenced to its own peak (above -100 + top_db)


def test_track_peak_is_the_loudest_sample_of_any_chunk():
    """A track whose last chunk is digital silence (a fade-out, a silent outro) is not silent: its peak is the
    loudest sample of the whole track, not of the last chunk (label refuses tracks whose peak is ~0)."""
    from genre_ray.inference import SILENCE_PEAK

    cfg = FeatureConfig(n_mels=32, height=32, width=32)
    w = TrackWindower(cfg)
    w.push(tone(440, amp=0.3)[: cfg.sample_rate])
    w.push(np.zeros(cfg.sample_rate, np.float32))
    w.push(np.zeros(0, np.float32))
    w.finish()
    assert w.peak == pytest.approx(0.3, rel=1e-3) and w.peak > SILENCE_PEAK
    assert w.n_samples == 2 * cfg.sample_rate



def test_a_zero_hop_is_refused_not_replaced_by_the_default():
    from genre_ray.features import FeatureConfig, TrackWindower

    with pytest.raises(ValueError, match="window hop must be > 0"):
        TrackWindower(FeatureConfig(), hop_s=0.0)
    assert TrackWindower(FeatureConfig(), hop_s=None).hop == round(FeatureConfig().hop_s * FeatureConfig().sample_rate)
