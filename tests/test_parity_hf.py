"""Whole-trajectory parity with Hugging Face ``transformers.optimization``.

Every Hugging Face schedule family is matched against the strategy the design names for it
(``cosine`` + ``warmup`` = ``get_cosine_schedule_with_warmup`` and so on). Both schedulers
drive their own copy of an optimizer with several param groups of different base rates, and
the rates the param groups hold are compared at every step ``0 .. num_training_steps - 1``
(plus a few steps past the horizon, where both libraries define the curve) with a relative
error of at most 1e-9; an absolute slack of ``1e-12 * base`` applies only near zero (e.g. the
last steps of a cosine, where ``1 + cos(x)`` cancels and the last ulp of ``cos`` dominates).

Mapping (HF call → our config):

* ``get_constant_schedule`` → ``constant``
* ``get_constant_schedule_with_warmup(W)`` → ``constant`` + ``warmup=W``
* ``get_linear_schedule_with_warmup(W, N)`` → ``linear`` + ``warmup=W`` (defaults 1 → 0 over the
  rest of training)
* ``get_cosine_schedule_with_warmup(W, N)`` → ``cosine`` + ``warmup=W``
* ``get_cosine_with_hard_restarts_schedule_with_warmup(W, N, c)`` → ``cosine_restarts`` +
  ``warmup=W``, ``num_cycles=c`` (no ``T_0``)
* ``get_polynomial_decay_schedule_with_warmup(W, N, lr_end, power)`` → ``polynomial`` +
  ``warmup=W``, ``power``, ``end_factor = lr_end / optimizer.defaults["lr"]`` (HF divides by the
  optimizer's *default* rate, whatever the groups' rates are, and applies the same factor to
  every group)
* ``get_inverse_sqrt_schedule(W, timescale)`` → ``inverse_sqrt`` + ``warmup=W`` (+ ``timescale``)
* ``get_wsd_schedule(...)`` → ``wsd`` with the same names; its warmup starts at ``min_lr_ratio``
  by default, as HF's does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import transformers.optimization as hf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimizers import make_optimizer as shared_optimizer
from references import reference_test

from lightning_lrsched import build_scheduler

torch.set_num_threads(1)

# HF's LambdaLR is stepped without optimizer.step() (nothing is trained here).
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")

REL = 1e-9
ABS_NEAR_ZERO = 1e-12  # times the group's base rate
PAST_HORIZON = 3  # extra steps after num_training_steps, defined by both libraries
GROUP_LRS = (0.1, 0.0307, 2.5)  # several param groups with different base rates
DEFAULT_LR = 0.05  # optimizer.defaults["lr"], deliberately none of the groups' rates

# (num_training_steps, num_warmup_steps): long runs, odd lengths, and the shortest edge cases
CASES = [(100, 0), (100, 10), (137, 37), (100, 99), (1000, 50), (2, 1), (2, 0), (3, 2), (1, 0)]

FAST = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


# -- helpers ----------------------------------------------------------------------------------
def make_optimizer(group_lrs=GROUP_LRS, default_lr=DEFAULT_LR) -> torch.optim.Optimizer:
    """HF reads the optimizer's own ``lr`` (``default_lr``) beside the groups' rates."""
    return shared_optimizer(group_lrs, default_lr=default_lr)


def trajectory(scheduler: Any, optimizer: torch.optim.Optimizer, steps: int) -> list[list[float]]:
    """The rates the param groups hold at steps 0 .. steps-1 (torch convention)."""
    rows = []
    for step in range(steps):
        rates = [float(group["lr"]) for group in optimizer.param_groups]
        assert [float(lr) for lr in scheduler.get_last_lr()] == rates, f"step {step}"
        rows.append(rates)
        scheduler.step()
    return rows


def assert_same_curve(ours, reference, bases, label: str) -> None:
    """Step-by-step comparison naming the first step and group where the curves part."""
    assert len(ours) == len(reference)
    for step, (row, ref_row) in enumerate(zip(ours, reference, strict=True)):
        for group, (a, b, base) in enumerate(zip(row, ref_row, bases, strict=True)):
            tol = max(REL * abs(b), ABS_NEAR_ZERO * base)
            if not abs(a - b) <= tol:
                raise AssertionError(
                    f"{label}: step {step}, group {group} (base {base}): ours {a!r} vs "
                    f"Hugging Face {b!r} (|diff| {abs(a - b):.3g} > tol {tol:.3g})"
                )


def check_parity(
    config: dict[str, Any],
    reference: Callable[[torch.optim.Optimizer], Any],
    total: int,
    *,
    group_lrs=GROUP_LRS,
    default_lr=DEFAULT_LR,
    extra: int = PAST_HORIZON,
) -> None:
    ours_opt = make_optimizer(group_lrs, default_lr)
    ref_opt = make_optimizer(group_lrs, default_lr)
    ours = trajectory(build_scheduler(ours_opt, config, total_steps=total), ours_opt, total + extra)
    ref = trajectory(reference(ref_opt), ref_opt, total + extra)
    assert_same_curve(ours, ref, group_lrs, f"{config} over {total} steps")


def warmup_cfg(name: str, warmup: int, **params: Any) -> dict[str, Any]:
    return {"name": name, "warmup": warmup, **params}


# -- deterministic cases ----------------------------------------------------------------------
@reference_test("constant")
@pytest.mark.parametrize("total", [1, 2, 100, 257])
def test_constant(total):
    check_parity({"name": "constant"}, hf.get_constant_schedule, total)


@pytest.mark.parametrize(("total", "warmup"), CASES)
def test_constant_with_warmup(total, warmup):
    check_parity(
        warmup_cfg("constant", warmup),
        lambda o: hf.get_constant_schedule_with_warmup(o, num_warmup_steps=warmup),
        total,
    )


@reference_test("linear")
@pytest.mark.parametrize(("total", "warmup"), CASES)
def test_linear_with_warmup(total, warmup):
    check_parity(
        warmup_cfg("linear", warmup),
        lambda o: hf.get_linear_schedule_with_warmup(o, warmup, total),
        total,
    )


@reference_test("cosine")
@pytest.mark.parametrize(("total", "warmup"), CASES)
def test_cosine_with_warmup(total, warmup):
    check_parity(
        warmup_cfg("cosine", warmup),
        lambda o: hf.get_cosine_schedule_with_warmup(o, warmup, total),
        total,
    )


@reference_test("cosine_with_min_lr")
@pytest.mark.parametrize(("total", "warmup"), CASES)
@pytest.mark.parametrize("num_cycles", [0.5, 1.25])
@pytest.mark.parametrize("floor", [{"min_lr_rate": 0.2}, {"min_lr": 0.003}, {"min_lr_rate": 0.0}])
def test_cosine_with_min_lr(total, warmup, num_cycles, floor):
    """Both ways of giving the floor; HF divides min_lr by the optimizer's own lr, as we do."""
    check_parity(
        warmup_cfg("cosine_with_min_lr", warmup, num_cycles=num_cycles, **floor),
        lambda o: hf.get_cosine_with_min_lr_schedule_with_warmup(
            o, warmup, total, num_cycles=num_cycles, **floor
        ),
        total,
    )


@reference_test("cosine_restarts")
@pytest.mark.parametrize("num_cycles", [1, 2, 4, 8, 3, 2.5])
@pytest.mark.parametrize(("total", "warmup"), CASES)
def test_cosine_hard_restarts_with_warmup(total, warmup, num_cycles):
    check_parity(
        warmup_cfg("cosine_restarts", warmup, num_cycles=num_cycles),
        lambda o: hf.get_cosine_with_hard_restarts_schedule_with_warmup(
            o, warmup, total, num_cycles=num_cycles
        ),
        total,
    )


def test_cosine_hard_restarts_default_is_one_cycle():
    check_parity(
        {"name": "cosine_restarts", "warmup": 10},
        lambda o: hf.get_cosine_with_hard_restarts_schedule_with_warmup(o, 10, 110),
        110,
    )


def test_hard_restarts_exact_at_integer_cycle_boundaries():
    """HF computes ``(num_cycles * progress) % 1`` in floats. For whole ``num_cycles`` that is
    exact at every restart (checked here for every length up to 300, with and without warmup,
    for both libraries): the rate at a restart is the full base rate, not ~0."""
    for num_cycles, length in itertools.product((1, 2, 3, 4, 5, 6, 7, 8), range(1, 301)):
        if length % num_cycles:
            continue
        cycle = length // num_cycles
        warmup = length % 7
        opt = make_optimizer((1.0,), 1.0)
        ref_opt = make_optimizer((1.0,), 1.0)
        config = {"name": "cosine_restarts", "num_cycles": num_cycles, "warmup": warmup}
        ours = build_scheduler(opt, config, total_steps=length + warmup)
        ref = hf.get_cosine_with_hard_restarts_schedule_with_warmup(
            ref_opt, warmup, length + warmup, num_cycles=num_cycles
        )
        state = ours.state_dict()
        for k in range(num_cycles):
            step = warmup + k * cycle
            ours.load_state_dict({**state, "step": step})  # jump straight to the restart
            assert ours.get_last_lr() == [1.0], (num_cycles, length, step)
            assert ref.lr_lambdas[0](step) == 1.0, (num_cycles, length, step)


def test_hard_restarts_float_artefact_matches_hf():
    """A boundary artefact on Hugging Face's side, documented: with ``num_cycles=3.3`` over 11
    steps, ``3.3 * 10 / 11`` is 3 in real numbers, so step 10 "should" restart at the full rate.
    But ``float(3.3)`` is slightly below 3.3, and HF's ``(3.3 * (10 / 11)) % 1`` evaluates to
    ``0.9999999999999996``: the rate there is ~4e-31 of the base instead of the base. Our
    ``cosine_restarts`` with ``num_cycles`` follows HF's float formula, so it reproduces the
    same value (parity over the whole curve holds); whole ``num_cycles`` are not affected (see
    the test above)."""
    assert 1.0 - 1e-15 < (3.3 * (10.0 / 11.0)) % 1.0 < 1.0
    ref_opt = make_optimizer((1.0,), 1.0)
    ref = hf.get_cosine_with_hard_restarts_schedule_with_warmup(ref_opt, 0, 11, num_cycles=3.3)
    assert ref.lr_lambdas[0](10) < 1e-30
    opt = make_optimizer((1.0,), 1.0)
    ours = build_scheduler(opt, {"name": "cosine_restarts", "num_cycles": 3.3}, total_steps=11)
    for _ in range(10):
        ours.step()
    assert ours.get_last_lr()[0] < 1e-30
    check_parity(
        {"name": "cosine_restarts", "num_cycles": 3.3},
        lambda o: hf.get_cosine_with_hard_restarts_schedule_with_warmup(o, 0, 11, num_cycles=3.3),
        11,
    )


@reference_test("polynomial")
@pytest.mark.parametrize(
    ("power", "lr_end"), [(1.0, 1e-7), (2.0, 1e-3), (0.5, 0.0), (3.0, 0.02), (1.7, 0.049)]
)
@pytest.mark.parametrize(("total", "warmup"), CASES)
def test_polynomial_decay_with_warmup(total, warmup, power, lr_end):
    check_parity(
        warmup_cfg("polynomial", warmup, power=power, end_factor=lr_end / DEFAULT_LR),
        lambda o: hf.get_polynomial_decay_schedule_with_warmup(
            o, warmup, total, lr_end=lr_end, power=power
        ),
        total,
    )


def test_polynomial_hf_default_power_and_lr_end():
    # HF's defaults: lr_end=1e-7, power=1.0; ours: power=1.0, end_factor given explicitly
    check_parity(
        {"name": "polynomial", "warmup": 5, "end_factor": 1e-7 / DEFAULT_LR},
        lambda o: hf.get_polynomial_decay_schedule_with_warmup(o, 5, 120),
        120,
    )


@reference_test("inverse_sqrt")
@pytest.mark.parametrize("timescale", [None, 1, 7, 1000])
@pytest.mark.parametrize(("total", "warmup"), CASES)
def test_inverse_sqrt(total, warmup, timescale):
    config = warmup_cfg("inverse_sqrt", warmup)
    if timescale is not None:
        config["timescale"] = timescale
    check_parity(
        config,
        lambda o: hf.get_inverse_sqrt_schedule(o, num_warmup_steps=warmup, timescale=timescale),
        total,
    )


def test_inverse_sqrt_default_timescale_without_warmup_is_10000():
    check_parity(
        {"name": "inverse_sqrt"},
        lambda o: hf.get_inverse_sqrt_schedule(o, num_warmup_steps=0),
        20000,
        extra=0,
    )


TYPES = ("linear", "cosine", "1-sqrt")


@reference_test("wsd")
@pytest.mark.parametrize(("warmup_type", "decay_type"), list(itertools.product(TYPES, TYPES)))
@pytest.mark.parametrize(
    ("total", "warmup", "decay", "stable"),
    [
        (100, 10, 20, None),  # stable = the rest
        (100, 0, 30, None),
        (137, 37, 1, None),
        (100, 10, 90, None),  # no stable phase
        (100, 10, 20, 50),  # explicit stable, ends before the horizon
        (60, 5, 10, 0),
        (100, 7, 40, 80),  # explicit stable, runs past the horizon
        (2, 1, 1, None),
        (3, 2, 1, None),
    ],
)
@pytest.mark.parametrize(("min_lr_ratio", "num_cycles"), [(0.0, 0.5), (0.1, 0.5), (0.25, 1.5)])
def test_wsd(total, warmup, decay, stable, warmup_type, decay_type, min_lr_ratio, num_cycles):
    config = {
        "name": "wsd",
        "warmup": warmup,
        "num_decay_steps": decay,
        "warmup_type": warmup_type,
        "decay_type": decay_type,
        "min_lr_ratio": min_lr_ratio,
        "num_cycles": num_cycles,
    }
    if stable is not None:
        config["num_stable_steps"] = stable

    def reference(o):
        return hf.get_wsd_schedule(
            o,
            num_warmup_steps=warmup,
            num_decay_steps=decay,
            num_training_steps=total if stable is None else None,
            num_stable_steps=stable,
            warmup_type=warmup_type,
            decay_type=decay_type,
            min_lr_ratio=min_lr_ratio,
            num_cycles=num_cycles,
        )

    check_parity(config, reference, total)


def test_wsd_defaults_and_explicit_warmup_start():
    # HF defaults: linear warmup, cosine decay, min_lr_ratio=0, num_cycles=0.5; the warmup
    # starts at min_lr_ratio, which ours takes as warmup_start_factor's default (also explicit).
    check_parity(
        {"name": "wsd", "warmup": 10, "num_decay_steps": 25},
        lambda o: hf.get_wsd_schedule(o, 10, 25, num_training_steps=100),
        100,
    )
    check_parity(
        {"name": "wsd", "warmup": 10, "num_decay_steps": 25, "min_lr_ratio": 0.3},
        lambda o: hf.get_wsd_schedule(o, 10, 25, num_training_steps=100, min_lr_ratio=0.3),
        100,
    )
    check_parity(
        {
            "name": "wsd",
            "warmup": 10,
            "num_decay_steps": 25,
            "min_lr_ratio": 0.3,
            "warmup_start_factor": 0.3,
        },
        lambda o: hf.get_wsd_schedule(o, 10, 25, num_training_steps=100, min_lr_ratio=0.3),
        100,
    )


def test_parity_with_adam_and_single_group():
    """The optimizer family does not matter to the rates (Adam, one group, defaults = group)."""
    for config, reference in [
        ({"name": "cosine", "warmup": 7}, lambda o: hf.get_cosine_schedule_with_warmup(o, 7, 64)),
        ({"name": "linear", "warmup": 3}, lambda o: hf.get_linear_schedule_with_warmup(o, 3, 64)),
    ]:
        opts = [torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=3e-4) for _ in "ab"]
        ours = trajectory(build_scheduler(opts[0], config, total_steps=64), opts[0], 67)
        ref = trajectory(reference(opts[1]), opts[1], 67)
        assert_same_curve(ours, ref, [3e-4], str(config))


# -- property tests ---------------------------------------------------------------------------
group_lrs = st.lists(
    st.floats(1e-5, 10.0, allow_nan=False, allow_infinity=False), min_size=1, max_size=3
).map(tuple)


@st.composite
def horizon(draw, max_total: int = 400) -> tuple[int, int]:
    """(num_training_steps, num_warmup_steps) with warmup < total, as ours requires."""
    total = draw(st.one_of(st.integers(1, 12), st.integers(100, max_total)))
    warmup = draw(st.one_of(st.just(0), st.integers(0, total - 1)))
    return total, warmup


@FAST
@given(total=st.integers(1, 400), lrs=group_lrs)
def test_property_constant(total, lrs):
    check_parity({"name": "constant"}, hf.get_constant_schedule, total, group_lrs=lrs)


@FAST
@given(case=horizon(), lrs=group_lrs)
def test_property_constant_with_warmup(case, lrs):
    total, warmup = case
    check_parity(
        warmup_cfg("constant", warmup),
        lambda o: hf.get_constant_schedule_with_warmup(o, warmup),
        total,
        group_lrs=lrs,
    )


@FAST
@given(case=horizon(), lrs=group_lrs)
def test_property_linear_with_warmup(case, lrs):
    total, warmup = case
    check_parity(
        warmup_cfg("linear", warmup),
        lambda o: hf.get_linear_schedule_with_warmup(o, warmup, total),
        total,
        group_lrs=lrs,
    )


@FAST
@given(case=horizon(), lrs=group_lrs)
def test_property_cosine_with_warmup(case, lrs):
    total, warmup = case
    check_parity(
        warmup_cfg("cosine", warmup),
        lambda o: hf.get_cosine_schedule_with_warmup(o, warmup, total),
        total,
        group_lrs=lrs,
    )


@FAST
@given(
    case=horizon(),
    lrs=group_lrs,
    num_cycles=st.one_of(st.integers(1, 10), st.floats(0.05, 10.0, allow_nan=False)),
)
def test_property_cosine_hard_restarts(case, lrs, num_cycles):
    total, warmup = case
    check_parity(
        warmup_cfg("cosine_restarts", warmup, num_cycles=num_cycles),
        lambda o: hf.get_cosine_with_hard_restarts_schedule_with_warmup(
            o, warmup, total, num_cycles=num_cycles
        ),
        total,
        group_lrs=lrs,
    )


@FAST
@given(
    case=horizon(),
    lrs=group_lrs,
    default_lr=st.floats(1e-4, 5.0),
    end_share=st.floats(0.0, 0.99),
    power=st.floats(0.1, 5.0),
)
def test_property_polynomial_decay(case, lrs, default_lr, end_share, power):
    total, warmup = case
    lr_end = default_lr * end_share
    check_parity(
        warmup_cfg("polynomial", warmup, power=power, end_factor=lr_end / default_lr),
        lambda o: hf.get_polynomial_decay_schedule_with_warmup(
            o, warmup, total, lr_end=lr_end, power=power
        ),
        total,
        group_lrs=lrs,
        default_lr=default_lr,
    )


@FAST
@given(case=horizon(), lrs=group_lrs, timescale=st.one_of(st.none(), st.integers(1, 20000)))
def test_property_inverse_sqrt(case, lrs, timescale):
    total, warmup = case
    config = warmup_cfg("inverse_sqrt", warmup)
    if timescale is not None:
        config["timescale"] = timescale
    check_parity(
        config,
        lambda o: hf.get_inverse_sqrt_schedule(o, warmup, timescale=timescale),
        total,
        group_lrs=lrs,
    )


@st.composite
def wsd_case(draw) -> dict[str, Any]:
    total, warmup = draw(horizon())
    decay = draw(st.integers(1, total - warmup))
    stable = draw(st.one_of(st.none(), st.integers(0, total)))
    return {
        "total": total,
        "warmup": warmup,
        "decay": decay,
        "stable": stable,
        "warmup_type": draw(st.sampled_from(TYPES)),
        "decay_type": draw(st.sampled_from(TYPES)),
        "min_lr_ratio": draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0))),
        "num_cycles": draw(st.one_of(st.just(0.5), st.floats(0.05, 3.0))),
    }


@FAST
@given(case=wsd_case(), lrs=group_lrs)
def test_property_wsd(case, lrs):
    config = {
        "name": "wsd",
        "warmup": case["warmup"],
        "num_decay_steps": case["decay"],
        "warmup_type": case["warmup_type"],
        "decay_type": case["decay_type"],
        "min_lr_ratio": case["min_lr_ratio"],
        "num_cycles": case["num_cycles"],
    }
    if case["stable"] is not None:
        config["num_stable_steps"] = case["stable"]

    def reference(o):
        return hf.get_wsd_schedule(
            o,
            num_warmup_steps=case["warmup"],
            num_decay_steps=case["decay"],
            num_training_steps=case["total"] if case["stable"] is None else None,
            num_stable_steps=case["stable"],
            warmup_type=case["warmup_type"],
            decay_type=case["decay_type"],
            min_lr_ratio=case["min_lr_ratio"],
            num_cycles=case["num_cycles"],
        )

    check_parity(config, reference, case["total"], group_lrs=lrs)


def test_reference_tolerance_is_meaningful():
    """The comparison is not vacuous: a 1e-8 relative change is caught."""
    curve = [[0.1, 1.0]]
    with pytest.raises(AssertionError, match="step 0, group 1"):
        assert_same_curve(curve, [[0.1, 1.0 + 1e-8]], [0.1, 1.0], "probe")
    assert_same_curve(curve, [[0.1, 1.0 + 1e-10]], [0.1, 1.0], "probe")
    assert math.isclose(REL, 1e-9)
