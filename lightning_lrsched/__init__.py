"""lightning-lrsched: exact, composable learning-rate schedules for PyTorch Lightning."""

from . import strategies as _strategies  # noqa: F401  (registers the built-in strategies)
from .adapter import ScheduleLR
from .errors import ConfigError
from .registry import STRATEGIES, build_scheduler

__all__ = ["STRATEGIES", "ConfigError", "ScheduleLR", "build_scheduler"]
__version__ = "0.1.0"
