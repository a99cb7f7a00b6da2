"""What the Trainer knows about the run: its horizon in optimizer steps and its global batch."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl

from ..errors import ConfigError

SCALE_MODES = ("none", "linear", "sqrt")


def training_horizon(trainer: pl.Trainer) -> tuple[int | None, int | None]:
    """(total optimizer steps, optimizer steps per epoch), ``None`` where training has none.

    Counts *optimizer* steps: Lightning's ``estimated_stepping_batches`` already folds in
    gradient accumulation, ``max_steps``, ``max_epochs``, ``limit_train_batches`` and the
    per-rank share of the data under DDP; an epoch is ``ceil(batches / accumulation)`` steps
    because Lightning steps on the last, incomplete accumulation of an epoch too.
    """
    ensure_train_data(trainer)
    total = trainer.estimated_stepping_batches
    batches = trainer.num_training_batches
    per_epoch = None
    if batches != float("inf") and batches > 0:
        per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
    finite_total = int(total) if total != float("inf") and total > 0 else None
    return finite_total, per_epoch


def why_unbounded(trainer: pl.Trainer, key_prefix: str = "") -> str:
    """Why a Trainer has no step horizon, in the settings the user wrote: it stops on a time
    limit only (``max_time``: Lightning then sets ``max_epochs=-1`` itself), or nothing
    limits it."""
    from lightning.pytorch.callbacks import Timer

    if any(isinstance(callback, Timer) for callback in trainer.callbacks):
        return f"it stops on {key_prefix}max_time only"
    return f"{key_prefix}max_epochs=-1 and no {key_prefix}max_steps"


def ensure_train_data(trainer: pl.Trainer) -> None:
    """Make sure the Trainer has loaded its train data (schedules are built before it does).

    The public route first: ``estimated_stepping_batches`` loads the train data itself,
    exactly as the fit loop would, whenever ``max_epochs`` is set. Only with ``max_epochs=-1``
    does it return ``max_steps`` without loading anything; the epoch length (for ``"1ep"``) and
    the batch size (for ``scale_lr``) still need the data, hence :func:`_setup_train_data`.
    """
    if trainer.train_dataloader is None:
        _ = trainer.estimated_stepping_batches
    if trainer.train_dataloader is None:
        _setup_train_data(trainer)


def _setup_train_data(trainer: pl.Trainer) -> None:
    """The package's one call of a private Lightning API: load the train data early.

    Why it cannot be avoided: inside ``configure_optimizers`` and ``on_fit_start`` Lightning has
    not loaded the train data yet, and with ``max_epochs=-1`` no public API loads it (calling the
    module's ``train_dataloader()`` ourselves would miss the distributed sampler Lightning
    injects, so the per-rank epoch length would be wrong). ``fit_loop.setup_data()`` is what
    ``estimated_stepping_batches`` itself calls, and it does nothing when the data is already
    loaded, so the fit loop does not load it twice. ``tests/test_lightning_api.py`` fails when
    Lightning changes this.
    """
    trainer.fit_loop.setup_data()


def global_batch_size(trainer: pl.Trainer) -> int:
    """Per-device batch size × gradient accumulation × number of processes."""
    ensure_train_data(trainer)
    loader = trainer.train_dataloader
    size = getattr(loader, "batch_size", None)
    if size is None:
        size = getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
    if not isinstance(size, int):
        raise ConfigError(
            "scale_lr",
            "batch scaling",
            "needs a train DataLoader with a batch_size to know the global batch",
        )
    return size * trainer.accumulate_grad_batches * trainer.world_size


def lr_scale(mode: str, global_batch: int, reference_batch_size: int | None) -> float:
    """The factor every base rate is multiplied by (Goyal et al. 2017; sqrt for Adam-like).

    >>> lr_scale("linear", 1024, 256), lr_scale("sqrt", 1024, 256), lr_scale("none", 7, None)
    (4.0, 2.0, 1.0)
    """
    if mode not in SCALE_MODES:
        raise ConfigError("scale_lr", mode, f"must be one of {', '.join(SCALE_MODES)}")
    if mode == "none":
        return 1.0
    if isinstance(reference_batch_size, bool) or not isinstance(reference_batch_size, int):
        raise ConfigError(
            "reference_batch_size", reference_batch_size, f"scale_lr={mode} needs a batch size >= 1"
        )
    if reference_batch_size < 1:
        raise ConfigError("reference_batch_size", reference_batch_size, "must be >= 1")
    ratio = global_batch / reference_batch_size
    return ratio if mode == "linear" else math.sqrt(ratio)


def scale_base_rates(
    trainer: pl.Trainer, optimizer: Any, mode: str, reference_batch_size: int | None
) -> dict[str, Any] | None:
    """Multiply every group's rate by the batch-size factor; return what was done (or None)."""
    if mode == "none":
        lr_scale(mode, 0, reference_batch_size)  # validates the mode
        return None
    global_batch = global_batch_size(trainer)
    factor = lr_scale(mode, global_batch, reference_batch_size)
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * factor
    return {
        "mode": mode,
        "global_batch_size": global_batch,
        "reference_batch_size": reference_batch_size,
        "factor": factor,
        "scaled_base_lrs": [float(group["lr"]) for group in optimizer.param_groups],
    }
