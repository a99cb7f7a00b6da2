"""The app pre-checks the horizon Lightning will train, read from the Trainer the config builds.

What is pinned down:

1. a matrix (devices 1 and 2 × strategy auto / ddp_spawn × accumulate_grad_batches 1 and 3 ×
   limit_train_batches int and float × max_steps / max_epochs): the horizon and epoch length
   :func:`check_config` reports, per rank, equal the count worked out here by hand from the
   data set's size (the per-rank share under DDP included);
2. real runs of a subset through the app, in this process, for one device: they run exactly the
   pre-checked number of optimizer steps (two ranks, launched every way: ``test_launch.py``);
3. the pre-check starts no process (no DDP launch, no data-loader worker, no process group);
4. the two places that reach into Lightning's internals (:func:`attach_for_fit`,
   :func:`relaunches_command`) fail here first when Lightning changes what they mirror.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import multiprocessing
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch.distributed
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lightning_lrsched.app.horizon import attach_for_fit, horizon, relaunches_command
from lightning_lrsched.app.run import check_config
from lightning_lrsched.app.schemas import register_configs
from lightning_lrsched.app.train import CONFIG_PATH
from lightning_lrsched.lightning.trainer_info import training_horizon
from lightning_lrsched.tasks import MLP, Classifier, DigitsDataModule

TESTS = Path(__file__).resolve().parent
CORES = os.cpu_count() or 1
TRAIN_SIZE = 1077  # digits' training split with the default fractions
BATCH = 64
BASE = ["logger=none", "callbacks=none", "scheduler=cosine", "test=false"]
# the data have 17 batches on one process, 9 per rank on two: int(17 * 0.5) = 8, int(9 * 0.5) = 4
LIMITS = (5, 0.5)
MAX_STEPS, MAX_EPOCHS = 7, 2


def expected(devices: int, accumulate: int, limit: int | float, stop: str) -> tuple[int, int]:
    """(total, per epoch) optimizer steps on each rank, worked out by hand: the distributed
    sampler pads the data to an equal share per rank; Lightning truncates a fractional batch
    limit and steps on the last, incomplete accumulation of an epoch."""
    batches = math.ceil(math.ceil(TRAIN_SIZE / devices) / BATCH)
    batches = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
    per_epoch = math.ceil(batches / accumulate)
    return (MAX_STEPS if stop == "max_steps" else per_epoch * MAX_EPOCHS), per_epoch


def overrides(devices: int, strategy: str, accumulate: int, limit: float, stop: str) -> list[str]:
    stopping = (
        [f"trainer.max_steps={MAX_STEPS}", "trainer.max_epochs=null"]
        if stop == "max_steps"
        else [f"trainer.max_epochs={MAX_EPOCHS}"]
    )
    return [
        f"trainer.devices={devices}",
        f"trainer.strategy={strategy}",
        f"trainer.accumulate_grad_batches={accumulate}",
        f"trainer.limit_train_batches={limit}",
        *stopping,
        *BASE,
    ]


@pytest.fixture
def hydra_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_cache: Path) -> Iterator[None]:
    register_configs()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(data_cache))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


def prechecked(argv: list[str]) -> tuple[int | None, int | None]:
    checked = check_config(compose("train", overrides=argv))
    return checked.total_steps, checked.steps_per_epoch


MATRIX = list(
    itertools.product((1, 2), ("auto", "ddp_spawn"), (1, 3), LIMITS, ("max_steps", "max_epochs"))
)


def test_digits_training_split_size():
    data = DigitsDataModule(batch_size=BATCH)
    data.setup("fit")
    assert len(data.train_set) == TRAIN_SIZE


@pytest.mark.skipif(CORES < 2, reason="the checks refuse 2 CPU processes on one core")
def test_prechecked_horizon_matrix(hydra_conf):
    wrong = []
    for devices, strategy, accumulate, limit, stop in MATRIX:
        argv = overrides(devices, strategy, accumulate, limit, stop)
        got = prechecked(argv)
        want = expected(devices, accumulate, limit, stop)
        if got != want:
            wrong.append((" ".join(argv[:5]), got, want))
    assert wrong == [], wrong


# -- real runs: every rank runs the pre-checked number of optimizer steps ---------------------


def ranks(out: Path, world_size: int) -> list[dict]:
    records = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    assert [r["rank"] for r in records] == list(range(world_size)), records
    assert {r["world_size"] for r in records} == {world_size}
    return records


REAL_IN_PROCESS = [(1, "auto", 3, 0.5, "max_epochs"), (1, "auto", 1, 5, "max_steps")]


@pytest.mark.parametrize("case", REAL_IN_PROCESS, ids=lambda c: "-".join(map(str, c)))
def test_one_process_runs_the_prechecked_steps(case, hydra_conf, tmp_path, capfd):
    from lightning_lrsched.app.train import main

    argv = overrides(*case)
    total, _ = prechecked(argv)
    out = tmp_path / "steps"
    recorder = [
        "+callbacks.steps._target_=horizon_support.StepRecorder",
        f"+callbacks.steps.out={out}",
    ]
    GlobalHydra.instance().clear()
    saved = list(sys.argv)
    sys.argv = ["lrsched-train", *argv, *recorder]
    try:
        main()
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()
    (record,) = ranks(out, 1)
    assert record["global_step"] == record["estimated"] == total


# -- the pre-check starts nothing -------------------------------------------------------------

_LAUNCHES = ("os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "subprocess.Popen")
_seen: list[str] = []
_watching: list[bool] = []
_hooked: list[bool] = []


def _audit(event: str, args: tuple) -> None:
    if _watching and event in _LAUNCHES:
        _seen.append(event)


def _install_audit_hook() -> None:
    if not _hooked:
        sys.addaudithook(_audit)  # audit hooks cannot be removed: one for the session
        _hooked.append(True)


def _children() -> set[int]:
    found: set[int] = set()
    for task in Path("/proc/self/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found |= {int(pid) for pid in text.split()}
    return found


@pytest.mark.skipif(CORES < 2, reason="the checks refuse 2 CPU processes on one core")
@pytest.mark.parametrize(
    "argv",
    [
        ["trainer=ddp", "data.num_workers=2"],
        ["trainer.devices=2", "data.num_workers=2"],
        ["trainer=ddp_spawn", "data.num_workers=2"],
    ],
    ids=" ".join,
)
def test_precheck_launches_nothing(argv, hydra_conf):
    _install_audit_hook()
    before = _children()
    _seen.clear()
    _watching.append(True)
    try:
        checked = check_config(compose("train", overrides=[*argv, *BASE]))
    finally:
        _watching.clear()
    assert checked.total_steps is not None
    assert _seen == []  # no fork, exec or subprocess: no DDP launch, no loader worker
    assert _children() <= before  # none started (one of an earlier test's may have ended)
    assert multiprocessing.active_children() == []
    assert not torch.distributed.is_initialized()


def test_launch_watch_sees_loader_workers():
    """The watch above is not blind: a loader with workers, iterated, is seen launching them."""
    from torch.utils.data import DataLoader

    _install_audit_hook()
    _seen.clear()
    _watching.append(True)
    try:
        assert [int(x) for x in DataLoader(range(4), num_workers=2)] == [0, 1, 2, 3]
    finally:
        _watching.clear()
    assert {"os.fork", "os.posix_spawn", "subprocess.Popen"} & set(_seen), _seen


# -- the Lightning internals the app relies on ------------------------------------------------


def _trainer(**options) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **options,
    )


class _Seen(pl.Callback):
    """What a real fit's Trainer says its horizon is, once fit has attached everything."""

    horizon: tuple[int | None, int | None] | None = None
    max_epochs: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.horizon = training_horizon(trainer)
        self.max_epochs = trainer.max_epochs


@pytest.mark.parametrize(
    "options",
    [
        {"max_epochs": 2, "limit_train_batches": 0.5, "accumulate_grad_batches": 3},
        {"max_epochs": None, "max_steps": 5, "limit_train_batches": 3},
    ],
    ids=["epochs", "steps"],
)
def test_attach_for_fit_mirrors_lightning(options, tmp_path):
    """The state attach_for_fit reaches gives the horizon a real fit sees; and the lines of
    Lightning it mirrors are still there, in that order, before anything is launched."""
    checked = _trainer(**options)
    predicted = horizon(checked, Classifier(MLP(64, 10)), DigitsDataModule(batch_size=BATCH))
    assert checked.lightning_module is not None and checked.datamodule is not None

    seen = _Seen()
    real = _trainer(**options, callbacks=[seen], limit_val_batches=0, default_root_dir=tmp_path)
    real.fit(Classifier(MLP(64, 10)), datamodule=DigitsDataModule(batch_size=BATCH))
    assert seen.horizon == predicted
    assert checked.max_epochs == seen.max_epochs

    # the private pieces used, where attach_for_fit expects them
    from lightning.pytorch.loops.utilities import _parse_loop_limits
    from lightning.pytorch.trainer.connectors.data_connector import _DataConnector

    assert list(inspect.signature(_parse_loop_limits).parameters) == [
        "min_steps", "max_steps", "min_epochs", "max_epochs", "trainer",
    ]  # fmt: skip
    assert "datamodule" in inspect.signature(_DataConnector.attach_data).parameters
    fit_impl = inspect.getsource(pl.Trainer._fit_impl)
    assert "self._data_connector.attach_data(" in fit_impl
    run = inspect.getsource(pl.Trainer._run)
    order = [
        "_parse_loop_limits(",
        "self.strategy.connect(model)",
        "self.strategy.setup_environment()",
    ]
    positions = [run.index(line) for line in order]
    assert positions == sorted(positions), "Trainer._run changed: review attach_for_fit"
    fit = inspect.getsource(pl.Trainer.fit)
    for line in ("self.state.fn = TrainerFn.FITTING", "self.training = True"):
        assert line in fit


def test_attach_for_fit_leaves_lightning_to_count_the_default_epochs():
    trainer = _trainer(max_epochs=None, limit_train_batches=2)
    attach_for_fit(trainer, Classifier(MLP(64, 10)), DigitsDataModule(batch_size=BATCH))
    assert trainer.max_epochs == 1000  # Lightning's default when neither limit is given
    assert training_horizon(trainer) == (2000, 2)


@pytest.mark.skipif(CORES < 2, reason="two CPU devices")
def test_relaunches_command_tracks_lightnings_launchers(monkeypatch):
    """True exactly for the strategies whose extra processes Lightning starts by re-running
    the command line; torchrun/SLURM-made processes are not re-run."""
    assert relaunches_command(_trainer(devices=2, strategy="ddp"))
    assert relaunches_command(_trainer(devices=2))  # auto on 2 CPU devices is that DDP
    assert not relaunches_command(_trainer(devices=2, strategy="ddp_spawn"))
    assert not relaunches_command(_trainer(devices=1))
    assert not relaunches_command(_trainer(devices=1, strategy="ddp"))
    # the class it names is Lightning's launcher for DDP's default start method
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    assert isinstance(
        _trainer(devices=2, strategy="ddp").strategy.launcher, _SubprocessScriptLauncher
    )
    # under torchrun the processes exist already (Lightning reads torchrun's variables)
    for key, value in {
        "TORCHELASTIC_RUN_ID": "1", "LOCAL_RANK": "0", "RANK": "0", "GROUP_RANK": "0",
        "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29555",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    trainer = _trainer(devices=2, strategy="ddp")
    assert trainer.strategy.cluster_environment.creates_processes_externally
    assert not relaunches_command(trainer)
