#!/usr/bin/env bash
# Start a single-node Ray head on loopback for `ray job submit` from this machine.
#   cluster/start-local-head.sh [NUM_CPUS]     then: ray job submit --address http://127.0.0.1:8265 ...
#   stop it with: ray stop
set -euo pipefail
export RAY_AUTH_MODE=disabled   # Ray 2.60 enables token auth by default; both head and submitter need this
ray start --head --node-ip-address=127.0.0.1 --num-cpus="${1:-$(nproc)}" \
  --dashboard-host=127.0.0.1 --dashboard-port="${RAY_DASHBOARD_PORT:-8265}" --port="${RAY_GCS_PORT:-6379}"
echo "Ray head up: submit with  RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:${RAY_DASHBOARD_PORT:-8265} --working-dir . -- python jobs/train.py --config ..."
