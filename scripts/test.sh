#!/usr/bin/env bash
# Set up the pinned dev environment in .venv (if needed) and run lint + the whole test suite.
# This is the one command the README names and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# compat mode puts the source tree on sys.path, so Hydra finds our hydra_plugins namespace
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]" --config-settings editable_mode=compat
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# One torch thread per process: the machine has 2 cores and the tests are tiny.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/python -m pytest -q "$@"
