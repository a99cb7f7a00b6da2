#!/usr/bin/env bash
# The mnist1d_cnn experiment: the MNIST-1D reference 1-D ConvNet (32 channels), AdamW, one-cycle
# peaking at optimizer.lr=0.03 (scheduler=onecycle_auto), batch 100, 30 epochs (1080 steps),
# tracked in ./mlflow.db. MNIST-1D is generated offline on first use and cached in
# ${XDG_CACHE_HOME:-~/.cache}/lightning_lrsched.
#   bash recipes/mnist1d_onecycle/run.sh                           # as is
#   bash recipes/mnist1d_onecycle/run.sh optimizer.lr=0.01         # extra arguments: overrides
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
command -v lrsched >/dev/null || PATH="$repo/.venv/bin:$PATH"  # the repo's venv if not installed
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

lrsched train experiment=mnist1d_cnn "$@"
