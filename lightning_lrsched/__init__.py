"""lightning-lrsched: exact, composable learning-rate schedules for PyTorch Lightning.

The names below are imported on first use, so that light users (the Hydra search-path plugin,
``lrsched list``) do not pay for importing torch and Lightning up front.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .adapter import ScheduleLR
    from .build import build_scheduler
    from .lightning.helper import configure_optimizers
    from .registry import STRATEGIES

_LAZY = {
    "STRATEGIES": ".registry",
    "build_scheduler": ".build",
    "ScheduleLR": ".adapter",
    "configure_optimizers": ".lightning.helper",
}
_SUBMODULES = ("callbacks", "lightning", "tasks", "app")

__all__ = [
    "STRATEGIES",
    "ConfigError",
    "ScheduleLR",
    "build_scheduler",
    "configure_optimizers",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
