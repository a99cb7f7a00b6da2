"""``scale_schedule_ratio`` (Composer's scale schedule): a schedule with ratio ``r`` is the same
config with every duration given in steps or epochs multiplied by ``r`` by hand (truncated to
a whole step, as Composer's ``int(value * ratio)``), warmup and phases included; durations
given as a share of training ("5%") and "rest of training" defaults are not scaled."""

from __future__ import annotations

import pytest
import torch
from curves import assert_same_curve, record
from optimizers import make_optimizer

from lightning_lrsched import ConfigError, build_scheduler

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")

LRS = (0.1, 0.03, 1.0)
TOTAL = 120
PER_EPOCH = 10


def curve(config, total=TOTAL):
    optimizer = make_optimizer(LRS)
    scheduler = build_scheduler(optimizer, config, total_steps=total, steps_per_epoch=PER_EPOCH)
    return record(scheduler, optimizer, total)


# (config with durations as written, ratio, the same config scaled by hand)
CASES = [
    ({"name": "step", "step_size": 10, "gamma": 0.5}, 0.5, {"step_size": 5}),
    ({"name": "step", "step_size": "1ep", "gamma": 0.5}, 2.5, {"step_size": 25}),
    ({"name": "multistep", "milestones": [10, "3ep"]}, 1.5, {"milestones": [15, 45]}),
    ({"name": "multistep", "milestones": [7, 13]}, 0.75, {"milestones": [5, 9]}),  # 5.25, 9.75
    ({"name": "cosine_restarts", "T_0": "1ep", "T_mult": 2}, 0.7, {"T_0": 7}),
    (
        {"name": "cosine_restarts", "T_0": 9, "cycle_decay": 0.5, "warmup": 6},
        1.5,
        {"T_0": 13, "warmup": 9},  # 13.5 truncated
    ),
    ({"name": "cosine", "warmup": 10}, 0.3, {"warmup": 3}),  # T_max: the rest after 3 steps
    ({"name": "cosine", "warmup": "1ep", "T_max": 40}, 2, {"warmup": 20, "T_max": 80}),
    ({"name": "linear", "total_iters": 29, "warmup": 3}, 0.5, {"total_iters": 14, "warmup": 1}),
    (
        {
            "name": "sequence",
            "warmup": 4,
            "phases": [
                {"name": "constant", "duration": 20},
                {"name": "step", "step_size": 5, "gamma": 0.5, "duration": "2ep"},
                {"name": "cosine"},
            ],
        },
        1.5,
        {
            "warmup": 6,
            "phases": [
                {"name": "constant", "duration": 30},
                {"name": "step", "step_size": 7, "gamma": 0.5, "duration": 30},
                {"name": "cosine"},
            ],
        },
    ),
    (
        {
            "name": "chain",
            "schedules": [
                {"name": "exponential", "gamma": 0.99},
                {"name": "multistep", "milestones": [20, 40], "warmup": 5},
            ],
        },
        0.5,
        {
            "schedules": [
                {"name": "exponential", "gamma": 0.99},
                {"name": "multistep", "milestones": [10, 20], "warmup": 2},
            ]
        },
    ),
    (
        {"name": "cosine", "noise_range": [10, "4ep"], "noise_type": "uniform"},
        0.5,
        {"noise_range": [5, 20]},
    ),
]


@pytest.mark.parametrize(("config", "ratio", "by_hand"), CASES)
def test_ratio_scales_every_step_and_epoch_duration(config, ratio, by_hand):
    scaled = curve({**config, "scale_schedule_ratio": ratio})
    expected = curve({**config, **by_hand})
    assert_same_curve(scaled, expected, rel=0.0, context=f"{config} x {ratio}")
    assert scaled.group_lr != curve(config).group_lr  # the ratio changed something


@pytest.mark.parametrize(
    "config",
    [
        {"name": "cosine", "warmup": "10%"},
        {"name": "multistep", "milestones": ["50%", "75%"], "warmup": "5%"},
        {"name": "wsd", "warmup": "5%"},  # num_decay_steps defaults to 10%
        {
            "name": "sequence",
            "phases": [{"name": "constant", "duration": "30%"}, {"name": "linear"}],
        },
        {"name": "cosine", "noise_range": "50%"},
    ],
)
def test_shares_of_training_are_not_scaled(config):
    """A share of training follows the run's length, which the trainer sets: scaled once."""
    assert curve({**config, "scale_schedule_ratio": 0.37}).group_lr == curve(config).group_lr


def test_composer_truncation_on_the_decimal_ratio():
    """``int(100 * 0.29)`` is 28 in floats; the ratio is read as the decimal written: 29."""
    scaled = curve({"name": "step", "step_size": 100, "scale_schedule_ratio": 0.29}, 60)
    assert scaled.lrs(0)[28] == scaled.lrs(0)[0] and scaled.lrs(0)[29] < scaled.lrs(0)[0]


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (
            {"name": "step", "step_size": 1, "scale_schedule_ratio": 0.5},
            "scheduler.step_size=1: is 0",
        ),
        (
            {"name": "step", "step_size": 4, "scale_schedule_ratio": 0},
            "scheduler.scale_schedule_ratio=0",
        ),
        (
            {"name": "multistep", "milestones": [3, 4], "scale_schedule_ratio": 0.4},
            "strictly increasing (scaled by scale_schedule_ratio=0.4: [1, 1])",
        ),
        (
            {"name": "sequence", "phases": [{"name": "constant", "scale_schedule_ratio": 2}]},
            "scheduler.phases[0].scale_schedule_ratio=2: applies to the whole schedule",
        ),
        (
            {"name": "torch", "_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 3,
             "scale_schedule_ratio": 2},
            "scheduler.scale_schedule_ratio=2: name=torch passes its keys to torch unread",
        ),
        (
            {"name": "cosine", "warmup": 80, "scale_schedule_ratio": 2},
            "scheduler.warmup=80: must be shorter than the 120 steps",
        ),
    ],
)  # fmt: skip
def test_bad_ratios_and_scaled_durations(config, fragment):
    with pytest.raises(ConfigError) as info:
        curve(config)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_warmup_scaled_to_zero_means_no_warmup():
    scaled = curve({"name": "cosine", "warmup": 1, "scale_schedule_ratio": 0.5})
    assert scaled.group_lr == curve({"name": "cosine"}).group_lr
