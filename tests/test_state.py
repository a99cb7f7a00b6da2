"""State: plain data, survives weights_only loading, resumes bit-for-bit, refuses other plans."""

import io
import itertools
import warnings

import pytest
import torch
from optimizers import make_optimizer as shared_optimizer

from lightning_lrsched import build_scheduler

TOTAL = 120
BASE_LRS = (0.1, 0.03, 1.0)

# One config per strategy (and the compositions), each resumed mid-run below.
CONFIGS = {
    "constant": {"name": "constant", "warmup": 10},
    "step": {"name": "step", "step_size": 7, "gamma": 0.7},
    "multistep": {"name": "multistep", "milestones": ["2ep", 50, "60%"], "gamma": 0.5},
    "exponential": {"name": "exponential", "gamma": 0.97},
    "linear": {"name": "linear", "warmup": "5%"},
    "polynomial": {"name": "polynomial", "power": 2.0, "end_factor": 0.01},
    "cosine": {"name": "cosine", "warmup": 12, "eta_min": 1e-4},
    "cosine_restarts": {"name": "cosine_restarts", "T_0": 9, "T_mult": 2},
    "cosine_cycles": {"name": "cosine_restarts", "num_cycles": 3},
    "cyclic": {
        "name": "cyclic",
        "base_lr": 0.01,
        "max_lr": [0.2, 0.1, 2.0],
        "step_size_up": 11,
        "step_size_down": 7,
        "mode": "triangular2",
    },
    "onecycle": {"name": "onecycle", "three_phase": True, "anneal_strategy": "linear"},
    "inverse_sqrt": {"name": "inverse_sqrt", "warmup": 8},
    "wsd": {"name": "wsd", "warmup": 10, "num_decay_steps": "20%", "min_lr_ratio": 0.1},
    "sequence": {
        "name": "sequence",
        "phases": [
            {"name": "linear", "start_factor": 0.1, "end_factor": 1.0, "duration": 20},
            {"name": "onecycle", "duration": 60},
            {"name": "exponential", "gamma": 0.95},
        ],
    },
    "chain": {
        "name": "chain",
        "schedules": [
            {"name": "exponential", "gamma": 0.99},
            {"name": "step", "step_size": 30, "gamma": 0.5},
        ],
    },
    "plateau": {"name": "plateau", "warmup": 10, "patience": 2, "factor": 0.5, "cooldown": 1},
    "torch": {
        "name": "torch",
        "_target_": "torch.optim.lr_scheduler.CyclicLR",
        "base_lr": 0.01,
        "max_lr": 0.5,
        "step_size_up": 13,
        "warmup": 5,
    },
}

STEPS_PER_EPOCH = 15


def make_optimizer(kind="sgd"):
    return shared_optimizer(BASE_LRS, "adamw" if kind == "adam" else "sgd", numel=2)


def build(config, kind="sgd"):
    optimizer = make_optimizer(kind)
    scheduler = build_scheduler(
        optimizer, config, total_steps=TOTAL, steps_per_epoch=STEPS_PER_EPOCH
    )
    return optimizer, scheduler


def metric(step):
    """A validation loss that improves, stalls and wobbles, reported every 5 steps."""
    return 1.0 / (1 + min(step, 40)) + (0.01 if step % 20 == 0 else 0.0)


def advance(optimizer, scheduler, steps, start):
    """Step through ``steps`` optimizer steps; record lr, momentum per group at each step."""
    curve = []
    for step in range(start, start + steps):
        curve.append(
            [
                (g["lr"], g["betas"][0] if "betas" in g else g["momentum"])
                for g in optimizer.param_groups
            ]
        )
        optimizer.step()
        scheduler.step()
        if scheduler.is_plateau and step % 5 == 4:
            scheduler.step(metric(step))
    return curve


def roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_plain(value, path="state"):
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), path
            assert_plain(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_plain(item, f"{path}[{i}]")
    else:
        assert value is None or isinstance(value, bool | int | float | str), (path, value)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("stop", [0, 1, 37, 60, TOTAL - 1])
def test_resume_is_bitwise_identical(name, stop, kind):
    config = CONFIGS[name]
    optimizer, scheduler = build(config, kind)
    reference = advance(optimizer, scheduler, TOTAL + 5, 0)

    optimizer, scheduler = build(config, kind)
    before = advance(optimizer, scheduler, stop, 0)
    state = scheduler.state_dict()
    if name != "torch":  # a torch scheduler's own state is torch's business
        assert_plain(state)
    state = roundtrip(state)

    optimizer, scheduler = build(config, kind)  # a fresh process would build it like this
    scheduler.load_state_dict(state)
    after = advance(optimizer, scheduler, TOTAL + 5 - stop, stop)
    assert before + after == reference  # exact equality: bitwise identical floats


def test_resume_after_optimizer_state_was_loaded_first():
    """Loading the optimizer before building the scheduler must not shift the base rates."""
    optimizer, scheduler = build(CONFIGS["cosine"])
    reference = advance(optimizer, scheduler, TOTAL, 0)
    optimizer, scheduler = build(CONFIGS["cosine"])
    advance(optimizer, scheduler, 50, 0)
    saved_opt, saved_sched = optimizer.state_dict(), scheduler.state_dict()

    optimizer = make_optimizer()
    optimizer.load_state_dict(saved_opt)  # groups now hold step 50's rates
    scheduler = build_scheduler(optimizer, CONFIGS["cosine"], total_steps=TOTAL)
    scheduler.load_state_dict(saved_sched)
    assert advance(optimizer, scheduler, TOTAL - 50, 50) == reference[50:]


def test_far_step_is_closed_form_not_replayed():
    """Jumping to step 10**9 costs one evaluation and gives the closed-form value."""
    _optimizer, scheduler = build({"name": "cosine_restarts", "T_0": 1000, "T_mult": 3})
    state = scheduler.state_dict()
    state["step"] = 10**9
    scheduler.load_state_dict(state)
    lrs = scheduler.get_last_lr()
    # 10**9 lies in the cycle starting at 1000*(3**13-1)/2 = 797161000, of length 1000*3**13
    t_cur, t_i = 10**9 - 797161000, 1000 * 3**13
    import math

    expected = [b * (1 + math.cos(math.pi * t_cur / t_i)) / 2 for b in BASE_LRS]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_other_plan_is_refused_with_what_changed():
    _optimizer, scheduler = build({"name": "cosine", "warmup": 10})
    state = scheduler.state_dict()
    other = make_optimizer()
    longer = build_scheduler(other, {"name": "cosine", "warmup": 10}, total_steps=2 * TOTAL)
    with pytest.raises(ValueError, match=r"inner.T_max: saved 110, now 230"):
        longer.load_state_dict(state)
    step = build_scheduler(make_optimizer(), {"name": "step", "step_size": 5})
    with pytest.raises(ValueError, match=r"strategy: saved warmup\(cosine\), now step"):
        step.load_state_dict(state)


def test_torch_state_is_refused():
    optimizer = make_optimizer()
    torch_sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3)
    ours = build_scheduler(make_optimizer(), {"name": "step", "step_size": 3})
    with pytest.raises(ValueError, match="not saved by lightning_lrsched"):
        ours.load_state_dict(torch_sched.state_dict())


def test_only_lr_and_momentum_are_written():
    optimizer, scheduler = build(CONFIGS["onecycle"])
    keys_before = [set(g) for g in optimizer.param_groups]
    advance(optimizer, scheduler, 10, 0)
    assert [set(g) for g in optimizer.param_groups] == keys_before
    assert all("initial_lr" not in g for g in optimizer.param_groups)


def test_get_last_lr_matches_groups_and_construction_sets_step_zero():
    optimizer, scheduler = build(CONFIGS["cosine"])
    assert scheduler.get_last_lr() == [0.0, 0.0, 0.0]  # warmup from 0
    assert [g["lr"] for g in optimizer.param_groups] == scheduler.get_last_lr()
    optimizer.step()
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == scheduler.get_last_lr()
    assert scheduler.get_last_lr() == pytest.approx([b / 12 for b in BASE_LRS])


# -- torch's LRScheduler contract, observed side by side with a torch scheduler ------------------


def _warnings_of(action):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
    return [(w.category, str(w.message)) for w in caught]


@pytest.mark.parametrize("optimizer_first", [True, False])
def test_step_order_warning_is_torchs(optimizer_first):
    """scheduler.step() before the first optimizer.step() warns exactly as torch's schedulers
    do (a silent one-step shift otherwise); the right order warns about nothing."""

    def first_steps(make):
        optimizer = make_optimizer()
        scheduler = make(optimizer)

        def run():
            if optimizer_first:
                optimizer.step()
            scheduler.step()
            optimizer.step()
            scheduler.step()

        return _warnings_of(run)

    ours = first_steps(lambda o: build_scheduler(o, {"name": "step", "step_size": 3}))
    theirs = first_steps(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3))
    assert ours == theirs
    assert bool(ours) is not optimizer_first


def test_counters_and_types_are_torchs():
    """last_epoch, _step_count, get_last_lr() and the LRScheduler type as torch keeps them."""
    ours_opt, theirs_opt = make_optimizer(), make_optimizer()
    ours = build_scheduler(ours_opt, {"name": "step", "step_size": 3, "gamma": 0.5})
    theirs = torch.optim.lr_scheduler.StepLR(theirs_opt, step_size=3, gamma=0.5)
    assert isinstance(ours, torch.optim.lr_scheduler.LRScheduler)
    assert ours.optimizer is ours_opt
    for _ in range(7):
        assert (ours.last_epoch, ours._step_count) == (theirs.last_epoch, theirs._step_count)
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
        assert ours.base_lrs == pytest.approx(theirs.base_lrs)
        for optimizer, scheduler in ((ours_opt, ours), (theirs_opt, theirs)):
            optimizer.step()
            scheduler.step()


def test_state_dict_round_trip_restores_the_counters():
    optimizer, scheduler = build(CONFIGS["onecycle"])
    advance(optimizer, scheduler, 17, 0)
    restored_opt, restored = build(CONFIGS["onecycle"])
    restored.load_state_dict(roundtrip(scheduler.state_dict()))
    assert (restored.last_epoch, restored._step_count) == (17, 18)
    assert restored.get_last_lr() == scheduler.get_last_lr()
    assert [g["lr"] for g in restored_opt.param_groups] == scheduler.get_last_lr()


def test_changed_plan_continues_from_the_saved_rate_when_asked():
    """Horizon raised mid-run: no jump back to the base rate, and a later resume is exact."""
    config = {"name": "cosine", "warmup": 10}
    optimizer, scheduler = build(config)
    advance(optimizer, scheduler, 60, 0)
    saved = roundtrip(scheduler.state_dict())
    rate_at_60 = scheduler.get_last_lr()

    longer = 2 * TOTAL
    optimizer = make_optimizer()
    scheduler = build_scheduler(optimizer, config, total_steps=longer, on_plan_change="continue")
    scheduler.load_state_dict(saved)
    assert scheduler.get_last_lr() == rate_at_60  # the rate goes on from where it was
    curve = advance(optimizer, scheduler, longer - 60, 60)
    lrs = [step[2][0] for step in curve]  # group 2 (base 1.0)
    assert all(b < a for a, b in itertools.pairwise(lrs))  # cosine keeps decaying
    assert lrs[-1] < 1e-3 * rate_at_60[2]  # ... down to eta_min at the new horizon

    # resuming the continued run later, with the same new config, is exact (no option needed)
    optimizer = make_optimizer()
    scheduler = build_scheduler(optimizer, config, total_steps=longer, on_plan_change="continue")
    scheduler.load_state_dict(saved)
    advance(optimizer, scheduler, 70, 60)
    state = roundtrip(scheduler.state_dict())
    optimizer = make_optimizer()
    scheduler = build_scheduler(optimizer, config, total_steps=longer)
    scheduler.load_state_dict(state)
    assert advance(optimizer, scheduler, longer - 130, 130) == curve[70:]


def torch_cosine_rates(total: int) -> list[list[float]]:
    """torch's CosineAnnealingLR over ``total`` steps, every group's rate at every step."""
    optimizer = make_optimizer()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    rates = []
    for _ in range(total):
        rates.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return rates


def finished_cosine_state():
    """A cosine run of TOTAL steps saved at its end: its rate is 0 there."""
    optimizer, scheduler = build({"name": "cosine"})
    advance(optimizer, scheduler, TOTAL, 0)
    state = roundtrip(scheduler.state_dict())
    assert state["lrs"] == pytest.approx([0.0] * 3, abs=1e-15)
    return state


def extended(mode: str, state, steps: int, start: int = TOTAL):
    """The cosine extended to 2 * TOTAL steps, resumed from ``state`` with ``mode``."""
    optimizer = make_optimizer()
    scheduler = build_scheduler(optimizer, {"name": "cosine"}, total_steps=2 * TOTAL,
                                on_plan_change=mode)  # fmt: skip
    scheduler.load_state_dict(state)
    return (
        optimizer,
        scheduler,
        [[lr for lr, _ in s] for s in advance(optimizer, scheduler, steps, start)],
    )


def test_extending_a_finished_cosine_jumps_onto_the_new_plan():
    """``jump``: the longer plan's rates from the saved step on, as torch gives them."""
    _, _, rates = extended("jump", finished_cosine_state(), TOTAL)
    want = torch_cosine_rates(2 * TOTAL)[TOTAL:]
    assert rates == [pytest.approx(w, rel=1e-12, abs=1e-15) for w in want]
    assert rates[0] == pytest.approx([b / 2 for b in BASE_LRS])  # half-way down the longer cosine


def test_extending_a_finished_cosine_rewarms_to_the_new_plan():
    """``rewarm``: a new linear warmup from the saved rate 0 onto the longer plan's curve (5% of
    the 120 steps left: 6), then that curve; resuming the rewarmed run later is exact."""
    state = finished_cosine_state()
    _, _, rates = extended("rewarm", state, TOTAL)
    plan = torch_cosine_rates(2 * TOTAL)[TOTAL:]
    ramp = 6
    want = [[lr * min(1.0, t / ramp) for lr in plan[t]] for t in range(TOTAL)]
    assert rates == [pytest.approx(w, rel=1e-12, abs=1e-15) for w in want]
    assert rates[0] == [0.0, 0.0, 0.0] and min(rates[ramp]) > 0

    # interrupted in the ramp, resumed with the same config and no option: the same curve
    _, scheduler, before = extended("rewarm", state, 3)
    later = roundtrip(scheduler.state_dict())
    optimizer = make_optimizer()
    resumed = build_scheduler(optimizer, {"name": "cosine"}, total_steps=2 * TOTAL)
    resumed.load_state_dict(later)
    after = [[lr for lr, _ in s] for s in advance(optimizer, resumed, TOTAL - 3, TOTAL + 3)]
    assert before + after == rates


def test_continuing_a_finished_cosine_warns_that_the_rate_stays_0():
    with pytest.warns(
        UserWarning, match=r"saved rate 0 .* rest of training runs at rate 0.*rewarm"
    ):
        _, _, rates = extended("continue", finished_cosine_state(), 10)
    assert {lr for step in rates for lr in step} == {0.0}


def test_changed_strategy_continues_at_the_saved_rate():
    optimizer, scheduler = build({"name": "cosine"})
    advance(optimizer, scheduler, 40, 0)
    saved = scheduler.state_dict()
    optimizer = make_optimizer()
    scheduler = build_scheduler(
        optimizer, {"name": "constant"}, total_steps=TOTAL, on_plan_change="continue"
    )
    scheduler.load_state_dict(saved)
    curve = advance(optimizer, scheduler, 30, 40)
    assert {tuple(lr for lr, _ in step) for step in curve} == {tuple(saved["lrs"])}


def test_changed_plan_is_refused_by_default_with_a_hint():
    optimizer, scheduler = build({"name": "cosine"})
    advance(optimizer, scheduler, 40, 0)
    other = build_scheduler(make_optimizer(), {"name": "cosine"}, total_steps=2 * TOTAL)
    with pytest.raises(ValueError, match=r"T_max: saved 120, now 240.*on_plan_change='rewarm'"):
        other.load_state_dict(scheduler.state_dict())


@pytest.mark.parametrize("name", ["onecycle", "cyclic"])
def test_cycling_momentum_over_sgd_without_momentum_says_so(name):
    """torch's schedulers turn momentum on here too (kept, for parity); an explicit 0 may have
    been meant, so the build says so and names the switch that keeps it."""
    config = {"name": name, "max_lr": 0.1, **({"base_lr": 0.01} if name == "cyclic" else {})}

    def momenta(**extra):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.0)
        scheduler = build_scheduler(optimizer, {**config, **extra}, total_steps=TOTAL)
        return [m for _, m in (step[0] for step in advance(optimizer, scheduler, 20, 0))]

    with pytest.warns(UserWarning, match=rf"'{name}' cycles the momentum .*cycle_momentum=false"):
        assert min(momenta()) >= 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert momenta(cycle_momentum=False) == [0.0] * 20
