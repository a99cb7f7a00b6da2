#!/usr/bin/env bash
# Create .venv (if needed) and install the package with the pinned environment
# (constraints.txt: torch 2.13.0, the CPU build). Sourced by test.sh and train.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# .[dev] includes the `tasks` extra (scikit-learn, mnist1d) that `lrsched train` needs.
# compat mode puts the source tree on sys.path, so Hydra finds our hydra_plugins namespace.
EDITABLE=(-c constraints.txt -e ".[dev]" --config-settings editable_mode=compat)
# uv installs the ~140 pinned packages in seconds where pip takes over two minutes (measured on a
# clean clone, 2 cores). uv does not read pip's configuration, so it is pointed at the folder of
# local wheels that holds the CPU build of torch; without it torch would be the multi-GB CUDA build.
WHEELS=()
if [ -d /opt/wheels ]; then
  WHEELS=(--find-links /opt/wheels)
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install -q uv || true
fi
# uv writes no .pyc files at install (pip does): the first import of each module writes them,
# unless PYTHONDONTWRITEBYTECODE is set; scripts/test.sh unsets it for that reason.
# timm is the tests' reference for cosine restarts and rate noise. It is installed without its
# dependencies (its package requires torchvision, which must never be installed); the tests
# load only its two scheduler files, which need torch and numpy (tests/timm_reference.py).
REFERENCE_ONLY=(-c constraints.txt --no-deps timm)
# Hugging Face transformers is the tests' reference for the HF schedules. It goes into
# .venv/reference, off the interpreter's path: installed beside torchmetrics it is imported by
# every `import lightning` (torchmetrics' BERTScore checks for it), 13.3 s -> 11.5 s of start-up
# per process measured here, and the suite starts about a hundred. The tests put the folder on
# their own path (tests/conftest.py). The list is what transformers needs beyond this package's
# own environment (constraints.txt pins each).
REFERENCE_DIR=.venv/reference
REFERENCE=(-c constraints.txt --no-deps --target "$REFERENCE_DIR" transformers tokenizers
           huggingface_hub hf-xet httpx2 httpcore2 regex safetensors shellingham truststore typer)
if [ -x .venv/bin/uv ] &&
  .venv/bin/uv pip install -q --python .venv/bin/python "${WHEELS[@]}" "${EDITABLE[@]}" &&
  .venv/bin/uv pip install -q --python .venv/bin/python "${WHEELS[@]}" "${REFERENCE_ONLY[@]}" &&
  .venv/bin/uv pip install -q --python .venv/bin/python "${WHEELS[@]}" "${REFERENCE[@]}"; then
  exit 0
fi
echo "setup-env: uv unavailable or failed; installing with pip" >&2
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "${EDITABLE[@]}"
.venv/bin/python -m pip install -q "${REFERENCE_ONLY[@]}"
.venv/bin/python -m pip install -q --upgrade "${REFERENCE[@]}"
