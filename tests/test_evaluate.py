"""Window → track aggregation (shared by evaluation and labelling) and metrics."""

from __future__ import annotations

import numpy as np
import pytest

from genre_ray.evaluate import aggregate, aggregate_track, classification_metrics, expected_calibration_error, top_k


def test_aggregate_groups_in_first_appearance_order():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]], np.float32)
    ids, probs = aggregate(p, ["b", "a", "b", "a"], "mean")
    assert list(ids) == ["b", "a"]
    np.testing.assert_allclose(probs, [[0.8, 0.2], [0.3, 0.7]], atol=1e-6)


def test_aggregators_differ_where_they_should():
    p = np.array([[0.51, 0.49], [0.51, 0.49], [0.0, 1.0]])
    assert aggregate_track(p, "mean").argmax() == 1  # one confident window outweighs two unsure ones
    assert aggregate_track(p, "vote").argmax() == 0  # but not in a vote
    np.testing.assert_allclose(aggregate_track(p, "vote"), [2 / 3, 1 / 3], atol=1e-6)
    lm = aggregate_track(p, "logmean")
    assert abs(lm.sum() - 1) < 1e-5 and lm.argmax() == 1
    q = np.array([[0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])
    g = np.exp(np.log(q).mean(axis=0))  # the geometric mean of the windows, renormalised
    np.testing.assert_allclose(aggregate_track(q, "logmean"), g / g.sum(), rtol=1e-6)
    np.testing.assert_allclose(aggregate_track(q, "mean"), q.mean(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="known"):
        aggregate_track(p, "median")
    with pytest.raises(ValueError):
        aggregate_track(np.zeros((0, 2)), "mean")


def test_top_k():
    assert top_k(np.array([[0.1, 0.6, 0.3]]), ["x", "y", "z"], 2) == [[("y", 0.6), ("z", pytest.approx(0.3))]]


def test_metrics_and_ece():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([0, 0, 1, 1])
    m = classification_metrics(probs, labels, ["a", "b"])
    assert m["accuracy"] == 0.75 and m["confusion"] == [[2, 0], [1, 1]]
    assert m["per_class"]["b"]["recall"] == 0.5 and m["per_class"]["a"]["precision"] == pytest.approx(2 / 3)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, np.array([0, 1])) == 0.0
    assert expected_calibration_error(perfect, np.array([1, 0])) == 1.0


def test_split_batches_leave_out_the_augmented_copies(tmp_path):
    """`evaluate --set split=train` scored each track with its noisy and offset copies pooled into its verdict."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ray.data._internal.tensor_extensions.arrow import ArrowTensorArray

    from genre_ray.pipelines.evaluate import split_batches

    where = tmp_path / "windows" / "split=train"
    where.mkdir(parents=True)
    images = np.arange(4 * 1 * 2 * 2, dtype=np.float16).reshape(4, 1, 2, 2)
    pq.write_table(pa.table({"image": ArrowTensorArray.from_numpy(images), "label_idx": [0, 0, 1, 1],
                             "track_id": ["a", "a", "b", "b"], "augmented": [False, True, False, True]}),
                   where / "part.parquet")
    got = list(split_batches(tmp_path, "train", 8))
    imgs, labels, ids = (np.concatenate(x) for x in zip(*got))
    assert list(ids) == ["a", "b"] and list(labels) == [0, 1]
    np.testing.assert_array_equal(imgs, images[[0, 2]])


@pytest.mark.parametrize("how", ["mean", "vote"])
def test_track_predictions_are_the_verdicts_behind_the_track_metrics(how):
    """evaluate's predictions.csv: one row per track, the same verdicts the track accuracy counts."""
    from genre_ray.evaluate import score_logits, track_predictions

    rng = np.random.default_rng(0)
    ids = np.repeat([f"t{i}" for i in range(12)], 5)
    labels = np.repeat(rng.integers(0, 3, 12), 5)
    logits = rng.normal(size=(60, 3)) + 2.0 * np.eye(3)[labels]
    classes = ["blues", "jazz", "rock"]
    table = track_predictions(logits, labels, ids, classes, how, temperature=0.7)
    res = score_logits(logits, labels, ids, classes, how, temperature=0.7)
    assert len(table) == res["track"]["n"] == 12 and (table["n_windows"] == 5).all()
    assert table["correct"].mean() == pytest.approx(res["track"]["accuracy"])
    assert (table["predicted"] == table[[f"p_{c}" for c in classes]].idxmax(axis=1).str[2:]).all()
    assert np.allclose(table[[f"p_{c}" for c in classes]].max(axis=1), table["confidence"])
