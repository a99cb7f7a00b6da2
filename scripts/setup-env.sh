#!/usr/bin/env bash
# Create .venv (if needed) and install the package with the pinned environment
# (constraints.txt: torch 2.13.0, the CPU build). Sourced by test.sh and train.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# .[dev] includes the `tasks` extra (scikit-learn, mnist1d) that `lrsched train` needs.
# compat mode puts the source tree on sys.path, so Hydra finds our hydra_plugins namespace
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]" --config-settings editable_mode=compat
