"""Cosine annealing, with and without restarts, and warmup-stable-decay."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from ..errors import ConfigError, HorizonError
from ..registry import register
from ..spec import REST, Reader, param
from .base import Evaluate, RateSource, ScaledSchedule, Schedule


def _toward_floor(base_lrs: tuple[float, ...], floor: float) -> list[tuple[float, float]]:
    """Per group ``(floor, base - floor)``: a rate is ``floor + (base - floor) * share``."""
    return [(floor, base - floor) for base in base_lrs]


def _half_cosine(t: float, length: float, k: float = 1.0) -> float:
    """``(1 + cos(pi * t**k / length**k)) / 2``: 1 at ``t = 0``, 0 at ``t = length``.

    ``k`` is timm's ``k_decay`` (evaluated in timm's order); ``k = 1`` is the plain cosine.
    """
    if k == 1.0:
        return (1.0 + math.cos(math.pi * t / length)) / 2.0
    return (1.0 + math.cos(math.pi * t**k / length**k)) / 2.0


def _k_decay() -> float:
    return param(
        "number", "timm's k-decay: cos(pi * t**k / T**k); above 1 stays high longer", 1.0, gt=0.0
    )


@register
@dataclass(frozen=True, kw_only=True)
class Cosine(Schedule):
    """Half-cosine from the base rate to eta_min over T_max steps.

    ``lr(t) = eta_min + (base - eta_min) * (1 + cos(pi * t**k / T_max**k)) / 2`` with
    ``k = k_decay`` (timm's k-decay; 1: torch's curve); past ``T_max`` the formula goes on (for
    ``k = 1`` periodically, as torch's does). With ``warmup`` this is Hugging Face's
    ``get_cosine_schedule_with_warmup``.

    >>> from lightning_lrsched.schedules.base import rates_at
    >>> [round(lr, 6) for lr in rates_at(Cosine(T_max=10), 5, [0.1, 1.0])]
    [0.05, 0.5]
    """

    name = "cosine"
    reference = "torch CosineAnnealingLR, HF get_cosine_schedule_with_warmup"
    T_max: int = param("duration", "length of the half-cosine", REST)
    eta_min: float = param("number", "the lowest rate", 0.0, ge=0.0)
    k_decay: float = _k_decay()

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        pairs = _toward_floor(base_lrs, self.eta_min)
        t_max, k = self.T_max, self.k_decay

        def evaluate(step: int) -> tuple[list[float], None]:
            share = _half_cosine(step, t_max, k)
            return [low + span * share for low, span in pairs], None

        return evaluate


@register
@dataclass(frozen=True, kw_only=True)
class CosineRestarts(Schedule):
    """Cosine restarted every T_0 steps, cycles growing by T_mult; or num_cycles equal cycles
    over training (Hugging Face's hard restarts).

    Cycle ``i`` lasts ``T_i = T_0 * T_mult ** i`` steps; within it, with ``t_cur`` steps since
    the restart, ``peak = base * cycle_decay ** i`` and ``k = k_decay``:
    ``lr = eta_min + (peak - eta_min) * (1 + cos(pi * t_cur**k / T_i**k)) / 2``, and
    ``lr = eta_min`` from cycle ``cycle_limit`` on (0: never). The cycle is found with integer
    arithmetic, so it is exact at every restart. ``cycle_decay``, ``cycle_limit`` and
    ``k_decay`` are timm's (``CosineLRScheduler``; its ``cycle_mul`` is ``T_mult``), but
    ``cycle_limit`` defaults to unlimited, as torch's restarts are. With ``num_cycles``,
    cycle ``i`` is ``floor(num_cycles * t / T)`` and ``cycle_limit`` is refused.

    >>> s = CosineRestarts(T_0=4, T_mult=2)
    >>> [s.cycle(t) for t in (0, 3, 4, 11, 12)]
    [(0, 0, 4), (0, 3, 4), (1, 0, 8), (1, 7, 8), (2, 0, 16)]
    >>> from lightning_lrsched.schedules.base import rates_at
    >>> s = CosineRestarts(T_0=2, cycle_decay=0.5, cycle_limit=2)
    >>> [rates_at(s, t)[0] for t in range(6)]
    [1.0, 0.5, 0.5, 0.25, 0.0, 0.0]
    """

    name = "cosine_restarts"
    reference = (
        "torch CosineAnnealingWarmRestarts; HF get_cosine_with_hard_restarts_schedule_with_warmup; "
        "timm CosineLRScheduler"
    )
    T_0: int = param("duration", "length of the first cycle", None, shown="unset")
    T_mult: int = param("integer", "growth of each cycle's length", 1, ge=1)
    eta_min: float = param("number", "the lowest rate", 0.0, ge=0.0)
    num_cycles: float = param(
        "number", "equal cycles over training (without T_0)", None, gt=0.0, shown="1 without T_0"
    )
    cycle_decay: float = param("number", "each restart's peak is this times the last", 1.0, gt=0.0)
    cycle_limit: int = param("integer", "eta_min after this many cycles (0: no limit)", 0)
    k_decay: float = _k_decay()

    @classmethod
    def resolve(cls, read: Reader) -> RateSource:
        values = read.values()
        if values["T_0"] is not None:
            if values["num_cycles"] is not None:
                raise read.error("num_cycles", "set either T_0 or num_cycles")
            return cls(**values)
        if values["T_mult"] != 1:
            raise read.error("T_mult", "needs T_0 (the first cycle's length)")
        if values["cycle_limit"] != 0:
            raise read.error("cycle_limit", "needs T_0 (num_cycles already counts the cycles)")
        if read.ctx.rest is None:
            raise HorizonError(
                read.key("T_0"), None, "is required when the number of training steps is unknown"
            )
        cycles = 1.0 if values["num_cycles"] is None else values["num_cycles"]
        return CosineCycles(
            length=read.ctx.rest,
            num_cycles=cycles,
            eta_min=values["eta_min"],
            cycle_decay=values["cycle_decay"],
            k_decay=values["k_decay"],
        )

    @cached_property
    def _restarts(self) -> tuple[int, ...]:
        """First step of each cycle, in exact integers (64 cycles pass any step index)."""
        m = self.T_mult
        return tuple(self.T_0 * (m**k - 1) // (m - 1) for k in range(64))

    def cycle(self, step: int) -> tuple[int, int, int]:
        """(index of the current cycle, steps since its restart, its length)."""
        if step < self.T_0 or self.T_mult == 1:
            return step // self.T_0, step % self.T_0, self.T_0
        n = bisect_right(self._restarts, step) - 1
        return n, step - self._restarts[n], self.T_0 * self.T_mult**n

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        cycle, k, floor = self.cycle, self.k_decay, self.eta_min
        peaks = _decaying_peaks(base_lrs, floor, self.cycle_decay)
        limit = self.cycle_limit or math.inf
        lowest = [floor] * len(base_lrs)

        def evaluate(step: int) -> tuple[list[float], None]:
            index, t_cur, length = cycle(step)
            if index >= limit:
                return list(lowest), None
            share = _half_cosine(t_cur, length, k)
            return [low + span * share for low, span in peaks(index)], None

        return evaluate


def _decaying_peaks(
    base_lrs: tuple[float, ...], floor: float, decay: float
) -> Callable[[int], list[tuple[float, float]]]:
    """Per cycle ``i``, per group ``(floor, base * decay**i - floor)`` (timm's ``cycle_decay``);
    without decay the same pairs for every cycle, as before it existed."""
    pairs = _toward_floor(base_lrs, floor)
    if decay == 1.0:
        return lambda _index: pairs

    def peaks(index: int) -> list[tuple[float, float]]:
        gamma = decay**index
        return [(floor, base * gamma - floor) for base in base_lrs]

    return peaks


@dataclass(frozen=True, kw_only=True)
class CosineCycles(Schedule):
    """``num_cycles`` equal cosine cycles over ``length`` steps, then ``eta_min`` (what
    ``cosine_restarts`` without ``T_0`` resolves to): with ``p = t / length``,
    ``x = (num_cycles * p) mod 1``, ``i = floor(num_cycles * p)`` and
    ``peak = base * cycle_decay ** i``:
    ``lr = eta_min + (peak - eta_min) * (1 + cos(pi * x ** k_decay)) / 2``.

    >>> from lightning_lrsched.schedules.base import rates_at
    >>> s = CosineCycles(length=8, num_cycles=2.0, eta_min=0.0)
    >>> [rates_at(s, t)[0] for t in (0, 2, 4, 8)]
    [1.0, 0.5, 1.0, 0.0]
    """

    name = "cosine_cycles"
    length: int
    num_cycles: float
    eta_min: float
    cycle_decay: float = 1.0
    k_decay: float = 1.0

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        peaks = _decaying_peaks(base_lrs, self.eta_min, self.cycle_decay)
        length, cycles, k = max(1, self.length), self.num_cycles, self.k_decay
        decays = self.cycle_decay != 1.0

        def evaluate(step: int) -> tuple[list[float], None]:
            progress = step / length
            if progress >= 1.0:
                return [low for low, _ in peaks(0)], None
            position = cycles * progress
            share = max(0.0, _half_cosine(position % 1.0, 1, k))
            index = int(position // 1.0) if decays else 0
            return [low + span * share for low, span in peaks(index)], None

        return evaluate


@register
@dataclass(frozen=True, kw_only=True)
class WarmupStableDecay(ScaledSchedule):
    """Warmup, stable at the base rate, decay to min_lr_ratio.

    After the warmup: factor 1 for ``num_stable_steps``, then over ``num_decay_steps`` with
    ``p`` going 0 → 1: ``factor = d(p) * (1 - min_lr_ratio) + min_lr_ratio`` where ``d`` is
    ``1 - p`` (linear), ``(1 + cos(2 pi num_cycles p)) / 2`` (cosine) or ``1 - sqrt(p)``
    (1-sqrt); ``min_lr_ratio`` afterwards. Its warmup starts from ``min_lr_ratio``, as in
    Hugging Face.

    >>> s = WarmupStableDecay(num_stable_steps=2, num_decay_steps=4, decay_type="linear")
    >>> [s.factor(t) for t in (0, 1, 2, 3, 6, 9)]
    [1.0, 1.0, 1.0, 0.75, 0.0, 0.0]
    """

    name = "wsd"
    reference = "HF get_wsd_schedule"
    num_decay_steps: int = param("duration", "length of the decay", "10%")
    num_stable_steps: int = param(
        "duration", "length of the stable phase", None, allow_zero=True, shown="rest - decay"
    )
    min_lr_ratio: float = param("number", "final factor", 0.0, ge=0.0, le=1.0)
    decay_type: str = param(
        "choice", "shape of the decay", "cosine", choices=("cosine", "linear", "1-sqrt")
    )
    num_cycles: float = param("number", "cosine waves in the decay", 0.5, gt=0.0)

    @classmethod
    def resolve(cls, read: Reader) -> WarmupStableDecay:
        values = read.values()
        if values["num_stable_steps"] is None:
            rest = read.ctx.rest
            if rest is None:
                raise HorizonError(
                    read.key("num_stable_steps"),
                    None,
                    "is required when the number of training steps is unknown",
                )
            values["num_stable_steps"] = rest - values["num_decay_steps"]
            if values["num_stable_steps"] < 0:
                raise ConfigError(
                    read.key("num_decay_steps"),
                    read.raw("num_decay_steps") or "10%",
                    f"must fit in the {rest} steps after warmup",
                )
        return cls(**values)

    @property
    def warmup_start_default(self) -> float:
        return self.min_lr_ratio

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


@register
@dataclass(frozen=True, kw_only=True)
class CosineWithMinLR(ScaledSchedule):
    """Cosine from the base rate down to a floor: min_lr, or min_lr_rate of the base rate.

    With ``p = t / T`` (``T``: the rest of training after the warmup) and ``r`` the floor's
    share of the base rate: ``factor = max(0, r + (1 - r) * (1 + cos(2 pi num_cycles p)) / 2)``.
    ``r = min_lr_rate``, or ``min_lr / lr`` with ``lr`` the optimizer's own rate, as Hugging Face
    divides (so every group keeps the same share).

    >>> s = CosineWithMinLR(min_lr_rate=0.1, length=10)
    >>> [round(s.factor(t), 6) for t in (0, 5, 10)]
    [1.0, 0.55, 0.1]
    """

    name = "cosine_with_min_lr"
    reference = "HF get_cosine_with_min_lr_schedule_with_warmup"
    min_lr: float | None = param(
        "number", "the floor (over the optimizer's lr it is min_lr_rate)", None, ge=0.0
    )
    min_lr_rate: float | None = param(
        "number", "the floor as a share of the base rate", None, ge=0.0, le=1.0, example=0.1
    )
    num_cycles: float = param("number", "cosine waves over training (0.5: one half)", 0.5, gt=0.0)
    length: int = 0  # resolved: the steps the cosine spans (the rest of training)

    @classmethod
    def resolve(cls, read: Reader) -> CosineWithMinLR:
        values = read.values()
        if (values["min_lr"] is None) == (values["min_lr_rate"] is None):
            raise read.error("min_lr", "set exactly one of min_lr and min_lr_rate")
        if values["min_lr"] is not None:
            optimizer = read.ctx.optimizer
            lr = optimizer.defaults["lr"] if optimizer is not None else read.ctx.base_lrs[0]
            if not lr > 0:
                raise read.error("min_lr", f"needs an optimizer lr > 0 to divide by (it is {lr})")
            values["min_lr_rate"], values["min_lr"] = values["min_lr"] / lr, None
        if read.ctx.rest is None:
            raise HorizonError(
                read.key("name"), cls.name, "spans the rest of training, which is unknown here"
            )
        return cls(**values, length=read.ctx.rest)

    def factor(self, step: int) -> float:
        rate = self.min_lr_rate or 0.0
        progress = float(step) / float(max(1, self.length))
        shape = 0.5 * (1.0 + math.cos(math.pi * float(self.num_cycles) * 2.0 * progress))
        return max(0.0, shape * (1 - rate) + rate)
