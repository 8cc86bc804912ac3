"""Ray job entry point: `genre-ray tune` (Ray Tune sweep of a training config, ASHA, every trial in MLflow) for
`ray job submit`.

From the checkout's root, against a head node's dashboard (here a local one, cluster/start-local-head.sh)::

    RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env cluster/runtime-env.yaml \
        -- python jobs/tune.py --config configs/tune-gtzan-homebrew.yaml \
           --data /mnt/shared/prepared/gtzan-ff --out /mnt/shared/sweeps/homebrew \
           --set storage_path=/mnt/shared/ray-results/tune

Takes exactly the flags of `genre-ray tune --help` (any `configs/tune-*.yaml`). Inside a job Ray is joined
through $RAY_ADDRESS. Trials take `trial_cpus` CPUs and `trial_gpus` GPUs each (fractions share a GPU);
`max_concurrent_trials` caps how many run at once. Multi-node sweeps need `storage_path` (the Tune state that
a resubmitted job resumes from, and the trial checkpoints) and `data`/`out` on storage every node reaches.
Submitting the same command again after the job died resumes the sweep: finished trials are kept.
MLflow: $MLFLOW_TRACKING_URI (set it in the runtime env). Exit status: 0 done, 2 bad config, 3 MLflow
unreachable, 1 anything else (e.g. every trial failed).
"""

import sys

from genre_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
