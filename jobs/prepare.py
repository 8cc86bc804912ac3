"""Ray job entry point: `genre-ray prepare` (audio → spectrogram windows as Parquet) for `ray job submit`.

From the checkout's root, against a head node's dashboard (here a local one, cluster/start-local-head.sh)::

    RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env cluster/runtime-env.yaml \
        -- python jobs/prepare.py --config configs/prepare-gtzan.yaml [--set key=value ...]

Takes exactly the flags of `genre-ray prepare --help`. Inside a job Ray is joined through $RAY_ADDRESS;
decoding runs as Ray Data CPU tasks on any node. `source` and `out` must be paths every node sees at the
same place (shared storage): the job's own working directory is a temporary copy on the head node.
Exit status: 0 done (tracks that failed to decode are listed in OUT/meta.json), 1 no track decoded — or any
failed with --fail-on-error — or any other failure, 2 bad config or a leaky split (checked before Ray starts),
3 MLflow unreachable.
"""

import sys

from genre_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
