"""Any torch ``LRScheduler`` by class path, driven on a private copy of the param groups.

The torch scheduler runs on a shadow optimizer holding one dummy parameter per group with the
same hyperparameters, so it can be stepped, saved and restored exactly as torch intends, while
our adapter adds the warmup prefix and writes the rates into the real optimizer.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

_GROUP_SKIP = ("params",)


def import_scheduler_class(target: Any, key: str) -> type:
    """Resolve ``_target_`` (a class or ``"package.module.Class"``) to an LRScheduler class."""
    from ..errors import ConfigError

    cls = target
    if isinstance(target, str):
        module_name, _, attr = target.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError):
            raise ConfigError(
                key, target, "must be the import path of a torch.optim.lr_scheduler class"
            ) from None
    if not (isinstance(cls, type) and issubclass(cls, LRScheduler)):
        raise ConfigError(
            key, target, "must name a subclass of torch.optim.lr_scheduler.LRScheduler"
        )
    if issubclass(cls, ReduceLROnPlateau):
        raise ConfigError(key, target, "use name=plateau for reduce-on-plateau")
    return cls


class TorchSchedulerSource:
    """A torch scheduler stepped in lockstep with our step count, on shadow param groups."""

    def __init__(
        self, cls: type, kwargs: dict[str, Any], optimizer: Optimizer, base_lrs: Any
    ) -> None:
        self.cls = cls
        self.kwargs = kwargs
        groups = []
        for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
            copy = {k: v for k, v in group.items() if k not in _GROUP_SKIP}
            copy["lr"] = float(lr)
            copy["params"] = [torch.zeros(1, requires_grad=True)]
            groups.append(copy)
        self.shadow = Optimizer(groups, dict(optimizer.defaults))
        self.shadow._opt_called = True  # type: ignore[attr-defined]  # silences torch's order check
        self.scheduler = cls(self.shadow, **kwargs)
        self.t = 0

    @property
    def cycles_momentum(self) -> bool:
        return bool(getattr(self.scheduler, "cycle_momentum", False))

    def _advance(self, step: int) -> None:
        if step < self.t:
            raise RuntimeError(
                f"a torch pass-through scheduler cannot go back from step {self.t} to {step}"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            while self.t < step:
                self.scheduler.step()
                self.t += 1

    def rates(self, step: int, base_lrs: Any) -> list[float]:
        self._advance(step)
        return [float(group["lr"]) for group in self.shadow.param_groups]

    def momenta(self, step: int) -> list[float] | None:
        if not self.cycles_momentum:
            return None
        self._advance(step)
        groups = self.shadow.param_groups
        if "betas" in self.shadow.defaults:
            return [float(group["betas"][0]) for group in groups]
        return [float(group["momentum"]) for group in groups]

    def describe(self) -> dict[str, Any]:
        target = f"{self.cls.__module__}.{self.cls.__qualname__}"
        return {"kind": "torch", "_target_": target, "kwargs": dict(self.kwargs)}

    def state_dict(self) -> dict[str, Any]:
        groups = [
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"}
            for g in self.shadow.param_groups
        ]
        return {"t": self.t, "scheduler": self.scheduler.state_dict(), "groups": groups}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for group, saved in zip(self.shadow.param_groups, state["groups"], strict=True):
            for key, value in saved.items():
                group[key] = tuple(value) if isinstance(group.get(key), tuple) else value
        self.scheduler.load_state_dict(state["scheduler"])
        self.t = int(state["t"])
