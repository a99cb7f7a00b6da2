#!/usr/bin/env bash
# The GPU claims, checked in a few minutes on a machine with a CUDA GPU (run from the repo root):
#   1. our per-step code (callbacks, schedule step, tracker) never syncs with the GPU:
#      benchmarks/gpu_sync_check.py, under torch.cuda.set_sync_debug_mode("error");
#   2. the logging overhead on the GPU, StepMetrics against a loop that logs nothing:
#      benchmarks/logging_overhead.py --accelerator gpu --quick;
#   3. lrsched train trainer=gpu (bf16-mixed) runs a short training and tracks it.
# The venv is the one scripts/setup-env.sh makes; on a GPU machine install a CUDA build of torch
# into it first (the pinned one here is the CPU build): pip install torch --index-url <CUDA index>.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
case "$PY" in /*) ;; *) PY="$PWD/$PY" ;; esac  # absolute: step 3 runs in another directory
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
"$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
"$PY" benchmarks/gpu_sync_check.py --accelerator gpu
"$PY" benchmarks/logging_overhead.py --quick --accelerator gpu
work=$(mktemp -d)
(cd "$work" && "$PY" -m lightning_lrsched train trainer=gpu trainer.devices=1 \
  trainer.max_epochs=2 hydra.run.dir="$work/out")
echo "gpu-check: all passed"
