"""Tests talk to loopback only: every TCP socket the session's local Ray listens on is on 127.0.0.0/8."""

from __future__ import annotations

import os
import socket

import pytest
from procs import is_loopback, listening_addresses, process_tree


def test_is_loopback():
    assert is_loopback("127.0.0.1:80") and is_loopback("127.0.0.2:6379") and is_loopback("::1:8265")
    assert is_loopback("::ffff:127.0.0.1:1")
    assert not is_loopback("0.0.0.0:8265") and not is_loopback("::1234:1") and not is_loopback("192.0.2.2:52365")
    assert not is_loopback(":::41227")  # IPv6 any, what `ss` prints as `*`


def test_local_ray_listens_on_loopback_only(ray_session):
    ray = ray_session

    @ray.remote
    def node_ip() -> str:
        return ray.util.get_node_ip_address()

    # workers up (a task and a Ray Data pipeline), so their sockets are checked too
    assert ray.get(node_ip.remote()) == "127.0.0.1"
    assert ray.data.range(8).map_batches(lambda b: b).count() == 8

    listening = listening_addresses(process_tree(os.getpid()))
    gcs_port = ray.get_runtime_context().gcs_address.rsplit(":", 1)[1]
    # the scan sees Ray's sockets at all: the GCS, the dashboard and more than a handful of others
    assert any(a.endswith(f":{gcs_port}") for a in listening), listening
    assert len(listening) >= 5, listening
    exposed = {a: who for a, who in listening.items() if not is_loopback(a)}
    assert not exposed, f"Ray processes listening beyond loopback: {exposed}"


def _routable_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # no packet is sent
        try:
            s.connect(("192.0.2.123", 9))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0"])
def test_joining_a_loopback_only_head_keeps_127_0_0_1(bind):
    """`RAY_ADDRESS=127.0.0.1:PORT` of a single-node-mode head must not be swapped for the machine's address."""
    from genre_ray.pipelines.common import loopback_only_gcs

    routable = _routable_ip()
    if routable.startswith("127.") and bind == "0.0.0.0":
        pytest.skip("no routable address on this machine")
    with socket.socket() as srv:
        srv.bind((bind, 0))
        srv.listen()
        port = srv.getsockname()[1]
        assert loopback_only_gcs(f"127.0.0.1:{port}", routable) is (bind == "127.0.0.1")
        assert loopback_only_gcs(f"localhost:{port}", routable) is (bind == "127.0.0.1")
        assert not loopback_only_gcs(f"{routable}:{port}", routable)  # not a loopback address: Ray's business
    assert not loopback_only_gcs(f"127.0.0.1:{port}", routable)  # nothing listening: let Ray say so
    assert not loopback_only_gcs("auto", routable) and not loopback_only_gcs("ray://127.0.0.1:10001", routable)


_MINIMAL_RAY = """
import ray, ray._private.utils as u
u.get_dashboard_dependency_error = lambda: "no aiohttp (as a bare `ray` install)"
from genre_ray.config import RayConfig
from genre_ray.pipelines.common import init_ray
init_ray(RayConfig(num_cpus=1))
print("started", ray.get(ray.remote(lambda: 2).remote()), flush=True)
ray.shutdown()
"""


@pytest.mark.integration
def test_a_ray_without_dashboard_packages_starts_by_default(tmp_path):
    """The default `ray.dashboard` (null) starts a local Ray where the dashboard's packages are missing (the GPU
    machine's kit: `ray` without `[default]`) instead of failing as `include_dashboard=True` does."""
    import subprocess
    import sys

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run([sys.executable, "-c", _MINIMAL_RAY], capture_output=True, text=True, timeout=180,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0 and "started 2" in done.stdout, done.stderr[-3000:]


_NICE_RAY = """
import os, ray
from genre_ray.config import RayConfig
from genre_ray.pipelines.common import init_ray

def nice():
    return os.nice(0)

for n in (None, 0):
    init_ray(RayConfig(num_cpus=1, dashboard=False, worker_niceness=n))
    print("niceness", n, ray.get(ray.remote(num_cpus=0)(nice).remote()), flush=True)
    ray.shutdown()
"""


@pytest.mark.integration
def test_worker_niceness_reaches_the_workers_of_a_local_ray(tmp_path):
    """Ray starts its workers at niceness 15 (below the driver and Ray's own processes); `ray.worker_niceness: 0`
    puts them level with the rest (the bench's Ray-vs-bare comparison runs its bare loop at the driver's)."""
    import subprocess
    import sys

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run([sys.executable, "-c", _NICE_RAY], capture_output=True, text=True, timeout=240,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    if os.nice(0):
        pytest.skip("this test process runs niced itself")
    assert "niceness None 15" in done.stdout, done.stdout
    assert "niceness 0 0" in done.stdout, done.stdout
