"""The small parts of the cluster support, in this process: the rank guard's comparison, the
system-metrics option's checks, the GPU sync check's own run (on the CPU, unguarded: the script
that ``scripts/gpu-check.sh`` runs on a GPU must at least run), and the ``trainer=gpu`` option
refusing a machine without a GPU in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lightning_lrsched import ConfigError
from lightning_lrsched.lightning.rank_guard import (
    RankDivergenceError,
    check_records,
    first_difference,
)
from lightning_lrsched.tracking.system_metrics import check_system_metrics

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_first_difference_names_the_path_and_both_values():
    zero = {"SGD/head lr": 0.1, "SGD schedule": {"step": 5, "lrs": [0.1, 0.2]}}
    assert (
        first_difference(zero, {"SGD/head lr": 0.1, "SGD schedule": {"step": 5, "lrs": [0.1, 0.2]}})
        is None
    )
    assert first_difference(zero, {**zero, "SGD/head lr": 0.2}) == ("SGD/head lr", 0.1, 0.2)
    other = {"SGD/head lr": 0.1, "SGD schedule": {"step": 6, "lrs": [0.1, 0.3]}}
    assert first_difference(zero, other) == ("SGD schedule step", 5, 6)
    nan = {"x": float("nan")}
    assert first_difference(nan, {"x": float("nan")}) is None  # a nan rate is the same nan


def test_check_records_names_the_diverging_rank():
    records = [{"a lr": 1.0}, {"a lr": 1.0}, {"a lr": 0.5}]
    with pytest.raises(RankDivergenceError) as caught:
        check_records(records, epoch=3, step=40)
    assert str(caught.value) == (
        "rank guard: rank 2 disagrees with rank 0 after epoch 3 (step 40): a lr is 0.5 on "
        "rank 2, 1.0 on rank 0"
    )
    check_records(records[:2], epoch=3, step=40)


@pytest.mark.parametrize(
    ("enabled", "interval", "key"),
    [
        ("yes", 10.0, "system_metrics"),
        (True, 0, "system_metrics_interval"),
        (True, True, "system_metrics_interval"),
    ],
)
def test_system_metrics_options_are_checked(enabled, interval, key):
    with pytest.raises(ConfigError) as caught:
        check_system_metrics(enabled, interval)
    assert caught.value.key == key


def test_gpu_sync_check_runs_on_the_cpu(capsys):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu_sync_check
    finally:
        sys.path.remove(str(BENCHMARKS))
    calls = gpu_sync_check.main(["--accelerator", "cpu", "--steps", "12"])
    out = capsys.readouterr().out
    assert "smoke test passed" in out
    # every per-step path of ours went through the guard: 12 steps x 2 fits
    assert calls["ScheduleLR.step"] == 24
    assert (
        calls["LRLogger.on_train_batch_end"] == 24
        or calls["LRLogger.on_before_optimizer_step"] == 24
    )
    assert calls["Preemption.on_train_batch_end"] == 24
    assert calls["MLflowTracker.log_metrics"] >= 24
