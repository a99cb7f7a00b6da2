"""Reduce-on-plateau as a controller with a few numbers of explicit, versioned state.

The decision rule is torch's ``ReduceLROnPlateau``: a value is an improvement when it beats
the best so far by ``threshold`` (relative or absolute); after more than ``patience``
values without one, every group's rate becomes ``max(lr * factor, min_lr)`` (unless that
changes it by less than ``eps``), then ``cooldown`` values are ignored.

With ``warm_restart`` the same rule lowers the *peak* of a cosine cycle instead and starts a
new cycle at the step of the decision (see :class:`Plateau`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import HorizonError
from ..registry import register
from ..spec import Reader, param
from .base import Evaluate, Strategy

# 2: adds ``restart_step`` (warm restarts). Format 1 states (no warm restarts) still load.
PLATEAU_STATE_FORMAT = 2
PLATEAU_STATE_FORMATS = (1, 2)


@register
@dataclass(kw_only=True)
class Plateau(Strategy):
    """Multiply by factor when the monitored metric stops improving (warm_restart: restart a
    cosine from a lowered peak).

    Metric-driven: ``update(value, step)`` records one value of ``monitor`` and may reduce the
    rates; in Lightning the value is read at the end of each validation (``check_on:
    train_epoch``: of each training epoch; a metric logged per training step, such as
    ``train_loss``, always at the epoch's end, as its epoch mean) and averaged across ranks.

    >>> c = Plateau(factor=0.5, patience=1, threshold=0.0, threshold_mode="abs", min_lr=(0.0,),
    ...             lrs=[1.0])
    >>> for loss in [3.0, 2.0, 2.0, 2.0, 2.0]:
    ...     _ = c.update(loss)
    >>> c.lrs
    [0.5]

    **Warm restarts** (``warm_restart: true``): the rate follows a half-cosine from the current
    cycle's peak ``p`` (per group; at first the base rate) down to ``min_lr`` over ``L`` steps,
    then stays at ``min_lr``. With ``r`` the step at which the cycle began (0 at first) and
    ``tau = min(t - r, L)``::

        lr(t) = min_lr + (p - min_lr) * (1 + cos(pi * tau / L)) / 2

    When the plateau rule fires (``patience``, ``threshold``, ``threshold_mode``,
    ``cooldown`` and ``eps`` exactly as without restarts) at step ``s``, the peak becomes
    ``max(p * factor, min_lr)`` and a new cycle starts there: ``r = s``, so ``lr(s)`` is the new
    peak. ``L`` is ``restart_period``; unset, every cycle ends at the end of training
    (``L = horizon - r``), so that without a plateau the curve is exactly ``cosine`` with
    ``eta_min = min_lr`` and, whatever the restarts, training ends annealed to ``min_lr``. A
    cycle that reached ``min_lr`` stays there: the metric, not a clock, decides the next
    restart (a clock would be ``cosine_restarts``). Steps count from the end of the warmup.
    The state is the peaks and ``r``, so the rate of any later step is closed-form.

    >>> from lightning_lrsched.schedules.base import rates_at
    >>> c = Plateau(factor=0.5, patience=0, threshold=0.0, threshold_mode="abs",
    ...             min_lr=(0.0,), warm_restart=True, restart_period=4, lrs=[1.0])
    >>> [rates_at(c, t)[0] for t in (0, 2, 4, 6)]
    [1.0, 0.5, 0.0, 0.0]
    >>> c.update(2.0, step=6), c.update(2.0, step=7)  # the 2nd is no better: restart at 7
    (False, True)
    >>> [rates_at(c, t)[0] for t in (7, 9, 11)]
    [0.5, 0.25, 0.0]
    """

    name = "plateau"
    reference = "torch ReduceLROnPlateau"
    # the packaged option warms up, so its curve moves before the first plateau too
    EXAMPLE_KWARGS: ClassVar[dict[str, Any]] = {"warmup": "5%"}
    nestable = False
    cycles_momentum = False
    monitor: str = param("text", "the metric to watch", "val_loss")
    mode: str = param("choice", "whether lower or higher is better", "min", choices=("min", "max"))
    factor: float = param("number", "multiplies the rate on a plateau", 0.1, gt=0.0, lt=1.0)
    patience: int = param("integer", "values without improvement before reducing", 10, example=2)
    threshold: float = param("number", "smallest change that counts", 1e-4, ge=0.0)
    threshold_mode: str = param(
        "choice", "threshold relative or absolute", "rel", choices=("rel", "abs")
    )
    cooldown: int = param("integer", "values ignored after a reduction", 0)
    min_lr: tuple[float, ...] = param(
        "per_group", "the lowest rate (or one per group)", 0.0, ge=0.0
    )
    eps: float = param("number", "smallest reduction applied", 1e-8, ge=0.0)
    check_on: str = param(
        "choice",
        "when the metric is read in Lightning",
        "validation",
        choices=("validation", "train_epoch"),
    )
    strict: bool = param(
        "flag", "a monitor that is never logged is an error (else a warning)", True
    )
    warm_restart: bool = param(
        "flag", "cosine down to min_lr; a plateau restarts it from peak * factor", False
    )
    restart_period: int | None = param(
        "duration",
        "length of each cosine cycle (warm_restart only)",
        None,
        shown="end of training",
    )
    # resolved from the training's length: where every cycle ends when restart_period is unset
    horizon: int | None = None
    # state
    lrs: list[float] = field(default_factory=list)  # the rates; with warm_restart, the peaks
    best: float = field(init=False)
    num_bad_epochs: int = 0
    cooldown_counter: int = 0
    num_updates: int = 0
    restart_step: int = 0  # warm_restart: the step at which the current cycle began

    @classmethod
    def resolve(cls, read: Reader) -> Plateau:
        if not read.raw("warm_restart") and read.given("restart_period"):
            # refused, not ignored: a cycle length that does nothing hides a forgotten flag
            raise read.error("restart_period", "needs warm_restart: true")
        values = read.values()
        horizon = None
        if values["warm_restart"] and values["restart_period"] is None:
            if read.ctx.rest is None:
                raise HorizonError(
                    read.key("restart_period"),
                    None,
                    "defaults to the rest of training, which is unknown here; "
                    "pass total_steps= or set it explicitly",
                )
            horizon = read.ctx.rest
        return cls(**values, horizon=horizon, lrs=list(read.ctx.base_lrs))

    def __post_init__(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        if isinstance(self.min_lr, int | float):  # a plain number, as the dataclass default
            self.min_lr = (float(self.min_lr),) * len(self.lrs)
        if self.warm_restart and self.restart_period is None and self.horizon is None:
            raise ValueError("warm_restart needs restart_period or the horizon (training steps)")

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        # reads the state at every call: a decision changes the rates of the steps after it
        if not self.warm_restart:
            return lambda step: (list(self.lrs), None)
        return lambda step: (self.cycle_rates(step), None)

    def cycle_length(self) -> int:
        """``L``: ``restart_period``, else the steps from the last restart to the horizon."""
        if self.restart_period is not None:
            return self.restart_period
        assert self.horizon is not None  # checked on construction
        return max(1, self.horizon - self.restart_step)

    def cycle_rates(self, step: int) -> list[float]:
        """The warm-restart rates of ``step`` (at or after the current cycle's start)."""
        length = self.cycle_length()
        tau = min(max(0, step - self.restart_step), length)
        share = (1.0 + math.cos(math.pi * tau / length)) / 2.0
        return [low + (peak - low) * share for peak, low in zip(self.lrs, self.min_lr, strict=True)]

    def describe(self) -> dict[str, Any]:
        described = {name: getattr(self, name) for name in self.params()}
        described["min_lr"] = list(self.min_lr)
        # check_on and strict say when and how strictly the metric is read, not the plan
        del described["check_on"], described["strict"]
        if self.warm_restart:
            described["horizon"] = self.horizon
        else:  # as before warm restarts existed: checkpoints of those versions still resume
            del described["warm_restart"], described["restart_period"]
        return {"kind": self.name, **described}

    def is_better(self, value: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return value < self.best * (1.0 - self.threshold)
        if self.mode == "min":
            return value < self.best - self.threshold
        if self.threshold_mode == "rel":
            return value > self.best * (self.threshold + 1.0)
        return value > self.best + self.threshold

    def update(self, value: float, step: int | None = None) -> bool:
        """Record one monitored value, seen at ``step`` (optimizer steps after the warmup;
        needed with ``warm_restart``, where a new cycle starts there); return True when the
        rule fired (the rates, or the peaks, were reduced)."""
        if self.warm_restart and step is None:
            raise TypeError("a plateau with warm_restart needs the step: update(value, step)")
        self.num_updates += 1
        if self.is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad values during cooldown do not count
        if self.num_bad_epochs <= self.patience:
            return False
        for i, old in enumerate(self.lrs):
            new = max(old * self.factor, self.min_lr[i])
            if old - new > self.eps:
                self.lrs[i] = new
        if self.warm_restart:
            assert step is not None
            self.restart_step = step
        self.cooldown_counter = self.cooldown
        self.num_bad_epochs = 0
        return True

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": PLATEAU_STATE_FORMAT,
            "lrs": list(self.lrs),
            "best": self.best,
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
            "num_updates": self.num_updates,
            "restart_step": self.restart_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") not in PLATEAU_STATE_FORMATS:
            raise ValueError(f"plateau state has unknown format {state.get('format')!r}")
        self.lrs = [float(lr) for lr in state["lrs"]]
        self.best = float(state["best"])
        self.num_bad_epochs = int(state.get("num_bad_epochs", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))
        self.num_updates = int(state.get("num_updates", 0))
        self.restart_step = int(state.get("restart_step", 0))  # format 1: no restarts
