"""Training in a subprocess for ``tests/test_tracking.py``: MLflowTracker + RunTracking + LRLogger.

    python tests/tracking_script.py OUT_DIR CONFIG_JSON

``CONFIG_JSON`` keys: ``mode`` ("signal"), ``uri`` (the store), ``step_sleep`` (seconds slept in
every training step) and ``marker_step``.

- "signal": one process trains (practically) forever. After every optimizer step it appends
  ``"<step> <unix time>"`` to ``OUT_DIR/steps.txt`` (one ``write`` per line, so a SIGKILL loses
  nothing of it) and, once ``marker_step`` is done, creates ``OUT_DIR/marker``: the test then
  sends a signal. ``OUT_DIR/ended.txt`` says how ``fit`` ended, if it did.

(Tracking under DDP: the tracked case of ``tests/ddp_script.py``.)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lightning_support import TinyModule

from lightning_lrsched.callbacks import LRLogger
from lightning_lrsched.tracking import MLflowTracker, RunTracking

torch.set_num_threads(1)

# Two named param groups: the rates are logged as lr/SGD/head and lr/SGD/default.
OPTIMIZER = {
    "name": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "param_groups": [{"name": "head", "params": r"^net\.2\.", "lr": 0.02}],
}
COSINE = {"name": "cosine", "warmup": "25%"}


class TrackedModule(TinyModule):
    """``TinyModule`` that saves its hyperparameters (Lightning logs them to the tracker), logs
    ``train_loss_step``/``train_loss_epoch``, and can sleep in, or fail at, a training step."""

    def __init__(
        self,
        scheduler=None,
        optimizer=None,
        n: int = 64,
        batch_size: int = 8,
        step_sleep: float = 0.0,
        fail_at: int | None = None,
    ) -> None:
        super().__init__(scheduler=scheduler, optimizer=optimizer, n=n, batch_size=batch_size)
        self.step_sleep = step_sleep
        self.fail_at = fail_at
        self.save_hyperparameters(ignore=["step_sleep", "fail_at"])

    def training_step(self, batch, batch_idx):
        if self.fail_at is not None and self.trainer.global_step == self.fail_at:
            raise RuntimeError(f"planned failure at step {self.fail_at}")
        if self.step_sleep:
            time.sleep(self.step_sleep)
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss


class StepReporter(pl.Callback):
    """Appends every finished optimizer step (and the time) to a file; touches a marker file
    once ``marker_step`` is done."""

    def __init__(self, out: Path, marker_step: int) -> None:
        self.fd = os.open(out / "steps.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.marker = out / "marker"
        self.marker_step = marker_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step - 1  # the optimizer step this batch took
        os.write(self.fd, f"{step} {time.time():.6f}\n".encode())
        if step == self.marker_step:
            self.marker.touch()


def run_signal(out: Path, config: dict) -> None:
    tracker = MLflowTracker(experiment_name="signals", tracking_uri=config["uri"])
    module = TrackedModule(optimizer=OPTIMIZER, n=256, step_sleep=config["step_sleep"])
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=100_000,
        logger=tracker,
        log_every_n_steps=1,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=out,
        callbacks=[
            RunTracking(plots=False),
            LRLogger(),
            StepReporter(out, config["marker_step"]),
        ],
    )
    ended = "fit returned"
    try:
        trainer.fit(module)
    except BaseException as error:
        ended = f"{type(error).__name__}: {error}"
        raise
    finally:
        (out / "ended.txt").write_text(ended)


def main() -> None:
    out = Path(sys.argv[1])
    config = json.loads(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    run_signal(out, config)


if __name__ == "__main__":
    main()
