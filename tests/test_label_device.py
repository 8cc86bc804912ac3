"""``featurize=device``: decode tasks ship waveform segments and the classifier actor makes the images (and
``featurize=actor``: the actors do every stage) — the same
statuses as the CPU path for every kind of file, and the same labels through the real Ray Data job."""

from __future__ import annotations

import numpy as np
import pytest

from genre_ray.config import LabelConfig
from genre_ray.inference import TrackEnd, WindowBatch, featurize_stream
from genre_ray.pipelines.label_device import FEATURIZE_STAGES, SEGMENT, expand_segments, segment_batch
from genre_ray.device_features import SegmentFeaturizer
from label_lib import CLASSES, FEATURES, make_library, sharp_bundle

P_COLS = [f"p_{c}" for c in CLASSES]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("device-lib")
    return root, make_library(root / "library"), sharp_bundle(root / "bundle")


@pytest.mark.parametrize("too_short", ["pad", "skip"])
def test_segment_rows_expand_to_the_cpu_rows(library, too_short):
    """Per file (good, corrupt, empty, not audio, silent, short): the same end row and the same window images."""
    _, expected, _ = library
    featurizer = SegmentFeaturizer(FEATURES, "cpu")
    for path in sorted(expected):
        rows = list(segment_batch({"path": np.array([path], object)}, FEATURES, FEATURES.hop_s, too_short))
        batch = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
        assert (batch["kind"][:-1] == SEGMENT).all() and batch["kind"][-1] == "end"
        got = expand_segments(batch, featurizer)
        items = list(featurize_stream(path, FEATURES, FEATURES.hop_s, too_short))
        end: TrackEnd = items[-1]
        images = [i.images for i in items if isinstance(i, WindowBatch)]
        want = np.concatenate(images) if images else np.zeros((0, *FEATURES.image_shape), np.float16)
        assert (got["status"][-1], got["n_windows"][-1], got["error"][-1]) == (end.status, end.n_windows, end.error)
        assert got["duration_s"][-1] == pytest.approx(end.duration_s)
        windows = got["kind"] == "w"
        assert windows.sum() == len(want), path
        np.testing.assert_array_equal(got["window"][windows], np.arange(len(want)))
        np.testing.assert_allclose(got["image"][windows].astype(np.float32), want.astype(np.float32), atol=2e-3,
                                   err_msg=path)


def test_segment_classifier_keeps_images_on_device_and_equals_the_host_route(library):
    """SegmentClassifier (images made and classified on its device) = Classifier on expand_segments' host rows."""
    from genre_ray.bundle import load_bundle
    from genre_ray.pipelines.label_device import SegmentClassifier, window_rows
    from genre_ray.pipelines.label_workers import Classifier

    _, expected, bundle_dir = library
    bundle = load_bundle(bundle_dir)
    seg = SegmentClassifier(bundle, batch_size=8, use_gpu=False, embeddings=True)
    host = Classifier(bundle, batch_size=8, use_gpu=False, embeddings=True)
    good = [p for p, want in sorted(expected.items()) if want == "ok"][:2]
    rows = [r for p in good for r in segment_batch({"path": np.array([p], object)}, FEATURES, FEATURES.hop_s, "pad")]
    batch = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    got = seg(batch)
    want = host(expand_segments(batch, seg.featurizer))
    assert "image" not in got and set(got) == set(want)
    assert (got["kind"] == "w").sum() > 4 and list(got["path"]) == list(want["path"])
    for k in ("window", "start_s", "status", "n_windows"):
        np.testing.assert_array_equal(got[k], want[k])
    np.testing.assert_array_equal(got["probs"], want["probs"])  # the same float16 images: the same numbers
    np.testing.assert_array_equal(got["emb"], want["emb"])
    assert np.isnan(got["probs"][got["kind"] == "end"]).all()
    assert window_rows(batch)["kind"].tolist() == got["kind"].tolist()


def test_featurize_modes_are_registered_and_validated():
    assert set(FEATURIZE_STAGES) == {"actor", "cpu", "device"}
    with pytest.raises(ValueError, match="featurize must be auto, actor, cpu or device"):
        LabelConfig(input="x", model="y", out="z", featurize="gpu")
    with pytest.raises(ValueError, match="decode_workers must be tasks or actors"):
        LabelConfig(input="x", model="y", out="z", decode_workers="threads")


@pytest.mark.integration
def test_label_job_with_device_or_actor_featurization_equals_the_cpu_job(library, ray_session, mlflow_home, tmp_path):
    from genre_ray.pipelines.label import read_labels, run_label

    root, expected, bundle = library
    tables = {}
    for mode in ("cpu", "device", "actor", "device+actors"):  # device+actors: decode_workers="actors"
        featurize, _, workers = mode.partition("+")
        cfg = LabelConfig(input=str(root / "library"), model=str(bundle), out=str(tmp_path / mode), too_short="skip",
                          batch_size=16, featurize=featurize, decode_workers=workers or "tasks")
        summary = run_label(cfg)
        assert summary["status"] == {"ok": 8, "error": 4, "too-short": 1}, mode
        tables[mode] = read_labels(tmp_path / mode).set_index("path")
    cpu, dev = tables["cpu"], tables["device"]
    assert sorted(dev.index) == sorted(expected)
    assert (dev["status"] == cpu["status"]).all() and (dev["n_windows"] == cpu["n_windows"]).all()
    ok = cpu["status"] == "ok"
    np.testing.assert_allclose(dev.loc[ok, P_COLS].astype(float), cpu.loc[ok, P_COLS].astype(float), atol=2e-3)
    assert (dev.loc[ok, "genre"] == cpu.loc[ok, "genre"]).all()
    # decode actors instead of tasks: the same rows from the same function, so the same labels as the device job's
    da = tables["device+actors"]
    assert sorted(da.index) == sorted(expected)
    assert (da["status"] == dev["status"]).all() and (da["error"] == dev["error"]).all()
    np.testing.assert_allclose(da.loc[ok, P_COLS].astype(float), dev.loc[ok, P_COLS].astype(float), atol=1e-6)
    # actor: the same featurize_batch and Classifier in one process — the same numbers as the cpu job's
    act = tables["actor"]
    assert sorted(act.index) == sorted(expected)
    assert (act["status"] == cpu["status"]).all() and (act["n_windows"] == cpu["n_windows"]).all()
    assert (act["error"] == cpu["error"]).all()
    np.testing.assert_allclose(act.loc[ok, P_COLS].astype(float), cpu.loc[ok, P_COLS].astype(float), atol=1e-6)


def test_segment_rows_go_out_together_up_to_group_bytes(tmp_path):
    import soundfile as sf

    path = str(tmp_path / "t.wav")
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(22_050 * 40)).astype(np.float32), 22_050)
    short = str(tmp_path / "s.wav")
    sf.write(short, (0.1 * np.random.default_rng(1).standard_normal(22_050 * 5)).astype(np.float32), 22_050)
    # several tracks share a batch, rows in order: the first track's segments and end row, then the next one's
    two = list(segment_batch({"path": np.array([path, "/no/such.wav", short], object)}, FEATURES, 1.5, "pad"))
    assert len(two) == 1
    kinds, paths = list(two[0]["kind"]), list(two[0]["path"])
    ends = [i for i, k in enumerate(kinds) if k == "end"]
    assert len(ends) == 3 and ends[-1] == len(kinds) - 1
    assert paths == [path] * (ends[0] + 1) + ["/no/such.wav"] + [short] * (ends[2] - ends[1])
    assert two[0]["status"][ends[1]] == "error" and two[0]["status"][ends[2]] == "ok"
    args = ({"path": np.array([path], object)}, FEATURES, 0.5, "pad")  # 75 windows: segments of 32, 32 and 11
    single = list(segment_batch(*args, group_bytes=0))  # one batch a row
    together = list(segment_batch(*args))  # 40 s of samples ≈ 3.5 MB < 8 MiB: one batch
    some = list(segment_batch(*args, group_bytes=1_000_000))
    assert all(len(b["kind"]) == 1 for b in single) and len(single) > 3
    assert len(together) == 1 and 1 < len(some) < len(single)
    for batches in (together, some):
        assert all(b["kind"][-1] != "end" for b in batches[:-1]) and batches[-1]["kind"][-1] == "end"
        for k in single[0]:
            want, got = np.concatenate([b[k] for b in single]), np.concatenate([b[k] for b in batches])
            assert list(got) == list(want), k


def test_segment_classifier_reads_arrow_blocks_without_copying_the_samples(library):
    """The actor's calls come as Arrow tables (``batch_format="pyarrow"``): several blocks stitched and sliced as Ray
    Data's batcher does. ``arrow_rows`` gives each sample cell as a view of the block's memory, and the classifier's
    output equals the one from Ray's NumPy batch of the same rows."""
    import pyarrow as pa
    from ray.data.block import BlockAccessor

    from genre_ray.bundle import load_bundle
    from genre_ray.pipelines.label_device import RAGGED, SegmentClassifier, arrow_rows, ragged

    _, expected, bundle_dir = library
    paths = sorted(expected)
    batches = list(segment_batch({"path": np.array(paths, object)}, FEATURES, FEATURES.hop_s, "pad", group_bytes=1))
    table = pa.concat_tables([BlockAccessor.batch_to_block(b) for b in batches])  # one chunk per block
    assert table.column("samples").num_chunks == len(batches) > 3
    table = table.slice(1)  # a call may start inside a block: chunk offsets ≠ 0
    as_numpy = BlockAccessor.for_block(table).to_batch_format("numpy")  # what Ray's numpy format gives
    got = arrow_rows(table)
    assert set(got) == set(as_numpy)
    for k in as_numpy:
        if k in RAGGED:
            spans = [(c.buffers()[2].address, c.buffers()[2].address + c.buffers()[2].size)
                     for c in table.column(k).chunks if c.buffers()[2] is not None]
            for i in range(len(as_numpy[k])):
                view = ragged(got, k, i)
                np.testing.assert_array_equal(view, ragged(as_numpy, k, i))
                if view.size:  # inside one of the block's data buffers: a view, not a copy
                    at = view.__array_interface__["data"][0]
                    assert any(lo <= at and at + view.nbytes <= hi for lo, hi in spans), (k, i)
        else:
            np.testing.assert_array_equal(got[k], as_numpy[k])
    seg = SegmentClassifier(load_bundle(bundle_dir), batch_size=8, use_gpu=False, embeddings=True)
    a, b = seg(table), seg(as_numpy)
    assert set(a) == set(b) and (a["kind"] == "w").sum() > 4
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_segments_are_full_but_the_last_whatever_the_decoders_blocks(tmp_path):
    """Each segment row carries ``max_windows`` windows but a track's last one, however the decoder blocks the
    audio (its 10-s blocks hold ~3 windows at a 3-s hop: one segment per block made calls a tenth of their size),
    and the windows are the same as one segment per window gives."""
    from genre_ray.device_features import track_segments

    wave = (0.1 * np.random.default_rng(3).standard_normal(22_050 * 100)).astype(np.float32)
    blocks = [wave[i:i + 22_050 * 10] for i in range(0, len(wave), 22_050 * 10)]
    segs = track_segments(iter(blocks), FEATURES, 3.0, max_windows=8)
    n = 1 + (100 - 3) // 3  # 33 windows of 3 s every 3 s
    assert [len(s.frame_offsets) for s in segs] == [8, 8, 8, 8, 1]
    one = track_segments(iter(blocks), FEATURES, 3.0, max_windows=1)
    assert len(one) == n
    starts = np.concatenate([s.starts_s for s in segs])
    np.testing.assert_array_equal(starts, np.concatenate([s.starts_s for s in one]))
    assert [s.first for s in segs] == [0, 8, 16, 24, 32]
