"""lightning-lrsched: exact, composable learning-rate schedules for PyTorch Lightning."""

from . import strategies as _strategies  # noqa: F401  (registers the built-in strategies)
from .adapter import ScheduleLR
from .errors import ConfigError
from .lightning.helper import configure_optimizers
from .registry import STRATEGIES, build_scheduler

__all__ = [
    "STRATEGIES",
    "ConfigError",
    "ScheduleLR",
    "build_scheduler",
    "configure_optimizers",
]
__version__ = "0.1.0"
