"""Mixed precision: a step the GradScaler skips (inf/NaN gradients) does not advance the schedule.

torch's ``GradScaler.step(optimizer)`` does not call ``optimizer.step()`` when it finds inf/NaN
gradients, so the schedule must not move either (torch issue 44511; Lightning steps its
schedulers after every attempted step, Lightning issue 16228). Every case uses a real
``torch.amp.GradScaler("cpu")`` with float16 autocast on CPU, and makes the loss infinite at
chosen steps, so that exactly those steps are skipped (``init_scale=1``: no other overflows).
Curves are compared with torch's ``CosineAnnealingLR`` stepped once per *real* optimizer step.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import MixedPrecision
from lightning_support import RateRecorder, TinyModule, trainer
from resume_script import Interrupt, SimulatedCrashError

from lightning_lrsched import build_scheduler
from lightning_lrsched.callbacks import LRLogger, LRSchedule

pytestmark = [
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated"),
    pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
]

EPOCHS, PER_EPOCH = 3, 8  # TinyModule: 64 samples in batches of 8
TOTAL = EPOCHS * PER_EPOCH
SKIPPED = (2, 5, 6, 17)  # attempted steps whose loss is infinite
CONFIG = {"name": "cosine", "eta_min": 0.001}
BASE_LR = 0.05


def logged(logger: CSVLogger, column: str) -> list[tuple[int, float]]:
    """(step, value) of the metrics.csv rows in which ``column`` has a value."""
    with open(Path(logger.log_dir) / "metrics.csv", newline="") as file:
        rows = [row for row in csv.DictReader(file) if row[column]]
    return [(int(row["step"]), float(row[column])) for row in rows]


def scaler() -> torch.amp.GradScaler:
    # init_scale=1 and no growth: a float16 loss of this tiny model never overflows by itself
    return torch.amp.GradScaler("cpu", init_scale=1.0, growth_interval=10**6)


def reference_rates(real_steps: int) -> list[float]:
    """torch's CosineAnnealingLR over the run's horizon, one rate per real optimizer step."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
    torch_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=TOTAL, eta_min=CONFIG["eta_min"]
    )
    rates = []
    for _ in range(real_steps):
        rates.append(torch_schedule.get_last_lr()[0])
        optimizer.step()
        torch_schedule.step()
    return rates


def expected_curve(attempts: int) -> list[float]:
    """The rate of each attempted step: the schedule's rate of the real steps taken before it."""
    reference = reference_rates(attempts)
    real = 0
    curve = []
    for attempt in range(attempts):
        curve.append(reference[real])
        real += attempt not in SKIPPED
    return curve


def assert_curve(rates: list[float], expected: list[float]) -> None:
    assert len(rates) == len(expected)
    for step, (rate, want) in enumerate(zip(rates, expected, strict=True)):
        assert rate == pytest.approx(want, rel=1e-9, abs=1e-15), f"step {step}"


# -- a plain loop -----------------------------------------------------------------------------


def plain_loop(scheduler_of, attempts: int, start=None):
    """A training loop with autocast and a GradScaler; the loss is infinite at ``SKIPPED``.
    Returns the rate of every attempted step, the scheduler and what a checkpoint holds."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=BASE_LR, momentum=0.9)
    grad_scaler = scaler()
    scheduler = scheduler_of(optimizer)
    first = 0
    if start is not None:
        first = start["attempt"]
        model.load_state_dict(start["model"])
        optimizer.load_state_dict(start["optimizer"])
        grad_scaler.load_state_dict(start["scaler"])
        scheduler.load_state_dict(start["scheduler"])
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    rates, saved = [], None
    for attempt in range(first, attempts):
        if attempt == 10 and start is None:
            saved = {
                "attempt": attempt,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": grad_scaler.state_dict(),
                "scheduler": scheduler.state_dict(),
            }
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = torch.nn.functional.mse_loss(model(x), y)
        if attempt in SKIPPED:
            loss = loss * math.inf
        grad_scaler.scale(loss).backward()
        grad_scaler.step(optimizer)
        grad_scaler.update()
        scheduler.step()
    return rates, scheduler, saved


def test_a_scaler_skipped_step_leaves_the_rate_where_it_was():
    def scheduler_of(optimizer):
        return build_scheduler(optimizer, CONFIG, total_steps=TOTAL, only_after_optimizer_step=True)

    rates, scheduler, saved = plain_loop(scheduler_of, TOTAL)
    for skipped in SKIPPED:
        assert rates[skipped + 1] == rates[skipped]  # the skipped step's rate is used again
    assert_curve(rates, expected_curve(TOTAL))
    assert scheduler.skipped_steps == len(SKIPPED)
    assert scheduler.last_epoch == TOTAL - len(SKIPPED)  # it counts real optimizer steps
    # resumed from a checkpoint taken after three skips: the same curve, the same count
    assert saved is not None and saved["scheduler"]["skipped_steps"] == 3
    resumed, again, _ = plain_loop(scheduler_of, TOTAL, start=saved)
    assert resumed == rates[10:]
    assert again.skipped_steps == len(SKIPPED)


def test_plain_build_scheduler_keeps_torchs_convention_by_default():
    # without the option, every step() advances (what preview and plotting code relies on),
    # exactly like torch's own schedulers under a GradScaler
    rates, scheduler, _ = plain_loop(
        lambda optimizer: build_scheduler(optimizer, CONFIG, total_steps=TOTAL), TOTAL
    )
    assert_curve(rates, reference_rates(TOTAL))
    assert scheduler.skipped_steps == 0 and "skipped_steps" not in scheduler.state_dict()


def test_a_skipped_first_step_does_not_warn_about_the_step_order(recwarn):
    # torch's schedulers warn "lr_scheduler.step() before optimizer.step()" when the scaler
    # skips the very first step; a schedule that did not advance has nothing to warn about
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
    scheduler = build_scheduler(
        optimizer, CONFIG, total_steps=TOTAL, only_after_optimizer_step=True
    )
    scheduler.step()  # as after a skipped optimizer step
    assert scheduler.get_last_lr() == [BASE_LR] and scheduler.skipped_steps == 1
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]


# -- through Lightning ------------------------------------------------------------------------


class OverflowingModule(TinyModule):
    """``TinyModule`` whose loss is infinite at the attempted steps ``SKIPPED``."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * math.inf if self.trainer.global_step in SKIPPED else loss


def amp_fit(tmp_path, via, *, interrupt_at=None, ckpt_path=None, name="run"):
    """Fit with a CPU GradScaler through Lightning's public MixedPrecision plugin (Lightning
    turns ``precision="16-mixed"`` on CPU into bf16 without a scaler). Returns the recorded
    rates and the logged ``skipped_steps`` rows."""
    pl.seed_everything(0, verbose=False)
    optimizer = {"name": "sgd", "lr": BASE_LR, "momentum": 0.9}
    module = OverflowingModule(CONFIG if via == "helper" else None, optimizer=optimizer)
    recorder = RateRecorder()
    logger = CSVLogger(tmp_path, name=name)
    callbacks = [recorder, LRLogger(plan=False)]
    callbacks += [LRSchedule(CONFIG)] if via == "callback" else []
    callbacks.append(ModelCheckpoint(tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1))
    if interrupt_at is not None:
        callbacks.append(Interrupt(step=interrupt_at))
    run = trainer(
        tmp_path,
        callbacks,
        max_epochs=EPOCHS,
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=True,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler())],
    )
    try:
        run.fit(module, ckpt_path=ckpt_path)
    except SimulatedCrashError:
        assert interrupt_at is not None
    logger.finalize("success")
    return [lrs[0] for _, lrs, _ in recorder.rates], logged(logger, "skipped_steps/SGD")


@pytest.mark.parametrize("via", ["helper", "callback"])
def test_scaler_skipped_steps_through_lightning_resume_exactly(tmp_path, via):
    rates, logged = amp_fit(tmp_path / "whole", via)
    assert_curve(rates, expected_curve(TOTAL))  # 20 real steps of the 24-step plan
    assert logged == [(step, count) for count, step in enumerate(SKIPPED, start=1)]
    # interrupted at step 9 (after skips at 2, 5, 6), resumed from the checkpoint of step 9
    before, _ = amp_fit(tmp_path / "cut", via, interrupt_at=9, name="cut")
    checkpoint = tmp_path / "cut" / "ckpt" / "epoch=1-step=9.ckpt"
    after, logged_after = amp_fit(tmp_path / "cut", via, ckpt_path=checkpoint, name="resumed")
    assert before + after == rates  # bitwise: the whole curve of the uninterrupted run
    assert logged_after == [(17, 4.0)]  # the count goes on from the checkpoint's 3
