"""Lightning integration: the configure_optimizers helper and the callbacks."""

from .callbacks import LRLogger, LRSchedule
from .helper import configure_optimizers
from .optimizers import build_optimizer
from .scheduling import PlateauControl
from .trainer_info import training_horizon

__all__ = [
    "LRLogger",
    "LRSchedule",
    "PlateauControl",
    "build_optimizer",
    "configure_optimizers",
    "training_horizon",
]
