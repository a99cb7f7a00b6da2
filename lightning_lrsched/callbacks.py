"""The callbacks: ``LRSchedule`` (attach a schedule from the Trainer's callback list),
``LRLogger`` (every optimizer step's rates to every logger), ``LRFinder`` (the learning-rate
range test), ``PlateauControl`` (feeds the plateau schedules that ``configure_optimizers``
returned; the helper adds it by itself), ``GradientControl`` (adapts hypergradient schedules
before each update; added by itself too), ``ScheduleFreeModes`` (train/eval modes of
schedule-free optimizers; added by itself too), ``SWAHandover`` (hands those schedules' rate
over to Lightning's ``StochasticWeightAveraging``; added by the helper), ``Preemption`` (a
clean, resumable stop on a cluster's preemption signal), ``StepMetrics`` with ``log_step``
(every training step's loss and values to every logger, without a host sync per step) and
``RateProgressBar`` (Lightning's tqdm bar with the current learning rate)."""

from .lightning.gradient_control import GradientControl
from .lightning.lr_finder import LRFinder
from .lightning.lr_logger import LRLogger
from .lightning.lr_schedule import LRSchedule
from .lightning.plateau_control import PlateauControl
from .lightning.preemption import Preempted, Preemption
from .lightning.progress import RateProgressBar
from .lightning.rank_guard import RankDivergenceError, RankGuard
from .lightning.schedule_free import ScheduleFreeModes
from .lightning.step_metrics import StepMetrics, log_step
from .lightning.swa import SWAHandover

__all__ = [
    "GradientControl",
    "LRFinder",
    "LRLogger",
    "LRSchedule",
    "PlateauControl",
    "Preempted",
    "Preemption",
    "RankDivergenceError",
    "RankGuard",
    "RateProgressBar",
    "SWAHandover",
    "ScheduleFreeModes",
    "StepMetrics",
    "log_step",
]
