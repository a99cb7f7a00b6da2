"""Strategy names → strategy classes, and resolving a config into a rate source.

A strategy registers itself with :func:`register` where it is declared
(:mod:`lightning_lrsched.schedules`); :func:`resolve` validates a config against that
declaration and adds the warmup prefix every strategy takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigError
from .spec import COMMON_PARAMS, Context, Reader

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
    """Validate ``config`` and resolve it into a rate source (behind its warmup prefix)."""
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
    if warmup == 0:
        return inner
    return Warmup(inner=inner, steps=warmup, start_factor=start_factor, shape=shape)


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
