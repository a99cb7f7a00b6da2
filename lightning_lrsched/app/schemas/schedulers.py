"""Structured configs (Hydra ConfigStore schemas) for every strategy of the registry.

They are derived from the strategy declarations (:func:`..generate.scheduler_schemas`), so
Hydra rejects a misspelled key or a wrong type at composition time with each strategy's own
defaults; the values themselves (ranges, durations, horizons) are checked by
:func:`lightning_lrsched.build_scheduler`, before training starts.
"""

from __future__ import annotations

from ..generate import SchedulerConfig, scheduler_schemas

SCHEDULER_SCHEMAS: dict[str, type] = scheduler_schemas()

__all__ = ["SCHEDULER_SCHEMAS", "SchedulerConfig"]
