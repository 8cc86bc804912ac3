"""Every file in cluster/, configs/ and jobs/ parses and says what it must: the launcher config passes Ray's own
schema, the KubeRay manifests are RayCluster/RayJob objects whose entry points exist, configs validate against
their job's config class, scripts are valid bash, and the job docstrings carry the exact submit command."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from genre_ray.config import (ConfigError, EvaluateConfig, LabelConfig, PrepareConfig, TrainConfig, TuneConfig,
                              load_config)

ROOT = Path(__file__).resolve().parents[1]
YAMLS = sorted([*ROOT.glob("cluster/**/*.yaml"), *ROOT.glob("configs/*.yaml")])
JOBS = {"prepare": PrepareConfig, "train": TrainConfig, "tune": TuneConfig, "label": LabelConfig,
        "evaluate": EvaluateConfig}
IMAGE_ROOT = "/app/"  # cluster/Dockerfile copies the checkout there


def _job_and_config(cmd: str) -> tuple[Path, list[str]]:
    """``python jobs/x.py --config c.yaml …`` → (job file in this checkout, its arguments)."""
    argv = shlex.split(cmd)
    i = next(i for i, a in enumerate(argv) if re.search(r"(^|/)jobs/\w+\.py$", a))
    return ROOT / argv[i].removeprefix(IMAGE_ROOT), argv[i + 1:]


def _check_args(job: Path, args: list[str]) -> None:
    """Arguments must make a valid config for the job, with any referenced config file present here."""
    cls = JOBS[job.stem]
    path = None
    if "--config" in args:
        path = ROOT / args[args.index("--config") + 1].removeprefix(IMAGE_ROOT)
        assert path.is_file(), f"{job.name}: config {path} does not exist"
    flags = {a[2:].replace("-", "_"): args[i + 1] for i, a in enumerate(args)
             if a.startswith("--") and a not in ("--config", "--set") and i + 1 < len(args)}
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    in_file = yaml.safe_load(path.read_text()) if path else {}
    values = {k: v for k, v in flags.items() if k in cls.model_fields}
    # paths the command leaves to the user (none in the shipped examples) get a placeholder
    required = {k: "x" for k, f in cls.model_fields.items() if f.is_required() and k not in in_file}
    overrides = [o for o in overrides if not o.startswith("pretrained=")]  # a local weights file
    load_config(cls, path, overrides, **{**required, **values})


def test_there_are_yaml_files_to_check():
    names = {p.relative_to(ROOT).as_posix() for p in YAMLS}
    assert {"cluster/aws.yaml", "cluster/runtime-env.yaml", "cluster/kuberay/raycluster.yaml",
            "cluster/kuberay/rayjob-train.yaml", "cluster/kuberay/rayjob-label.yaml"} <= names


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_yaml_parses_to_a_mapping(path):
    assert isinstance(yaml.safe_load(path.read_text()), dict)


def test_launcher_config_passes_rays_schema_with_cpu_and_gpu_node_types():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    validate_config(prepare_config(cfg))  # Ray's own JSON schema + its consistency checks
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"]["CPU"] == 0  # drivers only
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    cpu = [t for t in types.values() if t["resources"].get("decode", 0) > 0 and "GPU" not in t["resources"]]
    assert gpu and cpu and all(t["labels"]["genre-ray/node"] == "gpu" for t in gpu)
    assert any("pip install" in c and "genre-ray" in c for c in cfg["setup_commands"])
    assert all("RAY_AUTH_MODE=token" in c for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
               if "ray start" in c)


def test_raycluster_has_head_cpu_and_gpu_groups():
    rc = yaml.safe_load((ROOT / "cluster" / "kuberay" / "raycluster.yaml").read_text())
    assert (rc["apiVersion"], rc["kind"]) == ("ray.io/v1", "RayCluster")
    assert rc["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in rc["spec"]["workerGroupSpecs"]}
    gpu = groups["gpu"]
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "decode" in groups["cpu-decode"]["rayStartParams"]["resources"]
    for g in groups.values():
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]


@pytest.mark.parametrize("name", ["train", "label"])
def test_rayjob_entrypoint_runs_an_existing_job_with_valid_arguments(name):
    rj = yaml.safe_load((ROOT / "cluster" / "kuberay" / f"rayjob-{name}.yaml").read_text())
    assert (rj["apiVersion"], rj["kind"]) == ("ray.io/v1", "RayJob")
    cluster = yaml.safe_load((ROOT / "cluster" / "kuberay" / "raycluster.yaml").read_text())
    assert rj["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    job, args = _job_and_config(rj["spec"]["entrypoint"])
    assert job == ROOT / "jobs" / f"{name}.py" and job.is_file()
    _check_args(job, args)
    assert "MLFLOW_TRACKING_URI" in yaml.safe_load(rj["spec"]["runtimeEnvYAML"])["env_vars"]


def test_runtime_env_ships_code_and_package_data_but_not_data():
    from ray._private.thirdparty.pathspec import PathSpec  # what Ray matches `excludes` with

    spec = yaml.safe_load((ROOT / "cluster" / "runtime-env.yaml").read_text())
    assert set(spec) <= {"excludes", "env_vars"}  # no per-job pip installs: nodes have the package
    excluded = PathSpec.from_lines("gitwildmatch", spec["excludes"]).match_file
    for shipped in ("jobs/train.py", "configs/prepare-smoke.yaml", "genre_ray/data/gtzan_ff/test_filtered.txt",
                    "genre_ray/pipelines/train.py"):
        assert not excluded(shipped), shipped
    for kept_out in (".venv/bin/python", "data/gtzan/blues.00000.wav", "genre-ray-runs/mlflow.db", "x/y.parquet"):
        assert excluded(kept_out), kept_out


@pytest.mark.parametrize("path", sorted(ROOT.glob("configs/prepare-*.yaml")) + sorted(ROOT.glob("configs/label-*.yaml")),
                         ids=lambda p: p.name)
def test_configs_validate(path):
    cls = PrepareConfig if path.name.startswith("prepare-") else LabelConfig
    required = {k: "x" for k, f in cls.model_fields.items() if f.is_required()}
    load_config(cls, path, (), **required)
    if all(k in yaml.safe_load(path.read_text()) for k in required):  # a complete job config (cluster paths)
        load_config(cls, path)


@pytest.mark.parametrize("script", sorted(ROOT.glob("cluster/*.sh")), ids=lambda p: p.name)
def test_scripts_are_valid_bash(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert script.stat().st_mode & 0o111, f"{script.name} is not executable"


def test_mlflow_script_binds_loopback_by_default_and_never_prints_a_password():
    text = (ROOT / "cluster" / "mlflow-server.sh").read_text()
    assert 'host="${MLFLOW_HOST:-127.0.0.1}"' in text
    assert "--serve-artifacts" in text and "postgresql://" in text and "s3://" in text
    redact = re.search(r"sed -E '([^']+)'", text).group(1)
    shown = subprocess.run(["sed", "-E", redact], input="postgresql://mlflow:s3cret@db:5432/mlflow",
                           capture_output=True, text=True).stdout
    assert "s3cret" not in shown and "db:5432/mlflow" in shown


@pytest.mark.parametrize("job", sorted(ROOT.glob("jobs/*.py")), ids=lambda p: p.name)
def test_job_docstring_carries_the_exact_submit_command(job):
    doc = ast.get_docstring(ast.parse(job.read_text()))
    cmd = " ".join(doc.replace("\\\n", " ").split())
    assert "ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env cluster/runtime-env.yaml" in cmd
    m = re.search(rf"-- (python jobs/{job.stem}\.py --config \S+.*?)(?: \[|$| Takes)", cmd)
    assert m, f"{job.name}: no `-- python jobs/{job.stem}.py --config …` in the docstring"
    script, args = _job_and_config(m.group(1))
    assert script == job
    _check_args(job, args)


JOB_ENV = json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_0123456789abcdef.zip"}, "metadata": {}})


def test_a_submitted_job_refuses_outputs_its_temporary_working_dir_would_lose(monkeypatch, tmp_path, capsys):
    """`ray job submit --working-dir .` runs the driver in a temporary copy of the checkout: a relative --out and the
    default MLflow store (relative to it) were written there and deleted with the job, exit 0."""
    from genre_ray.cli import main
    from genre_ray.config import LabelConfig
    from genre_ray.pipelines.common import check_job_outputs

    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", JOB_ENV)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("GENRE_RAY_HOME", str(tmp_path / "home"))
    (tmp_path / "lib").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["label", "--input", "lib", "--model", "models:/genre@champion", "--out", "labels-rel"]) == 2
    err = capsys.readouterr().err
    assert "out=labels-rel: relative" in err and "_ray_pkg_" in err
    assert not (tmp_path / "labels-rel").exists()
    absolute = LabelConfig(input="lib", model="m", out=str(tmp_path / "labels"))
    check_job_outputs(absolute, "out")  # absolute outputs, an absolute GENRE_RAY_HOME: fine
    monkeypatch.delenv("GENRE_RAY_HOME")
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI"):
        check_job_outputs(absolute, "out")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    check_job_outputs(absolute, "out")
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    check_job_outputs(LabelConfig(input="lib", model="m", out="rel"), "out")  # not a Ray job: relative is fine
