"""The MLflow model a train run logs: a pyfunc that labels audio files, as ``genre-ray predict`` does.

A colleague with only MLflow (no genre-ray install: the package travels inside the model as ``code/``) gets::

    m = mlflow.pyfunc.load_model("models:/genre-ray@champion")
    m.predict(pd.DataFrame({"path": ["song.mp3", "other.flac"]}))   # one row per file, the label job's columns

with the model's calibrated probabilities (its temperature), its own aggregation of windows and its uncertainty
threshold. An unreadable file gives a row with ``status`` ≠ ``ok`` and its ``error``, never an exception.
The model bundle (``weights.pt`` + ``bundle.json``) is an artifact of the model (``artifacts/bundle/``), so
``genre-ray label --model runs:/<run_id>/model`` and :func:`genre_ray.bundle.load_bundle` read the same weights.
No Ray here: the model runs in the calling process, on CPU unless ``params={"device": "cuda"}``.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any, Sequence

import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

BUNDLE_ARTIFACT = "bundle"
# what the code inside the model imports to label a file (audio decoding, images, the models); versions of this env
REQUIREMENTS = ("torch", "torchvision", "torchaudio", "numpy", "pandas", "pyarrow", "soundfile", "av", "soxr",
                "pyyaml", "pydantic")


def requirements() -> list[str]:
    """``name==version`` of :data:`REQUIREMENTS` as installed here (the versions the model was logged with)."""
    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={importlib.metadata.version(name).split('+')[0]}")
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return out


def signature(classes: Sequence[str]) -> ModelSignature:
    """Input: a ``path`` column; output: the labels row's columns for these classes; params: ``top_k``,
    ``hop_s`` (0 = the model's feature hop) and ``device``."""
    outputs = [ColSpec("string", "path"), ColSpec("string", "status"), ColSpec("string", "error"),
               ColSpec("double", "duration_s"), ColSpec("long", "n_windows"), ColSpec("string", "genre", required=False),
               ColSpec("double", "confidence"), ColSpec(Array("string"), "top_k_genres"),
               ColSpec(Array("double"), "top_k_probs"), *(ColSpec("double", f"p_{c}") for c in classes),
               ColSpec("double", "vote_entropy"), ColSpec("boolean", "uncertain"), ColSpec("string", "uncertain_reason")]
    params = ParamSchema([ParamSpec("top_k", "long", 3), ParamSpec("hop_s", "double", 0.0),
                          ParamSpec("device", "string", "cpu")])
    return ModelSignature(inputs=Schema([ColSpec("string", "path")]), outputs=Schema(outputs), params=params)


class GenreLabeller(mlflow.pyfunc.PythonModel):
    """pyfunc over a genre-ray bundle: ``DataFrame[path]`` → one labels row per file (see the module doc)."""

    def load_context(self, context: Any) -> None:
        from genre_ray.bundle import load_bundle
        from genre_ray.uncertainty import DEFAULT_THRESHOLD, UncertaintyRule

        self.bundle = load_bundle(context.artifacts[BUNDLE_ARTIFACT])
        self.model = self.bundle.build_model()
        t = self.bundle.uncertain_threshold
        self.rule = UncertaintyRule(threshold=DEFAULT_THRESHOLD if t is None else t)

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:  # DataFrame hints: no schema from them
        import torch

        from genre_ray.inference import predict_file

        params = params or {}
        paths = _paths(model_input)
        b = self.bundle
        hop = float(params.get("hop_s") or 0.0) or None
        device = torch.device(str(params.get("device") or "cpu"))
        rows = [predict_file(self.model, path, b.features, b.classes, hop_s=hop, how=b.aggregate,
                             k=int(params.get("top_k") or 3), device=device, temperature=b.temperature,
                             rule=self.rule)[0] for path in paths]
        columns = [c.name for c in signature(b.classes).outputs.inputs]
        return pd.DataFrame(rows, columns=columns)


def _paths(model_input: Any) -> list[str]:
    """The ``path`` column of pyfunc's input DataFrame → ``[str]`` (a list or one path, when ``predict`` is called
    on the Python model itself; MLflow's schema check wants the DataFrame)."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if "path" not in model_input.columns:
            raise ValueError(f"genre-ray model input needs a 'path' column of audio files; got columns "
                             f"{list(model_input.columns)}")
        return [str(p) for p in model_input["path"]]
    if isinstance(model_input, (str, Path)):
        return [str(model_input)]
    return [str(p) for p in model_input]


def log_model(bundle_dir: str | Path, classes: Sequence[str], registered_model_name: str | None = None):
    """Log the bundle as the run's ``model`` (a :class:`GenreLabeller` pyfunc from code — ``mlflow_entry.py``, no
    pickle — carrying the genre_ray package) →
    MLflow's ``ModelInfo``; registered under ``registered_model_name`` when given."""
    import genre_ray

    return mlflow.pyfunc.log_model(
        name="model", python_model=str(Path(genre_ray.__file__).parent / "mlflow_entry.py"), artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        code_paths=[str(Path(genre_ray.__file__).parent)], pip_requirements=requirements(),
        signature=signature(classes), registered_model_name=registered_model_name,
    )
