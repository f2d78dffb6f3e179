#!/usr/bin/env bash
# The measurements that need a GPU, in one go, each writing under OUT as it finishes. Rerun it
# with the same OUT on a later lease to resume: a perf case whose JSON exists is skipped, and
# `benchmark run` keeps finished checkpoints and suites (an interrupted stack of seeds trains
# again from its start; a lone run continues from its resume checkpoint).
#   1. `benchmark perf` on the GPU, one case at a time (each its own JSON), the ceiling first:
#      ResNet-50 on tensors already on the device (fp32, bf16), ResNet-50 bf16 through the real
#      loader with JPEGs decoded on the device (<= 4 workers) against PIL, the decoders alone,
#      H-SPLID's step against vanilla's on ResNet-50 and LeNet-3, three LeNet-3 seeds stacked;
#   2. the published C-MNIST protocol (`--profile paper`), seeds 0-2 on the full MNIST IDX files:
#      vanilla's three seeds as one stacked model (--stack-seeds) in one process, H-SPLID's three
#      seeds (not stackable) as three processes beside it; then the leaderboard.
# Usage: scripts/gpu_checks.sh MNIST_IDX_DIR OUT
# Knobs (environment): CASES (perf cases), CASE_LIMIT and RUN_LIMIT (seconds each perf case and
# each run may take; on the limit a run is interrupted as by Ctrl-C and keeps what it finished),
# END_BY (a Unix time: the runs get what is left until 30 s before it, for a machine lent for a
# while), SEEDS (comma-separated), DEVICE (default cuda), RUN_ARGS (more `benchmark run`
# arguments, `--set ...`).
set -uo pipefail
mnist=${1:?usage: scripts/gpu_checks.sh MNIST_IDX_DIR OUT}
out=${2:?usage: scripts/gpu_checks.sh MNIST_IDX_DIR OUT}
device=${DEVICE:-cuda}
cases=${CASES:-resnet50_ceiling resnet50_training_device_decode decode_on_device train_step_hsplid_resnet50 \
train_step_vanilla train_step_hsplid train_stacked_seeds}
seeds=${SEEDS:-0,1,2}
read -r -a run_args <<< "${RUN_ARGS:-}"
mkdir -p "$out/cmnist-paper"
stamp() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$out/timeline.txt"; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; nproc; } > "$out/machine.txt" 2>&1
for case in $cases; do
  if [ -s "$out/perf-$case.json" ]; then stamp "perf $case: measured on an earlier lease"; continue; fi
  stamp "perf $case"
  timeout -k 10 "${CASE_LIMIT:-600}" benchmark perf "$case" --device "$device" --repeats 5 --warmup 1 \
      --json "$out/perf-$case.json" > "$out/perf-$case.txt" 2>&1 || stamp "perf $case ended with status $?"
done

run_limit=${RUN_LIMIT:-36000}
if [ -n "${END_BY:-}" ]; then run_limit=$((END_BY - $(date +%s) - 30)); fi
stamp "C-MNIST paper protocol, each process given $run_limit s"
paper() {  # one `benchmark run` of the protocol, interrupted (keeping what finished) at the limit
  local log=$1; shift
  OMP_NUM_THREADS=4 timeout -s INT -k 20 "$run_limit" benchmark run --profile paper --data-root "$mnist" \
      --device "$device" --out "$out/cmnist-paper" --quiet "$@" "${run_args[@]}" > "$out/$log.log" 2>&1
}
paper "run-vanilla-stacked" --method vanilla --seed "$seeds" --stack-seeds &
for seed in ${seeds//,/ }; do
  paper "run-hsplid-$seed" --method hsplid --seed "$seed" &
done
for job in $(jobs -p); do
  wait "$job" || stamp "a run ended with status $?"
done
stamp "runs ended"
benchmark report --results "$out/cmnist-paper" --out "$out/cmnist-paper/leaderboard.html" > "$out/report.txt" 2>&1
stamp "done"
