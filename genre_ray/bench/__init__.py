"""Benchmarks (issue #7): ``genre-ray bench NAME``. :mod:`.core` holds the registry, the harness and the memory
benchmark; :mod:`.stages` the stage benchmarks (decode, spectrogram, prepare, train, label, cache), which register
themselves on import — importing this package registers every benchmark."""

from genre_ray.bench import stages  # noqa: F401  (registers the stage benchmarks)
from genre_ray.bench.core import (BENCHMARKS, QUICK, demo_bundle, format_table, host_info, long_file, register_benchmark,
                                  repeated_library, run_all, run_benchmark, run_measured, save_partial, synth_library)

__all__ = ["BENCHMARKS", "QUICK", "demo_bundle", "format_table", "host_info", "long_file", "register_benchmark",
           "repeated_library", "run_all", "run_benchmark", "run_measured", "save_partial", "synth_library"]
