"""Training throughput with per-step logging: MLflowTracker + LRLogger vs Lightning's MLFlowLogger.

One Lightning loop (a small MLP on random in-memory data, batch 32, SGD + cosine schedule, no
validation, checkpoints, progress bar or summary) is fitted under four configurations:

    none        no logger
    null/1      a logger that writes nothing + LRLogger, log_every_n_steps=1: the cost of
                Lightning's own per-step logging path, the floor for any per-step logger
    ours        MLflowTracker (SQLite) + LRLogger, log_every_n_steps=1
    mlflow/1    Lightning's MLFlowLogger (SQLite) + LearningRateMonitor("step"), log_every_n_steps=1
    mlflow/50   the same with Lightning's default log_every_n_steps=50

Every configuration logs the training loss (``self.log``) and the rate. A short warm-up fit per
configuration creates the store (one SQLite file), experiments and runs (loggers are reused, so
later fits log to the same run); then rounds of fits run interleaved, rotating the order each
round. Throughput is timed inside the loop, from the start of batch ``SKIP`` to the start of the
last batch, so a fit's setup and teardown (the tracker's final flush included) are not in it;
they are in the "fit s" column. ``tracker.flush()`` after every fit keeps rounds independent.
Reported: the median steps/s over rounds and the median of the per-round ratios to "none"
(paired), and the same for process CPU time per step (all threads: the tracker's writer too),
which other load on the machine disturbs much less than wall time.

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

import lightning.pytorch as pl
import mlflow  # noqa: F401  (configures its loggers on import; quiet() then silences them)
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger, MLFlowLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning_lrsched
from lightning_lrsched.callbacks import LRLogger
from lightning_lrsched.tracking import MLflowTracker

TARGET = 0.97  # minimum steps/s ratio ours/none
BATCH = 32
SKIP = 10  # batches left out of the timed window at the start of every fit
CONFIGS = ("none", "null/1", "ours", "mlflow/1", "mlflow/50")
SLOW = "mlflow/1"  # a store write per step: a third of the steps (its rate is steady anyway)


class MLP(pl.LightningModule):
    def __init__(self, data: TensorDataset) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                                 nn.Linear(64, 1))  # fmt: skip
        self.data = data

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=BATCH)

    def configure_optimizers(self):
        return lightning_lrsched.configure_optimizers(
            self,
            optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
            scheduler={"name": "cosine", "warmup": "10%"},
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
    """Wall and process CPU seconds (all threads) from the start of batch ``SKIP`` to the start
    of the last batch."""

    def __init__(self) -> None:
        self.wall = self.cpu = (0.0, 0.0)
        self.last = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        if batch_idx == SKIP:
            self.wall, self.cpu = (wall, wall), (cpu, cpu)
        self.wall, self.cpu, self.last = (self.wall[0], wall), (self.cpu[0], cpu), batch_idx

    def result(self) -> tuple[float, float]:
        """(steps per second, CPU seconds per step)."""
        steps = max(self.last - SKIP, 1)
        return steps / (self.wall[1] - self.wall[0] or 1e-9), (self.cpu[1] - self.cpu[0]) / steps


def make_loggers(tmp: str) -> dict[str, object]:
    """One SQLite store (created once), an experiment per logger; every fit waits until the
    store is idle, so the loggers never write at the same time."""
    uri = f"sqlite:///{tmp}/x.db"
    return {
        "ours": MLflowTracker("ours", tracking_uri=uri),
        "mlflow/1": MLFlowLogger("lightning-1", tracking_uri=uri),
        "mlflow/50": MLFlowLogger("lightning-50", tracking_uri=uri),
    }


ACCELERATOR = ["cpu"]  # --accelerator gpu: the same comparison on a GPU (scripts/gpu-check.sh)


def fit_once(name: str, loggers: dict, data: TensorDataset, tmp: str) -> tuple[float, ...]:
    """One fit of ``len(data) // BATCH`` steps: (steps/s and CPU s/step inside the loop,
    seconds for the whole fit)."""
    timer = Timer()
    callbacks: list[Callback] = [timer]
    options: dict = {"logger": False}
    if name in ("ours", "null/1"):
        logger = NullLogger() if name == "null/1" else loggers[name]
        options = {"logger": logger, "log_every_n_steps": 1}
        callbacks.append(LRLogger())
    elif name.startswith("mlflow/"):
        options = {"logger": loggers[name], "log_every_n_steps": int(name.split("/")[1])}
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=callbacks,
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
    model = MLP(data)
    gc.collect()
    start = time.perf_counter()
    trainer.fit(model)
    seconds = time.perf_counter() - start
    if name == "ours":
        assert loggers[name].flush(timeout=120), "the tracker did not flush"
    return *timer.result(), seconds


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke test")
    parser.add_argument("--accelerator", default="cpu", help="cpu (default) or gpu")
    args = parser.parse_args()
    ACCELERATOR[0] = args.accelerator
    rounds, steps = (2, 40) if args.quick else (9, 300)
    slow_steps = max(steps // 3, 3 * SKIP)
    torch.set_num_threads(1)
    quiet()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(steps * BATCH, 32, generator=generator)
    data = TensorDataset(x, x[:, :1] - x[:, 1:2] + 0.1 * torch.randn(len(x), 1))
    warm_up = TensorDataset(*data[: 2 * SKIP * BATCH])
    short = TensorDataset(*data[: slow_steps * BATCH])
    samples: dict[str, list[tuple[float, ...]]] = {name: [] for name in CONFIGS}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        loggers = make_loggers(tmp)
        for r in range(rounds + 1):  # round 0 is the warm-up, not recorded
            order = CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]
            for name in order:
                subset = (short if name == SLOW else data) if r else warm_up
                sample = fit_once(name, loggers, subset, tmp)
                if r:
                    samples[name].append(sample)
        tracker = loggers["ours"]
        tracker.flush()
        client, run_id = tracker.experiment, tracker.version
        written = sum(
            len(client.get_metric_history(run_id, key))
            for key in client.get_run(run_id).data.metrics
        )
    print(
        f"{rounds} rounds x {steps} steps ({SLOW}: {slow_steps}; the first {SKIP} untimed), "
        f"batch {BATCH}, 1 torch thread, load average {load:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    header = ("config", "steps/s", "ratio", "CPU ms/step", "CPU ratio", "fit s")
    widths = ("<11", ">9", ">8", ">13", ">11", ">7")
    print("".join(f"{h:{w}}" for h, w in zip(header, widths, strict=True)))
    print("-" * 59)
    base = samples["none"]
    wall: dict[str, list[float]] = {}
    for name in CONFIGS:
        rows = samples[name]
        wall[name] = [s[0] / b[0] for s, b in zip(rows, base, strict=True)]
        cpu = statistics.median([b[1] / s[1] for s, b in zip(rows, base, strict=True)])
        print(
            f"{name:<11}{statistics.median(s[0] for s in rows):>9.0f}"
            f"{statistics.median(wall[name]):>8.3f}"
            f"{1e3 * statistics.median(s[1] for s in rows):>13.2f}{cpu:>11.3f}"
            f"{statistics.median(s[2] for s in rows):>7.2f}"
        )
    print("\nratio: steps/s over none's, paired per round (median); CPU ratio: the same for")
    print("steps per CPU second of the training process (all its threads; ours writes to the")
    print("store from a separate process, on another core when there is one)")
    print(f"ours/none per round: {', '.join(f'{v:.3f}' for v in sorted(wall['ours']))}")
    print(f"points in the store from the tracker: {written}")
    floor = statistics.median(wall["null/1"])
    print(f"ours/null-logger: {statistics.median(wall['ours']) / floor:.3f} (the store's own cost)")
    ratio = statistics.median(wall["ours"])
    verdict = "MET" if ratio >= TARGET else "MISSED"
    print(f"ours/none {ratio:.3f} (target >= {TARGET}): {verdict}")


if __name__ == "__main__":
    main()
