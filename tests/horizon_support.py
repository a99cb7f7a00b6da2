"""A callback for horizon tests: what each rank of a real run actually did, written to a file.

Importable by ``_target_`` from the app's config (``+callbacks.steps._target_=horizon_support.
StepRecorder``) in this test process and in subprocesses that have ``tests/`` on PYTHONPATH.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback


class StepRecorder(Callback):
    """At the end of training, writes ``rank<global rank>.json`` into ``out``: the optimizer
    steps this rank ran (``global_step``), Lightning's own estimate inside this fit and the
    number of processes."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.estimated: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.estimated = trainer.estimated_stepping_batches

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "estimated": self.estimated,
            "batches_per_epoch": trainer.num_training_batches,
        }
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
