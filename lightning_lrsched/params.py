"""Reading one strategy's parameters from a config mapping, with validation.

Every accessor checks type and range and raises :class:`ConfigError` naming the full key
(``scheduler.phases[1].gamma``). :meth:`Params.finish` rejects keys no accessor asked for, so a
misspelled parameter is an error instead of a silently ignored default.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .durations import resolve_duration
from .errors import ConfigError, HorizonError

REQUIRED: Any = object()

# Keys any strategy accepts; they are read by the registry, not by the strategy builder.
COMMON_KEYS = ("name", "warmup", "warmup_start_factor", "warmup_type")


@dataclass(frozen=True)
class Context:
    """What a strategy may need to know about training to resolve its parameters.

    ``rest`` is the number of steps this schedule runs for: the total minus the warmup at the
    top level, a phase's duration inside ``sequence``. ``None`` when training has no horizon.
    """

    total_steps: int | None
    steps_per_epoch: int | None
    base_lrs: tuple[float, ...]
    momentum_kind: str | None  # "momentum", "betas" or None for the optimizer being scheduled
    rest: int | None
    warmup_steps: int = 0
    optimizer: Any = None  # the optimizer being scheduled (torch pass-through copies its groups)

    def with_rest(self, rest: int | None, warmup_steps: int = 0) -> Context:
        return replace(self, rest=rest, warmup_steps=warmup_steps)


class Params:
    """Validated access to the keys of one strategy's config."""

    def __init__(self, config: Mapping[str, Any], path: str, ctx: Context) -> None:
        self.config = dict(config)
        self.path = path
        self.ctx = ctx
        self._read: set[str] = set(COMMON_KEYS)

    def key(self, key: str) -> str:
        return f"{self.path}.{key}"

    def has(self, key: str) -> bool:
        """Whether ``key`` is set (not missing, not None); it counts as a known parameter."""
        self._read.add(key)
        return self.config.get(key) is not None

    def raw(self, key: str, default: Any = REQUIRED) -> Any:
        self._read.add(key)
        value = self.config.get(key)
        if value is None:
            if default is REQUIRED:
                raise ConfigError(self.key(key), None, "is required")
            return default
        return value

    def number(
        self,
        key: str,
        default: Any = REQUIRED,
        *,
        gt: float | None = None,
        ge: float | None = None,
        lt: float | None = None,
        le: float | None = None,
    ) -> float:
        value = self.raw(key, default)
        return check_number(self.key(key), value, gt=gt, ge=ge, lt=lt, le=le)

    def integer(self, key: str, default: Any = REQUIRED, *, ge: int = 0) -> int:
        value = self.raw(key, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < ge:
            raise ConfigError(self.key(key), value, f"must be a whole number >= {ge}")
        return value

    def boolean(self, key: str, default: Any = REQUIRED) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise ConfigError(self.key(key), value, "must be true or false")
        return value

    def choice(self, key: str, default: Any, choices: Sequence[str]) -> str:
        value = self.raw(key, default)
        if value not in choices:
            raise ConfigError(self.key(key), value, f"must be one of {', '.join(choices)}")
        return value

    def text(self, key: str, default: Any = REQUIRED) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(self.key(key), value, "must be a non-empty string")
        return value

    def duration(self, key: str, default: Any = REQUIRED, *, allow_zero: bool = False) -> int:
        """A duration in steps; ``default=None`` means "the rest of this schedule's training"."""
        value = self.raw(key, _REST if default is None else default)
        if value is _REST:
            if self.ctx.rest is None:
                raise HorizonError(
                    self.key(key),
                    None,
                    "defaults to the rest of training, which is unknown here; "
                    "pass total_steps= or set it explicitly",
                )
            return self.ctx.rest
        return resolve_duration(
            value,
            self.key(key),
            total_steps=self.ctx.total_steps,
            steps_per_epoch=self.ctx.steps_per_epoch,
            allow_zero=allow_zero,
        )

    def durations(self, key: str) -> tuple[int, ...]:
        """A strictly increasing, non-empty list of durations (milestones)."""
        value = self.raw(key)
        if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
            raise ConfigError(self.key(key), value, "must be a non-empty list of durations")
        steps = tuple(
            resolve_duration(
                item,
                f"{self.key(key)}[{i}]",
                total_steps=self.ctx.total_steps,
                steps_per_epoch=self.ctx.steps_per_epoch,
            )
            for i, item in enumerate(value)
        )
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ConfigError(self.key(key), list(value), "must be strictly increasing")
        return steps

    def per_group(self, key: str, default: Any = REQUIRED, **bounds: float) -> tuple[float, ...]:
        """A number, or a list with one number per param group."""
        value = self.raw(key, default)
        groups = len(self.ctx.base_lrs)
        listed = isinstance(value, Sequence) and not isinstance(value, str | bytes)
        if listed:
            if len(value) != groups:
                raise ConfigError(
                    self.key(key), list(value), f"needs one value per param group ({groups})"
                )
            items = list(value)
        else:
            items = [value] * groups
        return tuple(
            check_number(f"{self.key(key)}[{i}]" if listed else self.key(key), v, **bounds)
            for i, v in enumerate(items)
        )

    def finish(self) -> None:
        unknown = sorted(set(self.config) - self._read)
        if unknown:
            allowed = sorted(self._read)
            hint = difflib.get_close_matches(unknown[0], allowed, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(
                self.key(unknown[0]),
                self.config[unknown[0]],
                f"unknown parameter{extra}; allowed: {', '.join(allowed)}",
            )


_REST: Any = object()


def check_number(
    key: str,
    value: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> float:
    """A finite real number within the given bounds, or a :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, value, "must be a number")
    value = float(value)
    bounds = []
    if gt is not None:
        bounds.append(f"> {gt:g}")
    if ge is not None:
        bounds.append(f">= {ge:g}")
    if lt is not None:
        bounds.append(f"< {lt:g}")
    if le is not None:
        bounds.append(f"<= {le:g}")
    allowed = "must be a finite number" + (f" {' and '.join(bounds)}" if bounds else "")
    if not math.isfinite(value):
        raise ConfigError(key, value, allowed)
    if (
        (gt is not None and not value > gt)
        or (ge is not None and not value >= ge)
        or (lt is not None and not value < lt)
        or (le is not None and not value <= le)
    ):
        raise ConfigError(key, value, allowed)
    return value
