"""Integration tests with a real Lightning ``Trainer`` on CPU (no mocks).

Every test trains ``TinyModule`` (8 batches of 8 per epoch) for a few dozen optimizer steps
and checks the rates the optimizer really used, as recorded at every optimizer step by
``RateRecorder`` (``on_before_optimizer_step``, i.e. the rate of the step being taken).
Reference curves come from :func:`lightning_lrsched.build_scheduler` stepped by hand with the
horizon the Trainer should report, or from torch's own ``ReduceLROnPlateau``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger
from lightning_support import RateRecorder, TinyModule, trainer
from torch import nn

import lightning_lrsched
from lightning_lrsched import ConfigError, build_scheduler
from lightning_lrsched.lightning import LRLogger, LRSchedule, attached_schedules, build_optimizer

pytestmark = [
    pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers"),
    pytest.mark.filterwarnings("ignore:The number of training batches"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec"),
]

SGD = {"name": "sgd", "lr": 0.05, "momentum": 0.9}
BATCHES_PER_EPOCH = 8  # TinyModule: 64 samples, batch size 8


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# -- helpers -------------------------------------------------------------------------------


def fit(tmp_path: Path, module: pl.LightningModule, *callbacks: pl.Callback, **kwargs: Any):
    """Fit ``module`` with lightning_support's trainer factory; return the trainer."""
    run = trainer(tmp_path, callbacks, **kwargs)
    run.fit(module)
    return run


def momenta_of(optimizer: torch.optim.Optimizer) -> tuple[float, ...]:
    groups = optimizer.param_groups
    return tuple(g["betas"][0] if "betas" in g else g.get("momentum", 0.0) for g in groups)


def reference_curve(
    optimizer: torch.optim.Optimizer | dict,
    scheduler: dict,
    *,
    total_steps: int | None,
    steps_per_epoch: int | None,
    steps: int | None = None,
) -> list[tuple[int, tuple[float, ...], tuple[float, ...]]]:
    """(step, lrs, momenta) of ``build_scheduler`` stepped by hand, as RateRecorder records."""
    if isinstance(optimizer, dict):
        optimizer = build_optimizer(TinyModule(), optimizer)
    sched = build_scheduler(
        optimizer, scheduler, total_steps=total_steps, steps_per_epoch=steps_per_epoch
    )
    curve = []
    for step in range(steps if steps is not None else total_steps):
        lrs = tuple(g["lr"] for g in optimizer.param_groups)
        curve.append((step, lrs, momenta_of(optimizer)))
        sched.step()
    return curve


def assert_same_curve(actual: list, expected: list) -> None:
    assert [s for s, _, _ in actual] == [s for s, _, _ in expected]
    for (step, lrs, momenta), (_, ref_lrs, ref_momenta) in zip(actual, expected, strict=True):
        assert lrs == pytest.approx(ref_lrs, rel=1e-12, abs=1e-15), f"lr at step {step}"
        assert momenta == pytest.approx(ref_momenta, rel=1e-12), f"momentum at step {step}"


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


class StopAfter(pl.Callback):
    """Safety net for runs without a horizon: stop instead of training forever."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.steps:
            trainer.should_stop = True


class PerOptimizerRecorder(pl.Callback):
    """Like RateRecorder, but one curve per optimizer class, counting that optimizer's steps."""

    def __init__(self) -> None:
        self.curves: dict[str, list] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        curve = self.curves.setdefault(type(optimizer).__name__, [])
        lrs = tuple(g["lr"] for g in optimizer.param_groups)
        curve.append((len(curve), lrs, momenta_of(optimizer)))


class MetricRecorder(pl.Callback):
    """The value of ``monitor`` in the Trainer's metrics each time a plateau would see it."""

    def __init__(self, monitor: str, moment: str) -> None:
        self.monitor = monitor
        self.moment = moment
        self.values: list[tuple[int, float]] = []  # (global_step when seen, value)

    def _record(self, trainer: pl.Trainer) -> None:
        self.values.append((trainer.global_step, float(trainer.callback_metrics[self.monitor])))

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.moment == "validation" and not trainer.sanity_checking:
            self._record(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.moment == "train_epoch":
            self._record(trainer)


def logged_rows(logger: CSVLogger, column: str) -> list[dict[str, str]]:
    """metrics.csv rows in which ``column`` has a value."""
    with open(Path(logger.log_dir) / "metrics.csv", newline="") as file:
        return [row for row in csv.DictReader(file) if row.get(column)]


# -- 1. helper and callback: same curves --------------------------------------------------

STRATEGIES = {
    "cosine+warmup": {"name": "cosine", "warmup": "25%"},
    "onecycle": {"name": "onecycle", "max_lr": 0.2},
    "wsd": {"name": "wsd", "warmup": 2, "num_decay_steps": "25%", "decay_type": "linear"},
    "sequence": {
        "name": "sequence",
        "phases": [
            {"name": "linear", "start_factor": 0.1, "end_factor": 1.0, "duration": 3},
            {"name": "constant", "duration": "1ep"},
            {"name": "exponential", "gamma": 0.8},
        ],
    },
    "step-1ep": {"name": "step", "step_size": "1ep", "gamma": 0.5},
}


@pytest.mark.parametrize("config", STRATEGIES.values(), ids=STRATEGIES.keys())
def test_helper_and_callback_give_identical_curves(tmp_path, config):
    options = dict(max_epochs=3, accumulate_grad_batches=2)  # 4 optimizer steps per epoch
    helper = RateRecorder()
    fit(tmp_path, TinyModule(scheduler=config), helper, **options)
    callback = RateRecorder()
    # TinyModule(scheduler=None).configure_optimizers returns only the optimizer
    fit(tmp_path, TinyModule(), LRSchedule(config), callback, **options)

    assert helper.rates == callback.rates  # exactly: steps, rates and momenta
    expected = reference_curve(SGD, config, total_steps=12, steps_per_epoch=4)
    assert_same_curve(helper.rates, expected)
    if config["name"] == "onecycle":
        assert len({m for _, _, (m,) in helper.rates}) > 2  # momentum really cycles


# -- 2. horizon and epoch length in optimizer steps ---------------------------------------

# (Trainer options, optimizer steps in total, optimizer steps per epoch)
HORIZONS = {
    "accumulate": (dict(max_epochs=2, accumulate_grad_batches=3), 6, 3),
    "max_steps": (dict(max_epochs=3, max_steps=5), 5, 8),
    "max_epochs": (dict(max_epochs=3), 24, 8),
    "limit_int": (dict(max_epochs=2, limit_train_batches=5, accumulate_grad_batches=2), 6, 3),
    "limit_float": (dict(max_epochs=3, limit_train_batches=0.5), 12, 4),
}


@pytest.mark.parametrize(("options", "total", "per_epoch"), HORIZONS.values(), ids=HORIZONS.keys())
def test_horizon_and_epoch_are_in_optimizer_steps(tmp_path, options, total, per_epoch):
    config = {
        "name": "chain",
        "warmup": "25%",
        "schedules": [{"name": "cosine"}, {"name": "step", "step_size": "1ep", "gamma": 0.5}],
    }
    recorder = RateRecorder()
    run = fit(tmp_path, TinyModule(scheduler=config), recorder, **options)
    description = run.lr_scheduler_configs[0].scheduler.description
    warmup = math.ceil(total / 4)
    assert description["steps"] == warmup
    cosine, step = description["inner"]["schedules"]
    assert cosine["T_max"] == total - warmup
    assert step["step_size"] == per_epoch
    assert [s for s, _, _ in recorder.rates] == list(range(total))
    expected = reference_curve(SGD, config, total_steps=total, steps_per_epoch=per_epoch)
    assert_same_curve(recorder.rates, expected)

    # onecycle (through the callback) ends exactly at its final rate on the last step
    recorder = RateRecorder()
    onecycle = {"name": "onecycle", "max_lr": 0.2}
    run = fit(tmp_path, TinyModule(), LRSchedule(onecycle), recorder, **options)
    assert attached_schedules(run)[0].description["total_steps"] == total
    assert len(recorder.rates) == total
    first, last = recorder.rates[0], recorder.rates[-1]
    assert first[1][0] == pytest.approx(0.2 / 25, rel=1e-12)
    assert last[0] == total - 1
    assert last[1][0] == pytest.approx(0.2 / 25 / 1e4, rel=1e-9)
    assert last[2][0] == pytest.approx(0.95)


# -- 3. schedules that need a horizon when training has none ------------------------------

NEEDS_HORIZON = {
    "cosine": ({"name": "cosine"}, "scheduler.T_max"),
    "onecycle": ({"name": "onecycle"}, "scheduler.total_steps"),
    "percent": ({"name": "step", "step_size": "5%"}, "scheduler.step_size"),
    "warmup-percent": ({"name": "constant", "warmup": "10%"}, "scheduler.warmup"),
    "wsd": ({"name": "wsd", "num_decay_steps": 3}, "scheduler.num_stable_steps"),
}


@pytest.mark.parametrize("route", ["helper", "callback"])
@pytest.mark.parametrize(("config", "key"), NEEDS_HORIZON.values(), ids=NEEDS_HORIZON.keys())
def test_schedule_needing_a_horizon_without_one_is_a_clear_error(tmp_path, route, config, key):
    recorder = RateRecorder()
    if route == "helper":
        module, callbacks = TinyModule(scheduler=config), [recorder]
    else:
        module, callbacks = TinyModule(), [LRSchedule(config), recorder]
    with pytest.raises(ConfigError) as err:
        fit(tmp_path, module, *callbacks, StopAfter(20), max_epochs=-1)
    message = one_line(err)
    assert err.value.key == key
    # a value the user gave is quoted; a default they never wrote is named as what it means
    given = key.rsplit(".", 1)[1] in config
    prefix = f"{key}=" if given else f"{key} (default: the rest of training) "
    assert message.startswith(prefix), message
    assert "horizon" in message or "training steps" in message
    assert recorder.rates == []  # raised before any optimizer step


NO_HORIZON_NEEDED = {
    "step-in-steps": ({"name": "step", "step_size": 4, "gamma": 0.5}, [4, 8]),
    # an epoch is still ceil(8 / 3) = 3 optimizer steps long, horizon or not
    "step-1ep": ({"name": "step", "step_size": "1ep", "gamma": 0.5}, [3, 6, 9]),
}


@pytest.mark.parametrize("route", ["helper", "callback"])
@pytest.mark.parametrize(
    ("config", "drops"), NO_HORIZON_NEEDED.values(), ids=NO_HORIZON_NEEDED.keys()
)
def test_schedule_without_horizon_runs_with_max_epochs_minus_one(tmp_path, route, config, drops):
    recorder = RateRecorder()
    if route == "helper":
        module, callbacks = TinyModule(scheduler=config), [recorder]
    else:
        module, callbacks = TinyModule(), [LRSchedule(config), recorder]
    fit(
        tmp_path,
        module,
        *callbacks,
        StopAfter(20),
        max_epochs=-1,
        max_steps=10,
        accumulate_grad_batches=3,
    )
    assert [s for s, _, _ in recorder.rates] == list(range(10))
    expected = [0.05 * 0.5 ** sum(s >= d for d in drops) for s in range(10)]
    assert [lrs[0] for _, lrs, _ in recorder.rates] == pytest.approx(expected, rel=1e-12)


def test_max_steps_is_the_horizon_with_max_epochs_minus_one(tmp_path):
    recorder = RateRecorder()
    run = fit(
        tmp_path,
        TinyModule(scheduler={"name": "cosine", "warmup": 2}),
        recorder,
        max_epochs=-1,
        max_steps=10,
    )
    assert run.lr_scheduler_configs[0].scheduler.description["inner"]["T_max"] == 8
    assert len(recorder.rates) == 10


# -- 4. plateau ---------------------------------------------------------------------------


class ScriptedVal(TinyModule):
    """Validation loss scripted per epoch (the first value comes during the warmup)."""

    VAL = (1.0, 3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 1.5)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.VAL[self.current_epoch])


class ScriptedTrain(TinyModule):
    """Trains on the real loss but logs a scripted per-epoch ``train_loss``."""

    TRAIN = (5.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0)

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.log("train_loss", self.TRAIN[self.current_epoch], on_step=False, on_epoch=True)
        return nn.functional.mse_loss(self.net(x), y)


def torch_plateau(base_lr: float, values: list[float], **kwargs: Any) -> list[float]:
    """torch's ReduceLROnPlateau: the rate after each reported value."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base_lr)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **kwargs)
    after = []
    for value in values:
        plateau.step(value)
        after.append(optimizer.param_groups[0]["lr"])
    return after


def expected_plateau_curve(steps, seen, base_lr, warmup, **plateau_kwargs) -> list[float]:
    """Rates per step: linear warmup from 0, then torch's plateau decisions.

    ``seen`` lists (global_step, value) as the Trainer reported them; a value reported while
    the warmup is still running is ignored (the adapter's documented rule), the others are fed
    to ReduceLROnPlateau in order and take effect from the next optimizer step.
    """
    counted = [(step, value) for step, value in seen if step >= warmup]
    after = torch_plateau(base_lr, [v for _, v in counted], **plateau_kwargs)
    rates = []
    for step in range(steps):
        if step < warmup:
            rates.append(base_lr * step / warmup)
            continue
        decided = [lr for (at, _), lr in zip(counted, after, strict=True) if at <= step]
        rates.append(decided[-1] if decided else base_lr)
    return rates


@pytest.mark.parametrize("route", ["helper", "callback"])
def test_warmup_then_plateau_matches_torch(tmp_path, route):
    config = {"name": "plateau", "warmup": 6, "patience": 1, "factor": 0.5}
    recorder, seen = RateRecorder(), MetricRecorder("val_loss", "validation")
    if route == "helper":
        module, callbacks = ScriptedVal(scheduler=config), [recorder, seen]
    else:
        module, callbacks = ScriptedVal(), [LRSchedule(config), recorder, seen]
    fit(tmp_path, module, *callbacks, max_epochs=8, limit_train_batches=4)

    assert [v for _, v in seen.values] == list(ScriptedVal.VAL)
    assert [s for s, _ in seen.values] == [4 * (e + 1) for e in range(8)]
    rates = [lrs[0] for _, lrs, _ in recorder.rates]
    expected = expected_plateau_curve(32, seen.values, 0.05, 6, patience=1, factor=0.5)
    assert rates == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert min(rates[6:]) == pytest.approx(0.05 / 4)  # reduced twice after validations


def test_plateau_on_train_epoch_monitors_train_loss(tmp_path):
    config = {
        "name": "plateau",
        "monitor": "train_loss",
        "check_on": "train_epoch",
        "patience": 1,
        "factor": 0.5,
        "threshold": 0.0,
    }
    recorder, seen = RateRecorder(), MetricRecorder("train_loss", "train_epoch")
    module = ScriptedTrain(scheduler=config)
    module.val_offset = 100.0  # a val_loss that never improves: must not matter here
    fit(tmp_path, module, recorder, seen, max_epochs=7, limit_train_batches=2)

    assert [v for _, v in seen.values] == list(ScriptedTrain.TRAIN)
    rates = [lrs[0] for _, lrs, _ in recorder.rates]
    expected = expected_plateau_curve(
        14, seen.values, 0.05, 0, patience=1, factor=0.5, threshold=0.0
    )
    assert rates == pytest.approx(expected, rel=1e-12)
    assert rates[-1] == pytest.approx(0.025)


def test_plateau_monitor_never_logged_is_an_error_naming_logged_metrics(tmp_path):
    config = {"name": "plateau", "monitor": "val_acc"}
    with pytest.raises(ConfigError) as err:
        fit(tmp_path, TinyModule(scheduler=config), max_epochs=2, limit_train_batches=3)
    message = one_line(err)
    assert err.value.key == "scheduler.monitor"
    assert "val_acc" in message
    assert "train_loss" in message and "val_loss" in message


def test_plateau_monitor_not_logged_with_strict_false_warns_and_completes(tmp_path):
    config = {"name": "plateau", "monitor": "val_acc", "strict": False}
    recorder = RateRecorder()
    with pytest.warns(UserWarning, match=r"val_acc.*val_loss"):
        run = fit(
            tmp_path, TinyModule(scheduler=config), recorder, max_epochs=2, limit_train_batches=3
        )
    assert run.state.finished
    assert len(recorder.rates) == 6
    assert {lrs for _, lrs, _ in recorder.rates} == {(0.05,)}


# -- 5. several optimizers, named param groups ---------------------------------------------


class TwoOptimizers(TinyModule):
    """Manual optimization: SGD for the body (``net.0``), AdamW for the head (``net.2``).

    Under manual optimization Lightning steps no scheduler itself; the schedules of the
    ``LRSchedule`` callbacks advance after every step of their own optimizer, so the module
    has no scheduler code at all.
    """

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
        loss = nn.functional.mse_loss(self.net(x), y)
        optimizers = self.optimizers()
        for optimizer in optimizers:
            optimizer.zero_grad()
        self.manual_backward(loss)
        for optimizer in optimizers:
            optimizer.step()
        self.log("train_loss", loss)


def test_two_optimizers_manual_optimization_two_callbacks(tmp_path):
    body = {"name": "cosine", "warmup": "1ep"}
    head = {"name": "onecycle", "max_lr": 0.05}
    recorder = PerOptimizerRecorder()
    run = fit(
        tmp_path,
        TwoOptimizers(),
        LRSchedule(body, optimizer_index=0),
        LRSchedule(head, optimizer_index=1),
        recorder,
        max_epochs=2,
    )
    # one step per batch for each optimizer: 16 steps each, 8 per epoch
    sgd, adamw = run.optimizers
    reference_module = TwoOptimizers()
    ref_sgd, ref_adamw = reference_module.configure_optimizers()
    assert [s.optimizer for s in attached_schedules(run)] == [sgd, adamw]
    assert_same_curve(
        recorder.curves["SGD"],
        reference_curve(ref_sgd, body, total_steps=16, steps_per_epoch=8),
    )
    assert_same_curve(
        recorder.curves["AdamW"],
        reference_curve(ref_adamw, head, total_steps=16, steps_per_epoch=8),
    )
    # onecycle drives AdamW's beta1 and ends at its final rate
    assert recorder.curves["AdamW"][-1][1][0] == pytest.approx(0.05 / 25 / 1e4, rel=1e-9)
    assert len({m for _, _, (m,) in recorder.curves["AdamW"]}) > 2


@pytest.mark.parametrize(
    ("module", "index", "count"),
    [(TwoOptimizers, 2, 2), (TinyModule, 1, 1)],
    ids=["two-optimizers", "one-optimizer"],
)
def test_optimizer_index_out_of_range_is_a_clear_error(tmp_path, module, index, count):
    recorder = RateRecorder()
    with pytest.raises(ConfigError) as err:
        fit(tmp_path, module(), LRSchedule({"name": "cosine"}, optimizer_index=index), recorder)
    message = one_line(err)
    assert err.value.key == "optimizer_index"
    assert f"{count} optimizer(s)" in message
    assert recorder.rates == []


def test_negative_optimizer_index_is_refused_at_construction():
    with pytest.raises(ConfigError, match="optimizer_index"):
        LRSchedule({"name": "cosine"}, optimizer_index=-1)


NAMED_GROUPS = {
    "name": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "param_groups": [{"name": "head", "params": "^net\\.2", "lr": 0.01, "weight_decay": 0.0}],
}


def test_named_param_groups_share_the_schedule_factor(tmp_path):
    recorder = RateRecorder()
    module = TinyModule(
        scheduler={"name": "cosine", "warmup": 3}, optimizer=NAMED_GROUPS, batch_size=16
    )
    run = fit(tmp_path, module, recorder, max_epochs=3)  # 4 steps per epoch, 12 steps
    (optimizer,) = run.optimizers
    assert [g["name"] for g in optimizer.param_groups] == ["head", "default"]
    head_params = {id(p) for p in optimizer.param_groups[0]["params"]}
    assert head_params == {id(p) for p in module.net[2].parameters()}
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 1e-4]
    assert len(recorder.rates) == 12
    for step, (head, default), _ in recorder.rates:
        assert head / 0.01 == pytest.approx(default / 0.1, rel=1e-12, abs=1e-15), step
    assert max(lrs[0] for _, lrs, _ in recorder.rates) == pytest.approx(0.01)


def test_named_param_groups_with_per_group_onecycle_peaks(tmp_path):
    config = {"name": "onecycle", "max_lr": [0.02, 0.2]}  # head, default
    recorder = RateRecorder()
    module = TinyModule(optimizer=NAMED_GROUPS, batch_size=16)
    fit(tmp_path, module, LRSchedule(config), recorder, max_epochs=3)
    expected = reference_curve(NAMED_GROUPS, config, total_steps=12, steps_per_epoch=4)
    assert_same_curve(recorder.rates, expected)
    # absolute per-group rates: the same one-cycle shape scaled to each group's own peak
    for step, (head, default), _ in recorder.rates:
        assert head == pytest.approx(default / 10, rel=1e-12), step
    assert recorder.rates[0][1] == pytest.approx((0.02 / 25, 0.2 / 25), rel=1e-12)


# -- 6. batch-size scaling ----------------------------------------------------------------


@pytest.mark.parametrize("route", ["helper", "callback"])
@pytest.mark.parametrize(
    ("mode", "reference", "factor"),
    [("linear", 4, 6.0), ("sqrt", 6, 2.0)],  # global batch = 8 per device x 3 accumulation x 1
)
def test_scale_lr_scales_base_rates_and_logs_it(tmp_path, route, mode, reference, factor):
    options = {"scale_lr": mode, "reference_batch_size": reference}
    recorder = RateRecorder()
    if route == "helper":
        module = TinyModule(scheduler={"name": "constant"}, optimizer=NAMED_GROUPS, **options)
        callbacks = [recorder]
    else:
        module = TinyModule(optimizer=NAMED_GROUPS)
        callbacks = [LRSchedule({"name": "constant"}, **options), recorder]
    logger = CSVLogger(tmp_path, name="scaling")
    fit(tmp_path, module, *callbacks, max_epochs=1, accumulate_grad_batches=3, logger=logger)

    assert len(recorder.rates) == 3
    expected = pytest.approx((0.01 * factor, 0.1 * factor), rel=1e-12)
    assert all(lrs == expected for _, lrs, _ in recorder.rates)
    hparams = yaml.safe_load((Path(logger.log_dir) / "hparams.yaml").read_text())
    scaling = hparams["lr_scaling"]
    assert scaling["mode"] == mode
    assert scaling["global_batch_size"] == 24
    assert scaling["reference_batch_size"] == reference
    assert scaling["factor"] == pytest.approx(factor)
    assert scaling["scaled_base_lrs"] == expected


@pytest.mark.parametrize("route", ["helper", "callback"])
@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"scale_lr": "quadratic", "reference_batch_size": 8}, "scale_lr"),
        ({"scale_lr": "linear"}, "reference_batch_size"),
        ({"scale_lr": "sqrt", "reference_batch_size": 0}, "reference_batch_size"),
    ],
    ids=["bad-mode", "missing-reference", "zero-reference"],
)
def test_bad_scaling_options_are_clear_errors(tmp_path, route, options, key):
    recorder = RateRecorder()
    with pytest.raises(ConfigError) as err:
        if route == "helper":
            module = TinyModule(scheduler={"name": "constant"}, **options)
            fit(tmp_path, module, recorder)
        else:
            fit(tmp_path, TinyModule(), LRSchedule({"name": "constant"}, **options), recorder)
    message = one_line(err)
    assert err.value.key == key
    assert message.startswith(f"{key}=")
    if key == "scale_lr":
        assert "none, linear, sqrt" in message
    assert recorder.rates == []


# -- 7. LRLogger --------------------------------------------------------------------------


def test_lr_logger_logs_every_optimizer_step_once_to_every_logger(tmp_path):
    config = {"name": "onecycle", "max_lr": [0.02, 0.2]}
    recorder = RateRecorder()
    loggers = [CSVLogger(tmp_path, name="first"), CSVLogger(tmp_path, name="second")]
    fit(
        tmp_path,
        TinyModule(scheduler=config, optimizer=NAMED_GROUPS),
        LRLogger(),
        recorder,
        logger=loggers,
        max_epochs=2,
        accumulate_grad_batches=3,  # 16 batches, 6 optimizer steps
        log_every_n_steps=1,
    )
    assert [s for s, _, _ in recorder.rates] == list(range(6))
    for logger in loggers:
        rows = logged_rows(logger, "lr/SGD/head")
        assert [int(row["step"]) for row in rows] == list(range(6))  # once per optimizer step
        for row, (step, (head, default), (m_head, m_default)) in zip(
            rows, recorder.rates, strict=True
        ):
            assert float(row["lr/SGD/head"]) == head, step
            assert float(row["lr/SGD/default"]) == default, step
            assert float(row["momentum/SGD/head"]) == m_head, step
            assert float(row["momentum/SGD/default"]) == m_default, step
            assert float(row["weight_decay/SGD/head"]) == 0.0
            assert float(row["weight_decay/SGD/default"]) == 1e-4
        assert len(logged_rows(logger, "lr/SGD/default")) == 6
    assert len({m for _, _, (m, _) in recorder.rates}) > 2  # momentum cycled and logged


class Snapshot(pl.Callback):
    """Copies another callback's data attributes after the first and the last batch."""

    def __init__(self, target: pl.Callback) -> None:
        self.target = target
        self.snapshots: list[dict[str, Any]] = []

    def _take(self) -> dict[str, Any]:
        return {
            k: repr(v) for k, v in vars(self.target).items() if not callable(v)
        }  # repr: a copy that cannot change later

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 1 or trainer.global_step == trainer.max_steps:
            self.snapshots.append(self._take())


def test_lr_logger_adamw_beta1_unnamed_group_and_no_growing_state(tmp_path):
    recorder = RateRecorder()
    lr_logger = LRLogger()
    snapshot = Snapshot(lr_logger)
    logger = CSVLogger(tmp_path, name="adamw")
    fit(
        tmp_path,
        TinyModule(optimizer={"name": "adamw", "lr": 0.01, "weight_decay": 0.05}),
        LRSchedule({"name": "onecycle", "max_lr": 0.02}),
        lr_logger,
        recorder,
        snapshot,
        logger=logger,
        max_epochs=-1,
        max_steps=40,
        log_every_n_steps=1,
    )
    rows = logged_rows(logger, "lr/AdamW/pg0")
    assert [int(row["step"]) for row in rows] == list(range(40))
    for row, (step, (lr,), (beta1,)) in zip(rows, recorder.rates, strict=True):
        assert float(row["lr/AdamW/pg0"]) == lr, step
        assert float(row["momentum/AdamW/pg0"]) == beta1, step
        assert float(row["weight_decay/AdamW/pg0"]) == 0.05
    assert len({float(row["momentum/AdamW/pg0"]) for row in rows}) > 2  # beta1 cycles
    # nothing accumulates: the callback's state after step 1 is its state after step 40
    first, last = snapshot.snapshots
    assert first == last


def test_lr_logger_prodigy_logs_effective_rate(tmp_path):
    pytest.importorskip("prodigyopt")

    class DRecorder(pl.Callback):
        def __init__(self) -> None:
            self.seen: list[tuple[float, float]] = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            group = optimizer.param_groups[0]
            self.seen.append((float(group["d"]), float(group["lr"])))

    recorder = DRecorder()
    logger = CSVLogger(tmp_path, name="prodigy")
    optimizer = {"_target_": "prodigyopt.Prodigy", "lr": 1.0}
    fit(
        tmp_path,
        TinyModule(scheduler={"name": "cosine", "warmup": 2}, optimizer=optimizer),
        LRLogger(),
        recorder,
        logger=logger,
        max_epochs=2,
        log_every_n_steps=1,
    )
    rows = logged_rows(logger, "lr/Prodigy/pg0")
    assert [int(row["step"]) for row in rows] == list(range(16))
    for row, (d, lr) in zip(rows, recorder.seen, strict=True):
        assert float(row["lr/Prodigy/pg0"]) == lr
        assert float(row["lr_effective/Prodigy/pg0"]) == pytest.approx(d * lr, rel=1e-12)
    assert len({d for d, _ in recorder.seen}) > 1  # Prodigy adapted d during the run


# -- 8. misuse and bad optimizer configs --------------------------------------------------


def test_configure_optimizers_outside_a_trainer_is_a_clear_error():
    with pytest.raises(ConfigError) as err:
        lightning_lrsched.configure_optimizers(
            TinyModule(), optimizer={"name": "sgd", "lr": 0.1}, scheduler={"name": "cosine"}
        )
    message = one_line(err)
    assert "Trainer" in message
    with pytest.raises(ConfigError, match="Trainer"):
        TinyModule(scheduler={"name": "constant"}).configure_optimizers()


BAD_OPTIMIZERS = {
    "unknown-name": ({"name": "sgdd", "lr": 0.1}, "optimizer.name", ["sgd", "adamw", "known"]),
    "bad-kwarg": (
        {"name": "sgd", "lr": 0.1, "betas": [0.9, 0.99]},
        "optimizer.betas",
        ["not an argument of SGD", "momentum"],
    ),
    "bad-value": ({"name": "adamw", "lr": 0.1, "betas": [1.5, 0.99]}, "optimizer", ["beta"]),
    "bad-target": ({"_target_": "torch.optim.Nope", "lr": 0.1}, "optimizer._target_", []),
    "group-matches-nothing": (
        {"name": "sgd", "lr": 0.1, "param_groups": [{"name": "x", "params": "^encoder"}]},
        "optimizer.param_groups[0].params",
        ["net.0.weight"],
    ),
}


@pytest.mark.parametrize(
    ("spec", "key", "mentions"), BAD_OPTIMIZERS.values(), ids=BAD_OPTIMIZERS.keys()
)
def test_bad_optimizer_config_is_a_one_line_config_error(tmp_path, spec, key, mentions):
    recorder = RateRecorder()
    with pytest.raises(ConfigError) as err:
        fit(tmp_path, TinyModule(scheduler={"name": "cosine"}, optimizer=spec), recorder)
    message = one_line(err)
    assert err.value.key == key
    for word in mentions:
        assert word in message
    assert recorder.rates == []
