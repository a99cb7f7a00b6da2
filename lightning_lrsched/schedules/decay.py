"""Monotone decays that scale every base rate by one factor (torch / Hugging Face equivalents)."""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, ClassVar

from ..registry import register
from ..spec import REST, Reader, param
from .base import ScaledSchedule


@register
@dataclass(frozen=True, kw_only=True)
class Constant(ScaledSchedule):
    """The base rate throughout (with warmup: Hugging Face's constant_with_warmup).

    ``factor(t) = 1``

    >>> Constant().factor(123)
    1.0
    """

    name = "constant"
    reference = "HF get_constant_schedule(_with_warmup)"
    # the packaged option warms up (Hugging Face's constant_with_warmup): a visible schedule
    EXAMPLE_KWARGS: ClassVar[dict[str, Any]] = {"warmup": "5%"}

    def factor(self, step: int) -> float:
        return 1.0


@register
@dataclass(frozen=True, kw_only=True)
class Step(ScaledSchedule):
    """Multiply by gamma every step_size steps.

    ``factor(t) = gamma ** floor(t / step_size)``

    >>> s = Step(step_size=10, gamma=0.5)
    >>> [s.factor(t) for t in (0, 9, 10, 25)]
    [1.0, 1.0, 0.5, 0.25]
    """

    name = "step"
    reference = "torch StepLR"
    step_size: int = param("duration", "steps between two decays", example="1ep")
    gamma: float = param("number", "factor applied at each decay", 0.1, gt=0.0)

    def factor(self, step: int) -> float:
        return self.gamma ** (step // self.step_size)


@register
@dataclass(frozen=True, kw_only=True)
class MultiStep(ScaledSchedule):
    """Multiply by gamma at each milestone.

    ``factor(t) = gamma ** (number of milestones <= t)``

    >>> s = MultiStep(milestones=(3, 6), gamma=0.1)
    >>> [round(s.factor(t), 6) for t in (0, 3, 5, 6)]
    [1.0, 0.1, 0.1, 0.01]
    """

    name = "multistep"
    reference = "torch MultiStepLR"
    milestones: tuple[int, ...] = param(
        "durations", "steps at which to decay, increasing", example=["50%", "75%"]
    )
    gamma: float = param("number", "factor applied at each milestone", 0.1, gt=0.0)

    def factor(self, step: int) -> float:
        return self.gamma ** bisect_right(self.milestones, step)


@register
@dataclass(frozen=True, kw_only=True)
class Exponential(ScaledSchedule):
    """Multiply by gamma every step.

    ``factor(t) = gamma ** t``

    >>> Exponential(gamma=0.5).factor(3)
    0.125
    """

    name = "exponential"
    reference = "torch ExponentialLR"
    gamma: float = param("number", "factor applied every step", gt=0.0, example=0.995)

    def factor(self, step: int) -> float:
        return self.gamma**step


@register
@dataclass(frozen=True, kw_only=True)
class Linear(ScaledSchedule):
    """Linear from start_factor to end_factor over total_iters steps.

    ``factor(t) = s + (e - s) * min(t, T) / T`` with ``s = start_factor``, ``e = end_factor``,
    ``T = total_iters`` (Hugging Face's linear decay with the defaults 1 → 0).

    >>> s = Linear(start_factor=1.0, end_factor=0.0, total_iters=4)
    >>> [s.factor(t) for t in (0, 1, 4, 9)]
    [1.0, 0.75, 0.0, 0.0]
    """

    name = "linear"
    reference = "torch LinearLR, HF get_linear_schedule_with_warmup"
    start_factor: float = param("number", "factor at step 0", 1.0, ge=0.0)
    end_factor: float = param("number", "factor from total_iters on", 0.0, ge=0.0)
    total_iters: int = param("duration", "length of the ramp", REST)

    def factor(self, step: int) -> float:
        if step >= self.total_iters:  # exactly the end factor, free of cancellation error
            return self.end_factor
        return self.start_factor + (self.end_factor - self.start_factor) * step / self.total_iters


@register
@dataclass(frozen=True, kw_only=True)
class Polynomial(ScaledSchedule):
    """Polynomial decay to end_factor over total_iters steps.

    ``factor(t) = (1 - e) * (1 - min(t, T) / T) ** power + e`` with ``T = total_iters`` and
    ``e = end_factor`` (torch for ``e = 0``; Hugging Face with ``e = lr_end / lr``).

    >>> s = Polynomial(total_iters=4, power=2.0, end_factor=0.0)
    >>> [s.factor(t) for t in (0, 2, 4, 8)]
    [1.0, 0.25, 0.0, 0.0]
    """

    name = "polynomial"
    reference = "torch PolynomialLR, HF get_polynomial_decay_schedule_with_warmup"
    total_iters: int = param("duration", "length of the decay", REST)
    power: float = param("number", "exponent of the decay", 1.0, ge=0.0)
    end_factor: float = param("number", "factor at the end (HF: lr_end / lr)", 0.0, ge=0.0, lt=1.0)

    def factor(self, step: int) -> float:
        decayed = (1.0 - min(self.total_iters, step) / self.total_iters) ** self.power
        if self.end_factor == 0.0:
            return decayed
        return (1.0 - self.end_factor) * decayed + self.end_factor


@register
@dataclass(frozen=True, kw_only=True)
class InverseSqrt(ScaledSchedule):
    """1/sqrt decay after the warmup.

    ``factor(t) = 1 / sqrt((t + timescale) / timescale)``, counted from the end of the warmup.

    >>> InverseSqrt(timescale=100).factor(300)
    0.5
    """

    name = "inverse_sqrt"
    reference = "HF get_inverse_sqrt_schedule"
    # the packaged option warms up, which also sets the timescale (as in Hugging Face)
    EXAMPLE_KWARGS: ClassVar[dict[str, Any]] = {"warmup": "10%"}
    timescale: int = param(
        "duration", "steps for the rate to halve, squared", None, shown="warmup length or 10000"
    )

    @classmethod
    def resolve(cls, read: Reader) -> InverseSqrt:
        if not read.given("timescale"):
            return cls(timescale=read.ctx.warmup_steps or 10_000)
        return cls(**read.values())

    def factor(self, step: int) -> float:
        return 1.0 / math.sqrt((step + self.timescale) / self.timescale)
