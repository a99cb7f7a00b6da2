"""Reduce-on-plateau as a controller with a few numbers of explicit, versioned state.

The decision rule is torch's ``ReduceLROnPlateau``: a value is an improvement when it beats
the best so far by ``threshold`` (relative or absolute); after more than ``patience``
values without one, every group's rate becomes ``max(lr * factor, min_lr)`` (unless that
changes it by less than ``eps``), then ``cooldown`` values are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PLATEAU_STATE_FORMAT = 1


@dataclass
class PlateauController:
    """Metric-driven rates. ``lrs`` start at the base rates; :meth:`update` may reduce them.

    >>> c = PlateauController(monitor="val_loss", mode="min", factor=0.5, patience=1,
    ...                       threshold=0.0, threshold_mode="abs", cooldown=0,
    ...                       min_lrs=(0.0,), eps=1e-8, lrs=[1.0])
    >>> for loss in [3.0, 2.0, 2.0, 2.0, 2.0]:
    ...     _ = c.update(loss)
    >>> c.lrs
    [0.5]
    """

    monitor: str
    mode: str
    factor: float
    patience: int
    threshold: float
    threshold_mode: str
    cooldown: int
    min_lrs: tuple[float, ...]
    eps: float
    lrs: list[float]
    check_on: str = "validation"  # when Lightning reports the metric: "validation" | "train_epoch"
    strict: bool = True  # a monitor that is not logged: error (True) or warning
    best: float = field(init=False)
    num_bad_epochs: int = 0
    cooldown_counter: int = 0
    num_updates: int = 0
    cycles_momentum = False

    def __post_init__(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf

    # Stateful rate source protocol (see adapter.ScheduleLR)
    def rates(self, step: int, base_lrs: Any) -> list[float]:
        return list(self.lrs)

    def momenta(self, step: int) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "plateau",
            "monitor": self.monitor,
            "mode": self.mode,
            "factor": self.factor,
            "patience": self.patience,
            "threshold": self.threshold,
            "threshold_mode": self.threshold_mode,
            "cooldown": self.cooldown,
            "min_lr": list(self.min_lrs),
            "eps": self.eps,
        }

    def is_better(self, value: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return value < self.best * (1.0 - self.threshold)
        if self.mode == "min":
            return value < self.best - self.threshold
        if self.threshold_mode == "rel":
            return value > self.best * (self.threshold + 1.0)
        return value > self.best + self.threshold

    def update(self, value: float) -> bool:
        """Record one monitored value; return True when the rates were reduced."""
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
            new = max(old * self.factor, self.min_lrs[i])
            if old - new > self.eps:
                self.lrs[i] = new
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
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != PLATEAU_STATE_FORMAT:
            raise ValueError(f"plateau state has unknown format {state.get('format')!r}")
        self.lrs = [float(lr) for lr in state["lrs"]]
        self.best = float(state["best"])
        self.num_bad_epochs = int(state.get("num_bad_epochs", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))
        self.num_updates = int(state.get("num_updates", 0))
