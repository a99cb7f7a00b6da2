"""``plateau`` with ``warm_restart``: a cosine from the current peak down to ``min_lr``, restarted
from ``peak * factor`` at the step where torch's plateau rule fires.

Values are reported the way Lightning's ``PlateauControl`` does: after ``k`` optimizer steps
(``last_epoch == k``), so a restart decided there shows in the rate of step ``k`` itself. The
expected rates are written out by hand from the formula (``C(tau, L) = (1 + cos(pi tau / L)) /
2``); the plain plateau (no warm restarts) is pinned to torch in ``test_parity_torch.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from lightning_lrsched import ConfigError, build_scheduler
from lightning_lrsched.errors import HorizonError

torch.set_num_threads(1)

SQRT_HALF = math.sqrt(0.5)
RESTART = {
    "name": "plateau",
    "warm_restart": True,
    "factor": 0.5,
    "patience": 0,
    "threshold": 0,
    "threshold_mode": "abs",
}


def optimizer(*lrs: float) -> torch.optim.SGD:
    return torch.optim.SGD(
        [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs]
    )


def run(config, steps, values, total_steps=None, lrs=(1.0,)):
    """Rates of steps ``0..steps-1`` (per group) with ``values[k]`` reported after ``k`` steps."""
    opt = optimizer(*lrs)
    scheduler = build_scheduler(opt, config, total_steps=total_steps)
    rates = []
    for k in range(steps):
        if k in values:
            scheduler.step(values[k])
        rates.append(scheduler.get_last_lr())
        opt.step()
        scheduler.step()
    return rates, scheduler


def test_curve_around_a_restart_by_hand():
    """Period 4 from step 0; the value after step 2 sets the best, the one after step 6 is no
    better: the peak halves and a new cycle starts at step 6."""
    rates, scheduler = run({**RESTART, "restart_period": 4}, 12, {2: 1.0, 6: 1.0})
    expected = [
        (0, 1.0),
        (1, (1 + SQRT_HALF) / 2),  # C(1, 4)
        (2, 0.5),
        (3, (1 - SQRT_HALF) / 2),
        (4, 0.0),  # the cycle's end: min_lr
        (5, 0.0),  # and it stays there
        (6, 0.5),  # restart: the new peak
        (7, 0.5 * (1 + SQRT_HALF) / 2),
        (8, 0.25),
        (9, 0.5 * (1 - SQRT_HALF) / 2),
        (10, 0.0),
        (11, 0.0),
    ]
    for step, lr in expected:
        assert rates[step][0] == pytest.approx(lr, rel=1e-12, abs=1e-15), step
    state = scheduler.state_dict()["controller"]
    assert (state["format"], state["restart_step"], state["lrs"]) == (2, 6, [0.5])


def test_without_a_plateau_it_is_cosine_to_the_end_of_training():
    """restart_period unset: the cycle ends at the end of training, so with no plateau the curve
    is exactly ``cosine`` (eta_min = min_lr), bit for bit."""
    ours, _ = run({**RESTART, "min_lr": 0.01, "warmup": 3}, 20, {}, total_steps=20)
    cosine, _ = run({"name": "cosine", "eta_min": 0.01, "warmup": 3}, 20, {}, total_steps=20)
    assert ours == cosine


def test_restart_with_the_default_period_anneals_to_the_end_of_training():
    """Warmup 2, 22 steps: the horizon is 20 steps after the warmup. The restart decided after
    step 12 (controller step 10) starts a cosine of 20 - 10 = 10 steps from peak 0.5, which
    reaches min_lr at the last step's successor (22) exactly."""
    rates, scheduler = run({**RESTART, "warmup": 2}, 22, {4: 9.0, 12: 9.0}, total_steps=22)
    assert [r[0] for r in rates[:3]] == [0.0, 0.5, 1.0]  # warmup to the first cycle's peak
    for step in range(2, 12):  # the first cycle: C(t - 2, 20)
        assert rates[step][0] == pytest.approx((1 + math.cos(math.pi * (step - 2) / 20)) / 2)
    for step in range(12, 22):  # the second: 0.5 * C(t - 12, 10)
        want = 0.5 * (1 + math.cos(math.pi * (step - 12) / 10)) / 2
        assert rates[step][0] == pytest.approx(want, rel=1e-12), step
    assert scheduler.state_dict()["controller"]["restart_step"] == 10  # counted after the warmup
    # one more step, past training: the end of the cycle, min_lr exactly
    assert scheduler.get_last_lr() == [0.0]


def test_cooldown_ignores_values_after_a_restart():
    """Cooldown 2: after the restart at step 4 the values at 5 and 6 are ignored, 7 restarts."""
    config = {**RESTART, "restart_period": 2, "cooldown": 2}
    values = {k: 1.0 for k in range(3, 10)}
    rates, _ = run(config, 10, values)
    restarts = [k for k in range(1, 10) if rates[k][0] > rates[k - 1][0]]
    assert restarts == [4, 7]
    assert [rates[k][0] for k in (4, 7)] == [0.5, 0.25]
    # without the cooldown every value after the best restarts
    rates, _ = run({**config, "cooldown": 0}, 10, values)
    assert [rates[k][0] for k in range(4, 10)] == [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625]


def test_peaks_and_cycles_stay_at_min_lr_per_group():
    """Two groups, min_lr [0.2, 0.05]: each cosine runs down to its own floor, and the peak is
    floored too (group 0: 1 -> 0.5 -> 0.25 -> max(0.125, 0.2)), so a cycle from the floor is
    flat."""
    config = {**RESTART, "restart_period": 2, "min_lr": [0.2, 0.05]}
    rates, scheduler = run(config, 10, {1: 1.0, 3: 1.0, 6: 1.0, 8: 1.0}, lrs=(1.0, 0.1))
    assert rates[2] == pytest.approx([0.2, 0.05])  # the first cycle's end: the floors
    assert rates[3] == pytest.approx([0.5, 0.05])  # peaks 0.5 and max(0.1 * 0.5, 0.05)
    assert rates[4] == pytest.approx([0.35, 0.05])  # 0.2 + 0.3 * C(1, 2)
    assert rates[6] == pytest.approx([0.25, 0.05])
    assert rates[7] == pytest.approx([0.225, 0.05])
    assert rates[8] == rates[9] == pytest.approx([0.2, 0.05])  # peak max(0.125, 0.2): flat
    assert scheduler.state_dict()["controller"]["lrs"] == pytest.approx([0.2, 0.05])


def test_values_during_the_warmup_are_ignored_and_restarts_count_after_it():
    rates, scheduler = run(
        {**RESTART, "warmup": 4, "restart_period": 3}, 12, {2: 5.0, 3: 5.0, 5: 5.0, 8: 5.0}
    )
    assert [r[0] for r in rates[:5]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # 5.0 after step 5 is the first counted value (the best); after step 8 a restart
    assert rates[8][0] == 0.5 and scheduler.state_dict()["controller"]["restart_step"] == 4
    assert rates[7][0] == 0.0  # the first cycle (steps 4..7) ended at min_lr


def test_resume_from_state_mid_cycle_is_exact():
    """State saved two steps after a restart, loaded into a fresh scheduler: the same curve."""
    config = {**RESTART, "warmup": 2, "cooldown": 1}
    values = {3: 2.0, 6: 2.0, 9: 2.0, 14: 2.0}
    full, _ = run(config, 24, values, total_steps=24)

    opt = optimizer(1.0)
    first = build_scheduler(opt, config, total_steps=24)
    for k in range(8):
        if k in values:
            first.step(values[k])
        opt.step()
        first.step()
    state = first.state_dict()
    assert state["controller"]["restart_step"] == 4  # restarted at step 6, two steps ago

    opt = optimizer(1.0)
    resumed = build_scheduler(opt, config, total_steps=24)
    resumed.load_state_dict(state)
    rates = []
    for k in range(8, 24):
        if k in values:
            resumed.step(values[k])
        rates.append(resumed.get_last_lr())
        opt.step()
        resumed.step()
    assert rates == full[8:]


# A plain plateau's scheduler state as saved before warm restarts existed (controller format 1),
# written by that version: warmup 2, patience 0, cooldown 1, reduced twice to 0.025.
OLD_STATE = {
    "format": "lightning_lrsched.schedule/1",
    "step": 5,
    "offset": 0,
    "take_over": None,
    "anchor_lrs": None,
    "base_lrs": [0.1],
    "lrs": [0.025],
    "base_momenta": None,
    "fingerprint": "7613ef0d324890fe",
    "schedule": {
        "kind": "warmup",
        "inner": {
            "kind": "plateau",
            "monitor": "val_loss",
            "mode": "min",
            "factor": 0.5,
            "patience": 0,
            "threshold": 0.0,
            "threshold_mode": "abs",
            "cooldown": 1,
            "min_lr": [0.0],
            "eps": 1e-08,
        },
        "steps": 2,
        "start_factor": 0.0,
        "shape": "linear",
    },
    "controller": {
        "format": 1,
        "lrs": [0.025],
        "best": 3.0,
        "num_bad_epochs": 0,
        "cooldown_counter": 1,
        "num_updates": 4,
    },
}


def test_state_of_the_version_before_warm_restarts_still_loads():
    """Same plan, same fingerprint (warm_restart off is described as before), format 1 state."""
    config = {
        "name": "plateau",
        "warmup": 2,
        "patience": 0,
        "factor": 0.5,
        "threshold": 0,
        "threshold_mode": "abs",
        "cooldown": 1,
    }
    opt = optimizer(0.1)
    scheduler = build_scheduler(opt, config, total_steps=20)
    assert scheduler.fingerprint == OLD_STATE["fingerprint"]
    scheduler.load_state_dict(OLD_STATE)
    assert scheduler.get_last_lr() == [0.025]
    scheduler.step(3.0)  # in the cooldown: ignored
    assert scheduler.get_last_lr() == [0.025]
    scheduler.step(3.0)  # no better: reduced
    assert scheduler.get_last_lr() == [0.0125]
    assert scheduler.state_dict()["controller"]["format"] == 2


def test_restart_step_follows_a_changed_plan():
    """State saved under a 20-step plan, resumed under a 30-step one (on_plan_change="jump"):
    the controller starts afresh on the new plan, and a restart decided at step 12 starts its
    cycle at the controller's step 10 (the warmup's 2 steps before it), as without a take-over."""
    config = {**RESTART, "warmup": 2}
    opt = optimizer(1.0)
    old = build_scheduler(opt, config, total_steps=20)
    for _ in range(8):
        opt.step()
        old.step()
    new = build_scheduler(optimizer(1.0), config, total_steps=30, on_plan_change="jump")
    new.load_state_dict(old.state_dict())
    assert new.get_last_lr()[0] == pytest.approx((1 + math.cos(math.pi * 6 / 28)) / 2)
    for k in range(8, 13):
        if k in (10, 12):
            new.step(1.0)
        if k < 12:
            new.optimizer.step()
            new.step()
    assert new.state_dict()["controller"]["restart_step"] == 10
    assert new.get_last_lr() == [0.5]  # the new peak, at the cycle's start


def test_update_needs_the_step_with_warm_restart():
    _, scheduler = run({**RESTART, "restart_period": 3}, 1, {})
    with pytest.raises(TypeError, match="needs the step"):
        scheduler.controller.update(1.0)


@pytest.mark.parametrize(
    ("config", "kwargs", "message"),
    [
        ({"restart_period": 5}, {}, "scheduler.restart_period=5: needs warm_restart: true"),
        ({"warm_restart": True}, {}, "scheduler.restart_period=None: defaults to the rest"),
        ({"warm_restart": True, "restart_period": "5%"}, {}, "scheduler.restart_period='5%'"),
        (
            {"warm_restart": True, "restart_period": -2},
            {},
            "scheduler.restart_period=-2: must be > 0",
        ),
        ({"warm_restart": 1}, {}, "scheduler.warm_restart=1: must be true or false"),
    ],
)
def test_bad_values_are_one_line_config_errors(config, kwargs, message):
    with pytest.raises(ConfigError) as raised:
        build_scheduler(optimizer(0.1), {"name": "plateau", **config}, **kwargs)
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


def test_missing_horizon_is_a_horizon_error():
    """The Lightning helper retries a HorizonError once the Trainer knows its length."""
    with pytest.raises(HorizonError):
        build_scheduler(optimizer(0.1), {"name": "plateau", "warm_restart": True})
    build_scheduler(optimizer(0.1), {"name": "plateau", "warm_restart": True, "restart_period": 5})
