#!/usr/bin/env bash
# Set up the environment in .venv (if needed) and run `lrsched train` with the given overrides,
# tracked in the embedded MLflow store sqlite:///mlflow.db of the directory it is started from.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/setup-env.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$here/.venv/bin/lrsched" train "$@"
