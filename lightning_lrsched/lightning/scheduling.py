"""Building a schedule for the Trainer's run, and feeding plateau schedules their metric."""

from __future__ import annotations

import warnings
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from ..adapter import ScheduleLR
from ..build import build_scheduler
from ..errors import ConfigError, HorizonError
from .trainer_info import scale_base_rates, training_horizon


def schedule_for_trainer(
    trainer: pl.Trainer,
    optimizer: torch.optim.Optimizer,
    config: Any,
    *,
    scale_lr: str = "none",
    reference_batch_size: int | None = None,
    on_plan_change: str = "error",
) -> ScheduleLR:
    """Scale the base rates for the global batch (optionally), then build the schedule with the
    Trainer's horizon and epoch length in optimizer steps."""
    scaling = scale_base_rates(trainer, optimizer, scale_lr, reference_batch_size)
    total, per_epoch = training_horizon(trainer)
    try:
        scheduler = build_scheduler(
            optimizer,
            config,
            total_steps=total,
            steps_per_epoch=per_epoch,
            on_plan_change=on_plan_change,
        )
    except HorizonError as err:
        if total is None:
            raise HorizonError(
                err.key,
                err.value,
                "needs the training horizon, but the Trainer has none (max_epochs=-1 and no "
                "max_steps): set max_steps or max_epochs, or give this length in steps",
            ) from None
        raise
    if scaling is not None:
        rank_zero_info(
            f"lightning_lrsched: scale_lr={scaling['mode']}: global batch "
            f"{scaling['global_batch_size']} / reference {scaling['reference_batch_size']} -> "
            f"base rates x{scaling['factor']:.6g} = {scaling['scaled_base_lrs']}"
        )
        for logger in trainer.loggers:
            logger.log_hyperparams({"lr_scaling": scaling})
    return scheduler


class PlateauObserver(Callback):
    """Reports the monitored metric to a plateau schedule, reduced across ranks first.

    At the end of each validation (or training epoch, with the plateau option
    ``check_on=train_epoch``) the value of ``monitor`` in the Trainer's metrics is averaged over
    all processes, so every rank takes the same decision even when each rank's metric differs.
    A monitor that is not logged is an error naming the metrics that are (``strict=false``: a
    warning).
    """

    scheduler: ScheduleLR | None = None

    def _watching(self, trainer: pl.Trainer, moment: str) -> bool:
        scheduler = self.scheduler
        if scheduler is None or not scheduler.is_plateau or trainer.sanity_checking:
            return False
        if scheduler.stateful.check_on != moment:
            return False
        # a scheduler from an earlier fit that Lightning no longer steps is left alone
        return any(config.scheduler is scheduler for config in trainer.lr_scheduler_configs)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._watching(trainer, "validation"):
            self._observe(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._watching(trainer, "train_epoch"):
            self._observe(trainer)

    def _observe(self, trainer: pl.Trainer) -> None:
        assert self.scheduler is not None
        monitor = self.scheduler.monitor
        metrics = trainer.callback_metrics
        if monitor not in metrics:
            logged = ", ".join(sorted(metrics)) or "none yet"
            error = ConfigError(
                "scheduler.monitor", monitor, f"is not logged; the logged metrics are: {logged}"
            )
            if self.scheduler.stateful.strict:
                raise error
            warnings.warn(f"{error} (strict=false: the rate is left unchanged)", stacklevel=2)
            return
        value = torch.as_tensor(
            metrics[monitor], dtype=torch.float64, device=trainer.strategy.root_device
        )
        value = trainer.strategy.reduce(value.detach().clone(), reduce_op="mean")
        self.scheduler.observe(float(value))


class PlateauControl(PlateauObserver):
    """Feeds one plateau scheduler built by :func:`configure_optimizers`."""

    def __init__(self, scheduler: ScheduleLR) -> None:
        self.scheduler = scheduler

    @property
    def state_key(self) -> str:
        return f"PlateauControl[{id(self.scheduler)}]"
