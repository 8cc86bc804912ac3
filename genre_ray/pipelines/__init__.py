"""Ray drivers and per-worker functions — the only modules that import ray."""
