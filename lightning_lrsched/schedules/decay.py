"""Monotone decays that scale every base rate by one factor (torch / Hugging Face equivalents)."""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

from .base import ScaledSchedule


@dataclass(frozen=True)
class Constant(ScaledSchedule):
    """``factor(t) = 1`` (Hugging Face ``get_constant_schedule``).

    >>> Constant().factor(123)
    1.0
    """

    kind = "constant"

    def factor(self, step: int) -> float:
        return 1.0


@dataclass(frozen=True)
class Step(ScaledSchedule):
    """``factor(t) = gamma ** floor(t / step_size)`` (torch ``StepLR``).

    >>> s = Step(step_size=10, gamma=0.5)
    >>> [s.factor(t) for t in (0, 9, 10, 25)]
    [1.0, 1.0, 0.5, 0.25]
    """

    kind = "step"
    step_size: int
    gamma: float

    def factor(self, step: int) -> float:
        return self.gamma ** (step // self.step_size)


@dataclass(frozen=True)
class MultiStep(ScaledSchedule):
    """``factor(t) = gamma ** (number of milestones <= t)`` (torch ``MultiStepLR``).

    >>> s = MultiStep(milestones=(3, 6), gamma=0.1)
    >>> [round(s.factor(t), 6) for t in (0, 3, 5, 6)]
    [1.0, 0.1, 0.1, 0.01]
    """

    kind = "multistep"
    milestones: tuple[int, ...]
    gamma: float

    def factor(self, step: int) -> float:
        return self.gamma ** bisect_right(self.milestones, step)


@dataclass(frozen=True)
class Exponential(ScaledSchedule):
    """``factor(t) = gamma ** t`` (torch ``ExponentialLR``).

    >>> Exponential(gamma=0.5).factor(3)
    0.125
    """

    kind = "exponential"
    gamma: float

    def factor(self, step: int) -> float:
        return self.gamma**step


@dataclass(frozen=True)
class Linear(ScaledSchedule):
    """``factor(t) = s + (e - s) * min(t, T) / T`` with ``s = start_factor``, ``e = end_factor``,
    ``T = total_iters`` (torch ``LinearLR``; Hugging Face's linear decay with the defaults 1 → 0).

    >>> s = Linear(start_factor=1.0, end_factor=0.0, total_iters=4)
    >>> [s.factor(t) for t in (0, 1, 4, 9)]
    [1.0, 0.75, 0.0, 0.0]
    """

    kind = "linear"
    start_factor: float
    end_factor: float
    total_iters: int

    def factor(self, step: int) -> float:
        if step >= self.total_iters:  # exactly the end factor, free of cancellation error
            return self.end_factor
        return self.start_factor + (self.end_factor - self.start_factor) * step / self.total_iters


@dataclass(frozen=True)
class Polynomial(ScaledSchedule):
    """``factor(t) = (1 - e) * (1 - min(t, T) / T) ** power + e`` with ``T = total_iters`` and
    ``e = end_factor`` (torch ``PolynomialLR`` for ``e = 0``; Hugging Face's polynomial decay
    with ``e = lr_end / lr``).

    >>> s = Polynomial(total_iters=4, power=2.0, end_factor=0.0)
    >>> [s.factor(t) for t in (0, 2, 4, 8)]
    [1.0, 0.25, 0.0, 0.0]
    """

    kind = "polynomial"
    total_iters: int
    power: float
    end_factor: float

    def factor(self, step: int) -> float:
        decayed = (1.0 - min(self.total_iters, step) / self.total_iters) ** self.power
        if self.end_factor == 0.0:
            return decayed
        return (1.0 - self.end_factor) * decayed + self.end_factor


@dataclass(frozen=True)
class InverseSqrt(ScaledSchedule):
    """``factor(t) = 1 / sqrt((t + timescale) / timescale)`` (Hugging Face
    ``get_inverse_sqrt_schedule``, counted from the end of warmup).

    >>> InverseSqrt(timescale=100).factor(300)
    0.5
    """

    kind = "inverse_sqrt"
    timescale: int

    def factor(self, step: int) -> float:
        return 1.0 / math.sqrt((step + self.timescale) / self.timescale)
