"""Ray job entry point: `genre-ray train` (Ray Train DDP over prepared windows, logged to MLflow) for `ray job submit`.

From the checkout's root, against a head node's dashboard (here a local one, cluster/start-local-head.sh)::

    RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env cluster/runtime-env.yaml \
        -- python jobs/train.py --config configs/train-gtzan-homebrew.yaml [--set key=value ...]

Takes exactly the flags of `genre-ray train --help` (any `configs/train-*.yaml`; `train-smoke.yaml` for a
first try, with `--data` and `--out` given). Inside a job Ray is
joined through $RAY_ADDRESS; with `use_gpu` each Ray Train worker takes one GPU, so training lands on GPU
nodes. Multi-node runs need `storage_path` (checkpoints) on storage every node reaches — a shared
filesystem path or s3://… — and `data`/`out` on shared storage. MLflow: $MLFLOW_TRACKING_URI (set it in
the runtime env); an unreachable server fails the job before Ray Train starts or `out` is created.
Exit status: 0 done, 2 bad config, 3 MLflow unreachable, 1 anything else.
"""

import sys

from genre_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
