"""Any torch ``LRScheduler`` by class path, driven on a private copy of the param groups.

The torch scheduler runs on a shadow optimizer holding one dummy parameter per group with the
same hyperparameters, so it can be stepped, saved and restored exactly as torch intends, while
our adapter adds the warmup prefix and writes the rates into the real optimizer.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

from ..durations import is_duration_text, resolve_duration
from ..errors import ConfigError
from ..registry import register
from ..spec import COMMON_KEYS, Param, Reader
from .base import Evaluate, Strategy

if TYPE_CHECKING:  # torch is imported when a torch scheduler is built, not to list strategies
    from torch.optim import Optimizer

_GROUP_SKIP = ("params",)
# kwargs of torch schedulers that are durations and may be written as "2ep" or "5%"
_DURATION_KWARGS = {
    "step_size", "T_max", "T_0", "total_iters", "total_steps", "step_size_up", "step_size_down",
}  # fmt: skip


def import_scheduler_class(target: Any, key: str) -> type:
    """Resolve ``_target_`` (a class or ``"package.module.Class"``) to an LRScheduler class."""
    from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

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


@register
class TorchScheduler(Strategy):
    """Any torch.optim.lr_scheduler class, driven as torch drives it.

    ``_target_`` is the class (or its import path); every other key is passed to it, durations
    (``step_size``, ``T_max``, ``milestones``, ...) written as ``"2ep"`` or ``"5%"`` resolved
    first. It runs on shadow param groups, stepped in lockstep with the optimizer steps, so a
    warmup prefix works in front of it too.
    """

    name = "torch"
    reference = "the torch class itself"
    nestable = False
    open_keys = True
    # declared by hand: every other key is the torch class's own keyword argument
    _PARAMS: ClassVar[dict[str, Param]] = {
        "_target_": Param(
            "text",
            "class path of any LRScheduler; its keyword arguments beside it",
            example="torch.optim.lr_scheduler.StepLR",
        )
    }
    EXAMPLE_KWARGS: ClassVar[dict[str, Any]] = {"step_size": "1ep", "gamma": 0.5}

    @classmethod
    def params(cls) -> dict[str, Param]:
        return dict(cls._PARAMS)

    @classmethod
    def resolve(cls, read: Reader) -> TorchScheduler:
        target = read.raw("_target_")
        scheduler_cls = import_scheduler_class(target, read.key("_target_"))
        kwargs: dict[str, Any] = {}
        ctx = read.ctx

        def steps(value: Any, key: str) -> int:
            return resolve_duration(
                value, key, total_steps=ctx.total_steps, steps_per_epoch=ctx.steps_per_epoch
            )

        for key, value in read.config.items():
            if key in COMMON_KEYS or key == "_target_":
                continue
            if key in _DURATION_KWARGS and is_duration_text(value):
                value = steps(value, read.key(key))
            elif key == "milestones" and isinstance(value, list):
                value = [steps(v, f"{read.key(key)}[{i}]") for i, v in enumerate(value)]
            kwargs[key] = value
        if ctx.optimizer is None:
            raise read.error("_target_", "needs an optimizer to drive")
        try:
            return cls(scheduler_cls, kwargs, ctx.optimizer, ctx.base_lrs)
        except (TypeError, ValueError) as err:
            raise read.error("_target_", f"torch refused the arguments: {err}") from None

    def __init__(
        self, cls: type, kwargs: dict[str, Any], optimizer: Optimizer, base_lrs: Any
    ) -> None:
        import torch

        self.cls = cls
        self.kwargs = kwargs
        groups = []
        for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
            copy = {k: v for k, v in group.items() if k not in _GROUP_SKIP}
            copy["lr"] = float(lr)
            copy["params"] = [torch.zeros(1, requires_grad=True)]
            groups.append(copy)
        self.shadow = torch.optim.Optimizer(groups, dict(optimizer.defaults))
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

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        groups = self.shadow.param_groups
        betas = "betas" in self.shadow.defaults

        def evaluate(step: int) -> tuple[list[float], list[float] | None]:
            self._advance(step)
            lrs = [float(group["lr"]) for group in groups]
            if not self.cycles_momentum:
                return lrs, None
            if betas:
                return lrs, [float(group["betas"][0]) for group in groups]
            return lrs, [float(group["momentum"]) for group in groups]

        return evaluate

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
