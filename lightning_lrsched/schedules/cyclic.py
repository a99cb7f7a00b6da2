"""Cyclical rates and the one-cycle policy: absolute rates per param group, momentum cycled too."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .base import Evaluate, Schedule


@dataclass(frozen=True)
class Cyclic(Schedule):
    """Cyclical learning rate (Smith 2017; torch ``CyclicLR``).

    With ``S = step_size_up + step_size_down``, ``cycle = floor(1 + t / S)``,
    ``x = 1 + t / S - cycle`` and ``r = step_size_up / S``, the position in the cycle is
    ``h = x / r`` going up and ``(x - 1) / (r - 1)`` going down, and
    ``lr = base_lr + (max_lr - base_lr) * h * scale`` where ``scale`` is 1 (``triangular``),
    ``1 / 2 ** (cycle - 1)`` (``triangular2``) or ``gamma ** t`` (``exp_range``).
    Momentum moves the other way: ``m = max_momentum - (max_momentum - base_momentum) * h * scale``.
    ``base_lrs`` of ``None`` means "each param group's configured rate".

    >>> s = Cyclic(base_lrs=(0.1,), max_lrs=(0.5,), step_size_up=2.0, step_size_down=2.0,
    ...            mode="triangular", gamma=1.0, cycle_momentum=False,
    ...            base_momenta=(0.8,), max_momenta=(0.9,))
    >>> [round(s.rates(t, [0.1])[0], 6) for t in range(5)]
    [0.1, 0.3, 0.5, 0.3, 0.1]
    """

    kind = "cyclic"
    base_lrs: tuple[float, ...] | None
    max_lrs: tuple[float, ...]
    step_size_up: float
    step_size_down: float
    mode: str
    gamma: float
    cycle_momentum: bool
    base_momenta: tuple[float, ...]
    max_momenta: tuple[float, ...]

    @property
    def cycles_momentum(self) -> bool:  # type: ignore[override]
        return self.cycle_momentum

    def _position(self, step: int) -> tuple[float, float]:
        """(height in the cycle, 0..1; scale of this cycle)."""
        total_size = self.step_size_up + self.step_size_down
        step_ratio = self.step_size_up / total_size
        cycle = math.floor(1 + step / total_size)
        x = 1.0 + step / total_size - cycle
        height = x / step_ratio if x <= step_ratio else (x - 1) / (step_ratio - 1)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1 / (2.0 ** (cycle - 1))
        else:  # "exp_range" scales by iterations, not cycles
            scale = self.gamma**step
        return height, scale

    def rates(self, step: int, base_lrs: Sequence[float]) -> list[float]:
        height, scale = self._position(step)
        lows = base_lrs if self.base_lrs is None else self.base_lrs
        return [
            low + (high - low) * height * scale
            for low, high in zip(lows, self.max_lrs, strict=True)
        ]

    def momenta(self, step: int) -> list[float] | None:
        if not self.cycle_momentum:
            return None
        height, scale = self._position(step)
        return [
            high - (high - low) * height * scale
            for low, high in zip(self.base_momenta, self.max_momenta, strict=True)
        ]

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        # Per-group lows and amplitudes are fixed: only the position moves with the step.
        lows = base_lrs if self.base_lrs is None else self.base_lrs
        lr_pairs = [(low, high - low) for low, high in zip(lows, self.max_lrs, strict=True)]
        momentum_pairs = [
            (high, high - low)
            for low, high in zip(self.base_momenta, self.max_momenta, strict=True)
        ]
        position = self._position
        cycle_momentum = self.cycle_momentum

        def evaluate(step: int) -> tuple[list[float], list[float] | None]:
            height, scale = position(step)
            shift = height * scale
            lrs = [low + amplitude * shift for low, amplitude in lr_pairs]
            if not cycle_momentum:
                return lrs, None
            return lrs, [high - amplitude * shift for high, amplitude in momentum_pairs]

        return evaluate


def _anneal_cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _anneal_linear(start: float, end: float, pct: float) -> float:
    return (end - start) * pct + start


@dataclass(frozen=True)
class OneCycle(Schedule):
    """The one-cycle policy (Smith & Topin 2018; torch ``OneCycleLR``).

    From ``initial = max_lr / div_factor`` up to ``max_lr`` over the first ``pct_start`` of the
    ``total_steps``, then down to ``initial / final_div_factor`` (two phases), or back to
    ``initial`` and then down (``three_phase``). Each phase anneals with ``cos``:
    ``end + (start - end) * (1 + cos(pi * p)) / 2`` or ``linear``: ``start + (end - start) * p``.
    Momentum (or Adam's beta1) goes ``max → base → max``. After ``total_steps`` the rate stays at
    its final value (torch raises instead). ``max_lrs`` of ``None`` means "each group's rate".

    >>> s = OneCycle(max_lrs=(1.0,), total_steps=10, pct_start=0.5, anneal_strategy="linear",
    ...              div_factor=10.0, final_div_factor=10.0, three_phase=False,
    ...              cycle_momentum=False, base_momenta=(0.85,), max_momenta=(0.95,))
    >>> [round(s.rates(t, [1.0])[0], 4) for t in (0, 2, 4, 9)]
    [0.1, 0.55, 1.0, 0.01]
    """

    kind = "onecycle"
    max_lrs: tuple[float, ...] | None
    total_steps: int
    pct_start: float
    anneal_strategy: str
    div_factor: float
    final_div_factor: float
    three_phase: bool
    cycle_momentum: bool
    base_momenta: tuple[float, ...]
    max_momenta: tuple[float, ...]

    @property
    def cycles_momentum(self) -> bool:  # type: ignore[override]
        return self.cycle_momentum

    @property
    def _phase_ends(self) -> list[float]:
        ends = [float(self.pct_start * self.total_steps) - 1]
        if self.three_phase:
            ends.append(float(2 * self.pct_start * self.total_steps) - 2)
        ends.append(self.total_steps - 1)
        return ends

    def _phase(self, step: int, ends: list[float] | None = None) -> tuple[int, float]:
        """(index of the phase, progress 0..1 within it), exactly as torch splits the cycle."""
        step = min(step, self.total_steps - 1)
        ends = self._phase_ends if ends is None else ends
        start = 0.0
        for i, end in enumerate(ends):
            if step <= end or i == len(ends) - 1:
                return i, (step - start) / (end - start)
            start = end
        raise AssertionError("unreachable")

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return _anneal_cos(start, end, pct)
        return _anneal_linear(start, end, pct)

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

    def rates(self, step: int, base_lrs: Sequence[float]) -> list[float]:
        phase, pct = self._phase(step)
        peaks = base_lrs if self.max_lrs is None else self.max_lrs
        return [self._anneal(*self._lr_ends(phase, peak), pct) for peak in peaks]

    def momenta(self, step: int) -> list[float] | None:
        if not self.cycle_momentum:
            return None
        phase, pct = self._phase(step)
        return [
            self._anneal(*self._momentum_ends(phase, low, high), pct)
            for low, high in zip(self.base_momenta, self.max_momenta, strict=True)
        ]

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        # Precompute, per phase and group, the two constants of the anneal formula, in torch's
        # order of operations: cos: end + (start - end) / 2 * (cos(pi p) + 1);
        # linear: (end - start) * p + start.
        peaks = base_lrs if self.max_lrs is None else self.max_lrs
        ends = self._phase_ends
        cosine = self.anneal_strategy == "cos"

        def constants(pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
            if cosine:
                return [(end, (start - end) / 2.0) for start, end in pairs]
            return [(start, end - start) for start, end in pairs]

        lr_table = [
            constants([self._lr_ends(phase, peak) for peak in peaks]) for phase in range(len(ends))
        ]
        momentum_table = [
            constants(
                [
                    self._momentum_ends(phase, low, high)
                    for low, high in zip(self.base_momenta, self.max_momenta, strict=True)
                ]
            )
            for phase in range(len(ends))
        ]
        phase_of = self._phase
        cycle_momentum = self.cycle_momentum

        def evaluate(step: int) -> tuple[list[float], list[float] | None]:
            phase, pct = phase_of(step, ends)
            shape = math.cos(math.pi * pct) + 1 if cosine else pct
            lrs = [offset + scale * shape for offset, scale in lr_table[phase]]
            if not cycle_momentum:
                return lrs, None
            return lrs, [offset + scale * shape for offset, scale in momentum_table[phase]]

        return evaluate
