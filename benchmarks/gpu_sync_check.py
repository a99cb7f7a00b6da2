"""Our per-step code never waits for the GPU: a short CUDA training with every per-step hook of
our callbacks, the schedule's step and the tracker's ``log_metrics`` run under
``torch.cuda.set_sync_debug_mode("error")`` (a device-to-host copy or synchronisation raises).

The training: an MLP classifier on random data, bf16 mixed precision, the helper's warmup +
cosine schedule and an ``LRSchedule`` (a second optimizer is not needed: the module is built
each way in turn), with ``MLflowTracker`` (SQLite in a temporary folder), ``RunTracking``,
``LRLogger``, ``Preemption``, ``RankGuard`` and ``StepMetrics`` (the classifier's
``train_loss``). ``StepMetrics`` moves its buffer to the host once every ``every_n_steps``
steps (here 10): its ``flush`` is the one place allowed to wait, and is counted apart.
Lightning's own per-step work runs outside the guard: it is Lightning's, not ours. Prints the
number of guarded calls per hook; any sync raises with the hook's name.

    python benchmarks/gpu_sync_check.py            # on a CUDA machine (scripts/gpu-check.sh)
    python benchmarks/gpu_sync_check.py --accelerator cpu   # the same run, no guard (a smoke test)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_lrsched.callbacks import LRLogger, LRSchedule, Preemption, RankGuard, StepMetrics
from lightning_lrsched.tasks.models import MLP, Classifier
from lightning_lrsched.tracking import MLflowTracker, RunTracking

PER_STEP_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
)
CALLS: Counter[str] = Counter()


@contextlib.contextmanager
def no_sync(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def guarded(name: str, function: Callable[..., Any], enabled: bool) -> Callable[..., Any]:
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        CALLS[name] += 1
        try:
            with no_sync(enabled):
                return function(*args, **kwargs)
        except RuntimeError as err:
            raise RuntimeError(f"{name} waited for the GPU: {err}") from err

    return call


def allowed(name: str, function: Callable[..., Any], enabled: bool) -> Callable[..., Any]:
    """``function`` may wait for the GPU (inside a guarded hook): counted, not refused."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        CALLS[name] += 1
        if not enabled:
            return function(*args, **kwargs)
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(0)
        try:
            return function(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode(previous)

    return call


def guard_callbacks(callbacks: list[pl.Callback], enabled: bool) -> None:
    for callback in callbacks:
        for hook in PER_STEP_HOOKS:
            own = type(callback).__dict__.get(hook)
            if own is not None:
                name = f"{type(callback).__name__}.{hook}"
                setattr(callback, hook, guarded(name, getattr(callback, hook), enabled))


class GuardSchedules(pl.Callback):
    """Wraps the step of every schedule of the fit once it is built (fit start)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from lightning_lrsched.lightning import attached_schedules

        for schedule in attached_schedules(trainer):
            schedule.step = guarded("ScheduleLR.step", schedule.step, self.enabled)


def run(accelerator: str, steps: int, via: str) -> None:
    enabled = accelerator in ("gpu", "cuda")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(steps * 32, 64, generator=generator)
    y = torch.randint(0, 10, (len(x),), generator=generator)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    schedule = {"name": "cosine", "warmup": "10%"}
    optimizer = {"name": "adamw", "lr": 1e-3}
    net = MLP(in_features=64, num_classes=10)
    with tempfile.TemporaryDirectory() as tmp:
        tracker = MLflowTracker("gpu-sync-check", tracking_uri=f"sqlite:///{tmp}/mlflow.db")
        tracker.log_metrics = guarded("MLflowTracker.log_metrics", tracker.log_metrics, enabled)
        metrics = StepMetrics({"loss": "train_loss"}, every_n_steps=10, on_epoch=True)
        metrics.flush = allowed("StepMetrics.flush (one sync per 10 steps)", metrics.flush, enabled)
        ours: list[pl.Callback] = [
            RunTracking(plots=False),
            LRLogger(),
            Preemption(),
            RankGuard(),
            metrics,
        ]
        if via == "callback":
            module = Classifier(net, optimizer=optimizer, scheduler=None)
            ours.append(LRSchedule(schedule))
        else:
            module = Classifier(net, optimizer=optimizer, scheduler=schedule)
        guard_callbacks(ours, enabled)
        trainer = pl.Trainer(
            accelerator=accelerator,
            devices=1,
            precision="bf16-mixed" if enabled else "32-true",
            max_epochs=1,
            logger=tracker,
            log_every_n_steps=1,
            callbacks=[*ours, GuardSchedules(enabled)],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            default_root_dir=tmp,
        )
        trainer.fit(module, train_dataloaders=loader)
        assert tracker.flush(timeout=60)
        history = tracker.experiment.get_metric_history
        written = len(history(tracker.version, "lr/AdamW/pg0"))
        assert written == steps, (written, steps)
        losses = len(history(tracker.version, "train_loss_step"))
        assert losses == steps, (losses, steps)


def main(argv: list[str] | None = None) -> Counter[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="gpu", help="gpu (default) or cpu")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args(argv)
    if args.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here (--accelerator cpu runs it without the guard)")
    warnings.filterwarnings("ignore")
    CALLS.clear()
    for via in ("helper", "callback"):
        run(args.accelerator, args.steps, via)
    guard = "under set_sync_debug_mode('error')" if args.accelerator != "cpu" else "unguarded"
    print(f"gpu_sync_check: {args.accelerator}, {args.steps} steps x 2 fits, {guard}:")
    for name, count in sorted(CALLS.items()):
        print(f"  {name:<45} {count:>5} calls")
    print("no host sync in our per-step code" if guard != "unguarded" else "smoke test passed")
    return CALLS


if __name__ == "__main__":
    main()
