#!/usr/bin/env bash
# GPU benchmarks of issue #7 — run ON the GPU machine, from the repository root, by a session that has one:
#
#   here (once):  bash ../shared/device-kit/pack.sh && grep -qx '/.devkit/' .git/info/exclude || echo '/.devkit/' >> .git/info/exclude
#   device tool:  run(command="bash benchmarks/gpu.sh", carry=[".devkit"], timeout_s=540)
#   then here:    cp <files_at>/*.json benchmarks/results/ && git commit -m "bench: <card> results" -- benchmarks/results
#
# Writes $OUT/<date>-<card>.json (`genre-ray bench all`: decode, spectrogram on CPU and GPU, prepare, train
# homebrew Ray Train vs bare loop, cache, label end-to-end + stages + efficiency) and $OUT/<date>-<card>-resnet18.json
# (train resnet18) and -label-device.json (label with featurize=device: spectrograms on the GPU actor).
# Sized to finish in about 6-8 minutes on one H100 with 16 cores (BENCH_SCALE=quick for a 2-minute check).
# label-memory is skipped (it measures the process tree of separate `genre-ray label` processes; run it alone).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .devkit/bootstrap.sh ]; then source .devkit/bootstrap.sh; fi  # Ray + MLflow for the GPU machine
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
export GENRE_RAY_HOME="${GENRE_RAY_HOME:-/tmp/genre-ray-bench}"
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: this script is for the GPU machine'"
card=$(python3 -c "import torch, re; print(re.sub(r'[^a-z0-9]+', '-', torch.cuda.get_device_name(0).lower()).strip('-'))")
stem="$OUT/$(date -u +%Y-%m-%d)-$card"
cpus=$(nproc)
if [ "${BENCH_SCALE:-full}" = quick ]; then
  all=(--quick); train=(--quick); label=(--quick)
else
  # bigger than the CPU sizes: enough windows that a GPU epoch / inference pass is not all start-up
  train=(--set tracks=200 --set seconds=30 --set epochs=3 --set bare_epochs=3)
  label=(--set tracks=200 --set seconds=30)
  all=("${train[@]}" --set "batch_sizes=[64,128,256,512,1024,2048]" --set infer_windows=16384)
fi
set -x
timeout 420 python3 -m genre_ray.cli bench all --skip label-memory --set num_cpus="$cpus" "${all[@]}" \
  --out "$stem.json" > /dev/null
timeout 150 python3 -m genre_ray.cli bench train --set model=resnet18 --set num_cpus="$cpus" "${train[@]}" \
  --set workdir="$GENRE_RAY_HOME/bench/all" --out "$stem-resnet18.json" > /dev/null || true
timeout 150 python3 -m genre_ray.cli bench label --set featurize=device --set num_cpus="$cpus" --set stages=false \
  "${label[@]}" --set workdir="$GENRE_RAY_HOME/bench/all" --out "$stem-label-device.json" > /dev/null || true
ls -la "$OUT"
