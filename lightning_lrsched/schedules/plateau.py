"""Reduce-on-plateau as a controller with a few numbers of explicit, versioned state.

The decision rule is torch's ``ReduceLROnPlateau``: a value is an improvement when it beats
the best so far by ``threshold`` (relative or absolute); after more than ``patience``
values without one, every group's rate becomes ``max(lr * factor, min_lr)`` (unless that
changes it by less than ``eps``), then ``cooldown`` values are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..registry import register
from ..spec import Reader, param
from .base import Evaluate, Strategy

PLATEAU_STATE_FORMAT = 1


@register
@dataclass(kw_only=True)
class Plateau(Strategy):
    """Multiply by factor when the monitored metric stops improving.

    Metric-driven: ``update(value)`` records one value of ``monitor`` and may reduce the rates;
    in Lightning the value is read at the end of each validation (``check_on: train_epoch``: of
    each training epoch; a metric logged per training step, such as ``train_loss``, always at the
    epoch's end, as its epoch mean) and averaged across ranks.

    >>> c = Plateau(factor=0.5, patience=1, threshold=0.0, threshold_mode="abs", min_lr=(0.0,),
    ...             lrs=[1.0])
    >>> for loss in [3.0, 2.0, 2.0, 2.0, 2.0]:
    ...     _ = c.update(loss)
    >>> c.lrs
    [0.5]
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
    # state
    lrs: list[float] = field(default_factory=list)
    best: float = field(init=False)
    num_bad_epochs: int = 0
    cooldown_counter: int = 0
    num_updates: int = 0

    @classmethod
    def resolve(cls, read: Reader) -> Plateau:
        return cls(**read.values(), lrs=list(read.ctx.base_lrs))

    def __post_init__(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        if isinstance(self.min_lr, int | float):  # a plain number, as the dataclass default
            self.min_lr = (float(self.min_lr),) * len(self.lrs)

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        return lambda step: (list(self.lrs), None)

    def describe(self) -> dict[str, Any]:
        described = {name: getattr(self, name) for name in self.params()}
        described["min_lr"] = list(self.min_lr)
        # check_on and strict say when and how strictly the metric is read, not the plan
        del described["check_on"], described["strict"]
        return {"kind": self.name, **described}

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
            new = max(old * self.factor, self.min_lr[i])
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
