"""The schedule interface: a pure function of the step, evaluated for all param groups at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

# evaluate(step) -> (rate per group, momentum per group or None to leave momentum alone)
Evaluate = Callable[[int], tuple[list[float], list[float] | None]]


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: a closed-form function of the step, no state.

    ``step`` counts optimizer steps from the schedule's own start (0 = the first step).
    ``base_lrs`` are the param groups' configured rates. Leaf schedules define
    ``rates(step, base_lrs)`` (and ``momenta(step)`` when they cycle momentum); :meth:`bind`
    fixes the base rates once and returns the per-step evaluator the torch adapter calls, which
    is where per-group constants are precomputed so a step costs as little as possible.
    """

    kind: ClassVar[str] = "schedule"
    cycles_momentum: ClassVar[bool] = False

    def rates(self, step: int, base_lrs: Sequence[float]) -> list[float]:
        return self.bind(tuple(base_lrs))(step)[0]

    def momenta(self, step: int) -> list[float] | None:
        return None

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        return bind_generic(self, base_lrs)

    def describe(self) -> dict[str, Any]:
        """Plain data naming the schedule and every resolved parameter (used for fingerprints)."""
        out: dict[str, Any] = {"kind": self.kind}
        for field in fields(self):
            out[field.name] = _plain(getattr(self, field.name))
        return out


@dataclass(frozen=True)
class ScaledSchedule(Schedule):
    """A schedule that multiplies every base rate by the same ``factor(step)``."""

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def rates(self, step: int, base_lrs: Sequence[float]) -> list[float]:
        f = self.factor(step)
        return [base * f for base in base_lrs]

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        factor = self.factor

        def evaluate(step: int) -> tuple[list[float], None]:
            f = factor(step)
            return [base * f for base in base_lrs], None

        return evaluate


def bind(source: Any, base_lrs: tuple[float, ...]) -> Evaluate:
    """The evaluator of a schedule or of a stateful rate source (plateau, torch pass-through)."""
    method = getattr(source, "bind", None)
    return method(base_lrs) if method is not None else bind_generic(source, base_lrs)


def bind_generic(source: Any, base_lrs: tuple[float, ...]) -> Evaluate:
    """An evaluator built from ``source.rates`` and ``source.momenta``."""
    rates, momenta = source.rates, source.momenta
    if source.cycles_momentum:
        return lambda step: (rates(step, base_lrs), momenta(step))
    return lambda step: (rates(step, base_lrs), None)


def _plain(value: Any) -> Any:
    if hasattr(value, "describe"):  # schedules and stateful rate sources
        return value.describe()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
