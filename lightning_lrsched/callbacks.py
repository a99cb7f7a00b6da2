"""The callbacks: ``LRSchedule`` (attach a schedule from the Trainer's callback list) and
``LRLogger`` (every optimizer step's rates to every logger)."""

from .lightning.callbacks import LRLogger, LRSchedule
from .lightning.scheduling import PlateauControl

__all__ = ["LRLogger", "LRSchedule", "PlateauControl"]
