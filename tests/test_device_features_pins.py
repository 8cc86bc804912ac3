"""Pins for genre_ray/device_features.py: bounded memory of SegmentWindower and the device buffer layout for any
valid FeatureConfig (n_fft need not be a multiple of hop_length)."""

from __future__ import annotations

import numpy as np
import pytest

from genre_ray.device_features import SegmentFeaturizer, SegmentWindower, segment_layout, track_segments
from genre_ray.features import FeatureConfig, track_window_images


def _wave(seconds, sr, seed=1):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr))
    return (0.3 * np.sin(t / 40.0) * np.sin(t / 9000.0) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def test_segment_windower_holds_one_block_plus_one_segment_whatever_the_track_length():
    """Module doc: memory O(one block of audio + one segment). A windower that never drops consumed samples
    holds the whole track (a 2-hour file on a decode task)."""
    cfg = FeatureConfig(window_s=2.0, hop_s=1.0, n_fft=1024, hop_length=256, n_mels=48, height=48, width=48)
    sr, block = cfg.sample_rate, 10 * cfg.sample_rate
    w = SegmentWindower(cfg, max_windows=4)
    wave = _wave(300.0, sr)
    most, n = 0, 0
    for i in range(0, len(wave), block):
        n += sum(len(s.frame_offsets) for s in w.push(wave[i:i + block]))
        held = w._buf.shape[0] + sum(p.shape[0] for p in w._pending)
        most = max(most, held)
    n += sum(len(s.frame_offsets) for s in w.finish())
    assert n == 299  # (300 − 2) / 1 + 1 windows
    segment = int((cfg.window_s + 3 * cfg.hop_s) * sr) + cfg.n_fft
    assert most <= block + segment + 2 * block  # a few blocks at most, never the 300-s track
    assert most < 60 * sr


@pytest.mark.parametrize("n_fft,hop_length", [(1000, 256), (1100, 300)])
def test_device_images_match_the_cpu_path_when_n_fft_is_not_a_multiple_of_hop_length(n_fft, hop_length):
    cfg = FeatureConfig(window_s=2.0, hop_s=1.0, n_fft=n_fft, hop_length=hop_length, n_mels=48, height=48, width=48)
    wave = _wave(9.0, cfg.sample_rate)
    chunks = np.array_split(wave, 3)
    ref = np.concatenate([i for i, _ in track_window_images(chunks, cfg)]).astype(np.float32)
    segs = track_segments(chunks, cfg, max_windows=3)
    assert len(segs) > 1  # several segments side by side in the device buffer
    images = SegmentFeaturizer(cfg, "cpu").images([s.samples for s in segs], [s.frame_offsets for s in segs])
    np.testing.assert_allclose(images.numpy(), ref, atol=2e-3)


def test_segment_layout_never_overlaps_and_starts_on_hop_multiples():
    lengths, hop, n_fft = [1000, 1001, 1, 4096, 777], 256, 1000
    starts, total = segment_layout(lengths, hop, n_fft)
    assert all(s % hop == 0 for s in starts)
    ends = starts + np.asarray(lengths)
    assert all(ends[:-1] <= starts[1:])  # each segment's samples end before the next one starts
    assert total >= ends[-1]


def test_a_stale_feature_config_is_refused_by_the_device_featurizer_too():
    """A model bundle made with the old image definition (version 1) must not be labelled on the device path with
    images it was not trained on — the CPU windower refuses it, so must the SegmentFeaturizer."""
    legacy = {k: v for k, v in FeatureConfig().to_dict().items() if k != "version"}
    old = FeatureConfig.from_dict(legacy)
    with pytest.raises(ValueError, match="re-run `genre-ray prepare`"):
        SegmentFeaturizer(old, "cpu")
