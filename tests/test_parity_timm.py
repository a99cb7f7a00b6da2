"""Parity with timm's ``CosineLRScheduler`` and its noise: whole trajectories, value by value.

timm's code is loaded from its installed files without importing ``timm``
(:mod:`timm_reference`). timm is stepped per optimizer update (``t_in_epochs=False``): the rate
of step ``k`` is what ``step_update(num_updates=k)`` writes, ``k = 0`` included. Mapping:

* ``t_initial`` → ``T_0``, ``cycle_mul`` → ``T_mult``, ``lr_min`` → ``eta_min``;
  ``cycle_decay``, ``k_decay`` the same; timm's ``cycle_limit`` → ours, except that our 0 means
  no limit (timm's 0 would mean no cycle at all), so "unlimited" is a large limit there;
* ``warmup_t=W, warmup_prefix=True, warmup_lr_init=L`` → ``warmup=W``,
  ``warmup_start_factor=L / base`` (timm's ``L`` is one rate for every group, so ``L > 0`` is
  compared on one group, ``L = 0`` on several);
* ``noise_range_t``, ``noise_pct``, ``noise_std``, ``noise_seed`` the same; timm's
  ``CosineLRScheduler`` does not pass ``noise_type`` on, so it is set on the instance.

Relative error <= 1e-9; values at zero get an absolute slack of 1e-12 * the largest base rate.
"""

from __future__ import annotations

import math

import pytest
import torch
from curves import assert_same_curve, curve_of, record
from optimizers import make_optimizer
from references import reference_test
from timm_reference import load_timm_schedulers

from lightning_lrsched import build_scheduler

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")

LRS = (0.1, 0.03, 1.0)
REL = 1e-9
UNLIMITED = 10**9  # timm's cycle_limit for our cycle_limit=0


def timm_curve(lrs, steps, *, noise_type=None, scheduler=None, **kwargs):
    """timm's rates of updates ``0 .. steps - 1`` on a fresh optimizer with ``lrs``."""
    optimizer = make_optimizer(lrs)
    timm = load_timm_schedulers()
    if scheduler is None:
        kwargs.setdefault("cycle_limit", UNLIMITED)
        sched = timm.CosineLRScheduler(optimizer, t_in_epochs=False, **kwargs)
    else:
        sched = scheduler(optimizer, **kwargs)
    if noise_type is not None:
        sched.noise_type = noise_type
    rows = []
    for k in range(steps):
        sched.step_update(num_updates=k)
        rows.append([group["lr"] for group in optimizer.param_groups])
    return curve_of(rows)


def our_curve(config, steps, lrs, **build):
    optimizer = make_optimizer(lrs)
    scheduler = build_scheduler(optimizer, config, **build)
    return record(scheduler, optimizer, steps)


def check(config, reference, steps, lrs=LRS, **build):
    ours = our_curve(config, steps, lrs, **build)
    assert_same_curve(ours, reference, REL, 1e-12 * max(lrs), momentum=False, context=str(config))
    return ours


# (T_0, T_mult, cycle_decay, cycle_limit, k_decay, eta_min); T_mult=3 stays below the 5th
# restart, where timm's floating-point log misplaces the cycle (see the test at the end)
RESTARTS = [
    (10, 1, 0.5, 0, 1.0, 0.0),
    (10, 1, 0.7, 3, 2.0, 0.001),
    (7, 2, 0.8, 0, 0.5, 0.0),
    (5, 3, 1.0, 3, 1.0, 0.01),
    (5, 3, 0.6, 0, 1.5, 0.0),
    (4, 2, 1.0, 2, 3.0, 0.0),
    (1, 2, 0.9, 0, 2.0, 0.0),
]


@reference_test("cosine_restarts")
@pytest.mark.parametrize(("t0", "mult", "decay", "limit", "k", "eta_min"), RESTARTS)
def test_restarts_match_timm(t0, mult, decay, limit, k, eta_min):
    config = {
        "name": "cosine_restarts",
        "T_0": t0,
        "T_mult": mult,
        "cycle_decay": decay,
        "cycle_limit": limit,
        "k_decay": k,
        "eta_min": eta_min,
    }
    reference = timm_curve(
        LRS,
        240,
        t_initial=t0,
        cycle_mul=mult,
        cycle_decay=decay,
        cycle_limit=limit or UNLIMITED,
        k_decay=k,
        lr_min=eta_min,
    )
    ours = check(config, reference, 240)
    if limit:  # the limit is reached inside the 240 steps: eta_min from there on
        assert ours.lrs(2)[-1] == eta_min


@reference_test("cosine_restarts")
@pytest.mark.parametrize(
    ("lrs", "warmup", "lr_init", "extra"),
    [
        ((0.5,), 5, 0.05, {"T_0": 10, "cycle_decay": 0.5}),
        (LRS, 8, 0.0, {"T_0": 6, "T_mult": 2, "k_decay": 2.0, "cycle_limit": 3}),
        ((0.2,), 1, 0.1, {"T_0": 3, "cycle_decay": 0.9, "eta_min": 0.01}),
    ],
)
def test_restarts_behind_timm_warmup(lrs, warmup, lr_init, extra):
    """timm's ``warmup_prefix=True`` warmup from ``warmup_lr_init`` is our warmup from
    ``warmup_start_factor = warmup_lr_init / base``; the cycles start after it."""
    config = {
        "name": "cosine_restarts",
        "warmup": warmup,
        "warmup_start_factor": lr_init / lrs[0],
        **extra,
    }
    reference = timm_curve(
        lrs,
        150,
        t_initial=extra["T_0"],
        cycle_mul=extra.get("T_mult", 1),
        cycle_decay=extra.get("cycle_decay", 1.0),
        cycle_limit=extra.get("cycle_limit") or UNLIMITED,
        k_decay=extra.get("k_decay", 1.0),
        lr_min=extra.get("eta_min", 0.0),
        warmup_t=warmup,
        warmup_lr_init=lr_init,
        warmup_prefix=True,
    )
    check(config, reference, 150, lrs)


@reference_test("cosine")
@pytest.mark.parametrize(("k", "eta_min"), [(1.0, 0.0), (2.0, 0.001), (0.5, 0.0), (4.0, 0.01)])
def test_cosine_k_decay_matches_timm(k, eta_min):
    """One cycle of timm's cosine (``cycle_limit=1``) over ``T_max`` steps, end included."""
    config = {"name": "cosine", "T_max": 60, "k_decay": k, "eta_min": eta_min}
    reference = timm_curve(LRS, 61, t_initial=60, cycle_limit=1, k_decay=k, lr_min=eta_min)
    check(config, reference, 61)


# -- noise -----------------------------------------------------------------------------------

NOISES = [
    ("normal", 30, {}),
    ("normal", [10, 60], {"noise_pct": 0.3, "noise_std": 0.5, "noise_seed": 7}),
    ("uniform", 0, {"noise_pct": 0.5}),
    ("uniform", [25, 26], {"noise_seed": 0}),
]


@reference_test("cosine_restarts")
@pytest.mark.parametrize(("kind", "noise_range", "extra"), NOISES)
def test_noise_matches_timm(kind, noise_range, extra):
    config = {
        "name": "cosine_restarts",
        "T_0": 20,
        "T_mult": 2,
        "cycle_decay": 0.5,
        "warmup": 5,
        "noise_range": noise_range,
        "noise_type": kind,
        **extra,
    }
    timm_noise = {
        key.replace("noise_range", "noise_range_t"): value
        for key, value in config.items()
        if key.startswith("noise_") and key != "noise_type"
    }
    reference = timm_curve(
        LRS,
        120,
        noise_type=kind,
        t_initial=20,
        cycle_mul=2,
        cycle_decay=0.5,
        warmup_t=5,
        warmup_prefix=True,
        **timm_noise,
    )
    ours = check(config, reference, 120)
    clean = our_curve({k: v for k, v in config.items() if not k.startswith("noise")}, 120, LRS)
    noisy = [
        step for step in range(120) if ours.group_lr[step] != pytest.approx(clean.group_lr[step])
    ]
    start, end = (noise_range, 120) if isinstance(noise_range, int) else noise_range
    assert noisy and min(noisy) >= start and max(noisy) < end, noisy
    assert ours.momentum == clean.momentum  # momentum untouched


def test_noise_on_any_strategy_is_timms_noise():
    """timm's ``Scheduler`` adds its noise to whatever ``_get_lr`` gives: fed our noise-free
    rates, it gives our noisy ones (one-cycle's absolute rates and momentum cycling included),
    with the range given as a share of training."""
    timm = load_timm_schedulers()
    total = 80
    config = {"name": "onecycle", "max_lr": [0.5, 0.2, 2.0], "scale_schedule_ratio": 1.0}
    noisy = {**config, "noise_range": ["25%", "75%"], "noise_type": "uniform", "noise_seed": 3}
    clean = our_curve(config, total, LRS, total_steps=total)

    class Replay(timm.Scheduler):
        def __init__(self, optimizer, **kwargs):
            super().__init__(optimizer, "lr", t_in_epochs=False, **kwargs)

        def _get_lr(self, t):
            return list(clean.group_lr[t])

    reference = timm_curve(
        LRS,
        total,
        noise_type="uniform",
        scheduler=Replay,
        noise_range_t=(20, 60),
        noise_seed=3,
    )
    ours = check(noisy, reference, total, total_steps=total)
    assert ours.momentum == clean.momentum


def noisy_config():
    return {
        "name": "cosine_restarts",
        "T_0": "1ep",
        "T_mult": 2,
        "cycle_decay": 0.7,
        "warmup": 4,
        "noise_range": 6,
        "noise_pct": 0.4,
    }


def build(config=None, total=90):
    optimizer = make_optimizer(LRS)
    scheduler = build_scheduler(
        optimizer, config or noisy_config(), total_steps=total, steps_per_epoch=10
    )
    return optimizer, scheduler


@pytest.mark.parametrize("at", [3, 6, 41])
def test_noisy_curve_is_the_same_after_a_resume(at):
    """A scheduler restored from state saved at step ``at`` (a fresh optimizer and scheduler,
    as a relaunched job has) goes on with the same noise as the run that was not stopped."""
    optimizer, scheduler = build()
    whole = record(scheduler, optimizer, 90)
    optimizer, scheduler = build()
    first = record(scheduler, optimizer, at + 1)
    state = scheduler.state_dict()
    optimizer, scheduler = build()
    scheduler.load_state_dict(state)
    rest = record(scheduler, optimizer, 90 - at)
    assert first.group_lr == whole.group_lr[: at + 1]
    assert rest.group_lr == whole.group_lr[at:]
    assert rest.last_lr == whole.last_lr[at:]


def test_two_ranks_draw_the_same_noise():
    """Two schedulers built apart (two ranks), with the global random state of each process
    different, write the same rates: the noise depends on the seed and the step alone."""
    torch.manual_seed(0)
    torch.rand(5)
    optimizer, scheduler = build()
    rank0 = record(scheduler, optimizer, 90)
    torch.manual_seed(1234)
    torch.randn(17)
    optimizer, scheduler = build()
    rank1 = record(scheduler, optimizer, 90)
    assert rank0.group_lr == rank1.group_lr
    assert len({row[0] for row in rank0.group_lr[6:]}) > 60  # it is noisy


def test_other_seed_other_noise_and_fingerprint():
    _, a = build()
    _, b = build({**noisy_config(), "noise_seed": 43})
    assert a.fingerprint != b.fingerprint
    assert a.description["kind"] == "warmup"  # the strategy still reads as itself
    assert a.description["noise"]["seed"] == 42


def test_timm_floating_point_restart_differs_from_the_exact_one():
    """Documented difference: timm finds the cycle with a floating-point logarithm, which for
    ``cycle_mul=3`` puts step 605 (the 5th restart of ``t_initial=5``) at the end of cycle 3
    (rate ``lr_min``); the integer arithmetic of ``cosine_restarts`` restarts there, as torch's
    ``CosineAnnealingWarmRestarts`` does."""
    reference = timm_curve((1.0,), 606, t_initial=5, cycle_mul=3)
    ours = our_curve({"name": "cosine_restarts", "T_0": 5, "T_mult": 3}, 606, (1.0,))
    assert 5 * (3**5 - 1) // 2 == 605
    assert reference.lrs()[605] == 0.0 and ours.lrs()[605] == 1.0
    assert math.log(1 + 605 / 5 * 2, 3) < 5  # the float log that misplaces it


def test_loader_reads_only_the_two_files():
    import sys

    timm = load_timm_schedulers()
    assert timm.CosineLRScheduler.__module__ == "_timm_reference.cosine_lr"
    assert "torchvision" not in sys.modules
