"""Parity with ``torch.optim.lr_scheduler``: whole trajectories, value by value.

Every test builds our scheduler and torch's on two separate but identical optimizers (several
param groups with different base rates), steps both, and compares at every step
``get_last_lr()``, each group's ``lr`` and each group's momentum (``momentum`` for SGD,
``betas[0]`` for Adam/AdamW) with a relative error <= 1e-9; values at zero get an absolute
slack of 1e-12 * the largest base rate. Trajectories cover >= 100 steps including step 0,
every phase/milestone/restart boundary the parameters create, and the last step.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from curves import Curve, assert_same_curve, curve_of, record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimizers import make_optimizer as shared_optimizer
from references import reference_test
from torch.optim import lr_scheduler as tls

from lightning_lrsched import build_scheduler

torch.set_num_threads(1)

# Schedulers are stepped without optimizer.step() (no gradients here); torch warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")

LRS = (0.1, 0.03, 1.0)
REL = 1e-9
PROPERTY = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- helpers -------------------------------------------------------------------------------


def make_optimizer(lrs=LRS, kind="sgd"):
    """One group per base rate of ``lrs`` (LRS unless given)."""
    return shared_optimizer(lrs, kind)


def slack(lrs):
    """Absolute slack for values at zero: 1e-12 of the largest base rate."""
    return 1e-12 * max(lrs)


def curves(config, reference, steps, *, lrs=LRS, kind="sgd", total_steps=None):
    """(ours, torch's) trajectories over ``steps`` steps on two identical optimizers."""
    opt, ref_opt = make_optimizer(lrs, kind), make_optimizer(lrs, kind)
    ours = build_scheduler(opt, config, total_steps=total_steps)
    ref = reference(ref_opt)
    return record(ours, opt, steps), record(ref, ref_opt, steps)


def check_parity(config, reference, steps, *, lrs=LRS, kind="sgd", total_steps=None):
    """Assert ours equals torch's reference over ``steps`` steps; return both curves."""
    ours, ref = curves(config, reference, steps, lrs=lrs, kind=kind, total_steps=total_steps)
    assert_same_curve(ours, ref, REL, slack(lrs), context=f"{config} ({kind}, lrs={lrs})")
    return ours, ref


def distinct(values, rel=1e-12):
    """How many distinct values (up to ``rel``) a sequence of floats holds."""
    out: list[float] = []
    for v in values:
        if not any(abs(v - u) <= rel * max(abs(u), abs(v)) for u in out):
            out.append(v)
    return len(out)


# -- explicit table: one row per required pair, edges chosen by hand --------------------------

CASES = [
    # StepLR / MultiStepLR / ExponentialLR
    ("step", {"name": "step", "step_size": 7, "gamma": 0.5}, lambda o: tls.StepLR(o, 7, 0.5), 120),
    ("step-default-gamma", {"name": "step", "step_size": 30}, lambda o: tls.StepLR(o, 30), 121),
    (
        "step-growth",
        {"name": "step", "step_size": 25, "gamma": 1.3},
        lambda o: tls.StepLR(o, 25, 1.3),
        110,
    ),
    (
        "multistep",
        {"name": "multistep", "milestones": [10, 25, 26, 80], "gamma": 0.3},
        lambda o: tls.MultiStepLR(o, [10, 25, 26, 80], 0.3),
        120,
    ),
    (
        "multistep-last-step",
        {"name": "multistep", "milestones": [1, 50, 99]},
        lambda o: tls.MultiStepLR(o, [1, 50, 99]),
        100,
    ),
    (
        "exponential",
        {"name": "exponential", "gamma": 0.97},
        lambda o: tls.ExponentialLR(o, 0.97),
        150,
    ),
    # LinearLR / PolynomialLR
    (
        "linear-decay-to-zero",
        {"name": "linear", "start_factor": 1.0, "end_factor": 0.0, "total_iters": 80},
        lambda o: tls.LinearLR(o, 1.0, 0.0, 80),
        120,
    ),
    (
        "linear-warm",
        {"name": "linear", "start_factor": 0.1, "end_factor": 1.0, "total_iters": 30},
        lambda o: tls.LinearLR(o, 0.1, 1.0, 30),
        100,
    ),
    (
        "linear-partial",
        {"name": "linear", "start_factor": 0.5, "end_factor": 0.25, "total_iters": 99},
        lambda o: tls.LinearLR(o, 0.5, 0.25, 99),
        110,
    ),
    (
        "polynomial-power2",
        {"name": "polynomial", "total_iters": 90, "power": 2.0, "end_factor": 0.0},
        lambda o: tls.PolynomialLR(o, 90, 2.0),
        120,
    ),
    (
        "polynomial-sqrt",
        {"name": "polynomial", "total_iters": 100, "power": 0.5},
        lambda o: tls.PolynomialLR(o, 100, 0.5),
        101,
    ),
    (
        "polynomial-linear",
        {"name": "polynomial", "total_iters": 64},
        lambda o: tls.PolynomialLR(o, 64),
        100,
    ),
    # CosineAnnealingLR
    ("cosine", {"name": "cosine", "T_max": 100}, lambda o: tls.CosineAnnealingLR(o, 100), 101),
    (
        "cosine-eta-min-past-T_max",
        {"name": "cosine", "T_max": 40, "eta_min": 0.01},
        lambda o: tls.CosineAnnealingLR(o, 40, eta_min=0.01),
        150,
    ),
    (
        "cosine-past-T_max",
        {"name": "cosine", "T_max": 30},
        lambda o: tls.CosineAnnealingLR(o, 30),
        250,
    ),
    (
        "cosine-eta-min-above-a-base",
        {"name": "cosine", "T_max": 50, "eta_min": 0.05},
        lambda o: tls.CosineAnnealingLR(o, 50, eta_min=0.05),
        160,
    ),
    # CosineAnnealingWarmRestarts
    (
        "restarts-mult1",
        {"name": "cosine_restarts", "T_0": 10},
        lambda o: tls.CosineAnnealingWarmRestarts(o, 10),
        120,
    ),
    (
        "restarts-mult2",
        {"name": "cosine_restarts", "T_0": 5, "T_mult": 2, "eta_min": 0.001},
        lambda o: tls.CosineAnnealingWarmRestarts(o, 5, 2, eta_min=0.001),
        160,
    ),
    (
        "restarts-mult3",
        {"name": "cosine_restarts", "T_0": 3, "T_mult": 3, "eta_min": 0.005},
        lambda o: tls.CosineAnnealingWarmRestarts(o, 3, 3, eta_min=0.005),
        130,
    ),
    (
        "restarts-T0-1-mult2",
        {"name": "cosine_restarts", "T_0": 1, "T_mult": 2},
        lambda o: tls.CosineAnnealingWarmRestarts(o, 1, 2),
        130,
    ),
]


@reference_test(
    "step", "multistep", "exponential", "linear", "polynomial", "cosine", "cosine_restarts"
)
@pytest.mark.parametrize(
    ("config", "reference", "steps"),
    [pytest.param(c, r, n, id=i) for i, c, r, n in CASES],
)
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_table_matches_torch(config, reference, steps, kind):
    """Each decay strategy equals its torch class over a whole trajectory, every group."""
    check_parity(config, reference, steps, kind=kind)


CYCLIC_LOWS = [0.01, 0.003, 0.2]
CYCLIC_HIGHS = [0.1, 0.05, 1.5]

CYCLIC_CASES = [
    ("triangular", {"step_size_up": 10, "step_size_down": 10}, "sgd"),
    ("triangular-asym", {"step_size_up": 7, "step_size_down": 13}, "sgd"),
    ("triangular2", {"mode": "triangular2", "step_size_up": 8, "step_size_down": 15}, "adam"),
    (
        "exp_range",
        {"mode": "exp_range", "gamma": 0.99, "step_size_up": 12, "step_size_down": 5},
        "sgd",
    ),
    (
        "exp_range-beta1",
        {"mode": "exp_range", "gamma": 0.995, "step_size_up": 4, "step_size_down": 9},
        "adamw",
    ),
    (
        "momentum-range",
        {"step_size_up": 6, "step_size_down": 11, "base_momentum": 0.5, "max_momentum": 0.99},
        "adam",
    ),
    (
        "momentum-per-group",
        {
            "mode": "triangular2",
            "step_size_up": 9,
            "step_size_down": 4,
            "base_momentum": [0.7, 0.8, 0.6],
            "max_momentum": [0.9, 0.95, 0.85],
        },
        "sgd",
    ),
    (
        "no-momentum-cycle",
        {"step_size_up": 5, "step_size_down": 20, "cycle_momentum": False},
        "sgd",
    ),
    ("no-momentum-at-all", {"step_size_up": 15, "cycle_momentum": False}, "adagrad"),
]


@reference_test("cyclic")
@pytest.mark.parametrize(("params", "kind"), [pytest.param(p, k, id=i) for i, p, k in CYCLIC_CASES])
def test_cyclic_matches_torch(params, kind):
    """``cyclic`` equals ``CyclicLR`` (all modes, asymmetric cycles), momentum/beta1 included."""
    config = {"name": "cyclic", "base_lr": CYCLIC_LOWS, "max_lr": CYCLIC_HIGHS, **params}
    _, ref = check_parity(
        config,
        lambda o: tls.CyclicLR(o, base_lr=CYCLIC_LOWS, max_lr=CYCLIC_HIGHS, **params),
        150,
        kind=kind,
    )
    assert distinct(ref.lrs(2)) > 5
    if params.get("cycle_momentum", True):
        assert distinct([m[0] for m in ref.momentum]) > 5  # momentum really cycles


def test_cyclic_base_lr_defaults_to_group_rates():
    """Without ``base_lr`` ours starts from each group's rate: torch with base_lr = those rates."""
    check_parity(
        {"name": "cyclic", "max_lr": [0.5, 0.3, 2.0], "step_size_up": 10, "step_size_down": 30},
        lambda o: tls.CyclicLR(
            o, base_lr=list(LRS), max_lr=[0.5, 0.3, 2.0], step_size_up=10, step_size_down=30
        ),
        130,
    )


ONECYCLE_CASES = [
    ("two-phase-cos", {}, "sgd"),
    ("two-phase-linear", {"anneal_strategy": "linear", "pct_start": 0.25}, "sgd"),
    ("three-phase-cos", {"three_phase": True}, "adam"),
    ("three-phase-linear", {"three_phase": True, "anneal_strategy": "linear"}, "sgd"),
    ("three-phase-half", {"three_phase": True, "pct_start": 0.5}, "sgd"),
    ("div-factors", {"div_factor": 3.0, "final_div_factor": 50.0, "pct_start": 0.45}, "adamw"),
    ("no-momentum-cycle", {"cycle_momentum": False}, "sgd"),
    ("no-momentum-cycle-adam", {"cycle_momentum": False, "three_phase": True}, "adam"),
    (
        "momentum-range",
        {"base_momentum": [0.6, 0.7, 0.8], "max_momentum": 0.98, "pct_start": 0.15},
        "adam",
    ),
    ("short-warmup", {"pct_start": 0.021}, "sgd"),
]


@reference_test("onecycle")
@pytest.mark.parametrize(("total", "steps_arg"), [(100, "config"), (137, "build")])
@pytest.mark.parametrize(
    ("params", "kind"), [pytest.param(p, k, id=i) for i, p, k in ONECYCLE_CASES]
)
def test_onecycle_matches_torch(params, kind, total, steps_arg):
    """``onecycle`` equals ``OneCycleLR`` over steps 0..total_steps-1, momentum/beta1 included."""
    peaks = [0.4, 0.2, 3.0]
    config = {"name": "onecycle", "max_lr": peaks, **params}
    if steps_arg == "config":
        config["total_steps"] = total
    check_parity(
        config,
        lambda o: tls.OneCycleLR(o, max_lr=peaks, total_steps=total, **params),
        total,
        kind=kind,
        total_steps=None if steps_arg == "config" else total,
    )


def test_onecycle_max_lr_defaults_to_group_rates():
    """Without ``max_lr`` each group peaks at its own rate, as torch with max_lr = those rates."""
    check_parity(
        {"name": "onecycle", "pct_start": 0.4},
        lambda o: tls.OneCycleLR(o, max_lr=list(LRS), total_steps=120, pct_start=0.4),
        120,
        kind="adam",
        total_steps=120,
    )


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_onecycle_holds_final_value_after_total_steps(three_phase, kind):
    """Past ``total_steps`` (where torch raises) ours stays at the last step's rate/momentum."""
    total, extra = 100, 40
    opt = make_optimizer(kind=kind)
    config = {"name": "onecycle", "max_lr": [0.4, 0.2, 3.0], "three_phase": three_phase}
    ours = record(build_scheduler(opt, config, total_steps=total), opt, total + extra)
    ref_opt = make_optimizer(kind=kind)
    ref_sched = tls.OneCycleLR(
        ref_opt, max_lr=[0.4, 0.2, 3.0], total_steps=total, three_phase=three_phase
    )
    ref = record(ref_sched, ref_opt, total)
    assert_same_curve(ours[:total], ref, REL, slack(LRS))
    last = ours[total - 1 : total]
    for k in range(total, total + extra):
        assert_same_curve(ours[k : k + 1], last, 0.0, context=f"step {k} after the horizon")
    # the final value is the configured floor: max_lr / div_factor / final_div_factor
    assert ours.group_lr[-1] == pytest.approx([p / 25 / 1e4 for p in (0.4, 0.2, 3.0)], rel=1e-12)


# -- ReduceLROnPlateau ------------------------------------------------------------------------


def metric_sequence(length, seed, *, mode="min", noise=1e-3, offset=0.0, tie_digits=None):
    """A validation curve with descents, exact plateaus, noisy plateaus and relapses."""
    rng = random.Random(seed)
    values: list[float] = []
    level = 1.0
    while len(values) < length:
        shape = rng.choice(["descent", "flat", "noisy", "relapse", "slow"])
        for _ in range(rng.randint(1, 12)):
            if shape == "descent":
                level *= 0.9
            elif shape == "slow":
                level *= 1 - 1e-5
            elif shape == "relapse":
                level *= 1.03
            value = level + (rng.gauss(0.0, noise) if shape == "noisy" else 0.0)
            if tie_digits is not None:
                value = round(value, tie_digits)
            values.append(value + offset)
    values = values[:length]
    return [2.0 - v for v in values] if mode == "max" else values  # max: an accuracy-like rise


def plateau_curves(config, metrics, steps_per_epoch, *, lrs=LRS, torch_kwargs, kind="sgd"):
    """(ours, torch's) per-step trajectories; a metric is reported after every epoch."""
    opt, ref_opt = make_optimizer(lrs, kind), make_optimizer(lrs, kind)
    ours = build_scheduler(opt, config)
    ref = tls.ReduceLROnPlateau(ref_opt, **torch_kwargs)
    steps = len(metrics) * steps_per_epoch + 1

    def ours_advance(k):
        ours.step()
        if (k + 1) % steps_per_epoch == 0:
            ours.step(metrics[(k + 1) // steps_per_epoch - 1])

    def ref_advance(k):
        if (k + 1) % steps_per_epoch == 0:
            ref.step(metrics[(k + 1) // steps_per_epoch - 1])

    return record(ours, opt, steps, ours_advance), record(ref, ref_opt, steps, ref_advance)


PLATEAU_TORCH_KEYS = (
    "mode",
    "factor",
    "patience",
    "threshold",
    "threshold_mode",
    "cooldown",
    "min_lr",
    "eps",
)


def check_plateau(params, metrics, steps_per_epoch=2, *, lrs=LRS, kind="sgd"):
    config = {"name": "plateau", **params}
    torch_kwargs = {k: params[k] for k in PLATEAU_TORCH_KEYS if k in params}
    ours, ref = plateau_curves(
        config, metrics, steps_per_epoch, lrs=lrs, torch_kwargs=torch_kwargs, kind=kind
    )
    assert_same_curve(ours, ref, REL, slack(lrs), context=f"{config}, metrics={metrics}")
    return ours, ref


@reference_test("plateau")
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plateau_matches_torch(mode, threshold_mode, seed):
    """``plateau`` equals ``ReduceLROnPlateau`` (both modes and threshold modes) step by step."""
    metrics = metric_sequence(80, seed, mode=mode, tie_digits=4 if seed == 2 else None)
    params = {
        "mode": mode,
        "threshold_mode": threshold_mode,
        "threshold": 1e-2 if threshold_mode == "rel" else 5e-3,
        "factor": 0.5,
        "patience": 3,
        "cooldown": 2,
        "min_lr": [0.01, 0.0001, 0.2],
    }
    _, ref = check_plateau(params, metrics)
    assert distinct(ref.lrs(2)) >= 3, "the metric sequence should trigger several reductions"


def test_plateau_min_lr_and_eps():
    """Per-group floors and ``eps`` (skip reductions smaller than eps) act as in torch."""
    metrics = [1.0] * 70  # never improves after the first value: reduce every patience+1
    params = {"factor": 0.3, "patience": 1, "min_lr": [0.0, 0.001, 0.05], "eps": 0.004}
    _, ref = check_plateau(params, metrics, steps_per_epoch=3)
    # group 0 stops where a reduction would change it by less than eps; group 2 at its floor
    assert ref.group_lr[-1][2] == pytest.approx(0.05)
    assert ref.group_lr[-1][0] == pytest.approx(0.1 * 0.3**3)  # next cut (0.0019) < eps


def test_plateau_defaults_and_noise():
    """Torch's defaults (patience 10, threshold 1e-4 rel, factor 0.1) on a long noisy curve."""
    metrics = metric_sequence(150, 7, noise=1e-4)
    _, ref = check_plateau({}, metrics, steps_per_epoch=1)
    assert distinct(ref.lrs(0)) >= 2


def test_plateau_negative_metrics_rel_threshold():
    """Negative monitored values (rel threshold scales a negative best) match torch too."""
    metrics = metric_sequence(90, 3, offset=-3.0, noise=1e-2)
    check_plateau({"patience": 2, "threshold": 1e-3, "cooldown": 1}, metrics, kind="adam")
    check_plateau(
        {"mode": "max", "patience": 2, "threshold": 1e-3},
        metric_sequence(90, 4, mode="max", offset=2.0),
    )


def test_plateau_after_warmup_is_torch_plateau_from_the_warmup_end():
    """With ``warmup`` W: a linear ramp to the base rates, then torch's plateau fed the metrics
    reported from step W on (metrics reported during the warmup are ignored)."""
    warmup, spe = 10, 2
    metrics = metric_sequence(70, 5)
    opt = make_optimizer()
    params = {"patience": 2, "factor": 0.5, "min_lr": 0.001}
    ours_sched = build_scheduler(opt, {"name": "plateau", "warmup": warmup, **params})

    def ours_advance(k):
        ours_sched.step()
        if (k + 1) % spe == 0:
            ours_sched.step(metrics[(k + 1) // spe - 1])

    steps = len(metrics) * spe + 1
    ours = record(ours_sched, opt, steps, ours_advance)

    ref_opt = make_optimizer()
    ref_sched = tls.ReduceLROnPlateau(ref_opt, **params)
    rates = []
    for t in range(steps):
        if t < warmup:
            rates.append([lr * t / warmup for lr in LRS])
        else:
            rates.append([float(g["lr"]) for g in ref_opt.param_groups])
        if (t + 1) % spe == 0 and t + 1 >= warmup:
            ref_sched.step(metrics[(t + 1) // spe - 1])
    expected = curve_of(rates, [[0.9] * 3] * steps)
    assert_same_curve(ours, expected, REL, slack(LRS))
    assert distinct([r[0] for r in rates[warmup:]]) >= 3


# -- SequentialLR and ChainedScheduler --------------------------------------------------------

SEQUENCE_CASES = [
    (
        "linear-then-cosine",
        [
            {
                "name": "linear",
                "start_factor": 0.1,
                "end_factor": 1.0,
                "total_iters": 10,
                "duration": 10,
            },
            {"name": "cosine", "T_max": 90},
        ],
        lambda o: [tls.LinearLR(o, 0.1, 1.0, 10), tls.CosineAnnealingLR(o, 90)],
        [10],
        130,
    ),
    (
        "linear-then-exponential",
        [
            {
                "name": "linear",
                "start_factor": 0.25,
                "end_factor": 1.0,
                "total_iters": 20,
                "duration": 20,
            },
            {"name": "exponential", "gamma": 0.95},
        ],
        lambda o: [tls.LinearLR(o, 0.25, 1.0, 20), tls.ExponentialLR(o, 0.95)],
        [20],
        120,
    ),
    (
        "linear-step-cosine",
        [
            {
                "name": "linear",
                "start_factor": 0.01,
                "end_factor": 1.0,
                "total_iters": 5,
                "duration": 15,
            },
            {"name": "step", "step_size": 10, "gamma": 0.5, "duration": 40},
            {"name": "cosine", "T_max": 60, "eta_min": 0.001},
        ],
        lambda o: [
            tls.LinearLR(o, 0.01, 1.0, 5),
            tls.StepLR(o, 10, 0.5),
            tls.CosineAnnealingLR(o, 60, eta_min=0.001),
        ],
        [15, 55],
        130,
    ),
    (
        "multistep-then-polynomial",
        [
            {"name": "multistep", "milestones": [5, 20], "gamma": 0.5, "duration": 30},
            {"name": "polynomial", "total_iters": 50, "power": 2.0},
        ],
        lambda o: [tls.MultiStepLR(o, [5, 20], 0.5), tls.PolynomialLR(o, 50, 2.0)],
        [30],
        110,
    ),
]


@reference_test("sequence")
@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize(
    ("phases", "schedulers", "milestones", "steps"),
    [pytest.param(p, s, m, n, id=i) for i, p, s, m, n in SEQUENCE_CASES],
)
def test_sequence_matches_sequential_lr(phases, schedulers, milestones, steps, kind):
    """``sequence`` equals ``SequentialLR``: each phase restarts from its own step 0."""
    check_parity(
        {"name": "sequence", "phases": phases},
        lambda o: tls.SequentialLR(o, schedulers(o), milestones),
        steps,
        kind=kind,
    )


def test_sequence_default_lengths_are_the_rest_of_training():
    """The last phase's duration and cosine's ``T_max`` default to what is left of training."""
    total = 120
    phases = [
        {
            "name": "linear",
            "start_factor": 0.1,
            "end_factor": 1.0,
            "total_iters": 12,
            "duration": "10%",
        },
        {"name": "cosine"},
    ]
    check_parity(
        {"name": "sequence", "phases": phases},
        lambda o: tls.SequentialLR(
            o, [tls.LinearLR(o, 0.1, 1.0, 12), tls.CosineAnnealingLR(o, total - 12)], [12]
        ),
        total,
        total_steps=total,
    )


def test_sequence_with_cycling_phases_is_each_phase_from_its_own_start():
    """Phases that set absolute rates (onecycle, cyclic) next to decays: each phase is the torch
    scheduler run alone from its own step 0 on the base rates; a phase that does not cycle
    momentum has the configured momentum. (Torch's ``SequentialLR`` is no reference here:
    ``OneCycleLR`` overwrites ``initial_lr``, so the phases after it restart from
    ``max_lr / div_factor``, and momentum set by one phase leaks into the next.)"""
    peaks = [0.5, 0.1, 2.0]
    phases = [
        (
            {"name": "linear", "start_factor": 0.1, "end_factor": 1.0, "total_iters": 10},
            lambda o: tls.LinearLR(o, 0.1, 1.0, 10),
            15,
        ),
        (
            {"name": "onecycle", "max_lr": peaks, "total_steps": 60, "three_phase": True},
            lambda o: tls.OneCycleLR(o, max_lr=peaks, total_steps=60, three_phase=True),
            60,
        ),
        ({"name": "cosine", "T_max": 20}, lambda o: tls.CosineAnnealingLR(o, 20), 20),
        (
            {"name": "cyclic", "base_lr": 0.01, "max_lr": peaks, "step_size_up": 5},
            lambda o: tls.CyclicLR(o, base_lr=0.01, max_lr=peaks, step_size_up=5),
            30,
        ),
    ]
    for kind in ("sgd", "adam"):
        opt = make_optimizer(kind=kind)
        config = {
            "name": "sequence",
            "phases": [{**c, "duration": n} for c, _, n in phases[:-1]] + [phases[-1][0]],
        }
        total = sum(n for _, _, n in phases)
        ours = record(build_scheduler(opt, config), opt, total)
        expected = Curve()
        for _, reference, n in phases:
            ref_opt = make_optimizer(kind=kind)
            part = record(reference(ref_opt), ref_opt, n)
            expected = Curve(
                expected.last_lr + part.last_lr,
                expected.group_lr + part.group_lr,
                expected.momentum + part.momentum,
            )
        assert_same_curve(ours, expected, REL, slack(LRS), context=kind)


CHAIN_CASES = [
    (
        "exponential-step",
        [{"name": "exponential", "gamma": 0.98}, {"name": "step", "step_size": 15, "gamma": 0.5}],
        lambda o: [tls.ExponentialLR(o, 0.98), tls.StepLR(o, 15, 0.5)],
        120,
    ),
    (
        "linear-multistep",
        [
            {"name": "linear", "start_factor": 0.2, "end_factor": 1.0, "total_iters": 25},
            {"name": "multistep", "milestones": [30, 60, 90], "gamma": 0.3},
        ],
        lambda o: [tls.LinearLR(o, 0.2, 1.0, 25), tls.MultiStepLR(o, [30, 60, 90], 0.3)],
        120,
    ),
    (
        "linear-to-zero-exponential-step",
        [
            {"name": "linear", "start_factor": 1.0, "end_factor": 0.0, "total_iters": 100},
            {"name": "exponential", "gamma": 0.99},
            {"name": "step", "step_size": 33, "gamma": 0.7},
        ],
        lambda o: [
            tls.LinearLR(o, 1.0, 0.0, 100),
            tls.ExponentialLR(o, 0.99),
            tls.StepLR(o, 33, 0.7),
        ],
        120,
    ),
    (
        "cosine-polynomial",
        [{"name": "cosine", "T_max": 150}, {"name": "polynomial", "total_iters": 90, "power": 0.7}],
        lambda o: [tls.CosineAnnealingLR(o, 150), tls.PolynomialLR(o, 90, 0.7)],
        120,
    ),
]


@reference_test("chain")
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
@pytest.mark.parametrize(
    ("schedules", "schedulers", "steps"),
    [pytest.param(s, r, n, id=i) for i, s, r, n in CHAIN_CASES],
)
def test_chain_matches_chained_scheduler(schedules, schedulers, steps, kind):
    """``chain`` equals ``ChainedScheduler``: the factors multiply at every step."""
    check_parity(
        {"name": "chain", "schedules": schedules},
        lambda o: tls.ChainedScheduler(schedulers(o)),
        steps,
        kind=kind,
    )


# -- the torch pass-through --------------------------------------------------------------------


def warmed(ref: Curve, warmup: int, steps: int) -> Curve:
    """What ``warmup`` in front of a scheduler with trajectory ``ref`` must give: a linear ramp
    from 0 to ``ref``'s step-0 rates over ``warmup`` steps, then ``ref`` from its step 0."""
    rates, momenta = [], []
    for t in range(steps):
        if t < warmup:
            rates.append([lr * (t / warmup) for lr in ref.group_lr[0]])
        else:
            rates.append(ref.group_lr[t - warmup])
        momenta.append(ref.momentum[max(0, t - warmup)])
    return curve_of(rates, momenta)


PASS_CASES = [
    ("CosineAnnealingLR", {"T_max": 50}, "sgd", 150),
    ("CosineAnnealingLR", {"T_max": 30, "eta_min": 0.002}, "adam", 110),
    ("StepLR", {"step_size": 13, "gamma": 0.6}, "sgd", 100),
    ("CosineAnnealingWarmRestarts", {"T_0": 4, "T_mult": 2}, "sgd", 130),
    (
        "OneCycleLR",
        {"max_lr": [0.5, 0.1, 2.0], "total_steps": 100, "three_phase": True},
        "adam",
        100,
    ),
    ("OneCycleLR", {"max_lr": 0.7, "total_steps": 110, "anneal_strategy": "linear"}, "sgd", 110),
    (
        "CyclicLR",
        {"base_lr": 0.01, "max_lr": [0.2, 0.1, 1.5], "step_size_up": 6, "step_size_down": 14},
        "sgd",
        120,
    ),
    (
        "CyclicLR",
        {
            "base_lr": [0.001, 0.002, 0.3],
            "max_lr": 2.0,
            "step_size_up": 9,
            "mode": "exp_range",
            "gamma": 0.99,
        },
        "adam",
        120,
    ),
]


@reference_test("torch")
@pytest.mark.parametrize("warmup", [0, 10])
@pytest.mark.parametrize(
    ("cls", "kwargs", "kind", "steps"),
    [pytest.param(*case, id=f"{case[0]}-{i}") for i, case in enumerate(PASS_CASES)],
)
def test_torch_pass_through(cls, kwargs, kind, steps, warmup):
    """``name=torch`` is the torch class itself; with ``warmup`` a linear ramp from 0 to the
    class's step-0 rate, then the class's own curve from its step 0 (momentum included)."""
    config = {"name": "torch", "_target_": f"torch.optim.lr_scheduler.{cls}", **kwargs}
    if warmup:
        config["warmup"] = warmup
    opt = make_optimizer(kind=kind)
    ours = record(build_scheduler(opt, config), opt, steps + warmup)
    ref_opt = make_optimizer(kind=kind)
    ref = record(getattr(tls, cls)(ref_opt, **kwargs), ref_opt, steps)
    assert_same_curve(ours, warmed(ref, warmup, steps + warmup), REL, slack(LRS))


def test_torch_pass_through_accepts_a_class():
    """``_target_`` may be the class object itself."""
    check_parity(
        {"name": "torch", "_target_": tls.ExponentialLR, "gamma": 0.96},
        lambda o: tls.ExponentialLR(o, 0.96),
        100,
    )


@pytest.mark.parametrize(
    ("config", "reference"),
    [
        ({"name": "cosine", "T_max": 40}, lambda o: tls.CosineAnnealingLR(o, 40)),
        ({"name": "step", "step_size": 9, "gamma": 0.7}, lambda o: tls.StepLR(o, 9, 0.7)),
        (
            {"name": "onecycle", "max_lr": [0.5, 0.1, 2.0], "total_steps": 100},
            lambda o: tls.OneCycleLR(o, max_lr=[0.5, 0.1, 2.0], total_steps=100),
        ),
        (
            {"name": "cyclic", "base_lr": 0.01, "max_lr": [0.5, 0.1, 2.0], "step_size_up": 7},
            lambda o: tls.CyclicLR(o, base_lr=0.01, max_lr=[0.5, 0.1, 2.0], step_size_up=7),
        ),
    ],
    ids=["cosine", "step", "onecycle", "cyclic"],
)
def test_tensor_rates_match_torch(config, reference):
    """Param groups whose ``lr`` is a (float64) tensor: same curve as torch, still tensors."""

    def make():
        groups = [
            {
                "params": [torch.zeros(1, requires_grad=True)],
                "lr": torch.tensor(lr, dtype=torch.float64),
            }
            for lr in LRS
        ]
        return torch.optim.SGD(groups, lr=0.5, momentum=0.9)

    opt, ref_opt = make(), make()
    ours = record(build_scheduler(opt, config), opt, 100)
    ref = record(reference(ref_opt), ref_opt, 100)
    assert_same_curve(ours, ref, REL, slack(LRS))
    assert all(isinstance(g["lr"], torch.Tensor) for g in opt.param_groups)


# -- property-based parity -----------------------------------------------------------------------

base_rates = st.lists(
    st.floats(1e-4, 2.0, allow_nan=False, allow_infinity=False), min_size=1, max_size=4
)
optimizer_kinds = st.sampled_from(["sgd", "adam", "adamw"])


@st.composite
def decay_pairs(draw, horizon, *, chainable=False, steps=None):
    """(our config, torch constructor) for a random decay strategy with random parameters.

    ``chainable`` keeps to schedules whose torch recursion is multiplicative (what
    ``ChainedScheduler`` needs): cosine only without eta_min and not past T_max; and to
    gamma <= 1, since a growing factor would amplify the ~1e-16 residue torch's recursive
    ``LinearLR`` leaves where it should reach exactly zero (ours is exactly zero).
    """
    top = 1.0 if chainable else 1.5
    kind = draw(
        st.sampled_from(["step", "multistep", "exponential", "linear", "polynomial", "cosine"])
    )
    if kind == "step":
        size, gamma = draw(st.integers(1, horizon)), draw(st.floats(0.05, top))
        return {"name": "step", "step_size": size, "gamma": gamma}, (
            lambda o: tls.StepLR(o, size, gamma)
        )
    if kind == "multistep":
        milestones = sorted(
            draw(st.lists(st.integers(1, horizon), min_size=1, max_size=6, unique=True))
        )
        gamma = draw(st.floats(0.05, top))
        return {"name": "multistep", "milestones": milestones, "gamma": gamma}, (
            lambda o: tls.MultiStepLR(o, milestones, gamma)
        )
    if kind == "exponential":
        gamma = draw(st.floats(0.85, min(top, 1.02)))
        return {"name": "exponential", "gamma": gamma}, lambda o: tls.ExponentialLR(o, gamma)
    if kind == "linear":
        start = draw(st.floats(0.01, 1.0))
        end = draw(st.floats(0.0, 1.0))
        iters = draw(st.integers(1, horizon))
        config = {"name": "linear", "start_factor": start, "end_factor": end, "total_iters": iters}
        return config, lambda o: tls.LinearLR(o, start, end, iters)
    if kind == "polynomial":
        iters = draw(st.integers(1, horizon))
        power = draw(st.floats(0.0, 3.0))
        return {"name": "polynomial", "total_iters": iters, "power": power}, (
            lambda o: tls.PolynomialLR(o, iters, power)
        )
    if chainable:
        t_max = draw(st.integers(steps - 1, 2 * steps))
        return {"name": "cosine", "T_max": t_max}, lambda o: tls.CosineAnnealingLR(o, t_max)
    t_max = draw(st.integers(1, horizon))
    eta_min = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.05)))
    return {"name": "cosine", "T_max": t_max, "eta_min": eta_min}, (
        lambda o: tls.CosineAnnealingLR(o, t_max, eta_min=eta_min)
    )


@PROPERTY
@given(data=st.data(), steps=st.integers(100, 250), lrs=base_rates, kind=optimizer_kinds)
def test_property_decays(data, steps, lrs, kind):
    """Random step/multistep/exponential/linear/polynomial/cosine parameters: same as torch."""
    config, reference = data.draw(decay_pairs(steps))
    check_parity(config, reference, steps, lrs=lrs, kind=kind)


@PROPERTY
@given(
    step_size=st.integers(1, 60),
    gamma=st.floats(0.05, 1.5),
    steps=st.integers(100, 250),
    lrs=base_rates,
)
def test_property_step(step_size, gamma, steps, lrs):
    """Random StepLR parameters: same as torch."""
    check_parity(
        {"name": "step", "step_size": step_size, "gamma": gamma},
        lambda o: tls.StepLR(o, step_size, gamma),
        steps,
        lrs=lrs,
    )


@PROPERTY
@given(
    milestones=st.lists(st.integers(1, 200), min_size=1, max_size=8, unique=True).map(sorted),
    gamma=st.floats(0.05, 1.5),
    lrs=base_rates,
)
def test_property_multistep(milestones, gamma, lrs):
    """Random MultiStepLR milestones/gamma: same as torch."""
    check_parity(
        {"name": "multistep", "milestones": milestones, "gamma": gamma},
        lambda o: tls.MultiStepLR(o, milestones, gamma),
        max(milestones) + 5 if max(milestones) >= 100 else 110,
        lrs=lrs,
    )


@PROPERTY
@given(gamma=st.floats(0.85, 1.03), steps=st.integers(100, 250), lrs=base_rates)
def test_property_exponential(gamma, steps, lrs):
    """Random ExponentialLR gamma: same as torch."""
    check_parity(
        {"name": "exponential", "gamma": gamma},
        lambda o: tls.ExponentialLR(o, gamma),
        steps,
        lrs=lrs,
    )


@PROPERTY
@given(
    start=st.floats(0.01, 1.0),
    end=st.floats(0.0, 1.0),
    iters=st.integers(1, 150),
    lrs=base_rates,
    kind=optimizer_kinds,
)
def test_property_linear(start, end, iters, lrs, kind):
    """Random LinearLR factors and length: same as torch (zero end included)."""
    check_parity(
        {"name": "linear", "start_factor": start, "end_factor": end, "total_iters": iters},
        lambda o: tls.LinearLR(o, start, end, iters),
        max(100, iters + 20),
        lrs=lrs,
        kind=kind,
    )


@PROPERTY
@given(iters=st.integers(1, 150), power=st.floats(0.0, 4.0), lrs=base_rates)
def test_property_polynomial(iters, power, lrs):
    """Random PolynomialLR length/power: same as torch (ours with end_factor=0)."""
    check_parity(
        {"name": "polynomial", "total_iters": iters, "power": power, "end_factor": 0.0},
        lambda o: tls.PolynomialLR(o, iters, power),
        max(100, iters + 20),
        lrs=lrs,
    )


@PROPERTY
@given(
    t_max=st.integers(1, 200),
    eta_min=st.one_of(st.just(0.0), st.floats(0.0, 0.1)),
    periods=st.floats(0.0, 3.0),
    lrs=base_rates,
    kind=optimizer_kinds,
)
def test_property_cosine(t_max, eta_min, periods, lrs, kind):
    """Random CosineAnnealingLR T_max/eta_min, often far past T_max: same as torch."""
    steps = max(100, t_max + 1 + int(periods * t_max))
    check_parity(
        {"name": "cosine", "T_max": t_max, "eta_min": eta_min},
        lambda o: tls.CosineAnnealingLR(o, t_max, eta_min=eta_min),
        min(steps, 400),
        lrs=lrs,
        kind=kind,
    )


@PROPERTY
@given(
    t_0=st.integers(1, 40),
    t_mult=st.integers(1, 4),
    eta_min=st.one_of(st.just(0.0), st.floats(0.0, 0.05)),
    steps=st.integers(100, 300),
    lrs=base_rates,
)
def test_property_cosine_restarts(t_0, t_mult, eta_min, steps, lrs):
    """Random CosineAnnealingWarmRestarts T_0/T_mult/eta_min: same as torch at every restart."""
    check_parity(
        {"name": "cosine_restarts", "T_0": t_0, "T_mult": t_mult, "eta_min": eta_min},
        lambda o: tls.CosineAnnealingWarmRestarts(o, t_0, t_mult, eta_min=eta_min),
        steps,
        lrs=lrs,
    )


@st.composite
def momentum_ranges(draw, groups):
    """``base_momentum``/``max_momentum`` (base <= max), each a scalar or a per-group list."""
    lows = draw(st.lists(st.floats(0.0, 0.95), min_size=groups, max_size=groups))
    highs = [draw(st.floats(low, 0.99)) for low in lows]
    if draw(st.booleans()):
        return {"base_momentum": lows, "max_momentum": highs}
    return {"base_momentum": min(lows), "max_momentum": highs if draw(st.booleans()) else 0.99}


@PROPERTY
@given(data=st.data(), lrs=base_rates, kind=optimizer_kinds)
def test_property_cyclic(data, lrs, kind):
    """Random CyclicLR sizes/modes/gamma/momentum ranges, per-group lists: same as torch."""
    n = len(lrs)
    up = data.draw(st.integers(1, 50), "step_size_up")
    down = data.draw(st.one_of(st.none(), st.integers(1, 50)), "step_size_down")
    mode = data.draw(st.sampled_from(["triangular", "triangular2", "exp_range"]), "mode")
    lows = data.draw(st.lists(st.floats(1e-4, 1.0), min_size=n, max_size=n), "lows")
    ratios = data.draw(st.lists(st.floats(1.0, 20.0), min_size=n, max_size=n), "ratios")
    highs = [low * r for low, r in zip(lows, ratios, strict=True)]
    params = {
        "base_lr": lows if data.draw(st.booleans()) else lows[0],
        "max_lr": highs,
        "step_size_up": up,
        "mode": mode,
        "cycle_momentum": data.draw(st.booleans(), "cycle_momentum"),
    }
    if isinstance(params["base_lr"], float):
        params["max_lr"] = [max(h, lows[0]) for h in highs]
    if down is not None:
        params["step_size_down"] = down
    if mode == "exp_range":
        params["gamma"] = data.draw(st.floats(0.95, 1.0), "gamma")
    if params["cycle_momentum"]:
        params.update(data.draw(momentum_ranges(n), "momentum range"))
    steps = data.draw(st.integers(100, 300), "steps")
    check_parity(
        {"name": "cyclic", **params},
        lambda o: tls.CyclicLR(o, **params),
        steps,
        lrs=lrs,
        kind=kind,
    )


@PROPERTY
@given(data=st.data(), lrs=base_rates, kind=optimizer_kinds)
def test_property_onecycle(data, lrs, kind):
    """Random OneCycleLR phases/anneal/div factors/momentum: same as torch up to total_steps."""
    total = data.draw(st.integers(100, 300), "total")
    three_phase = data.draw(st.booleans(), "three_phase")
    low = 1.5 / total  # pct_start * total > 1
    pct = data.draw(st.floats(low, 0.5 if three_phase else 0.9), "pct_start")
    peaks = data.draw(st.lists(st.floats(1e-3, 3.0), min_size=len(lrs), max_size=len(lrs)))
    params = {
        "max_lr": peaks if data.draw(st.booleans()) else peaks[0],
        "pct_start": pct,
        "anneal_strategy": data.draw(st.sampled_from(["cos", "linear"]), "anneal"),
        "div_factor": data.draw(st.floats(1.0, 100.0), "div_factor"),
        "final_div_factor": data.draw(st.floats(1.0, 1e5), "final_div_factor"),
        "three_phase": three_phase,
        "cycle_momentum": data.draw(st.booleans(), "cycle_momentum"),
    }
    if params["cycle_momentum"]:
        params.update(data.draw(momentum_ranges(len(lrs)), "momentum range"))
    check_parity(
        {"name": "onecycle", "total_steps": total, **params},
        lambda o: tls.OneCycleLR(o, total_steps=total, **params),
        total,
        lrs=lrs,
        kind=kind,
    )


@PROPERTY
@given(
    data=st.data(),
    mode=st.sampled_from(["min", "max"]),
    threshold_mode=st.sampled_from(["rel", "abs"]),
    lrs=base_rates,
)
def test_property_plateau(data, mode, threshold_mode, lrs):
    """Random ReduceLROnPlateau settings on random plateau/noise curves: same as torch."""
    n = len(lrs)
    metrics = metric_sequence(
        data.draw(st.integers(60, 90), "epochs"),
        data.draw(st.integers(0, 2**32 - 1), "seed"),
        mode=mode,
        noise=data.draw(st.sampled_from([0.0, 1e-6, 1e-3, 0.05]), "noise"),
        offset=data.draw(st.sampled_from([0.0, -2.0, 5.0]), "offset"),
        tie_digits=data.draw(st.sampled_from([None, 3, 6]), "tie_digits"),
    )
    min_lr = data.draw(
        st.one_of(st.floats(0.0, 1e-3), st.lists(st.floats(0.0, 0.05), min_size=n, max_size=n)),
        "min_lr",
    )
    params = {
        "mode": mode,
        "threshold_mode": threshold_mode,
        "threshold": data.draw(st.sampled_from([0.0, 1e-4, 1e-2, 0.1]), "threshold"),
        "factor": data.draw(st.floats(0.05, 0.9), "factor"),
        "patience": data.draw(st.integers(0, 6), "patience"),
        "cooldown": data.draw(st.integers(0, 4), "cooldown"),
        "min_lr": min_lr,
        "eps": data.draw(st.sampled_from([0.0, 1e-8, 1e-3, 0.01]), "eps"),
    }
    spe = data.draw(st.integers(2, 3), "steps_per_epoch")
    check_plateau(params, metrics, spe, lrs=lrs, kind=data.draw(optimizer_kinds))


@PROPERTY
@given(data=st.data(), lrs=base_rates, kind=optimizer_kinds)
def test_property_sequence(data, lrs, kind):
    """Random 2-3 phase sequences of decays: same as ``SequentialLR`` with those milestones."""
    durations = data.draw(st.lists(st.integers(1, 60), min_size=1, max_size=2), "durations")
    last = data.draw(st.integers(40, 120), "last phase length")
    pairs = [data.draw(decay_pairs(d + 10), f"phase {i}") for i, d in enumerate(durations)]
    pairs.append(data.draw(decay_pairs(last), "last phase"))
    phases = [
        {**config, "duration": d} for (config, _), d in zip(pairs, durations, strict=False)
    ] + [pairs[-1][0]]
    milestones = [sum(durations[: i + 1]) for i in range(len(durations))]
    steps = max(100, milestones[-1] + last)
    check_parity(
        {"name": "sequence", "phases": phases},
        lambda o: tls.SequentialLR(o, [make(o) for _, make in pairs], milestones),
        steps,
        lrs=lrs,
        kind=kind,
    )


@PROPERTY
@given(data=st.data(), lrs=base_rates, kind=optimizer_kinds)
def test_property_chain(data, lrs, kind):
    """Random 2-3 multiplicative schedules chained: same as ``ChainedScheduler``."""
    steps = data.draw(st.integers(100, 200), "steps")
    count = data.draw(st.integers(2, 3), "count")
    pairs = [data.draw(decay_pairs(steps, chainable=True, steps=steps)) for _ in range(count)]
    check_parity(
        {"name": "chain", "schedules": [config for config, _ in pairs]},
        lambda o: tls.ChainedScheduler([make(o) for _, make in pairs]),
        steps,
        lrs=lrs,
        kind=kind,
    )


@st.composite
def torch_classes(draw, lrs):
    """A random torch scheduler class name and keyword arguments for it."""
    cls = draw(
        st.sampled_from(
            [
                "StepLR",
                "ExponentialLR",
                "CosineAnnealingLR",
                "CosineAnnealingWarmRestarts",
                "OneCycleLR",
                "CyclicLR",
            ]
        )
    )
    if cls == "StepLR":
        return cls, {"step_size": draw(st.integers(1, 50)), "gamma": draw(st.floats(0.1, 1.0))}
    if cls == "ExponentialLR":
        return cls, {"gamma": draw(st.floats(0.9, 1.0))}
    if cls == "CosineAnnealingLR":
        return cls, {"T_max": draw(st.integers(1, 120)), "eta_min": draw(st.floats(0.0, 0.01))}
    if cls == "CosineAnnealingWarmRestarts":
        return cls, {"T_0": draw(st.integers(1, 30)), "T_mult": draw(st.integers(1, 3))}
    if cls == "OneCycleLR":
        return cls, {
            "max_lr": [lr * draw(st.floats(1.0, 10.0)) for lr in lrs],
            "total_steps": 120,
            "pct_start": draw(st.floats(0.05, 0.5)),
            "three_phase": draw(st.booleans()),
        }
    return cls, {
        "base_lr": list(lrs),
        "max_lr": [lr * draw(st.floats(1.0, 10.0)) for lr in lrs],
        "step_size_up": draw(st.integers(1, 30)),
        "step_size_down": draw(st.integers(1, 30)),
        "mode": draw(st.sampled_from(["triangular", "triangular2", "exp_range"])),
        "gamma": draw(st.floats(0.97, 1.0)),
    }


@PROPERTY
@given(data=st.data(), lrs=base_rates, kind=optimizer_kinds, warmup=st.integers(0, 15))
def test_property_torch_pass_through(data, lrs, kind, warmup):
    """Random torch classes/kwargs through ``name=torch`` (with a random warmup): the class's
    own curve, after a linear ramp to its step-0 rate."""
    cls, kwargs = data.draw(torch_classes(lrs))
    steps = 120  # OneCycleLR above has total_steps=120
    config = {"name": "torch", "_target_": f"torch.optim.lr_scheduler.{cls}", **kwargs}
    if warmup:
        config["warmup"] = warmup
    opt = make_optimizer(lrs, kind)
    ours = record(build_scheduler(opt, config), opt, steps + warmup)
    ref_opt = make_optimizer(lrs, kind)
    ref = record(getattr(tls, cls)(ref_opt, **kwargs), ref_opt, steps)
    assert_same_curve(ours, warmed(ref, warmup, steps + warmup), REL, slack(lrs))


def test_helpers_report_the_first_difference():
    """The comparison names the first differing step and group (and tolerates nothing more)."""
    a = curve_of([[1.0, 2.0]] * 5)
    b = curve_of([[1.0, 2.0]] * 3 + [[1.0, 2.0 * (1 + 1e-8)]] * 2)
    with pytest.raises(AssertionError, match="step 3, group 1"):
        assert_same_curve(a, b)
    assert_same_curve(a, curve_of([[1.0, 2.0 * (1 + 1e-10)]] * 5))
    zero, tiny = curve_of([[0.0]] * 3), curve_of([[1e-17]] * 3)
    assert_same_curve(zero, tiny, abs_tol=1e-12)
    with pytest.raises(AssertionError):
        assert_same_curve(zero, tiny)
    assert math.isclose(distinct([1.0, 1.0, 0.5]), 2)
