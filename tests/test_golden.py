"""Golden values: one table of (config, horizon, base rate, expected rates at chosen steps).

Every expected number below was derived by hand from the strategy's formula (the derivation is
the comment above each row), evaluated with 50-digit arithmetic (mpmath) and written out as a
literal; the rows that have a torch / Hugging Face counterpart were also checked against it
(torch ``StepLR``, ``MultiStepLR``, ``ExponentialLR``, ``LinearLR``, ``PolynomialLR``,
``CosineAnnealingLR``, ``CosineAnnealingWarmRestarts``, ``CyclicLR``, ``OneCycleLR``,
``ChainedScheduler``; HF cosine/hard-restarts/inverse-sqrt/WSD). None came from this package.

Notation: ``t`` = optimizer step (torch convention: the rate after ``t`` calls of ``step()``),
``C(t, T) = (1 + cos(pi * t / T)) / 2``, ``b`` = the param group's base rate. Rows that list a
third number give the expected momentum (SGD ``momentum``, or Adam's ``betas[0]``); the
optimizer starts with ``momentum=0.9`` / ``betas=(0.9, 0.999)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

from lightning_lrsched import build_scheduler

torch.set_num_threads(1)

REL = 1e-9


@dataclass(frozen=True)
class Row:
    id: str
    config: dict[str, Any]
    total_steps: int | None
    steps_per_epoch: int | None
    base_lr: float
    expected: list[tuple]  # (step, lr) or (step, lr, momentum)
    optimizer: str = "sgd"
    metrics: tuple[tuple[int, float], ...] = ()  # (step, value) reported after that step's rate


TABLE = [
    # -- constant ------------------------------------------------------------------------------
    # lr = b
    Row("constant", {"name": "constant"}, 10, None, 0.1, [(0, 0.1), (5, 0.1), (9, 0.1)]),
    # warmup 4 (linear from 0): lr = b * t / 4 for t < 4, then b
    Row(
        "constant_warmup",
        {"name": "constant", "warmup": 4},
        10,
        None,
        0.1,
        [(0, 0.0), (1, 0.025), (2, 0.05), (3, 0.075), (4, 0.1), (9, 0.1)],
    ),
    # -- step ----------------------------------------------------------------------------------
    # lr = 0.2 * 0.5 ** (t // 3)
    Row(
        "step",
        {"name": "step", "step_size": 3, "gamma": 0.5},
        12,
        None,
        0.2,
        [(0, 0.2), (2, 0.2), (3, 0.1), (5, 0.1), (6, 0.05), (11, 0.025)],
    ),
    # step_size "2ep" x 5 steps/epoch = 10: lr = 0.1 ** (t // 10); gamma defaults to 0.1
    Row(
        "step_ep",
        {"name": "step", "step_size": "2ep"},
        30,
        5,
        1.0,
        [(0, 1.0), (9, 1.0), (10, 0.1), (19, 0.1), (20, 0.01), (29, 0.01)],
    ),
    # -- multistep -----------------------------------------------------------------------------
    # lr = 0.5 * 0.1 ** #{m in (3, 7): m <= t}
    Row(
        "multistep",
        {"name": "multistep", "milestones": [3, 7], "gamma": 0.1},
        10,
        None,
        0.5,
        [(0, 0.5), (2, 0.5), (3, 0.05), (6, 0.05), (7, 0.005), (9, 0.005)],
    ),
    # milestones 1ep, 3ep with 4 steps/epoch = (4, 12): lr = 0.8 * 0.5 ** #{m <= t}
    Row(
        "multistep_ep",
        {"name": "multistep", "milestones": ["1ep", "3ep"], "gamma": 0.5},
        20,
        4,
        0.8,
        [(0, 0.8), (3, 0.8), (4, 0.4), (11, 0.4), (12, 0.2), (19, 0.2)],
    ),
    # milestones 25%, 50% of 40 = (10, 20): lr = 0.2 ** #{m <= t}
    Row(
        "multistep_pct",
        {"name": "multistep", "milestones": ["25%", "50%"], "gamma": 0.2},
        40,
        None,
        1.0,
        [(0, 1.0), (9, 1.0), (10, 0.2), (19, 0.2), (20, 0.04), (39, 0.04)],
    ),
    # -- exponential ---------------------------------------------------------------------------
    # lr = 0.1 * 0.9 ** t
    Row(
        "exponential",
        {"name": "exponential", "gamma": 0.9},
        60,
        None,
        0.1,
        [(0, 0.1), (1, 0.09), (10, 0.03486784401), (50, 0.0005153775207320114)],
    ),
    # -- linear --------------------------------------------------------------------------------
    # defaults 1 -> 0 over the rest (10): lr = 0.2 * (1 - min(t, 10) / 10); 0 past the horizon
    Row(
        "linear",
        {"name": "linear"},
        10,
        None,
        0.2,
        [(0, 0.2), (3, 0.14), (9, 0.02), (10, 0.0), (12, 0.0)],
    ),
    # lr = 0.4 * (0.25 + 0.75 * min(t, 4) / 4)
    Row(
        "linear_factors",
        {"name": "linear", "start_factor": 0.25, "end_factor": 1.0, "total_iters": 4},
        10,
        None,
        0.4,
        [(0, 0.1), (1, 0.175), (2, 0.25), (4, 0.4), (7, 0.4)],
    ),
    # -- polynomial ----------------------------------------------------------------------------
    # total_iters = rest = 20: lr = 0.3 * (1 - min(t, 20) / 20) ** 2
    Row(
        "polynomial",
        {"name": "polynomial", "power": 2.0},
        20,
        None,
        0.3,
        [(0, 0.3), (5, 0.16875), (10, 0.075), (19, 0.00075), (20, 0.0)],
    ),
    # lr = 0.9 * sqrt(1 - min(t, 8) / 8) + 0.1  (end_factor 0.1, b = 1)
    Row(
        "polynomial_end",
        {"name": "polynomial", "total_iters": 8, "power": 0.5, "end_factor": 0.1},
        12,
        None,
        1.0,
        [
            (0, 1.0),
            (2, 0.8794228634059947),
            (4, 0.7363961030678928),
            (7, 0.4181980515339464),
            (8, 0.1),
            (11, 0.1),
        ],
    ),
    # -- cosine --------------------------------------------------------------------------------
    # T_max = rest = 100: lr = 0.1 * C(t, 100)
    Row(
        "cosine",
        {"name": "cosine"},
        100,
        None,
        0.1,
        [
            (0, 0.1),
            (25, 0.08535533905932738),
            (50, 0.05),
            (75, 0.014644660940672623),
            (99, 2.467198171342215e-05),
        ],
    ),
    # lr = 0.01 + 0.09 * C(t, 10); periodic past T_max (torch's closed form)
    Row(
        "cosine_eta_min",
        {"name": "cosine", "T_max": 10, "eta_min": 0.01},
        30,
        None,
        0.1,
        [(0, 0.1), (3, 0.08145033635316129), (10, 0.01), (15, 0.055), (20, 0.1)],
    ),
    # warmup 10% of 50 = 5: lr = 0.2 * t / 5 for t < 5, then 0.2 * C(t - 5, 45)
    Row(
        "cosine_warmup_pct",
        {"name": "cosine", "warmup": "10%"},
        50,
        None,
        0.2,
        [(0, 0.0), (2, 0.08), (5, 0.2), (20, 0.15), (49, 0.00024359497401757523)],
    ),
    # -- cosine_restarts (T_0 / T_mult) --------------------------------------------------------
    # cycles of 10: lr = 0.001 + 0.099 * C(t mod 10, 10)
    Row(
        "restarts",
        {"name": "cosine_restarts", "T_0": 10, "eta_min": 0.001},
        40,
        None,
        0.1,
        [
            (0, 0.1),
            (5, 0.0505),
            (9, 0.0034227024433898983),
            (10, 0.1),
            (15, 0.0505),
            (25, 0.0505),
            (39, 0.0034227024433898983),
        ],
    ),
    # cycles 4, 8, 16, 32 starting at 0, 4, 12, 28: lr = C(t - start, T_i)
    Row(
        "restarts_t_mult",
        {"name": "cosine_restarts", "T_0": 4, "T_mult": 2},
        60,
        None,
        1.0,
        [
            (0, 1.0),
            (3, 0.14644660940672624),
            (4, 1.0),
            (7, 0.6913417161825449),
            (11, 0.038060233744356624),
            (12, 1.0),
            (27, 0.009607359798384776),
            (28, 1.0),
            (40, 0.6913417161825449),
        ],
    ),
    # T_0 = 1ep = 6, T_mult 3: cycles 6, 18, 54 starting at 0, 6, 24: lr = 0.5 * C(.)
    Row(
        "restarts_ep_t_mult",
        {"name": "cosine_restarts", "T_0": "1ep", "T_mult": 3},
        60,
        6,
        0.5,
        [
            (0, 0.5),
            (3, 0.25),
            (6, 0.5),
            (15, 0.25),
            (23, 0.003798061746947985),
            (24, 0.5),
            (51, 0.25),
        ],
    ),
    # -- cosine_restarts (num_cycles, HF hard restarts) ----------------------------------------
    # 2 cycles over 20: lr = 0.1 * (1 + cos(pi * frac(2 t / 20))) / 2; 0 from t = 20 on
    Row(
        "restarts_num_cycles",
        {"name": "cosine_restarts", "num_cycles": 2},
        20,
        None,
        0.1,
        [
            (0, 0.1),
            (5, 0.05),
            (9, 0.0024471741852423214),
            (10, 0.1),
            (15, 0.05),
            (19, 0.0024471741852423214),
            (20, 0.0),
        ],
    ),
    # warmup 2, then 3 cycles over the rest (30): cycles of 10 starting at t = 2, 12, 22
    Row(
        "restarts_num_cycles_warmup",
        {"name": "cosine_restarts", "num_cycles": 3, "warmup": 2},
        32,
        None,
        1.0,
        [
            (0, 0.0),
            (1, 0.5),
            (2, 1.0),
            (7, 0.5),
            (12, 1.0),
            (27, 0.5),
            (31, 0.024471741852423214),
        ],
    ),
    # timm's options: peak 0.5 ** i in cycle i, K(t, T) = (1 + cos(pi * t**2 / T**2)) / 2
    # (k_decay 2); cycles of 4; from cycle 2 on (cycle_limit) eta_min = 0
    Row(
        "restarts_decay_limit_k",
        {"name": "cosine_restarts", "T_0": 4, "cycle_decay": 0.5, "cycle_limit": 2, "k_decay": 2},
        30,
        None,
        1.0,
        [
            (0, 1.0),
            (1, 0.9903926402016152),
            (3, 0.40245483899193585),
            (4, 0.5),
            (6, 0.42677669529663687),
            (7, 0.20122741949596792),
            (8, 0.0),
            (20, 0.0),
        ],
    ),
    # 2 cycles over 20 (num_cycles), i = floor(t / 10), x = frac(t / 10):
    # lr = 0.01 + (0.1 * 0.5 ** i - 0.01) * (1 + cos(pi * x ** 2)) / 2; 0.01 from t = 20 on
    Row(
        "restarts_num_cycles_decay_k",
        {
            "name": "cosine_restarts",
            "num_cycles": 2,
            "cycle_decay": 0.5,
            "k_decay": 2,
            "eta_min": 0.01,
        },
        20,
        None,
        0.1,
        [
            (0, 0.1),
            (5, 0.08681980515339464),
            (9, 0.01778137415764472),
            (10, 0.05),
            (15, 0.04414213562373095),
            (19, 0.013458388514508764),
            (20, 0.01),
        ],
    ),
    # -- cyclic --------------------------------------------------------------------------------
    # S = 4 + 6 = 10, r = 0.4, x = frac(t / 10), h = x / r up, (x - 1) / (r - 1) down;
    # lr = 0.01 + 0.09 h, momentum = 0.9 - 0.1 h (defaults base 0.8, max 0.9)
    Row(
        "cyclic_triangular",
        {"name": "cyclic", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4, "step_size_down": 6},
        30,
        None,
        0.05,
        [
            (0, 0.01, 0.9),
            (2, 0.055, 0.85),
            (4, 0.1, 0.8),
            (7, 0.055, 0.85),
            (10, 0.01, 0.9),
            (13, 0.0775, 0.825),
        ],
    ),
    # S = 6, cycle c = floor(1 + t / 6): lr = 0.1 + 0.9 h / 2 ** (c - 1); momentum left alone
    Row(
        "cyclic_triangular2",
        {
            "name": "cyclic",
            "base_lr": 0.1,
            "max_lr": 1.0,
            "step_size_up": 3,
            "mode": "triangular2",
            "cycle_momentum": False,
        },
        20,
        None,
        0.05,
        [
            (0, 0.1, 0.9),
            (3, 1.0, 0.9),
            (6, 0.1, 0.9),
            (9, 0.55, 0.9),
            (10, 0.4, 0.9),
            (12, 0.1, 0.9),
            (15, 0.325, 0.9),
        ],
    ),
    # S = 10, r = 0.5: lr = 0.001 + 0.009 h 0.99 ** t, momentum = 0.95 - 0.1 h 0.99 ** t
    Row(
        "cyclic_exp_range",
        {
            "name": "cyclic",
            "base_lr": 0.001,
            "max_lr": 0.01,
            "step_size_up": 5,
            "step_size_down": 5,
            "mode": "exp_range",
            "gamma": 0.99,
            "base_momentum": 0.85,
            "max_momentum": 0.95,
        },
        40,
        None,
        0.05,
        [
            (0, 0.001, 0.95),
            (5, 0.0095589104491, 0.85490099501),
            (12, 0.004190985538178065, 0.9145446051313548),
            (27, 0.00511665065747436, 0.9042594371391738),
            (39, 0.00221631228830851, 0.9364854190187943),
        ],
    ),
    # -- onecycle ------------------------------------------------------------------------------
    # max = b = 0.5, total 100, pct 0.3: phases end at 29, 99. cos anneal
    # A(s, e, p) = e + (s - e) (1 + cos(pi p)) / 2; lr: A(0.02, 0.5, t/29), then
    # A(0.5, 2e-6, (t-29)/70); momentum: A(0.95, 0.85, .), then A(0.85, 0.95, .)
    Row(
        "onecycle_cos",
        {"name": "onecycle"},
        100,
        None,
        0.5,
        [
            (0, 0.02, 0.95),
            (10, 0.14758197423205036, 0.9234204220349895),
            (29, 0.5, 0.85),
            (60, 0.2946400451427644, 0.8910721552600682),
            (99, 2e-06, 0.95),
        ],
    ),
    # three phases, linear, total 20, pct .25: ends 4, 8, 19; lr 0.08 -> 0.8 -> 0.08 -> 0.0008;
    # momentum 0.95 -> 0.85 -> 0.95, then held at 0.95
    Row(
        "onecycle_three_phase",
        {
            "name": "onecycle",
            "max_lr": 0.8,
            "pct_start": 0.25,
            "anneal_strategy": "linear",
            "div_factor": 10,
            "final_div_factor": 100,
            "three_phase": True,
        },
        20,
        None,
        0.1,
        [
            (0, 0.08, 0.95),
            (2, 0.44, 0.9),
            (4, 0.8, 0.85),
            (6, 0.44, 0.9),
            (8, 0.08, 0.95),
            (13, 0.044, 0.95),
            (19, 0.0008, 0.95),
        ],
    ),
    # Adam (beta1 cycled), total 10, pct .4, linear: ends 3, 9; lr 0.0004 -> 0.01 -> 4e-8
    Row(
        "onecycle_adam",
        {"name": "onecycle", "pct_start": 0.4, "anneal_strategy": "linear"},
        10,
        None,
        0.01,
        [
            (0, 0.0004, 0.95),
            (1, 0.0036, 0.9166666666666666),
            (3, 0.01, 0.85),
            (6, 0.00500002, 0.9),
            (9, 4e-08, 0.95),
        ],
        "adam",
    ),
    # warmup 2 (to onecycle's first rate 0.1), then total 10, pct .5, linear, div 10, final 10:
    # ends at local 4, 9; momentum holds onecycle's first value (0.95) during the warmup
    Row(
        "onecycle_warmup",
        {
            "name": "onecycle",
            "warmup": 2,
            "pct_start": 0.5,
            "anneal_strategy": "linear",
            "div_factor": 10,
            "final_div_factor": 10,
        },
        12,
        None,
        1.0,
        [
            (0, 0.0, 0.95),
            (1, 0.05, 0.95),
            (2, 0.1, 0.95),
            (4, 0.55, 0.9),
            (6, 1.0, 0.85),
            (9, 0.406, 0.91),
            (11, 0.01, 0.95),
        ],
    ),
    # -- inverse_sqrt --------------------------------------------------------------------------
    # warmup 4, timescale = 4: lr = 0.1 t / 4, then 0.1 / sqrt((t - 4 + 4) / 4)
    Row(
        "inverse_sqrt_warmup",
        {"name": "inverse_sqrt", "warmup": 4},
        50,
        None,
        0.1,
        [(0, 0.0), (2, 0.05), (4, 0.1), (16, 0.05), (36, 0.03333333333333333)],
    ),
    # lr = 1 / sqrt((t + 100) / 100)
    Row(
        "inverse_sqrt_timescale",
        {"name": "inverse_sqrt", "timescale": 100},
        1000,
        None,
        1.0,
        [(0, 1.0), (44, 0.8333333333333334), (300, 0.5), (999, 0.30164848870338085)],
    ),
    # -- wsd -----------------------------------------------------------------------------------
    # warmup 10 from min_lr_ratio: 0.1 (t/10 * 0.9 + 0.1); stable 100 - 10 - 20 = 70 (t < 80);
    # decay 20: 0.1 (C(t - 80, 20) * 0.9 + 0.1); then 0.01
    Row(
        "wsd_cosine",
        {"name": "wsd", "warmup": 10, "num_decay_steps": 20, "min_lr_ratio": 0.1},
        100,
        None,
        0.1,
        [
            (0, 0.01),
            (5, 0.055),
            (10, 0.1),
            (79, 0.1),
            (80, 0.1),
            (90, 0.055),
            (99, 0.010554024673218802),
            (100, 0.01),
            (105, 0.01),
        ],
    ),
    # cosine warmup 4: (1 - cos(pi t / 4)) / 2; stable 6 (t < 10); 1-sqrt decay over 8:
    # 1 - sqrt((t - 10) / 8); 0 from t = 18
    Row(
        "wsd_1sqrt",
        {
            "name": "wsd",
            "warmup": 4,
            "warmup_type": "cosine",
            "num_stable_steps": 6,
            "num_decay_steps": 8,
            "decay_type": "1-sqrt",
        },
        30,
        None,
        1.0,
        [
            (0, 0.0),
            (1, 0.14644660940672624),
            (2, 0.5),
            (4, 1.0),
            (9, 1.0),
            (10, 1.0),
            (12, 0.5),
            (17, 0.06458565330651465),
            (18, 0.0),
            (25, 0.0),
        ],
    ),
    # decay = 10% of 50 = 5 (default), stable 45, linear: 2 ((1 - (t-45)/5) 0.8 + 0.2)
    Row(
        "wsd_linear_default_decay",
        {"name": "wsd", "decay_type": "linear", "min_lr_ratio": 0.2},
        50,
        None,
        2.0,
        [(0, 2.0), (44, 2.0), (45, 2.0), (47, 1.36), (49, 0.72), (50, 0.4)],
    ),
    # 1-sqrt warmup 5 from an explicit 0: 1 - sqrt(1 - t/5); stable 10 (t < 15);
    # linear decay over 5 to 0.5: (1 - (t - 15)/5) 0.5 + 0.5
    Row(
        "wsd_1sqrt_warmup_start",
        {
            "name": "wsd",
            "warmup": 5,
            "warmup_type": "1-sqrt",
            "warmup_start_factor": 0.0,
            "num_decay_steps": 5,
            "decay_type": "linear",
            "min_lr_ratio": 0.5,
        },
        20,
        None,
        1.0,
        [
            (0, 0.0),
            (1, 0.10557280900008412),
            (3, 0.3675444679663241),
            (5, 1.0),
            (14, 1.0),
            (15, 1.0),
            (17, 0.8),
            (19, 0.6),
            (20, 0.5),
        ],
    ),
    # -- sequence ------------------------------------------------------------------------------
    # phase 1 (5 steps): 0.5 (0.1 + 0.9 t/5); phase 2 from t = 5: cosine over its rest (20)
    Row(
        "sequence",
        {
            "name": "sequence",
            "phases": [
                {
                    "name": "linear",
                    "start_factor": 0.1,
                    "end_factor": 1.0,
                    "total_iters": 5,
                    "duration": 5,
                },
                {"name": "cosine"},
            ],
        },
        25,
        None,
        0.5,
        [(0, 0.05), (2, 0.23), (4, 0.41), (5, 0.5), (15, 0.25), (24, 0.0030779148512155683)],
    ),
    # 4 steps/epoch: constant for 1ep (t < 4); step (1ep, 0.5) for 2ep (t < 12, local t - 4);
    # then exponential 0.8 ** (t - 12)
    Row(
        "sequence_ep",
        {
            "name": "sequence",
            "phases": [
                {"name": "constant", "duration": "1ep"},
                {"name": "step", "step_size": "1ep", "gamma": 0.5, "duration": "2ep"},
                {"name": "exponential", "gamma": 0.8},
            ],
        },
        20,
        4,
        1.0,
        [
            (0, 1.0),
            (3, 1.0),
            (4, 1.0),
            (7, 1.0),
            (8, 0.5),
            (11, 0.5),
            (12, 1.0),
            (13, 0.8),
            (15, 0.512),
            (19, 0.2097152),
        ],
    ),
    # phase 1 lasts 10 with its own warmup 3: 0.2 t/3, then 0.2 C(t - 3, 7) (T_max = 10 - 3);
    # phase 2 constant 0.2 from t = 10
    Row(
        "sequence_phase_warmup",
        {
            "name": "sequence",
            "phases": [
                {"name": "cosine", "warmup": 3, "duration": 10},
                {"name": "constant"},
            ],
        },
        15,
        None,
        0.2,
        [
            (0, 0.0),
            (1, 0.06666666666666667),
            (3, 0.2),
            (6, 0.12225209339563144),
            (9, 0.009903113209758087),
            (10, 0.2),
            (14, 0.2),
        ],
    ),
    # -- chain ---------------------------------------------------------------------------------
    # factors multiply: 0.1 * 0.9 ** t * 0.5 ** (t // 3)
    Row(
        "chain",
        {
            "name": "chain",
            "schedules": [
                {"name": "exponential", "gamma": 0.9},
                {"name": "step", "step_size": 3, "gamma": 0.5},
            ],
        },
        10,
        None,
        0.1,
        [(0, 0.1), (2, 0.081), (3, 0.03645), (7, 0.0119574225), (9, 0.0048427561125)],
    ),
    # (0.5 + 0.5 min(t, 4) / 4) * C(t, 8)
    Row(
        "chain_linear_cosine",
        {
            "name": "chain",
            "schedules": [
                {"name": "linear", "start_factor": 0.5, "end_factor": 1.0, "total_iters": 4},
                {"name": "cosine", "T_max": 8},
            ],
        },
        8,
        None,
        1.0,
        [
            (0, 0.5),
            (2, 0.6401650429449554),
            (4, 0.5),
            (6, 0.14644660940672624),
            (7, 0.038060233744356624),
        ],
    ),
    # -- warmup shapes, start factors and durations --------------------------------------------
    # cosine warmup 5 from 0.2: 0.5 ((1 - cos(pi t / 5)) / 2 * 0.8 + 0.2), then 0.5
    Row(
        "warmup_cosine_start_factor",
        {"name": "constant", "warmup": 5, "warmup_type": "cosine", "warmup_start_factor": 0.2},
        10,
        None,
        0.5,
        [(0, 0.1), (2, 0.2381966011250105), (4, 0.4618033988749895), (5, 0.5), (9, 0.5)],
    ),
    # 1-sqrt warmup 4: 1 - sqrt(1 - t/4); then linear 1 -> 0 over the rest (8): 1 - (t - 4)/8
    Row(
        "warmup_1sqrt_linear",
        {"name": "linear", "warmup": 4, "warmup_type": "1-sqrt"},
        12,
        None,
        1.0,
        [(0, 0.0), (1, 0.13397459621556135), (3, 0.5), (4, 1.0), (8, 0.5), (11, 0.125)],
    ),
    # warmup 2ep x 3 = 6 from 0.5: 0.4 (t/6 * 0.5 + 0.5); then 0.4 * 0.5 ** (t - 6)
    Row(
        "warmup_ep_start_factor",
        {"name": "exponential", "gamma": 0.5, "warmup": "2ep", "warmup_start_factor": 0.5},
        20,
        3,
        0.4,
        [(0, 0.2), (3, 0.3), (5, 0.36666666666666664), (6, 0.4), (8, 0.1)],
    ),
    # 7% of 100 is exactly 7 (not 8 from 0.07 * 100 = 7.000000000000001): t/7, then C(t - 7, 93)
    Row(
        "warmup_pct_exact",
        {"name": "cosine", "warmup": "7%"},
        100,
        None,
        1.0,
        [(0, 0.0), (6, 0.8571428571428571), (7, 1.0), (38, 0.75), (99, 0.00028525453514097806)],
    ),
    # 10% of 25 = 2.5, rounded up to 3: min(t, 3) / 3
    Row(
        "warmup_pct_round_up",
        {"name": "constant", "warmup": "10%"},
        25,
        None,
        1.0,
        [(0, 0.0), (1, 0.3333333333333333), (2, 0.6666666666666666), (3, 1.0), (24, 1.0)],
    ),
    # -- cosine_with_min_lr --------------------------------------------------------------------
    # r = min_lr_rate = 0.1, T = 10: lr = b * (r + (1 - r) * C(t, 10)), so 0.55 b halfway and
    # r * b = 0.1 at t = T; t = 9: 0.1 + 0.9 * (1 + cos(0.9 pi)) / 2
    Row(
        "cosine_with_min_lr_rate",
        {"name": "cosine_with_min_lr", "min_lr_rate": 0.1},
        10,
        None,
        1.0,
        [(0, 1.0), (5, 0.55), (9, 0.1220245676671809)],
    ),
    # min_lr 0.01 over the optimizer's lr 0.1: r = 0.1; warmup 2 (linear from 0), then
    # T = 12 - 2: t = 1: b / 2; t = 7 (cosine step 5): 0.55 b; t = 11 (step 9): 0.12202... b
    Row(
        "cosine_with_min_lr_warmup",
        {"name": "cosine_with_min_lr", "min_lr": 0.01, "warmup": 2},
        12,
        None,
        0.1,
        [(0, 0.0), (1, 0.05), (2, 0.1), (7, 0.055), (11, 0.012202456766718089)],
    ),
    # -- plateau -------------------------------------------------------------------------------
    # factor 0.5, patience 1, threshold 0 (abs); values after steps 1..7: 3, 2, 2, 2, 2, 2, 2.
    # 3 and 2 improve; the 2 after step 3 is the 1st bad value (<= patience), after step 4 the
    # 2nd: lr 1 -> 0.5 from step 5; after step 5 the 1st again, after step 6 the 2nd: 0.25.
    Row(
        "plateau",
        {"name": "plateau", "factor": 0.5, "patience": 1, "threshold": 0, "threshold_mode": "abs"},
        10,
        None,
        1.0,
        [(0, 1.0), (4, 1.0), (5, 0.5), (6, 0.5), (7, 0.25), (9, 0.25)],
        metrics=((1, 3.0), (2, 2.0), (3, 2.0), (4, 2.0), (5, 2.0), (6, 2.0), (7, 2.0)),
    ),
    # warmup 2 (linear from 0): b * t / 2; the value after step 0 falls in the warmup and is
    # ignored; patience 0: after step 3 the value 1 sets the best, after step 4 the same value is
    # a bad one > patience: b -> 0.5 b from step 5.
    Row(
        "plateau_warmup",
        {
            "name": "plateau",
            "warmup": 2,
            "factor": 0.5,
            "patience": 0,
            "threshold": 0,
            "threshold_mode": "abs",
        },
        10,
        None,
        1.0,
        [(0, 0.0), (1, 0.5), (2, 1.0), (4, 1.0), (5, 0.5), (9, 0.5)],
        metrics=((0, 9.0), (3, 1.0), (4, 1.0)),
    ),
    # warm_restart, restart_period 4, min_lr 0.1, warmup 2 (linear from 0 to the first rate, 1):
    # lr = 0.1 + (p - 0.1) * C(tau, 4), tau = min(t - 2 - r, 4), peak p = 1, cycle start r = 0.
    # t = 3..6: tau 1..4 (0.1 at the cycle's end and after). A value reported at step k restarts
    # the cycle at k (r = k - 2), so the row reads step k before it and step k + 1 at tau 1.
    # Patience 0, cooldown 1: 5 after step 3 sets the best; 5 after 7 restarts (p = 0.5); after 8
    # it falls in the cooldown; after 9 it restarts (p = 0.25); after 14 the cooldown still; after
    # 15 it restarts (p = 0.125); after 16 the cooldown; after 17 p = max(0.0625, min_lr) = 0.1:
    # flat at the floor (a peak of 0.0625 would give 0.068 at step 18).
    Row(
        "plateau_warm_restart",
        {
            "name": "plateau",
            "warmup": 2,
            "factor": 0.5,
            "patience": 0,
            "cooldown": 1,
            "threshold": 0,
            "threshold_mode": "abs",
            "min_lr": 0.1,
            "warm_restart": True,
            "restart_period": 4,
        },
        20,
        None,
        1.0,
        [
            (0, 0.0),
            (1, 0.5),
            (2, 1.0),
            (3, 0.86819805153394639),
            (4, 0.55),
            (5, 0.23180194846605361),
            (6, 0.1),
            (7, 0.1),
            (8, 0.4414213562373095),
            (9, 0.3),
            (10, 0.22803300858899106),
            (11, 0.175),
            (12, 0.12196699141100894),
            (13, 0.1),
            (14, 0.1),
            (15, 0.1),
            (16, 0.12133883476483184),
            (17, 0.1125),
            (18, 0.1),
            (19, 0.1),
        ],
        metrics=(
            (3, 5.0),
            (7, 5.0),
            (8, 5.0),
            (9, 5.0),
            (14, 5.0),
            (15, 5.0),
            (16, 5.0),
            (17, 5.0),
        ),
    ),
    # -- hypergradient -------------------------------------------------------------------------
    # warmup 2 (linear from 0): b * t / 2, then b; this harness's parameter gets no gradient, so
    # there is no hypergradient and the rate holds at b (tests/test_hypergradient.py has the
    # trajectories with gradients, against the paper's equations)
    Row(
        "hypergradient_warmup",
        {"name": "hypergradient", "hypergrad_lr": 0.1, "warmup": 2},
        10,
        None,
        0.2,
        [(0, 0.0), (1, 0.1), (2, 0.2), (9, 0.2)],
    ),
    # -- torch pass-through --------------------------------------------------------------------
    # torch StepLR with step_size "1ep" x 3 steps/epoch = 3, gamma 0.5: 0.2 * 0.5 ** (t // 3)
    Row(
        "torch_steplr",
        {
            "name": "torch",
            "_target_": "torch.optim.lr_scheduler.StepLR",
            "step_size": "1ep",
            "gamma": 0.5,
        },
        12,
        3,
        0.2,
        [(0, 0.2), (2, 0.2), (3, 0.1), (5, 0.1), (6, 0.05), (11, 0.025)],
    ),
]


def _momentum(group: dict[str, Any]) -> float:
    return group["betas"][0] if "betas" in group else group["momentum"]


def _close(actual: float, expected: float, base: float) -> bool:
    return abs(actual - expected) <= max(REL * abs(expected), 1e-12 * base)


@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
def test_golden(row: Row) -> None:
    params = [torch.zeros(1, requires_grad=True)]
    if row.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=row.base_lr, betas=(0.9, 0.999))
    else:
        optimizer = torch.optim.SGD(params, lr=row.base_lr, momentum=0.9)
    scheduler = build_scheduler(
        optimizer, row.config, total_steps=row.total_steps, steps_per_epoch=row.steps_per_epoch
    )
    wanted = {entry[0]: entry[1:] for entry in row.expected}
    metrics = dict(row.metrics)
    failures = []
    for step in range(max(wanted) + 1):
        if step in wanted:
            lr = scheduler.get_last_lr()[0]
            group = optimizer.param_groups[0]
            expected_lr, *expected_momentum = wanted[step]
            if not (_close(lr, expected_lr, row.base_lr) and group["lr"] == lr):
                failures.append(f"step {step}: lr {lr!r}, expected {expected_lr!r}")
            if expected_momentum and not _close(_momentum(group), expected_momentum[0], 1.0):
                failures.append(
                    f"step {step}: momentum {_momentum(group)!r}, expected {expected_momentum[0]!r}"
                )
        if step in metrics:
            scheduler.step(metrics[step])
        optimizer.step()
        scheduler.step()
    assert not failures, f"{row.id} {row.config}:\n" + "\n".join(failures)


def test_table_covers_every_strategy() -> None:
    """At least 30 rows, and every registered strategy (a new one without a golden row fails
    here), warmup shape and duration form appears."""
    from lightning_lrsched import STRATEGIES

    assert len(TABLE) >= 30

    def walk(config: dict[str, Any]):
        yield config
        for key in ("phases", "schedules"):
            for child in config.get(key, []):
                yield from walk(child)

    configs = [c for row in TABLE for c in walk(row.config)]
    names = {c["name"] for c in configs}
    missing = set(STRATEGIES) - names
    assert not missing, f"strategies without a golden row: {sorted(missing)}"
    assert {c.get("mode", "triangular") for c in configs if c["name"] == "cyclic"} == {
        "triangular",
        "triangular2",
        "exp_range",
    }
    assert {c.get("warmup_type", "linear") for c in configs if c.get("warmup")} == {
        "linear",
        "cosine",
        "1-sqrt",
    }
    assert any(c.get("warmup_start_factor") for c in configs)
    texts = [str(v) for c in configs for v in c.values() if isinstance(v, str | list)]
    assert any("ep" in t for t in texts)
    assert any("%" in t for t in texts)
    assert any(c.get("three_phase") for c in configs)
    assert any("T_mult" in c for c in configs) and any("num_cycles" in c for c in configs)
