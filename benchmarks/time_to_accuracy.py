"""Time to accuracy: how many optimizer steps each strategy needs to reach a test accuracy.

Two tasks, every strategy on each, 5 seeds, as one Hydra multirun of ``lrsched train`` whose
jobs run in parallel processes (Hydra's joblib launcher, one torch thread each, one job per
core), tracked in one MLflow store; then ``lrsched compare`` writes each task's report.

    mnist1d  the MNIST-1D reference CNN (``model=cnn1d``, as ``experiment=mnist1d_cnn``), Adam,
             batch 100, 6000 steps on the 4000 training signals, test accuracy every 100 steps;
             target 94 % (the published figure for this network)
    digits   scikit-learn's digits, the MLP (``model=mlp``), Adam, batch 64, 1500 steps, test
             accuracy every 50 steps; target 97 %

Strategies: a constant rate from a grid (5e-3, 1e-2, 2e-2: the best is the baseline), step
decay (÷10 at 50 % and 75 %), cosine with 5 % warmup and WSD (at the task's reference rate, the
grid's best as measured before this benchmark); one-cycle and cosine whose rate comes from
our range test (``max_lr=auto`` / ``lr=auto``, suggestion ``minimum``: no grid, "zero-tuning");
hypergradient descent (Adam-HD from Adam's default 1e-3); schedule-free AdamW (constant, 5 %
warmup). Per strategy the report gives the median steps to the target, raw and smoothed (the
mean of three consecutive evaluations), the final and best accuracy, the worst seed's final,
and the ratio to the best constant rate.

    .venv/bin/python benchmarks/time_to_accuracy.py                 # the whole benchmark
    .venv/bin/python benchmarks/time_to_accuracy.py --smoke         # a few steps per run (CI)
    .venv/bin/python benchmarks/time_to_accuracy.py --tasks digits --seeds 2 --out tta
    .venv/bin/python benchmarks/time_to_accuracy.py --strategies constant-0.02 cosine-auto

Writes ``<out>/mlflow.db`` (every run: rate and loss of every step, test accuracy), the Hydra
outputs in ``<out>/multirun`` and ``<out>/report-<task>/compare.{md,png}``;
``mlflow ui --backend-store-uri sqlite:///<out>/mlflow.db`` shows the runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GRID = (5e-3, 1e-2, 2e-2)
CONSTANT_PREFIX = "constant-"


@dataclass(frozen=True)
class Task:
    groups: dict[str, str]  # config group choices
    settings: dict[str, Any]  # dotted keys
    steps: int
    eval_every: int
    target: float
    rate: float  # the reference rate of the hand-set strategies (the grid's best, measured)


TASKS = {
    "mnist1d": Task(
        {"data": "mnist1d", "model": "cnn1d"},
        {"data.batch_size": 100},
        steps=6000, eval_every=100, target=0.94, rate=2e-2,
    ),
    "digits": Task(
        {"data": "digits", "model": "mlp"},
        {"data.batch_size": 64},
        steps=1500, eval_every=50, target=0.97, rate=1e-2,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Strategy:
    scheduler: str
    settings: dict[str, Any] = field(default_factory=dict)  # dotted keys; "RATE": the task's
    optimizer: str = "adam"


AUTO = {"lr_finder.suggestion": "minimum"}
STRATEGIES = {
    **{f"{CONSTANT_PREFIX}{r:g}": Strategy("constant", {"optimizer.lr": r}) for r in GRID},
    "step": Strategy(
        "multistep",
        {"optimizer.lr": "RATE", "scheduler.milestones": ["50%", "75%"], "scheduler.gamma": 0.1},
    ),
    "cosine": Strategy("cosine", {"optimizer.lr": "RATE", "scheduler.warmup": "5%"}),
    "wsd": Strategy("wsd", {"optimizer.lr": "RATE", "scheduler.warmup": "5%"}),
    "onecycle-auto": Strategy("onecycle", {"scheduler.max_lr": "auto", **AUTO}),
    "cosine-auto": Strategy("cosine", {"optimizer.lr": "auto", "scheduler.warmup": "5%", **AUTO}),
    "hypergradient": Strategy("hypergradient", {"optimizer.lr": 1e-3}),
    "schedulefree": Strategy(
        "constant",
        {"optimizer.lr": "RATE", "optimizer.weight_decay": 0.0, "scheduler.warmup": "5%"},
        optimizer="adamw_schedulefree",
    ),
}


def experiment_name(task: str) -> str:
    return f"time-to-accuracy-{task}"


def _yaml_value(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and value != "auto":
        return f'"{value}"'
    return str(value)


def _nested(settings: dict[str, Any]) -> list[str]:
    """``{"a.b": 1, "a.c": 2}`` as YAML lines."""
    tree: dict[str, Any] = {}
    for dotted, value in settings.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    def lines(node: dict[str, Any], indent: str) -> list[str]:
        out = []
        for key, value in node.items():
            if isinstance(value, dict):
                out += [f"{indent}{key}:", *lines(value, indent + "  ")]
            else:
                out.append(f"{indent}{key}: {_yaml_value(value)}")
        return out

    return lines(tree, "")


def experiment_yaml(task_name: str, strategy_name: str, steps: int, eval_every: int) -> str:
    """One job's config: an ``experiment`` option (``@package _global_``) of the train app."""
    task, strategy = TASKS[task_name], STRATEGIES[strategy_name]
    groups = {**task.groups, "optimizer": strategy.optimizer, "scheduler": strategy.scheduler}
    settings = {
        **task.settings,
        "data.validate_on": "test",  # test accuracy every eval_every steps
        "trainer.max_steps": steps,
        "trainer.max_epochs": -1,
        "trainer.val_check_interval": eval_every,
        "trainer.check_val_every_n_epoch": None,
        "test": False,
        "logger.experiment_name": experiment_name(task_name),
    }
    for key, value in strategy.settings.items():
        settings[key] = task.rate if value == "RATE" else value
    head = [
        "# @package _global_",
        f"# generated by benchmarks/time_to_accuracy.py: {task_name}, {strategy_name}",
        "defaults:",
        *(f"  - override /{group}: {choice}" for group, choice in groups.items()),
    ]
    return "\n".join(head + _nested(settings)) + "\n"


def job_name(task: str, strategy: str) -> str:
    return f"{task}-{strategy}"


def write_configs(
    folder: Path,
    tasks: list[str],
    steps: int | None,
    every: int | None,
    strategies: list[str] | None = None,
) -> list[str]:
    """The experiment options, longest task first (the joblib launcher takes jobs in order,
    so the short ones fill the cores at the end); returns their names."""
    (folder / "experiment").mkdir(parents=True, exist_ok=True)
    names = []
    for task in sorted(tasks, key=lambda t: -TASKS[t].steps):
        for strategy in strategies or STRATEGIES:
            name = job_name(task, strategy)
            text = experiment_yaml(
                task, strategy, steps or TASKS[task].steps, every or TASKS[task].eval_every
            )
            (folder / "experiment" / f"{name}.yaml").write_text(text)
            names.append(name)
    return names


class Progress:
    """A progress bar over the runs (finished / all), with the runs in progress and their
    current step and rate, read from the MLflow store every few seconds."""

    def __init__(self, uri: str, experiments: list[str], total: int) -> None:
        from tqdm import tqdm

        self.uri, self.experiments, self.total = uri, experiments, total
        self.bar = tqdm(total=total, unit="run", dynamic_ncols=True, file=sys.stderr)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Progress:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self._update()
        self.bar.close()

    def _run(self) -> None:
        while not self.stop.wait(5):
            try:
                self._update()
            except Exception:  # the store is being created or migrated: next time
                continue

    def _update(self) -> None:
        from mlflow import MlflowClient

        client = MlflowClient(self.uri)
        ids = [e.experiment_id for e in client.search_experiments() if e.name in self.experiments]
        if not ids:
            return
        runs = client.search_runs(ids, max_results=1000)
        done = sum(r.info.status == "FINISHED" and "lrsched.kind" not in r.data.tags for r in runs)
        running = [r for r in runs if r.info.status == "RUNNING"]
        shown = []
        for run in running[:2]:
            rate = next((v for k, v in run.data.metrics.items() if k.startswith("lr/")), None)
            label = (run.info.run_name or "").split(" · ")
            label = f"{label[0]} s{run.data.tags.get('lrsched.seed', '?')}"
            if rate is not None:
                label += f" lr={rate:.2e}"
            shown.append(label)
        self.bar.n = min(done, self.total)
        self.bar.set_postfix_str("; ".join(shown), refresh=False)
        self.bar.refresh()


def run_multirun(
    out: Path, names: list[str], seeds: int, jobs: int, extra: list[str], uri: str
) -> None:
    """``lrsched train -m`` over every experiment and seed (joblib launcher, ``jobs`` at once)."""
    command = [
        sys.executable, "-m", "lightning_lrsched.app.train", "-m",
        "hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}",
        f"hydra.searchpath=[file://{(out / 'conf').resolve()}]",
        f"hydra.sweep.dir={out / 'multirun'}",
        f"experiment={','.join(names)}", f"seed=range({seeds})",
        f"logger.tracking_uri={uri}",
        "trainer.enable_progress_bar=false",  # parallel jobs: this script shows the progress
        "callbacks.run_tracking.plots=false",  # the report draws the curves, from the store
        # the rate of every step (the report draws it) and the loss; not momentum, weight decay
        "callbacks.lr_logger.momentum=false",
        "callbacks.lr_logger.weight_decay=false",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = out / "multirun.log"
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        tail = log.read_text().splitlines()[-30:]
        raise SystemExit(f"the multirun failed ({log}):\n" + "\n".join(tail))


def best_constant(uri: str, task: str, target: float) -> str:
    """The constant-rate group of the grid that reaches the target first (smoothed, median over
    seeds; then the best final accuracy): the baseline of the report."""
    from lightning_lrsched.app import compare

    settings = compare.parse_settings("val_acc", "max", str(target), "3", None)
    loaded = compare.open_experiment(uri, experiment_name(task), None, False)
    groups = compare.aggregate(compare.summarize_runs(loaded, settings), "max")
    constants = [g for g in groups if g.group.startswith(job_name(task, CONSTANT_PREFIX))]
    return constants[0].group  # aggregate() sorts by smoothed steps, then final accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("time-to-accuracy"))
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel jobs")
    parser.add_argument(
        "--strategies", nargs="+", choices=list(STRATEGIES), help="a subset (default: all)"
    )
    parser.add_argument("--smoke", action="store_true", help="20 steps per run, 1 seed")
    parser.add_argument("overrides", nargs="*", help="more overrides for every job")
    args = parser.parse_args(argv)
    steps = every = None
    seeds, extra = args.seeds, list(args.overrides)
    if args.smoke:
        steps, every, seeds = 20, 10, 1
        extra += ["lr_finder.num_steps=20", "lr_finder.skip_begin=2", "lr_finder.skip_end=2"]
    out = args.out.resolve()
    if (out / "mlflow.db").exists():
        raise SystemExit(f"{out / 'mlflow.db'} exists: give another --out, or remove it")
    strategies = args.strategies
    if strategies and not any(s.startswith(CONSTANT_PREFIX) for s in strategies):
        parser.error("--strategies: include a constant rate (the report's baseline)")
    names = write_configs(out / "conf", args.tasks, steps, every, strategies)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    total = len(names) * seeds
    print(
        f"time to accuracy: {len(names)} configurations x {seeds} seeds = {total} runs, "
        f"{args.jobs} at a time, one torch thread each; store {uri}",
        flush=True,
    )
    start = time.perf_counter()
    experiments = [experiment_name(t) for t in args.tasks]
    with Progress(uri, experiments, total):
        run_multirun(out, names, seeds, args.jobs, extra, uri)
    trained = time.perf_counter() - start
    from lightning_lrsched.app.cli import main as lrsched

    for task in args.tasks:
        target = TASKS[task].target
        baseline = best_constant(uri, task, target)
        print(f"\n## {task}: target {target:.0%}, baseline {baseline!r} (the grid's best)\n")
        code = lrsched([
            "compare", "--experiment", experiment_name(task), "--tracking-uri", uri,
            "--target", str(target), "--smooth", "3", "--baseline", baseline,
            "--out", str(out / f"report-{task}"),
        ])  # fmt: skip
        if code:
            return code
    minutes = (time.perf_counter() - start) / 60
    print(f"\ntrained in {trained / 60:.1f} min, all in {minutes:.1f} min ({total} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
