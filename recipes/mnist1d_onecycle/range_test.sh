#!/usr/bin/env bash
# The range test choosing one-cycle's peak on MNIST-1D: `scheduler.max_lr=auto` sweeps the rate
# over 100 training steps when fitting starts (everything put back afterwards), takes the
# suggestion as max_lr, then trains the mnist1d_cnn experiment (30 epochs, 1080 steps) with it.
# `minimum` (the rate of the lowest loss / 10) suits one-cycle's peak; `valley` is the cautious
# default for a constant or base rate. Tracked in ./mlflow.db (suggestions, sweep, plot).
#   bash recipes/mnist1d_onecycle/range_test.sh                                 # as measured
#   bash recipes/mnist1d_onecycle/range_test.sh lr_finder.suggestion=valley     # the cautious one
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
command -v lrsched >/dev/null || PATH="$repo/.venv/bin:$PATH"  # the repo's venv if not installed
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

lrsched train experiment=mnist1d_cnn scheduler.max_lr=auto lr_finder.suggestion=minimum "$@"
