#!/usr/bin/env bash
# Start a single-node Ray head on this box for `ray job submit` from this box.
#   cluster/start-local-head.sh [NUM_CPUS]
#   then:  RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:8265 --working-dir . \
#            --runtime-env cluster/runtime-env.yaml -- python jobs/train.py --config …
#   stop:  ray stop          (note: stops every Ray process of this user on this box)
# Ports: RAY_GCS_PORT (6379), RAY_DASHBOARD_PORT (8265; the job-submission endpoint, bound to 127.0.0.1).
# Run it from the project's venv (`source .venv/bin/activate`): job drivers and workers inherit the head's
# interpreter, so `python jobs/…` is the venv's python with genre-ray installed.
set -euo pipefail
export RAY_AUTH_MODE=disabled   # Ray 2.60 enables token auth by default; both head and submitter need this
# single-node mode: every Ray process listens on 127.0.0.1 (otherwise Ray swaps --node-ip-address=127.0.0.1 for the
# machine's address and its agents and workers listen there and on 0.0.0.0). Multi-node: README, "From laptop to cluster".
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
here="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -x "$here/.venv/bin/ray" && "${VIRTUAL_ENV:-}" != "$here/.venv" ]]; then
  export PATH="$here/.venv/bin:$PATH"   # the venv's ray and python, also for the job drivers
fi
ray start --head --node-ip-address=127.0.0.1 --num-cpus="${1:-$(nproc)}" --include-dashboard=true \
  --dashboard-host=127.0.0.1 --dashboard-port="${RAY_DASHBOARD_PORT:-8265}" --port="${RAY_GCS_PORT:-6379}"
echo "Ray head up: submit with  RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:${RAY_DASHBOARD_PORT:-8265} --working-dir . --runtime-env cluster/runtime-env.yaml -- python jobs/train.py --config ..."
