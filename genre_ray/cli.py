"""``genre-ray`` command line: synth, prepare, train, tune, label, predict, similar, demo.

Every job takes ``--config FILE.yaml`` plus a few common flags and any number of ``--set key=value``
overrides (dotted keys reach nested sections: ``--set features.window_s=2.0``). The config is validated
before Ray starts; a bad one exits with status 2 and names the key.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from genre_ray import __version__
from genre_ray.config import (LABEL_EXPORTS, ConfigError, DemoConfig, LabelConfig, PrepareConfig, TrainConfig,
                              TuneConfig, load_config)
from genre_ray.registry import Registry
from genre_ray.splits import LeakageError
from genre_ray.tracking import TrackingError

COMMANDS: Registry[Callable[[argparse.Namespace], int]] = Registry("command")
command = COMMANDS.register


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number (got {text})")
    return value


def _config_args(p: argparse.ArgumentParser, example: str, ray: bool = True) -> None:
    p.add_argument("--config", help="YAML config file (keys as in the job's config class)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config key (repeatable; dotted keys reach nested sections), e.g. {example}")
    if not ray:
        return
    p.add_argument("--ray-address", dest="ray_address", help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    p.add_argument("--num-cpus", dest="num_cpus", type=int, help="CPUs for a local Ray instance")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genre-ray", description="Train music-genre classifiers and label music "
                                     "libraries on Ray. Run `genre-ray COMMAND --help` for each command.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"genre-ray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="write a deterministic synthetic genre corpus (GTZAN layout)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Write OUT/<genre>/<genre>.NNNNN.<fmt>: synthetic clips whose genres differ in "
                                   "tempo, rhythm, timbre, pitch range and texture. Same arguments → identical files.")
    p.add_argument("out")
    p.add_argument("--genres", type=int, default=10, help="number of genres (1-10, GTZAN names in order)")
    p.add_argument("--per-genre", type=int, default=10, help="clips per genre")
    p.add_argument("--seconds", type=float, default=30.0, help="clip length in seconds")
    p.add_argument("--seed", type=int, default=0, help="random seed of the corpus")
    p.add_argument("--start-index", type=int, default=0, help="first clip number (write unseen clips with e.g. 1000)")
    p.add_argument("--format", dest="fmt", default="wav", help="wav, flac, ogg or mp3")
    p.add_argument("--sr", type=int, default=22_050, help="sample rate in Hz (GTZAN: 22050; CD audio: 44100)")
    p.add_argument("--channels", type=int, default=1, choices=(1, 2), help="1 (mono, like GTZAN) or 2 (stereo)")

    p = sub.add_parser("prepare", help="audio dataset → spectrogram windows as Parquet (Ray Data)",
                       description="Read a dataset (GTZAN folder, FMA tracks.csv, or CSV/Parquet manifest with "
                                   "path,label[,artist][,split]), split per track/artist before windowing, decode, "
                                   "window and write log-mel images as Parquet, one row per window.")
    p.add_argument("--source", help="dataset folder, FMA tracks.csv, or manifest")
    p.add_argument("--out", help="output folder")
    p.add_argument("--split", help="auto (default: the source's own splits when it gives every track one, else "
                                   "random) | random | predefined | gtzan-ff")
    p.add_argument("--allow-leakage", dest="allow_leakage", action="store_true", default=None,
                   help="refuse nothing when a track, file, recording or artist is in two splits: warn, and tag the "
                        "MLflow run as not comparable (only to reproduce leaky published settings)")
    p.add_argument("--fail-on-error", dest="fail_on_error", action="store_true", default=None,
                   help="exit 1 if any track fails to decode (default: only if none succeeds)")
    _config_args(p, "--set features.hop_s=1.5 --set noise_copies=2")

    p = sub.add_parser("train", help="train a model on prepared windows (Ray Train DDP), log it to MLflow",
                       description="Ray Train TorchTrainer over prepared windows; rank 0 logs per-epoch metrics to "
                                   "MLflow; the best checkpoint is evaluated per track on val/test and saved as a "
                                   "model bundle (OUT/bundle) and an MLflow model.")
    p.add_argument("--data", help="prepared folder")
    p.add_argument("--out", help="output folder (checkpoints, bundle, results.json)")
    p.add_argument("--model", help="homebrew | resnet18")
    p.add_argument("--epochs", type=int)
    p.add_argument("--num-workers", dest="num_workers", type=int, help="Ray Train workers")
    p.add_argument("--use-gpu", dest="use_gpu", action="store_true", default=None)
    p.add_argument("--pretrained", help="local resnet18 ImageNet state_dict (nothing is downloaded)")
    p.add_argument("--allow-leakage", dest="allow_leakage", action="store_true", default=None,
                   help="refuse nothing when a track, file, recording or artist is in two splits: warn, and tag the "
                        "MLflow run as not comparable (only to reproduce leaky published settings)")
    _config_args(p, "--set epochs=30 --set augment.mixup_alpha=0.2")

    p = sub.add_parser("tune", help="Ray Tune sweep of the training config (ASHA), every trial in MLflow",
                       description="Sweep a search space over TrainConfig keys declared in the config (random or "
                                   "grid search, ASHA early stopping on the validation metric); one parent MLflow "
                                   "run with a nested run per trial, a summary table and a hyperparameter plot; "
                                   "rerunning into the same OUT resumes an interrupted sweep; the best config is "
                                   "saved (OUT/best_config.yaml), retrained for full epochs and registered.")
    p.add_argument("--data", help="prepared folder")
    p.add_argument("--out", help="sweep folder (config, Tune state, summary, best config, retrained model)")
    p.add_argument("--num-samples", dest="num_samples", type=int, help="trials (random) or grid repetitions")
    _config_args(p, "--set num_samples=16 --set train.epochs=20")

    p = sub.add_parser("label", help="label a music library with a trained model (Ray Data batch inference)",
                       description="Slide windows over every file (streaming: any length, bounded memory), classify "
                                   "them in an actor pool, aggregate per track and write OUT/labels/*.parquet — one "
                                   "row per input file, bad files included with their status and reason. Rerunning "
                                   "into the same OUT resumes: files already labelled by the same model are skipped.")
    p.add_argument("--input", help="folder (recursive), glob, or manifest with a path column (local or s3://, gs://)")
    p.add_argument("--model", help="bundle folder or MLflow model URI (runs:/…, models:/name/version, models:/name@alias)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--timeline", action="store_true", default=None, help="also write a per-window table (OUT/timeline)")
    p.add_argument("--export", action="append", choices=LABEL_EXPORTS, help="also write OUT/labels.csv / .jsonl")
    p.add_argument("--overwrite", action="store_true", default=None, help="relabel everything instead of resuming")
    p.add_argument("--retry-errors", dest="retry_errors", action="store_true", default=None,
                   help="resuming, label again the files an earlier run could not read (their error rows are replaced)")
    p.add_argument("--write-tags", dest="write_tags", action="store_true", default=None,
                   help="write the top genre into each file's tags (mutagen; audio data untouched)")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", default=None,
                   help="with --write-tags: only list the changes in OUT/tags.csv")
    p.add_argument("--tag-uncertain", dest="tag_uncertain", action="store_true", default=None,
                   help="with --write-tags: tag the tracks flagged uncertain too (default: left untagged)")
    p.add_argument("--fail-on-error", dest="fail_on_error", action="store_true", default=None,
                   help="exit 1 if any file is not labelled (default: only if none is)")
    p.add_argument("--review-list", dest="review_list", metavar="REVIEW.csv",
                   help="write the uncertain tracks, most uncertain first (path, genre, confidence, vote_entropy, reason)")
    _config_args(p, "--set top_k=5 --set ray.num_cpus=8")

    p = sub.add_parser("evaluate", help="score a trained model on a prepared split: accuracy, F1, confusion (MLflow)",
                       description="Per-window and per-track accuracy, macro-F1, ECE, per-class precision/recall and "
                                   "the confusion matrix of a model bundle or MLflow model on a split of prepared data "
                                   "(the label job's calibrated probabilities); printed, saved to OUT and logged to "
                                   "MLflow. No Ray.")
    p.add_argument("--model", help="bundle folder or MLflow model URI (runs:/…/model, models:/name@alias)")
    p.add_argument("--data", help="prepared folder (genre-ray prepare)")
    p.add_argument("--split", help="test (default) | val | train")
    p.add_argument("--out", help="folder for results.json and the confusion matrix (default: MLflow only)")
    _config_args(p, "--set aggregate=vote --set batch_size=256", ray=False)

    p = sub.add_parser("predict", help="genres of a few files, in-process (no Ray), with per-window timelines",
                       description="Decode each file, classify every window, print a table of genre probabilities "
                                   "(and each file's timeline with --timeline); --plot saves bar charts + timelines.")
    p.add_argument("paths", nargs="+", metavar="FILE")
    p.add_argument("--model", required=True, help="bundle folder or MLflow model URI")
    p.add_argument("--top-k", type=_positive_int, default=3, help="genres listed per file (default 3)")
    p.add_argument("--hop", type=_positive_float, help="window hop in seconds (default: the model's)")
    p.add_argument("--aggregate", default=None, help="mean | logmean | vote (default: the model's, as trained)")
    p.add_argument("--timeline", action="store_true", help="also print each window's top genre")
    p.add_argument("--plot", metavar="OUT.png", help="save a bar chart and a timeline per file")
    p.add_argument("--json", action="store_true", help="print one JSON object per file (with its timeline)")
    p.add_argument("--embedding", action="store_true", help="with --json: include each file's track embedding")
    p.add_argument("--fail-on-error", dest="fail_on_error", action="store_true",
                   help="exit 1 if any file is not labelled (default: only if none is)")

    p = sub.add_parser("similar", help="tracks that sound alike: nearest neighbours by embedding (cosine)",
                       description="Exact cosine-similarity search over the `embedding` column a `genre-ray label` "
                                   "run wrote (one NumPy matrix-vector product). TRACK is a path as stored in the "
                                   "labels, or a substring of exactly one stored path.")
    p.add_argument("track", metavar="TRACK")
    p.add_argument("--labels", required=True, metavar="OUT", help="the --out folder of `genre-ray label`")
    p.add_argument("-k", type=_positive_int, default=10, help="how many neighbours (default 10)")
    p.add_argument("--json", action="store_true", help="one JSON object per neighbour")

    p = sub.add_parser("report", help="one self-contained HTML page of a labelled library (no network)",
                       description="Read the labels (and timelines) a `genre-ray label` run wrote and write one HTML "
                                   "file with everything inlined: genre distribution, a sortable, filterable, "
                                   "paginated table of tracks with their status, and each track's per-window "
                                   "timeline (label --timeline).")
    p.add_argument("labels_dir", metavar="LABELS_DIR", help="the --out folder of `genre-ray label`")
    p.add_argument("--out", help="HTML file to write (default: LABELS_DIR/report.html)")
    p.add_argument("--title", help="page title (default: from the folder name)")
    p.add_argument("--timeline-mb", dest="timeline_mb", type=float, default=6.0,
                   help="timeline data embedded, MB before base64 (default 6: all class probabilities per window "
                        "when they fit, else each window's top genre, else the first tracks' timelines)")

    p = sub.add_parser("bench", help="benchmarks (speed, memory); prints JSON",
                       description="Run a registered benchmark (genre_ray/bench/) and print its JSON "
                                   "result (a table on stderr): decode per format, spectrogram CPU/GPU, prepare, Ray "
                                   "Train vs a bare loop, label end to end and per stage (pipeline efficiency), the "
                                   "inference stage alone (and compiled), cache layouts, label-memory; `all` runs every "
                                   "one. Keyword arguments via --set.")
    p.add_argument("name", help="all | decode | spectrogram | inference | prepare | train | label | cache | label-memory "
                                "(see genre_ray/bench/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="benchmark argument, e.g. --set tracks=200 --set long_minutes=75 --set model=runs/x/bundle "
                        "(with `all`: given to every benchmark that takes it, e.g. --set num_cpus=2)")
    p.add_argument("--quick", action="store_true", help="CI-friendly sizes (seconds, not minutes)")
    p.add_argument("--out", metavar="FILE.json", help="also write the JSON result here")
    p.add_argument("--skip", action="append", default=[], metavar="NAME", help="with `all`: leave this benchmark out")

    p = sub.add_parser("demo", help="synthesise → prepare → train (2 workers) → label unseen clips, in minutes",
                       description="End to end on synthetic audio, on this machine: prints held-out per-track "
                                   "accuracy, where labels and MLflow runs are, and how to open the MLflow UI.")
    for name, field in DemoConfig.model_fields.items():  # flags and defaults come from DemoConfig
        kind = str if name == "workdir" else int if field.annotation in (int, int | None) else float
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=field.default,
                       help=(field.description or name.replace("_", " ")) +
                       ("" if field.default is None else f" (default: {field.default})"))
    return parser


def _values(args: argparse.Namespace, *names: str) -> dict:
    vals = {n: getattr(args, n, None) for n in names}
    if getattr(args, "ray_address", None):
        vals["ray.address"] = args.ray_address
    if getattr(args, "num_cpus", None) is not None:  # 0 is refused by the config, not read as "all CPUs"
        vals["ray.num_cpus"] = args.num_cpus
    return vals


@command("synth")
def _synth(args: argparse.Namespace) -> int:
    from genre_ray.synth import write_corpus

    if (blocked := file_on_the_way(Path(args.out).expanduser(), include_self=True)) is not None:
        raise ConfigError(f"out {args.out}: {blocked} is a file, not a folder")
    try:  # write_corpus checks every argument before it writes a file
        paths = write_corpus(args.out, genres=args.genres, per_genre=args.per_genre, seconds=args.seconds,
                             seed=args.seed, fmt=args.fmt, start_index=args.start_index, sr=args.sr,
                             channels=args.channels)
    except ValueError as exc:  # a bad --genres, --seconds, --sr, --format …: one line, exit 2
        raise ConfigError(str(exc)) from None
    print(f"wrote {len(paths)} clips to {args.out}")
    return 0


@command("prepare")
def _prepare(args: argparse.Namespace) -> int:
    cfg = load_config(PrepareConfig, args.config, args.overrides, **_values(args, "source", "out", "split", "fail_on_error",
                                                                                "allow_leakage"))
    from genre_ray.outcome import exit_status
    from genre_ray.pipelines.prepare import run_prepare

    meta = run_prepare(cfg)
    failed = len(meta["failed"]) + len(meta.get("dropped_before_split") or [])  # meta's tracks: those with windows
    return exit_status(sum(meta["tracks"].values()), failed, cfg.fail_on_error)


@command("train")
def _train(args: argparse.Namespace) -> int:
    cfg = load_config(TrainConfig, args.config, args.overrides,
                      **_values(args, "data", "out", "model", "epochs", "num_workers", "use_gpu", "pretrained",
                                "allow_leakage"))
    from genre_ray.pipelines.train import run_train

    run_train(cfg)
    return 0


@command("tune")
def _tune(args: argparse.Namespace) -> int:
    cfg = load_config(TuneConfig, args.config, args.overrides, **_values(args, "data", "out", "num_samples"))
    from genre_ray.pipelines.tune import run_tune

    run_tune(cfg)
    return 0


@command("evaluate")
def _evaluate(args: argparse.Namespace) -> int:
    from genre_ray.config import EvaluateConfig
    from genre_ray.pipelines.evaluate import run_evaluate

    cfg = load_config(EvaluateConfig, args.config, args.overrides, **_values(args, "model", "data", "split", "out"))
    run_evaluate(cfg)
    return 0


@command("label")
def _label(args: argparse.Namespace) -> int:
    cfg = load_config(LabelConfig, args.config, args.overrides,
                      **_values(args, "input", "model", "out", "timeline", "export", "overwrite", "retry_errors",
                                "write_tags", "dry_run", "tag_uncertain", "fail_on_error", "review_list"))
    from genre_ray.outcome import exit_status
    from genre_ray.pipelines.label import run_label

    summary = run_label(cfg)
    ok = summary["status"].get("ok", 0)
    failed = summary["rows"] - ok + summary["missing"] + len(summary.get("unreadable_folders") or [])
    return exit_status(ok, failed, cfg.fail_on_error)


@command("predict")
def _predict(args: argparse.Namespace) -> int:
    from genre_ray.evaluate import AGGREGATORS
    from genre_ray.inference import plot_prediction, predict_file, utf8_row
    from genre_ray.outcome import exit_status
    from genre_ray.preflight import label_model
    from genre_ray.uncertainty import DEFAULT_THRESHOLD, UncertaintyRule

    if args.aggregate is not None and args.aggregate not in AGGREGATORS:
        raise ConfigError(f"--aggregate {args.aggregate!r}: choose one of {', '.join(sorted(AGGREGATORS))}")
    output_file(args.plot, "--plot", "genres.png")  # before the model is loaded and every file decoded
    if not Path(args.model).expanduser().exists():  # runs:/… or models:/…: the store label and evaluate read
        from genre_ray import tracking

        tracking.use_store()
    bundle = label_model(args.model)  # a missing, broken or code-carrying bundle: one message, exit 2
    args.aggregate = args.aggregate or bundle.aggregate
    model, classes = bundle.build_model(), bundle.classes
    rule = UncertaintyRule(threshold=DEFAULT_THRESHOLD if bundle.uncertain_threshold is None else bundle.uncertain_threshold)
    results = [predict_file(model, path, bundle.features, classes, hop_s=args.hop, how=args.aggregate, k=args.top_k,
                            temperature=bundle.temperature, rule=rule, embeddings=args.embedding)
               for path in args.paths]
    results = [(utf8_row(r), p, s) for r, p, s in results]  # names that are not UTF-8: printable, strict JSON
    if args.json:
        for row, probs, starts in results:
            timeline = [{"start_s": float(s), **{c: float(p[i]) for i, c in enumerate(classes)}}
                        for s, p in zip(starts, probs)]
            print(json.dumps(_json_safe({**row, "timeline": timeline}), default=float, allow_nan=False))
    else:
        name_w = max(12, *(len(str(p)) for p in args.paths))
        widths = [max(8, len(c)) for c in classes]  # whole genre names ("classical", "electronic")
        print(f"{'file':<{name_w}}  {'status':<9} {'dur s':>7} {'win':>4}  "
              + " ".join(f"{c:>{w}}" for c, w in zip(classes, widths)))
        for row, _, _ in results:
            probs = " ".join(f"{row[f'p_{c}']:{w}.3f}" for c, w in zip(classes, widths))
            print(f"{row['path']:<{name_w}}  {row['status']:<9} {row['duration_s']:7.1f} {row['n_windows']:4d}  {probs}")
        for row, probs, starts in results:
            if row["status"] != "ok":
                print(f"{row['path']}: {row['status']}: {row['error']}", file=sys.stderr)
                continue
            note = f"  ({row['error']})" if row["error"] else ""
            print(f"\n{row['path']}: {row['genre']} ({row['confidence']:.1%}){note}")
            if row["uncertain"]:
                print(f"  uncertain: {row['uncertain_reason']} (vote entropy {row['vote_entropy']:.2f})")
            for g, p in zip(row["top_k_genres"], row["top_k_probs"]):
                print(f"  {g:<12} {p:6.1%} {'█' * int(round(p * 40))}")
            if args.timeline:
                print("  timeline (start s → top genre):")
                for s, p in zip(starts, probs):
                    print(f"  {s:7.1f}  {classes[int(p.argmax())]:<12} {p.max():.2f}")
    if args.plot:
        out = plot_prediction([r for r, _, _ in results], [(p, s) for _, p, s in results], classes,
                              bundle.features.window_s, args.plot)
        print(f"plot: {out}", file=sys.stderr if args.json else sys.stdout)
    ok = sum(r["status"] == "ok" for r, _, _ in results)
    return exit_status(ok, len(results) - ok, args.fail_on_error)


def _json_safe(value):
    """NaN/inf → null: strict JSON (what `label --export jsonl` writes too); NumPy scalars → Python numbers."""
    import math

    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@command("similar")
def _similar(args: argparse.Namespace) -> int:
    from genre_ray.similarity import SimilarityError, similar

    try:
        track, hits = similar(args.labels, args.track, args.k)
    except SimilarityError as exc:
        print(f"genre-ray similar: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for path, genre, sim in hits:
            print(json.dumps({"path": path, "genre": genre, "similarity": round(sim, 6)}))
        return 0
    print(f"nearest to {track}:")
    print(f"{'rank':>4}  {'cosine':>7}  {'genre':<12} path")
    for rank, (path, genre, sim) in enumerate(hits, 1):
        print(f"{rank:>4}  {sim:7.4f}  {genre:<12} {path}")
    return 0


def output_file(path: str | None, flag: str, example: str) -> None:
    """An output FILE a command will write: refused up front (ConfigError, exit 2) when it is a folder or a folder
    on its way is a file — not with a traceback after the work is done."""
    if not path:
        return
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; give a file name (e.g. {p / example})")
    if (blocked := file_on_the_way(p)) is not None:
        raise ConfigError(f"{flag} {path}: {blocked} is a file, not a folder")


def file_on_the_way(path: Path, include_self: bool = False) -> Path | None:
    """The nearest existing folder-to-be above ``path`` (``path`` itself too with ``include_self``) that is not a
    folder, or None: where writing below it would fail."""
    for p in ((path,) if include_self else ()) + tuple(path.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


@command("report")
def _report(args: argparse.Namespace) -> int:
    from genre_ray.report import write_report

    output_file(args.out, "--out", "report.html")
    try:
        path = write_report(args.labels_dir, args.out, title=args.title,
                            timeline_budget=int(args.timeline_mb * 1e6))
    except FileNotFoundError as exc:
        print(f"genre-ray report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


@command("bench")
def _bench(args: argparse.Namespace) -> int:
    import inspect

    import yaml

    from pathlib import Path

    from genre_ray.bench import BENCHMARKS, format_table, run_all, run_benchmark

    kwargs = {}
    for item in args.overrides:
        if "=" not in item:
            raise ConfigError(f"bench argument {item!r} is not key=value")
        k, v = item.split("=", 1)
        kwargs[k.strip()] = yaml.safe_load(v)
    if args.name == "all":
        unknown = [s for s in args.skip if s not in BENCHMARKS]
        known = {p for fn in BENCHMARKS.values() for p in inspect.signature(fn).parameters}
        if unknown or set(kwargs) - known:
            raise ConfigError(f"all: unknown benchmark(s) {unknown} or argument(s) {sorted(set(kwargs) - known)}")
        result = run_all(args.quick, skip=args.skip, **kwargs)
    else:
        try:
            inspect.signature(BENCHMARKS.lookup(args.name)).bind(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{args.name}: {exc}") from None
        result = run_benchmark(args.name, quick=args.quick, partial_out=args.out, **kwargs)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    print(format_table(result), file=sys.stderr)
    return 0 if all("error" not in r for r in result.get("results", {}).values()) else 1


@command("demo")
def _demo(args: argparse.Namespace) -> int:
    from genre_ray.pipelines.demo import run_demo

    run_demo(load_config(DemoConfig, **{name: getattr(args, name) for name in DemoConfig.model_fields}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"genre-ray {args.command}: {exc}", file=sys.stderr)
        return 2
    except TrackingError as exc:  # MLflow unreachable: nothing was started or written
        print(f"genre-ray {args.command}: {exc}", file=sys.stderr)
        return 3
    except LeakageError as exc:  # a track/artist in two splits (genre_ray/leakage.py): refused before Ray starts
        print(f"genre-ray {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; what was committed stays (label resumes)
        print(f"genre-ray {args.command}: interrupted (what was completely written is kept; the same `label` "
              "command resumes where it stopped)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
