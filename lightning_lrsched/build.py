"""``build_scheduler``: a config, through the registry, to a torch scheduler for an optimizer."""

from __future__ import annotations

import warnings
from typing import Any

from torch.optim import Optimizer

from .adapter import ScheduleLR, momentum_kind
from .errors import ConfigError
from .registry import resolve, to_mapping
from .schedules.base import RateSource
from .schedules.compose import TakeOver, Warmup
from .schedules.noise import Noise
from .spec import Context

DEFAULT_REWARM = 100  # steps of a rewarm for a strategy without warmup in an unbounded run


def build_scheduler(
    optimizer: Optimizer,
    config: Any,
    *,
    total_steps: int | None = None,
    steps_per_epoch: int | None = None,
    on_plan_change: str = "error",
    only_after_optimizer_step: bool = False,
) -> ScheduleLR:
    """Build a torch ``LRScheduler`` for ``optimizer`` from a strategy config.

    ``config`` is a mapping (dict or OmegaConf) with ``name`` and the strategy's parameters.
    ``total_steps`` (optimizer steps of the whole run) resolves ``"<p>%"`` durations and
    "rest of training" defaults; ``steps_per_epoch`` resolves ``"<n>ep"``. Bad input raises a
    :class:`ConfigError` (a ``ValueError``) naming the key, the value and what is allowed.
    ``on_plan_change`` (``"rewarm"``, ``"jump"``, ``"continue"``) lets
    :meth:`ScheduleLR.load_state_dict` accept state saved under a different plan (a run trained
    longer than planned) and says how this plan takes over at the saved step; the default,
    ``"error"``, refuses it with an error that says what changed.
    ``only_after_optimizer_step=True`` (loops with a ``GradScaler``): ``scheduler.step()``
    advances only when ``optimizer.step()`` ran since the last advance, so a step the scaler
    skips (inf/NaN gradients) leaves the rate where it was; ``scheduler.skipped_steps`` counts
    them. The default, torch's convention, advances on every call.

    >>> import torch
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> sched = build_scheduler(opt, {"name": "cosine", "warmup": "10%"}, total_steps=100)
    >>> rates = []
    >>> for _ in range(100):
    ...     rates.append(sched.get_last_lr()[0])
    ...     opt.step()
    ...     sched.step()
    >>> round(rates[5], 4), round(rates[10], 4), round(rates[55], 4)
    (0.05, 0.1, 0.05)
    """
    for key, value in (("total_steps", total_steps), ("steps_per_epoch", steps_per_epoch)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(key, value, "must be a whole number of optimizer steps >= 1")
    base_lrs = []
    for i, group in enumerate(optimizer.param_groups):
        lr = float(group["lr"])
        if not lr >= 0 or lr == float("inf"):
            raise ConfigError(f"optimizer.param_groups[{i}].lr", lr, "must be a finite number >= 0")
        base_lrs.append(lr)
    config = to_mapping(config, "scheduler")

    def plan(rest: int | None, lrs: tuple[float, ...], plan_config: dict[str, Any]) -> RateSource:
        ctx = Context(
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            base_lrs=lrs,
            rest=rest,
            momentum_kind=momentum_kind(optimizer),
            optimizer=optimizer,
        )
        return resolve(plan_config, ctx)

    schedule = plan(total_steps, tuple(base_lrs), config)
    _warn_if_momentum_turned_on(optimizer, schedule, config)

    def replan(offset: int, anchor_lrs: list[float], mode: str) -> tuple[RateSource, list[float]]:
        rest = None if total_steps is None else total_steps - offset
        if rest is not None and rest < 1:
            raise ValueError(
                f"the new plan has {total_steps} training steps, the saved state is at step "
                f"{offset}: nothing is left to schedule"
            )
        if mode == "continue":  # the strategy over the steps left, scaled to the saved rates
            without_warmup = {k: v for k, v in config.items() if not k.startswith("warmup")}
            return plan(rest, tuple(anchor_lrs), without_warmup), list(anchor_lrs)
        ramp = 0
        if mode == "rewarm":
            core = schedule.inner if isinstance(schedule, Noise) else schedule
            warmup = core.steps if isinstance(core, Warmup) else 0
            ramp = warmup or (max(1, rest // 20) if rest is not None else DEFAULT_REWARM)
            ramp = ramp if rest is None else min(ramp, rest)
        take_over = TakeOver(inner=schedule, offset=offset, ramp=ramp, anchor_lrs=tuple(anchor_lrs))
        return take_over, list(base_lrs)

    return ScheduleLR(
        optimizer,
        schedule,
        replan=replan,
        on_plan_change=on_plan_change,
        only_after_optimizer_step=only_after_optimizer_step,
    )


def _warn_if_momentum_turned_on(optimizer: Optimizer, schedule: RateSource, config: Any) -> None:
    """A schedule that cycles momentum (one-cycle, cyclic) over SGD without momentum turns it
    on, as torch's schedulers do; say so, since momentum 0 may have been chosen."""
    if not schedule.cycles_momentum or momentum_kind(optimizer) != "momentum":
        return
    off = [i for i, group in enumerate(optimizer.param_groups) if not group.get("momentum")]
    if off:
        warnings.warn(
            f"scheduler.name={config.get('name')!r} cycles the momentum of param group(s) {off}, "
            "whose momentum is 0 (as torch's schedulers do); pass "
            "scheduler.cycle_momentum=false to keep it at 0",
            UserWarning,
            stacklevel=3,
        )
