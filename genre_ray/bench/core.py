"""Benchmarks — speed and memory are measured here, never asserted in tests. ``genre-ray bench NAME`` prints JSON
and a table (``--quick``: CI-friendly sizes; ``--out FILE.json``; ``bench all``: every benchmark in one JSON).

Each benchmark is a function registered in :data:`BENCHMARKS` taking keyword arguments (``--set key=value`` on the
command line) and returning a JSON-able dict with a ``table``. Add one with ``@register_benchmark("name")``.
The stage benchmarks (``decode``, ``spectrogram``, ``prepare``, ``train``, ``label``, ``cache``) are in
:mod:`genre_ray.bench.stages`; :mod:`genre_ray.bench` imports both, so every benchmark is registered.

* ``label-memory`` — peak memory of ``genre-ray label`` on one short file, one very long file, and 1× vs 10× as
  many files: the peak resident memory of the biggest Ray worker (``VmHWM``), and of the whole process tree.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from genre_ray.registry import Registry

Benchmark = Callable[..., dict[str, Any]]
BENCHMARKS: Registry[Benchmark] = Registry("benchmark")
register_benchmark = BENCHMARKS.register

DEMO_KWARGS = {"channels": [16, 32, 64, 64], "dense": [128, 64], "dropout": 0.3}  # genre-ray demo's model


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


QUICK: dict[str, dict[str, Any]] = {
    "decode": {"seconds": 10.0, "repeats": 1},
    "spectrogram": {"seconds": 20.0, "repeats": 1},
    "prepare": {"tracks": 30, "seconds": 6.0},
    "train": {"tracks": 30, "seconds": 6.0, "epochs": 1, "bare_epochs": 1},
    "label": {"tracks": 6, "seconds": 8.0, "batch_sizes": [16, 64], "infer_windows": 64},
    "cache": {"tracks": 30, "seconds": 6.0, "repeats": 1},
    "label-memory": {"long_minutes": 3.0, "short_seconds": 6.0, "files": 2},
    "inference": {"arch": "homebrew", "batch_sizes": [16, 64], "windows": 64},
}
"""``--quick`` sizes per benchmark (explicit ``--set`` values win)."""

def host_info() -> dict[str, Any]:
    """Hardware and load at the time of a run (load average from /proc/loadavg)."""
    import platform

    import torch

    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        info["loadavg"] = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        pass
    try:
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                                 if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import ray

        info["ray"] = ray.__version__
    except ImportError:
        pass
    return info


def demo_bundle(out: Path, genres: int = 10, hop_s: float = 3.0, arch: str = "homebrew") -> Path:
    """An (untrained) bundle with the demo's features and architecture (``arch=homebrew``: the demo's CNN;
    ``resnet18``: the 1-channel ResNet18, random weights): labelling cost does not depend on weights."""
    import torch

    from genre_ray.bundle import save_bundle
    from genre_ray.features import FeatureConfig
    from genre_ray.models import create_model
    from genre_ray.synth import GENRE_NAMES

    if (out / "bundle.json").is_file():
        return out
    features = FeatureConfig(hop_s=hop_s)
    kwargs = {**DEMO_KWARGS, "input_size": [features.height, features.width]} if arch == "homebrew" else {}
    torch.manual_seed(0)
    model = create_model(arch, num_classes=genres, **kwargs)
    return save_bundle(out, model.eval(), arch, kwargs, list(GENRE_NAMES[:genres]), features,
                       meta={"note": "untrained, for benchmarks"})


def synth_workers() -> int:
    """Threads that synthesise a benchmark's corpus (``write_corpus(workers=…)``): one per core."""
    return max(1, os.cpu_count() or 1)


def synth_library(root: Path, tracks: int, seconds: float, seed: int = 0, sr: int = 22_050,
                  channels: int = 1) -> list[Path]:
    """``tracks`` synthetic clips over 10 genres, mixed wav/flac/mp3/ogg, at ``sr`` Hz with ``channels`` channels
    (reused when already there)."""
    from genre_ray.catalog import list_audio_files
    from genre_ray.synth import write_corpus

    fmt_tag = "" if (sr, channels) == (22_050, 1) else f"-{sr}x{channels}"
    done = root / f".complete-{tracks}x{seconds:g}s-{seed}{fmt_tag}"
    if done.is_file():
        return sorted(list_audio_files(root))
    fmts = ("wav", "flac", "mp3", "ogg")
    per_fmt = [tracks // (10 * len(fmts)) + (1 if i < (tracks // 10) % len(fmts) else 0) for i in range(len(fmts))]
    paths: list[Path] = []
    for i, (fmt, n) in enumerate(zip(fmts, per_fmt)):
        if n:
            paths += write_corpus(root, genres=10, per_genre=n, seconds=seconds, seed=seed,
                                  start_index=1000 * i, fmt=fmt, workers=synth_workers(), sr=sr, channels=channels)
    extra = tracks - len(paths)  # tracks not a multiple of 10: the rest as wav clips of the first genres
    if extra > 0:
        from genre_ray.synth import GENRE_NAMES

        paths += write_corpus(root, genres=list(GENRE_NAMES[:extra]), per_genre=1, seconds=seconds, seed=seed,
                              start_index=9000, sr=sr, channels=channels)
    done.touch()
    return sorted(paths)


def repeated_library(root: Path, paths: list[Path], repeat: int) -> Path:
    """``root/copy-<k>/…`` for ``k < repeat``: every file of ``paths`` (under ``root``'s parent library) hard-linked
    (copied where links are refused) ``repeat`` times under distinct names — a library ``repeat`` × longer to label
    for no synthesis time, each copy decoded and classified like any other file. Returns ``root``."""
    import shutil

    done = root / f".complete-{len(paths)}x{repeat}"
    if done.is_file():
        return root
    lib = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else root
    for k in range(repeat):
        for src in paths:
            dst = root / f"copy-{k}" / src.relative_to(lib)
            if dst.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
    done.touch()
    return root


def long_file(path: Path, minutes: float, seed: int = 0) -> Path:
    """One ``minutes``-long FLAC: a 60-s synthetic clip repeated, written block by block (never all in memory)."""
    import soundfile as sf

    from genre_ray.synth import clip_seed, synth_clip

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    sr = 22_050
    clip = synth_clip("rock", 60.0, sr=sr, rng=np.random.default_rng(clip_seed(seed, "rock", 0))).astype(np.float32)
    total = int(minutes * 60 * sr)
    tmp = path.with_suffix(".tmp.flac")
    with sf.SoundFile(tmp, "w", samplerate=sr, channels=1, format="FLAC", subtype="PCM_16") as f:
        for start in range(0, total, len(clip)):
            f.write(clip[: min(len(clip), total - start)])
    os.replace(tmp, path)
    return path


def _proc_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _role(pid: int, driver: int) -> str:
    """Which kind of process: the driver, a classifier actor, a Ray Data task worker, or Ray's own processes."""
    if pid == driver:
        return "driver"
    cmd = _cmdline(pid)
    if "MapWorker" in cmd or "Classifier" in cmd:
        return "classifier_actors"
    return "task_workers" if cmd.startswith("ray::") or "default_worker.py" in cmd else "ray_system"


def run_measured(cmd: list[str], env: dict[str, str], interval_s: float = 0.1, timeout_s: float = 3600) -> dict[str, Any]:
    """Run ``cmd`` in its own session; sample its process tree's memory until it exits.

    Returns wall seconds, exit code, ``peak_tree_rss_mb`` (largest sum of RSS over the tree), and per role the
    largest ``VmHWM`` (peak RSS — it includes the pages of Ray's shared-memory object store a process touched)
    and the largest sampled ``RssAnon`` (private memory, ``peak_private_mb``) of one process: ``driver``, ``classifier_actors``, ``task_workers`` (featurize
    tasks; idle workers), ``ray_system`` (GCS, raylet, dashboard…). A process's role is read while it lives, so
    a worker that became an actor counts there from then on.
    """
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    peak_tree = 0
    hwm = {"driver": 0, "classifier_actors": 0, "task_workers": 0, "ray_system": 0}
    anon = dict(hwm)
    out_chunks: list[bytes] = []
    import threading

    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    try:
        while proc.poll() is None and time.time() - t0 < timeout_s:
            pids = _proc_tree(proc.pid)
            peak_tree = max(peak_tree, sum(_status_kb(p, "VmRSS") for p in pids))
            for p in pids:
                role = _role(p, proc.pid)
                hwm[role] = max(hwm[role], _status_kb(p, "VmHWM"))
                anon[role] = max(anon[role], _status_kb(p, "RssAnon"))
            time.sleep(interval_s)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        try:  # Ray processes the driver left behind in its session
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        reader.join(timeout=10)
    return {"wall_s": round(time.time() - t0, 2), "returncode": proc.returncode,
            "peak_tree_rss_mb": round(peak_tree / 1024, 1),
            "peak_rss_mb": {k: round(v / 1024, 1) for k, v in hwm.items()},
            "peak_private_mb": {k: round(v / 1024, 1) for k, v in anon.items()},
            "log_tail": b"".join(out_chunks).decode(errors="replace")[-1500:]}


def _label(input_: str, model: Path, out: Path, num_cpus: int, home: Path, sets: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "genre_ray.cli", "label", "--input", input_, "--model", str(model), "--out", str(out),
           "--num-cpus", str(num_cpus), "--set", "overwrite=true", *[x for s in sets for x in ("--set", s)]]
    env = {**os.environ, "GENRE_RAY_HOME": str(home), "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    m = run_measured(cmd, env)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    if m["returncode"] != 0 or not summary:
        raise RuntimeError(f"label run failed (exit {m['returncode']}):\n{m['log_tail']}")
    m.pop("log_tail")
    keep = ("files", "status", "hours_of_audio", "audio_s_per_s", "files_per_s", "label_seconds", "seconds")
    return {**m, **{k: summary[k] for k in keep}}


def _workdir(workdir: str | None, name: str) -> Path:
    from genre_ray.config import default_home

    return Path(workdir) if workdir else default_home() / "bench" / name


# ---------------------------------------------------------------------------------------------
# benchmarks
# ---------------------------------------------------------------------------------------------


@register_benchmark("label-memory")
def bench_label_memory(long_minutes: float = 75.0, short_seconds: float = 30.0, files: int = 10, num_cpus: int = 2,
                       model: str | None = None, workdir: str | None = None) -> dict[str, Any]:
    """Peak memory of labelling one short file, one ``long_minutes`` file, ``files`` and ``10 × files`` short files."""
    work = _workdir(workdir, "label-memory")
    bundle = Path(model) if model else demo_bundle(work / "demo-bundle")
    long_path = long_file(work / "long" / f"long-{long_minutes:g}min.flac", long_minutes)
    few = synth_library(work / f"few-{files}", files, short_seconds)
    synth_library(work / f"many-{10 * files}", 10 * files, short_seconds)
    cases = {"one_short_file": str(few[0]), "one_long_file": str(long_path),
             f"{files}_files": str(work / f"few-{files}"), f"{10 * files}_files": str(work / f"many-{10 * files}")}
    results = {}
    for name, input_ in cases.items():
        results[name] = _label(input_, bundle, work / "out" / name, num_cpus, work / "home", [])
    featurize = {name: _featurize_peak(path, bundle) for name, path in
                 (("one_short_file", few[0]), ("one_long_file", long_path))}
    table = [[f"label-memory {name}: process tree peak", r["peak_tree_rss_mb"], "MB"] for name, r in results.items()]
    table += [[f"label-memory featurize {name}: growth", f["growth_mb"], "MB"] for name, f in featurize.items()]
    return {"benchmark": "label-memory", "long_minutes": long_minutes, "short_seconds": short_seconds,
            "num_cpus": num_cpus, "cases": results, "featurize_only_one_process": featurize, "table": table}


_FEATURIZE = """
import resource, sys, time
from genre_ray.bundle import load_bundle
from genre_ray.inference import WindowBatch, featurize_stream
features = load_bundle(sys.argv[2]).features
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0, n = time.time(), 0
for item in featurize_stream(sys.argv[1], features):
    n += len(item.images) if isinstance(item, WindowBatch) else 0
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, n, item.duration_s, time.time() - t0)
"""


def _featurize_peak(path: Path, bundle: Path) -> dict[str, Any]:
    """Peak RSS of one process that decodes + featurizes ``path`` (what one featurize task does), vs its baseline."""
    out = subprocess.run([sys.executable, "-c", _FEATURIZE, str(path), str(bundle)], capture_output=True, text=True,
                         check=True).stdout.split()
    base, peak, n, dur, secs = int(out[0]), int(out[1]), int(out[2]), float(out[3]), float(out[4])
    return {"duration_s": round(dur, 1), "windows": n, "baseline_rss_mb": round(base / 1024, 1),
            "peak_rss_mb": round(peak / 1024, 1), "growth_mb": round((peak - base) / 1024, 1),
            "audio_s_per_s_one_core": round(dur / secs, 1)}


_partial_out: Path | None = None


def save_partial(result: dict[str, Any]) -> None:
    """A long benchmark's figures so far, written (``"partial": true``) to the file its final result will replace
    (``genre-ray bench NAME --out FILE``): a run cut short by a time limit — one device call on a lent GPU — keeps
    what it measured. Nothing is written without ``--out``."""
    if _partial_out is not None:
        from genre_ray import atomic

        atomic.write_json(_partial_out, {**result, "partial": True})


def run_benchmark(name: str, quick: bool = False, partial_out: str | Path | None = None,
                  **kwargs: Any) -> dict[str, Any]:
    """Run benchmark ``name`` (``quick``: the CI-friendly sizes of :data:`QUICK`, explicit keyword
    overrides win); the result — with the host's hardware and load average — also lands in its work folder.
    ``partial_out``: where :func:`save_partial` writes the figures of a run still in progress."""
    global _partial_out
    fn = BENCHMARKS.lookup(name)
    if quick:
        kwargs = {**QUICK.get(name, {}), **kwargs}
    host = host_info()
    t0 = time.time()
    _partial_out = Path(partial_out) if partial_out else None
    try:
        result = fn(**kwargs)
    finally:
        _partial_out = None
    result["bench_wall_s"] = round(time.time() - t0, 1)
    result["quick"] = quick
    result["host"] = {**host, "loadavg_end": host_info().get("loadavg")}
    out = _workdir(kwargs.get("workdir"), name) / f"bench-{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result


ALL_ORDER = ("decode", "spectrogram", "inference", "prepare", "train", "cache", "label", "label-memory")
"""``genre-ray bench all``: every stage, cheapest first (benchmarks registered later run after these)."""
ALL_QUICK = frozenset({"label-memory"})
"""Run at ``--quick`` size inside ``bench all`` even without ``--quick`` (the full label-memory case — a 75-min
file, 100 files, four fresh Ray instances — takes longer than every other stage together)."""


def run_all(quick: bool = False, workdir: str | None = None, skip: list[str] | tuple[str, ...] = (),
            **kwargs: Any) -> dict[str, Any]:
    """Every registered benchmark in :data:`ALL_ORDER` (then any other), one result each under ``results``.
    ``kwargs`` go to each benchmark that takes them (e.g. ``num_cpus``). A benchmark that fails is recorded
    with its error and the rest still run."""
    import inspect
    import traceback

    names = [n for n in ALL_ORDER if n in BENCHMARKS] + sorted(set(BENCHMARKS) - set(ALL_ORDER))
    names = [n for n in names if n not in skip]
    host = _host()
    t0 = time.time()
    results: dict[str, Any] = {}
    for name in names:
        params = inspect.signature(BENCHMARKS[name]).parameters
        kw = {k: v for k, v in kwargs.items() if k in params}
        kw["workdir"] = str(_workdir(workdir, "all"))  # one folder: train and cache reuse prepare's data
        print(f"[bench all] {name} …", file=sys.stderr, flush=True)
        try:
            results[name] = run_benchmark(name, quick=quick or name in ALL_QUICK, **kw)
        except Exception as exc:  # one broken stage must not hide the others' figures
            results[name] = {"benchmark": name, "error": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc()[-3000:]}
    return {"benchmark": "all", "quick": quick, "skipped": list(skip), "host": {**host, "loadavg_end": _host().get("loadavg")},
            "wall_s": round(time.time() - t0, 1), "results": results}


def _host() -> dict[str, Any]:
    return host_info()


def format_table(result: dict[str, Any]) -> str:
    """The ``table`` rows of a result (or of every result of ``bench all``) as aligned text."""
    rows = []
    parts = result["results"].values() if result.get("benchmark") == "all" else [result]
    for r in parts:
        if "error" in r:
            rows.append([f"{r['benchmark']}: FAILED", r["error"][:60], ""])
        rows += r.get("table", [])
    if not rows:
        return ""
    width = max(len(str(r[0])) for r in rows)
    lines = [f"{'measure':<{width}}  {'value':>12}  unit", "-" * (width + 22)]
    for what, value, unit in rows:
        v = f"{value:,.2f}" if isinstance(value, (int, float)) else str(value)
        lines.append(f"{what:<{width}}  {v:>12}  {unit}")
    return "\n".join(lines)

