"""Schedule-free optimizers (the ``schedulefree`` package) in real Lightning runs.

The optimizer's train/eval mode is observed at every hook by a probe callback; the logged
effective rate is compared with the package's own ``scheduled_lr`` over whole runs; BatchNorm
recalibration is compared with the package's recipe applied by hand; a fit resumed from a
checkpoint written in eval mode ends with the rates and weights of the run that wrote it.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning_support import RateRecorder, regression_data, trainer
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

import lightning_lrsched
from lightning_lrsched import ConfigError
from lightning_lrsched.callbacks import LRLogger, LRSchedule, ScheduleFreeModes
from lightning_lrsched.lightning import build_optimizer
from lightning_lrsched.lightning.preemption import apply_restored_loader_state
from lightning_lrsched.lightning.schedule_free import in_train_mode, is_schedule_free, rate_in_use

schedulefree = pytest.importorskip("schedulefree")

pytestmark = [
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated"),
    pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
    pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`"),
]

ADAMW_SF = {"name": "adamw_schedulefree", "lr": 0.02}


class SFModule(pl.LightningModule):
    """A small regression net (optionally with BatchNorm) on a schedule-free optimizer; every
    step records the optimizer's mode where the module computes (train/val/test/predict)."""

    def __init__(self, optimizer=None, scheduler=None, batch_norm=False, shuffle=False):
        super().__init__()
        norm = [nn.BatchNorm1d(8)] if batch_norm else []
        self.net = nn.Sequential(nn.Linear(4, 8), *norm, nn.ReLU(), nn.Linear(8, 1))
        self.optimizer_config = optimizer or ADAMW_SF
        self.scheduler_config = scheduler
        self.shuffle = shuffle
        self.seen: list[tuple[str, bool]] = []

    def forward(self, x):
        return self.net(x)

    def _mode(self, where):
        optimizer = self.trainer.optimizers[0]
        if is_schedule_free(optimizer):
            self.seen.append((where, in_train_mode(optimizer)))

    def training_step(self, batch, batch_idx):
        self._mode("training_step")
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        self._mode("validation_step")
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self(x), y))

    def test_step(self, batch, batch_idx):
        self._mode("test_step")
        x, y = batch
        self.log("test_loss", nn.functional.mse_loss(self(x), y))

    def predict_step(self, batch, batch_idx):
        self._mode("predict_step")
        return self(batch[0])

    def train_dataloader(self):
        if self.shuffle == "stateful":  # a run resumed inside an epoch sees its unseen batches
            from torchdata.stateful_dataloader import StatefulDataLoader

            data = regression_data(64)
            order = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
            return StatefulDataLoader(data, batch_size=8, sampler=order)  # Lightning sets epochs
        return DataLoader(regression_data(64), batch_size=8, shuffle=self.shuffle)

    def val_dataloader(self):
        return DataLoader(regression_data(32, seed=1), batch_size=16)

    test_dataloader = val_dataloader
    predict_dataloader = val_dataloader

    def configure_optimizers(self):
        if self.scheduler_config is None:
            return build_optimizer(self, self.optimizer_config)
        return lightning_lrsched.configure_optimizers(
            self, optimizer=self.optimizer_config, scheduler=self.scheduler_config
        )


class ModeProbe(pl.Callback):
    """Records (hook, train mode) at every hook where the mode is prescribed."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []
        self.saved_x_ok: list[bool] = []

    def _record(self, trainer, hook):
        prefix = "sanity_" if trainer.sanity_checking else ""
        self.seen.append((prefix + hook, in_train_mode(trainer.optimizers[0])))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._record(trainer, "train_batch_start")

    def on_validation_start(self, trainer, pl_module):
        self._record(trainer, "validation_start")

    def on_validation_end(self, trainer, pl_module):
        self._record(trainer, "validation_end")

    def on_test_start(self, trainer, pl_module):
        self._record(trainer, "test_start")

    def on_predict_start(self, trainer, pl_module):
        self._record(trainer, "predict_start")

    def on_fit_end(self, trainer, pl_module):
        self._record(trainer, "fit_end")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self._record(trainer, "save_checkpoint")
        # what is written: the parameters of eval mode (x) and eval mode in the optimizer state
        params = dict(pl_module.named_parameters())
        weights_are_params = all(
            torch.equal(checkpoint["state_dict"][name], p) for name, p in params.items()
        )
        groups = checkpoint["optimizer_states"][0]["param_groups"]
        self.saved_x_ok.append(weights_are_params and not any(g["train_mode"] for g in groups))


def modes(seen, hook):
    return {mode for where, mode in seen if where == hook}


def test_modes_at_every_hook(tmp_path):
    """Train mode where the module trains; eval mode for the sanity check, every validation,
    test, predict, the end of fit and every checkpoint (written with the weights ``x``)."""
    probe = ModeProbe()
    module = SFModule(scheduler={"name": "constant", "warmup": 2})
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    run = trainer(
        tmp_path,
        [probe, checkpoints],
        enable_checkpointing=True,
        num_sanity_val_steps=1,
        val_check_interval=4,  # validations inside the epoch too
    )
    run.fit(module)
    assert isinstance(run.callbacks[0], ScheduleFreeModes)  # added by configure_optimizers
    assert modes(probe.seen, "sanity_validation_start") == {False}
    assert modes(probe.seen, "train_batch_start") == {True}
    assert modes(module.seen, "training_step") == {True}
    for hook in ("validation_start", "validation_end", "save_checkpoint", "fit_end"):
        assert modes(probe.seen, hook) == {False}, hook
    assert modes(module.seen, "validation_step") == {False}
    assert len(probe.saved_x_ok) == 5 and all(probe.saved_x_ok)
    # the first training batch after a validation ran in train mode again
    after_validation = [
        probe.seen[i + 1]
        for i, (hook, _) in enumerate(probe.seen[:-1])
        if hook == "validation_end" and probe.seen[i + 1][0] == "train_batch_start"
    ]
    assert after_validation and {mode for _, mode in after_validation} == {True}

    run.test(module, verbose=False)
    run.predict(module)
    assert modes(probe.seen, "test_start") == modes(probe.seen, "predict_start") == {False}
    assert modes(module.seen, "test_step") == modes(module.seen, "predict_step") == {False}
    # a checkpoint saved by hand after fit is also in eval mode
    run.save_checkpoint(tmp_path / "after.ckpt")
    assert probe.saved_x_ok[-1]


def test_lr_schedule_callback_adds_the_modes(tmp_path):
    """Through the ``LRSchedule`` callback (module returns only the optimizer) as well."""
    probe = ModeProbe()
    module = SFModule()  # scheduler=None: the optimizer only
    run = trainer(tmp_path, [LRSchedule({"name": "constant", "warmup": 3}), probe], max_epochs=1)
    run.fit(module)
    assert sum(isinstance(cb, ScheduleFreeModes) for cb in run.callbacks) == 1
    assert modes(module.seen, "training_step") == modes(probe.seen, "train_batch_start") == {True}
    assert modes(module.seen, "validation_step") == {False}


@pytest.mark.parametrize(
    "name, options",
    [
        ("adamw_schedulefree", {"lr": 0.01, "warmup_steps": 5}),
        ("sgd_schedulefree", {"lr": 0.5, "warmup_steps": 3}),
        ("radam_schedulefree", {"lr": 0.01, "betas": (0.9, 0.9)}),
        ("radam_schedulefree", {"lr": 0.01, "betas": (0.9, 0.9), "silent_sgd_phase": False}),
    ],
)
def test_rate_in_use_is_the_packages_scheduled_lr(name, options):
    """Before each step, ``rate_in_use`` is the rate the step then records as ``scheduled_lr``
    (the package's warmup, RAdam's rectification), bitwise, over a whole run."""
    torch.manual_seed(0)
    net = nn.Linear(3, 1)
    optimizer = build_optimizer(net, {"name": name, **options})
    optimizer.train()
    predicted, recorded = [], []
    for _ in range(12):
        net(torch.randn(4, 3)).pow(2).mean().backward()
        predicted.append(rate_in_use(optimizer.param_groups[0]))
        optimizer.step()
        optimizer.zero_grad()
        recorded.append(optimizer.param_groups[0]["scheduled_lr"])
    assert predicted == recorded
    assert len(set(recorded)) > 2  # the rate did change


def logged_rows(logger: CSVLogger, column: str) -> list[dict[str, str]]:
    with open(Path(logger.log_dir) / "metrics.csv", newline="") as file:
        return [row for row in csv.DictReader(file) if row.get(column)]


def test_logger_shows_the_rate_in_use(tmp_path):
    """``lr/...`` is the schedule's rate, ``lr_effective/...`` the rate the optimizer applies:
    with the package's own warmup the two differ during that warmup."""

    class Applied(pl.Callback):
        def __init__(self) -> None:
            self.rates: list[float] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.rates.append(trainer.optimizers[0].param_groups[0]["scheduled_lr"])

    applied, recorder = Applied(), RateRecorder()
    logger = CSVLogger(tmp_path, name="sf")
    optimizer = {"name": "adamw_schedulefree", "lr": 0.02, "warmup_steps": 5}
    module = SFModule(optimizer=optimizer, scheduler={"name": "constant"})
    run = trainer(tmp_path, [LRLogger(), applied, recorder], logger=logger, log_every_n_steps=1)
    run.fit(module)
    rows = logged_rows(logger, "lr_effective/AdamWScheduleFree/pg0")
    assert [int(r["step"]) for r in rows] == list(range(16))
    assert [float(r["lr_effective/AdamWScheduleFree/pg0"]) for r in rows] == applied.rates
    assert [float(r["lr/AdamWScheduleFree/pg0"]) for r in rows] == [r[1][0] for r in recorder.rates]
    assert applied.rates[0] == pytest.approx(0.02 / 5) and applied.rates[5:] == [0.02] * 11


def test_two_warmups_are_refused(tmp_path):
    module = SFModule(
        optimizer={**ADAMW_SF, "warmup_steps": 10}, scheduler={"name": "constant", "warmup": 4}
    )
    with pytest.raises(ConfigError, match=r"optimizer.warmup_steps=10: the schedule already"):
        trainer(tmp_path, max_epochs=1).fit(module)


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "schedulefree", None)  # as if not installed
    with pytest.raises(ImportError) as info:
        build_optimizer(nn.Linear(2, 1), {"name": "sgd_schedulefree", "lr": 1.0})
    message = str(info.value)
    assert "\n" not in message and "pip install 'lightning-lrsched[schedulefree]'" in message


# -- BatchNorm -------------------------------------------------------------------------------


def bn_batches(n=6):
    return list(DataLoader(regression_data(48, seed=2), batch_size=8))[:n]


def fit_bn(tmp_path, callback, shuffle=False):
    """Two epochs, one validation at the end (so the statistics are recalibrated once)."""
    torch.manual_seed(0)
    module = SFModule(batch_norm=True, shuffle=shuffle)
    module.net.insert(3, nn.Dropout(0.2))  # randomness the recalibration must not consume
    run = trainer(tmp_path, [callback], check_val_every_n_epoch=2)
    run.fit(module)
    return module, float(run.callback_metrics["val_loss"])


def test_batchnorm_recalibration_is_the_packages_recipe(tmp_path):
    """Without recalibration the validation uses the statistics of ``y``; with it, those of the
    package's recipe at ``x`` (model.train(), optimizer.eval(), forward under no_grad,
    model.eval()), exactly; training itself is the same."""
    with pytest.warns(UserWarning, match="bn_batches=0"):
        stale, stale_loss = fit_bn(tmp_path, ScheduleFreeModes(bn_batches=0))
    batches = bn_batches()
    fresh, fresh_loss = fit_bn(tmp_path, ScheduleFreeModes(bn_batches=4, bn_data=batches))
    for (name, a), b in zip(stale.named_parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b), name  # the same training, the weights x
    # the recipe by hand on the unrecalibrated model
    stale.train()
    with torch.no_grad():
        for x, _ in batches[:4]:
            stale(x)
    stale.eval()
    assert torch.equal(stale.net[1].running_mean, fresh.net[1].running_mean)
    assert torch.equal(stale.net[1].running_var, fresh.net[1].running_var)
    with torch.no_grad():
        x, y = next(iter(DataLoader(regression_data(32, seed=1), batch_size=32)))
        assert fresh_loss == pytest.approx(nn.functional.mse_loss(stale(x), y).item(), rel=1e-6)
    assert abs(fresh_loss - stale_loss) > 1e-3 * fresh_loss  # the statistics mattered


def test_recalibration_from_the_training_set_leaves_training_alone(tmp_path):
    """The default source (a new loader on the training set) neither disturbs the shuffled
    training loader nor the random stream (dropout): the weights are those of a run without
    recalibration; the statistics did change."""
    with pytest.warns(UserWarning, match="bn_batches=0"):
        plain, _ = fit_bn(tmp_path, ScheduleFreeModes(bn_batches=0), shuffle=True)
    calibrated, _ = fit_bn(tmp_path, ScheduleFreeModes(bn_batches=3), shuffle=True)
    for (name, a), b in zip(plain.named_parameters(), calibrated.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(plain.net[1].running_mean, calibrated.net[1].running_mean)


# -- resume ----------------------------------------------------------------------------------


class SimulatedCrashError(RuntimeError):
    pass


class StopAt(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise SimulatedCrashError(f"stopped at step {self.step}")


class LoaderPosition(pl.Callback):
    """Lightning drops a restored loader position when configure_optimizers reads the horizon
    (Lightning-AI/pytorch-lightning#20550); ``Preemption`` applies it, as this does."""

    def on_train_start(self, trainer, pl_module):
        apply_restored_loader_state(trainer)


def resume_run(tmp_path, stop_at=None, ckpt_path=None):
    torch.manual_seed(0)
    module = SFModule(
        scheduler={"name": "constant", "warmup": 5}, batch_norm=True, shuffle="stateful"
    )
    recorder = RateRecorder()
    every_step = ModelCheckpoint(tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1)
    callbacks = [recorder, LoaderPosition(), every_step]
    if stop_at is not None:
        callbacks.append(StopAt(stop_at))
    run = trainer(
        tmp_path, callbacks, max_epochs=3, enable_checkpointing=True, val_check_interval=5
    )
    pl.seed_everything(0, verbose=False)
    run.fit(module, ckpt_path=ckpt_path)
    return module, run, recorder.rates


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
    """Stopped at step 13 (inside epoch 1; checkpoints after every step, validations inside
    epochs), resumed in a fresh Trainer and module: the rate of every later step and the final
    weights, BatchNorm statistics and optimizer state are bitwise those of the run that was not
    stopped (which wrote the same checkpoints)."""
    whole, whole_run, whole_rates = resume_run(tmp_path / "whole")
    resumed_dir = tmp_path / "resumed"
    with pytest.raises(SimulatedCrashError):
        resume_run(resumed_dir, stop_at=13)
    ckpt = next((resumed_dir / "ckpt").glob("*step=13.ckpt"))
    resumed, resumed_run, resumed_rates = resume_run(resumed_dir, ckpt_path=ckpt)
    assert resumed_rates == whole_rates[13:]
    assert len(resumed_rates) == 24 - 13
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    state_a = whole_run.optimizers[0].state_dict()
    state_b = resumed_run.optimizers[0].state_dict()
    assert state_a["param_groups"] == state_b["param_groups"]
    for key, value in state_a["state"].items():
        for name, tensor in value.items():
            assert torch.equal(tensor, state_b["state"][key][name]), (key, name)
