"""``configure_optimizers`` in one line: optimizer + schedule wired the way Lightning expects."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from ..errors import ConfigError
from .gradient_control import ensure_gradient_control
from .lr_finder import resolve_auto_rates
from .optimizers import build_optimizer
from .plateau_control import ensure_plateau_control
from .rank_guard import ensure_rank_guard
from .schedule_free import check_single_warmup, ensure_schedule_free_modes
from .scheduling import schedule_for_trainer
from .swa import ensure_swa_handover


def configure_optimizers(
    module: pl.LightningModule,
    optimizer: Any,
    scheduler: Any,
    *,
    scale_lr: str = "none",
    reference_batch_size: int | None = None,
    on_plan_change: str = "error",
    lr_finder: Any = None,
) -> dict[str, Any]:
    """Return Lightning's optimizer/scheduler dict for ``module``; call it from
    ``LightningModule.configure_optimizers``::

        def configure_optimizers(self):
            return lightning_lrsched.configure_optimizers(
                self, optimizer={"name": "adamw", "lr": 1e-3}, scheduler={"name": "onecycle"}
            )

    ``optimizer``: an optimizer, a factory taking the parameters, or a config
    (``{"name": "sgd", "lr": 0.1, "momentum": 0.9}`` or ``{"_target_": ...}``).
    ``scheduler``: a strategy config. Its total steps and steps per epoch are the Trainer's, in
    optimizer steps, so ``"5%"``, ``"2ep"`` and onecycle's horizon hold under gradient
    accumulation, ``max_steps``, ``max_epochs``, ``limit_train_batches`` and DDP. The schedule
    is stepped after every optimizer step (``interval="step"``), and advances only over steps
    the optimizer took (under mixed precision, a step the ``GradScaler`` skips for inf/NaN
    gradients leaves the rate where it was); a plateau schedule also gets its monitored metric,
    reduced across ranks, at the end of each validation; a hypergradient schedule adapts to each
    step's gradients before the update (``GradientControl``).
    ``scale_lr`` (``none``, ``linear``, ``sqrt``) multiplies the base rates by the global batch
    (per-device batch × accumulation × processes) over ``reference_batch_size`` first.
    ``on_plan_change`` (``"rewarm"``, ``"jump"``, ``"continue"``) resumes a checkpoint saved
    under another plan (``max_epochs`` raised, say) instead of refusing it; see
    :meth:`~lightning_lrsched.adapter.ScheduleLR.load_state_dict`.
    ``"auto"`` as the optimizer's ``lr`` or the schedule's ``max_lr`` runs the learning-rate
    range test first and uses its suggestion (``lr_finder``: its settings, see
    :class:`lightning_lrsched.range_test.RangeTestConfig`); the suggestion is logged. A resumed
    fit does not test again: its rates come back with the checkpoint.
    A schedule-free optimizer (``adamw_schedulefree``, ...) gets a
    :class:`~lightning_lrsched.callbacks.ScheduleFreeModes` callback, and a schedule warmup
    together with its own ``warmup_steps`` is refused.
    With Lightning's ``StochasticWeightAveraging`` callback, the schedule hands the rate over to
    SWA's ``SWALR`` at SWA's start epoch (see :mod:`lightning_lrsched.lightning.swa`).
    """
    try:
        trainer = module.trainer
    except RuntimeError:
        trainer = None
    if trainer is None:
        raise ConfigError(
            "module",
            type(module).__name__,
            "is not attached to a Trainer; call this from its "
            "configure_optimizers while the Trainer runs",
        )
    optimizer, scheduler, chosen = resolve_auto_rates(
        trainer, module, _plain(optimizer), _plain(scheduler), lr_finder, build_optimizer
    )
    built = build_optimizer(module, optimizer)
    try:
        schedule = schedule_for_trainer(
            trainer,
            built,
            scheduler,
            scale_lr=scale_lr,
            reference_batch_size=reference_batch_size,
            on_plan_change=on_plan_change,
            # Lightning steps it after every optimizer step it attempts, also one a GradScaler
            # skipped (Lightning issue 16228): such a call must not advance the schedule
            only_after_optimizer_step=True,
        )
    except ConfigError as err:
        if err.key.split(".")[-1] not in ("max_lr", "base_lr") or not chosen:
            raise
        raise ConfigError(
            err.key, err.value, f"{err.allowed} (max_lr=auto: the range test's suggestion)"
        ) from None
    if chosen:
        schedule.chosen_rates = chosen  # kept in its state: a resume reuses them
    check_single_warmup(built, schedule.description)
    lr_scheduler: dict[str, Any] = {"scheduler": schedule, "interval": "step", "frequency": 1}
    if schedule.is_plateau:
        # Lightning would step a plateau schedule once per epoch with the metric and never per
        # step (no warmup), after the checkpoint of that validation, without reducing the metric
        # across ranks, and skips a step after resuming: PlateauControl feeds it instead.
        lr_scheduler["monitor"] = schedule.monitor
        lr_scheduler["reduce_on_plateau"] = False
        ensure_plateau_control(trainer)
    if schedule.gradient_driven is not None:  # hypergradient: adapted before each update
        ensure_gradient_control(trainer, schedule)
    ensure_rank_guard(trainer)
    # a schedule-free optimizer needs train/eval switching that Lightning does not do
    ensure_schedule_free_modes(trainer, built)
    ensure_swa_handover(trainer)
    return {"optimizer": built, "lr_scheduler": lr_scheduler}


def _plain(config: Any) -> Any:
    """An OmegaConf node as plain data (``"auto"`` is looked for in plain mappings)."""
    if hasattr(config, "_metadata") or type(config).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(config, resolve=True)
    return config
