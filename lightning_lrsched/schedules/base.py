"""The schedule interface: a pure function of the step, evaluated for all param groups at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: ``rates(step, base_lrs)`` in closed form, no state.

    ``step`` counts optimizer steps from the schedule's own start (0 = the first step).
    ``base_lrs`` are the param groups' configured rates. Schedules that cycle momentum return
    one value per group from :meth:`momenta`; others return ``None`` (leave momentum alone).
    """

    kind: ClassVar[str] = "schedule"
    cycles_momentum: ClassVar[bool] = False

    def rates(self, step: int, base_lrs: Sequence[float]) -> list[float]:
        raise NotImplementedError

    def momenta(self, step: int) -> list[float] | None:
        return None

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


def _plain(value: Any) -> Any:
    if hasattr(value, "describe"):  # schedules and stateful rate sources
        return value.describe()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
