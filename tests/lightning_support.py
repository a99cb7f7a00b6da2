"""A tiny real training setup for integration tests: model, data and a rate recorder."""

from __future__ import annotations

import os

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning_lrsched


def regression_data(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)
    return TensorDataset(x, y.unsqueeze(1))


class TinyModule(pl.LightningModule):
    """Linear regression with two named param groups. ``scheduler=None``: optimizer only."""

    def __init__(self, scheduler=None, optimizer=None, lr=0.05, batch_size=8, n=64, **helper):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.scheduler_config = scheduler
        self.optimizer_config = optimizer or {"name": "sgd", "lr": lr, "momentum": 0.9}
        self.helper = helper
        self.batch_size = batch_size
        self.n = n
        self.val_offset = 0.0  # added to the validation loss (per rank, in DDP tests)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y) + self.val_offset)

    def train_dataloader(self):
        return DataLoader(regression_data(self.n), batch_size=self.batch_size)

    def val_dataloader(self):
        return DataLoader(regression_data(32, seed=1), batch_size=16)

    def configure_optimizers(self):
        if self.scheduler_config is None:
            return lightning_lrsched.lightning.build_optimizer(self, self.optimizer_config)
        return lightning_lrsched.configure_optimizers(
            self, optimizer=self.optimizer_config, scheduler=self.scheduler_config, **self.helper
        )


class RateRecorder(pl.Callback):
    """Records, for every optimizer step, the rate and momentum of every group."""

    def __init__(self):
        self.rates: list[tuple[int, tuple[float, ...], tuple[float, ...]]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        groups = optimizer.param_groups
        self.rates.append(
            (
                trainer.global_step,
                tuple(g["lr"] for g in groups),
                tuple(g["betas"][0] if "betas" in g else g.get("momentum", 0.0) for g in groups),
            )
        )


class PointsLogger(Logger):
    """A logger that keeps every point it is given, ``(step, metrics)``. Not rank-zero-only:
    under DDP it records the calls of its own rank."""

    def __init__(self):
        super().__init__()
        self.points: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "points"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.points.append((step, dict(metrics)))


def trainer(tmp_path, callbacks=(), **kwargs) -> pl.Trainer:
    options = dict(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,
    )
    options.update(kwargs)
    return pl.Trainer(callbacks=list(callbacks), **options)


# A launcher's variables in the test's own environment would make Lightning think a DDP script
# is one rank of someone else's job instead of launching its other ranks itself.
DIST_VARS = (
    "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
    "MASTER_ADDR", "MASTER_PORT", "PL_GLOBAL_SEED",
)  # fmt: skip


def subprocess_env() -> dict[str, str]:
    """The environment for a training subprocess: no launcher variables, one torch thread."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    env["OMP_NUM_THREADS"] = "1"
    return env
