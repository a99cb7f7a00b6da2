"""The Hydra training app: ``lrsched train`` (also ``python -m lightning_lrsched.app.train``).

Three layers, cheapest first:

1. every option of every config group composes (Hydra's compose API, as the app composes) and
   passes :func:`check_config`, which builds the data module, the network, the optimizer and the
   scheduler;
2. a table of bad command lines, run in-process through :func:`main` (the same code as the
   console script, without the interpreter start-up): each is one line on stderr naming the
   key and what is allowed, exit code 2, no traceback, no Hydra output directory and no MLflow
   run left RUNNING;
3. a few real, short trainings as subprocesses (started together, since each spends most of
   its time importing Lightning), checked through what they print and what they leave in the
   MLflow store or the CSV log.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict
from optimizers import make_optimizer

from lightning_lrsched import STRATEGIES, ConfigError, build_scheduler
from lightning_lrsched.app.precheck import precheck
from lightning_lrsched.app.run import check_config
from lightning_lrsched.app.schemas import register_configs
from lightning_lrsched.app.train import CONFIG_PATH, main
from lightning_lrsched.lightning.optimizers import build_optimizer
from lightning_lrsched.lightning.schedule_free import is_schedule_free

REPO = Path(__file__).resolve().parents[1]
CONF = Path(CONFIG_PATH)
GROUPS = (
    "scheduler",
    "optimizer",
    "trainer",
    "logger",
    "callbacks",
    "data",
    "model",
    "experiment",
    "hparams_search",
)
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
CORES = os.cpu_count() or 1
ERROR_PREFIX = "lrsched train: error: "


# -- shared helpers ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_cache: Path) -> Iterator[None]:
    """Each test in its own cwd and MLflow store; Hydra's singletons left as found."""
    register_configs()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("XDG_CACHE_HOME", str(data_cache))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # main() sets it with setdefault
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # run_app() sets it, as a shell would
    yield
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None  # a set HydraConfig would resolve ${hydra:...} for others


@pytest.fixture
def hydra_conf() -> Iterator[None]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        yield


def compose_job(overrides: list[str], output_dir: Path) -> DictConfig:
    """The config as Hydra hands it to the app: ``hydra.runtime`` set, the ``hydra`` node gone."""
    cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def mlflow_runs(db: Path) -> list:
    """Every run (active or deleted) in the SQLite store ``db``; none if there is no store."""
    if not db.exists():
        return []
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(f"sqlite:///{db}")
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(experiments, run_view_type=ViewType.ALL) if experiments else []


@dataclass
class Result:
    code: int | str | None
    out: str
    err: str


def run_app(argv: list[str], capfd: pytest.CaptureFixture[str]) -> Result:
    """``lrsched-train <argv>`` in this process (fd-level capture, as a terminal would see)."""
    code: int | str | None = 0
    sys.argv = ["lrsched-train", *argv]  # restored by _isolated
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code
    except Exception as err:  # the user would see a traceback
        out, err_text = capfd.readouterr()
        pytest.fail(f"lrsched train {' '.join(argv)} raised {err!r}; stderr: {err_text}")
    out, err_text = capfd.readouterr()
    return Result(code, out, err_text)


# -- the conf/ tree ---------------------------------------------------------------------------


def test_top_level_conf_is_the_packaged_conf():
    assert (REPO / "conf").resolve() == CONF.resolve()


def test_groups_offer_the_documented_options():
    def options(group: str) -> set[str]:
        return {stem for g, stem in OPTIONS if g == group}

    assert set(STRATEGIES) <= options("scheduler")  # one file per strategy, plus recipes
    assert {"warmup_cosine"} <= options("scheduler")
    assert {"cpu", "gpu", "ddp", "ddp_spawn", "slurm"} <= options("trainer")
    assert {"mlflow", "csv", "none"} <= options("logger")
    assert {"sgd", "adamw"} <= options("optimizer")
    assert {"digits", "mnist1d"} <= options("data")
    assert {"mlp", "cnn1d"} <= options("model")
    assert {"mnist1d_cnn"} <= options("experiment")


# -- 1. every option composes and builds ------------------------------------------------------


SCHEDULER_OPTIONS = [option for group, option in OPTIONS if group == "scheduler"]


@pytest.mark.parametrize("option", SCHEDULER_OPTIONS)
def test_every_scheduler_option_moves_the_rate_in_the_default_app(option, hydra_conf, tmp_path):
    """Picking an option in the default app gives a visibly scheduled curve, not a constant
    rate (``scheduler=cyclic`` once peaked at the optimizer's own rate: flat). A plateau
    schedule is fed a validation metric that never improves, once per epoch."""
    cfg = compose_job([f"scheduler={option}", "logger=none"], tmp_path / "job")
    checked = check_config(cfg)
    plain = OmegaConf.to_container(cfg, resolve=True)
    optimizer = build_optimizer(checked.net, plain["optimizer"])
    scheduler = build_scheduler(
        optimizer,
        plain["scheduler"],
        total_steps=checked.total_steps,
        steps_per_epoch=checked.steps_per_epoch,
    )
    # gradients of a fixed batch of the digits' shape, for a schedule that adapts to them
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 64, generator=g), torch.randint(0, 10, (32,), generator=g)
    rates = []
    for step in range(checked.total_steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(checked.net(x), y).backward()
        optimizer.step()
        scheduler.step()
        if scheduler.is_plateau and (step + 1) % checked.steps_per_epoch == 0:
            scheduler.observe(1.0)
    distinct = sorted(set(rates))
    assert len(distinct) >= 3, f"scheduler={option}: the rate takes only {distinct}"
    # visibly: twice the lowest rate at least (an adaptive rate: 10% apart)
    factor = 1.1 if scheduler.gradient_driven is not None else 2.0
    assert distinct[0] == 0 or distinct[-1] >= factor * distinct[0], distinct


@pytest.mark.parametrize(
    ("overrides", "name", "lr"),
    [
        ([], "adamw", 0.01),  # the default experiment's rate for its optimizer
        (["optimizer=sgd"], "sgd", 0.1),  # another optimizer: its own option's rate
        (["experiment=mnist1d_cnn"], "adamw", 0.03),
        (["experiment=mnist1d_cnn", "optimizer=adam"], "adam", 0.001),
        (["optimizer=sgd", "optimizer.lr=0.3"], "sgd", 0.3),
        (["experiment=none"], "adamw", 0.001),
    ],
)
def test_an_experiments_rate_goes_with_its_own_optimizer_only(overrides, name, lr, hydra_conf):
    cfg = compose("train", overrides=overrides)
    assert (cfg.optimizer.name, cfg.optimizer.lr) == (name, lr)


def test_cyclic_that_cannot_move_says_so():
    optimizer = make_optimizer((0.01,))
    with pytest.warns(UserWarning, match=r"cyclic: max_lr equals base_lr \(0.01\)"):
        build_scheduler(optimizer, {"name": "cyclic", "max_lr": 0.01}, total_steps=100)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_builds(group, option, hydra_conf, tmp_path):
    if group == "hparams_search":
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = compose_job([f"{group}={option}"], tmp_path / "job")
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    devices = trainer_cfg.get("devices")
    if trainer_cfg.get("accelerator") == "gpu" and not torch.cuda.is_available():
        # refused before anything starts, in one line (scripts/gpu-check.sh runs it on a GPU)
        with pytest.raises(ConfigError, match=r"trainer\.accelerator='gpu': no CUDA device here"):
            check_config(cfg)
        return
    if isinstance(devices, int) and devices > CORES:
        # more processes than this machine has cores: the checks refuse it here, by design;
        # the Trainer itself is still built (nothing starts before fit).
        trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
        assert trainer.world_size == devices * trainer_cfg.get("num_nodes", 1)
        return

    checked = check_config(cfg)
    assert checked.steps_per_epoch >= 1
    assert checked.total_steps is not None and checked.total_steps >= checked.steps_per_epoch
    assert sum(p.numel() for p in checked.net.parameters()) > 0
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    x, _ = datamodule.train_set[:4]
    assert checked.net(x).shape == (4, datamodule.num_classes)

    # the whole planned schedule, step by step: every rate finite and >= 0
    plain = OmegaConf.to_container(cfg, resolve=True)
    optimizer = build_optimizer(checked.net, plain["optimizer"])
    if plain.get("scheduler"):
        scheduler = build_scheduler(
            optimizer,
            plain["scheduler"],
            total_steps=checked.total_steps,
            steps_per_epoch=checked.steps_per_epoch,
        )
        if plain["scheduler"]["name"] != "plateau":  # plateau steps on a metric
            if is_schedule_free(optimizer):
                optimizer.train()  # a schedule-free optimizer steps in train mode only
            for _ in range(checked.total_steps):
                assert all(math.isfinite(r) and r >= 0 for r in scheduler.get_last_lr())
                optimizer.step()
                scheduler.step()

    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    assert trainer.max_epochs == trainer_cfg["max_epochs"]
    if cfg.get("logger"):
        extra = {"tracking_uri": checked.tracking_uri} if checked.tracking_uri else {}
        if "save_dir" in cfg.logger and cfg.logger.save_dir is None:
            extra["save_dir"] = str(tmp_path)  # the app gives the job's output directory
        assert isinstance(instantiate(cfg.logger, **extra), Logger)

    for node in (cfg.get("callbacks") or {}).values():
        assert isinstance(instantiate(node), Callback)
    assert mlflow_runs(tmp_path / "mlflow.db") == []  # building is not tracking


# -- 2. bad command lines ---------------------------------------------------------------------

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")

# (command line, fragment naming the key, fragments of what is allowed: at least one appears)
INVALID = [
    # group options and keys
    ("scheduler=cosin", "scheduler='cosin'", ["cosine"]),
    ("-m scheduler=cosine,stepp", "scheduler='stepp'", ["step"]),
    ("data=imagenet", "data='imagenet'", ["digits"]),
    ("trainer=tpu", "trainer='tpu'", ["ddp_spawn"]),
    ("logger=wandb", "logger='wandb'", ["mlflow"]),
    # a schedule that needs the horizon of a Trainer without one, in command-line terms
    (
        "trainer.max_epochs=-1",
        "scheduler.warmup='5%'",
        ["(trainer.max_epochs=-1 and no trainer.max_steps): set trainer.max_steps"],
    ),
    (
        "scheduler.warmup=10 +trainer.max_time=00:00:01:00 trainer.max_epochs=null",
        "scheduler.T_max (default: the rest of training)",
        ["(it stops on trainer.max_time only): set trainer.max_steps or trainer.max_epochs"],
    ),
    # a store MLflow refuses (the file store, MLflow >= 3.13): named with the fix
    (
        "logger.tracking_uri=file:./mlruns",
        "logger.tracking_uri='file:./mlruns'",
        ["use sqlite:///mlflow.db"],
    ),
    ("experiment=nope", "experiment='nope'", ["mnist1d_cnn"]),
    ("scheduler=step scheduler.gama=0.5", "scheduler.gama", ["gamma"]),
    ("trainer.max_epoch=3", "trainer.max_epoch", ["max_epochs"]),
    ("+optimizer.foo=1", "optimizer.foo", ["weight_decay"]),
    # types
    ("trainer.max_epochs=abc", "trainer.max_epochs", ["Integer", "whole number"]),
    ("data.batch_size=1.5", "data.batch_size", ["Integer", "whole number"]),
    ("seed=abc", "seed", ["Integer", "whole number"]),
    ("seed=-1", "seed=-1", [">= 0"]),
    # optimizer
    ("optimizer.lr=-1", "optimizer.lr", [">= 0"]),
    ("optimizer.lr=nan", "optimizer.lr", ["finite"]),
    ("optimizer.lr=inf", "optimizer.lr", ["finite"]),
    ("optimizer.weight_decay=-0.1", "optimizer.weight_decay", [">= 0"]),
    ("optimizer.name=sgdd", "optimizer.name='sgdd'", ["sgd,", "sgd "]),
    ("optimizer=sgd optimizer.momentum=-0.5", "optimizer.momentum", [">= 0", "-0.5"]),
    # durations
    ("scheduler.warmup=100%", "scheduler.warmup", ["shorter than"]),
    ("scheduler.warmup=5000", "scheduler.warmup", ["shorter than"]),
    ("scheduler.warmup=30ep", "scheduler.warmup", ["shorter than"]),
    ("scheduler.warmup=3epochs", "scheduler.warmup", ["2ep"]),
    ("scheduler.warmup=-3", "scheduler.warmup", [">= 0"]),
    ("scheduler=multistep scheduler.milestones=[60%,30%]", "scheduler.milestones", ["increasing"]),
    (
        "scheduler=sequence scheduler.phases=[{name:linear,duration:200%}]",
        "scheduler.phases[0].duration",
        ["100%"],
    ),
    # strategy parameters
    ("scheduler.eta_min=-1", "scheduler.eta_min", [">= 0"]),
    ("scheduler=exponential scheduler.gamma=0", "scheduler.gamma", ["> 0"]),
    ("scheduler.warmup_start_factor=2", "scheduler.warmup_start_factor", ["<= 1"]),
    (
        "scheduler=cyclic scheduler.max_lr=0.0001 scheduler.base_lr=0.01",
        "scheduler.max_lr",
        ["base_lr"],
    ),
    ("scheduler=onecycle scheduler.pct_start=1.5", "scheduler.pct_start", ["< 1"]),
    ("scheduler=wsd scheduler.decay_type=cubic", "scheduler.decay_type", ["1-sqrt"]),
    ("scheduler=plateau scheduler.mode=up", "scheduler.mode", ["max"]),
    ("scheduler=plateau scheduler.monitor=val_accuracy", "scheduler.monitor", ["val_loss"]),
    (
        "scheduler=chain scheduler.schedules=[{name:cosin}]",
        "scheduler.schedules[0].name",
        ["cosine"],
    ),
    (
        "scheduler=torch scheduler._target_=torch.optim.lr_scheduler.Nope",
        "scheduler._target_",
        ["lr_scheduler"],
    ),
    # trainer
    pytest.param(
        "trainer=ddp trainer.devices=64",
        "trainer.devices=64",
        ["cores"],
        marks=pytest.mark.skipif(CORES >= 64, reason="64 cores here"),
    ),
    ("trainer.devices=0", "trainer.devices=0", [">= 1"]),
    # Lightning's own complaints, blamed on the key they are about
    ("trainer.devices=-1", "trainer.devices=-1", ["int > 0"]),
    ("trainer.limit_train_batches=0.01", "trainer.limit_train_batches=0.01", ["at least"]),
    ("trainer.val_check_interval=500", "trainer.val_check_interval=500", ["less than"]),
    pytest.param("trainer.accelerator=gpu", "trainer.accelerator", ["cpu"], marks=NO_CUDA),
    ("trainer.max_steps=-5", "trainer.max_steps", [">= -1"]),
    ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches", [">= 1"]),
    ("trainer.limit_train_batches=0", "trainer.limit_train_batches", ["no training batch"]),
    ("trainer.precision=bogus", "trainer.precision", ["32-true"]),
    ("trainer.strategy=fsdpp", "trainer.strategy", ["ddp"]),
    # data and model
    ("data.val_fraction=1.5", "data.val_fraction", ["between 0 and 1"]),
    ("data.val_fraction=0.5 data.test_fraction=0.6", "test_fraction", ["< 1"]),
    ("data.batch_size=0", "data.batch_size", [">= 1"]),
    ("data=mnist1d data.num_samples=5", "data.num_samples", [">= 10"]),
    ("model.hidden=[0] trainer.max_epochs=1", "model.hidden", [">= 1", "positive"]),
    ("model=cnn1d model.channels=0 trainer.max_epochs=1", "model.channels", [">= 1", "positive"]),
    ("model.dropout=1.5", "model.dropout", ["between 0 and 1", "< 1", "<= 1"]),
    # top-level options
    ("scale_lr=cubic", "scale_lr='cubic'", ["sqrt"]),
    ("scale_lr=linear", "reference_batch_size", [">= 1"]),
    ("on_plan_change=maybe", "on_plan_change='maybe'", ["continue"]),
    ("ckpt_path=missing.ckpt", "ckpt_path", ["not found", "no such", "does not exist"]),
    ("optimized_metric=val_accuracy", "optimized_metric='val_accuracy'", ["val_acc"]),
    ("optimized_metric=test_acc test=false", "optimized_metric='test_acc'", ["val_loss"]),
    # tracking
    ("logger.tracking_uri=ftp://x", "logger.tracking_uri", ["sqlite"]),
    # sweeps: refused before the first job
    ("scheduler=cosine,step", "scheduler=cosine,step", ["-m"]),
    # Lightning's DDP launcher re-runs the command line in each extra process: a nested sweep
    ("-m trainer=ddp scheduler=cosine,step", "trainer.strategy", ["ddp_spawn"]),
    pytest.param(  # strategy=auto on two devices is DDP that re-runs the command too
        "-m trainer.devices=2 scheduler=cosine,step",
        "trainer.strategy='auto'",
        ["ddp_spawn"],
        marks=pytest.mark.skipif(CORES < 2, reason="one core"),
    ),
    ("-m scheduler=cosine scheduler.warmup=10,5000", "scheduler.warmup=5000", ["shorter than"]),
    ("lr_finder.mode=cubic", "lr_finder.mode", ["exponential, linear"]),
    ("lr_finder.num_steps=5", "lr_finder.num_steps", ["at least 3 points"]),
    ("optimizer.lr=fast", "optimizer.lr", ["number"]),
    (
        "-m scheduler=cosine,step trainer.max_epochs=1,2 optimizer.lr=0.1,-1",
        "optimizer.lr",
        [">= 0"],
    ),
]


def _id(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize(("line", "key", "allowed"), INVALID, ids=[_id(c) for c in INVALID])
def test_bad_command_line_is_one_line_and_exit_2(line, key, allowed, tmp_path, capfd):
    result = run_app(line.split(), capfd)
    assert "Traceback" not in result.out + result.err, result.err
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(ERROR_PREFIX), lines[0]
    assert key in lines[0], lines[0]
    assert any(fragment in lines[0] for fragment in allowed), (allowed, lines[0])
    assert result.out.strip() == ""
    # Hydra never started: no output directory, no MLflow store (so no run), nothing at all
    assert sorted(os.listdir(tmp_path)) == []


def test_store_mlflow_refuses_from_the_environment_is_one_line(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:./mlruns")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    result = run_app(["trainer.max_epochs=1"], capfd)
    assert result.code == 2, result.err
    (line,) = result.err.strip().splitlines()
    assert line.startswith(f"{ERROR_PREFIX}MLFLOW_TRACKING_URI='file:./mlruns': MLflow refuses")
    assert "sqlite:///mlflow.db" in line and "MLFLOW_ALLOW_FILE_STORE=true" in line
    assert sorted(os.listdir(tmp_path)) == []


VALID = [
    "trainer.max_epochs=1 trainer.limit_train_batches=0.1",  # a smoke test: 5% warmup shrinks
    "scheduler.warmup=3ep",
    "scheduler.warmup=5%",
    "scheduler.warmup=10",
    "scheduler=multistep scheduler.milestones=[2ep,4ep]",
    "scheduler=plateau scheduler.monitor=val_acc scheduler.mode=max",
    "scheduler=cyclic scheduler.base_lr=0.001 scheduler.max_lr=0.1",
    "optimizer=sgd scale_lr=linear reference_batch_size=32",
    "+trainer.gradient_clip_algorithm=value",
    "trainer=ddp",  # a single run may re-launch itself
    "logger=csv",
    "logger=none callbacks=none",
    "optimized_metric=val_loss",
    "optimized_metric=test_acc",
    "fit=false optimized_metric=test_loss",
    "-m scheduler=cosine,step",
    "-m trainer=ddp_spawn scheduler=cosine,step",
    # the job's own directory, as Hydra resolves it in the job (single run and sweep)
    "+callbacks.ckpt._target_=lightning.pytorch.callbacks.ModelCheckpoint"
    " +callbacks.ckpt.dirpath=${hydra:runtime.output_dir}/ckpt",
    "-m scheduler=cosine,step +callbacks.ckpt._target_=lightning.pytorch.callbacks.ModelCheckpoint"
    " +callbacks.ckpt.dirpath=${hydra:runtime.output_dir}/ckpt",
]


@pytest.mark.parametrize("line", VALID)
def test_good_command_line_passes_the_checks(line, tmp_path):
    assert precheck(CONFIG_PATH, line.split()) is None
    assert not (tmp_path / "outputs").exists()
    assert not (tmp_path / "multirun").exists()
    assert mlflow_runs(tmp_path / "mlflow.db") == []


GROUPS_SHOWN = ["callbacks", "data", "experiment", "hparams_search", "logger", "model",
                "optimizer", "scheduler", "trainer"]  # fmt: skip


def test_help_lists_the_groups(capfd):
    result = run_app(["--help"], capfd)
    assert result.code in (0, None), result.err
    for group_line in ("scheduler:", "optimizer:", "trainer:", "logger:"):
        assert group_line in result.out
    assert "warmup_cosine" in result.out and "ddp_spawn" in result.out
    # the user's groups only: not the packaged copies nor the schemas the app composes from
    groups = result.out.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = [line.split(":")[0] for line in groups.splitlines() if ": " in line]
    assert listed == sorted(GROUPS_SHOWN), listed
    assert "lrsched_schema" not in result.out and "experiment_optimizer" not in result.out


def test_help_shows_the_config_the_overrides_compose(capfd):
    result = run_app(["scheduler=onecycle", "scheduler.max_lr=0.3", "--help"], capfd)
    assert result.code in (0, None), result.err
    config = result.out.split("== Config ==")[1]
    assert "name: onecycle" in config and "max_lr: 0.3" in config
    bad = run_app(["scheduler=cosin", "--help"], capfd)
    assert bad.code == 2 and bad.err.startswith(f"{ERROR_PREFIX}scheduler='cosin': unknown option")


def test_list_and_help_start_without_torch_or_lightning():
    """`lrsched list` and `lrsched train --help` answer in about a second: they import neither
    torch nor Lightning (seconds each), nor MLflow."""
    code = (
        "import sys\n"
        "from lightning_lrsched.app.cli import main\n"
        "assert main(['list']) == 0\n"
        "sys.argv = ['lrsched-train', 'scheduler=cosine', '--help']\n"
        "from lightning_lrsched.app.train import main as train\n"
        "train()\n"
        "roots = {m.split('.')[0] for m in sys.modules}\n"
        "heavy = sorted(roots & {'torch', 'lightning', 'mlflow'})\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout[-500:]


def test_sweep_jobs_with_the_same_seed_train_identically(tmp_path, capfd):
    """Jobs of a sweep run one after the other in one process: ``seed`` must fix everything,
    the network's initial weights included, whatever ran before."""
    argv = ["-m", "seed=0,0", "trainer.max_epochs=1", "logger=none", "callbacks=none"]
    result = run_app(argv, capfd)
    assert result.code in (0, None), result.err
    finals = [line for line in result.out.splitlines() if line.startswith("lrsched train: ")]
    assert len(finals) == 2, result.out
    assert finals[0] == finals[1]
    assert (tmp_path / "multirun").exists()


@pytest.mark.parametrize("metric", ["val_loss", "train_loss", "test_acc"])
def test_train_returns_the_optimized_metric(metric, hydra_conf, tmp_path, capfd):
    """What a sweep optimises is what ``optimized_metric`` names, as the run logged it."""
    from lightning_lrsched.app.run import train_and_report

    short = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2"]
    cfg = compose_job(
        [f"optimized_metric={metric}", *short, "logger=none", "callbacks=none"], tmp_path / "job"
    )
    value = train_and_report(cfg, check_config(cfg))
    out = capfd.readouterr().out
    assert math.isfinite(value)
    assert f"{metric}={value:.4f}" in out, out


# -- 3. real runs through the command line ----------------------------------------------------


def _lrsched() -> list[str]:
    script = Path(sys.executable).with_name("lrsched")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lightning_lrsched"]


@dataclass
class CliRun:
    cwd: Path
    argv: list[str]
    code: int
    out: str
    err: str

    @property
    def store(self) -> Path:
        return self.cwd / "mlflow.db"


def _cli_commands(cache: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    return {
        # (the default store in the cwd, a real `lrsched train` process that prints how to open
        # the run: the trainer=ddp launch of tests/test_launch.py)
        # (experiment=mnist1d_cnn trains in every launch of tests/test_launch.py)
        # scikit-learn made unimportable, as when the `tasks` extra is not installed
        "no_sklearn": (
            [
                sys.executable,
                "-c",
                "import sys, runpy; sys.modules['sklearn'] = None; "
                "runpy.run_module('lightning_lrsched.app.train', run_name='__main__')",
                "trainer.max_epochs=1",
            ],
            {},
        ),
        "invalid": ([*_lrsched(), "train", "scheduler=cosin"], {}),
    }


@dataclass
class _Started:
    cwd: Path
    argv: list[str]
    process: subprocess.Popen
    out: Path
    err: Path


def _start_cli_runs(root: Path) -> dict[str, _Started]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env["XDG_CACHE_HOME"] = str(root / "xdg-cache")  # the default data cache: cache_dir must win
    for name in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR"):
        env.pop(name, None)
    started = {}
    for name, (argv, extra) in _cli_commands(root / "data-cache").items():
        cwd = root / name
        cwd.mkdir()
        out, err = root / f"{name}.out", root / f"{name}.err"
        run_env = {**env, **{k: v.format(cwd=cwd) for k, v in extra.items()}}
        with out.open("w") as stdout, err.open("w") as stderr:
            process = subprocess.Popen(argv, cwd=cwd, env=run_env, stdout=stdout, stderr=stderr)
        started[name] = _Started(cwd, argv, process, out, err)
    return started


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, CliRun]]:
    """Every command-line run, started together (their start-up, mostly importing Lightning,
    overlaps) and finished. The tests that read them share one xdist group, so one worker
    starts them, once."""
    started = _start_cli_runs(tmp_path_factory.mktemp("cli"))
    runs = {}
    try:
        for name, run in started.items():
            try:
                code = run.process.wait(timeout=600)
            except subprocess.TimeoutExpired:
                run.process.kill()
                code = run.process.wait()
            runs[name] = CliRun(run.cwd, run.argv, code, run.out.read_text(), run.err.read_text())
        yield runs
    finally:
        for run in started.values():
            if run.process.poll() is None:
                run.process.kill()
                run.process.wait()


def _digits_steps_per_epoch(batch_size: int = 64) -> int:
    from lightning_lrsched.tasks import DigitsDataModule

    data = DigitsDataModule(batch_size=batch_size)
    data.setup("fit")
    return math.ceil(len(data.train_set) / batch_size)


def _one_run(store: Path):
    runs = mlflow_runs(store)
    assert len(runs) == 1, [(r.info.run_id, r.info.status) for r in runs]
    return runs[0]


def _history(store: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _assert_ok(run: CliRun) -> None:
    assert run.code == 0, f"{run.argv}\n{run.out}\n{run.err[-3000:]}"
    assert "Traceback" not in run.err


def test_csv_logger_writes_metrics_and_no_store(tmp_path, capfd):
    result = run_app(["logger=csv", "trainer.max_epochs=2"], capfd)
    assert result.code in (0, None), result.err
    assert not (tmp_path / "mlflow.db").exists()
    files = list((tmp_path / "outputs").rglob("metrics.csv"))
    assert len(files) == 1, files
    with files[0].open() as handle:
        rows = list(csv.DictReader(handle))
    lr_columns = [c for c in rows[0] if c.startswith("lr/")]
    assert lr_columns
    steps = sorted(int(row["step"]) for row in rows if row[lr_columns[0]])
    assert steps == list(range(2 * _digits_steps_per_epoch()))  # every optimizer step


def test_plateau_with_warmup_under_its_run_name_and_tags(tmp_path, capfd, monkeypatch):
    store = tmp_path / "tracked.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    argv = ["scheduler=plateau", "scheduler.warmup=5", "optimizer.lr=0.005", "trainer.max_epochs=2"]
    result = run_app(argv, capfd)
    assert result.code in (0, None), result.err
    assert store.exists() and not (tmp_path / "mlflow.db").exists()  # the variable is honoured
    tracked = _one_run(store)
    assert tracked.info.status == "FINISHED"
    # named by what it is (lightning_lrsched.app.run_names): plateau's option file sets patience
    group = "digits_mlp · plateau patience=2 warmup=5 · adamw lr=0.005"
    assert tracked.info.run_name == f"{group} · seed 0"
    tags = tracked.data.tags
    assert (tags["lrsched.group"], tags["lrsched.seed"]) == (group, "0")
    assert tags["lrsched.schedule"] == "plateau patience=2 warmup=5"
    key = next(k for k in tracked.data.metrics if k.startswith("lr/"))
    rates = [v for _, v in _history(store, tracked.info.run_id, key)]
    assert len(rates) == 2 * _digits_steps_per_epoch()
    # linear warmup over 5 steps from 0, then the base rate (patience 10: no reduction yet)
    assert rates[:5] == pytest.approx([0.0, 0.001, 0.002, 0.003, 0.004], abs=1e-12)
    assert rates[5:] == pytest.approx([0.005] * (len(rates) - 5), rel=1e-9)


def test_find_lr_prints_plots_and_tracks_the_sweep_under_a_run_name(tmp_path, capfd):
    """``lrsched find-lr`` on the training config: the suggestions, the override that uses one,
    the plot beside the job's outputs and in MLflow, the sweep's points in a run of its own."""
    from lightning_lrsched.app import find_lr

    sys.argv = ["lrsched-find-lr", "lr_finder.num_steps=40", "scheduler=onecycle"]
    try:
        find_lr.main()
    except SystemExit as exit_:
        assert exit_.code in (0, None)
    out = capfd.readouterr().out
    suggested = next(line for line in out.splitlines() if "suggested rate" in line)
    rate = float(suggested.split("suggested rate ")[1].split()[0])
    assert f"use it: lrsched train scheduler.max_lr={rate:.3g}" in out, out
    assert len(list((tmp_path / "outputs").rglob("lr_finder.png"))) == 1
    run = _one_run(tmp_path / "mlflow.db")
    assert run.info.status == "FINISHED"
    assert run.data.tags["lrsched.kind"] == "range_test"
    assert run.info.run_name == "digits_mlp · range test · adamw · seed 0"
    assert run.data.tags["lrsched.group"] == "digits_mlp · range test · adamw"
    assert float(run.data.params["lr_finder/valley"]) == pytest.approx(rate, rel=1e-3)
    losses = _history(tmp_path / "mlflow.db", run.info.run_id, "lr_finder/loss")
    assert 3 <= len(losses) <= 40 and [s for s, _ in losses] == list(range(len(losses)))
    from mlflow import MlflowClient

    artifacts = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").list_artifacts(
        run.info.run_id, "lr_finder"
    )
    assert [a.path for a in artifacts] == ["lr_finder/range_test.png"]


def test_max_lr_auto_trains_one_cycle_peaking_at_the_suggestion(tmp_path, capfd):
    argv = [
        "scheduler=onecycle", "scheduler.max_lr=auto", "lr_finder.num_steps=40",
        "trainer.max_epochs=2", "test=false",
    ]  # fmt: skip
    result = run_app(argv, capfd)
    assert result.code in (0, None), result.err
    run = _one_run(tmp_path / "mlflow.db")
    chosen = float(run.data.params["lr_finder/applied/scheduler.max_lr"])
    assert chosen == pytest.approx(float(run.data.params["lr_finder/valley"]))
    rates = [v for _, v in _history(tmp_path / "mlflow.db", run.info.run_id, "lr/AdamW/pg0")]
    assert len(rates) == 2 * _digits_steps_per_epoch()
    assert max(rates) == pytest.approx(chosen, rel=0.05)  # the peak (a step near it)
    assert rates[0] == pytest.approx(chosen / 25)  # onecycle starts at max_lr / div_factor


def test_cfg_job_prints_the_composed_config(tmp_path, capfd):
    result = run_app(["--cfg", "job", "scheduler=onecycle"], capfd)
    assert result.code in (0, None), result.err
    cfg = yaml.safe_load(result.out)
    assert cfg["scheduler"]["name"] == "onecycle"
    assert {"data", "model", "optimizer", "trainer", "logger"} <= set(cfg)
    assert sorted(os.listdir(tmp_path)) == []  # no store, no output directory


@pytest.mark.slow
@pytest.mark.xdist_group("train_app_cli")
def test_bad_value_in_a_real_process(cli):
    run = cli["invalid"]
    assert run.code == 2
    assert run.out == ""
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith(f"{ERROR_PREFIX}scheduler='cosin'") and "cosine" in lines[0]
    assert not run.store.exists() and not (run.cwd / "outputs").exists()


@pytest.mark.slow
@pytest.mark.xdist_group("train_app_cli")
def test_missing_tasks_extra_is_one_line_naming_it(cli):
    run = cli["no_sklearn"]
    assert run.code == 2, run.err
    assert run.out == ""
    lines = run.err.strip().splitlines()
    assert lines == [
        f"{ERROR_PREFIX}data='DigitsDataModule': scikit-learn is not installed; the training "
        "tasks need it: pip install 'lightning-lrsched[tasks]'"
    ], run.err
    assert not run.store.exists() and not (run.cwd / "outputs").exists()
