#!/usr/bin/env bash
# Set up the pinned dev environment in .venv (if needed) and run lint + the whole test suite.
# This is the one command the README names and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# One torch thread per process: the machine has 2 cores and the tests are tiny.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# The suite starts ~100 Python processes: each would compile torch, Lightning and MLflow again
# without the .pyc files the first import writes (CI sets this variable; imports measured 2.5x
# slower without them, and compiling every installed package up front costs more).
unset PYTHONDONTWRITEBYTECODE
# Two workers: measured faster than one, and than work stealing with the slow tests spread over
# both workers (which overloads the 2 cores with DDP processes). loadgroup: the tests that share
# an expensive fixture carry one xdist_group and run on one worker, so it is built once
# (tests/test_xdist_groups.py checks that grouping works with the pinned pytest).
.venv/bin/python -m pytest -q -n 2 --dist loadgroup --durations=15 "$@"
