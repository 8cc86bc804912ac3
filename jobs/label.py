"""Ray job entry point: `genre-ray label` (label a music library, Ray Data batch inference) for `ray job submit`.

From the checkout's root, against a head node's dashboard (here a local one, cluster/start-local-head.sh)::

    RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env cluster/runtime-env.yaml \
        -- python jobs/label.py --config configs/label-library.yaml [--set key=value ...]

Takes exactly the flags of `genre-ray label --help`. Inside a job Ray is joined through $RAY_ADDRESS;
where the spectrograms are made is `featurize` (auto: in the classifier actors, which decode too, on a CPU-only
cluster; on the GPU with `use_gpu`, the CPUs only decoding); inference in an actor pool (two actors per GPU by
default, sharing it). The model is a bundle folder on shared storage or an MLflow URI (`models:/genre-ray@champion`,
`runs:/<id>/model`) resolved through $MLFLOW_TRACKING_URI; `input` and `out` on shared storage.
Exit status: 0 done (bad files are rows with their reason), 1 no file labelled — or any not labelled with
--fail-on-error — or any other failure, 2 bad config (checked before Ray starts), 3 MLflow unreachable.
"""

import sys

from genre_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["label", *sys.argv[1:]]))
