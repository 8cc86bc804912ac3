"""The MLflow model a train run logs (`genre_ray.mlflow_model`): plain `mlflow.pyfunc` labels audio files with the
bundle's classes, temperature and aggregation — the same rows `predict_file` gives — in a process that imports the
genre_ray package from inside the model, not from this checkout (so it is loaded in a fresh subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import mlflow
import pandas as pd
import pytest

from genre_ray.bundle import load_bundle, save_bundle
from genre_ray.features import FeatureConfig
from genre_ray.inference import predict_file
from genre_ray.mlflow_model import log_model
from genre_ray.models import create_model
from genre_ray.synth import write_corpus
from genre_ray.uncertainty import UncertaintyRule

CLASSES = ["blues", "jazz", "rock"]
SMALL = FeatureConfig(n_mels=32, height=32, width=32)
KW = {"channels": [4, 4, 8, 8], "dense": [8], "input_size": [32, 32]}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    import torch

    tmp_path = tmp_path_factory.mktemp("pyfunc")
    torch.manual_seed(0)
    bundle = save_bundle(tmp_path / "bundle", create_model("homebrew", num_classes=3, **KW).eval(), "homebrew", KW,
                         CLASSES, SMALL, meta={"aggregate": "vote"},
                         calibration={"temperature": 0.5, "uncertain_threshold": 0.7})
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = store
    mlflow.set_tracking_uri(store)
    # artifacts beside the store: MLflow's default for a sqlite store is ./mlruns of the current folder (the checkout)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(
        "pyfunc-test", artifact_location=(tmp_path / "artifacts").as_uri()))
    with mlflow.start_run() as run:
        info = log_model(bundle, CLASSES, registered_model_name="genre-pyfunc")
    yield tmp_path, bundle, info, run.info.run_id, store
    mlflow.set_tracking_uri(None)
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


@pytest.mark.slow
def test_pyfunc_labels_files_like_predict_in_a_process_without_the_checkout(logged):
    tmp_path, bundle, info, run_id, store = logged
    clips = write_corpus(tmp_path / "clips", genres=["blues", "rock"], per_genre=1, seconds=8.0, fmt="flac")
    bad = tmp_path / "clips" / "broken.mp3"
    bad.write_bytes(b"not audio at all" * 50)
    paths = [str(p) for p in clips] + [str(bad)]
    script = textwrap.dedent(f"""
        import inspect, json, sys
        import mlflow, pandas as pd

        imported = set()  # top-level modules the model's own code imports, as they are first imported

        class Spy:
            def find_spec(self, name, path=None, target=None):
                if "." not in name and any("/code/genre_ray/" in f.filename for f in inspect.stack()[1:16]):
                    imported.add(name)
                return None

        sys.meta_path.insert(0, Spy())
        m = mlflow.pyfunc.load_model("models:/genre-pyfunc/1")
        out = m.predict(pd.DataFrame({{"path": {paths!r}}}), params={{"top_k": 2}})
        try:
            m.predict(pd.DataFrame({{"file": ["a.wav"]}}))
            refused = ""
        except Exception as exc:
            refused = str(exc)
        import genre_ray, importlib.metadata
        dists = importlib.metadata.packages_distributions()
        needed = sorted({{d.lower() for n in imported if n not in sys.stdlib_module_names and n != "genre_ray"
                         for d in dists.get(n, [n])}})
        reqs = open(mlflow.pyfunc.get_model_dependencies("models:/genre-pyfunc/1")).read().lower()
        listed = {{line.split("==")[0].strip() for line in reqs.splitlines() if line.strip()}}
        print(json.dumps({{"genre_ray": genre_ray.__file__, "rows": out.to_dict(orient="records"), "refused": refused,
                          "unlisted": [d for d in needed if d not in listed], "needed": needed}}, default=str))
    """)
    # a process whose cwd and sys.path hold no genre_ray checkout: the package must come from the model's code/
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"MLFLOW_TRACKING_URI": store}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "/code/genre_ray/" in got["genre_ray"], got["genre_ray"]
    assert "path" in got["refused"]  # input without a path column: refused by name
    # what predict imports is in the model's requirements (torchaudio was not: an env built from them failed)
    assert "torchaudio" in got["needed"] and got["unlisted"] == [], got
    rows = got["rows"]
    assert [r["path"] for r in rows] == paths
    assert rows[-1]["status"] == "error" and rows[-1]["error"] and pd.isna(rows[-1]["genre"])
    b = load_bundle(bundle)
    for r, path in zip(rows[:2], paths):
        want, _, _ = predict_file(b.build_model(), path, b.features, b.classes, how="vote", k=2, temperature=0.5,
                                  rule=UncertaintyRule(threshold=0.7))
        assert r["status"] == "ok" and r["genre"] == want["genre"] and r["n_windows"] == want["n_windows"] > 1
        assert r["top_k_genres"] == want["top_k_genres"] and len(r["top_k_genres"]) == 2
        for c in CLASSES:
            assert r[f"p_{c}"] == pytest.approx(want[f"p_{c}"], abs=1e-6)
        assert r["uncertain"] == want["uncertain"]


def test_label_and_load_bundle_read_the_logged_model(logged):
    tmp_path, bundle, info, run_id, _ = logged
    for uri in (info.model_uri, f"runs:/{run_id}/model", "models:/genre-pyfunc/1"):
        b = load_bundle(uri)
        assert b.classes == CLASSES and b.temperature == 0.5 and b.aggregate == "vote"
    model = mlflow.models.get_model_info("models:/genre-pyfunc/1")
    assert [c.name for c in model.signature.inputs.inputs] == ["path"]
    assert {f"p_{c}" for c in CLASSES} <= {c.name for c in model.signature.outputs.inputs}
