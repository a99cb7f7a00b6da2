"""Composing schedules: a warmup prefix, phases in sequence, and products of factors."""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from .base import Evaluate, Schedule, bind

WARMUP_SHAPES = ("linear", "cosine", "1-sqrt")


def warmup_shape(kind: str, progress: float) -> float:
    """Rise from 0 to 1 as ``progress`` goes 0 → 1 (the shapes Hugging Face's WSD offers)."""
    if kind == "linear":
        return progress
    if kind == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * progress))
    return 1.0 - math.sqrt(1.0 - progress)


@dataclass(frozen=True)
class Warmup(Schedule):
    """A warmup prefix of ``steps`` steps in front of ``inner``.

    For ``t < steps``, with ``p = t / steps`` and ``s = start_factor``:
    ``lr = inner(0) * (shape(p) * (1 - s) + s)``, rising from ``s * inner(0)`` to the inner
    schedule's first rate; from ``t = steps`` on, ``lr = inner(t - steps)``. Momentum during
    the warmup is the inner schedule's first. With the defaults (linear, ``s = 0``) this is
    Hugging Face's ``*_with_warmup`` prefix.

    >>> from lightning_lrsched.schedules.decay import Constant
    >>> w = Warmup(inner=Constant(), steps=4, start_factor=0.0, shape="linear")
    >>> [w.rates(t, [2.0])[0] for t in range(6)]
    [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    """

    kind = "warmup"
    inner: Any  # Schedule, or a stateful rate source (plateau, torch pass-through)
    steps: int
    start_factor: float
    shape: str

    @property
    def cycles_momentum(self) -> bool:  # type: ignore[override]
        return self.inner.cycles_momentum

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        inner = bind(self.inner, base_lrs)
        steps, start, shape = self.steps, self.start_factor, self.shape
        first: list[Any] = []  # the inner schedule's step 0, computed when first needed

        def evaluate(step: int) -> tuple[list[float], list[float] | None]:
            if step >= steps:
                return inner(step - steps)
            if not first:
                first.append(inner(0))
            target, momenta = first[0]
            progress = float(step) / float(max(1, steps))
            factor = warmup_shape(shape, progress) * (1.0 - start) + start
            return [lr * factor for lr in target], momenta

        return evaluate


@dataclass(frozen=True)
class Phases(Schedule):
    """Phases one after another; each counts steps from its own start (torch ``SequentialLR``).
    A phase that does not cycle momentum leaves the configured momentum in place.

    >>> from lightning_lrsched.schedules.decay import Constant, Exponential
    >>> s = Phases(phases=(Constant(), Exponential(gamma=0.5)), starts=(0, 2))
    >>> [s.rates(t, [1.0])[0] for t in range(5)]
    [1.0, 1.0, 1.0, 0.5, 0.25]
    """

    kind = "sequence"
    phases: tuple[Schedule, ...]
    starts: tuple[int, ...]

    @property
    def cycles_momentum(self) -> bool:  # type: ignore[override]
        return any(phase.cycles_momentum for phase in self.phases)

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        bound = [bind(phase, base_lrs) for phase in self.phases]
        starts = self.starts

        def evaluate(step: int) -> tuple[list[float], list[float] | None]:
            index = bisect_right(starts, step) - 1
            return bound[index](step - starts[index])

        return evaluate


@dataclass(frozen=True)
class Chain(Schedule):
    """Schedules applied together; their factors multiply (torch ``ChainedScheduler``):
    ``lr = base * prod_i(lr_i(t) / base)``. Momentum comes from the last schedule that cycles it.

    >>> from lightning_lrsched.schedules.decay import Exponential, Step
    >>> c = Chain(schedules=(Exponential(gamma=0.5), Step(step_size=2, gamma=0.1)))
    >>> [round(c.rates(t, [1.0])[0], 6) for t in range(4)]
    [1.0, 0.5, 0.025, 0.0125]
    """

    kind = "chain"
    schedules: tuple[Schedule, ...]

    @property
    def cycles_momentum(self) -> bool:  # type: ignore[override]
        return any(s.cycles_momentum for s in self.schedules)

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        bound = [bind(schedule, base_lrs) for schedule in self.schedules]

        def evaluate(step: int) -> tuple[list[float], list[float] | None]:
            lrs = list(base_lrs)
            momenta = None
            for part in bound:
                part_lrs, part_momenta = part(step)
                lrs = [
                    lr * (p / base) if base else 0.0
                    for lr, p, base in zip(lrs, part_lrs, base_lrs, strict=True)
                ]
                if part_momenta is not None:
                    momenta = part_momenta
            return lrs, momenta

        return evaluate
