"""``LRSchedule``: attach a schedule to an unmodified module from the Trainer's callback list."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.hooks import RemovableHandle

from ..adapter import ScheduleLR, check_plan_change
from ..errors import ConfigError
from .gradient_control import ensure_gradient_control
from .plateau_control import feed, feeds_now
from .rank_guard import ensure_rank_guard
from .schedule_free import check_single_warmup, ensure_schedule_free_modes
from .scheduling import schedule_for_trainer
from .swa import swa_has_started
from .trainer_info import SCALE_MODES


class LRSchedule(Callback):
    """Attach a schedule to a module whose ``configure_optimizers`` returns only optimizers::

        trainer = L.Trainer(callbacks=[LRSchedule({"name": "cosine", "warmup": "5%"})])

    The schedule drives optimizer ``optimizer_index`` (one callback per optimizer for several)
    and is built when fitting starts, with the Trainer's horizon. It advances after every step
    of *its* optimizer (torch's public ``Optimizer.register_step_post_hook``), so it needs no
    code in the module, under automatic and manual optimization alike, and each optimizer's
    schedule counts that optimizer's own steps. Its state is this callback's state in
    checkpoints (``Callback.state_dict``), restored before the first step of a resumed fit. A
    plateau schedule gets its metric, averaged across ranks, at the end of each validation of
    ``fit`` (before the checkpoint callbacks run); a hypergradient schedule adapts to each step's
    gradients before the update (``GradientControl``). ``max_lr="auto"`` (onecycle, cyclic) runs
    the range test first (``lr_finder``: its settings). Options as in
    :func:`lightning_lrsched.configure_optimizers`.

    A step the optimizer does not take (a ``GradScaler`` skips it for inf/NaN gradients) runs
    no step hook, so it does not advance the schedule. With Lightning's
    ``StochasticWeightAveraging`` callback the schedule stops writing rates at the start of
    SWA's first epoch, where SWA's ``SWALR`` takes over from the rate in effect.
    """

    def __init__(
        self,
        config: Any,
        optimizer_index: int = 0,
        *,
        scale_lr: str = "none",
        reference_batch_size: int | None = None,
        on_plan_change: str = "error",
        lr_finder: Any = None,
    ) -> None:
        if isinstance(optimizer_index, bool) or not isinstance(optimizer_index, int):
            raise ConfigError("optimizer_index", optimizer_index, "must be a whole number >= 0")
        if optimizer_index < 0:
            raise ConfigError("optimizer_index", optimizer_index, "must be a whole number >= 0")
        if scale_lr not in SCALE_MODES:
            raise ConfigError("scale_lr", scale_lr, f"must be one of {', '.join(SCALE_MODES)}")
        check_plan_change(on_plan_change)
        self.config = config
        self.optimizer_index = optimizer_index
        self.scale_lr = scale_lr
        self.reference_batch_size = reference_batch_size
        self.on_plan_change = on_plan_change
        self.lr_finder = lr_finder  # the range test's settings, for max_lr="auto"
        self.scheduler: ScheduleLR | None = None
        self._stage: str | None = None
        self._saved_state: dict[str, Any] | None = None  # restored before the schedule exists
        self._step_hook: RemovableHandle | None = None
        self._handed_over = False  # to StochasticWeightAveraging: no more steps or feeds

    @property
    def state_key(self) -> str:
        # Lightning's documented convention; the optimizer index is what tells two instances
        # apart and stays the same from one process to the next (unlike an id()).
        return self._generate_state_key(optimizer_index=self.optimizer_index)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Runs before Lightning restores a checkpoint into the callbacks: forget the schedule of
        # an earlier fit, so that a restored state waits for this fit's own schedule.
        self._stage = stage
        if stage == "fit":
            self._detach()
            self.scheduler = None
            self._saved_state = None
            self._handed_over = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = self._own_optimizer(trainer)
        config, chosen = self._with_auto_rate(trainer, pl_module, optimizer)
        self.scheduler = schedule_for_trainer(
            trainer,
            optimizer,
            config,
            scale_lr=self.scale_lr,
            reference_batch_size=self.reference_batch_size,
            on_plan_change=self.on_plan_change,
        )
        self.scheduler.chosen_rates = chosen or None
        if self._saved_state is not None:
            self.scheduler.load_state_dict(self._saved_state)
            self._saved_state = None
        scheduler = self.scheduler
        if scheduler.gradient_driven is not None:  # hypergradient: adapted before each update
            ensure_gradient_control(trainer, scheduler)
        check_single_warmup(optimizer, scheduler.description)
        ensure_rank_guard(trainer)
        ensure_schedule_free_modes(trainer, optimizer, after=self)
        # Advance after every real step of this optimizer (accumulating batches take none).
        self._step_hook = optimizer.register_step_post_hook(lambda *_: scheduler.step())

    def _with_auto_rate(
        self, trainer: pl.Trainer, module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> tuple[Any, dict[str, float]]:
        """The config with ``max_lr="auto"`` replaced by the range test's suggestion (taken from
        the restored state when resuming), and the rates so chosen."""
        from ..registry import to_mapping
        from .lr_finder import find_lr, is_auto, report

        config = to_mapping(self.config, "scheduler")
        if not is_auto(config.get("max_lr")):
            return self.config, {}
        saved = (self._saved_state or {}).get("chosen_rates")
        if saved:
            chosen = {key: float(value) for key, value in saved.items()}
        else:
            result = find_lr(trainer, module, optimizer, self.lr_finder)
            chosen = {"scheduler.max_lr": result.suggestion()}
            report(trainer, result, chosen)
        return {**config, "max_lr": chosen["scheduler.max_lr"]}, chosen

    def _own_optimizer(self, trainer: pl.Trainer) -> torch.optim.Optimizer:
        optimizers = trainer.optimizers
        if self.optimizer_index >= len(optimizers):
            raise ConfigError(
                "optimizer_index",
                self.optimizer_index,
                f"the module has {len(optimizers)} optimizer(s)",
            )
        twins = [
            cb
            for cb in trainer.callbacks
            if isinstance(cb, LRSchedule) and cb.optimizer_index == self.optimizer_index
        ]
        if len(twins) > 1:
            raise ConfigError(
                "optimizer_index",
                self.optimizer_index,
                f"{len(twins)} LRSchedule callbacks drive this optimizer; give each its own",
            )
        optimizer = optimizers[self.optimizer_index]
        for config in trainer.lr_scheduler_configs:
            if config.scheduler.optimizer is optimizer:
                raise ConfigError(
                    "optimizer_index",
                    self.optimizer_index,
                    f"{type(optimizer).__name__} already has a scheduler from configure_optimizers",
                )
        return optimizer

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # resumed inside an SWA epoch: Lightning calls no on_train_epoch_start for that epoch
        self._hand_over_to_swa(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._hand_over_to_swa(trainer)

    def _hand_over_to_swa(self, trainer: pl.Trainer) -> None:
        """From SWA's first epoch on, its SWALR drives the rate: stop stepping and feeding."""
        if not self._handed_over and swa_has_started(trainer):
            self._handed_over = True
            self._detach()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._handed_over:
            return
        if feeds_now(trainer, self.scheduler, "validation"):
            assert self.scheduler is not None
            feed(trainer, self.scheduler)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._handed_over:
            return
        if feeds_now(trainer, self.scheduler, "train_epoch"):
            assert self.scheduler is not None
            feed(trainer, self.scheduler)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the schedule saved in a checkpoint, when resuming ``fit`` (never when a
        checkpoint is only evaluated by ``validate``/``test``/``predict``)."""
        state = state_dict.get("scheduler")
        if state is None or self._stage != "fit":
            return
        if self.scheduler is None:  # usual order: restored before on_fit_start builds it
            self._saved_state = state
        else:  # strategies that restore after setup (e.g. DeepSpeed)
            self.scheduler.load_state_dict(state)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._detach()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._detach()  # Lightning calls no teardown after an exception

    def _detach(self) -> None:
        """Stop stepping: an optimizer that outlives this fit must not be stepped twice later."""
        if self._step_hook is not None:
            self._step_hook.remove()
            self._step_hook = None
