"""The time-to-accuracy benchmark, shrunken: every job's config composes and passes the app's
checks; a few steps of every strategy run end to end through the Hydra multirun (joblib
launcher), the MLflow store and ``lrsched compare``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning_support import subprocess_env
from omegaconf import open_dict

from lightning_lrsched.app.run import check_config
from lightning_lrsched.app.train import CONFIG_PATH, register_configs

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "time_to_accuracy.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("time_to_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def benchmark():
    return load_benchmark()


def test_every_job_composes_and_passes_the_checks(benchmark, tmp_path, data_cache, monkeypatch):
    """All strategies on both tasks, at their full length: the config each job gets is what the
    issue asks (steps, evaluation interval, data on the test split, the strategy's rate)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(data_cache))
    names = benchmark.write_configs(tmp_path, list(benchmark.TASKS), None, None)
    assert len(names) == len(benchmark.TASKS) * len(benchmark.STRATEGIES)
    register_configs()
    GlobalHydra.instance().clear()
    seen = {}
    try:
        with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
            for name in names:
                overrides = [f"hydra.searchpath=[file://{tmp_path}]", f"experiment={name}"]
                cfg = compose("train", overrides=overrides, return_hydra_config=True)
                with open_dict(cfg):
                    cfg.hydra.runtime.output_dir = str(tmp_path / "out")
                HydraConfig.instance().set_config(cfg)
                with open_dict(cfg):
                    del cfg["hydra"]
                checked = check_config(cfg)
                seen[name] = (cfg, checked)
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
    cfg, checked = seen["mnist1d-cosine"]
    assert checked.total_steps == 6000 and cfg.trainer.val_check_interval == 100
    assert cfg.data.validate_on == "test" and cfg.data.batch_size == 100
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 0.02
    assert cfg.scheduler.name == "cosine" and cfg.scheduler.warmup == "5%"
    assert cfg.logger.experiment_name == "time-to-accuracy-mnist1d"
    cfg, _ = seen["mnist1d-onecycle-auto"]
    assert cfg.scheduler.max_lr == "auto" and cfg.lr_finder.suggestion == "minimum"
    cfg, _ = seen["mnist1d-schedulefree"]
    assert cfg.optimizer.name == "adamw_schedulefree" and cfg.scheduler.name == "constant"
    cfg, checked = seen["digits-step"]
    assert checked.total_steps == 1500 and list(cfg.scheduler.milestones) == ["50%", "75%"]
    assert cfg.model.hidden and cfg.data.batch_size == 64


@pytest.mark.slow
def test_shrunken_benchmark_end_to_end(tmp_path):
    """The CI smoke run on the digits task, 20 steps, one seed, one job at a time: two
    constant rates (the baseline is picked between them), the range test's cosine and the
    schedule-free optimizer; then the report from ``lrsched compare``. (Every other job's
    config is checked above.)"""
    out = tmp_path / "tta"
    strategies = ["constant-0.01", "constant-0.02", "cosine-auto", "schedulefree"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--tasks", "digits", "--jobs", "1",
         "--out", str(out), "--strategies", *strategies],
        capture_output=True, text=True, env=subprocess_env(), timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (out / "report-digits" / "compare.md").read_text()
    for strategy in strategies:
        assert f"digits-{strategy} · " in report, strategy
    assert (out / "report-digits" / "compare.png").stat().st_size > 10_000
    assert "baseline 'digits-constant-" in done.stdout
    assert "| group | runs | reached |" in done.stdout
