"""What ``lrsched train`` does with a composed config: check it all, then train and report."""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..build import build_scheduler
from ..errors import ConfigError, blamed_key
from ..lightning.optimizers import build_optimizer
from ..lightning.trainer_info import lr_scale

# what the training task logs (a plateau monitor must be one of them)
TASK_METRICS = ("train_loss", "val_loss", "val_acc")


@dataclass
class Checked:
    """What the checks built and measured, reused for training."""

    datamodule: Any
    net: torch.nn.Module
    total_steps: int | None
    steps_per_epoch: int
    tracking_uri: str | None


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def _instantiate(node: Any, key: str, **kwargs: Any) -> Any:
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise ConfigError(f"{key}.{cause.key}", cause.value, cause.allowed) from None
        raise ConfigError(key, _plain(node), f"cannot be built: {cause or err}") from None


def estimate_horizon(
    trainer: dict[str, Any], train_size: int, batch_size: int
) -> tuple[int | None, int]:
    """(total optimizer steps, steps per epoch) as Lightning will count them, from the config."""
    devices = trainer.get("devices", 1)
    strategy = str(trainer.get("strategy", "auto"))
    world = 1
    if isinstance(devices, int) and strategy.startswith("ddp"):
        world = devices * int(trainer.get("num_nodes", 1) or 1)
    batches = math.ceil(math.ceil(train_size / world) / batch_size)
    limit = trainer.get("limit_train_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        batches = min(batches, limit)
    elif isinstance(limit, float):
        batches = int(batches * limit)
    if batches < 1:
        raise ConfigError("trainer.limit_train_batches", limit, "leaves no training batch")
    accumulate = int(trainer.get("accumulate_grad_batches", 1) or 1)
    per_epoch = math.ceil(batches / accumulate)
    max_steps = trainer.get("max_steps", -1)
    max_epochs = trainer.get("max_epochs")
    if max_epochs is None:
        max_epochs = 1000 if max_steps == -1 else -1
    if max_epochs == -1:
        return (None if max_steps == -1 else max_steps), per_epoch
    total = per_epoch * max(max_epochs, 1)
    return (min(total, max_steps) if max_steps != -1 else total), per_epoch


def _check_trainer(trainer: dict[str, Any]) -> None:
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator", accelerator, "no CUDA device here; use cpu")
    devices = trainer.get("devices", 1)
    if isinstance(devices, int) and not isinstance(devices, bool):
        if devices < 1 and devices != -1:
            raise ConfigError("trainer.devices", devices, "must be >= 1, -1 (all) or auto")
        if accelerator in ("gpu", "cuda") and devices > torch.cuda.device_count():
            raise ConfigError(
                "trainer.devices",
                devices,
                f"this machine has {torch.cuda.device_count()} CUDA device(s)",
            )
        cores = os.cpu_count() or 1
        if accelerator == "cpu" and devices > cores:
            raise ConfigError(
                "trainer.devices",
                devices,
                f"one process per CPU device: this machine has {cores} CPU cores",
            )
    for key, low in (("max_epochs", -1), ("max_steps", -1), ("accumulate_grad_batches", 1)):
        value = trainer.get(key)
        if value is not None and (not isinstance(value, int) or value < low):
            raise ConfigError(f"trainer.{key}", value, f"must be a whole number >= {low}")
    # Lightning validates the rest (strategy names, precision, ...) without starting anything;
    # its start-up banner would bury a one-line error, so it is silenced here.
    quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [log.level for log in quiet]
    try:
        for log in quiet:
            log.setLevel(logging.WARNING)
        _instantiate(OmegaConf.create(trainer), "trainer", logger=False, callbacks=[])
    except ConfigError as err:
        reason = str(err.allowed).splitlines()[0].removeprefix("cannot be built: ")
        key = blamed_key(trainer, reason)
        raise ConfigError(
            f"trainer.{key}" if key else "trainer", trainer.get(key, "?"), reason
        ) from None
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)


def tracking_uri(logger: dict[str, Any] | None) -> str | None:
    """The MLflow store of an MLflow logger config (see :func:`tracking.store.resolve_uri`)."""
    target = str((logger or {}).get("_target_", ""))
    if "MLFlowLogger" not in target and "MLflowTracker" not in target:
        return None
    from ..tracking.store import resolve_uri

    try:
        return resolve_uri(logger.get("tracking_uri"))
    except ConfigError as err:
        raise ConfigError(f"logger.{err.key}", err.value, err.allowed) from None


def check_config(cfg: DictConfig) -> Checked:
    """Every check that can run before training, in the order a user would fix them."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # interpolation errors from OmegaConf
        raise ConfigError("config", "?", str(err).splitlines()[0]) from None
    trainer = plain.get("trainer") or {}
    _check_trainer(trainer)
    for key, allowed in (("on_plan_change", ("error", "continue")),):
        if plain.get(key) not in allowed:
            raise ConfigError(key, plain.get(key), f"must be one of {', '.join(allowed)}")
    lr_scale(plain.get("scale_lr", "none"), 1, plain.get("reference_batch_size"))
    # seeded before the network is built, so a job's initial weights depend only on the seed
    seed = plain.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError("seed", seed, "must be a whole number >= 0")
    torch.manual_seed(seed)
    datamodule = _instantiate(cfg.data, "data")
    datamodule.setup("fit")
    sizes = {"in_features": datamodule.num_features, "num_classes": datamodule.num_classes}
    if "CNN1D" in str(plain["model"].get("_target_", "")):
        sizes = {"in_length": datamodule.num_features, "num_classes": datamodule.num_classes}
    try:
        net = _instantiate(cfg.model, "model")(**sizes)
    except (ValueError, TypeError, RuntimeError) as err:
        if isinstance(err, ConfigError):
            raise ConfigError(f"model.{err.key}", err.value, err.allowed) from None
        key = blamed_key(plain["model"], str(err))
        raise ConfigError(
            f"model.{key}" if key else "model", plain["model"].get(key), str(err)
        ) from None
    ckpt = plain.get("ckpt_path")
    if ckpt not in (None, "last", "best", "hpc", "registry") and not Path(str(ckpt)).exists():
        raise ConfigError("ckpt_path", ckpt, "no such checkpoint file (or: last, best, hpc)")
    total, per_epoch = estimate_horizon(trainer, len(datamodule.train_set), datamodule.batch_size)
    optimizer = build_optimizer(net, plain["optimizer"])
    scheduler = plain.get("scheduler")
    if scheduler:
        build_scheduler(optimizer, scheduler, total_steps=total, steps_per_epoch=per_epoch)
        if scheduler.get("name") == "plateau":
            monitor = scheduler.get("monitor", "val_loss")
            if monitor not in TASK_METRICS:
                raise ConfigError(
                    "scheduler.monitor",
                    monitor,
                    f"is never logged; the task logs {', '.join(TASK_METRICS)}",
                )
    return Checked(datamodule, net, total, per_epoch, tracking_uri(plain.get("logger")))


def train_and_report(cfg: DictConfig, checked: Checked, argv: list[str] | None = None) -> float:
    """Train (and test), print where the run is tracked; return the final validation accuracy."""
    import lightning.pytorch as pl

    from ..tasks.models import Classifier

    plain = OmegaConf.to_container(cfg, resolve=True)
    pl.seed_everything(plain.get("seed", 0), workers=True, verbose=False)  # data order etc.
    logger = False
    if plain.get("logger"):
        extra: dict[str, Any] = {}
        if checked.tracking_uri:
            extra["tracking_uri"] = checked.tracking_uri
            if plain.get("ckpt_path"):  # continue the run the checkpoint was written under
                from ..tracking import saved_run_id

                extra["run_id"] = saved_run_id(plain["ckpt_path"])
        if "save_dir" in plain["logger"] and not plain["logger"]["save_dir"]:
            extra["save_dir"] = _output_dir()
        logger = _instantiate(cfg.logger, "logger", **extra)
    callbacks = [
        _instantiate(node, f"callbacks.{name}")
        for name, node in (cfg.get("callbacks") or {}).items()
        if node is not None
    ]
    options: dict[str, Any] = {"logger": logger, "callbacks": callbacks}
    if not plain["trainer"].get("default_root_dir"):
        options["default_root_dir"] = _output_dir()  # checkpoints go there
    trainer = _instantiate(cfg.trainer, "trainer", **options)
    module = Classifier(
        checked.net,
        optimizer=plain["optimizer"],
        scheduler=plain.get("scheduler"),
        scale_lr=plain.get("scale_lr", "none"),
        reference_batch_size=plain.get("reference_batch_size"),
        on_plan_change=plain.get("on_plan_change", "error"),
    )
    if logger and trainer.is_global_zero:
        logger.log_hyperparams(_without_hydra(plain))
        if hasattr(logger, "log_config"):
            logger.log_config(_without_hydra(plain))
            logger.set_tags(_run_tags(plain, trainer.world_size))
    if argv is not None:
        sys.argv = argv  # Lightning's DDP launcher re-runs this command in the other processes
    if plain.get("fit", True):
        trainer.fit(module, datamodule=checked.datamodule, ckpt_path=plain.get("ckpt_path"))
    results: dict[str, float] = {
        k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1
    }
    if plain.get("test", True):
        for row in trainer.test(module, datamodule=checked.datamodule, verbose=False):
            results.update({k: float(v) for k, v in row.items()})
    if trainer.is_global_zero:
        report(results, logger)
    return results.get("val_acc", float("nan"))


def _output_dir() -> str:
    """The job's Hydra output directory (the working directory outside Hydra)."""
    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else os.getcwd()


def _run_tags(plain: dict[str, Any], world_size: int) -> dict[str, str]:
    """MLflow tags: the strategy, the world size, the git commit if any."""
    tags = {
        "lrsched.strategy": str((plain.get("scheduler") or {}).get("name", "none")),
        "lrsched.world_size": str(world_size),
    }
    commit = _git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def _git_commit() -> str | None:
    import subprocess

    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def _without_hydra(plain: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in plain.items() if k != "hydra"}


def report(results: dict[str, float], logger: Any) -> None:
    """Print the final metrics, where the run is, and how to open it in the MLflow UI."""
    shown = {
        k: results[k] for k in ("val_loss", "val_acc", "test_loss", "test_acc") if k in results
    }
    print("lrsched train: " + ", ".join(f"{k}={v:.4f}" for k, v in shown.items()))
    uri = getattr(logger, "tracking_uri", None)
    if logger and uri and getattr(logger, "version", None):
        experiment, run = logger.experiment_id, logger.version
        print(f"  MLflow run {run} in experiment {experiment}, store {uri}")
        print(f"  open it: mlflow ui --backend-store-uri {uri}")
        print(
            f"  then:    http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run}"
            "?workflowType=machine_learning"
        )
