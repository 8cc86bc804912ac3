"""Ray job entry point: `genre-ray evaluate` (score a model bundle or registered model on a prepared split) for
`ray job submit`.

From the checkout's root, against a head node's dashboard (here a local one, cluster/start-local-head.sh)::

    RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env cluster/runtime-env.yaml \
        -- python jobs/evaluate.py --config configs/evaluate-champion.yaml [--data /shared/prepared --out ...]

Takes exactly the flags of `genre-ray evaluate --help`. No Ray inside: the job's driver reads the split with pyarrow
and scores it on its node's GPU if it has one (submit with `--entrypoint-num-gpus 1` to land on one), else its CPUs.
Writes per-window and per-track accuracy, macro-F1, ECE, per-class precision/recall, the confusion matrix and
`predictions.csv` (one row per track) to `out`, and logs them as an MLflow run ($MLFLOW_TRACKING_URI).
Exit status: 0 done, 2 bad config (a model whose images or classes differ from the data's), 3 MLflow unreachable.
"""

import sys

from genre_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
