"""From laptop to cluster, for real: a Ray head started with `ray start` (then a second node joins it), a
real `mlflow server` over HTTP, and the jobs in jobs/ submitted with `ray job submit` / JobSubmissionClient
exactly as the README says. Loopback only; every process a test starts is stopped by it, also on failure.

Sizes are the smoke configs (configs/prepare-smoke.yaml: 64×64 images; configs/train-smoke.yaml: tiny
homebrew CNN, 2 workers × 0.5 CPU, 2 epochs; configs/label-smoke.yaml) so the module runs in a few minutes
on 2 cores. Every node is on 127.0.0.1, which is what makes Ray listen on loopback only (any other node address,
127.0.0.2 included, makes its GCS, raylet, agents and workers listen on 0.0.0.0). Ray 2.60 swaps
`--node-ip-address=127.0.0.1` for the machine's address unless in its single-node mode
(`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, as `cluster/start-local-head.sh` sets for the head), and that mode refuses
`ray start --address`: the second node is started through :data:`KEEP_LOOPBACK`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from procs import is_loopback, listening_addresses, process_tree

from genre_ray.synth import write_corpus

# each test submits one or two Ray jobs: allow them more than the suite's default per-test timeout
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: ray, mlflow, and the python the job drivers inherit
GENRES, PER_GENRE = 3, 6
MODEL_NAME = "genre-ray-cluster-test"
START_TIMEOUT_S = 180
JOB_TIMEOUT_S = 900


# ---------------------------------------------------------------- processes this module starts and stops

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1", **extra)
    return env


class Service:
    """A command run in its own session; ``stop()`` ends it and everything it spawned (same session id)."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str]):
        self.name, self.log = name, log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def _members(self) -> list[int]:
        """Live processes of this session (zombies excluded: they are gone, only not yet reaped)."""
        pids = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if os.getsid(int(d.name)) == self.proc.pid and (d / "stat").read_text().split(") ")[-1][:1] != "Z":
                        pids.append(int(d.name))
                except (ProcessLookupError, PermissionError, FileNotFoundError):
                    pass
        return pids

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self, grace_s: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # `ray start --block` / mlflow shut their children down
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.time() + 5
        while self._members() and time.time() < deadline:
            time.sleep(0.5)
        for pid in self._members():  # stragglers of this session only, by id
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._out.close()
        deadline = time.time() + 10
        while self._members() and time.time() < deadline:  # SIGKILLed processes disappear once reaped
            time.sleep(0.5)
        assert not self._members(), f"{self.name}: processes left behind: {self._members()}"


KEEP_LOOPBACK = """
import sys
from ray._private import services
services.resolve_ip_for_localhost = lambda host: host  # keep --node-ip-address=127.0.0.1 as given
from ray.scripts.scripts import main
sys.argv[0] = "ray"
main()
"""
"""`ray` CLI for the second node: joins a cluster (which single-node mode forbids) at 127.0.0.1 (which Ray would
otherwise swap for the machine's address)."""


def ray_cmd() -> list[str]:
    exe = BIN / "ray"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ray.scripts.scripts"]


def node_ports() -> list[str]:
    """Every port a Ray node opens, free ones: never collide with another Ray on this box."""
    return [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]


def wait_until(check, timeout_s: float, what: str, service: Service | None = None) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if service is not None and service.proc.poll() is not None:
            raise RuntimeError(f"{what}: {service.name} exited {service.proc.returncode}\n{service.tail()}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"{what}: not ready after {timeout_s} s\n{service.tail() if service else ''}")


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = tmp_path_factory.mktemp("cluster")
    write_corpus(w / "corpus", genres=GENRES, per_genre=PER_GENRE, seconds=6.0, seed=3)
    write_corpus(w / "unseen", genres=GENRES, per_genre=1, seconds=6.0, seed=3, start_index=700)
    (w / "unseen" / "corrupt.wav").write_bytes(b"RIFF\x00garbage" * 50)
    return w


@pytest.fixture(scope="module")
def mlflow_server(work):
    """`cluster/mlflow-server.sh` (sqlite + served artifacts) on 127.0.0.1."""
    port = free_port()
    srv = Service("mlflow", ["bash", str(ROOT / "cluster" / "mlflow-server.sh"), str(work / "mlflow")],
                  work / "mlflow.log", base_env(MLFLOW_PORT=str(port), MLFLOW_WORKERS="1"))
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200, START_TIMEOUT_S,
                   "mlflow server", srv)
        yield uri, work / "mlflow"
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def head(work):
    """`ray start --head --block` on loopback with its own temp dir and ports; yields the dashboard URL."""
    from ray.job_submission import JobSubmissionClient

    temp = Path(tempfile.mkdtemp(prefix="gr-ray-", dir="/tmp"))  # short: Ray's socket paths have a 107-char limit
    gcs, dash = free_port(), free_port()
    cmd = [*ray_cmd(), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
           "--num-cpus=4", "--num-gpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
           f"--dashboard-port={dash}", f"--ray-client-server-port={free_port()}", f"--temp-dir={temp}",
           "--object-store-memory=300000000", "--disable-usage-stats", *node_ports()]
    # RAY_ADDRESS: Ray's helper actors (e.g. Train's PlacementGroupCleaner) must not guess among the other
    # Ray instances on this box (the suite's in-process Ray, other users')
    svc = Service("ray head", cmd, work / "ray-head.log",
                  base_env(GENRE_RAY_HOME=str(work / "home"), RAY_ADDRESS=f"127.0.0.1:{gcs}",
                           RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0"))
    url = f"http://127.0.0.1:{dash}"
    try:
        wait_until(lambda: JobSubmissionClient(url).list_jobs() is not None, START_TIMEOUT_S, "ray head", svc)
        yield {"url": url, "gcs": f"127.0.0.1:{gcs}", "temp": temp, "service": svc}
    finally:
        try:
            svc.stop()
        finally:
            shutil.rmtree(temp, ignore_errors=True)


def runtime_env_file(path: Path, **env_vars: str) -> Path:
    """cluster/runtime-env.yaml as shipped, plus this test's env vars."""
    spec = yaml.safe_load((ROOT / "cluster" / "runtime-env.yaml").read_text())
    spec.setdefault("env_vars", {}).update(env_vars)
    path.write_text(yaml.safe_dump(spec))
    return path


def submit_cli(url: str, runtime_env: Path, args: list[str], log: Path) -> subprocess.CompletedProcess:
    """The README's command: `ray job submit --working-dir . --runtime-env … -- python jobs/….py …`."""
    cmd = [*ray_cmd(), "job", "submit", "--address", url, "--working-dir", ".", "--runtime-env", str(runtime_env),
           "--", "python", *args]
    res = subprocess.run(cmd, cwd=ROOT, env=base_env(), capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    log.write_text(res.stdout + res.stderr)
    return res


def submit_sdk(url: str, entrypoint: str, env_vars: dict[str, str], working_dir: bool = True) -> tuple[str, str, str]:
    """JobSubmissionClient, same runtime env; waits for the end; returns (status, logs, submission id)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(url)
    spec = yaml.safe_load((ROOT / "cluster" / "runtime-env.yaml").read_text())
    if working_dir:
        spec["working_dir"] = str(ROOT)
    else:
        spec.pop("excludes", None)
    spec.setdefault("env_vars", {}).update(env_vars)
    deadline = time.time() + 60
    while True:  # the head's job agent registers a few seconds after the dashboard answers
        try:
            sub = client.submit_job(entrypoint=entrypoint, runtime_env=spec)
            break
        except RuntimeError as exc:
            if "agent" not in str(exc) or time.time() > deadline:
                raise
            time.sleep(2)
    deadline = time.time() + JOB_TIMEOUT_S
    status = client.get_job_status(sub)
    while status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED) and time.time() < deadline:
        time.sleep(2)
        status = client.get_job_status(sub)
    if status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        client.stop_job(sub)
    return str(status), client.get_job_logs(sub), sub


@pytest.fixture(scope="module")
def prepared(head, work):
    """The prepare job (JobSubmissionClient) with configs/prepare-smoke.yaml."""
    out = work / "prepared"
    status, logs, _ = submit_sdk(head["url"], f"python jobs/prepare.py --config configs/prepare-smoke.yaml "
                                              f"--source {work / 'corpus'} --out {out}",
                                 {"GENRE_RAY_HOME": str(work / "home")})
    assert status == "SUCCEEDED", logs[-4000:]
    return out


# ---------------------------------------------------------------- tests

def test_prepare_train_label_jobs_through_head_and_mlflow_server(head, mlflow_server, prepared, work):
    from mlflow.tracking import MlflowClient

    uri, server_dir = mlflow_server
    meta = json.loads((prepared / "meta.json").read_text())
    assert meta["tracks"]["train"] > 0 and meta["windows"]["val"] > 0 and meta["failed"] == []
    home = work / "home-tracked"  # where a job would put a local sqlite store if it ignored the server
    env = runtime_env_file(work / "runtime-env.yaml", MLFLOW_TRACKING_URI=uri, GENRE_RAY_HOME=str(home))

    t0 = time.time()
    train = submit_cli(head["url"], env, [
        "jobs/train.py", "--config", "configs/train-smoke.yaml", "--data", str(prepared), "--out", str(work / "train"),
        "--epochs", "2", "--num-workers", "2", "--set", f"register_as={MODEL_NAME}"], work / "train-job.log")
    assert train.returncode == 0 and "succeeded" in train.stdout + train.stderr, (train.stdout + train.stderr)[-5000:]
    print(f"train job: {time.time() - t0:.0f} s")
    assert (work / "train" / "bundle" / "bundle.json").is_file()
    results = json.loads((work / "train" / "results.json").read_text())

    # the run, its metrics and the registered model are on the server, read back over HTTP
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("genre-ray")
    runs = client.search_runs([exp.experiment_id], "tags.`genre_ray.job` = 'train'")
    assert [r.info.run_id for r in runs] == [results["run_id"]]
    run = runs[0]
    assert run.data.params["model"] == "homebrew" and run.data.params["num_workers"] == "2"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")) == [0, 1]
    assert "test_track_accuracy" in run.data.metrics
    versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    assert [(v.version, v.run_id) for v in versions] == [("1", run.info.run_id)]
    # artifacts went through the server's proxy into its artifact store, not to the job's disk
    assert any((server_dir / "mlartifacts").rglob("weights.pt"))
    assert not (home / "mlflow.db").exists()

    # label unseen clips with the registered model, fetched from the server by URI
    t0 = time.time()
    label = submit_cli(head["url"], env, [
        "jobs/label.py", "--config", "configs/label-smoke.yaml", "--input", str(work / "unseen"),
        "--model", f"models:/{MODEL_NAME}/1", "--out", str(work / "labels")], work / "label-job.log")
    assert label.returncode == 0 and "succeeded" in label.stdout + label.stderr, (label.stdout + label.stderr)[-5000:]
    print(f"label job: {time.time() - t0:.0f} s")
    labels = pd.read_parquet(work / "labels" / "labels")
    files = sorted(str(p) for p in (work / "unseen").rglob("*") if p.is_file())
    assert sorted(labels["path"]) == files  # one row per input file, the corrupt one included
    assert labels.set_index("path").loc[str(work / "unseen" / "corrupt.wav"), "status"] == "error"
    assert (labels["status"] == "ok").sum() == GENRES
    label_runs = client.search_runs([exp.experiment_id], "tags.`genre_ray.job` = 'label'")
    assert len(label_runs) == 1
    assert_loopback_only(head["service"])


def assert_loopback_only(svc: Service) -> None:
    """Every TCP socket the service's process tree (a `ray start` node and all it spawned) listens on is loopback."""
    listening = listening_addresses(process_tree(svc.proc.pid))
    assert len(listening) >= 5, listening  # the scan sees the node's GCS/raylet/agents at all
    exposed = {a: who for a, who in listening.items() if not is_loopback(a)}
    assert not exposed, f"{svc.name} listens beyond loopback: {exposed}"


def test_unreachable_tracking_server_fails_fast_and_writes_nothing(head, prepared, work):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    # as a Ray job: FAILED, the log names the URI, no output folder
    out = work / "never-job"
    status, logs, _ = submit_sdk(head["url"], f"python jobs/train.py --data {prepared} --out {out} "
                                              f"--set cpus_per_worker=0.5",
                                 {"MLFLOW_TRACKING_URI": dead, "GENRE_RAY_HOME": str(work / "home")})
    assert status == "FAILED", logs[-3000:]
    assert f"MLflow tracking server {dead} is unreachable" in logs, logs[-3000:]
    assert not out.exists()
    # as a plain process (the same entry point, no Ray): exit status 3, one clear line, nothing written
    out = work / "never-cli"
    t0 = time.time()
    res = subprocess.run([sys.executable, "jobs/train.py", "--data", str(prepared), "--out", str(out)], cwd=ROOT,
                         env=base_env(MLFLOW_TRACKING_URI=dead), capture_output=True, text=True, timeout=300)
    assert res.returncode == 3, res.stderr[-3000:]
    assert f"genre-ray train: MLflow tracking server {dead} is unreachable" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()
    print(f"unreachable server: exit 3 after {time.time() - t0:.1f} s")


def test_two_node_training_one_worker_per_node(head, prepared, work):
    """A second node joins the head (`ray start --address`); a 2-worker training run puts one worker on each.

    Placement by arithmetic: head 4 CPUs, worker node 3, workers take 2.5 CPUs each — neither node holds two,
    and the head keeps 1.5 CPUs for Ray Data's read tasks.
    """
    from ray.util.state import list_actors, list_nodes

    node = Service("ray worker node", [sys.executable, "-c", KEEP_LOOPBACK, "start", "--block",
                                        f"--address={head['gcs']}", "--node-ip-address=127.0.0.1", "--num-cpus=3", "--num-gpus=0",
                                        "--object-store-memory=200000000", "--disable-usage-stats", *node_ports()],
                   work / "ray-node2.log", base_env(GENRE_RAY_HOME=str(work / "home"), RAY_ADDRESS=head["gcs"]))
    try:
        wait_until(lambda: len([n for n in list_nodes(address=head["url"]) if n.state == "ALIVE"]) == 2,
                   START_TIMEOUT_S, "second node", node)
        out = work / "train-2node"
        # No working_dir here (as with KubeRay's image): both nodes share this box's Ray temp dir, and the
        # second node unpacking the same working-dir package there would replace the driver's cwd under it.
        # The nodes run the installed package instead; --working-dir is covered by the tests above.
        status, logs, sub = submit_sdk(
            head["url"], f"python {ROOT / 'jobs' / 'train.py'} --config {ROOT / 'configs' / 'train-smoke.yaml'} "
                         f"--data {prepared} --out {out} --epochs 1 --num-workers 2 --set cpus_per_worker=2.5",
            {"GENRE_RAY_HOME": str(work / "home")}, working_dir=False)
        assert status == "SUCCEEDED", logs[-5000:]
        assert (out / "bundle" / "bundle.json").is_file()
        from ray.job_submission import JobSubmissionClient

        job_id = JobSubmissionClient(head["url"]).get_job_info(sub).job_id
        workers = [a for a in list_actors(address=head["url"], filters=[("class_name", "=", "RayTrainWorker")],
                                          detail=True, limit=1000) if a.job_id == job_id]
        nodes = {n.node_id: n.node_ip for n in list_nodes(address=head["url"])}
        assert len(workers) == 2, workers
        assert len({w.node_id for w in workers}) == 2 and {w.node_id for w in workers} <= set(nodes), workers
        assert_loopback_only(node)
    finally:
        node.stop()
