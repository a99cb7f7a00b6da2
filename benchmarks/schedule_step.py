"""Cost of one ``scheduler.step()``: lightning_lrsched's ScheduleLR vs the torch equivalents.

Each case builds fresh schedulers (each on its own SGD-with-momentum optimizer with one small
tensor per param group), then times interleaved rounds of K steps (ours, torch..., direct write,
rotating the order every round) with ``time.perf_counter_ns``. Reported: the median per-step cost
over rounds and the median of the per-round ratios torch/ours (paired, so machine noise that hits
a whole round cancels). "direct" is the floor: a loop writing a precomputed float to each group.

    .venv/bin/python benchmarks/schedule_step.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.optim import lr_scheduler as tls

from lightning_lrsched import build_scheduler

# Hugging Face transformers (a baseline here) lives in .venv/reference (scripts/setup-env.sh)
sys.path.append(str(Path(sys.prefix) / "reference"))

TARGETS = {1: 1.0, 100: 5.0}  # minimum ratio torch/ours per number of param groups
BASE_LR = 0.1


def make_optimizer(groups: int) -> torch.optim.SGD:
    params = [{"params": [torch.zeros(4, requires_grad=True)]} for _ in range(groups)]
    return torch.optim.SGD(params, lr=BASE_LR, momentum=0.9)


def cases(n: int) -> list[tuple[str, dict, dict]]:
    """(strategy, our config, {torch label: factory(optimizer)}); n = steps the run will take."""
    warm = n // 10
    ms = [n // 4, n // 2, 3 * n // 4]
    up = max(1, n // 8)

    def hf_cosine(opt):
        from transformers.optimization import get_cosine_schedule_with_warmup

        return get_cosine_schedule_with_warmup(opt, warm, n)

    def sequential(opt):
        warmup = tls.LinearLR(opt, start_factor=1e-3, end_factor=1.0, total_iters=warm)
        cosine = tls.CosineAnnealingLR(opt, T_max=n - warm)
        return tls.SequentialLR(opt, [warmup, cosine], milestones=[warm])

    return [
        ("step", {"name": "step", "step_size": n // 10, "gamma": 0.5},
         {"StepLR": lambda o: tls.StepLR(o, step_size=n // 10, gamma=0.5)}),
        ("multistep", {"name": "multistep", "milestones": ms, "gamma": 0.1},
         {"MultiStepLR": lambda o: tls.MultiStepLR(o, milestones=ms, gamma=0.1)}),
        ("exponential", {"name": "exponential", "gamma": 0.999},
         {"ExponentialLR": lambda o: tls.ExponentialLR(o, gamma=0.999)}),
        ("linear", {"name": "linear", "total_iters": n},
         {"LinearLR": lambda o: tls.LinearLR(o, 1.0, 0.0, total_iters=n)}),
        ("cosine", {"name": "cosine"},
         {"CosineAnnealingLR": lambda o: tls.CosineAnnealingLR(o, T_max=n)}),
        ("cosine_restarts", {"name": "cosine_restarts", "T_0": max(1, n // 64), "T_mult": 2},
         {"CosineAnnealingWarmRestarts":
          lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=max(1, n // 64), T_mult=2)}),
        ("cyclic", {"name": "cyclic", "max_lr": 1.0, "step_size_up": up},
         {"CyclicLR": lambda o: tls.CyclicLR(o, BASE_LR, 1.0, step_size_up=up)}),
        ("onecycle", {"name": "onecycle"},
         {"OneCycleLR": lambda o: tls.OneCycleLR(o, max_lr=BASE_LR, total_steps=n)}),
        ("warmup+cosine", {"name": "cosine", "warmup": "10%"},
         {"HF cosine_with_warmup": hf_cosine, "SequentialLR": sequential}),
    ]  # fmt: skip


def direct_writer(opt: torch.optim.Optimizer, n: int):
    groups = opt.param_groups
    values = iter([BASE_LR * (1.0 - i / n) for i in range(n + 1)])

    def step() -> None:
        lr = next(values)
        for group in groups:
            group["lr"] = lr

    return step


def time_steps(step, k: int) -> float:
    """Nanoseconds per call over k back-to-back calls."""
    t0 = time.perf_counter_ns()
    for _ in range(k):
        step()
    return (time.perf_counter_ns() - t0) / k


def run_case(config: dict, factories: dict, groups: int, rounds: int, k: int) -> dict:
    n = (rounds + 1) * k + 1  # one untimed warm-up round; torch OneCycleLR refuses step > n
    steppers = {"ours": build_scheduler(make_optimizer(groups), config, total_steps=n).step}
    for label, factory in factories.items():
        steppers[label] = factory(make_optimizer(groups)).step
    steppers["direct"] = direct_writer(make_optimizer(groups), n)
    names = list(steppers)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds + 1):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            cost = time_steps(steppers[name], k)
            if r:  # round 0 warms caches and is not recorded
                samples[name].append(cost)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke test")
    args = parser.parse_args()
    rounds, k = (5, 50) if args.quick else (41, 300)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)  # step() before optimizer.step()
    n_case = (rounds + 1) * k + 1
    header = f"{'strategy':<16}{'torch':<29}{'groups':>6}{'ours µs':>10}{'torch µs':>10}"
    print(f"rounds={rounds} x {k} steps per scheduler, horizon {n_case} steps, 1 thread")
    print(header + f"{'torch/ours':>12}{'direct µs':>11}")
    print("-" * (len(header) + 23))
    ratios: dict[int, list[tuple[str, float]]] = {g: [] for g in TARGETS}
    gc.collect()
    gc.freeze()  # move the import-time heap out of the collector's way: later collects are cheap
    gc.disable()  # no collector pauses inside timed rounds
    try:
        for groups in TARGETS:
            for name, config, factories in cases(n_case):
                samples = run_case(config, factories, groups, rounds, k)
                ours = samples["ours"]
                for label in factories:
                    paired = zip(samples[label], ours, strict=True)
                    ratio = statistics.median([t / o for t, o in paired])
                    ratios[groups].append((f"{name} vs {label}", ratio))
                    print(
                        f"{name:<16}{label:<29}{groups:>6}"
                        f"{statistics.median(ours) / 1e3:>10.2f}"
                        f"{statistics.median(samples[label]) / 1e3:>10.2f}"
                        f"{ratio:>12.2f}{statistics.median(samples['direct']) / 1e3:>11.2f}"
                    )
                gc.collect()
    finally:
        gc.enable()
    print()
    for groups, target in TARGETS.items():
        values = [r for _, r in ratios[groups]]
        median = statistics.median(values)
        worst_name, worst = min(ratios[groups], key=lambda item: item[1])
        passing = sum(r >= target for r in values)
        verdict = "MET" if median >= target else "MISSED"
        print(
            f"{groups:>3} group(s): median torch/ours {median:.2f} (target >= {target:g}): "
            f"{verdict}; {passing}/{len(values)} rows meet it; worst {worst:.2f} ({worst_name})"
        )


if __name__ == "__main__":
    main()
