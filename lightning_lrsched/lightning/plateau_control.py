"""Feeding plateau schedules their monitored metric, reduced across ranks, while fitting only."""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from ..adapter import ScheduleLR
from ..errors import ConfigError

MOMENTS = ("validation", "train_epoch")


def feeds_now(trainer: pl.Trainer, scheduler: ScheduleLR | None, moment: str) -> bool:
    """Whether ``scheduler`` takes a metric at this ``moment`` (``validation``/``train_epoch``).

    Only while fitting: ``trainer.validate()`` or ``test()`` after ``fit()`` (and the sanity
    check) runs the same validation hooks, but its metrics are no training progress and must
    not reduce the rate of a later fit or resume.

    A monitor logged per training step (``self.log("train_loss", ..., on_step=True,
    on_epoch=True)``) holds the epoch's *last batch* when validation ends, inside the epoch:
    with ``check_on: validation`` such a metric is read at the end of the training epoch
    instead, where it is the epoch's mean.
    """
    if scheduler is None or trainer.sanity_checking:
        return False
    if trainer.state.fn != TrainerFn.FITTING:
        return False
    controller = scheduler.controller
    if controller is None:
        return False
    if controller.check_on == "validation" and _logged_per_step(trainer, controller.monitor):
        return moment == "train_epoch"
    return controller.check_on == moment


def _logged_per_step(trainer: pl.Trainer, monitor: str) -> bool:
    """Whether ``monitor`` is a metric logged on every step and over the epoch (Lightning then
    also shows it as ``<monitor>_step`` and, once an epoch ended, ``<monitor>_epoch``)."""
    metrics = trainer.callback_metrics
    return f"{monitor}_step" in metrics or f"{monitor}_epoch" in metrics


def feed(trainer: pl.Trainer, scheduler: ScheduleLR) -> None:
    """Report the monitored metric, averaged over all processes, to a plateau schedule.

    Every rank calls this at the same moment (it is a collective under DDP): the mean makes every
    rank take the same decision even when each rank's own metric differs. A monitor that is not
    logged is an error naming the metrics that are (``strict=false``: a warning, no change).
    """
    controller = scheduler.controller
    assert controller is not None
    metrics = trainer.callback_metrics
    if controller.monitor not in metrics:
        logged = ", ".join(sorted(metrics)) or "none yet"
        error = ConfigError(
            "scheduler.monitor",
            controller.monitor,
            f"is not logged; the logged metrics are: {logged}",
        )
        if controller.strict:
            raise error
        warnings.warn(f"{error} (strict=false: the rate is left unchanged)", stacklevel=2)
        return
    value = torch.as_tensor(
        metrics[controller.monitor], dtype=torch.float64, device=trainer.strategy.root_device
    )
    value = trainer.strategy.reduce(value.detach().clone(), reduce_op="mean")
    scheduler.observe(float(value))


def lightning_stepped_plateaus(trainer: pl.Trainer) -> list[ScheduleLR]:
    """Plateau schedules that ``configure_optimizers`` returned and Lightning steps per step.

    Configs with ``reduce_on_plateau=True`` are left out: Lightning feeds those itself.
    """
    return [
        config.scheduler
        for config in trainer.lr_scheduler_configs
        if isinstance(config.scheduler, ScheduleLR)
        and config.scheduler.is_plateau
        and not config.reduce_on_plateau
    ]


class PlateauControl(Callback):
    """Feeds every plateau schedule that ``configure_optimizers`` returned (the helper's, or a
    ``build_scheduler`` plateau in Lightning's dict with ``reduce_on_plateau=False``) at the end
    of each validation (``check_on=train_epoch``: each training epoch), during ``fit`` only.

    It holds no schedule and no state: it reads the Trainer's scheduler list at every feed, so
    one instance serves every fit of a Trainer. The helper adds one, just before the checkpoint
    callbacks, when the Trainer has none; put it in ``Trainer(callbacks=...)`` or return it from
    ``LightningModule.configure_callbacks`` yourself to place it explicitly. It must run before
    the checkpoint callbacks, so that a checkpoint written at the end of a validation already
    holds that validation's decision.
    """

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._feed_all(trainer, "validation")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._feed_all(trainer, "train_epoch")

    def _feed_all(self, trainer: pl.Trainer, moment: str) -> None:
        for scheduler in lightning_stepped_plateaus(trainer):
            if feeds_now(trainer, scheduler, moment):
                feed(trainer, scheduler)


def ensure_plateau_control(trainer: pl.Trainer) -> None:
    """Give the Trainer one :class:`PlateauControl` (never a second one), before its checkpoints.

    Called from ``configure_optimizers``, after Lightning has gathered the callbacks of this fit
    (``configure_callbacks`` included): no public Lightning API lets a helper that runs there add
    a callback, so it goes into the Trainer's public ``callbacks`` list. Being stateless and
    unique, it cannot pile up or feed a schedule of an earlier fit.
    """
    callbacks = trainer.callbacks
    if any(isinstance(cb, PlateauControl) for cb in callbacks):
        return
    from lightning.pytorch.callbacks import Checkpoint

    from .preemption import Preemption

    first_checkpoint = next(
        (i for i, cb in enumerate(callbacks) if isinstance(cb, Checkpoint | Preemption)),
        len(callbacks),
    )
    callbacks.insert(first_checkpoint, PlateauControl())
