#!/usr/bin/env bash
# GPU benchmarks of issue #7 — run ON the GPU machine, from the repository root, by a session that has one:
#
#   here (once):  bash ../shared/device-kit/pack.sh && grep -qx '/.devkit/' .git/info/exclude || echo '/.devkit/' >> .git/info/exclude
#   device tool:  run(command="bash benchmarks/gpu.sh", carry=[".devkit"], timeout_s=600)
#   then here:    copy <files_at>/*.json to benchmarks/results/, commit with a README table
#
# One shot, ordered by what matters most; each step is its own `genre-ray bench` process with its own time limit,
# all inside a global deadline (GPU_SH_BUDGET_S, default 560 s), so a hung or failed step costs only itself, and
# a step cut by its limit keeps the phases it finished (bench writes its JSON after each phase, "partial": true):
#   train-r18     ResNet18: the same step in a bare loop (data on the device), then Ray Train (1 GPU worker,
#                 device_cache auto), same run, on 200 × 30-s clips prepared through Ray Data on every core (3-s
#                 windows every 0.25 s), 6 epochs each — the issue's training ceilings are ResNet18's; both loops with
#                 the fused optimizer and cuDNN's autotuner, and the bare loop once more inside a plain Ray task (a Ray
#                 worker process without Ray Train: which of the two costs the gap); ratios of the median epoch and
#                 of the epochs after the first
#   train-r18-again  the same once more on the prepared clips: the fourth session saw 0.938 × and 0.824 × in two
#                 runs of 3 epochs (one noisy epoch decided the median), so the ≥ 0.9 × target needs two readings
#   inference     the label job's inference stage alone (ResNet18, no Ray, no audio): host and device images vs the
#                 bare model, then all three with the actors' torch.compile (the ≥ 40,000 windows/s target; every ratio at one batch size on both sides)
#   label-r18     ResNet18 (untrained), the GPU defaults (featurize=device, decode actors, two classifier actors per
#                 GPU): end to end first (250 × 30-s mixed wav/flac/mp3/ogg at 44.1 kHz stereo, each file 24 × under
#                 other names: 6,000 files, 180,000 audio-s), then the node's decode rate without Ray and through Ray
#                 Data on the same files (the "decode-bound" ratios; tasks and decode actors), then each stage alone:
#                 inference sweep vs the bare model and the classifier actor alone on the job's calls
#   train-r18-nice0  train-r18 with Ray's workers at niceness 0 (Ray starts them at 15; the bare loop runs at 0)
#   label-r18-compile  label-r18 end to end with torch_compile (one static forward batch of 1,024): A/B vs label-r18
#   label-r18-decode-tasks  end to end with decode tasks instead of the default decode actors: A/B vs label-r18
#   label-r18-mono  label-r18's end to end and decode passes on a 22,050-Hz mono library (the third session's)
#   label-r18-calls8k  end to end with 4 × larger actor calls (call_windows 8,192: 256 segment rows): A/B
#   label-r18-half-cpu  end to end with 0.5 CPU reserved per classifier actor, so one more decode actor: A/B
#   train-r18-compile  bare loop and Ray Train both with torch.compile (the step is launch-bound on an H200)
#   label-r18-1actor   end to end with one classifier actor per GPU (the earlier default): A/B vs label-r18
#   train         homebrew (the demo's CNN): bare loop vs Ray Train on the same prepared clips
#   label-r18-4actors  end to end with four classifier actors (0.25 GPU each)
#   label         homebrew, featurize=cpu (images made by the CPU tasks): the same phases as label-r18
#   stages        decode per format (1 core), spectrogram on CPU and GPU (the 2-core box's sizes), the GPU
#                 featurizer at the label actor's call size
# Writes $OUT/<date>-<card>-<step>.json per step that finished (merged into one <date>-<card>-steps.json at the end
# when there are more than 7: the device tool returns 8 files), and $OUT/gpu-log.txt (every step's output).
# A dry run on a machine without CUDA (sizes tiny, the project's venv, no kit):
#   PATH=$PWD/.venv/bin:$PATH GPU_SH_KIT=none GPU_SH_ALLOW_CPU=1 BENCH_SCALE=quick OUT=/tmp/x bash benchmarks/gpu.sh
# (GPU_SH_STEPS="stages train": only those steps.)
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
budget=${GPU_SH_BUDGET_S:-560}
scale=${GPU_SH_TIME_SCALE:-1}  # step limits × this (a dry run on a slow CPU box)
kit=${GPU_SH_KIT:-.devkit}  # the device kit (Ray + MLflow for the GPU machine); another kit or none for a dry run
if [ -f "$kit/bootstrap.sh" ]; then source "$kit/bootstrap.sh" || exit 1; fi
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
export GENRE_RAY_HOME="${GENRE_RAY_HOME:-/tmp/genre-ray-bench}"
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
log="$OUT/gpu-log.txt"
if [ "${GPU_SH_ALLOW_CPU:-0}" != 1 ]; then
  python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: this script is for the GPU machine'" || exit 1
fi
card=$(python3 -c "import torch, re; print(re.sub(r'[^a-z0-9]+', '-', torch.cuda.get_device_name(0).lower()).strip('-') if torch.cuda.is_available() else 'cpu')")
stem="$OUT/$(date -u +%Y-%m-%d)-$card"
cpus=$(nproc)
work="$GENRE_RAY_HOME/bench/all"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >> "$log" 2>&1 || true
if [ "${BENCH_SCALE:-full}" = short ]; then  # a second, shorter call (what is left of a session's device time)
  data=(--set tracks=100 --set seconds=30 --set hop_s=0.25); epochs=(--set epochs=3 --set bare_epochs=3)
  lib=(--set tracks=125 --set seconds=30 --set repeat=8); sweep=(--set "batch_sizes=[512,1024]" --set infer_windows=8192)
  inf=(--set arch=resnet18 --set "batch_sizes=[1024]" --set windows=8192)
elif [ "${BENCH_SCALE:-full}" = quick ]; then
  data=(--set tracks=30 --set seconds=6 --set hop_s=1.5); epochs=(--set epochs=1 --set bare_epochs=1)
  lib=(--set tracks=12 --set seconds=8 --set repeat=2); sweep=(--set "batch_sizes=[16,64]" --set infer_windows=64)
  inf=(--set arch=homebrew --set "batch_sizes=[16]" --set windows=64 --set compile_batch=16)
else
  data=(--set tracks=200 --set seconds=30 --set hop_s=0.25 --set cache_read=false); epochs=(--set epochs=6 --set bare_epochs=6)
  lib=(--set tracks=250 --set seconds=30 --set repeat=24); sweep=(--set "batch_sizes=[256,512,1024,2048]" --set infer_windows=8192)
  inf=(--set arch=resnet18 --set "batch_sizes=[512,1024,2048]" --set windows=16384)
fi
first=(--set end_to_end_first=true)
e2e_only=(--set stages=false --set decode_ceiling=false)

step() {  # step NAME MAX_SECONDS BENCH_ARGS... — runs inside what is left of the budget (15 s kept for the end)
  local name=$1 max=$2 left rc t0
  shift 2
  if [ -n "${GPU_SH_STEPS:-}" ] && [[ " $GPU_SH_STEPS " != *" $name "* ]]; then return; fi  # run only these steps
  max=$((max * scale))
  left=$((budget - ($(date +%s) - start) - 15))
  if [ "$left" -lt 30 ]; then echo "== $name: skipped (budget spent)" | tee -a "$log"; return; fi
  [ "$max" -gt "$left" ] && max=$left
  t0=$(date +%s)
  echo "== $name (limit ${max}s): genre-ray bench $*" | tee -a "$log"
  timeout -k 10 "$max" python3 -m genre_ray.cli bench "$@" --set workdir="$work" --out "$stem-$name.json" \
    >> "$log" 2>&1
  rc=$?
  echo "== $name: rc=$rc in $(($(date +%s) - t0))s" | tee -a "$log"
  if [ "$rc" -ne 0 ]; then ray stop --force >> "$log" 2>&1 || true; fi  # a killed driver can leave its Ray behind
}

# order: the figures the issue's targets need first, then the A/Bs that say what to change next
step train-r18 200 train --set model=resnet18 --set num_cpus="$cpus" "${data[@]}" "${epochs[@]}"
step train-r18-again 140 train --set model=resnet18 --set num_cpus="$cpus" "${data[@]}" "${epochs[@]}"
step inference 110 inference "${inf[@]}"
step label-r18 200 label --set arch=resnet18 --set featurize=device --set num_cpus="$cpus" "${lib[@]}" "${first[@]}" "${sweep[@]}" --set compile_ab=false
step train-r18-nice0 150 train --set model=resnet18 --set worker_niceness=0 --set num_cpus="$cpus" "${data[@]}" "${epochs[@]}"
step label-r18-compile 90 label --set arch=resnet18 --set featurize=device --set torch_compile=true --set num_cpus="$cpus" "${lib[@]}" "${e2e_only[@]}"
step label-r18-decode-tasks 75 label --set arch=resnet18 --set featurize=device --set decode_workers=tasks --set num_cpus="$cpus" "${lib[@]}" "${e2e_only[@]}"
step label-r18-mono 120 label --set arch=resnet18 --set featurize=device --set library_sr=22050 --set library_channels=1 --set num_cpus="$cpus" "${lib[@]}" "${first[@]}" --set stages=false
step label-r18-calls8k 75 label --set arch=resnet18 --set featurize=device --set call_windows=8192 --set num_cpus="$cpus" "${lib[@]}" "${e2e_only[@]}"
step label-r18-half-cpu 75 label --set arch=resnet18 --set featurize=device --set actor_cpus=0.5 --set num_cpus="$cpus" "${lib[@]}" "${e2e_only[@]}"
step train-r18-compile 200 train --set model=resnet18 --set torch_compile=true --set num_cpus="$cpus" "${data[@]}" "${epochs[@]}"
step label-r18-1actor 75 label --set arch=resnet18 --set featurize=device --set num_actors=1 --set num_cpus="$cpus" "${lib[@]}" "${e2e_only[@]}"
step train 130 train --set model=homebrew --set num_cpus="$cpus" "${data[@]}" "${epochs[@]}"
step label-r18-4actors 80 label --set arch=resnet18 --set featurize=device --set num_actors=4 --set num_cpus="$cpus" "${lib[@]}" "${e2e_only[@]}"
step label 100 label --set featurize=cpu --set num_cpus="$cpus" "${lib[@]}" "${first[@]}" "${sweep[@]}"
step stages 40 all --skip prepare --skip train --skip label --skip cache --skip label-memory --skip inference
nvidia-smi >> "$log" 2>&1 || true
# the device tool returns at most 8 files: past 7 step results, merge them into one ({step: result})
python3 - "$stem" <<'PY' 2>&1 | tee -a "$log"
import glob, json, os, sys
stem = sys.argv[1]
files = sorted(glob.glob(stem + "-*.json"))
if len(files) > 7:
    merged = {os.path.basename(f)[len(os.path.basename(stem)) + 1:-5]: json.load(open(f)) for f in files}
    json.dump(merged, open(stem + "-steps.json", "w"), indent=2)
    for f in files:
        os.remove(f)
    print(f"== {len(files)} step results merged into {stem}-steps.json")
PY
echo "== done in $(($(date +%s) - start))s" | tee -a "$log"
ls -la "$OUT"
