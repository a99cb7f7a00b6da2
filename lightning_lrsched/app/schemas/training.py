"""Structured configs for the training app's groups: optimizer, trainer, logger, callbacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class OptimizerConfig:
    """Any ``torch.optim`` optimizer by lower-case name, with its keyword arguments."""

    name: str = MISSING
    lr: Any = MISSING  # a rate, or "auto": the range test's suggestion (lr_finder settings)
    weight_decay: float = 0.0


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    lr: Any = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    dampening: float = 0.0


@dataclass
class AdamWConfig(OptimizerConfig):
    name: str = "adamw"
    lr: Any = 1e-3
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    amsgrad: bool = False


@dataclass
class AdamConfig(AdamWConfig):
    name: str = "adam"
    weight_decay: float = 0.0


@dataclass
class RMSpropConfig(OptimizerConfig):
    name: str = "rmsprop"
    lr: Any = 1e-2
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0


@dataclass
class AdamWScheduleFreeConfig(OptimizerConfig):
    """``schedulefree.AdamWScheduleFree`` (the ``schedulefree`` extra)."""

    name: str = "adamw_schedulefree"
    lr: float = 0.0025
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    warmup_steps: int = 0  # the package's own warmup; prefer scheduler.warmup (not both)
    r: float = 0.0
    weight_lr_power: float = 2.0


@dataclass
class SGDScheduleFreeConfig(OptimizerConfig):
    """``schedulefree.SGDScheduleFree`` (the ``schedulefree`` extra)."""

    name: str = "sgd_schedulefree"
    lr: float = 1.0
    momentum: float = 0.9
    warmup_steps: int = 0
    r: float = 0.0
    weight_lr_power: float = 2.0


@dataclass
class TrainerConfig:
    """The ``lightning.Trainer`` arguments the app exposes (more can be added with ``+``)."""

    _target_: str = "lightning.pytorch.Trainer"
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: Any = "auto"
    max_epochs: int | None = 10
    max_steps: int = -1
    accumulate_grad_batches: int = 1
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    val_check_interval: Any = None
    check_val_every_n_epoch: int | None = 1  # null: val_check_interval counts steps across epochs
    gradient_clip_val: float | None = None
    precision: Any = "32-true"
    deterministic: bool = False
    log_every_n_steps: int = 1  # our tracking is cheap enough to keep every step
    num_sanity_val_steps: int = 0
    enable_progress_bar: bool = True  # the app adds RateProgressBar (the rate) unless false
    enable_model_summary: bool = False
    default_root_dir: str | None = None


@dataclass
class MLflowLoggerConfig:
    """MLflow tracking (``MLflowTracker``: batched, from a background thread, resumable): the
    embedded SQLite store in the launch directory unless told otherwise."""

    _target_: str = "lightning_lrsched.tracking.MLflowTracker"
    experiment_name: str = "lightning-lrsched"
    run_name: str | None = None
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    tags: dict[str, Any] = field(default_factory=dict)
    flush_interval: float = 1.0
    system_metrics: bool = False  # CPU, memory, GPU: system/node<N>/... from each node
    system_metrics_interval: float = 10.0


@dataclass
class RunTrackingConfig:
    """Run continuity across resumes, the run id on every rank, schedule plots."""

    _target_: str = "lightning_lrsched.tracking.RunTracking"
    plots: bool = True


@dataclass
class CSVLoggerConfig:
    _target_: str = "lightning.pytorch.loggers.CSVLogger"
    save_dir: str | None = None  # None: the run's Hydra output directory
    name: str = "csv"


@dataclass
class LRLoggerConfig:
    """Every optimizer step's rate, momentum and weight decay to every logger."""

    _target_: str = "lightning_lrsched.callbacks.LRLogger"
    momentum: bool = True
    weight_decay: bool = True


@dataclass
class PreemptionConfig:
    """On SIGUSR1/SIGTERM: one checkpoint at a step every rank agrees on, the job requeued
    under SLURM, the run resumable with ``ckpt_path=auto``."""

    _target_: str = "lightning_lrsched.callbacks.Preemption"
    dirpath: str | None = None  # None: <trainer.default_root_dir>/checkpoints
    signals: list[str] = field(default_factory=lambda: ["SIGUSR1", "SIGTERM"])
    requeue: Any = "auto"  # auto (under SLURM) | true | false
