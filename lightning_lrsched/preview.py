"""The planned schedule, evaluated without training: rate (and momentum) of every step.

:func:`plan_rates` drives the real scheduler built by :func:`build_scheduler` on a dummy
optimizer with one parameter, so a plan is exactly the trajectory training would see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .registry import to_mapping

if TYPE_CHECKING:
    from torch.optim import Optimizer

# torch is imported when a plan is computed: `lrsched list` and `--help` only need the names

OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class Plan:
    """Rates of optimizer steps ``0 .. len(steps) - 1`` for the strategy ``name``.

    ``momenta`` holds SGD's momentum or AdamW's beta1 (as ``momentum_label`` says) when the
    schedule cycles it, else ``None``.
    """

    name: str
    steps: tuple[int, ...]
    lrs: tuple[float, ...]
    momenta: tuple[float, ...] | None = None
    momentum_label: str = "momentum"


def plan_rates(
    config: Any,
    total_steps: int,
    *,
    steps_per_epoch: int | None = None,
    base_lr: float = 0.1,
    optimizer: str = "sgd",
) -> Plan:
    """Evaluate the schedule ``config`` over ``total_steps`` optimizer steps.

    The scheduler runs on a one-parameter ``optimizer`` (``"sgd"``: SGD with momentum 0.9;
    ``"adamw"``: AdamW with betas (0.9, 0.999)) whose rate is ``base_lr``. Momentum is
    recorded only for schedules that cycle it (``cyclic``, ``onecycle``).

    ``plateau`` reacts to metrics and a plan has none: its plan is the warmup (if any) and
    then the base rate throughout (with ``warm_restart``: the first cosine cycle, no restart).

    Bad input raises :class:`ConfigError`, as :func:`build_scheduler` does.

    >>> plan = plan_rates({"name": "cosine", "warmup": "10%"}, total_steps=100)
    >>> len(plan.lrs), round(plan.lrs[5], 4), round(plan.lrs[10], 4), plan.momenta
    (100, 0.05, 0.1, None)
    >>> plan = plan_rates({"name": "onecycle", "max_lr": 1.0}, total_steps=10, optimizer="adamw")
    >>> plan.momentum_label, plan.momenta[0], round(plan.lrs[0], 4)
    ('beta1', 0.95, 0.04)
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ConfigError("total_steps", total_steps, "must be a whole number of steps >= 1")
    config = to_mapping(config, "scheduler")
    opt = _dummy_optimizer(optimizer, base_lr)
    from .build import build_scheduler

    scheduler = build_scheduler(
        opt, config, total_steps=total_steps, steps_per_epoch=steps_per_epoch
    )
    kind = "betas" if optimizer == "adamw" else "momentum"
    track_momentum = bool(scheduler.schedule.cycles_momentum)
    group = opt.param_groups[0]
    lrs: list[float] = []
    momenta: list[float] = []
    for step in range(total_steps):
        if step:
            opt.step()  # no gradients: moves nothing, but keeps torch's step order
            scheduler.step()
        lrs.append(float(scheduler.get_last_lr()[0]))
        if track_momentum:
            momenta.append(float(group["betas"][0] if kind == "betas" else group["momentum"]))
    return Plan(
        name=str(config.get("name")),
        steps=tuple(range(total_steps)),
        lrs=tuple(lrs),
        momenta=tuple(momenta) if track_momentum else None,
        momentum_label="beta1" if kind == "betas" else "momentum",
    )


def _dummy_optimizer(optimizer: str, base_lr: float) -> Optimizer:
    if optimizer not in OPTIMIZERS:
        raise ConfigError("optimizer", optimizer, f"must be one of {', '.join(OPTIMIZERS)}")
    if isinstance(base_lr, bool) or not isinstance(base_lr, int | float):
        raise ConfigError("lr", base_lr, "must be a finite number >= 0")
    if not (math.isfinite(base_lr) and base_lr >= 0):
        raise ConfigError("lr", base_lr, "must be a finite number >= 0")
    import torch
    from torch.optim import SGD, AdamW

    params = [torch.zeros(1, requires_grad=True)]
    if optimizer == "adamw":
        return AdamW(params, lr=base_lr, betas=(0.9, 0.999))
    return SGD(params, lr=base_lr, momentum=0.9)
