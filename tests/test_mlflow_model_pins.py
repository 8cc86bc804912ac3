"""Pins for genre_ray/mlflow_model.py's GenreLabeller, called in-process (no MLflow store, no subprocess)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genre_ray.bundle import load_bundle, save_bundle
from genre_ray.inference import predict_file
from genre_ray.mlflow_model import BUNDLE_ARTIFACT, GenreLabeller
from genre_ray.uncertainty import UncertaintyRule
from label_lib import CLASSES, FEATURES, KWARGS


@pytest.fixture(scope="module")
def labeller(tmp_path_factory):
    import torch

    from genre_ray.models import create_model

    tmp = tmp_path_factory.mktemp("pyfunc")
    torch.manual_seed(0)
    model = create_model("homebrew", num_classes=len(CLASSES), **KWARGS)
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
    folder = save_bundle(tmp / "b", model.eval(), "homebrew", KWARGS, CLASSES, FEATURES,
                         calibration={"temperature": 3.0, "uncertain_threshold": 0.93})
    rng = np.random.default_rng(0)
    clip = tmp / "x.wav"
    sf.write(clip, (0.3 * rng.standard_normal(22_050 * 6)).astype(np.float32), 22_050)
    m = GenreLabeller()
    m.load_context(SimpleNamespace(artifacts={BUNDLE_ARTIFACT: str(folder)}))
    return m, load_bundle(folder), str(clip)


def test_pyfunc_rows_are_predict_files_with_the_bundles_temperature_threshold_and_params(labeller):
    m, b, clip = labeller
    out = m.predict(None, pd.DataFrame({"path": [clip]}), params={"top_k": 2, "hop_s": 0.5})
    want = predict_file(b.build_model(), clip, b.features, b.classes, hop_s=0.5, how=b.aggregate, k=2,
                           temperature=3.0, rule=UncertaintyRule(threshold=0.93))[0]
    row = out.iloc[0]
    assert row["n_windows"] == want["n_windows"] == 9  # (6 − 2) / 0.5 + 1 windows at the asked hop
    assert list(row["top_k_genres"]) == list(want["top_k_genres"]) and len(row["top_k_genres"]) == 2
    for c in CLASSES:
        assert row[f"p_{c}"] == pytest.approx(want[f"p_{c}"], abs=1e-6)
    assert bool(row["uncertain"]) == bool(want["uncertain"])
    assert row["confidence"] == pytest.approx(want["confidence"], abs=1e-6)
    hot = predict_file(b.build_model(), clip, b.features, b.classes, hop_s=0.5, how=b.aggregate, k=2)[0]
    assert row["confidence"] < hot["confidence"]  # T = 3 softens the sharp model's probabilities
    assert m.rule.threshold == 0.93


def test_pyfunc_takes_one_path_as_a_string(labeller):
    m, _, clip = labeller
    out = m.predict(None, clip)
    assert list(out["path"]) == [clip] and out["status"].iloc[0] == "ok"
