"""Training throughput with every step's loss and rate tracked, against a loop that logs nothing.

One Lightning loop (an MLP 64→128→10 on random in-memory data, batch 32, SGD + one-cycle,
10 epochs, no validation, checkpoints, progress bar or summary) is fitted under these
configurations, each logging every optimizer step's training loss and learning rate:

    none           the baseline: no logger, no ``self.log``; what a user runs who logs nothing
    self.log+null  ``self.log("train_loss")`` + LRLogger + a logger that keeps nothing,
                   ``log_every_n_steps=1``: Lightning's own per-step path, nothing behind it
    self.log+ours  the same into MLflowTracker (+ RunTracking), ``log_every_n_steps=1``
    ours           the fast path: ``StepMetrics`` (the training step's loss, kept on its device,
                   handed over every 50 steps) + LRLogger + MLflowTracker + RunTracking;
                   no ``self.log`` per step (Lightning's default ``log_every_n_steps``)
    mlflow-async   ``self.log`` + LearningRateMonitor + Lightning's ``MLFlowLogger`` with
                   MLflow's asynchronous logging (``synchronous=False``), every step
    mlflow-sync    the same, synchronous (a store write per step: fewer steps, see below)

A warm-up round creates the store (one SQLite file) and the runs; then rounds of fits run
interleaved, rotating the order each round, one torch thread. Throughput is timed inside the
loop from the start of batch ``SKIP`` to the start of the last batch: 10 epochs, several of
the tracker's flush intervals (1 s) and 60 hand-overs of ``StepMetrics``, with the writer
process and MLflow's async queue working beside the loop. "fit s" is the whole ``fit``; "drain
s" is the time after ``fit`` returns until every point is in the store (read back). Reported:
median steps/s over rounds and the median of the per-round ratios to "none" (paired); CPU: the
same for process CPU time per step (all threads of the training process; not the writer
process, which runs on another core when there is one).

    .venv/bin/python benchmarks/logging_overhead.py [--quick] [--accelerator gpu]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import tempfile
import time
import warnings
from typing import Any

import lightning.pytorch as pl
import mlflow
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger, MLFlowLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning_lrsched
from lightning_lrsched.callbacks import LRLogger, StepMetrics
from lightning_lrsched.tracking import MLflowTracker, RunTracking

TARGET = 0.97  # minimum steps/s ratio ours/none
BATCH = 32
EPOCHS = 10
SKIP = 200  # optimizer steps left out of the timed window at the start of every fit
CONFIGS = ("none", "self.log+null", "self.log+ours", "ours", "mlflow-async", "mlflow-sync")
# MLflow's own logger writes per step (synchronously, or queued through MLflow's thread pool):
# these fit fewer steps so that a round does not take minutes (their rate is steady anyway)
SHORT = {"mlflow-async": 3, "mlflow-sync": 10}  # steps divided by
LOSS_KEY = {"ours": "train_loss", "mlflow-async": "train_loss", "mlflow-sync": "train_loss"}
LR_KEY = {"ours": "lr/SGD/pg0", "mlflow-async": "lr-SGD", "mlflow-sync": "lr-SGD"}


class MLP(pl.LightningModule):
    def __init__(self, data: TensorDataset, self_log: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        self.data = data
        self.self_log = self_log

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        if self.self_log:
            self.log("train_loss", loss)
        return loss

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=BATCH)

    def configure_optimizers(self):
        return lightning_lrsched.configure_optimizers(
            self,
            optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9},
            scheduler={"name": "onecycle"},
        )


class NullLogger(Logger):
    """Receives every point and keeps none (Lightning's logging path, nothing behind it)."""

    name = "null"
    version = "0"

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        pass

    def log_hyperparams(self, params: object, *args: object, **kwargs: object) -> None:
        pass


class Timer(Callback):
    """Wall and process CPU seconds (all threads) from the start of step ``SKIP`` to the start
    of the last batch."""

    def __init__(self) -> None:
        self.start = self.end = (0.0, 0.0)
        self.steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = (time.perf_counter(), time.process_time())
        if trainer.global_step == SKIP:
            self.start = now
        self.end, self.steps = now, trainer.global_step - SKIP

    def result(self) -> tuple[float, float]:
        """(steps per second, CPU seconds per step)."""
        steps = max(self.steps, 1)
        return steps / (self.end[0] - self.start[0] or 1e-9), (self.end[1] - self.start[1]) / steps


ACCELERATOR = ["cpu"]  # --accelerator gpu: the same comparison on a GPU (scripts/gpu-check.sh)


def make_logger(name: str, uri: str) -> Any:
    if name == "self.log+null":
        return NullLogger()
    if name in ("self.log+ours", "ours"):
        return MLflowTracker(name, tracking_uri=uri)
    if name.startswith("mlflow-"):
        return MLFlowLogger(name, tracking_uri=uri, synchronous=name == "mlflow-sync")
    return False


def callbacks_for(name: str) -> list[Callback]:
    if name in ("self.log+ours", "ours"):
        extra: list[Callback] = [StepMetrics()] if name == "ours" else []
        return [*extra, LRLogger(), RunTracking()]
    if name == "self.log+null":
        return [LRLogger()]
    if name.startswith("mlflow-"):
        return [LearningRateMonitor(logging_interval="step")]
    return []


def points_in_store(logger: Any, key: str) -> int:
    if isinstance(logger, MLflowTracker):
        client, run_id = logger.experiment, logger.version
    else:
        client, run_id = logger.experiment, logger.run_id
    return len(client.get_metric_history(run_id, key))


def drain(name: str, logger: Any, steps: int) -> float:
    """Seconds until every step's loss and rate of this fit are in the store."""
    start = time.perf_counter()
    if name not in LOSS_KEY:
        return 0.0
    if isinstance(logger, MLflowTracker):
        assert logger.flush(timeout=300), "the tracker did not flush"
    else:
        mlflow.flush_async_logging()
    deadline = start + 300
    while time.perf_counter() < deadline:
        if all(points_in_store(logger, k) >= steps for k in (LOSS_KEY[name], LR_KEY[name])):
            return time.perf_counter() - start
        time.sleep(0.05)
    raise AssertionError(f"{name}: not every point reached the store in 300 s")


def fit_once(name: str, data: TensorDataset, uri: str, tmp: str) -> tuple[float, ...]:
    """One fit: (steps/s and CPU s/step inside the loop, seconds for the fit, to drain)."""
    timer = Timer()
    logger = make_logger(name, uri)
    options: dict[str, Any] = {"logger": logger}
    if name != "ours" and logger:
        options["log_every_n_steps"] = 1
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        callbacks=[timer, *callbacks_for(name)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator=ACCELERATOR[0],
        devices=1,
        default_root_dir=tmp,
        **options,
    )
    torch.manual_seed(0)
    model = MLP(data, self_log=name not in ("none", "ours"))
    gc.collect()
    start = time.perf_counter()
    trainer.fit(model)
    seconds = time.perf_counter() - start
    steps = trainer.global_step
    return *timer.result(), seconds, drain(name, logger, steps)


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds and steps: a smoke test")
    parser.add_argument("--accelerator", default="cpu", help="cpu (default) or gpu")
    parser.add_argument("--rounds", type=int, help="default 9 (--quick: 1)")
    args = parser.parse_args(argv)
    ACCELERATOR[0] = args.accelerator
    rounds = args.rounds or (1 if args.quick else 9)
    steps_per_epoch = 30 if args.quick else 300
    torch.set_num_threads(1)
    quiet()
    global SKIP
    SKIP = 10 if args.quick else SKIP
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(steps_per_epoch * BATCH, 64, generator=generator)
    data = TensorDataset(x, torch.randint(0, 10, (len(x),), generator=generator))
    short = {n: TensorDataset(*data[: len(x) // d]) for n, d in SHORT.items()}
    warm_up = TensorDataset(*data[: (SKIP // EPOCHS + 2) * BATCH])
    samples: dict[str, list[tuple[float, ...]]] = {name: [] for name in CONFIGS}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/x.db"
        for r in range(rounds + 1):  # round 0 is the warm-up, not recorded
            order = CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]
            for name in order:
                subset = short.get(name, data) if r else warm_up
                sample = fit_once(name, subset, uri, tmp)
                if r:
                    samples[name].append(sample)
    steps = EPOCHS * steps_per_epoch
    shortened = ", ".join(f"{n}: {steps // d}" for n, d in SHORT.items())
    print(
        f"{rounds} rounds x {steps} steps ({shortened}; the first {SKIP} untimed), batch "
        f"{BATCH}, 1 torch thread, {ACCELERATOR[0]}, load average {load:.1f} -> "
        f"{os.getloadavg()[0]:.1f}"
    )
    header = ("config", "steps/s", "ratio", "CPU ms/step", "CPU ratio", "fit s", "drain s")
    widths = ("<15", ">9", ">8", ">13", ">11", ">7", ">9")
    print("".join(f"{h:{w}}" for h, w in zip(header, widths, strict=True)))
    print("-" * 72)
    base = samples["none"]
    wall: dict[str, list[float]] = {}
    for name in CONFIGS:
        rows = samples[name]
        wall[name] = [s[0] / b[0] for s, b in zip(rows, base, strict=True)]
        cpu = statistics.median([b[1] / s[1] for s, b in zip(rows, base, strict=True)])
        print(
            f"{name:<15}{statistics.median(s[0] for s in rows):>9.0f}"
            f"{statistics.median(wall[name]):>8.3f}"
            f"{1e3 * statistics.median(s[1] for s in rows):>13.3f}{cpu:>11.3f}"
            f"{statistics.median(s[2] for s in rows):>7.2f}"
            f"{statistics.median(s[3] for s in rows):>9.2f}"
        )
    print("\nratio: steps/s over none's, paired per round (median); CPU ratio: the same for")
    print("steps per CPU second of the training process (all its threads)")
    print(f"ours/none per round: {', '.join(f'{v:.3f}' for v in sorted(wall['ours']))}")
    ratio = statistics.median(wall["ours"])
    verdict = "MET" if ratio >= TARGET else "MISSED"
    print(f"ours/none {ratio:.3f} (target >= {TARGET}): {verdict}")
    return ratio


if __name__ == "__main__":
    main()
