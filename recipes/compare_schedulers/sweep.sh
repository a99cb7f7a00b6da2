#!/usr/bin/env bash
# Five strategies on the default digits MLP, one Hydra multirun, every job one run of the MLflow
# experiment "compare-schedulers" in ./mlflow.db; then `lrsched compare` prints the groups table
# and writes compare-schedulers/compare.md and compare.png (every run's rate and val_acc).
#   bash recipes/compare_schedulers/sweep.sh                       # 5 epochs per job
#   bash recipes/compare_schedulers/sweep.sh trainer.max_epochs=20 # extra arguments: overrides
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v lrsched >/dev/null || PATH="$here/../../.venv/bin:$PATH"  # the repo's venv if needed
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

lrsched train -m scheduler=constant,step,cosine,onecycle,wsd \
  logger.experiment_name=compare-schedulers trainer.max_epochs=5 "$@"

lrsched compare --experiment compare-schedulers --latest --target 0.95 --baseline cosine \
  --out compare-schedulers
