"""Composing schedules: a warmup prefix, phases in sequence, and products of factors."""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from ..durations import resolve_duration
from ..errors import ConfigError
from ..registry import register, resolve
from ..spec import COMMON_PARAMS, Reader, param
from .base import Evaluate, RateSource, Schedule

WARMUP_SHAPES = COMMON_PARAMS["warmup_type"].choices


def warmup_shape(kind: str, progress: float) -> float:
    """Rise from 0 to 1 as ``progress`` goes 0 → 1 (the shapes Hugging Face's WSD offers)."""
    if kind == "linear":
        return progress
    if kind == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * progress))
    return 1.0 - math.sqrt(1.0 - progress)


@dataclass(frozen=True, kw_only=True)
class Warmup(Schedule):
    """A warmup prefix of ``steps`` steps in front of ``inner`` (any rate source).

    For ``t < steps``, with ``p = t / steps`` and ``s = start_factor``:
    ``lr = inner(0) * (shape(p) * (1 - s) + s)``, rising from ``s * inner(0)`` to the inner
    source's first rate; from ``t = steps`` on, ``lr = inner(t - steps)``. Momentum during
    the warmup is the inner source's first. With the defaults (linear, ``s = 0``) this is
    Hugging Face's ``*_with_warmup`` prefix.

    >>> from lightning_lrsched.schedules.base import rates_at
    >>> from lightning_lrsched.schedules.decay import Constant
    >>> w = Warmup(inner=Constant(), steps=4, start_factor=0.0, shape="linear")
    >>> [rates_at(w, t, [2.0])[0] for t in range(6)]
    [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    """

    name = "warmup"
    inner: RateSource
    steps: int
    start_factor: float
    shape: str

    @property
    def cycles_momentum(self) -> bool:  # type: ignore[override]
        return self.inner.cycles_momentum

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        inner = self.inner.bind(base_lrs)
        steps, start, shape = self.steps, self.start_factor, self.shape
        first: list[Any] = []  # the inner source's step 0, computed when first needed

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


@dataclass(frozen=True, kw_only=True)
class TakeOver(Schedule):
    """A plan entered at its own step ``offset`` (a resume under a changed plan): step ``t``
    of this source is step ``offset + t`` of ``inner``, reached over ``ramp`` steps from the
    rates in effect before (``anchor_lrs``).

    For ``t < ramp``, with ``p = t / ramp`` and, per group, ``s = anchor / inner(offset)``:
    ``lr = inner(offset + t) * (s + (1 - s) * p)``; from ``t = ramp`` on,
    ``lr = inner(offset + t)``. ``ramp = 0`` jumps onto the plan at once. A group whose plan
    rate at ``offset`` is 0 follows the plan from the start.

    >>> from lightning_lrsched.schedules.base import rates_at
    >>> from lightning_lrsched.schedules.decay import Linear
    >>> plan = Linear(start_factor=1.0, end_factor=0.0, total_iters=10)
    >>> t = TakeOver(inner=plan, offset=5, ramp=2, anchor_lrs=(0.0,))
    >>> [round(rates_at(t, s, [1.0])[0], 3) for s in range(4)]
    [0.0, 0.2, 0.3, 0.2]
    """

    name = "take_over"
    inner: RateSource
    offset: int
    ramp: int
    anchor_lrs: tuple[float, ...]

    @property
    def cycles_momentum(self) -> bool:  # type: ignore[override]
        return self.inner.cycles_momentum

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        inner = self.inner.bind(base_lrs)
        offset, ramp = self.offset, self.ramp
        if ramp == 0:
            return lambda step: inner(offset + step)
        planned = inner(offset)[0]
        starts = [a / p if p else 1.0 for a, p in zip(self.anchor_lrs, planned, strict=True)]

        def evaluate(step: int) -> tuple[list[float], list[float] | None]:
            lrs, momenta = inner(offset + step)
            if step >= ramp:
                return lrs, momenta
            progress = step / ramp
            return [lr * (s + (1.0 - s) * progress) for lr, s in zip(lrs, starts, strict=True)], (
                momenta
            )

        return evaluate


@register
@dataclass(frozen=True, kw_only=True)
class Sequence(Schedule):
    """Phases one after another, each from its own step 0.

    ``phases`` is a list of strategy configs, each with a ``duration`` (the last one's defaults
    to the rest of training). A phase that does not cycle momentum leaves the configured
    momentum in place.

    >>> from lightning_lrsched.schedules.base import rates_at
    >>> from lightning_lrsched.schedules.decay import Constant, Exponential
    >>> s = Sequence(phases=(Constant(), Exponential(gamma=0.5)), starts=(0, 2))
    >>> [rates_at(s, t)[0] for t in range(5)]
    [1.0, 1.0, 1.0, 0.5, 0.25]
    """

    name = "sequence"
    reference = "torch SequentialLR"
    phases: tuple[RateSource, ...] = param(
        "schedules",
        "[{name, duration, ...}, ...]; the last phase's duration defaults to the rest",
        example=[
            {"name": "linear", "start_factor": 0.01, "end_factor": 1.0, "duration": "10%"},
            {"name": "cosine"},
        ],
    )
    starts: tuple[int, ...] = (0,)  # resolved: the first step of each phase

    @classmethod
    def resolve(cls, read: Reader) -> Sequence:
        items = read["phases"]
        rest = read.ctx.rest
        phases, starts = [], []
        start = 0
        for i, item in enumerate(items):
            path = f"{read.key('phases')}[{i}]"
            if not hasattr(item, "keys"):
                raise ConfigError(path, item, "must be a schedule config with name and duration")
            item = dict(item)
            duration = item.pop("duration", None)
            if duration is None:
                if i < len(items) - 1:
                    raise ConfigError(
                        f"{path}.duration", None, "is required for every phase but the last"
                    )
                length = None if rest is None else rest - start
            else:
                length = resolve_duration(
                    duration,
                    f"{path}.duration",
                    total_steps=read.ctx.total_steps,
                    steps_per_epoch=read.ctx.steps_per_epoch,
                    scale=read.ctx.scale,
                )
            if length is not None and length <= 0:
                raise ConfigError(f"{path}.duration", duration, "leaves no steps for this phase")
            if length is not None and rest is not None and start + length > rest:
                raise ConfigError(
                    f"{path}.duration",
                    duration,
                    f"ends at step {start + length}, after the {rest} steps of training",
                )
            phases.append(resolve(item, read.ctx.with_rest(length), path, top=False))
            starts.append(start)
            if length is not None:
                start += length
        return cls(phases=tuple(phases), starts=tuple(starts))

    @property
    def cycles_momentum(self) -> bool:  # type: ignore[override]
        return any(phase.cycles_momentum for phase in self.phases)

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        bound = [phase.bind(base_lrs) for phase in self.phases]
        starts = self.starts

        def evaluate(step: int) -> tuple[list[float], list[float] | None]:
            index = bisect_right(starts, step) - 1
            return bound[index](step - starts[index])

        return evaluate


@register
@dataclass(frozen=True, kw_only=True)
class Chain(Schedule):
    """Schedules applied together, their factors multiplied.

    ``lr = base * prod_i(lr_i(t) / base)``; momentum comes from the last schedule that cycles
    it. Identical to torch's ``ChainedScheduler`` for multiplicative schedules.

    >>> from lightning_lrsched.schedules.base import rates_at
    >>> from lightning_lrsched.schedules.decay import Exponential, Step
    >>> c = Chain(schedules=(Exponential(gamma=0.5), Step(step_size=2, gamma=0.1)))
    >>> [round(rates_at(c, t)[0], 6) for t in range(4)]
    [1.0, 0.5, 0.025, 0.0125]
    """

    name = "chain"
    reference = "torch ChainedScheduler"
    schedules: tuple[RateSource, ...] = param(
        "schedules",
        "[{name, ...}, ...], applied together",
        example=[
            {"name": "exponential", "gamma": 0.999},
            {"name": "multistep", "milestones": ["50%", "75%"]},
        ],
    )

    @classmethod
    def resolve(cls, read: Reader) -> Chain:
        path = read.key("schedules")
        return cls(
            schedules=tuple(
                resolve(item, read.ctx, f"{path}[{i}]", top=False)
                for i, item in enumerate(read["schedules"])
            )
        )

    @property
    def cycles_momentum(self) -> bool:  # type: ignore[override]
        return any(s.cycles_momentum for s in self.schedules)

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        bound = [schedule.bind(base_lrs) for schedule in self.schedules]

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
