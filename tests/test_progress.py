"""The progress bar with the rate (``RateProgressBar``), the range test's sweep bar, and the
app's default bar (``lrsched train``; ``trainer.enable_progress_bar=false`` turns it off).

Real Trainers fit TinyModule with the bar writing to the captured stdout (Lightning's bars
write there); the shown rate is compared with the rate each optimizer step applied, as
recorded at the step (``RateRecorder``) or logged by ``LRLogger``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning_support import PointsLogger, RateRecorder, TinyModule, trainer

from lightning_lrsched.callbacks import LRFinder, LRLogger, RateProgressBar
from lightning_lrsched.lightning.progress import format_rate, with_rate_progress_bar

# Two epochs of 8 steps: the rate the bar ends on is the 16th step's.
LINEAR = {"name": "linear", "start_factor": 1.0, "end_factor": 0.1, "total_iters": 16}


def shown(out: str, key: str = "lr") -> list[str]:
    """Every value the bar showed for ``key``, in order."""
    return re.findall(rf"(?<![\w/]){re.escape(key)}=([-+.e0-9]+)", out)


def fit_with_bar(tmp_path: Path, module: TinyModule, *callbacks, **kwargs) -> None:
    run = trainer(tmp_path, [RateProgressBar(), *callbacks], enable_progress_bar=True, **kwargs)
    run.fit(module)


def test_the_bar_ends_on_the_rate_of_the_last_step(tmp_path, capsys):
    recorder = RateRecorder()
    logger = CSVLogger(tmp_path)  # a logger: Lightning would show its version as v_num
    fit_with_bar(tmp_path, TinyModule(LINEAR), recorder, logger=logger)
    out = capsys.readouterr().out
    values = shown(out)
    rates = [lrs[0] for _, lrs, _ in recorder.rates]
    assert len(rates) == 16
    assert values[-1] == format_rate(rates[-1]) == "7.81e-03"  # 0.05 x (1 - 0.9 x 15/16)
    assert values[0] == format_rate(rates[0]) == "5.00e-02"
    assert set(values) <= {format_rate(r) for r in rates}  # never a rate no step applied
    assert "v_num" not in out and "train_loss" not in out  # logged without prog_bar


def test_several_groups_are_named_as_lr_logger_names_them(tmp_path, capsys):
    optimizer = {
        "name": "sgd",
        "lr": 0.05,
        "param_groups": [{"name": "first", "params": r"^net\.0\.", "lr": 0.2}],
    }
    recorder = RateRecorder()
    fit_with_bar(tmp_path, TinyModule(LINEAR, optimizer=optimizer), recorder, max_epochs=1)
    out = capsys.readouterr().out
    (_, last, _) = recorder.rates[-1]  # "first", then the rest ("default")
    assert shown(out, "lr/SGD/first")[-1] == format_rate(last[0])
    assert shown(out, "lr/SGD/default")[-1] == format_rate(last[1])
    assert last[0] != last[1] and shown(out) == []  # no bare "lr" entry


def test_schedule_free_shows_the_rate_its_step_applies(tmp_path, capsys):
    """The optimizer's own warmup (100 steps) scales the rate: after 8 steps of a constant
    schedule the step applies 8/100 of ``lr``, which ``LRLogger`` logs as ``lr_effective``."""
    pytest.importorskip("schedulefree")
    optimizer = {"name": "adamw_schedulefree", "lr": 0.01, "warmup_steps": 100}
    logger = PointsLogger()
    module = TinyModule({"name": "constant"}, optimizer=optimizer)
    fit_with_bar(tmp_path, module, LRLogger(), logger=logger, max_epochs=1)
    out = capsys.readouterr().out
    effective = [m for _, m in logger.points if "lr_effective/AdamWScheduleFree/pg0" in m]
    assert len(effective) == 8
    last = effective[-1]["lr_effective/AdamWScheduleFree/pg0"]
    assert last == pytest.approx(0.01 * 8 / 100)
    assert shown(out)[-1] == format_rate(last) == "8.00e-04"


def test_a_progress_bar_of_the_users_own_is_kept():
    own = TQDMProgressBar(refresh_rate=5)
    assert with_rate_progress_bar([own], enabled=True) == [own]
    assert with_rate_progress_bar([own], enabled=False) == [own]  # Lightning refuses it itself


SWEEP = {"num_steps": 20, "skip_begin": 3, "skip_end": 2, "max_lr": 1.0}


@pytest.mark.parametrize("enabled", [True, False])
def test_the_range_test_sweep_has_a_bar_with_rate_and_loss(tmp_path, capsys, enabled):
    finder = LRFinder(**SWEEP)
    run = trainer(tmp_path, [finder], enable_progress_bar=enabled, max_steps=0)
    run.fit(TinyModule({"name": "constant"}))
    out = capsys.readouterr().out
    assert finder.result is not None
    if not enabled:
        assert "range test" not in out
        return
    points = len(finder.result.lrs)
    assert f"{points}/20" in out
    assert shown(out)[-1] == format_rate(finder.result.lrs[-1])
    loss = float(shown(out, "loss")[-1])
    assert loss == pytest.approx(finder.result.smoothed[-1], rel=1e-3)


# -- the app ------------------------------------------------------------------------------------

APP = [
    "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
    "logger=none", "test=false", "scheduler=constant", "optimizer.lr=0.002",
]  # fmt: skip


@pytest.fixture
def app(monkeypatch, tmp_path, data_cache) -> Iterator:
    """``lrsched train ARGS`` in this process, in an empty directory; its stdout."""
    from lightning_lrsched.app.schemas import register_configs
    from lightning_lrsched.app.train import main

    register_configs()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(data_cache))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    monkeypatch.setattr(sys, "argv", list(sys.argv))

    def run(*args: str, capfd: pytest.CaptureFixture[str]) -> str:
        sys.argv = ["lrsched-train", *APP, *args]
        main()
        return capfd.readouterr().out

    yield run
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None


@pytest.mark.slow
def test_the_app_shows_the_rate_by_default_and_not_when_told(app, capfd):
    out = app("callbacks=none", capfd=capfd)  # none of the config's callbacks: a bar still
    assert "Epoch 0" in out and shown(out)[-1] == "2.00e-03"
    quiet = app("trainer.enable_progress_bar=false", capfd=capfd)
    assert "Epoch 0" not in quiet and "lr=" not in quiet
    assert "lrsched train: val_loss=" in quiet  # the run's report is still there
