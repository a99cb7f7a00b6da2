"""``RankGuard``: under DDP, once per epoch, every rank must hold rank zero's rates and schedules.

Ranks that disagree on a rate train a model that no rank's log describes: a rank resumed from
another checkpoint, a schedule built on another horizon (a data loader of another length), a
plateau fed its own metric instead of the mean. Each such bug is silent. Once per training
epoch (not per step: one small collective on the host) every rank's current rate and momentum
of every param group, its schedules' whole state (position, plan, fingerprint, plateau
controller) are gathered, and any difference stops training on every rank with one line that
names the ranks, the value and where it differs.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback

from .lr_logger import group_names, optimizer_names
from .scheduling import attached_schedules


class RankDivergenceError(RuntimeError):
    """The ranks of one DDP job hold different rates or schedule states."""


def rank_record(trainer: pl.Trainer) -> dict[str, Any]:
    """What must be equal on every rank: per optimizer, each group's rate and momentum, and
    the state of the schedule driving it."""
    record: dict[str, Any] = {}
    schedules = {id(s.optimizer): s for s in attached_schedules(trainer)}
    optimizers = trainer.optimizers
    for name, optimizer in zip(optimizer_names(optimizers), optimizers, strict=True):
        names = group_names(optimizer, name)
        for group_name, group in zip(names, optimizer.param_groups, strict=True):
            where = f"{name}/{group_name}"
            record[f"{where} lr"] = float(group["lr"])
            if "betas" in group:
                record[f"{where} beta1"] = float(group["betas"][0])
            elif "momentum" in group:
                record[f"{where} momentum"] = float(group["momentum"])
        schedule = schedules.get(id(optimizer))
        if schedule is not None:
            record[f"{name} schedule"] = schedule.state_dict()
    return record


def first_difference(reference: Any, other: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first place (a path of keys) where ``other`` differs from ``reference``."""
    if isinstance(reference, dict) and isinstance(other, dict):
        for key in list(reference) + [k for k in other if k not in reference]:
            where = f"{path} {key}".strip() if path else str(key)
            found = first_difference(reference.get(key), other.get(key), where)
            if found is not None:
                return found
        return None
    if isinstance(reference, list | tuple) and isinstance(other, list | tuple):
        if len(reference) != len(other):
            return path, reference, other
        for index, (a, b) in enumerate(zip(reference, other, strict=True)):
            found = first_difference(a, b, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    same = reference == other or (
        isinstance(reference, float)
        and isinstance(other, float)
        and math.isnan(reference)
        and math.isnan(other)
    )
    return None if same else (path, reference, other)


def check_records(records: list[dict[str, Any]], epoch: int, step: int) -> None:
    """Raise :class:`RankDivergenceError` when a rank's record differs from rank zero's."""
    for rank, record in enumerate(records[1:], start=1):
        found = first_difference(records[0], record)
        if found is not None:
            where, zero, theirs = found
            raise RankDivergenceError(
                f"rank guard: rank {rank} disagrees with rank 0 after epoch {epoch} (step "
                f"{step}): {where} is {theirs!r} on rank {rank}, {zero!r} on rank 0"
            )


class RankGuard(Callback):
    """Once per training epoch under DDP: all ranks hold identical rates, schedule state and
    plan fingerprint, or every rank raises :class:`RankDivergenceError` naming the ranks, the
    param group and the first differing value. The helper and ``LRSchedule`` add one by
    themselves under DDP; ``RankGuard(enabled=False)`` in the Trainer's callbacks turns it off.
    Nothing happens in a single process."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled or trainer.world_size < 2:
            return
        if not (dist.is_available() and dist.is_initialized()):
            return
        records: list[Any] = [None] * trainer.world_size
        # every rank calls this at the same moment; pickled plain data, once an epoch
        dist.all_gather_object(records, rank_record(trainer))
        check_records(records, trainer.current_epoch, trainer.global_step)


def ensure_rank_guard(trainer: pl.Trainer) -> None:
    """Give a multi-process Trainer one :class:`RankGuard` (never a second one).

    Called from ``configure_optimizers`` and ``LRSchedule``, like ``ensure_plateau_control``:
    the Trainer's public ``callbacks`` list is the only way in from there.
    """
    if trainer.world_size < 2 or any(isinstance(cb, RankGuard) for cb in trainer.callbacks):
        return
    trainer.callbacks.append(RankGuard())
