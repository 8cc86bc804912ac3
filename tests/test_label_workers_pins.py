"""Pins for genre_ray/pipelines/label_workers.py (featurize=actor, the CPU default): behaviours no other unit test
fixes. Run from the project's tests/ folder (uses label_lib)."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from genre_ray.bundle import load_bundle
from genre_ray.pipelines.label_workers import END, WINDOW, TrackClassifier
from label_lib import FEATURES, sharp_bundle


def _tone(path, seconds=6.0, sr=22_050):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    return str(path)


def _rows(actor, path):
    out = [r for r in actor({"path": np.array([path], object)})]
    kinds = np.concatenate([r["kind"] for r in out])
    starts = np.concatenate([r["start_s"] for r in out])
    return kinds, starts


def test_track_classifier_uses_the_hop_it_is_given_not_the_bundles(tmp_path):
    """label --set hop_s=… with featurize=actor (the CPU default): the actor must window at that hop."""
    bundle = load_bundle(sharp_bundle(tmp_path / "b"))
    path = _tone(tmp_path / "x.wav", seconds=6.0)
    default = TrackClassifier(bundle, 4, use_gpu=False)
    half = TrackClassifier(bundle, 4, use_gpu=False, hop_s=FEATURES.hop_s / 2)
    k_def, s_def = _rows(default, path)
    k_half, s_half = _rows(half, path)
    assert (k_def == END).sum() == 1 and (k_half == END).sum() == 1
    n_def, n_half = int((k_def == WINDOW).sum()), int((k_half == WINDOW).sum())
    assert n_half > n_def  # a finer hop gives more windows
    w_half = np.sort(s_half[k_half == WINDOW])
    np.testing.assert_allclose(np.diff(w_half), FEATURES.hop_s / 2, atol=1e-6)
    w_def = np.sort(s_def[k_def == WINDOW])
    np.testing.assert_allclose(np.diff(w_def), FEATURES.hop_s, atol=1e-6)


def test_classifier_applies_the_bundles_temperature(tmp_path):
    """The label job's probabilities are calibrated: softmax(z / T) with the bundle's T, as predict's are."""
    from genre_ray.pipelines.label_workers import Classifier

    bundle = load_bundle(sharp_bundle(tmp_path / "b"))
    rng = np.random.default_rng(0)
    images = rng.random((6, *bundle.features.image_shape), dtype=np.float32).astype(np.float16)
    batch = {"path": np.array(["a"] * 7, object), "kind": np.array([WINDOW] * 6 + [END], object),
             "image": np.concatenate([images, np.zeros((1, *bundle.features.image_shape), np.float16)])}
    plain = Classifier(bundle, 4, use_gpu=False)(dict(batch))["probs"]
    bundle.calibration = {"temperature": 3.0}
    hot = Classifier(bundle, 4, use_gpu=False)(dict(batch))["probs"]
    assert np.isnan(plain[-1]).all() and np.isnan(hot[-1]).all()  # end row: no probabilities
    z = np.log(plain[:-1].astype(np.float64)) / 3.0
    expect = np.exp(z - z.max(axis=1, keepdims=True))
    expect /= expect.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(hot[:-1], expect, atol=1e-4)
    assert not np.allclose(hot[:-1], plain[:-1], atol=1e-3)


def test_track_classifier_yields_whole_forward_batches_not_one_batch_per_decoded_block(tmp_path):
    """Docstring: ≥ max(MAX_WINDOWS, batch size) windows a yield (the rest with the last one): a 60-s file at a 1-s
    hop (59 windows, ~3 per decoded 10-s block) comes out in 2 batches, not ~20."""
    from genre_ray.pipelines.label_workers import MAX_WINDOWS

    bundle = load_bundle(sharp_bundle(tmp_path / "b"))
    path = _tone(tmp_path / "long.wav", seconds=60.0)
    out = list(TrackClassifier(bundle, 4, use_gpu=False)({"path": np.array([path], object)}))
    windows = [int((r["kind"] == WINDOW).sum()) for r in out]
    assert sum(windows) == 59
    assert all(w >= MAX_WINDOWS for w in windows[:-1])
    assert len(out) == -(-59 // MAX_WINDOWS) or len(out) <= 2
