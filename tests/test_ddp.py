"""Schedules under real DDP: two CPU processes (gloo) train ``TinyModule`` in
``tests/ddp_script.py``, each writing every optimizer step's rates and its own validation
values; these tests read both ranks' files.

What they pin down: the ranks step the same rates at every step; a plateau decision is taken
on the cross-rank *mean* of the monitored metric (each rank's own metric is made to disagree
with the mean on purpose), at the same step on both ranks; ``"%"``, ``"ep"`` and onecycle's
horizon resolve against the per-rank share of the data (the DistributedSampler halves the
batches of an epoch); ``LRLogger`` logs every optimizer step once, from rank 0 only.

The script runs once (one pair of processes, the cases one after the other) because starting
Lightning twice costs most of the time.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning_support import subprocess_env
from mlflow import MlflowClient

# one worker runs the module, so the pair of DDP processes (ddp_run) starts once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ddp_script")]

SCRIPT = Path(__file__).with_name("ddp_script.py")
WORLD_SIZE = 2
STEPS_PER_EPOCH = 4  # 64 samples / 2 ranks / batch 8 (one process alone: 8)
EPOCHS = 8
TOTAL = STEPS_PER_EPOCH * EPOCHS  # 32 optimizer steps per rank (one process alone: 64)

# Two param groups with their own base rates: group order is [head, default].
OPTIMIZER = {
    "name": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "param_groups": [{"name": "head", "params": r"^net\.2\.", "lr": 0.02}],
}
GROUPS = ["head", "default"]
BASE_LRS = [0.02, 0.05]

# The validation loss is the model's (a few units at most) plus a per-rank, per-epoch offset
# chosen so that the mean's moves are >= 500 or 60..70 against an absolute plateau threshold
# of 100: the offsets alone decide. MODEL_LOSS_BOUND checks that premise on the recorded values.
THRESHOLD = 100.0
MODEL_LOSS_BOUND = 20.0


def offsets(rank0: list[float], mean: list[float]) -> list[list[float]]:
    """Per-rank offsets whose cross-rank mean is ``mean``: rank 1 = 2 * mean - rank 0."""
    return [list(rank0), [2 * m - r for m, r in zip(mean, rank0, strict=True)]]


IMPROVING = [-1000.0 * epoch for epoch in range(EPOCHS)]  # better every epoch (mode "min")
ZERO = [[0.0] * EPOCHS, [0.0] * EPOCHS]

# Plateau via the configure_optimizers helper, behind a one-epoch warmup. Mode "min",
# patience 1. Rank 0 alone improves every epoch (never reduces); rank 1 alone
# ([0, 0, 0, 860, 1880, 6000, ...]) would reduce after epochs 2, 4, 6; the mean
# ([0, -500, -1000, -1070, -1060, 500, ...]) gains only 70 after epoch 3 (under the threshold, so
# a bad epoch), so it reduces after epochs 4 and 6. A cross-rank *sum* would see a gain of 140
# after epoch 3 and reduce after epochs 5 and 7 instead.
PLATEAU_HELPER = {
    "name": "plateau_helper",
    "via": "helper",
    "scheduler": {
        "name": "plateau",
        "monitor": "val_loss",
        "mode": "min",
        "factor": 0.5,
        "patience": 1,
        "threshold": THRESHOLD,
        "threshold_mode": "abs",
        "warmup": "1ep",
    },
    "optimizer": OPTIMIZER,
    "max_epochs": EPOCHS,
    "offsets": offsets(IMPROVING, [0, -500, -1000, -1070, -1060, 500, 1000, 1500]),
}

# Plateau via the LRSchedule callback, no warmup. Mode "max", patience 0. Rank 0 alone
# (-1000 per epoch) gets worse every epoch (would reduce after every validation from epoch 1);
# rank 1 alone improves every epoch (never reduces); the mean
# ([0, 1000, 2000, 2070, 3000, 4000, 4060, 4000]) stalls after epochs 3, 6 and 7 (gains of 70
# and 60 are under the threshold; a cross-rank sum would double them and reduce after 7 only).
PLATEAU_CALLBACK = {
    "name": "plateau_callback",
    "via": "callback",
    "scheduler": {
        "name": "plateau",
        "monitor": "val_loss",
        "mode": "max",
        "factor": 0.1,
        "patience": 0,
        "threshold": THRESHOLD,
        "threshold_mode": "abs",
    },
    "optimizer": OPTIMIZER,
    "max_epochs": EPOCHS,
    "offsets": offsets(IMPROVING, [0, 1000, 2000, 2070, 3000, 4000, 4060, 4000]),
}

# Plateau with warm restarts via the helper, behind a one-epoch warmup: the decisions of
# PLATEAU_CALLBACK's offsets (the mean stalls after epochs 3, 6, 7; rank 0 alone after every
# validation from epoch 1, rank 1 never; the warmup ends at step 4, so epoch 0's value counts)
# each restart a cosine of 2 epochs from a halved peak, at the same step on both ranks.
PLATEAU_RESTART = {
    "name": "plateau_restart_helper",
    "via": "helper",
    "scheduler": {
        **PLATEAU_CALLBACK["scheduler"],
        "factor": 0.5,
        "warmup": "1ep",
        "warm_restart": True,
        "restart_period": "2ep",
    },
    "optimizer": OPTIMIZER,
    "max_epochs": EPOCHS,
    "offsets": PLATEAU_CALLBACK["offsets"],
}

# onecycle's horizon is the run's total steps; LRLogger + CSVLogger ride along.
ONECYCLE = {
    "name": "onecycle_helper",
    "via": "helper",
    "scheduler": {"name": "onecycle", "max_lr": 0.1, "pct_start": 0.25},
    "optimizer": OPTIMIZER,
    "max_epochs": EPOCHS,
    "offsets": ZERO,
    "lr_logger": True,
}

# "25%" of 32 steps = 8 warmup steps, "6ep" = 24 steps = the rest of training.
COSINE = {
    "name": "cosine_callback",
    "via": "callback",
    "scheduler": {"name": "cosine", "warmup": "25%", "T_max": "6ep"},
    "optimizer": OPTIMIZER,
    "max_epochs": EPOCHS,
    "offsets": ZERO,
}

# timm's noise on the rate ("25%" of 32 steps: from step 8): the same draws on both ranks.
NOISY = {
    "name": "noisy_callback",
    "via": "callback",
    "scheduler": {
        "name": "cosine_restarts",
        "T_0": "2ep",
        "cycle_decay": 0.5,
        "warmup": 4,
        "noise_range": "25%",
        "noise_type": "uniform",
        "noise_pct": 0.3,
    },
    "optimizer": OPTIMIZER,
    "max_epochs": EPOCHS,
    "offsets": ZERO,
}

# Hypergradient via the helper: the rate follows each step's all-reduced gradients.

HYPERGRADIENT = {
    "name": "hypergradient_helper",
    "via": "helper",
    "scheduler": {"name": "hypergradient", "hypergrad_lr": 1e-4, "warmup": 2, "max_lr": 0.1},
    "optimizer": OPTIMIZER,
    "max_epochs": EPOCHS,
    "offsets": ZERO,
}

# Tracked as a user would (MLflowTracker + RunTracking + LRLogger); the store is set by ddp_run.
TRACKED = {
    "name": "tracked_helper",
    "via": "helper",
    "scheduler": {"name": "cosine", "warmup": "25%"},
    "optimizer": OPTIMIZER,
    "max_epochs": EPOCHS,
    "offsets": ZERO,
    "tracking_uri": None,
}

# A schedule-free optimizer (ScheduleFreeModes added by the helper switches its modes on every
# rank: a rank left in eval mode would fail at its first step).
SCHEDULE_FREE = {
    "name": "schedulefree_helper",
    "via": "helper",
    "scheduler": {"name": "constant", "warmup": "25%"},
    "optimizer": {
        "name": "adamw_schedulefree",
        "lr": 0.05,
        "param_groups": [{"name": "head", "params": r"^net\.2\.", "lr": 0.02}],
    },
    "max_epochs": EPOCHS,
    "offsets": ZERO,
}

# Rank 1's schedule takes one extra step at the start of epoch 2: the rank guard (added by the
# helper under DDP) stops both ranks at the end of that epoch. Last: it ends its fit in error.
DIVERGING = {
    "name": "diverging_helper",
    "via": "helper",
    "scheduler": {"name": "cosine", "warmup": "25%"},
    "optimizer": OPTIMIZER,
    "max_epochs": EPOCHS,
    "offsets": ZERO,
    "diverge": {"rank": 1, "epoch": 2},
}

# max_lr="auto": the range test under DDP, each rank on its own data (its loss and gradients
# averaged over the ranks at every sweep step), then one-cycle at the suggestion.
AUTO = {
    "name": "auto_helper",
    "via": "helper",
    "scheduler": {"name": "onecycle", "max_lr": "auto", "pct_start": 0.25},
    "optimizer": OPTIMIZER,
    "max_epochs": EPOCHS,
    "offsets": ZERO,
    "rank_data": True,
    "step_metrics": True,
    "helper": {"lr_finder": {"num_steps": 20, "skip_begin": 2, "skip_end": 2, "max_lr": 1.0}},
}

CASES = {
    case["name"]: case
    for case in (
        PLATEAU_HELPER,
        PLATEAU_CALLBACK,
        PLATEAU_RESTART,
        ONECYCLE,
        COSINE,
        NOISY,
        HYPERGRADIENT,
        TRACKED,
        AUTO,
        SCHEDULE_FREE,
        DIVERGING,
    )
}
CONSISTENT = [name for name in CASES if "diverge" not in CASES[name]]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, migrated_store):
    out = tmp_path_factory.mktemp("ddp")
    shutil.copyfile(migrated_store, out / "mlflow.db")
    cases = [dict(case) for case in CASES.values()]
    for case in cases:
        if "tracking_uri" in case:
            case["tracking_uri"] = f"sqlite:///{out / 'mlflow.db'}"
    env = subprocess_env()
    command = [sys.executable, str(SCRIPT), str(out), json.dumps(cases)]
    # Own session, so that on a hang the launcher and the rank it started are killed together.
    proc = subprocess.Popen(
        command,
        cwd=out,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"the DDP script hung; its output ended with:\n{output[-4000:]}")
    assert proc.returncode == 0, f"the DDP script failed:\n{output[-6000:]}"
    results = {
        name: [json.loads((out / name / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
        for name in CASES
    }
    return out, results


# -- references ------------------------------------------------------------------------------


def plateau_reductions(values, steps, config, warmup_steps=0):
    """Global steps after whose validation torch's ReduceLROnPlateau, fed ``values``, reduces
    (values seen during the warmup are ignored, as the package documents)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode=config["mode"],
        factor=config["factor"],
        patience=config["patience"],
        threshold=config["threshold"],
        threshold_mode=config["threshold_mode"],
    )
    reductions = []
    for value, step in zip(values, steps, strict=True):
        if step < warmup_steps:
            continue
        before = optimizer.param_groups[0]["lr"]
        reference.step(value)
        if optimizer.param_groups[0]["lr"] < before:
            reductions.append(step)
    return reductions


def plateau_rates(step, reductions, factor, warmup_steps=0):
    """Every group's rate at optimizer ``step``: linear warmup from 0, then the base rates
    times ``factor`` for each reduction decided at a validation after ``<= step`` steps."""
    if step < warmup_steps:
        return [base * step / warmup_steps for base in BASE_LRS]
    scale = factor ** sum(1 for r in reductions if r <= step)
    return [base * scale for base in BASE_LRS]


def restart_rates(step, restarts, factor, period, warmup_steps):
    """Every group's rate at optimizer ``step`` with warm restarts: linear warmup from 0, then a
    half-cosine of ``period`` steps (then 0) from the base rates times ``factor`` per restart,
    starting at the last restart decided at a validation after ``<= step`` steps."""
    if step < warmup_steps:
        return [base * step / warmup_steps for base in BASE_LRS]
    past = [r for r in restarts if r <= step]
    start = past[-1] if past else warmup_steps
    tau = min(step - start, period)
    share = (1 + math.cos(math.pi * tau / period)) / 2
    return [base * factor ** len(past) * share for base in BASE_LRS]


def validation_table(results):
    """(global steps, rank 0's values, rank 1's values, their mean) of a case's validations."""
    rank0, rank1 = (r["validations"] for r in results)
    assert [v["global_step"] for v in rank0] == [v["global_step"] for v in rank1]
    steps = [v["global_step"] for v in rank0]
    values0 = [v["val_loss"] for v in rank0]
    values1 = [v["val_loss"] for v in rank1]
    mean = [(a + b) / 2 for a, b in zip(values0, values1, strict=True)]
    return steps, values0, values1, mean


def assert_rates(recorded, expected_lrs, expected_momenta=None):
    assert [step for step, _, _ in recorded] == list(range(TOTAL))
    for (step, lrs, momenta), want in zip(recorded, expected_lrs, strict=True):
        assert lrs == pytest.approx(want, rel=1e-9, abs=1e-15), f"rates at step {step}"
        if expected_momenta is not None:
            assert momenta == pytest.approx(expected_momenta[step], rel=1e-9), f"step {step}"


# -- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONSISTENT)
def test_ranks_step_identical_rates(ddp_run, name):
    rank0, rank1 = ddp_run[1][name]
    assert rank0["error"] is None and rank1["error"] is None
    assert (rank0["rank"], rank1["rank"]) == (0, 1)
    assert len(rank0["rates"]) == TOTAL
    assert rank0["rates"] == rank1["rates"]  # exactly: steps, rates and momenta
    assert rank0["final_lrs"] == rank1["final_lrs"]
    assert rank0["description"] == rank1["description"]


@pytest.mark.parametrize("name", CONSISTENT)
def test_horizon_is_the_per_rank_share(ddp_run, name):
    for result in ddp_run[1][name]:
        assert result["world_size"] == WORLD_SIZE
        assert result["num_training_batches"] == STEPS_PER_EPOCH
        assert result["estimated_stepping_batches"] == TOTAL
        assert result["global_step"] == TOTAL
        assert result["group_names"] == GROUPS


def test_range_test_gives_every_rank_the_same_rate(ddp_run):
    """``max_lr="auto"`` under DDP: one suggestion on both ranks (their sweeps saw different
    data), used as one-cycle's peak by both."""
    rank0, rank1 = ddp_run[1]["auto_helper"]
    (chosen,) = rank0["chosen_rates"].values()
    assert rank1["chosen_rates"] == rank0["chosen_rates"]
    assert 1e-7 < chosen < 1.0
    peak = max(lrs[0] for _, lrs, _ in rank0["rates"])
    assert peak == pytest.approx(chosen, rel=0.05)
    assert rank0["rates"] == rank1["rates"]


def test_step_metrics_sync_dist_logs_the_mean_over_ranks_at_every_step(ddp_run):
    """``StepMetrics(sync_dist=True)``: each step's loss, averaged over the ranks (each saw its
    own data) with one collective per flush, logged once, from rank zero, at its step."""
    rank0, rank1 = ddp_run[1]["auto_helper"]
    own0, own1 = rank0["own_losses"], rank1["own_losses"]
    assert [s for s, _ in own0] == [s for s, _ in own1] == list(range(TOTAL))
    assert all(a != b for (_, a), (_, b) in zip(own0, own1, strict=True))  # their own data
    logged = rank0["logged_losses"]
    assert [s for s, _ in logged] == list(range(TOTAL))
    expected = [(a + b) / 2 for (_, a), (_, b) in zip(own0, own1, strict=True)]
    assert [v for _, v in logged] == pytest.approx(expected, rel=1e-6)
    assert rank1["logged_losses"] == []  # the loggers write from rank zero only


def test_rank_guard_stops_every_rank_naming_the_first_difference(ddp_run):
    """Rank 1's schedule stepped once more at the start of epoch 2: both ranks stop at the end
    of that epoch, with the same one-line message naming rank 1, the group and both values."""
    rank0, rank1 = ddp_run[1]["diverging_helper"]
    assert rank0["error"] == rank1["error"]
    message = rank0["error"]
    assert message.startswith("rank guard: rank 1 disagrees with rank 0 after epoch 2 (step 12)")
    assert "\n" not in message
    assert "SGD/head lr is " in message, message  # the first group of the first optimizer
    # the steps both ranks took are the same; the rates from epoch 2 on are not
    assert [s for s, _, _ in rank0["rates"]] == [s for s, _, _ in rank1["rates"]] == list(range(12))
    assert rank0["rates"][:8] == rank1["rates"][:8] and rank0["rates"][8:] != rank1["rates"][8:]


@pytest.mark.parametrize("name", ["plateau_helper", "plateau_callback", "plateau_restart_helper"])
def test_each_rank_validates_on_its_own_metric(ddp_run, name):
    """The premise of the plateau tests: every rank saw its own offset (not a synced value),
    and the model's own loss is small next to the offsets' steps."""
    for rank, result in enumerate(ddp_run[1][name]):
        records = result["validations"]
        assert [v["epoch"] for v in records] == list(range(EPOCHS))
        assert [v["global_step"] for v in records] == [
            STEPS_PER_EPOCH * (e + 1) for e in range(EPOCHS)
        ]
        for v in records:
            assert v["offset"] == CASES[name]["offsets"][rank][v["epoch"]]
            assert 0 <= v["val_loss"] - v["offset"] < MODEL_LOSS_BOUND, v


def test_plateau_helper_reduces_on_the_cross_rank_mean(ddp_run):
    results = ddp_run[1]["plateau_helper"]
    config = PLATEAU_HELPER["scheduler"]
    description = results[0]["description"]
    assert description["kind"] == "warmup"
    assert description["steps"] == STEPS_PER_EPOCH  # "1ep" = one per-rank epoch
    assert description["inner"]["kind"] == "plateau"

    steps, values0, values1, mean = validation_table(results)
    warmup = STEPS_PER_EPOCH
    on_mean = plateau_reductions(mean, steps, config, warmup)
    # The design: the mean reduces after epochs 4 and 6; neither rank alone nor a sum would.
    assert on_mean == [20, 28]
    assert plateau_reductions(values0, steps, config, warmup) == []
    assert plateau_reductions(values1, steps, config, warmup) == [12, 20, 28]
    assert plateau_reductions([2 * m for m in mean], steps, config, warmup) == [24, 32]  # sum

    expected = [plateau_rates(k, on_mean, config["factor"], warmup) for k in range(TOTAL)]
    for result in results:
        assert_rates(result["rates"], expected)
        assert result["final_lrs"] == pytest.approx([b * 0.25 for b in BASE_LRS], rel=1e-12)


def test_plateau_callback_reduces_on_the_cross_rank_mean(ddp_run):
    results = ddp_run[1]["plateau_callback"]
    config = PLATEAU_CALLBACK["scheduler"]
    assert results[0]["description"]["kind"] == "plateau"

    steps, values0, values1, mean = validation_table(results)
    on_mean = plateau_reductions(mean, steps, config)
    # The design: the mean stalls after epochs 3, 6, 7; rank 0 alone would reduce after every
    # validation from epoch 1 on, rank 1 alone never, a sum only after epoch 7.
    assert on_mean == [16, 28, 32]
    assert plateau_reductions(values0, steps, config) == [8, 12, 16, 20, 24, 28, 32]
    assert plateau_reductions(values1, steps, config) == []
    assert plateau_reductions([2 * m for m in mean], steps, config) == [32]  # a sum

    expected = [plateau_rates(k, on_mean, config["factor"]) for k in range(TOTAL)]
    for result in results:
        assert_rates(result["rates"], expected)
        # the reduction after the last validation shows in the groups after training
        assert result["final_lrs"] == pytest.approx([b * 1e-3 for b in BASE_LRS], rel=1e-12)


def test_plateau_warm_restart_restarts_on_the_cross_rank_mean_at_the_same_step(ddp_run):
    results = ddp_run[1]["plateau_restart_helper"]
    config = PLATEAU_RESTART["scheduler"]
    inner = results[0]["description"]["inner"]
    assert (inner["warm_restart"], inner["restart_period"]) == (True, 2 * STEPS_PER_EPOCH)

    steps, values0, values1, mean = validation_table(results)
    warmup = STEPS_PER_EPOCH
    on_mean = plateau_reductions(mean, steps, config, warmup)
    assert on_mean == [16, 28, 32]
    assert plateau_reductions(values0, steps, config, warmup) == [8, 12, 16, 20, 24, 28, 32]
    assert plateau_reductions(values1, steps, config, warmup) == []

    period = 2 * STEPS_PER_EPOCH
    expected = [restart_rates(k, on_mean, 0.5, period, warmup) for k in range(TOTAL)]
    for result in results:
        assert_rates(result["rates"], expected)
        # the last restart, decided after the last step, counted after the warmup
        assert result["controller"]["restart_step"] == 32 - warmup
        assert result["final_lrs"] == pytest.approx([b * 0.125 for b in BASE_LRS], rel=1e-12)
    rank0, rank1 = results
    assert rank0["controller"] == rank1["controller"]
    # the restarts are visible in the curve: the rate rises at steps 16 and 28 only
    rises = [k for k in range(1, TOTAL) if rank0["rates"][k][1] > rank0["rates"][k - 1][1]]
    assert rises == [1, 2, 3, 4, 16, 28]  # the warmup, then the two restarts inside training


def test_onecycle_spans_the_per_rank_total(ddp_run):
    results = ddp_run[1]["onecycle_helper"]
    assert results[0]["description"]["kind"] == "onecycle"
    assert results[0]["description"]["total_steps"] == TOTAL

    params = [torch.zeros(1, requires_grad=True) for _ in BASE_LRS]
    optimizer = torch.optim.SGD(
        [{"params": [p], "lr": lr} for p, lr in zip(params, BASE_LRS, strict=True)],
        momentum=0.9,
    )
    reference = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.1, total_steps=TOTAL, pct_start=0.25
    )
    lrs, momenta = [], []
    for _ in range(TOTAL):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        momenta.append([g["momentum"] for g in optimizer.param_groups])
        optimizer.step()
        reference.step()
    for result in results:
        assert_rates(result["rates"], lrs, momenta)


def test_cosine_percent_and_epoch_durations_resolve_per_rank(ddp_run):
    results = ddp_run[1]["cosine_callback"]
    description = results[0]["description"]
    assert description["kind"] == "warmup"
    assert description["steps"] == 8  # "25%" of 32 (not of 64)
    assert description["inner"]["kind"] == "cosine"
    assert description["inner"]["T_max"] == 24  # "6ep" of 4 steps (not of 8)

    def factor(k):
        if k < 8:
            return k / 8
        return (1 + math.cos(math.pi * (k - 8) / 24)) / 2

    expected = [[base * factor(k) for base in BASE_LRS] for k in range(TOTAL)]
    for result in results:
        assert_rates(result["rates"], expected)


def test_noise_is_the_planned_noise_on_every_rank(ddp_run):
    """Both ranks step the noisy plan that one process builds alone for the per-rank horizon."""
    from optimizers import make_optimizer

    from lightning_lrsched import build_scheduler

    optimizer = make_optimizer(BASE_LRS)
    plan = build_scheduler(
        optimizer, NOISY["scheduler"], total_steps=TOTAL, steps_per_epoch=STEPS_PER_EPOCH
    )
    expected = []
    for _ in range(TOTAL):
        expected.append(plan.get_last_lr())
        optimizer.step()
        plan.step()
    for result in ddp_run[1]["noisy_callback"]:
        assert result["description"]["noise"]["range"] == [8, None]
        assert_rates(result["rates"], expected)
    clean = {k: v for k, v in NOISY["scheduler"].items() if not k.startswith("noise")}
    unnoised = build_scheduler(make_optimizer(BASE_LRS), clean, steps_per_epoch=STEPS_PER_EPOCH)
    assert expected[9] != unnoised.planned_rates(10)[9]


def test_lr_logger_logs_each_step_once_from_rank_zero(ddp_run):
    out, all_results = ddp_run
    rank0, rank1 = all_results["onecycle_helper"]
    # LRLogger itself calls the loggers on rank 0 only (the probe logger is not rank-zero-only).
    assert rank0["probe_lr_steps"] == list(range(TOTAL))
    assert rank1["probe_lr_steps"] == []

    (metrics_csv,) = (out / "onecycle_helper").rglob("metrics.csv")
    with metrics_csv.open() as f:
        rows = [row for row in csv.DictReader(f) if row.get("lr/SGD/head")]
    assert [int(row["step"]) for row in rows] == list(range(TOTAL))
    for row, (step, lrs, momenta) in zip(rows, rank0["rates"], strict=True):
        for group, lr, momentum in zip(GROUPS, lrs, momenta, strict=True):
            assert float(row[f"lr/SGD/{group}"]) == pytest.approx(lr, rel=1e-12), step
            assert float(row[f"momentum/SGD/{group}"]) == pytest.approx(momentum, rel=1e-12)


def test_tracked_run_is_one_mlflow_run_every_rank_knows_every_step_once(ddp_run):
    """One MLflow run, written by rank 0 only, that every rank knows (its id reaches rank 1),
    holding every optimizer step's rate, momentum, weight decay and loss once, and the plots."""
    out, all_results = ddp_run
    rank0, rank1 = all_results["tracked_helper"]
    run_id = rank0["run_id"]
    assert run_id is not None and rank1["run_id"] == run_id

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked_helper")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == run_id
    assert run.info.status == "FINISHED"
    assert run.data.tags.get("lrsched.world_size") == str(WORLD_SIZE)
    keys = [
        *(f"{kind}/SGD/{group}" for kind in ("lr", "momentum", "weight_decay") for group in GROUPS),
        "train_loss_step",
    ]
    for key in keys:
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == list(range(TOTAL)), key
    head = {m.step: m.value for m in client.get_metric_history(run_id, "lr/SGD/head")}
    assert [head[step] for step in range(TOTAL)] == [lrs[0] for _, lrs, _ in rank0["rates"]]
    artifacts = {a.path for a in client.list_artifacts(run_id, "schedule")}
    assert artifacts == {"schedule/planned.png", "schedule/realised.png"}


def test_hypergradient_rates_move_the_same_on_every_rank(ddp_run):
    """The gradients are all-reduced before the hook: both ranks compute the same rates (checked
    exactly by test_ranks_step_identical_rates), and they do adapt after the warmup."""
    rank0, rank1 = ddp_run[1]["hypergradient_helper"]
    assert rank0["description"]["kind"] == "warmup"
    assert rank0["description"]["inner"]["variant"] == "sgd"
    after_warmup = [tuple(lrs) for _, lrs, _ in rank0["rates"][2:]]
    assert after_warmup[0] != tuple(BASE_LRS) or after_warmup[1] != tuple(BASE_LRS)
    assert len(set(after_warmup)) > TOTAL // 2
    assert all(0.0 <= lr <= 0.1 for lrs in after_warmup for lr in lrs)  # bounded, finite
    assert rank0["rates"] == rank1["rates"]
