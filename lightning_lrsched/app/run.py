"""What ``lrsched train`` does with a composed config: check it all, then train and report."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from ..adapter import check_plan_change
from ..errors import ConfigError, blamed_key
from ..lightning.optimizers import build_optimizer
from ..lightning.progress import with_rate_progress_bar
from ..lightning.scheduling import build_for_horizon
from ..lightning.trainer_info import lr_scale, why_unbounded
from ..tasks.data import MissingExtraError
from .horizon import horizon, quiet_lightning, relaunches_command
from .run_names import run_name, run_tags

LIGHTNING_CKPT_PATHS = ("last", "best", "hpc", "registry")  # names Trainer.fit resolves itself


@dataclass
class Checked:
    """What the checks built and measured, reused for training."""

    net: torch.nn.Module  # built right after seeding: its initial weights depend on the seed only
    total_steps: int | None  # Lightning's count of optimizer steps per rank (None: unbounded)
    steps_per_epoch: int | None
    tracking_uri: str | None
    relaunches: bool  # fit would start its extra processes by re-running the command line


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


def _blame_trainer(trainer: dict[str, Any], message: str) -> ConfigError:
    """Lightning's complaint about the trainer config as one line naming the key."""
    reason = message.strip().splitlines()[0].strip().removeprefix("cannot be built: ")
    key = blamed_key(trainer, reason)
    return ConfigError(f"trainer.{key}" if key else "trainer", trainer.get(key, "?"), reason)


def _check_trainer(trainer: dict[str, Any]) -> pl.Trainer:
    """Refuse what Lightning would only notice once training starts (a CUDA device that is not
    there, more CPU processes than cores), then build the Trainer the config describes: Lightning
    validates the rest (strategy names, precision, ...) without starting anything."""
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
    try:
        with quiet_lightning():
            return _instantiate(OmegaConf.create(trainer), "trainer", logger=False, callbacks=[])
    except ConfigError as err:
        raise _blame_trainer(trainer, str(err.allowed)) from None


def _check_horizon(
    trainer_cfg: dict[str, Any],
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
) -> tuple[int | None, int | None]:
    """Lightning's own count of this run's optimizer steps (see :mod:`.horizon`)."""
    limit = trainer_cfg.get("limit_train_batches")
    try:
        total, per_epoch = horizon(trainer, module, datamodule)
    except ConfigError:
        raise
    except (MisconfigurationException, ValueError, TypeError) as err:
        raise _blame_trainer(trainer_cfg, str(err)) from None
    if trainer.num_training_batches == 0 or trainer.limit_train_batches == 0:
        raise ConfigError("trainer.limit_train_batches", limit, "leaves no training batch")
    return total, per_epoch


def classifier(plain: dict[str, Any], net: torch.nn.Module) -> Any:
    """The LightningModule the app trains: ``net`` as a classifier with the configured optimizer
    and schedule (built the same way for the checks and for training)."""
    from ..tasks.models import Classifier

    return Classifier(
        net,
        optimizer=plain["optimizer"],
        scheduler=plain.get("scheduler"),
        scale_lr=plain.get("scale_lr", "none"),
        reference_batch_size=plain.get("reference_batch_size"),
        on_plan_change=plain.get("on_plan_change", "error"),
        lr_finder=plain.get("lr_finder"),
    )


def logged_metrics(plain: dict[str, Any]) -> tuple[str, ...]:
    """The metrics a run of this config ends with: those of ``fit`` and ``test`` if they run."""
    from ..tasks.models import Classifier

    stages = [s for s in ("fit", "test") if plain.get(s, True)]
    return tuple(m for stage in stages for m in Classifier.LOGGED_METRICS[stage])


def tracking_uri(logger: dict[str, Any] | None) -> str | None:
    """The MLflow store of an MLflow logger config (see :func:`tracking.store.resolve_uri`)."""
    target = str((logger or {}).get("_target_", ""))
    if "MLFlowLogger" not in target and "MLflowTracker" not in target:
        return None
    from ..tracking.store import resolve_uri

    try:
        return resolve_uri(logger.get("tracking_uri"))
    except ConfigError as err:
        key = f"logger.{err.key}" if err.key == "tracking_uri" else err.key  # or the variable
        raise ConfigError(key, err.value, err.allowed) from None


def check_config(cfg: DictConfig) -> Checked:
    """Every check that can run before training, in the order a user would fix them.

    Builds the Trainer, the data, the network, the module and the schedule the config
    describes, and takes the horizon the schedule is checked against from that Trainer (see
    :mod:`.horizon`); nothing is launched and nothing is tracked.
    """
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # interpolation errors from OmegaConf
        raise ConfigError("config", "?", str(err).splitlines()[0]) from None
    trainer_cfg = plain.get("trainer") or {}
    trainer = _check_trainer(trainer_cfg)
    check_plan_change(plain.get("on_plan_change"))
    from ..lightning.lr_finder import range_test_config

    range_test_config(plain.get("lr_finder"))
    lr_scale(plain.get("scale_lr", "none"), 1, plain.get("reference_batch_size"))
    # seeded before the network is built, so a job's initial weights depend only on the seed
    seed = plain.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError("seed", seed, "must be a whole number >= 0")
    torch.manual_seed(seed)
    # The check's own copy of the data module, without loader worker processes: counting the
    # batches creates the training iterator, and the count does not depend on them.
    no_workers = {"num_workers": 0} if "num_workers" in (plain.get("data") or {}) else {}
    datamodule = _instantiate(cfg.data, "data", **no_workers)
    try:
        datamodule.setup("fit")
    except ConfigError as err:
        raise ConfigError(f"data.{err.key}", err.value, err.allowed) from None
    except MissingExtraError as err:  # the data packages are an extra of the library
        raise ConfigError("data", type(datamodule).__name__, str(err)) from None
    # every network takes its sizes from the data the same way (see lightning_lrsched.tasks)
    sizes = {"in_features": datamodule.num_features, "num_classes": datamodule.num_classes}
    try:
        net = _instantiate(cfg.model, "model")(**sizes)
    except (ValueError, TypeError, RuntimeError) as err:
        if isinstance(err, ConfigError):
            raise ConfigError(f"model.{err.key}", err.value, err.allowed) from None
        key = blamed_key(plain["model"], str(err))
        raise ConfigError(
            f"model.{key}" if key else "model", plain["model"].get(key), str(err)
        ) from None
    module = classifier(plain, net)
    ckpt = plain.get("ckpt_path")
    if ckpt not in (None, *LIGHTNING_CKPT_PATHS, "auto") and not Path(str(ckpt)).exists():
        raise ConfigError("ckpt_path", ckpt, "no such checkpoint file (or: auto, last, best, hpc)")
    total, per_epoch = _check_horizon(trainer_cfg, trainer, module, datamodule)
    optimizer_cfg, scheduler = with_placeholder_rates(plain["optimizer"], plain.get("scheduler"))
    if scheduler:
        optimizer = build_optimizer(net, optimizer_cfg)
        _check_schedule(optimizer, scheduler, total, per_epoch, why_unbounded(trainer, "trainer."))
    else:
        build_optimizer(net, optimizer_cfg)
    logged = logged_metrics(plain)
    metric = plain.get("optimized_metric", "val_acc")
    if metric not in logged:
        raise ConfigError(
            "optimized_metric", metric, f"is never logged; this run logs {', '.join(logged)}"
        )
    return Checked(
        net, total, per_epoch, tracking_uri(plain.get("logger")), relaunches_command(trainer)
    )


PLACEHOLDER_LR = 1e-3  # stands for "auto" while the rest of the config is checked


def with_placeholder_rates(optimizer: Any, scheduler: Any) -> tuple[Any, Any]:
    """The configs with every ``"auto"`` rate replaced by a placeholder, for the checks that run
    before the range test does (it runs inside ``fit``): ``max_lr`` stands 10x above ``lr``."""
    from ..lightning.lr_finder import is_auto

    if isinstance(optimizer, dict) and is_auto(optimizer.get("lr")):
        optimizer = {**optimizer, "lr": PLACEHOLDER_LR}
    if isinstance(scheduler, dict) and is_auto(scheduler.get("max_lr")):
        if scheduler.get("name") not in ("onecycle", "cyclic"):
            raise ConfigError(
                "scheduler.max_lr", "auto", "is the range test's suggestion for onecycle and cyclic"
            )
        lr = optimizer.get("lr", PLACEHOLDER_LR) if isinstance(optimizer, dict) else PLACEHOLDER_LR
        scheduler = {**scheduler, "max_lr": 10 * float(lr)}
    return optimizer, scheduler


def _check_schedule(
    optimizer: torch.optim.Optimizer,
    scheduler: dict[str, Any],
    total: int | None,
    per_epoch: int | None,
    unbounded: str,
) -> None:
    """Build the schedule on the Trainer's horizon, as ``configure_optimizers`` will."""
    build_for_horizon(
        optimizer, scheduler, total, per_epoch, key_prefix="trainer.", unbounded=unbounded
    )
    if scheduler.get("name") == "plateau":
        from ..tasks.models import Classifier

        monitor = scheduler.get("monitor", "val_loss")
        fit_metrics = Classifier.LOGGED_METRICS["fit"]
        if monitor not in fit_metrics:
            raise ConfigError(
                "scheduler.monitor",
                monitor,
                f"is never logged; the task logs {', '.join(fit_metrics)}",
            )


def train_and_report(cfg: DictConfig, checked: Checked) -> float:
    """Train (and test), print where the run is tracked; return the metric ``optimized_metric``
    names (as lightning-hydra-template's ``train`` does), so a sweep can optimise any of them."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    pl.seed_everything(plain.get("seed", 0), workers=True, verbose=False)  # data order etc.
    root = plain["trainer"].get("default_root_dir") or _output_dir()
    if plain.get("ckpt_path") == "auto":
        plain["ckpt_path"] = resume_from(root)
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
        if "run_name" in plain["logger"] and not plain["logger"]["run_name"]:
            extra["run_name"] = run_name(plain, _experiment_choice())
        logger = _instantiate(cfg.logger, "logger", **extra)
    callbacks = [
        _instantiate(node, f"callbacks.{name}")
        for name, node in (cfg.get("callbacks") or {}).items()
        if node is not None
    ]
    # the bar with the rate, unless trainer.enable_progress_bar=false or a bar of the user's own
    callbacks = with_rate_progress_bar(callbacks, plain["trainer"].get("enable_progress_bar", True))
    options: dict[str, Any] = {"logger": logger, "callbacks": callbacks}
    if not plain["trainer"].get("default_root_dir"):
        options["default_root_dir"] = root  # checkpoints go there
    trainer = _instantiate(cfg.trainer, "trainer", **options)
    # A fresh data module, as configured (loader workers included): Lightning prepares and
    # sets it up inside fit, on every rank. The schedule takes its horizon from this Trainer,
    # through the same training_horizon() the checks read.
    datamodule = _instantiate(cfg.data, "data")
    module = classifier(plain, checked.net)
    if logger and trainer.is_global_zero:
        logger.log_hyperparams(_without_hydra(plain))
        if hasattr(logger, "log_config"):
            logger.log_config(_without_hydra(plain))
            logger.set_tags(_run_tags(plain, trainer.world_size))
    if plain.get("fit", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=plain.get("ckpt_path"))
    results: dict[str, float] = {
        k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1
    }
    if plain.get("test", True):
        for row in trainer.test(module, datamodule=datamodule, verbose=False):
            results.update({k: float(v) for k, v in row.items()})
    metric = plain.get("optimized_metric", "val_acc")
    if trainer.is_global_zero:
        report(results, logger, metric)
    if metric not in results:  # e.g. trainer.limit_val_batches=0: validation never ran
        print(
            f"lrsched train: warning: optimized_metric={metric!r} was not logged by this run "
            f"(it logged {', '.join(sorted(results)) or 'nothing'}); returning nan",
            file=sys.stderr,
        )
        return float("nan")
    return results[metric]


def find_lr_and_report(cfg: DictConfig, checked: Checked) -> float:
    """``lrsched find-lr``: the range test with this config's data, model and optimizer (its
    ``lr`` does not matter: the test sweeps it), on the configured Trainer (``trainer=ddp``
    sweeps on every process), tracked by the configured logger as a run of its own. Prints the
    suggestions and the override that uses one; returns the suggested rate."""
    from ..lightning.lr_finder import LRFinder

    plain = OmegaConf.to_container(cfg, resolve=True)
    pl.seed_everything(plain.get("seed", 0), workers=True, verbose=False)
    root = plain["trainer"].get("default_root_dir") or _output_dir()
    logger: Any = False
    if plain.get("logger"):
        extra: dict[str, Any] = {}
        if checked.tracking_uri:
            extra["tracking_uri"] = checked.tracking_uri
        if "save_dir" in plain["logger"] and not plain["logger"]["save_dir"]:
            extra["save_dir"] = _output_dir()
        if "run_name" in plain["logger"] and not plain["logger"]["run_name"]:
            extra["run_name"] = run_name(plain, _experiment_choice(), range_test=True)
        logger = _instantiate(cfg.logger, "logger", **extra)
    finder = LRFinder(**(plain.get("lr_finder") or {}))
    # No training step: fit() runs the test when fitting starts (on_fit_start), then stops.
    trainer = _instantiate(
        cfg.trainer, "trainer", logger=logger, callbacks=[finder], max_steps=0,
        default_root_dir=root, enable_checkpointing=False,
    )  # fmt: skip
    optimizer, _ = with_placeholder_rates(plain["optimizer"], None)
    settings = {**plain, "optimizer": optimizer, "scheduler": None, "scale_lr": "none"}
    module = classifier(settings, checked.net)
    if logger and trainer.is_global_zero:
        logger.log_hyperparams(_without_hydra(plain))
        if hasattr(logger, "set_tags"):
            tags = _run_tags(plain, trainer.world_size, range_test=True)
            tags["lrsched.kind"] = "range_test"
            logger.set_tags(tags)
    trainer.fit(module, datamodule=_instantiate(cfg.data, "data"))
    result = finder.result
    assert result is not None
    rate = result.suggestion()
    if trainer.is_global_zero:
        strategy = str((plain.get("scheduler") or {}).get("name", ""))
        key = "scheduler.max_lr" if strategy in ("onecycle", "cyclic") else "optimizer.lr"
        print(f"lrsched find-lr: suggested rate {rate:.4g} ({result.config.suggestion})")
        print(f"  plot: {Path(root) / 'lr_finder.png'}")
        print(f"  use it: lrsched train {key}={rate:.3g}   (or {key}=auto to test at the start)")
        report({}, logger)
    return rate


def resume_from(root: str) -> str | None:
    """``ckpt_path=auto``: the newest checkpoint in ``<root>/checkpoints`` (a preemption's, or
    a ``ModelCheckpoint``'s there), or None (a fresh start). Every rank reads the same folder,
    before any of them writes to it."""
    from ..lightning.preemption import newest_checkpoint

    found = newest_checkpoint(Path(root) / "checkpoints")
    if found is not None and int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0))) == 0:
        print(f"lrsched train: resuming from {found}", file=sys.stderr)
    return None if found is None else str(found)


def _output_dir() -> str:
    """The job's Hydra output directory (the working directory outside Hydra)."""
    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else os.getcwd()


def _experiment_choice() -> str | None:
    """The ``experiment=`` option the job was composed with (None outside Hydra)."""
    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get("experiment")


def _run_tags(
    plain: dict[str, Any], world_size: int, *, range_test: bool = False
) -> dict[str, str]:
    """MLflow tags: the strategy, the world size, the git commit if any; the group (the run's
    name without its seed), the seed and the strategy's key parameters (see :mod:`.run_names`)."""
    tags = {
        "lrsched.strategy": str((plain.get("scheduler") or {}).get("name", "none")),
        "lrsched.world_size": str(world_size),
        **run_tags(plain, _experiment_choice(), range_test=range_test),
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


def report(results: dict[str, float], logger: Any, optimized_metric: str = "val_acc") -> None:
    """Print the final metrics, where the run is, and how to open it in the MLflow UI."""
    names = ("val_loss", "val_acc", "test_loss", "test_acc", optimized_metric)
    shown = {k: results[k] for k in dict.fromkeys(names) if k in results}
    if shown:
        print("lrsched train: " + ", ".join(f"{k}={v:.4f}" for k, v in shown.items()))
    uri = getattr(logger, "tracking_uri", None)
    if getattr(logger, "unsent", None) is not None:  # the tracker said where it is kept
        return
    if logger and uri and getattr(logger, "version", None):
        experiment, run = logger.experiment_id, logger.version
        print(f"  MLflow run {run} in experiment {experiment}, store {uri}")
        print(f"  open it: mlflow ui --backend-store-uri {uri}")
        print(
            f"  then:    http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run}"
            "?workflowType=machine_learning"
        )
