#!/usr/bin/env bash
# An MLflow tracking server for genre-ray jobs; point every job at it with MLFLOW_TRACKING_URI.
#
#   One box (sqlite + a local artifact folder; default):
#     cluster/mlflow-server.sh [DIR]                  # DIR default: $GENRE_RAY_HOME/server, else genre-ray-runs/server in this checkout
#     → http://127.0.0.1:5000  (DIR/mlflow.db, DIR/mlartifacts)
#
#   A team (PostgreSQL for runs and the model registry, S3 or MinIO for artifacts):
#     pip install psycopg2-binary boto3               # on the server host only
#     MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:PASSWORD@db.internal:5432/mlflow \
#     MLFLOW_ARTIFACTS_DESTINATION=s3://my-bucket/mlflow \
#     MLFLOW_S3_ENDPOINT_URL=http://minio.internal:9000   `# MinIO only; AWS_ACCESS_KEY_ID/SECRET as usual` \
#     MLFLOW_HOST=0.0.0.0 MLFLOW_ALLOWED_HOSTS=mlflow.internal,10.* \
#     cluster/mlflow-server.sh
#
# Environment: MLFLOW_HOST (default 127.0.0.1 — this box only), MLFLOW_PORT (5000), MLFLOW_WORKERS (2),
# MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION, MLFLOW_ALLOWED_HOSTS (needed when clients use a
# name or public address for the server; MLflow accepts localhost and private IPs by default).
#
# The server proxies artifacts (--serve-artifacts): jobs upload models and plots over HTTP and need no S3
# credentials or shared disk of their own. The server runs in the foreground (exec): stop it with Ctrl-C, or
# kill its process group when it was started in the background (setsid …; kill -- -PGID).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-${GENRE_RAY_HOME:-$here/genre-ray-runs}/server}"
host="${MLFLOW_HOST:-127.0.0.1}"
port="${MLFLOW_PORT:-5000}"

if [[ -z "${MLFLOW_BACKEND_STORE_URI:-}" || -z "${MLFLOW_ARTIFACTS_DESTINATION:-}" ]]; then
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
fi
backend="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$dir/mlflow.db}"
artifacts="${MLFLOW_ARTIFACTS_DESTINATION:-$dir/mlartifacts}"

mlflow_bin="mlflow"
if [[ -x "$here/.venv/bin/mlflow" ]]; then mlflow_bin="$here/.venv/bin/mlflow"; fi

args=(server --host "$host" --port "$port" --workers "${MLFLOW_WORKERS:-2}"
      --backend-store-uri "$backend" --serve-artifacts --artifacts-destination "$artifacts")
if [[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]]; then args+=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS"); fi

# background jobs of the MLflow server are not used by genre-ray; off, it starts in seconds
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
shown="$(printf '%s' "$backend" | sed -E 's#//[^@/]*@#//***@#')"   # never print a password
echo "MLflow tracking server on http://$host:$port  (runs: $shown, artifacts: $artifacts)" >&2
echo "  jobs:  export MLFLOW_TRACKING_URI=http://$host:$port   (or env_vars in cluster/runtime-env.yaml)" >&2
exec "$mlflow_bin" "${args[@]}"
