"""Adapting gradient-driven schedules (hypergradient) to each step's gradients in Lightning."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from ..adapter import ScheduleLR


def gradient_driven_schedules(trainer: pl.Trainer) -> list[ScheduleLR]:
    """The schedules of this fit (helper's and ``LRSchedule``'s) that adapt to gradients."""
    from .scheduling import attached_schedules

    return [s for s in attached_schedules(trainer) if s.gradient_driven is not None]


class GradientControl(Callback):
    """Sets the rates of every gradient-driven schedule (``hypergradient``) of the Trainer from
    the gradients of the step, in ``on_before_optimizer_step``: after the backward (and the
    gradients' all-reduce under DDP, and AMP's unscaling), before gradient clipping and the
    update. Lightning steps optimizers with a closure that runs the backward inside
    ``optimizer.step()``, so the optimizer pre-hook that does this in plain torch would come too
    early: this callback takes the schedules over from it.

    It holds no schedule and no state. ``configure_optimizers`` and ``LRSchedule`` put one first
    in the Trainer's callbacks by themselves when a schedule is gradient-driven, so that the
    callbacks after it (``LRLogger``) see the rate the update uses; put it first in
    ``Trainer(callbacks=...)`` yourself for a ``build_scheduler`` schedule returned from your own
    ``configure_optimizers``.
    """

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for scheduler in gradient_driven_schedules(trainer):
            scheduler.adapt_from_caller()

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # LightningOptimizer wrapper
        for scheduler in gradient_driven_schedules(trainer):
            if scheduler.optimizer is optimizer:
                scheduler.adapt()


def ensure_gradient_control(trainer: pl.Trainer, scheduler: ScheduleLR) -> None:
    """Take ``scheduler``'s adaptation over from its optimizer pre-hook and give the Trainer one
    :class:`GradientControl` (never a second one), first among its callbacks.

    Called from ``configure_optimizers`` and ``LRSchedule.on_fit_start``: no public Lightning
    API lets them add a callback, so it goes into the Trainer's public ``callbacks`` list, as a
    new list (Lightning may be iterating the current one: ``on_fit_start``).
    """
    scheduler.adapt_from_caller()
    callbacks = trainer.callbacks
    if any(isinstance(cb, GradientControl) for cb in callbacks):
        return
    trainer.callbacks = [GradientControl(), *callbacks]
