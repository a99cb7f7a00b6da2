"""``RateProgressBar``: Lightning's tqdm progress bar with the current learning rate.

    Epoch 3:  40%|████      | 4/10 [00:00<00:00, 41.2it/s, train_loss=0.412, lr=3.00e-03]

The rate shown is the one the latest optimizer step applied (before any step: the rate the first
will apply): ``lr`` with one optimizer of one param group, else one entry per group named as
:class:`~lightning_lrsched.lightning.lr_logger.LRLogger` names its metrics,
``lr/<optimizer>/<group>``. For optimizers that apply another rate than ``group["lr"]`` it is
the rate applied, as ``LRLogger``'s ``lr_effective``: a schedule-free optimizer's ``lr`` × its
own warmup or rectification, a D-Adaptation or Prodigy optimizer's ``d`` × ``lr``. Lightning's
``v_num`` (the logger's version, a meaningless tail of an MLflow run id) is left out.

The app (``lrsched train``, ``lrsched find-lr``) shows it whenever
``trainer.enable_progress_bar`` is true (the default there) and the callbacks hold no progress
bar of their own (:func:`with_rate_progress_bar`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ProgressBar, TQDMProgressBar

from .lr_logger import group_names, optimizer_names
from .schedule_free import rate_in_use


def applied_rate(group: dict[str, Any]) -> float:
    """The rate the next step of ``group`` applies: ``d × lr`` where the optimizer adapts
    ``d`` (D-Adaptation, Prodigy), a schedule-free optimizer's :func:`rate_in_use`, else
    ``lr``.

    >>> applied_rate({"lr": 0.1}), applied_rate({"lr": 0.1, "d": 0.5})
    (0.1, 0.05)
    >>> applied_rate({"lr": 0.1, "k": 0, "warmup_steps": 4, "scheduled_lr": 0.0})
    0.025
    """
    lr = float(group["lr"])
    if "d" in group:
        return float(group["d"]) * lr
    used = rate_in_use(group)
    return lr if used is None else used


def format_rate(rate: float) -> str:
    """Three significant digits in scientific notation: ``format_rate(0.003) == '3.00e-03'``."""
    return f"{rate:.2e}"


class RateProgressBar(TQDMProgressBar):
    """Lightning's ``TQDMProgressBar`` (same arguments: ``refresh_rate``,
    ``process_position``, ``leave``) that also shows the learning rate of every param group
    (see the module's documentation) and leaves out ``v_num``::

        trainer = L.Trainer(callbacks=[RateProgressBar()])
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False):
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        # id(optimizer) -> the rates its latest step applied, one per group
        self._applied: dict[int, list[float]] = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        self._applied = {}

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        # Read here, as LRLogger reads it: by the end of the batch Lightning's schedulers may
        # have moved the rate on to the next step's, and a schedule-free step has counted itself.
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # LightningOptimizer wrapper
        self._applied[id(optimizer)] = [applied_rate(g) for g in optimizer.param_groups]

    def get_metrics(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        items.update(self.rates(trainer))
        return items

    def rates(self, trainer: pl.Trainer) -> dict[str, str]:
        """The rate entries of the bar: ``{"lr": "3.00e-03"}`` or
        ``{"lr/<optimizer>/<group>": ...}`` per group when there are several."""
        optimizers = [getattr(o, "_optimizer", o) for o in trainer.optimizers]
        entries: dict[str, str] = {}
        for optimizer, opt_name in zip(optimizers, optimizer_names(optimizers), strict=True):
            groups = optimizer.param_groups
            rates = self._applied.get(id(optimizer))
            if rates is None or len(rates) != len(groups):  # before its first step
                rates = [applied_rate(g) for g in groups]
            if len(optimizers) == 1 and len(groups) == 1:
                return {"lr": format_rate(rates[0])}
            names = group_names(optimizer, opt_name)
            for name, rate in zip(names, rates, strict=True):
                entries[f"lr/{opt_name}/{name}"] = format_rate(rate)
        return entries


def with_rate_progress_bar(callbacks: Sequence[Callback], enabled: bool) -> list[Callback]:
    """``callbacks`` with a :class:`RateProgressBar` added when the Trainer's progress bar is
    ``enabled`` and none of them is a progress bar already (a Trainer refuses two, and one
    given with ``enable_progress_bar=False``: a bar of the user's own is left to that check).

    >>> [type(c).__name__ for c in with_rate_progress_bar([], enabled=True)]
    ['RateProgressBar']
    >>> with_rate_progress_bar([], enabled=False)
    []
    """
    callbacks = list(callbacks)
    if enabled and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(RateProgressBar())
    return callbacks


__all__ = ["RateProgressBar", "applied_rate", "format_rate", "with_rate_progress_bar"]
