#!/usr/bin/env bash
# The measurements that need a GPU, in one go, each writing under OUT as it finishes (rerun to
# resume the C-MNIST runs: `benchmark run` continues from resume checkpoints and skips what is done):
#   1. `benchmark perf` on the GPU, one case at a time (each its own JSON): ResNet-50 training
#      images/s in fp32 and bf16 through the real loader, the loader against serial decoding,
#      the engine's LeNet-3 steps, the masked PGD;
#   2. the published C-MNIST protocol: `--profile paper`, vanilla and H-SPLID, seeds 0-2, on the
#      full MNIST IDX files, one process per run, all at once (LeNet-3 leaves most of a GPU idle),
#      then its leaderboard.
# Usage: scripts/gpu_checks.sh MNIST_IDX_DIR OUT
# Knobs (environment): CASES (perf cases), CASE_LIMIT and RUN_LIMIT (seconds each perf case and
# each run may take; on the limit a run is interrupted as by Ctrl-C and keeps what it finished),
# END_BY (a Unix time: the runs get what is left until 30 s before it, for a machine lent for a
# while), SEEDS, DEVICE (default cuda), RUN_ARGS (more `benchmark run` arguments, `--set ...`).
set -uo pipefail
mnist=${1:?usage: scripts/gpu_checks.sh MNIST_IDX_DIR OUT}
out=${2:?usage: scripts/gpu_checks.sh MNIST_IDX_DIR OUT}
device=${DEVICE:-cuda}
cases=${CASES:-resnet50_ceiling resnet50_training data_pipeline train_step_vanilla train_step_hsplid pgd_masked}
read -r -a run_args <<< "${RUN_ARGS:-}"
mkdir -p "$out/cmnist-paper"
stamp() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$out/timeline.txt"; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; nproc; } > "$out/machine.txt" 2>&1
for case in $cases; do
  stamp "perf $case"
  timeout -k 10 "${CASE_LIMIT:-600}" benchmark perf "$case" --device "$device" --repeats 5 --warmup 1 \
      --json "$out/perf-$case.json" > "$out/perf-$case.txt" 2>&1 || stamp "perf $case ended with status $?"
done

run_limit=${RUN_LIMIT:-36000}
if [ -n "${END_BY:-}" ]; then run_limit=$((END_BY - $(date +%s) - 30)); fi
stamp "C-MNIST paper protocol, each run given $run_limit s"
for method in vanilla hsplid; do
  for seed in ${SEEDS:-0 1 2}; do
    OMP_NUM_THREADS=2 timeout -s INT -k 20 "$run_limit" benchmark run --method "$method" --profile paper \
        --seed "$seed" --data-root "$mnist" --device "$device" --out "$out/cmnist-paper" "${run_args[@]}" \
        > "$out/run-$method-$seed.log" 2>&1 &
  done
done
for job in $(jobs -p); do
  wait "$job" || stamp "a run ended with status $?"
done
stamp "runs ended"
benchmark report --results "$out/cmnist-paper" --out "$out/cmnist-paper/leaderboard.html" > "$out/report.txt" 2>&1
stamp "done"
