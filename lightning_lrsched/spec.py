"""How a strategy declares its parameters, and the one reader that validates a config against it.

A strategy is one frozen dataclass (see :mod:`lightning_lrsched.schedules`): its fields are its
parameters, declared with :func:`param` (kind, default, bounds, a one-line doc), and its methods
are its formula. Everything else is derived from that declaration: validation (:class:`Reader`),
the Hydra structured config and option file, ``lrsched list`` and the README's table
(:mod:`lightning_lrsched.app.generate`).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True, kw_only=True)
... class Demo:
...     gamma: float = param("number", "decay per step", 0.5, gt=0.0)
...     step_size: int = param("duration", "steps between decays")
>>> ctx = Context(total_steps=200, steps_per_epoch=None, base_lrs=(0.1,), rest=200)
>>> Reader(Demo, {"step_size": "5%"}, "scheduler", ctx).values()
{'gamma': 0.5, 'step_size': 10}
>>> Reader(Demo, {"step_size": 3, "gama": 0.1}, "scheduler", ctx)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lightning_lrsched.errors.ConfigError: scheduler.gama=0.1: unknown parameter (did you mean ...
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .durations import resolve_duration
from .errors import ConfigError, HorizonError

KINDS = (
    "duration",  # optimizer steps: 500, "2ep" or "5%"
    "durations",  # a strictly increasing list of durations (milestones)
    "number",  # a finite real number within bounds
    "integer",  # a whole number >= ge (default 0)
    "choice",  # one of `choices`
    "flag",  # true or false
    "per_group",  # a number, or a list with one number per param group
    "text",  # a non-empty string
    "schedules",  # a non-empty list of strategy configs (composition)
)


class _Marker:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


REQUIRED: Any = _Marker("required")
REST: Any = _Marker("rest")  # a duration that defaults to the rest of this schedule's training
GROUP_LR: Any = _Marker("group lr")  # a per-group rate that defaults to each group's own rate
NO_EXAMPLE: Any = _Marker("no example")


@dataclass(frozen=True)
class Param:
    """One parameter of a strategy: what it is, its default and what values it allows.

    ``example`` is the value the packaged Hydra option file sets (for a required parameter, or
    to make the demo app's run show the strategy); ``shown`` replaces the default in docs when
    the default is computed at build time.
    """

    kind: str
    doc: str
    default: Any = REQUIRED
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] = ()
    allow_zero: bool = False
    example: Any = NO_EXAMPLE
    shown: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown parameter kind {self.kind!r}; known: {', '.join(KINDS)}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def default_text(self) -> str | None:
        """How the default reads in docs (None when the parameter is required)."""
        if self.shown is not None:
            return self.shown
        if self.required:
            return None
        if isinstance(self.default, bool):
            return str(self.default).lower()
        return "null" if self.default is None else str(self.default)

    def summary(self, name: str) -> str:
        """``name=default`` (or ``name`` when required), ``a|b`` for choices."""
        if self.choices:
            return f"{name}={'|'.join(self.choices)}"
        default = self.default_text()
        return name if default is None else f"{name}={default}"


def param(kind: str, doc: str, default: Any = REQUIRED, **options: Any) -> Any:
    """Declare a strategy parameter as a dataclass field (keyword-only dataclasses)."""
    declared = Param(kind, doc, default, **options)
    plain = not isinstance(default, _Marker) and not isinstance(default, list | dict)
    if plain:
        return dataclasses.field(default=default, metadata={"param": declared})
    return dataclasses.field(metadata={"param": declared})


def declared_params(cls: type) -> dict[str, Param]:
    """The parameters a strategy class declares, in declaration order."""
    return {f.name: f.metadata["param"] for f in dataclasses.fields(cls) if "param" in f.metadata}


# Keys every strategy takes; the registry reads them (the warmup prefix), not the strategy.
COMMON_PARAMS: dict[str, Param] = {
    "warmup": Param(
        "duration", "linear (or shaped) warmup before the strategy", 0, allow_zero=True
    ),
    "warmup_start_factor": Param(
        "number",
        "the warmup starts at this share of the strategy's first rate",
        None,
        ge=0.0,
        le=1.0,
        shown="0.0",
    ),
    "warmup_type": Param(
        "choice", "shape of the warmup", "linear", choices=("linear", "cosine", "1-sqrt")
    ),
    # timm's deterministic noise on the rate (schedules/noise.py), from step noise_range on
    "noise_range": Param(
        "duration",
        "noise on the rate from this step on, or in [start, end) (a list of two durations)",
        None,
        allow_zero=True,
    ),
    "noise_pct": Param("number", "noise bound: |noise| < noise_pct", 0.67, gt=0.0, le=1.0),
    "noise_std": Param("number", "standard deviation of normal noise", 1.0, gt=0.0),
    "noise_seed": Param("integer", "the noise of step t is drawn with seed noise_seed + t", 42),
    "noise_type": Param("choice", "noise distribution", "normal", choices=("normal", "uniform")),
    # Composer's scale schedule: every duration given in steps or epochs, times this ratio
    "scale_schedule_ratio": Param(
        "number", "multiplies every duration given in steps or epochs", 1.0, gt=0.0
    ),
}
# common keys that apply to the whole schedule: only at the top level, not inside a phase
TOP_LEVEL_PARAMS = (
    "noise_range",
    "noise_pct",
    "noise_std",
    "noise_seed",
    "noise_type",
    "scale_schedule_ratio",
)
COMMON_KEYS = ("name", *COMMON_PARAMS)


@dataclass(frozen=True)
class Context:
    """What a strategy may need to know about training to resolve its parameters.

    ``rest`` is the number of steps this schedule runs for: the total minus the warmup at the
    top level, a phase's duration inside ``sequence``. ``None`` when training has no horizon.
    ``scale`` multiplies every duration given in steps or epochs (``scale_schedule_ratio``).
    """

    total_steps: int | None
    steps_per_epoch: int | None
    base_lrs: tuple[float, ...]
    rest: int | None
    momentum_kind: str | None = None  # "momentum", "betas" or None for the optimizer scheduled
    warmup_steps: int = 0
    optimizer: Any = None  # the optimizer being scheduled (the torch pass-through copies it)
    scale: float = 1.0  # scale_schedule_ratio: multiplies durations given in steps or epochs

    def with_rest(self, rest: int | None, warmup_steps: int = 0) -> Context:
        return replace(self, rest=rest, warmup_steps=warmup_steps)


def unknown_key_error(path: str, key: str, value: Any, allowed: Iterable[str]) -> ConfigError:
    """The one message for a key a strategy (or a schema) does not have, with a did-you-mean."""
    allowed = list(allowed)
    hint = difflib.get_close_matches(key, allowed, n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(
        f"{path}.{key}" if path else key,
        value,
        f"unknown parameter{extra}; allowed: {', '.join(allowed)}",
    )


class Reader:
    """Validated, resolved values of one strategy's config, as its declaration says.

    Unknown keys are refused on construction (unless the strategy takes any keyword, as the
    torch pass-through does); ``reader[name]`` checks and resolves one declared parameter.
    """

    def __init__(
        self,
        strategy: type,
        config: Mapping[str, Any],
        path: str,
        ctx: Context,
        *,
        open_keys: bool = False,
    ) -> None:
        declared = getattr(strategy, "params", None)  # a Strategy may declare them by hand
        self.params = declared() if declared is not None else declared_params(strategy)
        self.config = dict(config)
        self.path = path
        self.ctx = ctx
        if not open_keys:
            allowed = [*self.params, *COMMON_KEYS]
            for key in self.config:
                if key not in allowed:
                    raise unknown_key_error(path, key, self.config[key], allowed)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}"

    def given(self, name: str) -> bool:
        """Whether ``name`` is set in the config (not missing, not null)."""
        return self.config.get(name) is not None

    def raw(self, name: str) -> Any:
        return self.config.get(name)

    def error(self, name: str, allowed: str, value: Any = REQUIRED) -> ConfigError:
        """A :class:`ConfigError` about ``name`` (its configured value unless given)."""
        return ConfigError(self.key(name), self.raw(name) if value is REQUIRED else value, allowed)

    def values(self, *names: str) -> dict[str, Any]:
        """Every declared parameter (or those named), resolved."""
        return {name: self[name] for name in (names or self.params)}

    def __getitem__(self, name: str) -> Any:
        return self.read(name, self.params[name])

    def read(self, name: str, spec: Param) -> Any:
        """Check and resolve the configured value of ``name`` as ``spec`` declares it."""
        value = self.config.get(name)
        key = self.key(name)
        if value is None:
            if spec.default is REQUIRED:
                raise ConfigError(key, None, "is required")
            if spec.default is REST:
                if self.ctx.rest is None:
                    raise HorizonError(
                        key,
                        None,
                        "defaults to the rest of training, which is unknown here; "
                        "pass total_steps= or set it explicitly",
                    )
                return self.ctx.rest
            if spec.default is GROUP_LR or spec.default is None:
                return None
            value = spec.default
        return _check(spec, key, value, self.ctx)


def _check(spec: Param, key: str, value: Any, ctx: Context) -> Any:
    kind = spec.kind
    if kind == "duration":
        return resolve_duration(
            value,
            key,
            total_steps=ctx.total_steps,
            steps_per_epoch=ctx.steps_per_epoch,
            allow_zero=spec.allow_zero,
            scale=ctx.scale,
        )
    if kind == "durations":
        if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
            raise ConfigError(key, value, "must be a non-empty list of durations")
        steps = tuple(
            resolve_duration(
                item,
                f"{key}[{i}]",
                total_steps=ctx.total_steps,
                steps_per_epoch=ctx.steps_per_epoch,
                scale=ctx.scale,
            )
            for i, item in enumerate(value)
        )
        if any(b <= a for a, b in itertools.pairwise(steps)):
            scaled = f" (scaled by scale_schedule_ratio={ctx.scale:g}: {list(steps)})"
            hint = scaled if ctx.scale != 1.0 else ""
            raise ConfigError(key, list(value), f"must be strictly increasing{hint}")
        return steps
    if kind == "number":
        return check_number(key, value, gt=spec.gt, ge=spec.ge, lt=spec.lt, le=spec.le)
    if kind == "integer":
        low = int(spec.ge or 0)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(key, value, f"must be a whole number >= {low}")
        return value
    if kind == "choice":
        if value not in spec.choices:
            raise ConfigError(key, value, f"must be one of {', '.join(spec.choices)}")
        return value
    if kind == "flag":
        if not isinstance(value, bool):
            raise ConfigError(key, value, "must be true or false")
        return value
    if kind == "per_group":
        groups = len(ctx.base_lrs)
        listed = isinstance(value, Sequence) and not isinstance(value, str | bytes)
        if listed and len(value) != groups:
            raise ConfigError(key, list(value), f"needs one value per param group ({groups})")
        items = list(value) if listed else [value] * groups
        bounds = {"gt": spec.gt, "ge": spec.ge, "lt": spec.lt, "le": spec.le}
        return tuple(
            check_number(f"{key}[{i}]" if listed else key, v, **bounds) for i, v in enumerate(items)
        )
    if kind == "text":
        if not isinstance(value, str) or not value:
            raise ConfigError(key, value, "must be a non-empty string")
        return value
    # "schedules": the composition resolves each item itself
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence) or not value:
        raise ConfigError(key, value, "must be a non-empty list of schedule configs")
    return list(value)


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
    bounds = [
        f"{sign} {bound:g}"
        for sign, bound in ((">", gt), (">=", ge), ("<", lt), ("<=", le))
        if bound is not None
    ]
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
