"""Structured configs for the data and model groups (the training tasks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DigitsConfig:
    _target_: str = "lightning_lrsched.tasks.data.DigitsDataModule"
    batch_size: int = 64
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    num_workers: int = 0
    validate_on: str = "val"  # val | test (validation evaluates the test split)


@dataclass
class MNIST1DConfig:
    _target_: str = "lightning_lrsched.tasks.data.MNIST1DDataModule"
    batch_size: int = 100
    seed: int = 0
    num_samples: int = 5000
    val_fraction: float = 0.1
    cache_dir: str | None = None
    num_workers: int = 0
    validate_on: str = "val"  # val | test (the reference protocol: train on all 4000)


@dataclass
class MLPConfig:
    """The network is built once the data's feature and class counts are known."""

    _target_: str = "lightning_lrsched.tasks.models.MLP"
    _partial_: bool = True
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.0


@dataclass
class CNN1DConfig:
    _target_: str = "lightning_lrsched.tasks.models.CNN1D"
    _partial_: bool = True
    channels: int = 32
    kernel_sizes: list[int] = field(default_factory=lambda: [5, 3, 3])
    stride: int = 2
    padding: int = 1
    dropout: float = 0.0


@dataclass
class LRFinderConfig:
    """The range test's settings (:class:`lightning_lrsched.range_test.RangeTestConfig`)."""

    min_lr: float = 1e-7
    max_lr: float = 10.0
    num_steps: int = 100
    mode: str = "exponential"  # exponential | linear
    beta: float = 0.98  # smoothing of the loss
    diverge_threshold: float = 4.0  # stop once the smoothed loss exceeds this x its minimum
    suggestion: str = "valley"  # valley | steep | minimum (the rate of the lowest loss / 10)
    skip_begin: int = 10
    skip_end: int = 5


@dataclass
class TrainConfig:
    """The root config of ``lrsched train``; groups are selected in ``train.yaml``."""

    data: Any = None
    model: Any = None
    optimizer: Any = None
    scheduler: Any = None
    trainer: Any = None
    logger: Any = None
    callbacks: Any = None
    seed: int = 0
    fit: bool = True
    test: bool = True
    ckpt_path: str | None = None
    scale_lr: str = "none"
    reference_batch_size: int | None = None
    on_plan_change: str = "error"
    # the range test behind optimizer.lr=auto, scheduler.max_lr=auto and `lrsched find-lr`
    lr_finder: LRFinderConfig = field(default_factory=lambda: LRFinderConfig())
    # the metric train() returns (the value a sweep optimises): any metric the run logs
    optimized_metric: str = "val_acc"
