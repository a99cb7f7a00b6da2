"""Lightning integration: the configure_optimizers helper and the callbacks.

- ``helper``: ``configure_optimizers`` (optimizer + schedule in Lightning's dict);
- ``lr_schedule``: ``LRSchedule``, a schedule attached from the Trainer's callbacks;
- ``plateau_control``: feeding plateau schedules their metric (``PlateauControl``);
- ``lr_logger``: ``LRLogger``;
- ``optimizers``: ``build_optimizer`` from a config;
- ``scheduling``: a schedule built with the Trainer's horizon; the schedules a Trainer runs;
- ``swa``: handing the rate over to Lightning's ``StochasticWeightAveraging``;
- ``trainer_info``: horizon, epoch length and global batch in optimizer steps.
"""

from .helper import configure_optimizers
from .lr_logger import LRLogger
from .lr_schedule import LRSchedule
from .optimizers import build_optimizer
from .plateau_control import PlateauControl
from .scheduling import attached_schedules
from .trainer_info import training_horizon

__all__ = [
    "LRLogger",
    "LRSchedule",
    "PlateauControl",
    "attached_schedules",
    "build_optimizer",
    "configure_optimizers",
    "training_horizon",
]
