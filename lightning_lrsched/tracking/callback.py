"""``RunTracking``: the callback that goes with :class:`MLflowTracker`.

- saves the run id in checkpoints and, when training resumes from one, continues that run;
- gives every DDP rank the run id (rank zero creates the run and writes; the others know it);
- writes the queued points at the end of every epoch and on exceptions;
- tags the run with its strategy (``lrsched.strategy``), logs the planned schedule as a PNG
  before the first step and the realised rate curve (read back from the store) when fitting
  ends.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from .spool import is_local_id
from .tracker import MLflowTracker


def find_tracker(trainer: pl.Trainer) -> MLflowTracker | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, MLflowTracker)), None)


def saved_run_id(ckpt_path: str) -> str | None:
    """The run id a checkpoint was written under (None if it has none)."""
    from lightning.fabric.plugins import TorchCheckpointIO

    # Lightning's public checkpoint reader (local paths and fsspec URLs, as Trainer.fit reads)
    checkpoint = TorchCheckpointIO().load_checkpoint(
        ckpt_path, map_location="cpu", weights_only=False
    )
    state = (checkpoint.get("callbacks") or {}).get(RunTracking.STATE_KEY) or {}
    return state.get("run_id")


class RunTracking(Callback):
    """Run continuity, rank agreement, flushing and schedule plots for ``MLflowTracker``."""

    STATE_KEY = "RunTracking"

    def __init__(self, *, plots: bool = True) -> None:
        self.plots = plots
        self._tracker: MLflowTracker | None = None
        self._sampler: Any = None  # this node's system-metrics sampler

    @property
    def state_key(self) -> str:
        return self.STATE_KEY

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._tracker = find_tracker(trainer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resuming from a checkpoint: continue the run it was written under."""
        run_id = state_dict.get("run_id")
        if self._tracker is not None and run_id and rank_zero_only.rank == 0:
            self._tracker.resume(run_id)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after the checkpoint is restored, before Lightning logs the hyperparameters
        tracker = self._tracker
        if tracker is None:
            return
        run_id = tracker.run_id if trainer.is_global_zero else None
        tracker.adopt(trainer.strategy.broadcast(run_id, src=0))
        if trainer.is_global_zero:
            tracker.set_tags({"lrsched.world_size": trainer.world_size})

    def state_dict(self) -> dict[str, Any]:
        if self._tracker is None or self._tracker.version is None:
            return {}
        return {"run_id": self._tracker.version}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_sampler(trainer)
        if self._tracker is None or not trainer.is_global_zero:
            return
        from ..lightning.lr_logger import strategy_of
        from ..lightning.scheduling import attached_schedules

        schedules = attached_schedules(trainer)
        if schedules:  # the run's strategy, searchable in the MLflow UI, whatever the entry point
            names = dict.fromkeys(strategy_of(s.description) for s in schedules)
            self._tracker.set_tags({"lrsched.strategy": ",".join(names)})
        if not self.plots:
            return
        from ..plotting import planned_schedule_figure

        total = int(trainer.estimated_stepping_batches)
        figure = planned_schedule_figure(schedules, total)
        if figure is not None:
            self._tracker.log_figure(figure, "schedule/planned.png")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._tracker is not None:
            self._tracker.flush(timeout=0)  # start writing now; never wait on the store here

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._stop_sampler()
        if self._tracker is not None:
            self._tracker.flush(timeout=60)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_sampler()

    def _start_sampler(self, trainer: pl.Trainer) -> None:
        """One system-metrics sampler per node (local rank zero), when the tracker asks."""
        tracker = self._tracker
        if tracker is None or not tracker.system_metrics or trainer.local_rank != 0:
            return
        run_id = tracker.run_id if trainer.is_global_zero else tracker.version
        if tracker.unsent is not None or run_id is None or is_local_id(run_id):
            return  # the store does not answer yet: no sampler can write there
        from .system_metrics import start_node_sampler

        self._sampler = start_node_sampler(
            tracker.tracking_uri, run_id, trainer.node_rank, tracker.system_metrics_interval
        )

    def _stop_sampler(self) -> None:
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            from .system_metrics import stop_node_sampler

            stop_node_sampler(sampler)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        tracker = self._tracker
        if tracker is None or not trainer.is_global_zero or not self.plots:
            return
        from ..plotting import realised_rates_figure

        tracker.flush(timeout=120)
        if tracker.unsent is not None:  # the curve is read back from the store: none yet
            return
        figure = realised_rates_figure(tracker.experiment, tracker.run_id)
        if figure is not None:
            tracker.log_figure(figure, "schedule/realised.png")
