"""Issue #9 (part 1) without Ray: embeddings (models, window outputs, track vectors), temperature scaling and the
default threshold, the uncertain flag, the review list, exact cosine search and the `similar` CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from genre_ray.bundle import load_bundle, save_bundle
from genre_ray.calibration import (MIN_TRACKS, T_MAX, T_MIN, calibrate, fit_temperature, reliability_bins, softmax_t,
                                   uncertainty_threshold)
from genre_ray.cli import main
from genre_ray.embedding import track_embedding, window_outputs
from genre_ray.evaluate import expected_calibration_error
from genre_ray.inference import label_key, label_row, predict_file
from genre_ray.models import create_model
from genre_ray.similarity import SimilarityError, load_index, nearest, resolve_track, similar
from genre_ray.training import predict_logits
from genre_ray.uncertainty import UncertaintyRule, review_table, vote_entropy, write_review_list
from label_lib import CLASSES, FEATURES, KWARGS, make_library, sharp_bundle


@pytest.mark.parametrize("name,kw", [("homebrew", {"channels": [4, 8, 8, 8], "dense": [16]}),
                                     ("resnet18", {"dropout": 0.3})])
def test_forward_is_classify_of_embed(name, kw):
    torch.manual_seed(0)
    m = create_model(name, 5, **kw).eval()
    x = torch.randn(3, 1, 64, 64) if name == "resnet18" else torch.randn(3, 1, 216, 216)
    with torch.no_grad():
        e = m.embed(x)
        assert e.shape == (3, m.embedding_dim)
        torch.testing.assert_close(m.classify(e), m(x))


def test_window_outputs_are_tempered_softmax_and_embed():
    torch.manual_seed(1)
    model = create_model("homebrew", 4, **KWARGS).eval()
    images = np.random.default_rng(0).random((70, 1, 48, 48)).astype(np.float16)
    p1, f1 = window_outputs(model, images, torch.device("cpu"), batch_size=16)
    probs = torch.softmax(predict_logits(model, torch.from_numpy(images), torch.device("cpu")), dim=1).numpy()
    np.testing.assert_allclose(p1, probs, atol=1e-6)
    with torch.no_grad():
        x = torch.from_numpy(images).float()
        logits, feats = model(x).numpy(), model.embed(x).numpy()
    np.testing.assert_allclose(f1, feats, atol=1e-5)
    p2, none = window_outputs(model, images, torch.device("cpu"), batch_size=16, temperature=2.5, embeddings=False)
    assert none is None
    np.testing.assert_allclose(p2, softmax_t(logits, 2.5), atol=1e-6)
    # images already on the device as a tensor (featurize=device): the same outputs, padded batches too
    p3, f3 = window_outputs(model, torch.from_numpy(images), torch.device("cpu"), batch_size=16, pad=True)
    np.testing.assert_allclose(p3, p1, atol=1e-6)
    np.testing.assert_allclose(f3, f1, atol=1e-5)


def test_track_embedding_is_unit_mean_direction():
    f = np.random.default_rng(2).normal(size=(9, 12)).astype(np.float32) + 3.0
    e = track_embedding(f)
    assert e.shape == (12,) and e.dtype == np.float32 and abs(np.linalg.norm(e) - 1) < 1e-6
    np.testing.assert_allclose(e, f.mean(0) / np.linalg.norm(f.mean(0)), atol=1e-6)
    with pytest.raises(ValueError):
        track_embedding(np.zeros((0, 12)))


def _miscalibrated(scale: float, tracks: int = 1500, windows: int = 3, c: int = 5, seed: int = 0):
    """Per-track logits ``z`` whose labels are drawn from ``softmax(z)`` (calibrated at T = 1), shown to the fit as
    ``scale × z`` on every window (over-confident for scale > 1)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(tracks, c))
    y = np.array([rng.choice(c, p=p) for p in softmax_t(z)])
    logits = np.repeat(scale * z, windows, axis=0)
    return logits, np.repeat(np.arange(tracks), windows), np.repeat(y, windows)


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_temperature_recovers_the_scale_and_lowers_ece(scale):
    logits, ids, labels = _miscalibrated(scale)
    t = fit_temperature(logits, ids, labels)
    assert t == pytest.approx(scale, rel=0.15)
    cal, before, after, y = calibrate(logits, ids, labels)
    assert cal.temperature == pytest.approx(t) and cal.n_tracks == 1500 and len(y) == 1500
    assert cal.ece_after < cal.ece_before and cal.nll_after < cal.nll_before
    assert cal.ece_after < 0.05 < cal.ece_before
    assert expected_calibration_error(after, y) == pytest.approx(cal.ece_after)


def test_temperature_stays_one_when_it_cannot_help_and_is_bounded():
    logits, ids, labels = _miscalibrated(1.0, tracks=400)
    assert fit_temperature(logits, ids, labels, how="vote") == 1.0  # vote ignores T
    assert fit_temperature(np.zeros((0, 3)), [], np.zeros(0)) == 1.0
    # all correct and separable: sharper is always better, up to the lower bound
    sep = np.eye(3)[np.arange(30) % 3] * 2.0
    assert fit_temperature(sep, np.arange(30), np.arange(30) % 3) == pytest.approx(T_MIN, rel=1e-3)
    # all wrong: flatter is always better, up to the upper bound
    assert fit_temperature(sep, np.arange(30), (np.arange(30) + 1) % 3) == pytest.approx(T_MAX, rel=1e-3)


def test_mean_aggregation_calibrates_track_probabilities_not_windows():
    """Two disagreeing windows: the track verdict is the mean of tempered window softmaxes."""
    logits = np.array([[4.0, 0.0], [0.0, 1.0]])
    _, probs = __import__("genre_ray.calibration", fromlist=["track_probs"]).track_probs(logits, [7, 7], 2.0)
    np.testing.assert_allclose(probs[0], softmax_t(logits, 2.0).mean(0), atol=1e-6)


def test_uncertainty_threshold_rule():
    conf = np.array([0.99, 0.95, 0.9, 0.62, 0.55, 0.7, 0.8, 0.3])
    correct = np.array([True, True, True, False, False, False, False, True])
    # errors' confidences 0.55, 0.62, 0.7, 0.8: 80 % → ceil(3.2) = 4th smallest = 0.8, just above it
    t = uncertainty_threshold(conf, correct)
    assert 0.8 < t < 0.8 + 1e-6
    assert (conf[~correct] < t).mean() >= 0.8
    assert (conf[~correct].astype(np.float32) < t).mean() >= 0.8  # float32 probabilities too
    assert uncertainty_threshold(conf, np.ones(8, bool)) == 0.5  # no error: the documented fallback
    assert uncertainty_threshold(np.array([0.1, 0.2]), np.array([False, False])) == 0.5  # clipped up
    assert uncertainty_threshold(np.array([0.999]), np.array([False])) == 0.9  # clipped down


def test_reliability_bins_agree_with_ece():
    logits, ids, labels = _miscalibrated(2.0, tracks=300)
    p = softmax_t(logits[::3])
    y = labels[::3]
    conf, acc, count = reliability_bins(p, y)
    m = count > 0
    assert count.sum() == 300
    assert np.sum(count[m] / 300 * np.abs(acc[m] - conf[m])) == pytest.approx(expected_calibration_error(p, y))


def test_bundle_round_trips_calibration_and_old_bundles_load_uncalibrated(tmp_path):
    model = create_model("homebrew", 4, **KWARGS).eval()
    save_bundle(tmp_path / "new", model, "homebrew", KWARGS, CLASSES, FEATURES,
                calibration={"temperature": 0.731, "uncertain_threshold": 0.62, "ece_before": 0.2, "ece_after": 0.05})
    b = load_bundle(tmp_path / "new")
    assert b.temperature == 0.731 and b.uncertain_threshold == 0.62 and b.calibration["ece_after"] == 0.05
    save_bundle(tmp_path / "old", model, "homebrew", KWARGS, CLASSES, FEATURES)
    old = load_bundle(tmp_path / "old")
    assert old.temperature == 1.0 and old.uncertain_threshold is None and old.calibration == {}


def test_vote_entropy_and_rule():
    one_hot = np.eye(4)
    assert vote_entropy(one_hot[[0, 0, 0]]) == 0.0 and str(vote_entropy(one_hot[[0, 0, 0]])) == "0.0"  # not -0.0
    assert vote_entropy(one_hot[[0]]) == 0.0
    # the entropy of the windows' top-1 votes, not of their probabilities: two unsure windows that agree are 0
    assert vote_entropy(np.array([[0.6, 0.4], [0.6, 0.4]])) == 0.0
    assert vote_entropy(one_hot[[0, 1]]) == pytest.approx(1.0)  # 2 windows, 2 genres: as split as can be
    assert vote_entropy(one_hot[[0, 1, 2, 3, 0, 1, 2, 3]]) == pytest.approx(1.0)
    q = np.array([2, 1]) / 3
    assert vote_entropy(one_hot[[0, 0, 1]]) == pytest.approx(-(q * np.log(q)).sum() / np.log(3))
    rule = UncertaintyRule(threshold=0.6, vote_entropy_threshold=0.7)
    assert rule.reason(0.9, 0.1) == "" and rule.reason(0.5, 0.1) == "low-confidence"
    assert rule.reason(0.9, 0.8) == "windows-disagree" and rule.reason(0.5, 0.8) == "low-confidence+windows-disagree"


def test_label_row_flags_and_embeds():
    probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.3, 0.2, 0.5]])  # three windows, three votes
    feats = np.array([[3.0, 4.0], [3.0, 4.0], [3.0, 4.0]])
    row = label_row("x.wav", 9.0, "ok", "", probs, ["a", "b", "c"], "mean", 2, {}, UncertaintyRule(0.3, 0.9), feats,
                    embeddings=True)
    assert row["vote_entropy"] == pytest.approx(1.0) and row["uncertain"]
    assert row["uncertain_reason"] == "windows-disagree"  # confidence 1/3 ≥ 0.3
    np.testing.assert_allclose(row["embedding"], [0.6, 0.8], atol=1e-6)
    err = label_row("y.wav", 0.0, "error", "boom", None, ["a", "b", "c"], "mean", 2, {}, embeddings=True)
    assert err["uncertain"] is False and err["embedding"] is None and np.isnan(err["vote_entropy"])
    assert "embedding" not in label_row("y.wav", 0.0, "error", "boom", None, ["a"], "mean", 1, {})


def test_label_key_covers_the_new_options():
    base = ("m", "f", 1.5, "mean", "pad", 3)
    keys = {label_key(*base), label_key(*base, temperature=0.8), label_key(*base, temperature=0.9),
            label_key(*base, temperature=0.8, embedding_dim=32), label_key(*base, uncertain_threshold=0.6)}
    assert len(keys) == 5 and label_key(*base, temperature=0.8) == label_key(*base, temperature=0.8)
    # every positional part decides the rows too: a resumed run with another of them must not reuse old rows
    variants = [("m2", "f", 1.5, "mean", "pad", 3), ("m", "f2", 1.5, "mean", "pad", 3), ("m", "f", 1.0, "mean", "pad", 3),
                ("m", "f", 1.5, "logmean", "pad", 3), ("m", "f", 1.5, "mean", "skip", 3), ("m", "f", 1.5, "mean", "pad", 5)]
    assert len({label_key(*v) for v in [base, *variants]}) == 7


def _labels_frame() -> pd.DataFrame:
    rows = [("a/1.wav", "rock", 0.95, 0.0, False, ""), ("a/2.wav", "jazz", 0.41, 0.2, True, "low-confidence"),
            ("b/3.wav", "pop", 0.41, 0.9, True, "low-confidence+windows-disagree"),
            ("b/4.wav", "pop", 0.88, 0.8, True, "windows-disagree"), ("c/5.wav", None, np.nan, np.nan, False, ""),
            ("c/6.wav", "rock", 0.20, 0.0, True, "low-confidence")]
    df = pd.DataFrame(rows, columns=["path", "genre", "confidence", "vote_entropy", "uncertain", "uncertain_reason"])
    df["status"] = ["ok", "ok", "ok", "ok", "error", "ok"]
    return df


def test_review_list_most_uncertain_first(tmp_path):
    table = review_table(_labels_frame())
    assert table["path"].tolist() == ["c/6.wav", "b/3.wav", "a/2.wav", "b/4.wav"]  # tie at 0.41: higher entropy first
    assert list(table.columns) == ["path", "genre", "confidence", "vote_entropy", "reason"]
    assert table.loc[0, "reason"] == "low-confidence" and table.loc[1, "genre"] == "pop"
    path, n = write_review_list(_labels_frame(), tmp_path / "deep" / "review.csv")
    assert n == 4
    pd.testing.assert_frame_equal(pd.read_csv(path), table)
    assert review_table(pd.DataFrame()).empty


def test_nearest_is_exact_top_k():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(500, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    rows, sims = nearest(v, v[17], 10, exclude=17)
    brute = np.argsort(-(v @ v[17]))
    assert rows.tolist() == [i for i in brute if i != 17][:10]
    np.testing.assert_allclose(sims, (v @ v[17])[rows], atol=1e-6)
    assert np.all(np.diff(sims) <= 0)
    assert len(nearest(v[:3], v[0], 10, exclude=0)[0]) == 2 and len(nearest(v[:3], v[0], 10)[0]) == 3


def _write_labels(out, paths, genres, vectors, status=None):
    from genre_ray.pipelines.label import labels_schema

    n, d = vectors.shape
    status = status or ["ok"] * n
    rows = [{"path": p, "genre": g, "status": s, "duration_s": 1.0, "uncertain": False,
             "embedding": v.tolist() if s == "ok" else None} for p, g, v, s in zip(paths, genres, vectors, status)]
    (out / "labels").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[:3], schema=labels_schema(["x"], d)), out / "labels" / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(rows[3:], schema=labels_schema(["x"], d)), out / "labels" / "part-1.parquet")


def test_similar_index_resolution_and_cli(tmp_path, capsys, monkeypatch):
    paths = ["/lib/rock/r1.wav", "/lib/rock/r2.wav", "/lib/jazz/j1.wav", "/lib/jazz/j2.wav", "/lib/bad.wav",
             "/lib/rock/r3.wav"]
    genres = ["rock", "rock", "jazz", "jazz", None, "rock"]
    v = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 0.9, 0.1], [0, 0, 0], [0.7, 0, 0.7]], np.float32)
    v[[0, 1, 2, 3, 5]] /= np.linalg.norm(v[[0, 1, 2, 3, 5]], axis=1, keepdims=True)
    _write_labels(tmp_path, paths, genres, v, status=["ok", "ok", "ok", "ok", "error", "ok"])
    index = load_index(tmp_path)
    assert len(index) == 5 and index.vectors.shape == (5, 3) and "/lib/bad.wav" not in index.paths.tolist()
    assert resolve_track(index, "/lib/rock/r1.wav") == 0 and index.paths[resolve_track(index, "j2")] == "/lib/jazz/j2.wav"
    with pytest.raises(SimilarityError, match="matches 3 tracks"):
        resolve_track(index, "rock/")
    with pytest.raises(SimilarityError, match="no labelled track matches"):
        resolve_track(index, "polka")
    monkeypatch.chdir("/")  # the label job stores absolute paths: any spelling of a file finds its row
    assert index.paths[resolve_track(index, "./lib/rock/../jazz/j1.wav")] == "/lib/jazz/j1.wav"
    track, hits = similar(tmp_path, "r1", k=2)
    assert track == "/lib/rock/r1.wav" and [h[0] for h in hits] == ["/lib/rock/r2.wav", "/lib/rock/r3.wav"]

    assert main(["similar", "r1.wav", "--labels", str(tmp_path), "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "nearest to /lib/rock/r1.wav:"
    assert [line.split()[-1] for line in out[2:]] == ["/lib/rock/r2.wav", "/lib/rock/r3.wav", "/lib/jazz/j2.wav"]
    assert out[2].split()[:3] == ["1", f"{float(v[0] @ v[1]):.4f}", "rock"]
    assert main(["similar", "/lib/", "--labels", str(tmp_path)]) == 2
    assert "matches 5 tracks" in capsys.readouterr().err
    assert main(["similar", "x", "--labels", str(tmp_path / "nowhere")]) == 2
    assert "no labels Parquet" in capsys.readouterr().err


def test_similar_refuses_labels_without_embeddings(tmp_path):
    from genre_ray.pipelines.label import labels_schema

    (tmp_path / "labels").mkdir()
    pq.write_table(pa.Table.from_pylist([{"path": "a.wav", "status": "ok"}], schema=labels_schema(["x"])),
                   tmp_path / "labels" / "p.parquet")
    with pytest.raises(SimilarityError, match="embeddings=true"):
        load_index(tmp_path)


def test_predict_embeddings_are_unit_norm_and_temperature_only_softens(tmp_path):
    lib = tmp_path / "lib"
    files = [p for p, s in make_library(lib).items() if s == "ok"][:3]
    b = load_bundle(sharp_bundle(tmp_path / "bundle"))
    model = b.build_model()
    for f in files:
        row, p1, _ = predict_file(model, f, b.features, b.classes, embeddings=True)
        row2, p2, _ = predict_file(model, f, b.features, b.classes, temperature=4.0)
        assert row["status"] == "ok" and len(row["embedding"]) == model.embedding_dim
        assert abs(np.linalg.norm(row["embedding"]) - 1) < 1e-5 and "embedding" not in row2
        assert row2["genre"] == row["genre"] or row["vote_entropy"] > 0  # the mean of tempered votes may differ
        np.testing.assert_array_equal(p1.argmax(1), p2.argmax(1))
        assert (p2.max(1) <= p1.max(1) + 1e-6).all()  # T > 1 only softens
        assert (p2.max(1) < p1.max(1) - 1e-3).any()  # … and does soften: predict used to be able to ignore T
        assert row2["vote_entropy"] == row["vote_entropy"]


def test_calibration_is_not_fitted_on_too_few_tracks_or_no_error():
    """Four validation tracks once gave T = 0.63 and doubled the test ECE; a split with no error only pushes T to its
    lower bound. Both keep T = 1 and the default threshold, and say why."""
    logits, ids, labels = _miscalibrated(3.0, tracks=400)
    few = np.isin(ids, np.unique(ids)[:MIN_TRACKS - 1])
    cal, before, after, _ = calibrate(logits[few], ids[few], labels[few])
    assert cal.temperature == 1.0 and cal.uncertain_threshold == 0.5 and "fewer than" in cal.note
    np.testing.assert_array_equal(before, after)
    sep = np.eye(3)[np.arange(60) % 3] * 2.0  # 60 tracks, every one right
    cal, *_ = calibrate(sep, np.arange(60), np.arange(60) % 3)
    assert cal.temperature == 1.0 and "no validation track wrong" in cal.note
    cal, *_ = calibrate(logits, ids, labels)
    assert cal.note == "fitted" and cal.temperature == pytest.approx(3.0, rel=0.15)


def test_calibration_needs_twenty_tracks():
    """The documented minimum is 20 validation tracks: 19 keep T = 1 (the four-track split that doubled the test
    ECE would be fitted again if the bar dropped), 20 are fitted."""
    assert MIN_TRACKS == 20
    logits, ids, labels = _miscalibrated(3.0, tracks=400)
    order = np.unique(ids)
    for n, fitted in ((19, False), (20, True)):
        keep = np.isin(ids, order[:n])
        assert len(np.unique(labels[keep][::3])) > 1 and (logits[keep][::3].argmax(1) != labels[keep][::3]).any()
        cal, *_ = calibrate(logits[keep], ids[keep], labels[keep])
        assert cal.n_tracks == n and (cal.note == "fitted") == fitted, cal.note
        if not fitted:
            assert cal.temperature == 1.0 and "fewer than 20" in cal.note


def test_calibration_never_raises_the_validation_ece(monkeypatch):
    """A temperature that lowers the NLL but raises the ECE on the same tracks is not applied: the confidence users
    read must not get worse. (A well-calibrated split, and a fit forced to a bad T = 5.)"""
    import genre_ray.calibration as calibration

    logits, ids, labels = _miscalibrated(1.0, tracks=400)
    monkeypatch.setattr(calibration, "fit_temperature", lambda *a, **k: 5.0)
    _, flat = calibration.track_probs(logits, ids, 5.0)
    cal, before, after, y = calibrate(logits, ids, labels)
    assert expected_calibration_error(flat, y) > cal.ece_before  # T = 5 really is worse here
    assert cal.note == "fitted" and cal.temperature == 1.0
    np.testing.assert_array_equal(after, before)
    assert cal.ece_after == cal.ece_before


def test_threshold_and_errors_flagged_come_from_calibrated_errors():
    """The threshold is fitted on the calibrated probabilities (what label reports), and errors_flagged is the
    share of the validation errors below it — over-confident raw probabilities gave another threshold."""
    logits, ids, labels = _miscalibrated(3.0, tracks=400)
    cal, before, after, y = calibrate(logits, ids, labels)
    assert cal.note == "fitted" and cal.temperature > 2.0
    conf, correct = after.max(axis=1), after.argmax(axis=1) == y
    assert cal.uncertain_threshold == uncertainty_threshold(conf, correct)
    assert cal.uncertain_threshold != uncertainty_threshold(before.max(axis=1), before.argmax(axis=1) == y)
    flagged = conf < cal.uncertain_threshold
    assert cal.errors_flagged == pytest.approx(flagged[~correct].mean())
    assert abs(flagged[~correct].mean() - flagged[correct].mean()) > 0.1  # the two readings differ here
    assert cal.tracks_flagged == pytest.approx(flagged.mean())


def test_calibrate_fits_with_the_aggregation_it_is_given():
    """A model trained with `logmean` is calibrated with `logmean`: its temperature is the one that minimises the
    logmean track NLL (calibrate used to fit `mean` whatever it was told)."""
    rng = np.random.default_rng(4)
    logits, ids, labels = _miscalibrated(3.0, tracks=300)
    logits = logits + rng.normal(0, 4.0, size=logits.shape)  # windows of a track disagree: mean ≠ logmean
    t_log, t_mean = fit_temperature(logits, ids, labels, "logmean"), fit_temperature(logits, ids, labels, "mean")
    assert abs(t_log - t_mean) > 0.05
    cal, *_ = calibrate(logits, ids, labels, how="logmean")
    assert cal.aggregate == "logmean" and cal.temperature == pytest.approx(t_log)


def test_macro_f1_counts_only_the_genres_a_split_holds():
    from genre_ray.evaluate import classification_metrics, per_class_metrics

    labels = np.array([0, 0, 1, 2])  # no track of genre 3
    m = classification_metrics(np.eye(4)[labels], labels, ["a", "b", "c", "d"])
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and m["classes_present"] == 3
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": None, "support": 0}
    logged = per_class_metrics("test_track", m["per_class"])
    assert "test_track_recall.d" not in logged and logged["test_track_recall.a"] == 1.0
    wrong = classification_metrics(np.eye(4)[[0, 0, 1, 3]], labels, ["a", "b", "c", "d"])
    assert wrong["macro_f1"] == pytest.approx((1 + 1 + 0) / 3)  # c missed; d predicted but absent: not averaged in


def test_per_class_metric_names_mlflow_accepts(tmp_path):
    """A genre called "R&B" failed a finished training run at its last MLflow call (invalid metric name)."""
    import mlflow

    from genre_ray.evaluate import classification_metrics, per_class_metrics

    names = ["R&B", "Drum & Bass", "Rock'n'Roll", "C++", "Música", "R_B"]
    labels = np.arange(len(names))
    logged = per_class_metrics("val_final_track", classification_metrics(np.eye(len(names))[labels], labels,
                                                                         names)["per_class"])
    assert len(logged) == 2 * len(names) and "val_final_track_recall.Música" in logged
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    run = client.create_run(client.create_experiment("names"))
    for key, value in logged.items():
        client.log_metric(run.info.run_id, key, value)
    assert set(client.get_run(run.info.run_id).data.metrics) == set(logged)


def test_a_padded_track_is_uncertain_however_confident():
    """A file shorter than one window is labelled from one zero-padded window, audio the model never saw in
    training: 16 2-s clips came out 0.93 confident and 0.375 right. Such a row is flagged (`padded`)."""
    from genre_ray.features import FeatureConfig
    from genre_ray.inference import padded_note

    sure = np.array([[0.98, 0.01, 0.01]])
    rule = UncertaintyRule(0.5, 0.7)
    row = label_row("short.wav", 1.2, "ok", padded_note(1.2, FeatureConfig()), sure, ["a", "b", "c"], "mean", 2, {},
                    rule)
    assert row["genre"] == "a" and row["uncertain"] and row["uncertain_reason"] == "padded"
    plain = label_row("long.wav", 30.0, "ok", "", sure, ["a", "b", "c"], "mean", 2, {}, rule)
    assert not plain["uncertain"] and plain["uncertain_reason"] == ""
