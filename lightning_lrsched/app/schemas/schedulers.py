"""Structured configs (Hydra ConfigStore schemas) for every strategy of the registry.

Each dataclass lists the strategy's parameters with their defaults, so Hydra rejects a
misspelled key or a wrong type at composition time; the values themselves (ranges, durations,
horizons) are checked by :func:`lightning_lrsched.build_scheduler`, before training starts.
``tests/test_config.py`` checks that these defaults are the builders' own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

# Durations are ints (steps) or strings ("2ep", "5%"), hence ``Any``.


@dataclass
class SchedulerConfig:
    name: str = MISSING
    warmup: Any = 0
    warmup_start_factor: float | None = None  # None: the strategy's default (0; wsd: min_lr_ratio)
    warmup_type: str = "linear"


@dataclass
class ConstantConfig(SchedulerConfig):
    name: str = "constant"


@dataclass
class StepConfig(SchedulerConfig):
    name: str = "step"
    step_size: Any = MISSING
    gamma: float = 0.1


@dataclass
class MultiStepConfig(SchedulerConfig):
    name: str = "multistep"
    milestones: list[Any] = MISSING
    gamma: float = 0.1


@dataclass
class ExponentialConfig(SchedulerConfig):
    name: str = "exponential"
    gamma: float = MISSING


@dataclass
class LinearConfig(SchedulerConfig):
    name: str = "linear"
    start_factor: float = 1.0
    end_factor: float = 0.0
    total_iters: Any = None  # None: the rest of training


@dataclass
class PolynomialConfig(SchedulerConfig):
    name: str = "polynomial"
    total_iters: Any = None
    power: float = 1.0
    end_factor: float = 0.0


@dataclass
class CosineConfig(SchedulerConfig):
    name: str = "cosine"
    T_max: Any = None
    eta_min: float = 0.0


@dataclass
class CosineRestartsConfig(SchedulerConfig):
    name: str = "cosine_restarts"
    T_0: Any = None  # None: num_cycles equal cycles over the rest of training
    T_mult: int = 1
    eta_min: float = 0.0
    num_cycles: float | None = None


@dataclass
class CyclicConfig(SchedulerConfig):
    name: str = "cyclic"
    max_lr: Any = MISSING  # a rate, or one per param group
    base_lr: Any = None  # None: each group's configured rate
    step_size_up: Any = 2000
    step_size_down: Any = None
    mode: str = "triangular"
    gamma: float = 1.0
    cycle_momentum: bool = True
    base_momentum: Any = 0.8
    max_momentum: Any = 0.9


@dataclass
class OneCycleConfig(SchedulerConfig):
    name: str = "onecycle"
    max_lr: Any = None  # None: each group's configured rate
    pct_start: float = 0.3
    anneal_strategy: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False
    cycle_momentum: bool = True
    base_momentum: Any = 0.85
    max_momentum: Any = 0.95
    total_steps: Any = None


@dataclass
class InverseSqrtConfig(SchedulerConfig):
    name: str = "inverse_sqrt"
    timescale: Any = None  # None: the warmup length (10000 without warmup)


@dataclass
class WSDConfig(SchedulerConfig):
    name: str = "wsd"
    num_decay_steps: Any = "10%"
    num_stable_steps: Any = None
    min_lr_ratio: float = 0.0
    decay_type: str = "cosine"
    num_cycles: float = 0.5


@dataclass
class PlateauConfig(SchedulerConfig):
    name: str = "plateau"
    monitor: str = "val_loss"
    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_lr: Any = 0.0
    eps: float = 1e-8
    check_on: str = "validation"
    strict: bool = True


@dataclass
class SequenceConfig(SchedulerConfig):
    name: str = "sequence"
    phases: list[Any] = field(default_factory=list)


@dataclass
class ChainConfig(SchedulerConfig):
    name: str = "chain"
    schedules: list[Any] = field(default_factory=list)


SCHEDULER_SCHEMAS: dict[str, type[SchedulerConfig]] = {
    schema.name: schema  # type: ignore[misc]
    for schema in (
        ConstantConfig,
        StepConfig,
        MultiStepConfig,
        ExponentialConfig,
        LinearConfig,
        PolynomialConfig,
        CosineConfig,
        CosineRestartsConfig,
        CyclicConfig,
        OneCycleConfig,
        InverseSqrtConfig,
        WSDConfig,
        PlateauConfig,
        SequenceConfig,
        ChainConfig,
    )
}
