"""Ray job entry point: `genre-ray prepare` for `ray job submit`.

    RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env cluster/runtime-env.yaml -- python jobs/prepare.py --config CONFIG.yaml [--set key=value ...]

Takes exactly the flags of `genre-ray prepare --help`; inside a job, Ray is joined through $RAY_ADDRESS.
"""

import sys

from genre_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
