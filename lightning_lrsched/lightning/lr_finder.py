"""The range test inside a Lightning fit: ``LRFinder`` (a callback) and ``rate="auto"``.

Both sweep with the module's own ``training_step`` on the Trainer's training data before the
first training step, put everything back (see :mod:`lightning_lrsched.range_test`), and report
to every logger: the suggestions as hyperparameters (``lr_finder/<method>``,
``lr_finder/suggestion``), the sweep's points as metrics (``lr_finder/lr``,
``lr_finder/loss``, ``lr_finder/loss_smoothed`` at sweep steps 0, 1, ...) and the plot as a
figure (``lr_finder/range_test.png`` in MLflow) and ``lr_finder.png`` in the Trainer's
``default_root_dir``. While it sweeps, a progress bar shows each step's rate and smoothed loss
when the Trainer shows one (``enable_progress_bar``), on global rank zero.
Under DDP each step's loss and gradients are averaged over the processes, so every process
sweeps the same curve, and rank 0's suggestion is broadcast: every rank takes the same rate.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_helpers import is_overridden

from ..errors import ConfigError
from ..range_test import RangeTestConfig, RangeTestResult, sweep

AUTO = "auto"
FIGURE_NAME = "lr_finder/range_test.png"


def range_test_config(settings: RangeTestConfig | Mapping[str, Any] | None) -> RangeTestConfig:
    """A checked :class:`RangeTestConfig` from a mapping (e.g. the app's ``lr_finder`` node)."""
    if isinstance(settings, RangeTestConfig):
        return settings
    settings = dict(settings or {})
    allowed = RangeTestConfig.__dataclass_fields__
    for key, value in settings.items():
        if key not in allowed:
            raise ConfigError(f"lr_finder.{key}", value, f"allowed: {', '.join(allowed)}")
    return RangeTestConfig(**settings)


def training_batches(trainer: pl.Trainer, module: pl.LightningModule) -> Any:
    """A fresh training loader from the data module, else the module's ``train_dataloader``."""
    if trainer.datamodule is not None:
        return trainer.datamodule.train_dataloader()
    if is_overridden("train_dataloader", module):
        return module.train_dataloader()
    raise ConfigError(
        "lr_finder",
        type(module).__name__,
        "the range test needs the training data from a LightningDataModule or the module's "
        "train_dataloader(); loaders passed to fit() directly are not visible before fit runs",
    )


@contextlib.contextmanager
def _logging_muted(module: pl.LightningModule) -> Iterator[None]:
    """``training_step`` logs through Lightning's loop, which is not running during the sweep:
    its ``self.log`` calls are dropped while the sweep calls it (an instance attribute that
    shadows the method, removed afterwards)."""
    module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    module.log_dict = lambda *args, **kwargs: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        del module.log, module.log_dict


def _loss(output: Any) -> torch.Tensor:
    loss = output.get("loss") if isinstance(output, Mapping) else output
    if not isinstance(loss, torch.Tensor):
        raise ConfigError(
            "lr_finder",
            type(output).__name__,
            "training_step must return the loss (a tensor or a dict with 'loss') for the "
            "range test",
        )
    return loss


def find_lr(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    optimizer: torch.optim.Optimizer,
    settings: RangeTestConfig | Mapping[str, Any] | None = None,
) -> RangeTestResult:
    """Run the range test on ``module`` with ``optimizer`` (every group swept together) and the
    Trainer's training data; everything is put back afterwards. Every rank gets rank 0's
    result."""
    config = range_test_config(settings)
    if not module.automatic_optimization:
        raise ConfigError(
            "lr_finder", "manual optimization", "the range test needs automatic optimization"
        )
    strategy = trainer.strategy
    reduce = None
    if trainer.world_size > 1:
        reduce = lambda tensor: strategy.reduce(tensor, reduce_op="mean")  # noqa: E731
    index = iter(range(1 << 62))
    was_training = module.training

    def loss_of(batch: Any) -> torch.Tensor:
        batch = strategy.batch_to_device(batch)
        with trainer.precision_plugin.forward_context():
            return _loss(module.training_step(batch, next(index)))

    module.train()
    try:
        with _logging_muted(module), _sweep_bar(trainer, config) as on_step:
            result = sweep(
                module, optimizer, loss_of, training_batches(trainer, module), config,
                reduce=reduce, on_step=on_step,
            )  # fmt: skip
    finally:
        module.train(was_training)
    return strategy.broadcast(result, src=0)


@contextlib.contextmanager
def _sweep_bar(
    trainer: pl.Trainer, config: RangeTestConfig
) -> Iterator[Callable[[int, float, float, float], None] | None]:
    """A tqdm bar over the sweep's steps with the rate and the smoothed loss (the sweep's
    ``on_step``), where the Trainer shows a progress bar: it has one, enabled (Lightning
    disables it on ranks other than zero), and this is global rank zero. The sweep runs outside
    Lightning's loops, so their bar would stand still meanwhile."""
    from .progress import format_rate

    progress = trainer.progress_bar_callback
    # is_enabled: TQDM's and Rich's bars; the ProgressBar base class has none
    enabled = progress is not None and getattr(progress, "is_enabled", True)
    if not enabled or not trainer.is_global_zero:
        yield None
        return
    from tqdm import tqdm

    # stdout, as Lightning's own bars
    bar = tqdm(total=config.num_steps, desc="range test", unit="step", file=sys.stdout)

    def on_step(i: int, rate: float, loss: float, smoothed: float) -> None:
        bar.set_postfix_str(f"lr={format_rate(rate)}, loss={smoothed:.4g}", refresh=False)
        bar.update(1)

    try:
        yield on_step
    except BaseException:
        bar.close()
        raise
    if bar.n < config.num_steps:  # the sweep stopped early
        shown = f"{bar.postfix}, " if bar.postfix else ""
        bar.set_postfix_str(f"{shown}stopped: the loss diverged", refresh=False)
    bar.close()


def report(
    trainer: pl.Trainer, result: RangeTestResult, applied: Mapping[str, float] | None = None
) -> None:
    """Print the suggestions (rank 0) and record the test with every logger: suggestions and
    the ``applied`` rates as hyperparameters, the points as metrics, the plot as a figure."""
    if not trainer.is_global_zero:
        return
    rank_zero_info(result.table())
    params: dict[str, Any] = {f"lr_finder/{m}": v for m, v in result.suggestions().items()}
    params["lr_finder/suggestion"] = result.suggestion()
    params["lr_finder/method"] = result.config.suggestion
    params.update({f"lr_finder/applied/{key}": value for key, value in (applied or {}).items()})
    figure = result.figure()
    path = Path(trainer.default_root_dir) / "lr_finder.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    for logger in trainer.loggers:
        logger.log_hyperparams(params)
        for i, (lr, loss, smooth) in enumerate(
            zip(result.lrs, result.losses, result.smoothed, strict=True)
        ):
            point = {"lr_finder/lr": lr, "lr_finder/loss": loss, "lr_finder/loss_smoothed": smooth}
            logger.log_metrics(point, step=i)
        if hasattr(logger, "log_figure"):  # the MLflowTracker: an artifact of its run
            logger.log_figure(figure, FIGURE_NAME)


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO


def resolve_auto_rates(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    optimizer: Any,
    scheduler: Any,
    settings: RangeTestConfig | Mapping[str, Any] | None,
    build: Any,
) -> tuple[Any, Any, dict[str, float]]:
    """``optimizer`` and ``scheduler`` configs with every ``"auto"`` rate (the optimizer's
    ``lr``, the schedule's ``max_lr``) replaced by the range test's suggestion, and the rates so
    chosen (``{"optimizer.lr": ...}``); unchanged (and no test run) when none is ``"auto"``.
    A resumed fit takes the rates from its checkpoint instead of testing again.
    ``build(module, optimizer_config)`` builds the optimizer the sweep uses (a throwaway one:
    the real one is built from the result)."""
    optimizer_auto = isinstance(optimizer, Mapping) and is_auto(optimizer.get("lr"))
    scheduler_auto = isinstance(scheduler, Mapping) and is_auto(scheduler.get("max_lr"))
    if not (optimizer_auto or scheduler_auto):
        return optimizer, scheduler, {}
    if trainer.ckpt_path is not None:  # resuming: the rates the test chose at the start
        if scheduler is None:  # no schedule: the optimizer's restored state holds the rate
            return {**optimizer, "lr": 1.0}, scheduler, {}
        applied = saved_auto_rates(trainer)
        return (*_with_rates(optimizer, scheduler, applied), applied)
    probe_config = dict(optimizer)
    if optimizer_auto:
        probe_config["lr"] = 1.0  # the sweep sets every group's rate itself
    if probe_config.get("param_groups"):
        probe_config["param_groups"] = [
            {k: v for k, v in group.items() if k != "lr"} for group in probe_config["param_groups"]
        ]
    result = find_lr(trainer, module, build(module, probe_config), settings)
    rate = result.suggestion()
    applied = {}
    if optimizer_auto:
        applied["optimizer.lr"] = rate
    if scheduler_auto:
        applied["scheduler.max_lr"] = rate
    report(trainer, result, applied)
    return (*_with_rates(optimizer, scheduler, applied), applied)


def _with_rates(optimizer: Any, scheduler: Any, applied: Mapping[str, float]) -> tuple[Any, Any]:
    if "optimizer.lr" in applied:
        optimizer = {**optimizer, "lr": applied["optimizer.lr"]}
    if "scheduler.max_lr" in applied:
        scheduler = {**scheduler, "max_lr": applied["scheduler.max_lr"]}
    return optimizer, scheduler


def saved_auto_rates(trainer: pl.Trainer) -> dict[str, float]:
    """The rates the range test chose, from the checkpoint this fit resumes: the schedule's
    state keeps them (``ScheduleLR.chosen_rates``). ``configure_optimizers`` runs before
    Lightning restores the schedulers, so they are read from the file."""
    checkpoint = trainer.strategy.load_checkpoint(trainer.ckpt_path)
    for state in checkpoint.get("lr_schedulers", []):
        if isinstance(state, Mapping) and state.get("chosen_rates"):
            return {key: float(value) for key, value in state["chosen_rates"].items()}
    raise ConfigError(
        "ckpt_path",
        str(trainer.ckpt_path),
        "holds no rate chosen by a range test; resume with the rate it was trained with "
        "instead of 'auto'",
    )


class LRFinder(Callback):
    """Run the learning-rate range test when fitting starts, before the first training step::

        trainer = L.Trainer(callbacks=[LRFinder(num_steps=100, suggestion="valley")])

    It sweeps the first optimizer's rate (every group together) from ``min_lr`` to ``max_lr``
    over ``num_steps`` training steps of the module's own ``training_step``, stops early when the
    loss diverges, restores the weights, the optimizer, the schedules and the random state bit
    for bit, and reports the suggestions (see :mod:`lightning_lrsched.range_test`): printed,
    logged to every logger, plotted. ``result`` holds them afterwards. With ``apply=True`` the
    suggestion becomes every group's rate and the base rate of the schedules already built
    for that optimizer (their curves scale with it).

    To feed a schedule instead, write ``"auto"`` for its rate: ``optimizer={"lr": "auto", ...}``
    or ``scheduler={"name": "onecycle", "max_lr": "auto"}`` in
    :func:`lightning_lrsched.configure_optimizers` (``lrsched train scheduler.max_lr=auto``).
    """

    def __init__(self, *, apply: bool = False, optimizer_index: int = 0, **settings: Any) -> None:
        self.config = range_test_config(settings)
        self.apply = apply
        self.optimizer_index = optimizer_index
        self.result: RangeTestResult | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path is not None:
            return  # a resumed fit keeps the rate it was started with
        from .scheduling import attached_schedules

        optimizer = trainer.optimizers[self.optimizer_index]
        schedules = [s for s in attached_schedules(trainer) if s.optimizer is optimizer]
        saved = [s.state_dict() for s in schedules]
        self.result = find_lr(trainer, pl_module, optimizer, self.config)
        for schedule, state in zip(schedules, saved, strict=True):
            schedule.load_state_dict(state)  # a schedule stepped by the sweep's steps
        rate = self.result.suggestion()
        applied = {}
        if self.apply:
            for schedule in schedules:
                schedule.rebase([rate] * len(optimizer.param_groups))
            if not schedules:
                for group in optimizer.param_groups:
                    group["lr"] = rate
            applied["optimizer.lr"] = rate
        report(trainer, self.result, applied)
