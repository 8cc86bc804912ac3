#!/usr/bin/env bash
# Start a single-node Ray head on this box for `ray job submit` from this box.
#   cluster/start-local-head.sh [NUM_CPUS]
#   then:  RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:8265 --working-dir . \
#            --runtime-env cluster/runtime-env.yaml -- python jobs/train.py --config …
#   stop:  ray stop          (note: stops every Ray process of this user on this box; with RAY_TEMP_DIR set,
#                             kill the head's processes instead — the pids are in RAY_TEMP_DIR/session_latest/logs)
# Ports: RAY_GCS_PORT (6379), RAY_DASHBOARD_PORT (8265; the job-submission endpoint, bound to 127.0.0.1).
# A second Ray on the same box (a colleague's, a test run): its fixed agent ports (52365 …) are taken, and every
# `ray job submit` then fails with "500: No available agent to submit job". Give this head its own block of ports:
#   RAY_PORT_BASE=20000 cluster/start-local-head.sh 2    # GCS 20000, dashboard 20001 (submit to :20001), agents,
#                                                        # metrics, node/object managers 20002-20008, workers 20100-20999
# and RAY_TEMP_DIR=/tmp/my-ray for its own session folder (logs, sockets).
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
gcs_port="${RAY_GCS_PORT:-6379}"
dashboard_port="${RAY_DASHBOARD_PORT:-8265}"
extra=()
if [[ -n "${RAY_PORT_BASE:-}" ]]; then
  b="$RAY_PORT_BASE"
  gcs_port="${RAY_GCS_PORT:-$b}"
  dashboard_port="${RAY_DASHBOARD_PORT:-$((b + 1))}"
  extra+=(--dashboard-agent-listen-port="$((b + 2))" --dashboard-agent-grpc-port="$((b + 3))"
          --metrics-export-port="$((b + 4))" --runtime-env-agent-port="$((b + 5))"
          --node-manager-port="$((b + 6))" --object-manager-port="$((b + 7))"
          --ray-client-server-port="$((b + 8))"
          --min-worker-port="$((b + 100))" --max-worker-port="$((b + 999))")
fi
if [[ -n "${RAY_TEMP_DIR:-}" ]]; then
  extra+=(--temp-dir="$RAY_TEMP_DIR")
fi
ray start --head --node-ip-address=127.0.0.1 --num-cpus="${1:-$(nproc)}" --include-dashboard=true \
  --dashboard-host=127.0.0.1 --dashboard-port="$dashboard_port" --port="$gcs_port" ${extra[@]+"${extra[@]}"}
echo "Ray head up: submit with  RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:$dashboard_port --working-dir . --runtime-env cluster/runtime-env.yaml -- python jobs/train.py --config ..."
