"""Durations resolve once to optimizer steps: ints, "<n>ep" and "<p>%", with exact rounding."""

import pytest

from lightning_lrsched.durations import resolve_duration
from lightning_lrsched.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "total", "per_epoch", "steps"),
    [
        (500, None, None, 500),
        ("500", None, None, 500),
        (12.0, None, None, 12),
        ("2ep", None, 30, 60),
        ("0.5ep", None, 7, 4),  # 3.5 rounds up
        ("5%", 1000, None, 50),
        ("7%", 100, None, 7),  # 0.07 * 100 is 7.000000000000001 in floats; must not become 8
        ("2.5%", 1000, None, 25),
        ("0.1%", 15, None, 1),
        ("100%", 37, None, 37),
        (" 10 % ", 200, None, 20),
    ],
)
def test_resolves_to_steps(value, total, per_epoch, steps):
    assert resolve_duration(value, "k", total_steps=total, steps_per_epoch=per_epoch) == steps


def test_zero_only_where_allowed():
    assert resolve_duration(0, "warmup", allow_zero=True) == 0
    with pytest.raises(ConfigError, match=r"^step_size=0: must be > 0 steps$"):
        resolve_duration(0, "step_size")


@pytest.mark.parametrize(
    ("value", "kwargs", "fragment"),
    [
        ("3ep", {}, "need steps_per_epoch"),
        ("5%", {}, "needs total_steps"),
        ("150%", {"total_steps": 10}, "between 0% and 100%"),
        (-3, {}, "must be > 0"),
        ("1.5", {}, "whole number of steps"),
        ("ten", {}, "whole number of steps"),
        (True, {}, "whole number of steps"),
        (None, {}, "whole number of steps"),
        (2.5, {}, "whole number of steps"),
    ],
)
def test_bad_durations_name_key_and_value(value, kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        resolve_duration(value, "scheduler.warmup", **kwargs)
    message = str(info.value)
    assert message.startswith(f"scheduler.warmup={value!r}: ")
    assert fragment in message
    assert "\n" not in message


def rates(config, total):
    import torch

    from lightning_lrsched import build_scheduler

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = build_scheduler(optimizer, config, total_steps=total)
    out = []
    for _ in range(total):
        out.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize(("total", "warmup_steps"), [(1, 0), (2, 1), (3, 1), (40, 2)])
def test_percentage_warmup_shrinks_to_fit_a_tiny_run(total, warmup_steps):
    """5% of a 1-step smoke test rounds up to the whole run: it shrinks to what fits (none),
    where a warmup given in steps is refused."""
    got = rates({"name": "constant", "warmup": "5%"}, total)
    want = [0.1 * step / warmup_steps for step in range(warmup_steps)]
    assert got == pytest.approx(want + [0.1] * (total - warmup_steps))


def test_warmup_in_steps_as_long_as_the_run_is_refused():
    with pytest.raises(ConfigError, match=r"warmup=1: must be shorter than the 1 step it"):
        rates({"name": "constant", "warmup": 1}, 1)


def test_a_whole_run_of_warmup_is_refused_even_as_a_percentage():
    with pytest.raises(ConfigError, match=r"warmup='100%': must be shorter than the 4 steps"):
        rates({"name": "constant", "warmup": "100%"}, 4)
