"""Lightning integration: the configure_optimizers helper and the callbacks.

- ``helper``: ``configure_optimizers`` (optimizer + schedule in Lightning's dict);
- ``lr_schedule``: ``LRSchedule``, a schedule attached from the Trainer's callbacks;
- ``plateau_control``: feeding plateau schedules their metric (``PlateauControl``);
- ``gradient_control``: adapting hypergradient schedules to the gradients (``GradientControl``);
- ``schedule_free``: train/eval modes of schedule-free optimizers (``ScheduleFreeModes``);
- ``lr_logger``: ``LRLogger``;
- ``step_metrics``: ``StepMetrics`` and ``log_step`` (per-step values, no host sync per step);
- ``progress``: ``RateProgressBar``, the tqdm progress bar with the current rate;
- ``lr_finder``: ``LRFinder`` and ``find_lr`` (the range test in a fit; ``"auto"`` rates);
- ``optimizers``: ``build_optimizer`` from a config;
- ``scheduling``: a schedule built with the Trainer's horizon; the schedules a Trainer runs;
- ``swa``: handing the rate over to Lightning's ``StochasticWeightAveraging``;
- ``trainer_info``: horizon, epoch length and global batch in optimizer steps.
"""

from .gradient_control import GradientControl
from .helper import configure_optimizers
from .lr_finder import LRFinder, find_lr
from .lr_logger import LRLogger
from .lr_schedule import LRSchedule
from .optimizers import build_optimizer
from .plateau_control import PlateauControl
from .progress import RateProgressBar
from .schedule_free import ScheduleFreeModes
from .scheduling import attached_schedules
from .step_metrics import StepMetrics, log_step
from .trainer_info import training_horizon

__all__ = [
    "GradientControl",
    "LRFinder",
    "LRLogger",
    "LRSchedule",
    "PlateauControl",
    "RateProgressBar",
    "ScheduleFreeModes",
    "StepMetrics",
    "attached_schedules",
    "build_optimizer",
    "configure_optimizers",
    "find_lr",
    "log_step",
    "training_horizon",
]
