"""Callbacks: attach a schedule to an unmodified module, and log every step's rates."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.types import LRSchedulerConfig

from ..errors import ConfigError
from .scheduling import PlateauObserver, schedule_for_trainer
from .trainer_info import SCALE_MODES


class LRSchedule(PlateauObserver):
    """Attach a schedule to a module whose ``configure_optimizers`` returns only optimizers::

        trainer = L.Trainer(callbacks=[LRSchedule({"name": "cosine", "warmup": "5%"})])

    The schedule drives optimizer ``optimizer_index`` (one callback per optimizer for several),
    is built when fitting starts with the Trainer's horizon, and is handed to Lightning's own
    scheduler list, so it is stepped after every optimizer step and saved in and restored from
    checkpoints exactly like one returned by ``configure_optimizers``. Options as in
    :func:`lightning_lrsched.configure_optimizers`.
    """

    def __init__(
        self,
        config: Any,
        optimizer_index: int = 0,
        *,
        scale_lr: str = "none",
        reference_batch_size: int | None = None,
        on_plan_change: str = "error",
    ) -> None:
        if isinstance(optimizer_index, bool) or not isinstance(optimizer_index, int):
            raise ConfigError("optimizer_index", optimizer_index, "must be a whole number >= 0")
        if optimizer_index < 0:
            raise ConfigError("optimizer_index", optimizer_index, "must be a whole number >= 0")
        if scale_lr not in SCALE_MODES:
            raise ConfigError("scale_lr", scale_lr, f"must be one of {', '.join(SCALE_MODES)}")
        if on_plan_change not in ("error", "continue"):
            raise ConfigError("on_plan_change", on_plan_change, "must be error or continue")
        self.config = config
        self.optimizer_index = optimizer_index
        self.scale_lr = scale_lr
        self.reference_batch_size = reference_batch_size
        self.on_plan_change = on_plan_change
        self.scheduler = None

    @property
    def state_key(self) -> str:
        return f"LRSchedule[optimizer={self.optimizer_index}]"

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = trainer.optimizers
        if self.optimizer_index >= len(optimizers):
            raise ConfigError(
                "optimizer_index",
                self.optimizer_index,
                f"the module has {len(optimizers)} optimizer(s)",
            )
        optimizer = optimizers[self.optimizer_index]
        for config in trainer.lr_scheduler_configs:
            if config.scheduler.optimizer is optimizer:
                raise ConfigError(
                    "optimizer_index",
                    self.optimizer_index,
                    f"{type(optimizer).__name__} already has a scheduler from configure_optimizers",
                )
        self.scheduler = schedule_for_trainer(
            trainer,
            optimizer,
            self.config,
            scale_lr=self.scale_lr,
            reference_batch_size=self.reference_batch_size,
            on_plan_change=self.on_plan_change,
        )
        # Registered before Lightning restores checkpoints (that happens after on_fit_start),
        # so Lightning saves, restores and steps it as its own.
        trainer.strategy.lr_scheduler_configs.append(
            LRSchedulerConfig(self.scheduler, interval="step", frequency=1)
        )


def optimizer_names(optimizers: list[torch.optim.Optimizer]) -> list[str]:
    """Class names, with ``-1``, ``-2``... added to repeats: ``["SGD", "AdamW", "SGD-1"]``."""
    seen: dict[str, int] = {}
    names = []
    for optimizer in optimizers:
        name = type(optimizer).__name__
        count = seen.get(name, 0)
        seen[name] = count + 1
        names.append(name if count == 0 else f"{name}-{count}")
    return names


def group_names(optimizer: torch.optim.Optimizer) -> list[str]:
    """Each group's ``name`` if set, else ``pg<i>``."""
    return [str(g.get("name") or f"pg{i}") for i, g in enumerate(optimizer.param_groups)]


class LRLogger(Callback):
    """Log, at every optimizer step, each param group's rate, momentum (SGD ``momentum`` or Adam
    ``beta1``) and weight decay to every logger of the Trainer, from rank zero only.

    Names: ``lr/<optimizer>/<group>``, ``momentum/<optimizer>/<group>``,
    ``weight_decay/<optimizer>/<group>``; for optimizers that estimate their own step size and
    expose it as ``d`` (D-Adaptation, Prodigy), also ``lr_effective/<optimizer>/<group>`` =
    ``d × lr``. The point's step is the index of the optimizer step that uses the rate.
    Nothing is kept between steps but the metric names.
    """

    def __init__(self, *, momentum: bool = True, weight_decay: bool = True) -> None:
        self.momentum = momentum
        self.weight_decay = weight_decay
        self._names: dict[int, tuple[str, list[str]]] = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = trainer.optimizers
        self._names = {
            id(opt): (name, group_names(opt))
            for opt, name in zip(optimizers, optimizer_names(optimizers), strict=True)
        }

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        if not trainer.is_global_zero or not trainer.loggers:
            return
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # LightningOptimizer wrapper
        names = self._names.get(id(optimizer))
        if names is None or len(names[1]) != len(optimizer.param_groups):
            names = (type(optimizer).__name__, group_names(optimizer))
            self._names[id(optimizer)] = names
        self._log(trainer, optimizer, *names)

    def _log(self, trainer: pl.Trainer, optimizer: Any, opt_name: str, names: list[str]) -> None:
        metrics: dict[str, float] = {}
        for group, name in zip(optimizer.param_groups, names, strict=True):
            lr = float(group["lr"])
            metrics[f"lr/{opt_name}/{name}"] = lr
            if self.momentum:
                if "betas" in group:
                    metrics[f"momentum/{opt_name}/{name}"] = float(group["betas"][0])
                elif "momentum" in group:
                    metrics[f"momentum/{opt_name}/{name}"] = float(group["momentum"])
            if self.weight_decay and "weight_decay" in group:
                metrics[f"weight_decay/{opt_name}/{name}"] = float(group["weight_decay"])
            if "d" in group:
                metrics[f"lr_effective/{opt_name}/{name}"] = float(group["d"]) * lr
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
