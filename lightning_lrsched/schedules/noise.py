"""Deterministic noise on the rate, as timm's schedulers add it (``noise_range``, ``noise_pct``,
``noise_std``, ``noise_seed``, ``noise_type``: keys every strategy takes).

The noise of step ``t`` is drawn from a fresh ``torch.Generator`` seeded with
``noise_seed + t``: a closed-form function of the step, so every rank draws the same value and
a resumed run the same as an uninterrupted one, with no state to save.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .base import Evaluate, RateSource, Schedule


def step_noise(step: int, *, seed: int, kind: str, pct: float, std: float) -> float:
    """timm's ``Scheduler._calculate_noise`` for step ``step``.

    ``normal``: ``randn * std``, drawn again until ``|noise| < pct``; ``uniform``:
    ``2 * (rand - 0.5) * pct``, in ``[-pct, pct)``. Drawn in float32 whatever torch's default
    dtype is, so that every process agrees.

    >>> round(step_noise(0, seed=42, kind="uniform", pct=0.5, std=1.0), 6)
    0.382269
    """
    import torch  # imported when a noisy schedule runs, not to list strategies

    generator = torch.Generator()
    generator.manual_seed(seed + step)
    if kind == "normal":
        while True:  # timm's rejection loop; the registry refuses bounds it would spin on
            noise = torch.randn(1, generator=generator, dtype=torch.float32).item() * std
            if abs(noise) < pct:
                return noise
    return 2 * (torch.rand(1, generator=generator, dtype=torch.float32).item() - 0.5) * pct


def normal_acceptance(pct: float, std: float) -> float:
    """The chance that one normal draw lands within ``±pct`` (timm draws until one does)."""
    return math.erf(pct / (std * math.sqrt(2.0)))


@dataclass(frozen=True, kw_only=True)
class Noise(Schedule):
    """``inner``'s rates times ``(1 + noise(t))`` for ``start <= t < end`` (``end`` None: no
    end), with ``noise(t)`` from :func:`step_noise`; momentum untouched.

    Exactly timm's ``Scheduler._add_noise`` (``lr + lr * noise``) with ``noise_range_t``, in
    optimizer steps counted from the first step of training (the warmup included), as timm
    counts updates with ``t_in_epochs=False``: step ``t``'s rate is what timm's
    ``step_update(num_updates=t)`` writes. (timm's constructor writes update 0's rate without
    noise and its training loop first calls ``step_update(1)``; a range that starts at 0 makes
    step 0 noisy here, as ``step_update(0)`` does there.)

    >>> from lightning_lrsched.schedules.base import rates_at
    >>> from lightning_lrsched.schedules.decay import Constant
    >>> n = Noise(inner=Constant(), start=1, end=3, pct=0.5, std=1.0, seed=42, kind="uniform")
    >>> [round(rates_at(n, t)[0], 6) for t in range(4)]
    [1.0, 0.953968, 1.21959, 1.0]
    """

    name = "noise"
    inner: RateSource
    start: int
    end: int | None
    pct: float
    std: float
    seed: int
    kind: str

    @property
    def cycles_momentum(self) -> bool:  # type: ignore[override]
        return self.inner.cycles_momentum

    def applies(self, step: int) -> bool:
        """timm's ``_is_apply_noise``: ``start <= t < end``, or ``t >= start``."""
        return self.start <= step and (self.end is None or step < self.end)

    def noise(self, step: int) -> float:
        return step_noise(step, seed=self.seed, kind=self.kind, pct=self.pct, std=self.std)

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        inner = self.inner.bind(base_lrs)
        applies, noise = self.applies, self.noise

        def evaluate(step: int) -> tuple[list[float], list[float] | None]:
            lrs, momenta = inner(step)
            if not applies(step):
                return lrs, momenta
            n = noise(step)
            return [lr + lr * n for lr in lrs], momenta

        return evaluate

    def describe(self) -> dict[str, Any]:
        """The inner source's description with a ``noise`` entry: the strategy still reads as
        itself (behind its warmup), and the noise settings are part of the fingerprint."""
        out = dict(self.inner.describe())
        out["noise"] = {
            "range": [self.start, self.end],
            "pct": self.pct,
            "std": self.std,
            "seed": self.seed,
            "type": self.kind,
        }
        return out
