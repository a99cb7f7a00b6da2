"""The callbacks: ``LRSchedule`` (attach a schedule from the Trainer's callback list),
``LRLogger`` (every optimizer step's rates to every logger), ``PlateauControl`` (feeds the
plateau schedules that ``configure_optimizers`` returned; the helper adds it by itself),
``SWAHandover`` (hands those schedules' rate over to Lightning's ``StochasticWeightAveraging``;
the helper adds it by itself) and ``Preemption`` (a clean, resumable stop on a cluster's
preemption signal)."""

from .lightning.lr_logger import LRLogger
from .lightning.lr_schedule import LRSchedule
from .lightning.plateau_control import PlateauControl
from .lightning.preemption import Preempted, Preemption
from .lightning.rank_guard import RankDivergenceError, RankGuard
from .lightning.swa import SWAHandover

__all__ = [
    "LRLogger",
    "LRSchedule",
    "PlateauControl",
    "Preempted",
    "Preemption",
    "RankDivergenceError",
    "RankGuard",
    "SWAHandover",
]
