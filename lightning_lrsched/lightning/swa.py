"""Handing the rate over to Lightning's ``StochasticWeightAveraging`` at its start epoch.

From the epoch ``swa_epoch_start`` on, SWA drives the rate with torch's ``SWALR`` (annealing
from the rate in effect to ``swa_lrs`` over ``annealing_epochs``, stepped once per epoch) and
puts it in the Trainer's scheduler list in place of the one there. Ours must then stop writing:

- ``LRSchedule`` stops stepping (and feeding a plateau) at the start of that epoch;
- the helper's schedule leaves the Trainer's scheduler list just before SWA puts its own there
  (:class:`SWAHandover`), so that SWA adds it instead of swapping out a per-step schedule (which
  it would warn about: it supports per-epoch schedules only).

SWA then anneals from the rate our schedule reached at the first step of that epoch.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, StochasticWeightAveraging

from ..adapter import ScheduleLR


def swa_has_started(trainer: pl.Trainer) -> bool:
    """Whether a ``StochasticWeightAveraging`` callback of this Trainer drives the rate now.

    Valid from ``on_train_start`` on (after a resume, the epoch is restored by then): SWA resolves
    a fractional ``swa_epoch_start`` in its ``on_fit_start``; ``swa_start`` is its public,
    0-based start epoch.
    """
    return any(
        cb.swa_start <= trainer.current_epoch
        for cb in trainer.callbacks
        if isinstance(cb, StochasticWeightAveraging)
    )


class SWAHandover(Callback):
    """Takes the helper's schedules out of the Trainer's scheduler list when SWA starts.

    It must run before SWA's ``on_train_epoch_start``: the helper puts it just before the first
    ``StochasticWeightAveraging`` callback (:func:`ensure_swa_handover`); a module that returns
    a ``build_scheduler`` schedule from ``configure_optimizers`` itself can list it before SWA in
    ``Trainer(callbacks=...)``. Stateless: after a resume from a checkpoint written once SWA had
    started, SWA itself empties the list (and restores its SWALR).
    """

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not swa_has_started(trainer):
            return
        configs = trainer.lr_scheduler_configs
        configs[:] = [c for c in configs if not isinstance(c.scheduler, ScheduleLR)]


def ensure_swa_handover(trainer: pl.Trainer) -> None:
    """Give a Trainer with a ``StochasticWeightAveraging`` callback one :class:`SWAHandover`,
    placed before it (called from ``configure_optimizers``, like ``ensure_plateau_control``)."""
    callbacks = trainer.callbacks
    if any(isinstance(cb, SWAHandover) for cb in callbacks):
        return
    for index, callback in enumerate(callbacks):
        if isinstance(callback, StochasticWeightAveraging):
            callbacks.insert(index, SWAHandover())
            return
