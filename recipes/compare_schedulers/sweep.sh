#!/usr/bin/env bash
# Five strategies on the default digits MLP, one Hydra multirun, every job one run of the MLflow
# experiment "compare-schedulers" in ./mlflow.db; then compare.py prints the table (best
# val_acc first) and draws every run's learning rate on compare_schedulers.png.
#   bash recipes/compare_schedulers/sweep.sh                       # 5 epochs per job
#   bash recipes/compare_schedulers/sweep.sh trainer.max_epochs=20 # extra arguments: overrides
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v lrsched >/dev/null || PATH="$here/../../.venv/bin:$PATH"  # the repo's venv if needed
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

lrsched train -m scheduler=constant,step,cosine,onecycle,wsd \
  logger.experiment_name=compare-schedulers trainer.max_epochs=5 "$@"

"$(dirname "$(command -v lrsched)")/python" "$here/compare.py" --experiment compare-schedulers --latest \
  --out compare_schedulers.png
