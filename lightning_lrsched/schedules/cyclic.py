"""Cyclical rates and the one-cycle policy: absolute rates per param group, momentum cycled too."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from ..registry import register
from ..spec import GROUP_LR, REST, Reader, param
from .base import Evaluate, Schedule


def _momentum_range(read: Reader) -> dict[str, tuple[float, ...]]:
    """``base_momentum`` and ``max_momentum``, checked against each other and the optimizer."""
    base, high = read["base_momentum"], read["max_momentum"]
    for i, (b, m) in enumerate(zip(base, high, strict=True)):
        if b > m:
            raise read.error("base_momentum", f"must be <= max_momentum ({m}) for group {i}", b)
    if read["cycle_momentum"] and read.ctx.momentum_kind is None:
        optimizer = read.ctx.optimizer
        name = type(optimizer).__name__ if optimizer is not None else "the optimizer"
        raise read.error(
            "cycle_momentum",
            f"{name} has neither momentum nor betas; set cycle_momentum=false",
            True,
        )
    return {"base_momentum": base, "max_momentum": high}


def _momentum_params(base: float, high: float) -> dict[str, object]:
    """The momentum parameters cyclic and onecycle share (defaults differ, as in torch)."""
    return {
        "cycle_momentum": param("flag", "cycle momentum (Adam: beta1) against the rate", True),
        "base_momentum": param("per_group", "momentum at the peak rate", base, ge=0.0, le=1.0),
        "max_momentum": param("per_group", "momentum at the lowest rate", high, ge=0.0, le=1.0),
    }


def _per_group(value: float | tuple[float, ...], groups: int) -> tuple[float, ...]:
    """A per-group value as one number per group (a plain number, as a dataclass default is)."""
    return value if isinstance(value, tuple) else (float(value),) * groups


# torch's defaults differ between the two (and a field object must not serve two classes)
_CYCLIC_MOMENTUM = _momentum_params(0.8, 0.9)
_ONECYCLE_MOMENTUM = _momentum_params(0.85, 0.95)


@register
@dataclass(frozen=True, kw_only=True)
class Cyclic(Schedule):
    """Triangle waves between base_lr and max_lr, momentum opposite.

    With ``S = step_size_up + step_size_down``, ``cycle = floor(1 + t / S)``,
    ``x = 1 + t / S - cycle`` and ``r = step_size_up / S``, the position in the cycle is
    ``h = x / r`` going up and ``(x - 1) / (r - 1)`` going down, and
    ``lr = base_lr + (max_lr - base_lr) * h * scale`` where ``scale`` is 1 (``triangular``),
    ``1 / 2 ** (cycle - 1)`` (``triangular2``) or ``gamma ** t`` (``exp_range``).
    Momentum moves the other way: ``m = max_momentum - (max_momentum - base_momentum) * h * scale``.

    >>> from lightning_lrsched.schedules.base import rates_at
    >>> s = Cyclic(base_lr=(0.1,), max_lr=(0.5,), step_size_up=2, cycle_momentum=False)
    >>> [round(rates_at(s, t)[0], 6) for t in range(5)]
    [0.1, 0.3, 0.5, 0.3, 0.1]
    """

    name = "cyclic"
    reference = "torch CyclicLR"
    max_lr: tuple[float, ...] = param(
        "per_group", "the rate at the top of a cycle", ge=0.0, example=0.01
    )
    base_lr: tuple[float, ...] | None = param(
        "per_group", "the rate at the bottom of a cycle", GROUP_LR, ge=0.0, example=0.001
    )
    step_size_up: int = param("duration", "steps from bottom to top", 2000, example="1ep")
    step_size_down: int | None = param(
        "duration", "steps from top to bottom", None, shown="step_size_up"
    )
    mode: str = param(
        "choice",
        "how the amplitude evolves",
        "triangular",
        choices=("triangular", "triangular2", "exp_range"),
    )
    gamma: float = param("number", "exp_range: amplitude factor per step", 1.0, gt=0.0)
    cycle_momentum: bool = _CYCLIC_MOMENTUM["cycle_momentum"]
    base_momentum: tuple[float, ...] = _CYCLIC_MOMENTUM["base_momentum"]
    max_momentum: tuple[float, ...] = _CYCLIC_MOMENTUM["max_momentum"]

    @classmethod
    def resolve(cls, read: Reader) -> Cyclic:
        values = read.values()
        lows = values["base_lr"] or read.ctx.base_lrs
        for i, (low, high) in enumerate(zip(lows, values["max_lr"], strict=True)):
            if high < low:
                raise read.error("max_lr", f"must be >= base_lr ({low}) for group {i}", high)
        if all(low == high for low, high in zip(lows, values["max_lr"], strict=True)):
            warnings.warn(
                f"cyclic: max_lr equals base_lr ({', '.join(map(str, lows))}): the rate never "
                "changes; set base_lr below max_lr (base_lr defaults to the optimizer's rate)",
                UserWarning,
                stacklevel=2,
            )
        values.update(_momentum_range(read))
        return cls(**values)

    @property
    def cycles_momentum(self) -> bool:  # type: ignore[override]
        return self.cycle_momentum

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        # Per-group lows and amplitudes are fixed: only the position moves with the step.
        up = float(self.step_size_up)
        down = float(self.step_size_up if self.step_size_down is None else self.step_size_down)
        total_size = up + down
        step_ratio = up / total_size
        mode, gamma = self.mode, self.gamma
        lows = base_lrs if self.base_lr is None else self.base_lr
        lr_pairs = [(low, high - low) for low, high in zip(lows, self.max_lr, strict=True)]
        groups = len(base_lrs)
        momentum_pairs = [
            (high, high - low)
            for low, high in zip(
                _per_group(self.base_momentum, groups),
                _per_group(self.max_momentum, groups),
                strict=True,
            )
        ]
        cycle_momentum = self.cycle_momentum

        def evaluate(step: int) -> tuple[list[float], list[float] | None]:
            cycle = math.floor(1 + step / total_size)
            x = 1.0 + step / total_size - cycle
            height = x / step_ratio if x <= step_ratio else (x - 1) / (step_ratio - 1)
            if mode == "triangular":
                scale = 1.0
            elif mode == "triangular2":
                scale = 1 / (2.0 ** (cycle - 1))
            else:  # "exp_range" scales by iterations, not cycles
                scale = gamma**step
            shift = height * scale
            lrs = [low + amplitude * shift for low, amplitude in lr_pairs]
            if not cycle_momentum:
                return lrs, None
            return lrs, [high - amplitude * shift for high, amplitude in momentum_pairs]

        return evaluate


@register
@dataclass(frozen=True, kw_only=True)
class OneCycle(Schedule):
    """Warm up to max_lr, anneal far below it; momentum opposite.

    From ``initial = max_lr / div_factor`` up to ``max_lr`` over the first ``pct_start`` of the
    ``total_steps``, then down to ``initial / final_div_factor`` (two phases), or back to
    ``initial`` and then down (``three_phase``). Each phase anneals with ``cos``:
    ``end + (start - end) * (1 + cos(pi * p)) / 2`` or ``linear``: ``start + (end - start) * p``.
    Momentum (or Adam's beta1) goes ``max → base → max``. After ``total_steps`` the rate stays at
    its final value (torch raises instead).

    >>> from lightning_lrsched.schedules.base import rates_at
    >>> s = OneCycle(max_lr=(1.0,), total_steps=10, pct_start=0.5, anneal_strategy="linear",
    ...              div_factor=10.0, final_div_factor=10.0, cycle_momentum=False)
    >>> [round(rates_at(s, t)[0], 4) for t in (0, 2, 4, 9)]
    [0.1, 0.55, 1.0, 0.01]
    """

    name = "onecycle"
    reference = "torch OneCycleLR"
    max_lr: tuple[float, ...] | None = param("per_group", "the peak rate", GROUP_LR, ge=0.0)
    total_steps: int = param("duration", "length of the cycle", REST)
    pct_start: float = param("number", "share of the cycle spent rising", 0.3, gt=0.0, lt=1.0)
    anneal_strategy: str = param("choice", "shape of each phase", "cos", choices=("cos", "linear"))
    div_factor: float = param("number", "initial rate = max_lr / div_factor", 25.0, gt=0.0)
    final_div_factor: float = param(
        "number", "final rate = initial rate / final_div_factor", 1e4, gt=0.0
    )
    three_phase: bool = param("flag", "come back to the initial rate before the final decay", False)
    cycle_momentum: bool = _ONECYCLE_MOMENTUM["cycle_momentum"]
    base_momentum: tuple[float, ...] = _ONECYCLE_MOMENTUM["base_momentum"]
    max_momentum: tuple[float, ...] = _ONECYCLE_MOMENTUM["max_momentum"]

    @classmethod
    def resolve(cls, read: Reader) -> OneCycle:
        values = read.values()
        total, pct_start = values["total_steps"], values["pct_start"]
        if pct_start * total <= 1:
            raise read.error(
                "pct_start",
                f"leaves no step to warm up in {total} steps; needs pct_start * total_steps > 1",
                pct_start,
            )
        if values["three_phase"] and total * (1 - 2 * pct_start) + 1 <= 0:
            raise read.error("pct_start", "must be <= 0.5 with three_phase=true", pct_start)
        values.update(_momentum_range(read))
        return cls(**values)

    @property
    def cycles_momentum(self) -> bool:  # type: ignore[override]
        return self.cycle_momentum

    def _phase_ends(self) -> list[float]:
        ends = [float(self.pct_start * self.total_steps) - 1]
        if self.three_phase:
            ends.append(float(2 * self.pct_start * self.total_steps) - 2)
        ends.append(self.total_steps - 1)
        return ends

    def _lr_ends(self, phase: int, peak: float) -> tuple[float, float]:
        initial = peak / self.div_factor
        if phase == 0:
            return initial, peak
        if self.three_phase and phase == 1:
            return peak, initial
        return (initial if self.three_phase else peak), initial / self.final_div_factor

    def _momentum_ends(self, phase: int, low: float, high: float) -> tuple[float, float]:
        if phase == 0:
            return high, low
        if self.three_phase and phase == 2:
            return high, high
        return low, high

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        # Per phase and group, the two constants of the anneal formula, in torch's order of
        # operations: cos: end + (start - end) / 2 * (cos(pi p) + 1); linear: (end - start) * p
        # + start. Only the phase and the progress within it depend on the step.
        peaks = base_lrs if self.max_lr is None else self.max_lr
        ends = self._phase_ends()
        starts = [0.0, *ends[:-1]]
        last_step = self.total_steps - 1
        cosine = self.anneal_strategy == "cos"

        def constants(pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
            if cosine:
                return [(end, (start - end) / 2.0) for start, end in pairs]
            return [(start, end - start) for start, end in pairs]

        phases = range(len(ends))
        lr_table = [constants([self._lr_ends(p, peak) for peak in peaks]) for p in phases]
        groups = len(base_lrs)
        momenta = list(
            zip(
                _per_group(self.base_momentum, groups),
                _per_group(self.max_momentum, groups),
                strict=True,
            )
        )
        momentum_table = [
            constants([self._momentum_ends(p, low, high) for low, high in momenta]) for p in phases
        ]
        cycle_momentum = self.cycle_momentum

        def evaluate(step: int) -> tuple[list[float], list[float] | None]:
            step = min(step, last_step)  # the final rate holds after the cycle
            phase = 0
            while step > ends[phase] and phase < len(ends) - 1:
                phase += 1
            pct = (step - starts[phase]) / (ends[phase] - starts[phase])
            shape = math.cos(math.pi * pct) + 1 if cosine else pct
            lrs = [offset + scale * shape for offset, scale in lr_table[phase]]
            if not cycle_momentum:
                return lrs, None
            return lrs, [offset + scale * shape for offset, scale in momentum_table[phase]]

        return evaluate
