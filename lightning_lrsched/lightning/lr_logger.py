"""``LRLogger``: every optimizer step's rate, momentum and weight decay to every logger."""

from __future__ import annotations

import json
import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.hooks import RemovableHandle

from ..errors import ConfigError
from .schedule_free import rate_in_use


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


def group_names(optimizer: torch.optim.Optimizer, optimizer_name: str = "") -> list[str]:
    """Each group's ``name`` if set, else ``pg<i>``; two groups with one name are refused.

    Two groups under one name would write to the same metric and hide each other, so, as
    Lightning's ``LearningRateMonitor`` does, a repeated name is an error (here a ConfigError
    naming the optimizer, the name and the groups, before the first step).
    """
    names = [str(g.get("name") or f"pg{i}") for i, g in enumerate(optimizer.param_groups)]
    for i, name in enumerate(names):
        if name in names[:i]:
            first = names.index(name)
            raise ConfigError(
                f"{optimizer_name or type(optimizer).__name__}.param_groups[{i}].name",
                name,
                f"group {first} already has this name; LRLogger logs lr/<optimizer>/<group> "
                "per group and needs unique group names",
            )
    return names


# the optimizer settings recorded with the plan, where a group has them
OPTIMIZER_SETTINGS = ("momentum", "betas", "dampening", "nesterov", "weight_decay", "eps")


def strategy_of(description: dict[str, Any]) -> str:
    """The strategy's name in a schedule's description (behind a warmup or a take-over)."""
    while description.get("kind") in ("warmup", "take_over"):
        description = description["inner"]
    return str(description.get("kind"))


def plan_params(trainer: pl.Trainer) -> dict[str, Any]:
    """What produced the curves, per optimizer: its class and each group's base rate and
    settings, the schedule's strategy, resolved plan and fingerprint, the total steps."""
    from .scheduling import attached_schedules

    schedules = {id(s.optimizer): s for s in attached_schedules(trainer)}
    total = trainer.estimated_stepping_batches
    params: dict[str, Any] = {}
    optimizers = trainer.optimizers
    for optimizer, opt_name in zip(optimizers, optimizer_names(optimizers), strict=True):
        entry: dict[str, Any] = {"optimizer": type(optimizer).__name__}
        schedule = schedules.get(id(optimizer))
        if schedule is not None:
            entry["strategy"] = strategy_of(schedule.description)
            entry["fingerprint"] = schedule.fingerprint
            entry["plan"] = json.dumps(schedule.description, sort_keys=True)
        if math.isfinite(total):
            entry["total_steps"] = int(total)
        for i, (group, name) in enumerate(
            zip(optimizer.param_groups, group_names(optimizer, opt_name), strict=True)
        ):
            base = schedule.base_lrs[i] if schedule is not None else group["lr"]
            settings = {"lr": float(base)}
            settings.update({k: _plain(group[k]) for k in OPTIMIZER_SETTINGS if k in group})
            entry[name] = settings
        params[opt_name] = entry
    return {"lrsched": params}


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return list(value) if isinstance(value, tuple) else value


class LRLogger(Callback):
    """Log, at every optimizer step, each param group's rate, momentum (SGD ``momentum`` or Adam
    ``beta1``) and weight decay to every logger of the Trainer, from rank zero only.

    Names: ``lr/<optimizer>/<group>``, ``momentum/<optimizer>/<group>``,
    ``weight_decay/<optimizer>/<group>``; for optimizers that estimate their own step size and
    expose it as ``d`` (D-Adaptation, Prodigy), also ``lr_effective/<optimizer>/<group>`` =
    ``d × lr``; for schedule-free optimizers (the ``schedulefree`` package),
    ``lr_effective`` is the rate its step applies, ``lr`` × its own warmup
    (``warmup_steps``) or RAdam rectification (the ``scheduled_lr`` it stores after the step).
    ``lr`` stays the schedule's rate (``group["lr"]``) for every optimizer. ``<group>`` names
    must be unique within an optimizer (a ConfigError otherwise).
    ``skipped_steps/<optimizer>`` counts the optimizer steps Lightning attempted that the
    optimizer did not take (under mixed precision: the ``GradScaler`` found inf/NaN gradients,
    or ``training_step`` returned None), since training started (kept in checkpoints); it is
    logged at each skipped step, so it is absent from a run that skipped none.
    The point's step is the index of the optimizer step that uses the rate: the global step
    with one optimizer; with several (manual optimization) each optimizer's own step count,
    so that every curve runs 0, 1, 2, ... as its schedule does (kept in checkpoints).

    As training starts (not when it resumes) it also logs, as hyperparameters, what produced
    the curves: per optimizer ``lrsched/<optimizer>/strategy``, ``.../fingerprint``,
    ``.../plan`` (the resolved schedule as JSON), ``.../total_steps``, ``.../optimizer`` and
    each group's base rate and settings (``.../<group>/lr``, ``momentum`` or ``betas``,
    ``weight_decay``, ...), whatever the entry point (``plan=False`` to skip).
    """

    def __init__(
        self, *, momentum: bool = True, weight_decay: bool = True, plan: bool = True
    ) -> None:
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.plan = plan
        self._names: dict[int, tuple[str, list[str]]] = {}
        self._steps: list[int] = []  # per optimizer; only used with several optimizers
        self._stage: str | None = None
        # skipped steps: per optimizer, the count, and the step attempted but not yet taken
        self._skipped: list[int] = []
        self._attempted: dict[int, int] = {}
        self._step_hooks: list[RemovableHandle] = []
        self._watched: set[int] = set()  # optimizers with a step hook

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # before a checkpoint is restored: a new fit counts from 0 unless it resumes
        self._stage = stage
        if stage == "fit":
            self._steps = []
            self._skipped = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = trainer.optimizers
        self._names = {
            id(opt): (name, group_names(opt, name))
            for opt, name in zip(optimizers, optimizer_names(optimizers), strict=True)
        }
        if len(self._steps) != len(optimizers):
            self._steps = [0] * len(optimizers)
        if len(self._skipped) != len(optimizers):
            self._skipped = [0] * len(optimizers)
        self._attempted = {}
        self._remove_step_hooks()
        self._watched = set()
        for index, opt in enumerate(optimizers):
            if not isinstance(opt, torch.optim.Optimizer):
                continue  # a strategy's own wrapper (DeepSpeed): no step hook, no count
            # runs only when the optimizer really steps (torch's public step post hook)
            hook = opt.register_step_post_hook(lambda *_, i=index: self._attempted.pop(i, None))
            self._step_hooks.append(hook)
            self._watched.add(index)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.plan or not trainer.is_global_zero or trainer.ckpt_path is not None:
            return  # a resumed run has them from its start
        params = plan_params(trainer)
        for logger in trainer.loggers:
            logger.log_hyperparams(params)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # LightningOptimizer wrapper
        step = self._step_of(trainer, optimizer)
        index = next((i for i, opt in enumerate(trainer.optimizers) if opt is optimizer), None)
        if index in self._watched:
            self._count_skipped(trainer, index)  # an earlier attempt in this batch (manual)
            self._attempted[index] = step
        if not trainer.is_global_zero or not trainer.loggers:
            return
        names = self._names.get(id(optimizer))
        if names is None or len(names[1]) != len(optimizer.param_groups):
            # groups added during training (e.g. unfreezing a backbone): name them again
            opt_name = names[0] if names is not None else type(optimizer).__name__
            names = (opt_name, group_names(optimizer, opt_name))
            self._names[id(optimizer)] = names
        self._log(trainer, optimizer, step, *names)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        for index in list(self._attempted):
            self._count_skipped(trainer, index)

    def _count_skipped(self, trainer: pl.Trainer, index: int) -> None:
        """An attempted step of optimizer ``index`` that ran no step hook was skipped: count it
        (on every rank, for the checkpoint) and log the count at that step (rank zero)."""
        step = self._attempted.pop(index, None)
        if step is None:
            return
        self._skipped[index] += 1
        if not trainer.is_global_zero or not trainer.loggers:
            return
        name = optimizer_names(trainer.optimizers)[index]
        for logger in trainer.loggers:
            logger.log_metrics({f"skipped_steps/{name}": self._skipped[index]}, step=step)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._remove_step_hooks()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._remove_step_hooks()  # Lightning calls no teardown after an exception

    def _remove_step_hooks(self) -> None:
        for hook in self._step_hooks:
            hook.remove()
        self._step_hooks = []

    def _step_of(self, trainer: pl.Trainer, optimizer: Any) -> int:
        """The index of the step ``optimizer`` is about to take (counted on every rank)."""
        optimizers = trainer.optimizers
        if len(optimizers) <= 1:
            return trainer.global_step
        # Several optimizers: Lightning's global step counts the steps of all of them together.
        index = next((i for i, opt in enumerate(optimizers) if opt is optimizer), None)
        if index is None or index >= len(self._steps):
            return trainer.global_step
        step = self._steps[index]
        self._steps[index] += 1
        return step

    def _log(
        self, trainer: pl.Trainer, optimizer: Any, step: int, opt_name: str, names: list[str]
    ) -> None:
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
            else:
                used = rate_in_use(group)  # schedule-free: its own warmup/rectification
                if used is not None:
                    metrics[f"lr_effective/{opt_name}/{name}"] = used
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if len(self._steps) > 1:
            state["optimizer_steps"] = list(self._steps)
        if any(self._skipped):
            state["skipped_steps"] = list(self._skipped)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._stage != "fit":
            return
        steps = state_dict.get("optimizer_steps")
        if steps:
            self._steps = [int(s) for s in steps]
        skipped = state_dict.get("skipped_steps")
        if skipped:
            self._skipped = [int(s) for s in skipped]
