"""Cosine annealing, with and without restarts, and warmup-stable-decay."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from .base import ScaledSchedule, Schedule


def _toward_floor(base_lrs: Sequence[float], floor: float, share: float) -> list[float]:
    """``floor + (base - floor) * share`` for every base rate."""
    if floor == 0.0:
        return [base * share for base in base_lrs]
    return [floor + (base - floor) * share for base in base_lrs]


@dataclass(frozen=True)
class Cosine(Schedule):
    """``lr(t) = eta_min + (base - eta_min) * (1 + cos(pi * t / T_max)) / 2`` (torch
    ``CosineAnnealingLR``; Hugging Face ``get_cosine_schedule_with_warmup`` with ``warmup``).
    Past ``T_max`` the curve continues periodically, as torch's does.

    >>> s = Cosine(T_max=10, eta_min=0.0)
    >>> [round(lr, 6) for lr in s.rates(5, [0.1, 1.0])]
    [0.05, 0.5]
    """

    kind = "cosine"
    T_max: int
    eta_min: float

    def rates(self, step: int, base_lrs: Sequence[float]) -> list[float]:
        share = (1.0 + math.cos(math.pi * step / self.T_max)) / 2.0
        return _toward_floor(base_lrs, self.eta_min, share)


@dataclass(frozen=True)
class CosineRestarts(Schedule):
    """Cosine annealing restarted every cycle (torch ``CosineAnnealingWarmRestarts``).

    Cycle ``i`` lasts ``T_i = T_0 * T_mult ** i`` steps; within it, with ``t_cur`` steps since
    the restart: ``lr = eta_min + (base - eta_min) * (1 + cos(pi * t_cur / T_i)) / 2``.
    The cycle is found with integer arithmetic, so it is exact at every restart.

    >>> s = CosineRestarts(T_0=4, T_mult=2, eta_min=0.0)
    >>> [s.cycle(t) for t in (0, 3, 4, 11, 12)]
    [(0, 4), (3, 4), (0, 8), (7, 8), (0, 16)]
    """

    kind = "cosine_restarts"
    T_0: int
    T_mult: int
    eta_min: float

    @cached_property
    def _restarts(self) -> tuple[int, ...]:
        """First step of each cycle, in exact integers (64 cycles pass any step index)."""
        m = self.T_mult
        return tuple(self.T_0 * (m**k - 1) // (m - 1) for k in range(64))

    def cycle(self, step: int) -> tuple[int, int]:
        """(steps since the last restart, length of the current cycle)."""
        if step < self.T_0 or self.T_mult == 1:
            return step % self.T_0, self.T_0
        n = bisect_right(self._restarts, step) - 1
        return step - self._restarts[n], self.T_0 * self.T_mult**n

    def rates(self, step: int, base_lrs: Sequence[float]) -> list[float]:
        t_cur, t_i = self.cycle(step)
        share = (1.0 + math.cos(math.pi * t_cur / t_i)) / 2.0
        return _toward_floor(base_lrs, self.eta_min, share)


@dataclass(frozen=True)
class CosineCycles(Schedule):
    """``num_cycles`` equal cosine cycles over ``length`` steps, then ``eta_min`` (Hugging Face
    ``get_cosine_with_hard_restarts_schedule_with_warmup``): with ``p = t / length``,
    ``lr = eta_min + (base - eta_min) * (1 + cos(pi * ((num_cycles * p) mod 1))) / 2``.

    >>> s = CosineCycles(length=8, num_cycles=2.0, eta_min=0.0)
    >>> [s.rates(t, [1.0])[0] for t in (0, 2, 4, 8)]
    [1.0, 0.5, 1.0, 0.0]
    """

    kind = "cosine_cycles"
    length: int
    num_cycles: float
    eta_min: float

    def rates(self, step: int, base_lrs: Sequence[float]) -> list[float]:
        progress = step / max(1, self.length)
        if progress >= 1.0:
            return _toward_floor(base_lrs, self.eta_min, 0.0)
        share = max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((self.num_cycles * progress) % 1.0))))
        return _toward_floor(base_lrs, self.eta_min, share)


@dataclass(frozen=True)
class WarmupStableDecay(ScaledSchedule):
    """Warmup-stable-decay after its warmup (Hugging Face ``get_wsd_schedule``): factor 1 for
    ``num_stable_steps``, then over ``num_decay_steps`` with ``p`` going 0 → 1:
    ``factor = d(p) * (1 - min_lr_ratio) + min_lr_ratio`` where ``d`` is ``1 - p`` (linear),
    ``(1 + cos(2 pi num_cycles p)) / 2`` (cosine) or ``1 - sqrt(p)`` (1-sqrt); ``min_lr_ratio``
    afterwards.

    >>> s = WarmupStableDecay(num_stable_steps=2, num_decay_steps=4, min_lr_ratio=0.0,
    ...                       decay_type="linear", num_cycles=0.5)
    >>> [s.factor(t) for t in (0, 1, 2, 3, 6, 9)]
    [1.0, 1.0, 1.0, 0.75, 0.0, 0.0]
    """

    kind = "wsd"
    num_stable_steps: int
    num_decay_steps: int
    min_lr_ratio: float
    decay_type: str
    num_cycles: float

    def factor(self, step: int) -> float:
        if step < self.num_stable_steps:
            return 1.0
        if step >= self.num_stable_steps + self.num_decay_steps:
            return self.min_lr_ratio
        progress = float(step - self.num_stable_steps) / float(max(1, self.num_decay_steps))
        if self.decay_type == "linear":
            shape = 1.0 - progress
        elif self.decay_type == "cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * float(self.num_cycles) * 2.0 * progress))
        else:  # "1-sqrt"
            shape = 1.0 - math.sqrt(progress)
        return max(0.0, shape * (1.0 - self.min_lr_ratio) + self.min_lr_ratio)
