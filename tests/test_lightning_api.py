"""The Lightning integration uses Lightning's public APIs, and behaves across a Trainer's life.

Real Trainers on CPU, no mocks. What is pinned down:

- fitting twice with the same module and Trainer adds no second ``PlateauControl`` (nor any
  other callback of ours), and both fits take the right rates, for both ways in, also when the
  module returns its own ``PlateauControl`` from ``configure_callbacks``;
- an ``LRSchedule`` whose optimizer outlives a fit does not step it twice in the next one;
- ``trainer.validate()`` / ``trainer.test()`` after ``fit()`` (even from a checkpoint) leave
  the schedule and its plateau controller exactly as ``fit`` left them;
- ``LRLogger`` refuses two groups with one name (as Lightning's ``LearningRateMonitor``), and
  under manual optimization with two optimizers each curve counts its own optimizer's steps;
- state keys follow Lightning's ``_generate_state_key`` convention and are the same in every
  process (no ``id()``);
- the one private Lightning call (``_setup_train_data``) still does what it is used for;
- ``RunTracking`` draws the planned schedule of an ``LRSchedule`` callback into a real MLflow
  SQLite store, and ``saved_run_id`` reads checkpoints with Lightning's public reader.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning_support import RateRecorder, TinyModule, trainer
from torch import nn

from lightning_lrsched import ConfigError
from lightning_lrsched.callbacks import LRLogger, LRSchedule, PlateauControl
from lightning_lrsched.lightning import attached_schedules, training_horizon

pytestmark = [
    pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers"),
    pytest.mark.filterwarnings("ignore:The number of training batches"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec"),
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
]

BASE_LR = 0.05
PLATEAU = {"name": "plateau", "patience": 0, "factor": 0.5}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class Stalling(TinyModule):
    """Validation loss stuck at 1.0: with patience 0 every validation after the first one
    reduces a plateau schedule's rate."""

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.tensor(1.0))

    def test_step(self, batch, batch_idx):
        self.log("val_loss", torch.tensor(1.0))


def build(route: str, config: dict, module_class: type = Stalling):
    """(module, callbacks) for the helper route or the LRSchedule callback route."""
    if route == "helper":
        return module_class(scheduler=config), []
    return module_class(), [LRSchedule(config)]


def ours(run: pl.Trainer) -> list[str]:
    """The names of the lightning_lrsched callbacks in the Trainer's list."""
    return [
        type(cb).__name__
        for cb in run.callbacks
        if type(cb).__module__.startswith("lightning_lrsched")
    ]


def stalling_plateau_rates(first: int, validations: list[int], steps: int) -> list[float]:
    """Rates of steps ``first..first+steps-1`` of a schedule built at step ``first``: torch's
    ReduceLROnPlateau fed 1.0 at each validation (global steps), effective from that step."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.5)
    rate_from: dict[int, float] = {}
    for at in validations:
        reference.step(1.0)
        rate_from[at] = optimizer.param_groups[0]["lr"]
    rates, rate = [], BASE_LR
    for step in range(first, first + steps):
        rate = rate_from.get(step, rate)
        rates.append(rate)
    return rates


# -- fitting twice --------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["helper", "callback"])
def test_fitting_twice_with_one_module_and_trainer_piles_nothing_up(tmp_path, route):
    module, callbacks = build(route, PLATEAU)
    recorder = RateRecorder()
    run = trainer(tmp_path, [*callbacks, recorder], max_epochs=2, val_check_interval=4)
    run.fit(module)
    first = list(ours(run))
    # Continue the same module with the same Trainer for two more epochs: a new fit, so a new
    # schedule from the configured rate, while the first fit's schedule must be out of the way.
    run.fit_loop.max_epochs = 4
    run.fit(module)

    assert ours(run) == first  # the helper's PlateauControl (or the LRSchedule) once
    assert first == (["PlateauControl"] if route == "helper" else ["LRSchedule"])
    steps = [step for step, _, _ in recorder.rates]
    assert steps == list(range(32))
    rates = [lrs[0] for _, lrs, _ in recorder.rates]
    # validations every 4 steps; each fit's schedule only sees its own fit's validations
    assert rates[:16] == stalling_plateau_rates(0, [4, 8, 12, 16], 16)
    assert rates[16:] == stalling_plateau_rates(16, [20, 24, 28, 32], 16)
    assert min(rates[16:]) == BASE_LR / 4  # reduced twice in the second fit too


class OwnPlateauControl(Stalling):
    """Places the PlateauControl itself, through Lightning's ``configure_callbacks``."""

    def configure_callbacks(self):
        return [PlateauControl()]


def test_plateau_control_from_configure_callbacks_is_the_only_one(tmp_path):
    module, recorder = OwnPlateauControl(scheduler=PLATEAU), RateRecorder()
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", save_last=True)
    run = trainer(
        tmp_path,
        [recorder, checkpoints],
        max_epochs=2,
        val_check_interval=4,
        enable_checkpointing=True,
    )
    run.fit(module)
    run.fit_loop.max_epochs = 4
    run.fit(module)

    # Lightning replaced the first fit's instance by the second's and kept checkpoints last
    assert ours(run) == ["PlateauControl"]
    assert isinstance(run.callbacks[-1], ModelCheckpoint)
    rates = [lrs[0] for _, lrs, _ in recorder.rates]
    assert rates[:16] == stalling_plateau_rates(0, [4, 8, 12, 16], 16)
    assert rates[16:] == stalling_plateau_rates(16, [20, 24, 28, 32], 16)


class KeepsItsOptimizer(TinyModule):
    """Returns the same optimizer from every ``configure_optimizers`` (it outlives a fit)."""

    def configure_optimizers(self):
        if not hasattr(self, "_optimizer"):
            self._optimizer = torch.optim.SGD(self.parameters(), lr=BASE_LR)
        return self._optimizer


def test_lr_schedule_does_not_step_a_surviving_optimizer_twice(tmp_path):
    step = {"name": "step", "step_size": 4, "gamma": 0.5}
    module, recorder = KeepsItsOptimizer(), RateRecorder()
    run = trainer(tmp_path, [LRSchedule(step), recorder], max_epochs=1)
    run.fit(module)
    end_of_first = module._optimizer.param_groups[0]["lr"]  # the rate of step 8: base / 4
    run.fit_loop.max_epochs = 2
    run.fit(module)

    rates = [lrs[0] for _, lrs, _ in recorder.rates]
    assert [s for s, _, _ in recorder.rates] == list(range(16))
    assert rates[:8] == [BASE_LR * 0.5 ** (k // 4) for k in range(8)]
    assert end_of_first == BASE_LR / 4
    # the second fit's schedule starts from the rate the optimizer holds, stepped once per step
    assert rates[8:] == [end_of_first * 0.5 ** (k // 4) for k in range(8)]


# -- validate() and test() after fit ----------------------------------------------------------


def group_rates(run: pl.Trainer) -> list[tuple[float, ...]]:
    return [tuple(g["lr"] for g in opt.param_groups) for opt in run.optimizers]


@pytest.mark.parametrize("route", ["helper", "callback"])
def test_validate_and_test_after_fit_leave_the_plateau_alone(tmp_path, route):
    module, callbacks = build(route, {**PLATEAU, "warmup": 2})
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1)
    run = trainer(
        tmp_path,
        [*callbacks, checkpoints],
        max_epochs=2,
        val_check_interval=4,
        enable_checkpointing=True,
    )
    run.fit(module)
    (schedule,) = attached_schedules(run)
    after_fit = group_rates(run), schedule.get_last_lr()
    assert after_fit[1] == [BASE_LR / 8]  # 4 validations, the first sets the best: 3 halvings

    # Each of these runs the validation hooks on a stalling loss: fed to the controller, every
    # one of them would halve the rate again.
    for _ in range(3):
        run.validate(module, verbose=False)
    run.test(module, dataloaders=module.val_dataloader(), verbose=False)
    # a checkpoint from before the reductions: restoring it into the schedule would raise the rate
    early = tmp_path / "ckpt" / "epoch=0-step=3.ckpt"
    assert early.exists()
    run.validate(module, ckpt_path=early, verbose=False)

    assert attached_schedules(run) == [schedule]
    assert (group_rates(run), schedule.get_last_lr()) == after_fit


# -- LRLogger ---------------------------------------------------------------------------------


DUPLICATES = {
    "same-name": (
        [{"name": "x", "params": r"^net\.0\."}, {"name": "x", "params": r"^net\.2\."}],
        "SGD.param_groups[1].name",
        "x",
    ),
    # an explicit "pg1" on group 0 and the unnamed group 1, which LRLogger calls pg1
    "named-like-an-index": (
        [{"name": "pg1", "params": r"^net\.0\."}, {"name": "", "params": r"^net\.2\."}],
        "SGD.param_groups[1].name",
        "pg1",
    ),
}


@pytest.mark.parametrize(("groups", "key", "name"), DUPLICATES.values(), ids=DUPLICATES.keys())
def test_lr_logger_refuses_two_groups_with_one_name(tmp_path, groups, key, name):
    optimizer = {"name": "sgd", "lr": 0.1, "param_groups": groups}
    recorder = RateRecorder()
    run = trainer(
        tmp_path,
        [LRLogger(), recorder],
        logger=CSVLogger(tmp_path),
        max_epochs=1,
    )
    with pytest.raises(ConfigError) as err:
        run.fit(TinyModule(scheduler={"name": "cosine"}, optimizer=optimizer))
    message = str(err.value)
    assert "\n" not in message
    assert err.value.key == key
    assert message.startswith(f"{key}={name!r}")
    assert "unique" in message
    assert recorder.rates == []  # before the first step


class TwoOptimizers(TinyModule):
    """Manual optimization; the head's optimizer (AdamW) steps on every other batch only."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def configure_optimizers(self):
        return [
            torch.optim.SGD(self.net[0].parameters(), lr=0.1, momentum=0.9),
            torch.optim.AdamW(self.net[2].parameters(), lr=0.01),
        ]

    def training_step(self, batch, batch_idx):
        x, y = batch
        sgd, adamw = self.optimizers()
        sgd.zero_grad()
        adamw.zero_grad()
        self.manual_backward(nn.functional.mse_loss(self.net(x), y))
        sgd.step()
        if batch_idx % 2 == 0:
            adamw.step()


def test_lr_logger_counts_each_optimizers_own_steps(tmp_path):
    logger = CSVLogger(tmp_path)
    schedules = [
        LRSchedule({"name": "step", "step_size": 2, "gamma": 0.5}, optimizer_index=0),
        LRSchedule({"name": "step", "step_size": 2, "gamma": 0.5}, optimizer_index=1),
    ]
    run = trainer(
        tmp_path, [*schedules, LRLogger()], logger=logger, max_epochs=2, log_every_n_steps=1
    )
    run.fit(TwoOptimizers())
    assert run.global_step == 16 + 8  # Lightning counts both optimizers' steps together

    with open(Path(logger.log_dir) / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    for name, base, steps in (("SGD", 0.1, 16), ("AdamW", 0.01, 8)):
        points = [(int(r["step"]), float(r[f"lr/{name}/pg0"])) for r in rows if r[f"lr/{name}/pg0"]]
        # every optimizer's curve runs 0, 1, 2, ... over its own steps, as its schedule does
        assert points == [(k, base * 0.5 ** (k // 2)) for k in range(steps)], name


# -- state keys -------------------------------------------------------------------------------


def test_state_keys_follow_lightnings_convention_and_are_stable(tmp_path):
    first, again = LRSchedule({"name": "cosine"}), LRSchedule({"name": "step", "step_size": 3})
    second = LRSchedule({"name": "cosine"}, optimizer_index=1)
    # what Callback._generate_state_key makes of the one thing that tells instances apart
    assert first.state_key == again.state_key == "LRSchedule{'optimizer_index': 0}"
    assert second.state_key == "LRSchedule{'optimizer_index': 1}"
    assert PlateauControl().state_key == PlateauControl().state_key == "PlateauControl"

    # the key a checkpoint holds is the one a fresh callback (a new process) looks up
    run = trainer(
        tmp_path,
        [first, ModelCheckpoint(tmp_path / "ckpt", save_last=True)],
        max_epochs=1,
        enable_checkpointing=True,
    )
    run.fit(TinyModule())
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    fresh = LRSchedule({"name": "cosine"})
    assert saved["callbacks"][fresh.state_key]["scheduler"]["step"] == 8
    assert saved["lr_schedulers"] == []  # the callback's schedule is its own state


# -- the one private call -----------------------------------------------------------------------


class CountsLoaders(TinyModule):
    """Records what the helper's horizon is inside configure_optimizers and counts how often
    Lightning asks for the train loader."""

    loaders = 0

    def train_dataloader(self):
        self.loaders += 1
        return super().train_dataloader()

    def configure_optimizers(self):
        self.horizon = training_horizon(self.trainer)
        return super().configure_optimizers()


def test_private_setup_data_still_loads_the_train_data_once(tmp_path):
    """Guards ``trainer_info._setup_train_data`` (``trainer.fit_loop.setup_data()``), the
    package's one private Lightning call: if this fails, Lightning changed it; adapt that one
    function. (If Lightning's public ``estimated_stepping_batches`` ever loads the data with
    ``max_epochs=-1`` too, the function can go.)"""
    assert callable(getattr(pl.Trainer(logger=False).fit_loop, "setup_data", None))
    module = CountsLoaders(scheduler={"name": "step", "step_size": "1ep"})
    run = trainer(tmp_path, [], max_epochs=-1, max_steps=10)
    run.fit(module)
    # no public API gave the epoch length here: max_epochs=-1 leaves the data unloaded
    assert module.horizon == (10, 8)
    assert module.loaders == 1  # loaded early, then reused by the fit loop: never twice


# -- tracking ---------------------------------------------------------------------------------


def test_run_tracking_plans_the_lr_schedule_callbacks_schedule(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from lightning_lrsched.tracking import MLflowTracker, RunTracking, saved_run_id

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MLflowTracker(experiment_name="callback-route", tracking_uri=uri)
    schedule = LRSchedule({"name": "cosine", "warmup": 2})
    run = trainer(
        tmp_path,
        [schedule, RunTracking(), ModelCheckpoint(tmp_path / "ckpt", save_last=True)],
        logger=tracker,
        max_epochs=1,
        enable_checkpointing=True,
    )
    run.fit(TinyModule())
    assert attached_schedules(run) == [schedule.scheduler]
    client = MlflowClient(uri)
    artifacts = {a.path for a in client.list_artifacts(tracker.version, "schedule")}
    assert "schedule/planned.png" in artifacts
    assert saved_run_id(str(tmp_path / "ckpt" / "last.ckpt")) == tracker.version


class LastBatchStalls(TinyModule):
    """``train_loss`` (logged per step and per epoch) whose epoch mean falls every epoch while
    the epoch's last batch is always 5.0: a plateau that read the last batch would see no
    improvement at all."""

    def training_step(self, batch, batch_idx):
        value = 5.0 if batch_idx == self.trainer.num_training_batches - 1 else 1.0
        value /= (
            1.0 if batch_idx == self.trainer.num_training_batches - 1 else self.current_epoch + 1
        )
        loss = (self.net(batch[0]) * 0.0).sum() + value
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss


def test_plateau_on_a_per_step_training_metric_watches_its_epoch_mean(tmp_path):
    """Issue: ``monitor=train_loss`` with the default ``check_on: validation`` read the last
    batch's value (validation ends inside the training epoch, before the epoch mean exists)."""
    scheduler = {"name": "plateau", "monitor": "train_loss", "patience": 0, "factor": 0.5}
    module = LastBatchStalls(scheduler=scheduler, optimizer={"name": "sgd", "lr": 0.1})
    seen = []

    class EpochMeans(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append(float(trainer.callback_metrics["train_loss"]))

    rates = RateRecorder()
    fit = trainer(tmp_path, [rates, EpochMeans()], max_epochs=4)
    fit.fit(module)
    # the epoch means fell every epoch (7 batches of 1/(epoch+1) and one of 5.0, over 8)
    assert seen == pytest.approx([(7 / (e + 1) + 5) / 8 for e in range(4)])
    assert {lrs for _, lrs, _ in rates.rates} == {(0.1,)}  # so the rate never dropped
