"""``StepMetrics``: every training step's values to every logger, at no cost per step.

Lightning's ``self.log(..., on_step=True)`` goes through its result collection at every step
(a third of a small model's step time on a CPU, measured in ``benchmarks/logging_overhead.py``)
and, for a tensor on a GPU, a host–device sync when the value is logged. ``StepMetrics`` keeps
the values as they are (detached tensors, on their device) in a small buffer and moves the
buffer to the host in one transfer every ``every_n_steps`` optimizer steps, at the end of each
epoch and of training, and when a checkpoint is saved. Every logger of the Trainer then gets
each step's values at that step's own number: the index of the optimizer step the batch
contributed to, the number ``LRLogger`` gives the rate that step used.

Two ways in:

- the training step's outputs: ``StepMetrics(outputs={"loss": "train_loss"})`` reads the
  ``loss`` that ``training_step`` returns (a tensor, or a dict's ``"loss"``), and any other key
  of a returned dict named in ``outputs``;
- :func:`log_step` from anywhere in the training step: ``log_step(self, "grad_norm", norm)``.

Under gradient accumulation a step's value is the mean over its batches. With ``on_epoch``,
loggers get ``<name>_step`` per step and ``<name>_epoch`` (the epoch's mean) as Lightning names
them for ``self.log(on_step=True, on_epoch=True)``, and ``trainer.callback_metrics[name]`` is
the epoch mean, for a ``monitor`` (plateau, checkpoints, early stopping). ``sync_dist`` averages
each value over the ranks with one collective per flush; without it, rank zero's are logged.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from ..errors import ConfigError

Value = torch.Tensor | float | int

# the StepMetrics of each Trainer being fitted, for log_step (weak: a Trainer is not kept alive)
_ACTIVE: weakref.WeakKeyDictionary[pl.Trainer, StepMetrics] = weakref.WeakKeyDictionary()


def log_step(
    module: pl.LightningModule, name: str, value: Value, *, on_epoch: bool = False
) -> None:
    """Record ``value`` as this training step's ``name`` (no host sync; see :class:`StepMetrics`).

    Call it from ``training_step`` (or a hook inside the training batch) of a module whose
    Trainer has a :class:`StepMetrics` callback. ``on_epoch=True`` also logs the epoch's mean,
    as :class:`StepMetrics`' own ``on_epoch`` does.
    """
    recorder = _ACTIVE.get(module.trainer)
    if recorder is None:
        raise RuntimeError(
            f"log_step({name!r}): the Trainer has no StepMetrics callback; add "
            "lightning_lrsched.callbacks.StepMetrics() to its callbacks"
        )
    recorder.record(name, value, on_epoch=on_epoch)


class StepMetrics(Callback):
    """Log every training step's loss (and any per-step value) without a host sync per step.

    Args:
        outputs: which of ``training_step``'s outputs to log and under which names: a mapping
            ``{output key: metric name}``, or a sequence of keys logged as ``train_<key>``.
            Default ``{"loss": "train_loss"}``; ``{}`` logs only :func:`log_step` values.
        every_n_steps: optimizer steps between moves to the host (one transfer each) and
            hand-overs to the loggers; also at every epoch end, training end and checkpoint.
        on_epoch: also log each output's epoch mean as ``<name>_epoch`` (the per-step values
            are then ``<name>_step``) and set ``trainer.callback_metrics[name]`` to it.
        sync_dist: average every value over the ranks (one collective per flush, on every
            rank) instead of logging rank zero's.

    >>> StepMetrics(outputs=["loss", "acc"]).names
    {'loss': 'train_loss', 'acc': 'train_acc'}
    """

    def __init__(
        self,
        outputs: Mapping[str, str] | Sequence[str] | None = None,
        *,
        every_n_steps: int = 50,
        on_epoch: bool = False,
        sync_dist: bool = False,
    ) -> None:
        if (
            isinstance(every_n_steps, bool)
            or not isinstance(every_n_steps, int)
            or every_n_steps < 1
        ):
            raise ConfigError("every_n_steps", every_n_steps, "must be a whole number >= 1")
        if outputs is None:
            outputs = {"loss": "train_loss"}
        elif isinstance(outputs, str) or not isinstance(outputs, Mapping | Sequence):
            raise ConfigError(
                "outputs", outputs, "must be a mapping {output key: name} or a list of keys"
            )
        elif not isinstance(outputs, Mapping):
            outputs = {str(key): f"train_{key}" for key in outputs}
        self.names: dict[str, str] = {str(k): str(v) for k, v in outputs.items()}
        self.every_n_steps = every_n_steps
        self.on_epoch = on_epoch
        self.sync_dist = sync_dist
        self._trainer: pl.Trainer | None = None
        self._step = 0  # the optimizer step the current batch contributes to
        # recorded, not yet on the host: (step, name, value), in order
        self._pending: list[tuple[int, str, Value]] = []
        # the recorded names whose epoch mean is logged, and the name the mean goes by
        self._epoch_names: dict[str, str] = {}
        self._epoch_sums: dict[str, list[float]] = {}  # name -> [sum of step values, steps]

    # -- recording ---------------------------------------------------------------------------
    def record(self, name: str, value: Value, *, on_epoch: bool = False) -> None:
        """Keep ``value`` as the current step's ``name`` (a tensor stays on its device);
        ``on_epoch``: also its epoch mean, as ``<name>_epoch`` and ``callback_metrics[name]``."""
        self._record(name, value, name if on_epoch else None)

    def _record(self, name: str, value: Value, epoch_name: str | None) -> None:
        if isinstance(value, torch.Tensor) and value.requires_grad:
            value = value.detach()
        self._pending.append((self._step, name, value))
        if epoch_name is not None:
            self._epoch_names[name] = epoch_name

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._trainer = trainer
            _ACTIVE[trainer] = self

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            _ACTIVE.pop(trainer, None)
            self._trainer = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_sums = {}

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._step = trainer.global_step

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if isinstance(outputs, torch.Tensor):
            outputs = {"loss": outputs}
        if type(outputs) is dict or isinstance(outputs, Mapping):
            for key, name in self.names.items():
                value = outputs.get(key)
                if value is None:
                    continue
                accumulated = trainer.accumulate_grad_batches
                if key == "loss" and accumulated > 1 and pl_module.automatic_optimization:
                    # Lightning hands callbacks the loss divided by accumulate_grad_batches
                    # (documented at Callback.on_train_batch_end): the step's own loss
                    value = value * accumulated
                if self.on_epoch:  # as self.log(on_step=True, on_epoch=True) names them
                    self._record(f"{name}_step", value, name)
                else:
                    self._record(name, value, None)
        if trainer.global_step > self._step and trainer.global_step % self.every_n_steps == 0:
            self.flush(trainer)

    # -- handing over ------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush(trainer)
        means = {name: total / count for name, (total, count) in self._epoch_sums.items() if count}
        if not means:
            return
        step = max(trainer.global_step - 1, 0)  # the epoch's last optimizer step
        named = {self._epoch_names[name]: mean for name, mean in means.items()}
        if trainer.is_global_zero:
            epoch_metrics = {f"{name}_epoch": mean for name, mean in named.items()}
            for logger in trainer.loggers:
                logger.log_metrics(epoch_metrics, step=step)
        for name, mean in named.items():  # a monitor's value, as self.log would leave it
            pl_module.log(name, mean, on_step=False, on_epoch=True, logger=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self.flush(trainer, collective=False)  # the ranks may not all be here

    def state_dict(self) -> dict[str, Any]:
        # saving a checkpoint: what was recorded is logged first, so a resumed run lacks nothing
        # (every rank saves, with the same steps recorded; nothing recorded: no collective, so a
        # checkpoint saved after fit, from one rank, does not wait for the others)
        if self._trainer is not None and self._pending:
            self.flush(self._trainer)
        return {"epoch_sums": {k: list(v) for k, v in self._epoch_sums.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sums = state_dict.get("epoch_sums") or {}
        self._epoch_sums = {str(k): [float(v[0]), float(v[1])] for k, v in sums.items()}

    def flush(self, trainer: pl.Trainer, *, collective: bool = True) -> None:
        """Move the recorded values to the host (one transfer) and hand them to the loggers."""
        pending, self._pending = self._pending, []
        if not pending and not (collective and self.sync_dist and trainer.world_size > 1):
            return
        values = _to_host([value for _, _, value in pending])
        if collective and self.sync_dist and trainer.world_size > 1:
            values = _mean_over_ranks(trainer, values)
        rows: dict[int, dict[str, list[float]]] = {}
        for (step, name, _), value in zip(pending, values, strict=True):
            rows.setdefault(step, {}).setdefault(name, []).append(value)
        for step in sorted(rows):
            metrics = {name: math.fsum(vs) / len(vs) for name, vs in rows[step].items()}
            for name, value in metrics.items():
                if name in self._epoch_names:
                    total = self._epoch_sums.setdefault(name, [0.0, 0.0])
                    total[0] += value
                    total[1] += 1
            if trainer.is_global_zero:
                for logger in trainer.loggers:
                    logger.log_metrics(metrics, step=step)


def _to_host(values: list[Value]) -> list[float]:
    """The values as floats, with one device-to-host copy per device and dtype."""
    result: list[float] = [0.0] * len(values)
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, value in enumerate(values):
        if isinstance(value, torch.Tensor):
            groups.setdefault((value.device, value.dtype), []).append(i)
        else:
            result[i] = float(value)
    for indices in groups.values():
        stacked = torch.stack([values[i].reshape(()) for i in indices]).double().cpu()
        for i, value in zip(indices, stacked.tolist(), strict=True):
            result[i] = value
    return result


def _mean_over_ranks(trainer: pl.Trainer, values: list[float]) -> list[float]:
    """Each value averaged over the ranks (every rank recorded the same names in order)."""
    count = torch.tensor(float(len(values)), dtype=torch.float64)
    counts = trainer.strategy.all_gather(count)
    if bool((counts != count).any()):
        raise RuntimeError(
            "StepMetrics(sync_dist=True): the ranks recorded different numbers of values "
            f"({counts.tolist()}); every rank must record the same names at the same steps"
        )
    tensor = torch.tensor(values, dtype=torch.float64, device=trainer.strategy.root_device)
    reduced = trainer.strategy.reduce(tensor, reduce_op="mean")
    return reduced.cpu().tolist()
