"""Durations: ``500`` (optimizer steps), ``"2ep"`` (epochs) or ``"5%"`` (of all training steps).

Every duration is resolved to a whole number of optimizer steps once, when the schedule is
built. Fractions round up (as Hugging Face's ``warmup_ratio`` does), computed in exact rational
arithmetic so that ``"7%"`` of 100 steps is 7, not 8 because of ``0.07 * 100 = 7.000000000000001``.

``scale`` (a schedule's ``scale_schedule_ratio``, as in Composer) multiplies a duration given in
steps or epochs (epochs turned into steps first), truncated to a whole step as Composer's
``int(value * ratio)`` does, but on the exact decimal product (``0.29 * 100`` is 29 steps, where
floats give 28). A percentage is a share of the run, whose length is the trainer's: not scaled.

>>> resolve_duration("5%", "warmup", total_steps=1000)
50
>>> resolve_duration("2ep", "T_0", steps_per_epoch=30)
60
>>> resolve_duration(12, "step_size")
12
>>> resolve_duration("2ep", "T_0", steps_per_epoch=30, scale=0.25), resolve_duration(
...     "5%", "warmup", total_steps=1000, scale=0.25)
(15, 50)
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from .errors import ConfigError, HorizonError

Duration = int | str

_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ep|%)?\s*$")
ALLOWED = (
    "a whole number of steps (500), epochs ('2ep', needs steps per epoch) "
    "or a percentage of training ('5%')"
)


def is_duration_text(value: object) -> bool:
    """True when ``value`` is a string written as a duration (``"500"``, ``"2ep"``, ``"5%"``)."""
    return isinstance(value, str) and _PATTERN.match(value) is not None


def resolve_duration(
    value: object,
    key: str,
    *,
    total_steps: int | None = None,
    steps_per_epoch: int | None = None,
    allow_zero: bool = False,
    scale: float = 1.0,
) -> int:
    """Resolve one duration to optimizer steps, or raise :class:`ConfigError` naming ``key``;
    a duration in steps or epochs is multiplied by ``scale`` (see the module's doc)."""
    if isinstance(value, bool):
        raise ConfigError(key, value, ALLOWED)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        steps = value
    elif isinstance(value, str) and (match := _PATTERN.match(value)):
        amount = Fraction(match.group(1))
        unit = match.group(2)
        if unit is None:
            if amount.denominator != 1:
                raise ConfigError(key, value, ALLOWED)
            steps = int(amount)
        elif unit == "ep":
            if steps_per_epoch is None:
                raise ConfigError(
                    key, value, "epochs need steps_per_epoch; pass steps_per_epoch= or use steps"
                )
            steps = math.ceil(amount * steps_per_epoch)
        else:
            if amount > 100:
                raise ConfigError(key, value, "a percentage must be between 0% and 100%")
            if total_steps is None:
                raise HorizonError(
                    key, value, "a percentage needs total_steps; pass total_steps= or use steps"
                )
            steps = math.ceil(amount * total_steps / 100)
            scale = 1.0  # a share of the run follows the run's length
    else:
        raise ConfigError(key, value, ALLOWED)
    bound = ">= 0" if allow_zero else "> 0"
    if steps < 0 or (steps == 0 and not allow_zero):
        raise ConfigError(key, value, f"must be {bound} steps")
    if scale != 1.0:
        steps = scaled_steps(steps, scale)
        if steps == 0 and not allow_zero:
            raise ConfigError(
                key, value, f"is 0 steps scaled by scale_schedule_ratio={scale:g}; must be {bound}"
            )
    return steps


def scaled_steps(steps: int, ratio: float) -> int:
    """``steps * ratio`` truncated to a whole step (Composer's ``int(value * ssr)``), computed
    on the ratio as written in decimal so that float artefacts cannot drop a step.

    >>> scaled_steps(100, 0.29), int(100 * 0.29)
    (29, 28)
    """
    return math.floor(Fraction(repr(float(ratio))) * steps)
