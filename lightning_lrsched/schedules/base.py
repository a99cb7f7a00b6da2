"""Rate sources under one interface, and the base classes strategies are declared with.

Everything the torch adapter drives is a :class:`RateSource`: ``bind(base_lrs)`` returns the
one evaluator of the source, ``step -> (rate per group, momentum per group or None)``, with the
per-group constants computed once. Four kinds, told apart by type, never by attribute probing:

- :class:`Schedule` — stateless, a closed-form function of the step (almost every strategy);
- :class:`Stateful` — carries state that must be checkpointed (the torch pass-through);
- :class:`MetricDriven` — stateful and fed a monitored metric (reduce-on-plateau);
- :class:`GradientDriven` — stateful and asked to adapt to each step's gradients before the
  update (hypergradient descent).

A strategy is a frozen, keyword-only dataclass deriving from :class:`Strategy` and one of these,
whose fields are declared with :func:`lightning_lrsched.spec.param`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..spec import Param, Reader, declared_params

# evaluate(step) -> (rate per group, momentum per group or None to leave momentum alone)
Evaluate = Callable[[int], tuple[list[float], list[float] | None]]


@runtime_checkable
class RateSource(Protocol):
    """What the adapter drives: the rates (and momenta) of any step, for given base rates."""

    @property
    def cycles_momentum(self) -> bool: ...

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate: ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class Stateful(RateSource, Protocol):
    """A rate source whose state must be saved and restored with the scheduler."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class MetricDriven(Stateful, Protocol):
    """A stateful source that decides from a monitored metric (reduce-on-plateau)."""

    monitor: str
    check_on: str  # when Lightning reports the metric: "validation" | "train_epoch"
    strict: bool  # a monitor that is not logged: error (True) or warning

    def update(self, value: float, step: int | None = None) -> bool:
        """Record ``value``, seen at ``step`` (the source's own step count); True: rates changed."""
        ...


@runtime_checkable
class GradientDriven(Stateful, Protocol):
    """A stateful source that sets the rates from each step's gradients (hypergradient).

    ``adapt(optimizer, active)`` runs once per optimizer step, after the backward and before
    the update; ``active`` is False during a warmup (the source then only watches).
    """

    def adapt(self, optimizer: Any, active: bool) -> None: ...


class Strategy:
    """What the registry knows about a strategy class besides its declared parameters."""

    name: ClassVar[str]  # the `name` users write; also the "kind" in descriptions
    reference: ClassVar[str] = ""  # the implementation it is numerically identical to
    nestable: ClassVar[bool] = True  # False: not inside sequence / chain (stateful sources)
    open_keys: ClassVar[bool] = False  # True: takes any keyword (the torch pass-through)

    @classmethod
    def params(cls) -> dict[str, Param]:
        return declared_params(cls)

    @classmethod
    def summary(cls) -> str:
        """The docstring's first sentence, on one line."""
        text = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        return text.rstrip(".")

    @classmethod
    def resolve(cls, read: Reader) -> RateSource:
        """Build the source from validated values; strategies with cross-checks override it."""
        return cls(**read.values())  # type: ignore[return-value]

    @property
    def warmup_start_default(self) -> float:
        """Where a warmup in front of this strategy starts, as a share of its first rate."""
        return 0.0


@dataclass(frozen=True, kw_only=True)
class Schedule(Strategy):
    """A stateless schedule: ``bind`` gives a closed-form evaluator of the step."""

    name: ClassVar[str] = "schedule"
    cycles_momentum: ClassVar[bool] = False

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Plain data naming the schedule and every resolved parameter (for fingerprints)."""
        out: dict[str, Any] = {"kind": self.name}
        for field in fields(self):
            out[field.name] = plain(getattr(self, field.name))
        return out


@dataclass(frozen=True, kw_only=True)
class ScaledSchedule(Schedule):
    """A schedule that multiplies every base rate by one ``factor(step)``: its formula."""

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        factor = self.factor
        if len(base_lrs) == 1:  # the common case, without a loop
            (base,) = base_lrs
            return lambda step: ([base * factor(step)], None)

        def evaluate(step: int) -> tuple[list[float], None]:
            f = factor(step)
            return [base * f for base in base_lrs], None

        return evaluate


def rates_at(source: RateSource, step: int, base_lrs: Sequence[float] = (1.0,)) -> list[float]:
    """The rates of ``step`` for ``base_lrs`` (for docs and tests; the adapter binds once).

    >>> from lightning_lrsched.schedules.decay import Step
    >>> rates_at(Step(step_size=2, gamma=0.5), 5, [0.1, 1.0])
    [0.025, 0.25]
    """
    return source.bind(tuple(base_lrs))(step)[0]


def plain(value: Any) -> Any:
    """Descriptions as plain data: nested sources described, tuples as lists."""
    if isinstance(value, RateSource):
        return value.describe()
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value
