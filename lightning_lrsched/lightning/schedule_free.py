"""Schedule-free optimizers (the ``schedulefree`` package) under Lightning: train/eval modes.

A schedule-free optimizer keeps two points: the parameters hold ``y`` (where gradients are
taken) in *train* mode and the average ``x`` (what is evaluated and deployed) in *eval* mode;
``optimizer.train()`` / ``optimizer.eval()`` move the parameters between them. The package
requires train mode for every optimizer step and eval mode for every evaluation and for saving
checkpoints. Lightning calls neither (its ``on_validation_model_eval`` hooks exist on the
LightningModule only, Lightning issue 20441), so :class:`ScheduleFreeModes` does.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from ..errors import ConfigError
from ..random_state import random_state_kept

SCHEDULEFREE_EXTRA = "lightning-lrsched[schedulefree]"

#: ``optimizer.name`` -> the ``schedulefree`` class (see ``build_optimizer``).
SCHEDULE_FREE_OPTIMIZERS = {
    "adamw_schedulefree": "AdamWScheduleFree",
    "sgd_schedulefree": "SGDScheduleFree",
    "radam_schedulefree": "RAdamScheduleFree",
}

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def schedule_free_class(name: str) -> type:
    """The ``schedulefree`` optimizer class for a config name such as ``adamw_schedulefree``;
    a one-line ImportError naming the extra when the package is missing."""
    try:
        import schedulefree
    except ModuleNotFoundError as err:
        if err.name != "schedulefree":
            raise
        raise ImportError(
            f"optimizer.name={name!r} needs the schedulefree package: "
            f"pip install '{SCHEDULEFREE_EXTRA}'",
            name="schedulefree",
        ) from None
    return getattr(schedulefree, SCHEDULE_FREE_OPTIMIZERS[name])


def _unwrapped(optimizer: Any) -> Any:
    return getattr(optimizer, "_optimizer", optimizer)  # Lightning's LightningOptimizer


def is_schedule_free(optimizer: Any) -> bool:
    """Whether ``optimizer`` needs train/eval switching: it has ``train()``/``eval()`` and keeps
    its mode in ``train_mode`` (per param group, as ``AdamWScheduleFree`` and its siblings do,
    or on itself, as ``ScheduleFreeWrapper`` does). The closure variants have no modes."""
    optimizer = _unwrapped(optimizer)
    if not all(callable(getattr(optimizer, name, None)) for name in ("train", "eval")):
        return False
    groups = getattr(optimizer, "param_groups", [])
    return hasattr(optimizer, "train_mode") or any("train_mode" in g for g in groups)


def in_train_mode(optimizer: Any) -> bool:
    """The mode of a schedule-free optimizer: True in train mode (parameters at ``y``)."""
    optimizer = _unwrapped(optimizer)
    if hasattr(optimizer, "train_mode"):
        return bool(optimizer.train_mode)
    return bool(optimizer.param_groups[0]["train_mode"])


def schedule_free_optimizers(trainer: pl.Trainer) -> list[Any]:
    """The Trainer's schedule-free optimizers (empty before ``configure_optimizers`` ran)."""
    return [opt for opt in trainer.optimizers if is_schedule_free(opt)]


def rate_in_use(group: dict[str, Any]) -> float | None:
    """The rate the next step of a schedule-free param group applies (the value its ``step``
    then stores as ``scheduled_lr``), or None for a group that is not schedule-free.

    ``lr`` × the package's own factor: its linear warmup ``min(1, (k+1)/warmup_steps)``
    (AdamW, SGD), or RAdam's rectification, 0 (``silent_sgd_phase``) or 1 while
    ``rho_t <= 4``, else ``sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))``
    with ``rho_inf = 2/(1-beta2) - 1`` and ``rho_t = rho_inf - 2 s beta2^s / (1 - beta2^s)``,
    ``s = k + 1`` (``k``: the steps taken).

    >>> rate_in_use({"lr": 0.1, "k": 1, "warmup_steps": 4, "scheduled_lr": 0.025})
    0.05
    >>> rate_in_use({"lr": 0.1}) is None
    True
    """
    if "scheduled_lr" not in group or "k" not in group:
        return None
    lr, k = float(group["lr"]), int(group["k"])
    if "silent_sgd_phase" in group:  # RAdamScheduleFree
        beta2 = group["betas"][1]
        step = k + 1
        beta2_t = beta2**step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * beta2_t / (1 - beta2_t)
        if rho_t > 4.0:
            # ** 0.5 as the package computes it (math.sqrt may differ in the last bit)
            rect = (
                (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            ) ** 0.5
        else:
            rect = float(not group["silent_sgd_phase"])
        return lr * rect
    warmup = int(group.get("warmup_steps", 0))
    return lr * ((k + 1) / warmup if k < warmup else 1.0)


def check_single_warmup(optimizer: Any, description: dict[str, Any]) -> None:
    """Refuse a schedule warmup (``scheduler.warmup``) on top of the optimizer's own
    (``optimizer.warmup_steps``): the rate would ramp up twice, as the product of both."""
    if description.get("kind") != "warmup" or not description.get("steps"):
        return
    for group in _unwrapped(optimizer).param_groups:
        if group.get("warmup_steps"):
            raise ConfigError(
                "optimizer.warmup_steps",
                group["warmup_steps"],
                f"the schedule already warms up ({description['steps']} steps of "
                "scheduler.warmup); set warmup_steps=0 or scheduler.warmup=0",
            )


def batch_norms(module: nn.Module) -> list[nn.Module]:
    """The module's batch-norm layers that keep running statistics."""
    return [m for m in module.modules() if isinstance(m, _BATCH_NORMS) and m.track_running_stats]


def batch_inputs(batch: Any) -> Any:
    """What the module's ``forward`` takes from a training batch: a tensor batch as it is, the
    first element of a ``(inputs, targets, ...)`` tuple or list."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, list | tuple) and batch:
        return batch[0]
    raise ConfigError(
        "batch",
        type(batch).__name__,
        "ScheduleFreeModes cannot tell the inputs of this batch; pass bn_inputs=<function "
        "batch -> forward's argument>",
    )


class ScheduleFreeModes(Callback):
    """Switch every schedule-free optimizer of the Trainer between train and eval mode where
    the ``schedulefree`` package requires it, and recalibrate BatchNorm statistics at ``x``.

    - **train mode** at the start of training, of each training epoch and of each training
      batch (so also for the first batch after any validation inside ``fit``);
    - **eval mode** at the start of validation (the sanity check included), test and predict,
      at the end of ``fit`` (the module then holds the averaged weights ``x``), and for every
      checkpoint: ``Trainer.save_checkpoint`` runs in eval mode and returns to the mode it
      found, so the file holds ``x`` and the optimizer state of eval mode, and a fit resumed
      from it continues exactly as the run that wrote it.

    **BatchNorm** (the package's caveat): the running statistics gathered during training
    belong to ``y``. Before an evaluation or a checkpoint at weights that changed since the last
    recalibration, ``bn_batches`` batches of training data are run through the module in train
    mode, under ``no_grad``, with the optimizer in eval mode (the package's recipe), and the
    modules' modes and the random generators are then restored. ``bn_data``: the batches (an
    iterable, or a function ``trainer -> iterable``); by default the training set is read anew
    (a new DataLoader on the training DataLoader's dataset, batch size and collate function,
    in a random order seeded by the global step, so a resumed run draws the same batches); the
    training loader itself is never iterated (that would disturb its epoch). ``bn_inputs``
    maps a batch to ``forward``'s argument (default: the batch, or its first element).
    ``bn_batches=0`` turns recalibration off (a warning names the layers once).

    :func:`lightning_lrsched.configure_optimizers` and ``LRSchedule`` add one by themselves
    when the optimizer is schedule-free; add it to ``Trainer(callbacks=...)`` yourself when the
    module returns a schedule-free optimizer on its own.
    """

    def __init__(
        self,
        bn_batches: int = 50,
        *,
        bn_data: Iterable[Any] | Callable[[pl.Trainer], Iterable[Any]] | None = None,
        bn_inputs: Callable[[Any], Any] | None = None,
    ) -> None:
        if isinstance(bn_batches, bool) or not isinstance(bn_batches, int) or bn_batches < 0:
            raise ConfigError("bn_batches", bn_batches, "must be a whole number >= 0")
        self.bn_batches = bn_batches
        self.bn_data = bn_data
        self.bn_inputs = bn_inputs or batch_inputs
        self._calibrated_at: int | None = None  # global step of the last recalibration
        self._warned = False

    # train mode -----------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # weights restored from a checkpoint (or the initial ones) come with their statistics
        self._calibrated_at = trainer.global_step
        self._to_train(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._to_train(trainer)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._to_train(trainer)

    # eval mode ------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        install_checkpoint_eval_mode(trainer)
        self._calibrated_at = trainer.global_step

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._to_eval(trainer, pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._to_eval(trainer, pl_module)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._to_eval(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._to_eval(trainer, pl_module)

    @contextlib.contextmanager
    def eval_mode(self, trainer: pl.Trainer) -> Iterator[None]:
        """Eval mode (and fresh BatchNorm statistics) inside, the mode found restored after."""
        switched = [opt for opt in schedule_free_optimizers(trainer) if in_train_mode(opt)]
        if trainer.lightning_module is not None:
            self._to_eval(trainer, trainer.lightning_module)
        try:
            yield
        finally:
            for optimizer in switched:
                optimizer.train()

    def _to_train(self, trainer: pl.Trainer) -> None:
        for optimizer in schedule_free_optimizers(trainer):
            if not in_train_mode(optimizer):
                optimizer.train()

    def _to_eval(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = schedule_free_optimizers(trainer)
        for optimizer in optimizers:
            if in_train_mode(optimizer):
                optimizer.eval()
        if optimizers and self._calibrated_at != trainer.global_step:
            self._recalibrate(trainer, pl_module)
            self._calibrated_at = trainer.global_step

    # BatchNorm ------------------------------------------------------------------------------
    def _recalibrate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        layers = batch_norms(pl_module)
        if not layers:
            return
        if self.bn_batches == 0:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"ScheduleFreeModes(bn_batches=0): {len(layers)} BatchNorm layer(s) keep the "
                    "running statistics of the training point y while x is evaluated",
                    stacklevel=2,
                )
            return
        data = self._batches(trainer)
        training = {m: m.training for m in pl_module.modules()}
        with random_state_kept(), torch.no_grad():
            pl_module.train()
            try:
                for _, batch in zip(range(self.bn_batches), data, strict=False):
                    batch = trainer.strategy.batch_to_device(batch)
                    with trainer.precision_plugin.forward_context():
                        pl_module(self.bn_inputs(batch))
            finally:
                for module, mode in training.items():
                    module.train(mode)

    def _batches(self, trainer: pl.Trainer) -> Iterable[Any]:
        if self.bn_data is not None:
            return self.bn_data(trainer) if callable(self.bn_data) else self.bn_data
        return fresh_training_loader(trainer, seed=trainer.global_step)


def fresh_training_loader(trainer: pl.Trainer, seed: int) -> torch.utils.data.DataLoader:
    """A new DataLoader over the training set (dataset, batch size, collate function and
    workers of the Trainer's training DataLoader), in a random order drawn from ``seed``."""
    loader = trainer.train_dataloader
    dataset = getattr(loader, "dataset", None)
    if not isinstance(loader, torch.utils.data.DataLoader) or isinstance(
        dataset, torch.utils.data.IterableDataset
    ):
        raise ConfigError(
            "ScheduleFreeModes.bn_data",
            None,
            "the training data is not one DataLoader over a map-style dataset; pass "
            "bn_data=<iterable of batches> to recalibrate BatchNorm, or bn_batches=0",
        )
    generator = torch.Generator().manual_seed(int(seed))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=loader.batch_size,
        sampler=torch.utils.data.RandomSampler(dataset, generator=generator),
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        generator=generator,
    )


def install_checkpoint_eval_mode(trainer: pl.Trainer) -> None:
    """Make ``trainer.save_checkpoint`` save in eval mode (once per Trainer).

    Why a wrapper: Lightning takes the module's and the optimizers' state dicts at the start
    of ``Trainer.save_checkpoint`` (``_checkpoint_connector.dump_checkpoint``), before any
    ``on_save_checkpoint`` hook, and has no hook after the file is written, where train mode
    would have to return. Every writer goes through this public method (``ModelCheckpoint``,
    ``OnExceptionCheckpoint``, the SLURM handler, ``Preemption``, user code), so the switch
    goes around it, on this Trainer instance only. ``tests/test_schedule_free.py`` fails if a
    Lightning release writes checkpoints another way.
    """
    original = trainer.save_checkpoint
    if getattr(original, "schedule_free_eval", False):
        return

    @functools.wraps(original)
    def save_checkpoint(*args: Any, **kwargs: Any) -> None:
        modes = next((cb for cb in trainer.callbacks if isinstance(cb, ScheduleFreeModes)), None)
        if modes is None:
            return original(*args, **kwargs)
        with modes.eval_mode(trainer):
            return original(*args, **kwargs)

    save_checkpoint.schedule_free_eval = True  # type: ignore[attr-defined]
    trainer.save_checkpoint = save_checkpoint  # type: ignore[method-assign]


def ensure_schedule_free_modes(
    trainer: pl.Trainer, optimizer: Any, after: Callback | None = None
) -> None:
    """Give the Trainer one :class:`ScheduleFreeModes` when ``optimizer`` is schedule-free
    and the Trainer has none yet (``configure_optimizers`` runs before the Trainer holds its
    optimizers, so the optimizer is passed in), and install the checkpoint switch.

    It goes first in the callback list when called from ``configure_optimizers`` (Lightning
    iterates no callback list there), or right after ``after`` when called from a callback's
    ``on_fit_start`` (so that the running iteration still reaches it): the callbacks after it
    see the mode already switched.
    """
    if not is_schedule_free(optimizer):
        return
    callbacks = trainer.callbacks
    if not any(isinstance(cb, ScheduleFreeModes) for cb in callbacks):
        index = callbacks.index(after) + 1 if after in callbacks else 0
        callbacks.insert(index, ScheduleFreeModes())
    install_checkpoint_eval_mode(trainer)


__all__ = [
    "SCHEDULE_FREE_OPTIMIZERS",
    "ScheduleFreeModes",
    "batch_norms",
    "ensure_schedule_free_modes",
    "in_train_mode",
    "is_schedule_free",
    "rate_in_use",
    "schedule_free_optimizers",
]
