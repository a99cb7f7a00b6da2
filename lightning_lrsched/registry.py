"""Strategy names → builders, config validation, and :func:`build_scheduler`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer

from .adapter import ScheduleLR, momentum_kind
from .errors import ConfigError
from .params import Context, Params
from .schedules.compose import WARMUP_SHAPES, Warmup


@dataclass(frozen=True)
class Strategy:
    """One entry of the registry: how ``name`` is documented and built."""

    name: str
    summary: str
    parameters: str
    build: Callable[[Params], Any]
    top_level_only: bool = False  # stateful (plateau, torch): not inside sequence or chain


STRATEGIES: dict[str, Strategy] = {}


def strategy(
    name: str, summary: str, parameters: str, *, top_level_only: bool = False
) -> Callable[[Callable[[Params], Any]], Callable[[Params], Any]]:
    """Register a builder under ``name``."""

    def register(build: Callable[[Params], Any]) -> Callable[[Params], Any]:
        STRATEGIES[name] = Strategy(name, summary, parameters, build, top_level_only)
        return build

    return register


def to_mapping(config: Any, key: str) -> dict[str, Any]:
    """A plain dict from a dict, an OmegaConf node or a dataclass instance."""
    if hasattr(config, "_metadata") or type(config).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(config, resolve=True)
    elif hasattr(config, "__dataclass_fields__"):
        from dataclasses import asdict

        config = asdict(config)
    if not isinstance(config, Mapping):
        raise ConfigError(key, config, "must be a mapping with a 'name' key")
    return dict(config)


def resolve(config: Any, ctx: Context, path: str = "scheduler", *, top: bool = True) -> Any:
    """Validate ``config`` and resolve it into a schedule (wrapped in its warmup prefix)."""
    config = to_mapping(config, path)
    name = config.get("name")
    if name not in STRATEGIES:
        raise ConfigError(f"{path}.name", name, f"unknown strategy; known: {', '.join(STRATEGIES)}")
    entry = STRATEGIES[name]
    if entry.top_level_only and not top:
        raise ConfigError(
            f"{path}.name", name, "cannot be nested in sequence or chain; use it at the top level"
        )
    params = Params(config, path, ctx)
    warmup = params.duration("warmup", 0, allow_zero=True)
    if ctx.rest is not None and warmup >= ctx.rest:
        raise ConfigError(
            params.key("warmup"),
            config["warmup"],
            f"must be shorter than the {ctx.rest} steps it applies to",
        )
    params.ctx = ctx.with_rest(None if ctx.rest is None else ctx.rest - warmup, warmup)
    inner = entry.build(params)
    start_factor = params.number(
        "warmup_start_factor", getattr(inner, "warmup_start_default", 0.0), ge=0.0, le=1.0
    )
    shape = params.choice("warmup_type", "linear", WARMUP_SHAPES)
    params.finish()
    if warmup == 0:
        return inner
    return Warmup(inner=inner, steps=warmup, start_factor=start_factor, shape=shape)


def build_scheduler(
    optimizer: Optimizer,
    config: Any,
    *,
    total_steps: int | None = None,
    steps_per_epoch: int | None = None,
    on_plan_change: str = "error",
) -> ScheduleLR:
    """Build a torch ``LRScheduler`` for ``optimizer`` from a strategy config.

    ``config`` is a mapping (dict or OmegaConf) with ``name`` and the strategy's parameters.
    ``total_steps`` (optimizer steps of the whole run) resolves ``"<p>%"`` durations and
    "rest of training" defaults; ``steps_per_epoch`` resolves ``"<n>ep"``. Bad input raises a
    :class:`ConfigError` (a ``ValueError``) naming the key, the value and what is allowed.
    ``on_plan_change="continue"`` lets :meth:`ScheduleLR.load_state_dict` accept state saved
    under a different plan and go on from its step and rates with this plan (without warmup);
    the default refuses it with an error that says what changed.

    >>> import torch
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> sched = build_scheduler(opt, {"name": "cosine", "warmup": "10%"}, total_steps=100)
    >>> rates = []
    >>> for _ in range(100):
    ...     rates.append(sched.get_last_lr()[0])
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

    def plan(rest: int | None, lrs: tuple[float, ...], plan_config: dict[str, Any]) -> Any:
        ctx = Context(
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            base_lrs=lrs,
            momentum_kind=momentum_kind(optimizer),
            rest=rest,
            optimizer=optimizer,
        )
        schedule = resolve(plan_config, ctx)
        source = schedule.inner if isinstance(schedule, Warmup) else schedule
        return schedule, (source if hasattr(source, "state_dict") else None)

    def replan(offset: int, anchor_lrs: list[float]) -> tuple[Any, Any]:
        rest = None if total_steps is None else total_steps - offset
        if rest is not None and rest < 1:
            raise ValueError(
                f"the new plan has {total_steps} training steps, the saved state is at step "
                f"{offset}: nothing is left to schedule"
            )
        without_warmup = {k: v for k, v in config.items() if not k.startswith("warmup")}
        return plan(rest, tuple(anchor_lrs), without_warmup)

    schedule, stateful = plan(total_steps, tuple(base_lrs), config)
    return ScheduleLR(
        optimizer, schedule, stateful=stateful, replan=replan, on_plan_change=on_plan_change
    )


# The built-in strategies register themselves on import (they need the names above).
from . import strategies as _strategies  # noqa: E402, F401
