#!/usr/bin/env bash
# The measurements that need a GPU, in one go, each writing under OUT as it finishes (rerun to
# resume the C-MNIST runs: `benchmark run` skips what is done):
#   1. `benchmark perf` on CUDA: ResNet-50 training images/s in fp32 and bf16 through the real
#      loader, the engine's LeNet-3 steps, the masked attacks, the loader against serial decoding;
#   2. the published C-MNIST protocol: `--profile paper`, vanilla and H-SPLID, seeds 0-2, on the
#      full MNIST IDX files, then its leaderboard.
# Usage: scripts/gpu_checks.sh MNIST_IDX_DIR OUT [CASES...]   (CASES: perf cases; default all)
set -euo pipefail
mnist=${1:?usage: scripts/gpu_checks.sh MNIST_IDX_DIR OUT [CASES...]}
out=${2:?usage: scripts/gpu_checks.sh MNIST_IDX_DIR OUT [CASES...]}
shift 2
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
benchmark perf "$@" --device cuda --repeats 5 --warmup 1 --json "$out/perf.json" | tee "$out/perf.txt"
benchmark run --method vanilla,hsplid --profile paper --seed 0,1,2 --data-root "$mnist" --device cuda \
    --out "$out/cmnist-paper" 2>&1 | tee "$out/cmnist-paper.log"
benchmark report --results "$out/cmnist-paper" --out "$out/cmnist-paper/leaderboard.html"
