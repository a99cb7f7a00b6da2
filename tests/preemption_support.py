"""Sending a preemption signal to the training process at a chosen point (tests only).

``SignalAt`` is a callback: with ``point`` one of :data:`POINTS` it sends ``signal`` to its
own process once, the first time training reaches that point at or after optimizer step
``step``. ``lrsched train`` takes it as
``+callbacks.signal_at._target_=preemption_support.SignalAt`` with ``tests/`` on
``PYTHONPATH``; ``rank`` limits it to one global rank (the others learn it from the agreement).
"""

from __future__ import annotations

import os
import signal

import lightning.pytorch as pl

POINTS = (
    "mid-epoch",  # the end of a training batch with no validation after it
    "last-batch",  # the end of an epoch's last training batch (its validation comes next)
    "before-validation",  # the start of the epoch-end validation
    "during-validation",  # after a validation batch
    "during-checkpoint",  # while a checkpoint is being written (a callback's on_save_checkpoint)
)


class SignalAt(pl.Callback):
    def __init__(
        self, point: str, step: int = 0, signal: str = "SIGUSR1", rank: int | None = None
    ) -> None:
        if point not in POINTS:
            raise ValueError(f"point {point!r} is not one of {POINTS}")
        self.point, self.step, self.signal, self.rank = point, step, signal, rank
        self.sent_at: int | None = None

    def _send(self, trainer: pl.Trainer, point: str) -> None:
        if self.sent_at is not None or point != self.point or trainer.global_step < self.step:
            return
        if trainer.sanity_checking or (self.rank is not None and trainer.global_rank != self.rank):
            return
        self.sent_at = trainer.global_step
        os.kill(os.getpid(), signal.Signals[self.signal])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        last = batch_idx + 1 >= trainer.num_training_batches
        self._send(trainer, "last-batch" if last else "mid-epoch")

    def on_validation_start(self, trainer, pl_module):
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._send(trainer, "before-validation")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args):
        self._send(trainer, "during-validation")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self._send(trainer, "during-checkpoint")

    def state_dict(self):  # a resumed run signals again only if asked to
        return {}


class SignalOnce(SignalAt):
    """``SignalAt`` that signals in one start of a job only: the first to get there writes
    ``marker``, so a restarted job can run the very same command."""

    def __init__(self, marker: str, **options) -> None:
        super().__init__(**options)
        self.marker = marker

    def _send(self, trainer: pl.Trainer, point: str) -> None:
        from pathlib import Path

        if not Path(self.marker).exists():
            before = self.sent_at
            super()._send(trainer, point)
            if self.sent_at is not None and before is None:
                Path(self.marker).write_text(f"{point} {self.signal} {self.sent_at}")


class RankRates(pl.Callback):
    """Appends every optimizer step's rates on this rank to ``<out>/rank<global rank>.jsonl``
    (a restarted job appends to the same file), with the horizon Lightning estimates and a
    fingerprint of the step's batch (which samples it trained on)."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.batch = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        x, y = batch
        self.batch = [float(x.double().sum()), int(y.sum()), len(y)]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        import json
        from pathlib import Path

        path = Path(self.out) / f"rank{trainer.global_rank}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        row = {
            "step": trainer.global_step,
            "lrs": [group["lr"] for group in optimizer.param_groups],
            "world_size": trainer.world_size,
            "estimated": trainer.estimated_stepping_batches,
            "batch": self.batch,
        }
        with path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")


class WaitFor(pl.Callback):
    """Rank zero waits, after optimizer step ``step``, until ``marker`` exists (at most
    ``timeout`` s; the other ranks wait for it in the next all-reduce): the test does something
    while the job is known to be training, then lets it go on."""

    def __init__(self, marker: str, step: int, timeout: float = 180.0) -> None:
        self.marker, self.step, self.timeout = marker, step, timeout

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        import time
        from pathlib import Path

        if not trainer.is_global_zero or trainer.global_step != self.step:
            return
        deadline = time.monotonic() + self.timeout
        while not Path(self.marker).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
