#!/usr/bin/env bash
# The default experiment (digits_mlp): an MLP on scikit-learn's 8x8 digits, AdamW lr 0.01,
# warmup_cosine (5% linear warmup, then cosine to 0), 10 epochs on one CPU process, tracked in
# ./mlflow.db of the directory this is started from.
#   bash recipes/digits_quickstart/run.sh                          # as is
#   bash recipes/digits_quickstart/run.sh trainer.max_epochs=20    # extra arguments: overrides
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
command -v lrsched >/dev/null || PATH="$repo/.venv/bin:$PATH"  # the repo's venv if not installed
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

lrsched train "$@"
