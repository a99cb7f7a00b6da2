"""Hydra sweeps and DDP through the real command (``python -m lightning_lrsched.app.train``).

Every test runs the app as a subprocess in its own empty directory, with
``MLFLOW_TRACKING_URI`` unset, so the runs land in the default store ``sqlite:///mlflow.db``
there; the tests then read that store back. What they pin down: a ``-m`` sweep over strategies
is one experiment with one finished run per job; an Optuna search (``hparams_search=optuna``)
makes one run per trial with the sampled values and reports the best of them; a DDP run whose
extra process Lightning starts by re-running the command is still one Hydra output directory
and one MLflow run; DDP that re-runs the command is refused in a sweep before anything starts,
while ``ddp_spawn`` sweeps.

Each command pays a Python + Lightning start-up (several seconds); the training itself is a few
batches of an MLP on scikit-learn's digits.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

EXPERIMENT = "lightning-lrsched"
SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=5", "trainer.limit_val_batches=2"]
STRATEGIES = ["constant", "step", "cosine", "onecycle"]


def train(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(
        [sys.executable, "-m", "lightning_lrsched.app.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result


def check(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def runs_by_experiment(cwd: Path) -> dict[str, list]:
    """Every run in the default store of ``cwd``, by experiment name (experiments without runs,
    such as MLflow's own ``Default``, are left out)."""
    from mlflow import MlflowClient

    store = cwd / "mlflow.db"
    assert store.is_file(), f"no MLflow store in {cwd}: {sorted(os.listdir(cwd))}"
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    found = {}
    for experiment in client.search_experiments():
        runs = client.search_runs([experiment.experiment_id], max_results=100)
        if runs:
            found[experiment.name] = runs
    return found


def the_runs(cwd: Path, count: int) -> list:
    """The runs of the one experiment in the store: ``count`` of them, all finished."""
    by_experiment = runs_by_experiment(cwd)
    assert list(by_experiment) == [EXPERIMENT]
    runs = by_experiment[EXPERIMENT]
    assert len(runs) == count, [run.info.run_id for run in runs]
    assert [run.info.status for run in runs] == ["FINISHED"] * count
    return runs


def job_dirs(sweep: Path) -> list[Path]:
    """The numbered job directories of one ``multirun/<date>/<time>`` sweep."""
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def one_sweep(cwd: Path) -> Path:
    sweeps = list(cwd.glob("multirun/*/*"))
    assert len(sweeps) == 1, sweeps
    assert not (cwd / "outputs").exists()
    return sweeps[0]


def test_multirun_over_strategies_is_one_experiment_with_a_run_per_job(tmp_path: Path) -> None:
    result = train("-m", f"scheduler={','.join(STRATEGIES)}", *SHORT, "test=false", cwd=tmp_path)
    check(result)
    assert len(job_dirs(one_sweep(tmp_path))) == len(STRATEGIES)
    runs = the_runs(tmp_path, len(STRATEGIES))
    assert sorted(run.data.params["scheduler/name"] for run in runs) == sorted(STRATEGIES)
    for run in runs:  # every optimizer step's rate reached the run
        assert any(key.startswith("lr/") for key in run.data.metrics), run.data.metrics


def trial(lr: str, scheduler: str, warmup: str) -> tuple[float, str, str]:
    return round(float(lr), 12), scheduler, warmup


def test_optuna_search_is_a_run_per_trial_and_keeps_the_best(tmp_path: Path) -> None:
    if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        pytest.skip("hydra-optuna-sweeper is not installed (pip install lightning-lrsched[sweep])")
    trials = 2
    argv = ["-m", "hparams_search=optuna", f"hydra.sweeper.n_trials={trials}", *SHORT, "test=false"]
    check(train(*argv, cwd=tmp_path))
    sweep = one_sweep(tmp_path)
    jobs = job_dirs(sweep)
    assert len(jobs) == trials
    runs = the_runs(tmp_path, trials)

    # each trial's sampled values are the values its run trained with
    sampled = []
    for job in jobs:
        lines = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        chosen = dict(line.split("=", 1) for line in lines)
        assert 1e-4 <= float(chosen["optimizer.lr"]) <= 1e-1
        assert chosen["scheduler"] in STRATEGIES
        assert chosen["scheduler.warmup"] in ("0", "5%", "10%")
        sampled.append(
            trial(chosen["optimizer.lr"], chosen["scheduler"], chosen["scheduler.warmup"])
        )
    logged = [
        trial(p["optimizer/lr"], p["scheduler/name"], p["scheduler/warmup"])
        for p in (run.data.params for run in runs)
    ]
    assert sorted(logged) == sorted(sampled)

    # the sweep maximizes what the app returns: the final validation accuracy
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max(run.data.metrics["val_acc"] for run in runs)
    assert math.isclose(results["best_value"], best, rel_tol=1e-6)


def test_ddp_single_run_is_one_output_dir_and_one_mlflow_run(tmp_path: Path) -> None:
    check(train("trainer=ddp", *SHORT, cwd=tmp_path))
    outputs = list(tmp_path.glob("outputs/*/*"))
    assert len(outputs) == 1, outputs
    assert not (tmp_path / "multirun").exists()
    assert [p.parent for p in tmp_path.rglob(".hydra")] == outputs
    # the process Lightning started for rank 1 wrote its log into the same directory
    assert (outputs[0] / "train_ddp_process_1.log").is_file(), sorted(os.listdir(outputs[0]))
    (run,) = the_runs(tmp_path, 1)
    assert run.data.params["trainer/strategy"] == "ddp"
    assert run.data.params["trainer/devices"] == "2"


def test_sweep_with_ddp_that_reruns_the_command_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    result = train("-m", "trainer=ddp", "scheduler=cosine,step", *SHORT, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lrsched train: error: trainer.strategy=")
    assert "ddp_spawn" in lines[0]
    assert sorted(os.listdir(tmp_path)) == []  # no output directory, no MLflow store, no run


def test_sweep_with_ddp_spawn_runs_every_job(tmp_path: Path) -> None:
    # test=false: with ddp_spawn, trainer.test would spawn the processes a second time
    argv = ["-m", "trainer=ddp_spawn", "scheduler=cosine,step", *SHORT, "test=false"]
    check(train(*argv, cwd=tmp_path))
    assert len(job_dirs(one_sweep(tmp_path))) == 2
    runs = the_runs(tmp_path, 2)
    assert sorted(run.data.params["scheduler/name"] for run in runs) == ["cosine", "step"]
    assert {run.data.params["trainer/strategy"] for run in runs} == {"ddp_spawn"}
