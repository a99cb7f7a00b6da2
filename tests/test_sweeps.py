"""Hydra sweeps and DDP through the real command (``python -m lightning_lrsched.app.train``).

Every test runs the app as a subprocess in its own empty directory, with
``MLFLOW_TRACKING_URI`` unset, so the runs land in the default store ``sqlite:///mlflow.db``
there (a copy of an already migrated one, where the test runs training); the tests then read
that store back. What they pin down: a ``-m`` sweep over strategies is one experiment with one
finished run per job, which the ``compare_schedulers`` recipe reads and draws; an Optuna search
(``hparams_search=optuna``) makes one run per trial with the sampled values and reports the best
of them. (DDP runs and a ``ddp_spawn`` sweep through the command: ``test_horizon.py``; a sweep
with DDP that re-runs the command is refused before anything starts: ``test_train_app.py``.)

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
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=5", "trainer.limit_val_batches=2"]
STRATEGIES = ["constant", "cosine", "onecycle"]  # three jobs: a sweep, at CI cost
SEARCHED_STRATEGIES = ["constant", "step", "cosine", "onecycle"]  # hparams_search/optuna.yaml


def app_env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def train(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "lightning_lrsched.app.train", *args],
        cwd=cwd,
        env=app_env(),
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


def the_runs(cwd: Path, count: int, experiment: str = EXPERIMENT) -> list:
    """The runs of the one experiment in the store: ``count`` of them, all finished."""
    by_experiment = runs_by_experiment(cwd)
    assert list(by_experiment) == [experiment]
    runs = by_experiment[experiment]
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


def test_multirun_over_strategies_is_one_experiment_that_compare_reads(
    tmp_path: Path, existing_store, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recipe ``compare_schedulers``: a ``-m`` sweep over strategies into one experiment
    (one finished run per job, every step's rate in it), then ``lrsched compare`` reads the runs
    back and draws them."""
    existing_store(tmp_path)
    experiment = ["logger.experiment_name=compare-schedulers"]
    check(train("-m", f"scheduler={','.join(STRATEGIES)}", *SHORT, *experiment, cwd=tmp_path))
    assert len(job_dirs(one_sweep(tmp_path))) == len(STRATEGIES)
    runs = the_runs(tmp_path, len(STRATEGIES), experiment="compare-schedulers")
    assert sorted(run.data.params["scheduler/name"] for run in runs) == sorted(STRATEGIES)
    for run in runs:  # every optimizer step's rate reached the run
        assert any(key.startswith("lr/") for key in run.data.metrics), run.data.metrics

    from lightning_lrsched.app.cli import main

    out = tmp_path / "compared"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    argv = [
        "compare",
        "--tracking-uri",
        uri,
        "--experiment",
        "compare-schedulers",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| group | runs | final median | final min | best median |")
    # one group per strategy (one seed each), named by what it is: best final val_acc first
    rows = [line.strip("| ").split(" | ") for line in lines[2 : 2 + len(STRATEGIES)]]
    assert sorted(row[0].split(" · ")[1].split()[0] for row in rows) == sorted(STRATEGIES)
    assert all(row[1] == "1" for row in rows)
    val_acc = [float(row[2]) for row in rows]
    assert val_acc == sorted(val_acc, reverse=True)
    finals = {
        run.info.run_name.removesuffix(" · seed 0"): run.data.metrics["val_acc"] for run in runs
    }
    assert {row[0]: float(row[2]) for row in rows} == pytest.approx(finals, abs=5e-5)
    assert lines[2 + len(STRATEGIES) :] == [f"wrote {out}/compare.md", f"wrote {out}/compare.png"]
    png = (out / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def trial(lr: str, scheduler: str, warmup: str) -> tuple[float, str, str]:
    return round(float(lr), 12), scheduler, warmup


def test_optuna_search_is_a_run_per_trial_and_keeps_the_best(
    tmp_path: Path, existing_store
) -> None:
    if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        pytest.skip("hydra-optuna-sweeper is not installed (pip install lightning-lrsched[sweep])")
    existing_store(tmp_path)
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
        assert chosen["scheduler"] in SEARCHED_STRATEGIES
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
