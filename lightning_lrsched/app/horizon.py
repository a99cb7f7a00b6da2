"""The training horizon as Lightning counts it, read from a real Trainer before anything runs.

The app pre-checks a schedule against the number of optimizer steps the run will take (a
``warmup`` longer than training is refused before the first step). Re-deriving that number from
the config would copy Lightning's arithmetic (the per-rank share of the data under DDP, how
``limit_train_batches`` rounds, the last incomplete accumulation, ``max_epochs`` defaults) and
drift from it; instead the app builds the Trainer the config describes, attaches the module and
data module to it as ``Trainer.fit`` does, and asks it: :func:`horizon` returns
:func:`lightning_lrsched.lightning.trainer_info.training_horizon`, the very function the schedule
calls inside ``configure_optimizers`` during training, so the two cannot disagree.

Nothing is launched: no process group is initialised, no DDP process started, no data-loader
worker process created (see :func:`horizon`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import lightning.pytorch as pl

from ..lightning.trainer_info import training_horizon


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's start-up banners and advice (GPU available, few workers, ...) silenced:
    during a pre-check they would bury the one line that matters."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [log.level for log in loggers]
    try:
        for log in loggers:
            log.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def attach_for_fit(
    trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule
) -> None:
    """Put ``trainer`` in the state ``trainer.fit(module, datamodule=datamodule)`` reaches just
    before it sets up the strategy's environment (which, under DDP, would start processes).

    Lightning has no public way to ask a Trainer "how many optimizer steps would ``fit`` take?"
    outside ``fit``: ``estimated_stepping_batches`` needs the module and the data attached and
    the loop limits parsed, which only ``fit`` does. This is the ONE place that reaches into
    Lightning's internals to do it; each line mirrors a line of ``Trainer.fit`` /
    ``Trainer._fit_impl`` / ``Trainer._run`` (Lightning 2.2-2.6), and
    ``tests/test_horizon.py::test_attach_for_fit_mirrors_lightning`` fails when they change.
    """
    from lightning.pytorch.loops.utilities import _parse_loop_limits
    from lightning.pytorch.trainer.states import TrainerFn, TrainerStatus

    # Trainer.fit
    trainer.state.fn = TrainerFn.FITTING
    trainer.state.status = TrainerStatus.RUNNING
    trainer.training = True
    # Trainer._fit_impl: links the data (module or data module) to the trainer's loops
    trainer._data_connector.attach_data(module, datamodule=datamodule)
    # Trainer._run: max_epochs=None means 1000 epochs, or no epoch limit with max_steps
    min_epochs, max_epochs = _parse_loop_limits(
        trainer.min_steps, trainer.max_steps, trainer.min_epochs, trainer.max_epochs, trainer
    )
    trainer.fit_loop.min_epochs = min_epochs
    trainer.fit_loop.max_epochs = max_epochs
    trainer.strategy.connect(module)
    # Trainer._run then prepares and sets up the data (rank zero of each node prepares)
    datamodule.prepare_data()
    datamodule.setup("fit")


def relaunches_command(trainer: pl.Trainer) -> bool:
    """True when ``fit`` would start this Trainer's extra processes by re-running the command
    line (``strategy=ddp``, or ``auto`` with several devices): in a Hydra sweep each of them
    would run the whole sweep again.

    Lightning says which launcher a strategy uses only through its class, and the class is
    private (``_SubprocessScriptLauncher``); this is the one place that names it.
    ``tests/test_horizon.py::test_relaunches_command_tracks_lightnings_launchers`` fails when
    Lightning renames or restructures it. Under torchrun or SLURM the processes already exist
    (``creates_processes_externally``) and nothing is re-run.
    """
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    strategy = trainer.strategy
    launcher = strategy.launcher
    if not isinstance(launcher, _SubprocessScriptLauncher):
        return False
    environment = getattr(strategy, "cluster_environment", None)
    externally = environment is not None and environment.creates_processes_externally
    return not externally and trainer.num_devices > 1


def horizon(
    trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule
) -> tuple[int | None, int | None]:
    """(total optimizer steps, optimizer steps per epoch) of ``trainer.fit(module, datamodule)``
    on this process's rank, from Lightning's own count; ``None`` where training has none.

    ``trainer`` is consumed: it is left attached and must not be used to train. Loading the
    training data creates its iterator; give a data module whose loaders start no worker
    processes (``num_workers=0``) so that the check starts none. The number of batches does
    not depend on it.
    """
    with quiet_lightning():
        attach_for_fit(trainer, module, datamodule)
        return training_horizon(trainer)
