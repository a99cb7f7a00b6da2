#!/usr/bin/env bash
# lrsched train on two machines with torchrun: start this same script on both, with the same
# MASTER_ADDR (a host name or address of one of them that the other can reach):
#   node-a$ MASTER_ADDR=node-a bash recipes/torchrun_two_nodes/train.sh
#   node-b$ MASTER_ADDR=node-a bash recipes/torchrun_two_nodes/train.sh
# Extra arguments are Hydra overrides (the same on both machines): ... train.sh optimizer.lr=0.05
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
command -v torchrun >/dev/null || PATH="$repo/.venv/bin:$PATH"  # the repo's venv if needed
: "${MASTER_ADDR:?set MASTER_ADDR to the host of the rendezvous (one of the two machines)}"
MASTER_PORT=${MASTER_PORT:-29500}
# One process per GPU; NPROC_PER_NODE=2 ACCELERATOR=cpu on machines without GPUs.
NPROC_PER_NODE=${NPROC_PER_NODE:-$(nvidia-smi --list-gpus 2>/dev/null | wc -l)}
ACCELERATOR=${ACCELERATOR:-gpu}
# The same id on both machines, a new one for each training (or the rendezvous mixes them).
RUN_ID=${RUN_ID:-lrsched-two-nodes}
if [ "$NPROC_PER_NODE" -lt 1 ]; then
  echo "no GPU found: set NPROC_PER_NODE (and ACCELERATOR=cpu for CPU processes)" >&2
  exit 2
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Only global rank 0 writes to MLflow: a tracking server, or SQLite on a disk both machines share.
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}
# The training's files (checkpoints/, hydra/), on a disk both machines share: after a stop
# (SIGTERM: checkpoints/preempted.ckpt) or a crash, the same command resumes from the newest
# checkpoint there (ckpt_path=auto).
RUN_DIR=${RUN_DIR:-$PWD/runs/$RUN_ID}

torchrun \
  --nnodes=2 \
  --nproc-per-node=$NPROC_PER_NODE \
  --rdzv-backend=c10d \
  --rdzv-endpoint=$MASTER_ADDR:$MASTER_PORT \
  --rdzv-id=$RUN_ID \
  -m lightning_lrsched.app.train \
  experiment=mnist1d_cnn \
  trainer=ddp \
  trainer.num_nodes=2 \
  trainer.devices=$NPROC_PER_NODE \
  trainer.accelerator=$ACCELERATOR \
  trainer.default_root_dir=$RUN_DIR \
  +callbacks.checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint \
  +callbacks.checkpoint.dirpath=$RUN_DIR/checkpoints \
  +callbacks.checkpoint.save_last=true \
  ckpt_path=auto \
  hydra.run.dir=$RUN_DIR/hydra \
  "$@"
