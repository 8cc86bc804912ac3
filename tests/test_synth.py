"""The synthetic corpus: determinism, GTZAN layout, validation, and that genres are *learnable*.

No Ray here. The separability test trains a nearest-centroid classifier on simple numpy features
(log-spaced band energies, their variation, onset flux, an onset-autocorrelation tempo proxy) of
clips from one seed and scores it on clips of another seed and index range; it fails if the
recipes stop differing audibly (chance is 0.1).
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import soundfile as sf

from genre_ray.synth import GENRE_NAMES, GENRES, GenreRecipe, clip_seed, synth_clip, write_corpus

GTZAN = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
SR = 22_050


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# registry and single clips
# --------------------------------------------------------------------------------------------

def test_registry_has_the_ten_gtzan_genres_in_order():
    assert GENRE_NAMES == GTZAN
    assert tuple(GENRES) == GTZAN
    for recipe in GENRES.values():
        assert isinstance(recipe, GenreRecipe)
        with pytest.raises(dataclasses.FrozenInstanceError):
            recipe.bpm = (1, 2)  # type: ignore[misc]
    # the recipes are genuinely different objects, e.g. tempo ranges and drum usage differ
    assert len({r.bpm for r in GENRES.values()}) == 10
    assert GENRES["classical"].kit is None and all(GENRES[g].kit is not None for g in GTZAN if g != "classical")


@pytest.mark.parametrize("genre", GTZAN)
def test_clip_shape_dtype_and_level(genre):
    y = synth_clip(genre, 1.5, rng=np.random.default_rng(3))
    assert y.shape == (round(1.5 * SR),) and y.dtype == np.float32
    assert np.isfinite(y).all()
    assert 0.3 - 1e-6 <= np.abs(y).max() <= 0.9 + 1e-6  # peak-normalised, never clipping
    assert abs(float(y.mean())) < 0.05


def test_clip_other_sample_rate_and_odd_length():
    y = synth_clip("jazz", 0.7731, sr=16_000, rng=np.random.default_rng(0))
    assert y.shape == (round(0.7731 * 16_000),) and y.dtype == np.float32
    assert 0.3 - 1e-6 <= np.abs(y).max() <= 0.9 + 1e-6


def test_clip_determinism():
    a = synth_clip("reggae", 2.0, rng=np.random.default_rng(42))
    b = synth_clip("reggae", 2.0, rng=np.random.default_rng(42))
    c = synth_clip("reggae", 2.0, rng=np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unknown_genre_lists_the_known_ones():
    with pytest.raises(ValueError, match="polka") as e:
        synth_clip("polka", 1.0, rng=np.random.default_rng(0))
    assert all(g in str(e.value) for g in GTZAN)
    with pytest.raises(ValueError):
        synth_clip("rock", 0.0, rng=np.random.default_rng(0))


def test_clip_seed_is_stable_and_specific():
    assert clip_seed(0, "blues", 0) == clip_seed(0, "blues", 0)
    assert clip_seed(0, "blues", 0) == 1185471050323636961  # pinned: corpora must not change silently
    seeds = {clip_seed(s, g, i) for s in (0, 1) for g in GTZAN for i in range(5)}
    assert len(seeds) == 2 * 10 * 5
    assert all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("genre", GTZAN)
def test_clips_of_a_genre_vary(genre):
    a, b = (synth_clip(genre, 3.0, rng=np.random.default_rng(clip_seed(0, genre, i))) for i in (0, 1))
    assert abs(float(np.corrcoef(a, b)[0, 1])) < 0.9


# --------------------------------------------------------------------------------------------
# corpus on disk
# --------------------------------------------------------------------------------------------

def test_write_corpus_layout_and_audio(tmp_path):
    paths = write_corpus(tmp_path, genres=3, per_genre=2, seconds=1.0, seed=0)
    rel = [p.relative_to(tmp_path).as_posix() for p in paths]
    assert rel == sorted(rel) == [
        "blues/blues.00000.wav", "blues/blues.00001.wav",
        "classical/classical.00000.wav", "classical/classical.00001.wav",
        "country/country.00000.wav", "country/country.00001.wav",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blues", "classical", "country"]
    for p in paths:
        info = sf.info(p)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (SR, 1, SR, "PCM_16")
        y, _ = sf.read(p, dtype="float32")
        assert 0.29 <= np.abs(y).max() <= 0.91


def test_write_corpus_is_byte_identical_and_clipwise_stable(tmp_path):
    a = write_corpus(tmp_path / "a", genres=2, per_genre=2, seconds=1.0, seed=5)
    b = write_corpus(tmp_path / "b", genres=2, per_genre=2, seconds=1.0, seed=5)
    assert [_digest(p) for p in a] == [_digest(p) for p in b]
    assert len({_digest(p) for p in a}) == 4  # all clips differ
    # clip k of a genre does not depend on how many genres / clips were asked for
    c = write_corpus(tmp_path / "c", genres=["classical"], per_genre=1, seconds=1.0, seed=5, start_index=1)
    assert [p.name for p in c] == ["classical.00001.wav"]
    assert _digest(c[0]) == _digest(tmp_path / "a" / "classical" / "classical.00001.wav")
    # another seed → other audio
    d = write_corpus(tmp_path / "d", genres=2, per_genre=2, seconds=1.0, seed=6)
    assert not {_digest(p) for p in d} & {_digest(p) for p in a}


def test_write_corpus_in_parallel_writes_the_same_files(tmp_path):
    one = write_corpus(tmp_path / "one", genres=3, per_genre=2, seconds=1.0, seed=5, fmt="flac")
    two = write_corpus(tmp_path / "two", genres=3, per_genre=2, seconds=1.0, seed=5, fmt="flac", workers=2)
    assert [p.relative_to(tmp_path / "two") for p in two] == [p.relative_to(tmp_path / "one") for p in one]
    assert [_digest(p) for p in two] == [_digest(p) for p in one]


def test_write_corpus_stereo_at_cd_rate_downmixes_to_the_clip(tmp_path):
    from genre_ray.audio import to_mono

    mono = write_corpus(tmp_path / "mono", genres=["jazz"], per_genre=1, seconds=1.0, seed=2, sr=44_100)
    st = write_corpus(tmp_path / "st", genres=["jazz"], per_genre=1, seconds=1.0, seed=2, sr=44_100, channels=2)
    info = sf.info(st[0])
    assert (info.samplerate, info.channels, info.frames) == (44_100, 2, 44_100)
    y, _ = sf.read(st[0], dtype="float32")
    m, _ = sf.read(mono[0], dtype="float32")
    assert np.allclose(y[:, 0], m, atol=1e-4)  # left: the clip (16-bit PCM both times)
    d = round(0.023 * 44_100)
    echo = np.concatenate([np.zeros(d, np.float32), m[:-d]])
    assert np.allclose(y[:, 1], 0.75 * m + 0.25 * echo, atol=1e-4)  # right: the clip and an echo
    assert np.corrcoef(y[:, 0], y[:, 1])[0, 1] < 0.99  # two channels' worth to code, not a copy
    assert np.allclose(to_mono(y), 0.875 * m + 0.125 * echo, atol=1e-4)
    with pytest.raises(ValueError, match="channels"):
        write_corpus(tmp_path / "bad", genres=1, per_genre=1, seconds=1.0, channels=6)


def test_write_corpus_start_index_writes_unseen_clips(tmp_path):
    seen = write_corpus(tmp_path / "seen", genres=["rock"], per_genre=2, seconds=1.0)
    unseen = write_corpus(tmp_path / "unseen", genres=["rock"], per_genre=2, seconds=1.0, start_index=100)
    assert [p.name for p in unseen] == ["rock.00100.wav", "rock.00101.wav"]
    assert not {_digest(p) for p in unseen} & {_digest(p) for p in seen}


def test_write_corpus_flac(tmp_path):
    paths = write_corpus(tmp_path, genres=["pop"], per_genre=1, seconds=0.5, fmt="flac")
    assert paths[0].name == "pop.00000.flac"
    info = sf.info(paths[0])
    assert (info.format, info.samplerate, info.frames) == ("FLAC", SR, SR // 2)
    again = write_corpus(tmp_path / "again", genres=["pop"], per_genre=1, seconds=0.5, fmt="flac")
    assert _digest(paths[0]) == _digest(again[0])


@pytest.mark.parametrize("kwargs, match", [
    ({"genres": 0}, "genres"),
    ({"genres": 11}, "genres"),
    ({"genres": ["rock", "polka"]}, "polka"),
    ({"genres": []}, "genres"),
    ({"per_genre": 0}, "per_genre"),
    ({"seconds": 0}, "seconds"),
    ({"seconds": -1.0}, "seconds"),
    ({"fmt": "xyz"}, "format"),
    ({"start_index": -1}, "start_index"),
    ({"workers": 0}, "workers"),
])
def test_write_corpus_validation(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_corpus(tmp_path, **{"genres": 1, "per_genre": 1, "seconds": 0.5, **kwargs})
    assert not any(tmp_path.rglob("*.wav"))


# --------------------------------------------------------------------------------------------
# separability: a model has to be able to tell the genres apart from a few seconds
# --------------------------------------------------------------------------------------------

N_FFT, HOP = 2048, 512
_EDGES = np.geomspace(40.0, 10_000.0, 41)  # 40 log-spaced bands


def _band_matrix() -> np.ndarray:
    freqs = np.fft.rfftfreq(N_FFT, 1 / SR)
    w = np.zeros((40, len(freqs)))
    for b in range(40):
        m = (freqs >= _EDGES[b]) & (freqs < _EDGES[b + 1])
        if not m.any():  # narrow low band: nearest bin
            m = np.arange(len(freqs)) == np.argmin(np.abs(freqs - np.sqrt(_EDGES[b] * _EDGES[b + 1])))
        w[b, m] = 1.0 / m.sum()
    return w


_W = _band_matrix()


def _features(y: np.ndarray) -> np.ndarray:
    """88 numbers per clip: band-energy profile (loudness removed), its std over time, onset flux
    mean/std in four band groups, and a tempo proxy (pooled onset-envelope autocorrelation)."""
    y = np.asarray(y, dtype=np.float64)
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP] * np.hanning(N_FFT)
    lb = np.log(np.abs(np.fft.rfft(frames, axis=1)) ** 2 @ _W.T + 1e-10)  # (frames, 40)
    mean = lb.mean(0)
    flux = np.maximum(np.diff(lb, axis=0), 0.0)
    groups = [flux[:, a:a + 10].mean(1) for a in (0, 10, 20, 30)]
    env = flux.sum(1) - flux.sum(1).mean()
    ac = np.correlate(env, env, "full")[len(env) - 1:]
    ac = ac / (ac[0] + 1e-9)
    lags = np.unique(np.geomspace(2, min(65, len(ac) - 1), 13).astype(int))
    return np.concatenate([
        mean - mean.mean(), lb.std(0),
        [g.mean() for g in groups], [g.std() for g in groups],
        [ac[a:b].max() for a, b in zip(lags[:-1], lags[1:])],
    ])


def _nearest_centroid(x_train, y_train, x_test):
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-9
    z_train, z_test = (x_train - mu) / sd, (x_test - mu) / sd
    centroids = np.stack([z_train[y_train == c].mean(0) for c in range(len(GTZAN))])
    return ((z_test[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)


@pytest.fixture(scope="module")
def feature_sets():
    def make(seed, indices):
        x, y = [], []
        for label, g in enumerate(GTZAN):
            for i in indices:
                x.append(_features(synth_clip(g, 6.0, rng=np.random.default_rng(clip_seed(seed, g, i)))))
                y.append(label)
        return np.stack(x), np.array(y)

    return make(0, range(8)), make(1, range(100, 104))


@pytest.mark.slow
def test_genres_are_separable_by_a_nearest_centroid(feature_sets):
    (x_train, y_train), (x_test, y_test) = feature_sets
    accuracy = float((_nearest_centroid(x_train, y_train, x_test) == y_test).mean())
    assert accuracy >= 0.7, f"nearest-centroid accuracy {accuracy:.2f} on held-out clips (chance 0.1)"
    per_genre = [(float((_nearest_centroid(x_train, y_train, x_test)[y_test == c] == c).mean())) for c in range(10)]
    assert sum(a == 0 for a in per_genre) == 0, dict(zip(GTZAN, per_genre))  # no genre entirely confused


def test_within_genre_variation_is_substantial(feature_sets):
    """Clips of one genre are not near-copies: their spread is a real fraction of the class gaps."""
    (x, y), _ = feature_sets
    z = (x - x.mean(0)) / (x.std(0) + 1e-9)
    centroids = np.stack([z[y == c].mean(0) for c in range(len(GTZAN))])
    within = np.mean([np.linalg.norm(z[y == c] - centroids[c], axis=1).mean() for c in range(len(GTZAN))])
    between = np.mean([np.linalg.norm(a - b) for i, a in enumerate(centroids) for b in centroids[i + 1:]])
    assert 0.3 * between < within, (within, between)
    for c in range(len(GTZAN)):  # no two clips of a genre have (nearly) the same features
        zc = z[y == c]
        d = np.linalg.norm(zc[:, None] - zc[None], axis=-1)[np.triu_indices(len(zc), 1)]
        assert d.min() > 0.1 * between, (GTZAN[c], d.min(), between)
