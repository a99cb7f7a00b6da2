"""Bad input: one-line ValueError naming key, value and what is allowed, before anything runs."""

import math

import pytest
import torch
from optimizers import make_optimizer

from lightning_lrsched import ConfigError, build_scheduler


def sgd(lrs=(0.1,)):
    return make_optimizer(lrs)


# (config, build kwargs, key the message must name, fragment of what is allowed)
INVALID = [
    ({"name": "cosin"}, {}, "scheduler.name='cosin'", "known: constant, step"),
    ({}, {}, "scheduler.name=None", "unknown strategy"),
    ({"name": "step"}, {}, "scheduler.step_size=None", "is required"),
    ({"name": "step", "step_size": 5, "gamma": -0.1}, {}, "scheduler.gamma=-0.1", "> 0"),
    ({"name": "step", "step_size": 5, "gamma": math.nan}, {}, "scheduler.gamma=nan", "finite"),
    ({"name": "exponential", "gamma": math.inf}, {}, "scheduler.gamma=inf", "finite"),
    ({"name": "exponential", "gamma": "0.9"}, {}, "scheduler.gamma='0.9'", "a number"),
    ({"name": "exponential", "gamma": True}, {}, "scheduler.gamma=True", "a number"),
    (
        {"name": "step", "step_size": 5, "gama": 0.5},
        {},
        "scheduler.gama=0.5",
        "did you mean 'gamma'",
    ),
    (
        {"name": "cosine", "warmup": 100},
        {"total_steps": 100},
        "scheduler.warmup=100",
        "shorter than",
    ),
    (
        {"name": "cosine", "warmup": "3ep"},
        {"total_steps": 100},
        "scheduler.warmup='3ep'",
        "steps_per_epoch",
    ),
    ({"name": "step", "step_size": "5%"}, {}, "scheduler.step_size='5%'", "needs total_steps"),
    ({"name": "cosine", "warmup": -5}, {"total_steps": 100}, "scheduler.warmup=-5", ">= 0"),
    (
        {"name": "cosine", "warmup": "150%"},
        {"total_steps": 100},
        "scheduler.warmup='150%'",
        "0% and 100%",
    ),
    ({"name": "cosine"}, {}, "scheduler.T_max=None", "rest of training"),
    ({"name": "cosine", "eta_min": -0.1}, {"total_steps": 10}, "scheduler.eta_min=-0.1", ">= 0"),
    ({"name": "multistep", "milestones": []}, {}, "scheduler.milestones=[]", "non-empty list"),
    (
        {"name": "multistep", "milestones": [30, 10]},
        {},
        "scheduler.milestones=[30, 10]",
        "increasing",
    ),
    (
        {"name": "multistep", "milestones": [10, 10]},
        {},
        "scheduler.milestones=[10, 10]",
        "increasing",
    ),
    ({"name": "multistep", "milestones": "30,60"}, {}, "scheduler.milestones='30,60'", "list"),
    ({"name": "cosine_restarts", "T_0": 10, "T_mult": 0}, {}, "scheduler.T_mult=0", ">= 1"),
    ({"name": "cosine_restarts", "T_0": 10, "T_mult": 1.5}, {}, "scheduler.T_mult=1.5", "whole"),
    (
        {"name": "cosine_restarts", "T_0": 10, "num_cycles": 2},
        {},
        "scheduler.num_cycles=2",
        "either",
    ),
    # timm's cycle options and rate noise (tests/test_parity_timm.py)
    (
        {"name": "cosine_restarts", "num_cycles": 2, "cycle_limit": 1},
        {"total_steps": 50},
        "scheduler.cycle_limit=1",
        "needs T_0",
    ),
    ({"name": "cosine_restarts", "T_0": 5, "cycle_decay": 0}, {}, "scheduler.cycle_decay=0", "> 0"),
    (
        {"name": "cosine_restarts", "T_0": 5, "cycle_limit": -1},
        {},
        "scheduler.cycle_limit=-1",
        ">= 0",
    ),
    ({"name": "cosine", "T_max": 5, "k_decay": -1.0}, {}, "scheduler.k_decay=-1.0", "> 0"),
    (
        {"name": "step", "step_size": 5, "noise_range": [8, 8]},
        {},
        "scheduler.noise_range=[8, 8]",
        "must end after it starts",
    ),
    (
        {"name": "step", "step_size": 5, "noise_range": [1, 2, 3]},
        {},
        "scheduler.noise_range=[1, 2, 3]",
        "[start, end)",
    ),
    (
        {"name": "step", "step_size": 5, "noise_range": "2ep"},
        {},
        "scheduler.noise_range='2ep'",
        "epochs",
    ),
    (
        {"name": "step", "step_size": 5, "noise_range": 0, "noise_pct": 1.5},
        {},
        "scheduler.noise_pct=1.5",
        "<= 1",
    ),
    (
        {"name": "step", "step_size": 5, "noise_range": 0, "noise_type": "gauss"},
        {},
        "scheduler.noise_type='gauss'",
        "normal, uniform",
    ),
    (
        {"name": "step", "step_size": 5, "noise_range": 0, "noise_std": 100.0, "noise_pct": 0.1},
        {},
        "scheduler.noise_std=100.0",
        "redraws",
    ),
    (
        {"name": "plateau", "monitor": "val_loss", "noise_range": 3},
        {},
        "scheduler.noise_range=3",
        "closed-form schedule; name=plateau",
    ),
    (
        {"name": "sequence", "phases": [{"name": "constant", "noise_range": 3}]},
        {"total_steps": 10},
        "scheduler.phases[0].noise_range=3",
        "whole schedule",
    ),
    ({"name": "cyclic", "base_lr": 0.1, "max_lr": 0.01}, {}, "scheduler.max_lr=0.01", ">= base_lr"),
    (
        {"name": "cyclic", "max_lr": 1.0, "mode": "triangle"},
        {},
        "scheduler.mode='triangle'",
        "triangular2",
    ),
    (
        {"name": "cyclic", "max_lr": [1.0, 2.0]},
        {},
        "scheduler.max_lr=[1.0, 2.0]",
        "one value per param group",
    ),
    (
        {"name": "cyclic", "max_lr": 1.0, "base_momentum": 0.95},
        {},
        "scheduler.base_momentum=0.95",
        "<= max_momentum",
    ),
    (
        {"name": "onecycle", "pct_start": 1.2},
        {"total_steps": 100},
        "scheduler.pct_start=1.2",
        "< 1",
    ),
    (
        {"name": "onecycle", "pct_start": 0.005},
        {"total_steps": 100},
        "scheduler.pct_start=0.005",
        "> 1",
    ),
    (
        {"name": "onecycle", "pct_start": 0.6, "three_phase": True},
        {"total_steps": 100},
        "scheduler.pct_start=0.6",
        "0.5",
    ),
    (
        {"name": "onecycle", "anneal_strategy": "cosine"},
        {"total_steps": 100},
        "scheduler.anneal_strategy='cosine'",
        "cos, linear",
    ),
    (
        {"name": "onecycle", "three_phase": "yes"},
        {"total_steps": 100},
        "scheduler.three_phase='yes'",
        "true or false",
    ),
    ({"name": "plateau", "mode": "minimum"}, {}, "scheduler.mode='minimum'", "min, max"),
    ({"name": "plateau", "factor": 1.5}, {}, "scheduler.factor=1.5", "< 1"),
    ({"name": "plateau", "patience": -1}, {}, "scheduler.patience=-1", ">= 0"),
    ({"name": "plateau", "monitor": ""}, {}, "scheduler.monitor=''", "non-empty"),
    (
        {"name": "plateau", "restart_period": 10},
        {},
        "scheduler.restart_period=10",
        "needs warm_restart: true",
    ),
    (
        {"name": "plateau", "warm_restart": True},
        {},
        "scheduler.restart_period=None",
        "rest of training",
    ),
    ({"name": "plateau", "warm_restart": "yes"}, {}, "scheduler.warm_restart='yes'", "true or"),
    (
        {"name": "plateau", "warm_restart": True, "restart_period": 0},
        {"total_steps": 10},
        "scheduler.restart_period=0",
        "> 0 steps",
    ),
    ({"name": "linear", "end_factor": -1}, {"total_steps": 10}, "scheduler.end_factor=-1", ">= 0"),
    ({"name": "polynomial", "power": -1}, {"total_steps": 10}, "scheduler.power=-1", ">= 0"),
    (
        {"name": "wsd", "decay_type": "exp"},
        {"total_steps": 100},
        "scheduler.decay_type='exp'",
        "1-sqrt",
    ),
    ({"name": "wsd", "min_lr_ratio": 2}, {"total_steps": 100}, "scheduler.min_lr_ratio=2", "<= 1"),
    (
        {"name": "wsd", "num_decay_steps": 200},
        {"total_steps": 100},
        "scheduler.num_decay_steps=200",
        "must fit",
    ),
    (
        {"name": "cosine", "warmup": 5, "warmup_type": "exp"},
        {"total_steps": 10},
        "scheduler.warmup_type='exp'",
        "linear, cosine, 1-sqrt",
    ),
    (
        {"name": "cosine", "warmup_start_factor": 1.5},
        {"total_steps": 10},
        "scheduler.warmup_start_factor=1.5",
        "<= 1",
    ),
    (
        {"name": "sequence", "phases": []},
        {"total_steps": 10},
        "scheduler.phases=[]",
        "non-empty list",
    ),
    (
        {"name": "sequence", "phases": [{"name": "constant"}, {"name": "cosine"}]},
        {"total_steps": 10},
        "scheduler.phases[0].duration=None",
        "every phase but the last",
    ),
    (
        {
            "name": "sequence",
            "phases": [{"name": "constant", "duration": 5}, {"name": "step", "step_size": 0}],
        },
        {"total_steps": 10},
        "scheduler.phases[1].step_size=0",
        "> 0",
    ),
    (
        {"name": "sequence", "phases": [{"name": "constant", "duration": 5}, {"name": "plateau"}]},
        {"total_steps": 10},
        "scheduler.phases[1].name='plateau'",
        "top level",
    ),
    (
        {
            "name": "sequence",
            "phases": [{"name": "constant", "duration": 8}, {"name": "constant", "duration": 5}],
        },
        {"total_steps": 10},
        "scheduler.phases[1].duration=5",
        "ends at step 13, after the 10 steps",
    ),
    (
        {"name": "chain", "schedules": "cosine"},
        {"total_steps": 10},
        "scheduler.schedules='cosine'",
        "list of schedule configs",
    ),
    (
        {"name": "chain", "schedules": [{"name": "expo", "gamma": 0.9}]},
        {},
        "scheduler.schedules[0].name='expo'",
        "unknown strategy",
    ),
    (
        {"name": "torch", "_target_": "torch.optim.lr_scheduler.Nope"},
        {},
        "scheduler._target_='torch.optim.lr_scheduler.Nope'",
        "import path",
    ),
    (
        {"name": "torch", "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau"},
        {},
        "scheduler._target_=",
        "name=plateau",
    ),
    (
        {"name": "torch", "_target_": "torch.optim.lr_scheduler.StepLR"},
        {},
        "scheduler._target_=",
        "torch refused",
    ),
    ({"name": "cosine"}, {"total_steps": 0}, "total_steps=0", ">= 1"),
    ({"name": "cosine"}, {"total_steps": 10, "steps_per_epoch": -2}, "steps_per_epoch=-2", ">= 1"),
]


@pytest.mark.parametrize(
    ("config", "kwargs", "key", "allowed"), INVALID, ids=[case[2] for case in INVALID]
)
def test_invalid_config_is_one_clear_line(config, kwargs, key, allowed):
    optimizer = sgd()
    with pytest.raises(ValueError) as info:
        build_scheduler(optimizer, config, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert "\n" not in message
    assert message.startswith(key), message
    assert allowed in message, message
    # nothing half-written: the optimizer still holds its configured rate, no scheduler keys
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert "initial_lr" not in optimizer.param_groups[0]


def test_table_is_large_enough():
    assert len(INVALID) >= 25


def test_momentum_cycling_needs_an_optimizer_with_momentum():
    adagrad = torch.optim.Adagrad([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ConfigError, match=r"^scheduler.cycle_momentum=True: Adagrad has neither"):
        build_scheduler(adagrad, {"name": "onecycle"}, total_steps=100)
    # ... and works once told not to cycle it
    build_scheduler(adagrad, {"name": "onecycle", "cycle_momentum": False}, total_steps=100)


def test_negative_optimizer_rate_is_named():
    optimizer = sgd()
    optimizer.param_groups[0]["lr"] = math.nan
    with pytest.raises(ConfigError, match=r"^optimizer.param_groups\[0\].lr=nan"):
        build_scheduler(optimizer, {"name": "constant"})
