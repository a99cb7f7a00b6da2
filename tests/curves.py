"""Recording learning-rate trajectories and comparing them step by step.

:func:`record` drives a scheduler for a number of optimizer steps and keeps, at every step,
what ``get_last_lr()`` returns, what the optimizer's param groups hold, and each group's
momentum (``momentum`` for SGD-like optimizers, ``betas[0]`` for the Adam family).
:func:`assert_same_curve` compares two recordings value by value and names the first step,
group and series where they part, so a failure reads as "step 57, group 2: 0.031 vs 0.030".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

SERIES = ("get_last_lr()", "param_groups lr", "momentum")


@dataclass
class Curve:
    """One recorded trajectory: per step, one value per param group for each series."""

    last_lr: list[list[float]] = field(default_factory=list)
    group_lr: list[list[float]] = field(default_factory=list)
    momentum: list[list[float | None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.group_lr)

    def series(self) -> dict[str, list[list[Any]]]:
        return dict(zip(SERIES, (self.last_lr, self.group_lr, self.momentum), strict=True))

    def lrs(self, group: int = 0) -> list[float]:
        """The param-group rate of ``group`` at every step."""
        return [row[group] for row in self.group_lr]

    def __getitem__(self, steps: slice) -> Curve:
        return Curve(self.last_lr[steps], self.group_lr[steps], self.momentum[steps])


def group_momentum(group: dict[str, Any]) -> float | None:
    """The momentum a scheduler cycles: ``betas[0]`` (Adam family), ``momentum`` (SGD) or None."""
    if "betas" in group:
        return float(group["betas"][0])
    if "momentum" in group:
        return float(group["momentum"])
    return None


def snapshot(scheduler: Any, optimizer: Any, curve: Curve) -> None:
    """Append the current step's rates and momenta to ``curve``."""
    curve.last_lr.append([float(lr) for lr in scheduler.get_last_lr()])
    curve.group_lr.append([float(g["lr"]) for g in optimizer.param_groups])
    curve.momentum.append([group_momentum(g) for g in optimizer.param_groups])


def record(
    scheduler: Any,
    optimizer: Any,
    steps: int,
    advance: Callable[[int], None] | None = None,
) -> Curve:
    """The trajectory of steps ``0 .. steps - 1``.

    Step 0 is the state right after construction; between the snapshots of step ``k`` and
    ``k + 1``, ``advance(k)`` runs (by default ``scheduler.step()``).
    """
    advance = advance or (lambda _k: scheduler.step())
    curve = Curve()
    for k in range(steps):
        snapshot(scheduler, optimizer, curve)
        if k + 1 < steps:
            advance(k)
    return curve


def curve_of(
    rates: Sequence[Sequence[float]], momenta: Sequence[Sequence[float | None]] | None = None
) -> Curve:
    """An expected :class:`Curve` from per-step rates (both lr series) and optional momenta."""
    rows = [[float(v) for v in row] for row in rates]
    moms = (
        [list(row) for row in momenta] if momenta is not None else [[None] * len(r) for r in rows]
    )
    return Curve([list(r) for r in rows], [list(r) for r in rows], moms)


def close(a: float | None, b: float | None, rel: float, abs_tol: float) -> bool:
    """``|a - b| <= max(rel * max(|a|, |b|), abs_tol)``.

    ``abs_tol`` only decides for values smaller than ``abs_tol / rel``: with the usual
    ``abs_tol = 1e-12 * max(base rates)`` and ``rel = 1e-9``, values below 1e-3 of the largest
    base rate, where a decay reaches or crosses zero and float cancellation leaves noise that
    no relative bound can absorb (torch's recursive ``LinearLR`` ends at ~1e-17, not 0).
    """
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return False
    return a == b or abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_tol)


def first_difference(
    ours: Curve, ref: Curve, rel: float = 1e-9, abs_tol: float = 0.0, momentum: bool = True
) -> str | None:
    """A description of the first value where the curves differ, or None when they agree."""
    if len(ours) != len(ref):
        return f"lengths differ: ours has {len(ours)} steps, the reference {len(ref)}"
    theirs = ref.series()
    for name, rows in ours.series().items():
        if name == "momentum" and not momentum:
            continue
        bad = []
        for step, (row, ref_row) in enumerate(zip(rows, theirs[name], strict=True)):
            if len(row) != len(ref_row):
                return f"{name}: step {step} has {len(row)} groups, the reference {len(ref_row)}"
            for group, (a, b) in enumerate(zip(row, ref_row, strict=True)):
                if not close(a, b, rel, abs_tol):
                    bad.append((step, group, a, b))
        if bad:
            step, group, a, b = bad[0]
            err = ""
            if a is not None and b is not None and max(abs(a), abs(b)) > 0:
                err = f", rel. error {abs(a - b) / max(abs(a), abs(b)):.3g}"
            return (
                f"{name}: first difference at step {step}, group {group}: "
                f"ours={a!r}, reference={b!r}{err} "
                f"({len(bad)} value(s) differ over {len(rows)} steps)"
            )
    return None


def assert_same_curve(
    ours: Curve,
    ref: Curve,
    rel: float = 1e-9,
    abs_tol: float = 0.0,
    *,
    momentum: bool = True,
    context: str = "",
) -> None:
    """Fail with the first differing step unless every value agrees within tolerance.

    ``rel`` bounds the relative error of each value; ``abs_tol`` is an absolute slack for
    values at or near zero (keep it tiny, e.g. ``1e-12 * max(base rates)``). ``momentum=False``
    skips the momentum series.
    """
    problem = first_difference(ours, ref, rel, abs_tol, momentum)
    if problem is not None:
        raise AssertionError(f"{context}: {problem}" if context else problem)
