"""Strategy names → strategy classes, and resolving a config into a rate source.

A strategy registers itself with :func:`register` where it is declared
(:mod:`lightning_lrsched.schedules`); :func:`resolve` validates a config against that
declaration and adds what every strategy takes: the warmup prefix, timm's noise on the rate
(outermost, in steps of the whole run) and Composer's ``scale_schedule_ratio`` (every duration
given in steps or epochs multiplied by it, warmup and phases included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from .durations import resolve_duration
from .errors import ConfigError
from .spec import COMMON_PARAMS, TOP_LEVEL_PARAMS, Context, Reader

if TYPE_CHECKING:
    from .schedules.base import RateSource

STRATEGIES: dict[str, type] = {}  # name -> strategy class, in registration order
T = TypeVar("T", bound=type)


def register(cls: T) -> T:
    """Make ``cls`` (a :class:`~lightning_lrsched.schedules.base.Strategy`) available by name."""
    if cls.name in STRATEGIES:
        raise ValueError(f"strategy {cls.name!r} is registered twice")
    STRATEGIES[cls.name] = cls
    return cls


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


def resolve(config: Any, ctx: Context, path: str = "scheduler", *, top: bool = True) -> RateSource:
    """Validate ``config`` and resolve it into a rate source (behind its warmup prefix and,
    at the top level, inside its noise)."""
    from .schedules.compose import Warmup

    config = to_mapping(config, path)
    name = config.get("name")
    if name not in STRATEGIES:
        raise ConfigError(f"{path}.name", name, f"unknown strategy; known: {', '.join(STRATEGIES)}")
    strategy = STRATEGIES[name]
    if not strategy.nestable and not top:
        raise ConfigError(
            f"{path}.name", name, "cannot be nested in sequence or chain; use it at the top level"
        )
    if top:
        ctx = replace(ctx, scale=_scale_ratio(strategy, config, path, ctx))
    else:
        for key in TOP_LEVEL_PARAMS:
            if config.get(key) is not None:
                raise ConfigError(
                    f"{path}.{key}", config[key], "applies to the whole schedule: set it at the top"
                )
    common = Reader(_Common, config, path, ctx, open_keys=True)
    warmup = common["warmup"]
    if ctx.rest is not None and warmup >= ctx.rest:
        if _share_below_all(config.get("warmup")):
            # rounded up to a whole run too short for it (a smoke test): as much as fits
            warmup = ctx.rest - 1
        else:
            steps = "1 step" if ctx.rest == 1 else f"{ctx.rest} steps"
            raise common.error("warmup", f"must be shorter than the {steps} it applies to")
    inner_ctx = ctx.with_rest(None if ctx.rest is None else ctx.rest - warmup, warmup)
    read = Reader(strategy, config, path, inner_ctx, open_keys=strategy.open_keys)
    inner = strategy.resolve(read)
    start_factor = common["warmup_start_factor"]
    if start_factor is None:
        start_factor = inner.warmup_start_default
    shape = common["warmup_type"]
    source = inner
    if warmup > 0:
        source = Warmup(inner=inner, steps=warmup, start_factor=start_factor, shape=shape)
    return _with_noise(source, inner, common) if top else source


def _scale_ratio(strategy: type, config: dict[str, Any], path: str, ctx: Context) -> float:
    """``scale_schedule_ratio``, checked (the torch pass-through cannot know its durations)."""
    ratio = Reader(_Common, config, path, ctx, open_keys=True)["scale_schedule_ratio"]
    if ratio != 1.0 and strategy.open_keys:
        raise ConfigError(
            f"{path}.scale_schedule_ratio",
            config.get("scale_schedule_ratio"),
            f"name={strategy.name} passes its keys to torch unread: scale its durations there",
        )
    return ratio


def _with_noise(source: RateSource, inner: RateSource, common: Reader) -> RateSource:
    """``source`` inside timm's noise when ``noise_range`` is set (see schedules/noise.py)."""
    from .schedules.base import Stateful
    from .schedules.noise import Noise, normal_acceptance

    raw = common.raw("noise_range")
    if raw is None:
        return source
    if isinstance(inner, Stateful):
        raise common.error(
            "noise_range",
            f"needs a closed-form schedule; name={inner.describe()['kind']} keeps state",
        )
    ctx, key = common.ctx, common.key("noise_range")

    def steps(value: Any, where: str) -> int:
        return resolve_duration(
            value,
            where,
            total_steps=ctx.total_steps,
            steps_per_epoch=ctx.steps_per_epoch,
            allow_zero=True,
            scale=ctx.scale,
        )

    if isinstance(raw, list | tuple):
        if len(raw) not in (1, 2):
            raise common.error("noise_range", "must be a duration or a list [start, end)")
        start = steps(raw[0], f"{key}[0]")
        end = steps(raw[1], f"{key}[1]") if len(raw) == 2 else None
        if end is not None and end <= start:
            raise common.error("noise_range", f"must end after it starts (steps {start}, {end})")
    else:
        start, end = steps(raw, key), None
    kind, pct, std = common["noise_type"], common["noise_pct"], common["noise_std"]
    if kind == "normal" and normal_acceptance(pct, std) < 0.01:
        raise common.error(
            "noise_std",
            f"redraws more than 100 times a step (timm draws until |noise| < noise_pct={pct:g})",
        )
    return Noise(
        inner=source,
        start=start,
        end=end,
        pct=pct,
        std=std,
        seed=common["noise_seed"],
        kind=kind,
    )


def _share_below_all(value: Any) -> bool:
    """A percentage under 100%, such as ``"5%"`` (which rounds up to a whole 1-step run)."""
    text = str(value).strip()
    try:
        return text.endswith("%") and float(text[:-1]) < 100
    except ValueError:
        return False


class _Common:
    """The keys every strategy takes (read by :func:`resolve`, not by the strategy)."""

    @staticmethod
    def params() -> dict[str, Any]:
        return COMMON_PARAMS


# The built-in strategies register themselves on import (they need the names above).
from . import schedules as _schedules  # noqa: E402, F401
