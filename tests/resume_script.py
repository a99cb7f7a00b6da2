"""Interrupted and resumed training runs for ``tests/test_resume.py`` (also its CLI).

Every run is a real ``Trainer.fit`` of a tiny module: 8 batches per epoch, 3 epochs, so 24
optimizer steps, recorded by ``RateRecorder`` as ``(global_step, lrs, momenta)``. A *case* is a
strategy (a name of :data:`STRATEGIES`) and a way in (``helper``: the module's
``configure_optimizers`` calls ``lightning_lrsched.configure_optimizers``; ``callback``: the
module returns only its optimizer and an ``LRSchedule`` callback attaches the schedule),
written ``"<strategy>:<via>"`` on the command line::

    python tests/resume_script.py train  WORKDIR --kill-at K CASE [CASE ...]
    python tests/resume_script.py resume WORKDIR CASE [CASE ...]

``train`` forks one child process per case; the child trains with a checkpoint after every
optimizer step and, at the start of step ``K`` (so after step ``K``'s checkpoint was written),
writes the rates it recorded to ``WORKDIR/<case>/before.json`` and SIGKILLs itself. The parent
writes how each child ended to ``WORKDIR/train_status.json``. ``resume`` (a fresh interpreter)
resumes every case from ``WORKDIR/<case>/ckpt/last.ckpt`` and writes the rates recorded after
the resume, or the error, to ``WORKDIR/<case>/after.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lightning_support import RateRecorder, TinyModule, trainer

from lightning_lrsched.callbacks import LRSchedule

torch.set_num_threads(1)

MAX_EPOCHS = 3
STEPS_PER_EPOCH = 8  # TinyModule: 64 samples, batches of 8
TOTAL_STEPS = MAX_EPOCHS * STEPS_PER_EPOCH
VIAS = ("helper", "callback")

# Two param groups with their own base rates: the output layer (pg0) and the rest ("default").
SGD = {
    "name": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "param_groups": [{"params": r"^net\.2\.", "lr": 0.02}],
}
ADAMW = {"name": "adamw", "lr": 0.01, "param_groups": [{"params": r"^net\.2\.", "lr": 0.004}]}

Rate = tuple[int, tuple[float, ...], tuple[float, ...]]


class StallingModule(TinyModule):
    """``TinyModule`` whose validation loss stalls at 1.0 from its first value on, so that a
    plateau schedule reduces its rate as soon as its patience runs out, the same in every run."""

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.tensor(1.0))


@dataclass(frozen=True)
class Strategy:
    config: dict[str, Any]
    optimizer: dict[str, Any] = field(default_factory=lambda: SGD)
    stalls: bool = False  # StallingModule instead of TinyModule
    trainer_options: dict[str, Any] = field(default_factory=dict)


STRATEGIES: dict[str, Strategy] = {
    "constant+warmup": Strategy({"name": "constant", "warmup": 4}),
    "step": Strategy({"name": "step", "step_size": 5, "gamma": 0.5}),
    "multistep": Strategy({"name": "multistep", "milestones": ["1ep", 13, "75%"], "gamma": 0.5}),
    "exponential": Strategy({"name": "exponential", "gamma": 0.9}),
    "linear": Strategy({"name": "linear", "warmup": 2, "end_factor": 0.05}),
    "polynomial": Strategy({"name": "polynomial", "power": 2.0}),
    "cosine+warmup": Strategy({"name": "cosine", "warmup": 3, "eta_min": 1e-4}),
    "cosine_restarts": Strategy({"name": "cosine_restarts", "T_0": 5, "T_mult": 2}),
    "cyclic": Strategy(  # cycles SGD momentum too
        {
            "name": "cyclic",
            "base_lr": 0.005,
            "max_lr": [0.03, 0.1],
            "step_size_up": 4,
            "step_size_down": 3,
            "mode": "triangular2",
        }
    ),
    "onecycle": Strategy({"name": "onecycle", "max_lr": [0.04, 0.1]}),  # SGD momentum
    "onecycle/adamw": Strategy({"name": "onecycle", "max_lr": [0.008, 0.02]}, ADAMW),  # beta1
    "inverse_sqrt": Strategy({"name": "inverse_sqrt", "warmup": 4}),
    "wsd": Strategy({"name": "wsd", "warmup": 3, "num_decay_steps": "25%", "min_lr_ratio": 0.1}),
    "sequence": Strategy(
        {
            "name": "sequence",
            "phases": [
                {"name": "linear", "start_factor": 0.1, "end_factor": 1.0, "duration": 5},
                {"name": "onecycle", "duration": "1ep"},
                {"name": "exponential", "gamma": 0.9},
            ],
        }
    ),
    "chain": Strategy(
        {
            "name": "chain",
            "schedules": [
                {"name": "exponential", "gamma": 0.95},
                {"name": "step", "step_size": 6, "gamma": 0.5},
            ],
        }
    ),
    "torch": Strategy(  # pass-through of torch's own (recursive, stateful) CyclicLR, with warmup
        {
            "name": "torch",
            "_target_": "torch.optim.lr_scheduler.CyclicLR",
            "base_lr": 0.01,
            "max_lr": 0.1,
            "step_size_up": 5,
            "warmup": 2,
        }
    ),
    # Validation every 4 steps (4, 8, 12, ...): 4 sets the best, 8 is bad once, 12 reduces,
    # 16 is bad once, 20 reduces. Checkpoints saved at a validation's end must hold its outcome.
    "plateau+warmup": Strategy(
        {"name": "plateau", "warmup": 3, "patience": 1, "factor": 0.5},
        stalls=True,
        trainer_options={"val_check_interval": 4},
    ),
    # Validation at each epoch's end (8, 16, 24): 8 sets the best, 16 and 24 reduce.
    "plateau+warmup/epoch-val": Strategy(
        {"name": "plateau", "warmup": 3, "patience": 0, "factor": 0.5}, stalls=True
    ),
    # Warm restarts on the same validations: 4 sets the best, 12 and 20 restart a 6-step cosine
    # from the halved peak. Steps 3..8 anneal the first cycle, 9..11 stay at min_lr (0), 12 jumps
    # to half the base rate; the mid-epoch resume (13) is one step into that second cycle.
    "plateau+warm_restart": Strategy(
        {
            "name": "plateau",
            "warmup": 3,
            "patience": 1,
            "factor": 0.5,
            "warm_restart": True,
            "restart_period": 6,
        },
        stalls=True,
        trainer_options={"val_check_interval": 4},
    ),
    # The rate adapts to every step's gradients; its state holds the rates and the last
    # gradients (plain SGD keeps them itself; AdamW's direction is in the optimizer's state).
    "hypergradient+warmup": Strategy(
        {"name": "hypergradient", "hypergrad_lr": 1e-3, "warmup": 3},
        {"name": "sgd", "lr": 0.05, "param_groups": [{"params": r"^net\.2\.", "lr": 0.02}]},
    ),
    "hypergradient/adamw": Strategy({"name": "hypergradient", "hypergrad_lr": 1e-4}, ADAMW),
}


# Not in the resume matrix: the plan whose horizon changes between runs (test_resume.py).
PLAN_STRATEGIES: dict[str, Strategy] = {
    "cosine+warmup/plan": Strategy({"name": "cosine", "warmup": 2}),
}


def spec(strategy: str) -> Strategy:
    return STRATEGIES[strategy] if strategy in STRATEGIES else PLAN_STRATEGIES[strategy]


def case_name(strategy: str, via: str) -> str:
    return f"{strategy}:{via}"


def parse_case(case: str) -> tuple[str, str]:
    strategy, _, via = case.rpartition(":")
    if strategy not in STRATEGIES or via not in VIAS:
        raise ValueError(f"unknown case {case!r}: <strategy>:<via>, via in {VIAS}")
    return strategy, via


def build(strategy: str, via: str, on_plan_change: str | None = None):
    """The module and the extra callbacks of one case (fresh objects, as a new process has)."""
    chosen = spec(strategy)
    config = copy.deepcopy(chosen.config)
    optimizer = copy.deepcopy(chosen.optimizer)
    option = {} if on_plan_change is None else {"on_plan_change": on_plan_change}
    module_class = StallingModule if chosen.stalls else TinyModule
    if via == "helper":
        return module_class(config, optimizer=optimizer, **option), []
    return module_class(None, optimizer=optimizer), [LRSchedule(config, **option)]


class SimulatedCrashError(Exception):
    """Raised by :class:`Interrupt` to stop a run the way a crash would."""


class Interrupt(pl.Callback):
    """Stops training at the start of optimizer step ``step`` or of epoch ``epoch``.

    By default it raises :class:`SimulatedCrashError`; with ``kill_dump`` it writes the rates
    recorded so far to that file and SIGKILLs its own process (nothing after that runs: no
    teardown, no final checkpoint).
    """

    def __init__(
        self,
        *,
        step: int | None = None,
        epoch: int | None = None,
        kill_dump: Path | None = None,
        recorder: RateRecorder | None = None,
    ) -> None:
        self.step = step
        self.epoch = epoch
        self.kill_dump = kill_dump
        self.recorder = recorder

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.step is not None and trainer.global_step == self.step:
            self._stop(f"step {trainer.global_step}")

    def on_train_epoch_start(self, trainer, pl_module):
        if self.epoch is not None and trainer.current_epoch == self.epoch:
            self._stop(f"epoch {trainer.current_epoch}")

    def _stop(self, where: str) -> None:
        if self.kill_dump is not None:
            assert self.recorder is not None
            write_rates(self.kill_dump, self.recorder.rates)
            os.kill(os.getpid(), signal.SIGKILL)
        raise SimulatedCrashError(f"interrupted at the start of {where}")


def checkpointing(dirpath: Path, every: str) -> ModelCheckpoint:
    """Keep every checkpoint and ``last.ckpt``: after each optimizer step or each epoch."""
    if every == "step":
        return ModelCheckpoint(dirpath, every_n_train_steps=1, save_top_k=-1, save_last=True)
    if every == "epoch":
        return ModelCheckpoint(dirpath, every_n_epochs=1, save_top_k=-1, save_last=True)
    raise ValueError(every)


def fit(
    strategy: str,
    via: str,
    root: Path,
    *,
    max_epochs: int = MAX_EPOCHS,
    checkpoints: str | None = None,
    interrupt: Interrupt | None = None,
    ckpt_path: Path | None = None,
    on_plan_change: str | None = None,
) -> tuple[list[Rate], bool]:
    """Train one case; return the rates of every optimizer step it took and whether it was
    interrupted. ``checkpoints`` ("step" or "epoch") writes them to ``root/ckpt``."""
    pl.seed_everything(0, verbose=False)
    module, extra = build(strategy, via, on_plan_change)
    recorder = RateRecorder()
    callbacks: list[pl.Callback] = [recorder, *extra]
    if interrupt is not None:
        if interrupt.kill_dump is not None:
            interrupt.recorder = recorder
        callbacks.append(interrupt)
    if checkpoints is not None:
        callbacks.append(checkpointing(root / "ckpt", checkpoints))
    run = trainer(
        root,
        callbacks,
        max_epochs=max_epochs,
        enable_checkpointing=checkpoints is not None,
        **spec(strategy).trainer_options,
    )
    try:
        run.fit(module, ckpt_path=ckpt_path)
    except SimulatedCrashError:
        return normalise(recorder.rates), True
    return normalise(recorder.rates), False


def normalise(rates: Sequence[Sequence[Any]]) -> list[Rate]:
    """``(step, lrs, momenta)`` with plain ints and floats (as recorded or as read from JSON)."""
    return [
        (int(step), tuple(float(v) for v in lrs), tuple(float(v) for v in momenta))
        for step, lrs, momenta in rates
    ]


def write_rates(path: Path, rates: Sequence[Sequence[Any]], **extra: Any) -> None:
    # json writes floats as repr(): they read back bit for bit
    rows = [[int(s), [float(v) for v in lrs], [float(v) for v in m]] for s, lrs, m in rates]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rates": rows, **extra}))


def read_rates(path: Path) -> list[Rate]:
    return normalise(json.loads(path.read_text())["rates"])


def checkpoint_step(path: Path) -> int:
    """The global step a Lightning checkpoint was saved at."""
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def saved_schedule(path: Path) -> dict[str, Any]:
    """The schedule state in a checkpoint: Lightning's scheduler list (helper) or the
    ``LRSchedule`` callback's own state (callback), under its documented state key."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if checkpoint["lr_schedulers"]:
        return checkpoint["lr_schedulers"][0]
    return checkpoint["callbacks"][LRSchedule({"name": "constant"}).state_key]["scheduler"]


# -- command line ---------------------------------------------------------------------------
def case_dir(workdir: Path, case: str) -> Path:
    return workdir / case.replace(":", "__").replace("/", "_").replace("+", "_")


def train_and_kill(workdir: Path, cases: list[str], kill_at: int) -> None:
    status: dict[str, dict[str, Any]] = {}
    for case in cases:
        strategy, via = parse_case(case)
        root = case_dir(workdir, case)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the training process: ends by SIGKILL, or reports why it did not
            code = 0
            try:
                interrupt = Interrupt(step=kill_at, kill_dump=root / "before.json")
                fit(strategy, via, root, checkpoints="step", interrupt=interrupt)
                print(f"{case}: training ended without reaching step {kill_at}", file=sys.stderr)
                code = 3
            except BaseException:
                traceback.print_exc()
                code = 2
            finally:
                sys.stderr.flush()
                os._exit(code)
        _, wait_status = os.waitpid(pid, 0)
        status[case] = {
            "signal": os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None,
            "exit_code": os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else None,
        }
    (workdir / "train_status.json").write_text(json.dumps(status, indent=1))


def resume(workdir: Path, cases: list[str]) -> None:
    for case in cases:
        strategy, via = parse_case(case)
        root = case_dir(workdir, case)
        last = root / "ckpt" / "last.ckpt"
        try:
            step = checkpoint_step(last)
            rates, _ = fit(strategy, via, root / "resumed", ckpt_path=last)
            write_rates(root / "after.json", rates, checkpoint_step=step)
        except Exception:
            write_rates(root / "after.json", [], error=traceback.format_exc())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("train", "resume"))
    parser.add_argument("workdir", type=Path)
    parser.add_argument("cases", nargs="+")
    parser.add_argument("--kill-at", type=int, default=11)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.command == "train":
        train_and_kill(args.workdir, args.cases, args.kill_at)
    else:
        resume(args.workdir, args.cases)


if __name__ == "__main__":
    main()
