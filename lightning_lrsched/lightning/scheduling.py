"""Building a schedule for the Trainer's run, and finding the schedules a Trainer runs."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info

from ..adapter import ScheduleLR
from ..build import build_scheduler
from ..errors import HorizonError
from .trainer_info import scale_base_rates, training_horizon, why_unbounded


def build_for_horizon(
    optimizer: torch.optim.Optimizer,
    config: Any,
    total: int | None,
    per_epoch: int | None,
    *,
    on_plan_change: str = "error",
    key_prefix: str = "",
    unbounded: str = "max_epochs=-1 and no max_steps",
    only_after_optimizer_step: bool = False,
) -> ScheduleLR:
    """``build_scheduler`` on a Trainer's horizon; a schedule that needs the horizon when the
    Trainer has none says why it has none (``unbounded``, see :func:`why_unbounded`) and which
    Trainer setting gives one (``key_prefix``: ``trainer.`` in the app)."""
    try:
        return build_scheduler(
            optimizer,
            config,
            total_steps=total,
            steps_per_epoch=per_epoch,
            on_plan_change=on_plan_change,
            only_after_optimizer_step=only_after_optimizer_step,
        )
    except HorizonError as err:
        if total is None:
            reason = (
                f"needs the training horizon, but the Trainer has none ({unbounded}): set "
                f"{key_prefix}max_steps or {key_prefix}max_epochs, or give this length in steps"
            )
            error = HorizonError(err.key, err.value, reason)
            if err.value is None:  # a default the user never wrote: "the rest of training"
                error.args = (f"{err.key} (default: the rest of training) {reason}",)
            raise error from None
        raise


def schedule_for_trainer(
    trainer: pl.Trainer,
    optimizer: torch.optim.Optimizer,
    config: Any,
    *,
    scale_lr: str = "none",
    reference_batch_size: int | None = None,
    on_plan_change: str = "error",
    only_after_optimizer_step: bool = False,
) -> ScheduleLR:
    """Scale the base rates for the global batch (optionally), then build the schedule with the
    Trainer's horizon and epoch length in optimizer steps."""
    scaling = scale_base_rates(trainer, optimizer, scale_lr, reference_batch_size)
    total, per_epoch = training_horizon(trainer)
    scheduler = build_for_horizon(
        optimizer, config, total, per_epoch, on_plan_change=on_plan_change,
        unbounded=why_unbounded(trainer), only_after_optimizer_step=only_after_optimizer_step,
    )  # fmt: skip
    if scaling is not None:
        rank_zero_info(
            f"lightning_lrsched: scale_lr={scaling['mode']}: global batch "
            f"{scaling['global_batch_size']} / reference {scaling['reference_batch_size']} -> "
            f"base rates x{scaling['factor']:.6g} = {scaling['scaled_base_lrs']}"
        )
        for logger in trainer.loggers:
            logger.log_hyperparams({"lr_scaling": scaling})
    return scheduler


def attached_schedules(trainer: pl.Trainer) -> list[ScheduleLR]:
    """Every lightning-lrsched schedule of this fit, in optimizer order: those Lightning steps
    (returned by ``configure_optimizers``, e.g. by the helper) and those ``LRSchedule``
    callbacks step. Read by ``RunTracking`` for the planned-schedule figure."""
    from .lr_schedule import LRSchedule

    found = [
        c.scheduler for c in trainer.lr_scheduler_configs if isinstance(c.scheduler, ScheduleLR)
    ]
    found += [
        cb.scheduler
        for cb in trainer.callbacks
        if isinstance(cb, LRSchedule) and isinstance(cb.scheduler, ScheduleLR)
    ]
    order = {id(optimizer): i for i, optimizer in enumerate(trainer.optimizers)}
    return sorted(found, key=lambda s: order.get(id(s.optimizer), len(order)))
