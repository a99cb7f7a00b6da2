"""Optimizers from a config (a torch.optim name or ``_target_``), an instance or a factory."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, blamed_key
from ..spec import check_number
from .schedule_free import SCHEDULE_FREE_OPTIMIZERS, schedule_free_class

_SPECIAL_KEYS = ("name", "_target_", "_partial_", "param_groups")


def optimizer_classes() -> dict[str, type]:
    """torch.optim's optimizers by lower-case name (``sgd``, ``adamw``, ...)."""
    return {
        name.lower(): cls
        for name, cls in vars(torch.optim).items()
        if isinstance(cls, type)
        and issubclass(cls, torch.optim.Optimizer)
        and cls is not torch.optim.Optimizer
    }


def _resolve_class(spec: Mapping[str, Any]) -> type:
    if spec.get("_target_") is not None:
        target = spec["_target_"]
        module_name, _, attr = str(target).rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError):
            raise ConfigError(
                "optimizer._target_", target, "must be the import path of an optimizer class"
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            raise ConfigError("optimizer._target_", target, "must name a torch Optimizer class")
        return cls
    known = optimizer_classes()
    name = spec.get("name")
    if isinstance(name, str) and name.lower() in SCHEDULE_FREE_OPTIMIZERS:
        return schedule_free_class(name.lower())  # the schedulefree package, imported on use
    if not isinstance(name, str) or name.lower() not in known:
        names = sorted([*known, *SCHEDULE_FREE_OPTIMIZERS])
        raise ConfigError("optimizer.name", name, f"known: {', '.join(names)}")
    return known[name.lower()]


def _param_groups(module: nn.Module, groups: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Split parameters by name patterns: ``[{name, params: <regex>, **overrides}, ...]``.

    Each parameter goes to the first group whose pattern matches its name; the rest form a
    last group named ``default`` with the optimizer's own settings.
    """
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    taken: set[str] = set()
    out = []
    for i, group in enumerate(groups):
        group = dict(group)
        pattern = group.pop("params", None)
        if not isinstance(pattern, str):
            raise ConfigError(
                f"optimizer.param_groups[{i}].params", pattern, "must be a regex of parameter names"
            )
        regex = re.compile(pattern)
        params = [p for n, p in named if n not in taken and regex.search(n)]
        if not params:
            raise ConfigError(
                f"optimizer.param_groups[{i}].params",
                pattern,
                f"matches no parameter; names are like {', '.join(n for n, _ in named[:4])}",
            )
        taken.update(n for n, _ in named if regex.search(n))
        group.setdefault("name", f"pg{i}")
        out.append({"params": params, **group})
    rest = [p for n, p in named if n not in taken]
    if rest:
        out.append({"params": rest, "name": "default"})
    return out


def _arguments(cls: type) -> set[str] | None:
    """The keyword arguments ``cls`` accepts besides the parameters (None: any)."""
    parameters = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return {name for name in parameters if name != "params"}


def build_optimizer(module: nn.Module, spec: Any) -> torch.optim.Optimizer:
    """An optimizer for ``module``'s parameters.

    ``spec`` is an optimizer (returned as is), a callable taking the parameters (e.g. a Hydra
    ``_partial_`` object or ``functools.partial(torch.optim.AdamW, lr=1e-3)``), or a mapping:
    ``{"name": "adamw", "lr": 1e-3, ...}`` or ``{"_target_": "torch.optim.AdamW", ...}``, with
    optional ``param_groups: [{name, params: <regex>, lr: ...}, ...]``. Names are torch.optim's
    (lower case) and the ``schedulefree`` package's ``adamw_schedulefree``,
    ``sgd_schedulefree`` and ``radam_schedulefree`` (the ``schedulefree`` extra).
    """
    if isinstance(spec, torch.optim.Optimizer):
        return spec
    if hasattr(spec, "_metadata") or type(spec).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        spec = OmegaConf.to_container(spec, resolve=True)
    if isinstance(spec, Mapping):
        cls = _resolve_class(spec)
        kwargs = {k: v for k, v in spec.items() if k not in _SPECIAL_KEYS}
        accepted = _arguments(cls)
        for key, value in kwargs.items():
            if accepted is not None and key not in accepted:
                raise ConfigError(
                    f"optimizer.{key}",
                    value,
                    f"not an argument of {cls.__name__}; allowed: {', '.join(sorted(accepted))}",
                )
        for key in ("lr", "weight_decay"):
            if key in kwargs:
                check_number(f"optimizer.{key}", kwargs[key], ge=0.0)
        groups = spec.get("param_groups")
        params: Any = _param_groups(module, groups) if groups else module.parameters()
        try:
            return cls(params, **kwargs)
        except (TypeError, ValueError) as err:
            key = blamed_key(kwargs, str(err))
            if key is None:
                raise ConfigError(
                    "optimizer", kwargs, f"{cls.__name__} refused it: {err}"
                ) from None
            raise ConfigError(f"optimizer.{key}", kwargs[key], f"{cls.__name__}: {err}") from None
    if isinstance(spec, Callable):
        optimizer = spec(module.parameters())
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError("optimizer", spec, "the factory must return a torch Optimizer")
        return optimizer
    raise ConfigError("optimizer", spec, "must be an Optimizer, a factory or a config mapping")
