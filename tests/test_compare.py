"""``lrsched compare`` on a real MLflow SQLite store written by hand (``MlflowClient``: chosen
steps, timestamps, start and end times), so every number in the tables is known in advance.

The store (built once): experiment ``bench`` with

- group A, ``a · cosine · adamw lr=0.01``, seeds 0, 1, 2 (seed 2 never reaches 0.8);
- group B, ``b · onecycle max_lr=0.1 · adamw lr=0.01``, seeds 0, 1, plus an older run of seed 1
  (``--latest`` leaves it out);
- ``c-run``, a run without lrsched's tags (its own group, by name), that never reaches 0.8;
- a range test and a run still RUNNING, both left out.

Every evaluation of step ``s`` is stamped ``s / 10`` seconds after its run's start; every run
lasts 5 s and has 40 optimizer steps of ``lr/AdamW/pg0``.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from lightning_lrsched.app.cli import main
from lightning_lrsched.app.compare import Point, aggregate, compare, first_reaching, summarize

START = 1_700_000_000_000  # ms
A = "a · cosine · adamw lr=0.01"
B = "b · onecycle max_lr=0.1 · adamw lr=0.01"
VAL_STEPS = (10, 20, 30, 40)


def _run(
    client: MlflowClient,
    experiment: str,
    name: str,
    values: list[float],
    *,
    group: str | None = None,
    seed: int | None = None,
    start: int = START,
    tags: dict[str, str] | None = None,
    finish: bool = True,
) -> str:
    all_tags = dict(tags or {})
    if group is not None:
        all_tags |= {"lrsched.group": group, "lrsched.seed": str(seed)}
        all_tags["lrsched.schedule"] = group.split(" · ")[1]
    run = client.create_run(experiment, start_time=start, run_name=name)
    run_id = run.info.run_id
    metrics = [
        Metric("val_acc", v, start + s * 100, s) for s, v in zip(VAL_STEPS, values, strict=False)
    ]
    metrics += [Metric("lr/AdamW/pg0", 0.01 * (1 - s / 40), start + s * 100, s) for s in range(40)]
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in all_tags.items()])
    if finish:
        client.set_terminated(run_id, "FINISHED", end_time=start + 5000)
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, migrated_store: Path) -> str:
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    shutil.copyfile(migrated_store, db)  # (conftest.py: MLflow's migrations, once per process)
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    bench = client.create_experiment("bench")
    _run(client, bench, f"{A} · seed 0", [0.5, 0.85, 0.80, 0.90], group=A, seed=0)
    _run(client, bench, f"{A} · seed 1", [0.6, 0.7, 0.82, 0.81], group=A, seed=1)
    _run(client, bench, f"{A} · seed 2", [0.5, 0.6, 0.7, 0.75], group=A, seed=2)
    _run(client, bench, f"{B} · seed 0", [0.82, 0.9], group=B, seed=0)
    _run(client, bench, f"{B} · seed 1", [0.1, 0.1], group=B, seed=1, start=START - 60_000)
    _run(client, bench, f"{B} · seed 1", [0.7, 0.95], group=B, seed=1)
    _run(client, bench, "c-run", [0.1, 0.2])
    _run(client, bench, "range", [0.99], tags={"lrsched.kind": "range_test"})
    _run(client, bench, "running", [0.99], group=A, seed=3, finish=False)
    client.create_experiment("empty")
    return uri


def test_first_reaching_raw_and_smoothed_on_a_hand_made_history() -> None:
    points = [Point(s, v, s / 10) for s, v in zip(VAL_STEPS, [0.6, 0.7, 0.82, 0.81], strict=True)]
    assert first_reaching(points, 0.8, "max") == points[2]
    assert first_reaching(points, 0.8, "max", window=2) == points[3]  # (0.82 + 0.81) / 2
    assert first_reaching(points, 0.8, "max", window=3) is None  # 0.7767 at the last step
    assert first_reaching(points, 0.65, "min") == points[0]
    assert first_reaching(points, 0.5, "min") is None
    assert first_reaching([], 0.5, "max") is None


def test_medians_count_a_run_that_never_reaches_as_infinite() -> None:
    def run(values: list[float], seed: str) -> object:
        history = [Point(s, v, s / 10) for s, v in zip(VAL_STEPS, values, strict=False)]
        return summarize(history, mode="max", target=0.8, smooth=1, group="g", seed=seed)

    two_of_four = aggregate(
        [run([0.9], "0"), run([0.5, 0.9], "1"), run([0.1], "2"), run([], "3")], "max"
    )
    [g] = two_of_four
    assert (g.reached, g.steps, g.seconds) == (2, math.inf, math.inf)  # (20 + inf) / 2
    assert [r.seed for r in g.runs] == ["0", "1", "2", "3"]
    assert (g.final_median, g.final_worst, g.best_median) == (0.9, 0.1, 0.9)  # 3 with a value
    [g] = aggregate([run([0.9], "0"), run([0.5, 0.9], "1"), run([0.1], "2")], "max")
    assert (g.reached, g.steps, g.seconds) == (2, 20.0, 2.0)


def test_per_run_and_per_group_numbers_from_the_store(store: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    table, written = compare(
        experiment="bench", tracking_uri=store, target="0.8", smooth="2", baseline="cosine",
        latest=True, out=str(out),
    )  # fmt: skip
    assert written == [out / "compare.md", out / "compare.png"]
    assert table.splitlines() == [
        "| group | runs | reached | steps to target | time to target | steps (mean of 2) "
        "| time (mean of 2) | final median | final min | best median | steps vs baseline "
        "| smoothed vs baseline |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {B} | 2 | 2/2 | 15 | 1.5 s | 20 | 2.0 s | 0.9250 | 0.9000 | 0.9250 | 0.50× | 0.50× |",
        f"| {A} | 3 | 2/3 | 30 | 3.0 s | 40 | 4.0 s | 0.8100 | 0.7500 | 0.8200 | 1.00× | 1.00× |",
        "| c-run | 1 | 0/1 | — | — | — | — | 0.2000 | 0.2000 | 0.2000 | — | — |",
    ]
    report = (out / "compare.md").read_text()
    assert report.index("## Groups") < report.index(table) < report.index("## Runs")
    runs = report.split("## Runs")[1].strip().splitlines()
    assert len(runs) == 2 + 6
    # run, schedule, seed, best, final, raw step and time, smoothed, total, optimizer steps, id
    cells = runs[2].removesuffix(" |").split(" | ")
    assert cells[:11] == [
        f"| {B} · seed 0", "onecycle max_lr=0.1", "0", "0.9000", "0.9000", "10", "1.0 s",
        "20", "2.0 s", "5.0 s", "40",
    ]  # fmt: skip
    assert len(cells[11]) == 8  # the run id's start
    assert runs[6].split(" | ")[1:11] == [
        "cosine", "2", "0.7500", "0.7500", "—", "—", "—", "—", "5.0 s", "40",
    ]  # fmt: skip
    assert runs[7].startswith("| c-run | — | — | 0.2000 | 0.2000 | — |")
    png = (out / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_without_latest_every_finished_run_counts(store: str, tmp_path: Path) -> None:
    table, _ = compare(experiment="bench", tracking_uri=store, out=str(tmp_path / "o"))
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in table.splitlines()[2:]}
    assert rows[B].removesuffix(" |").split(" | ")[1:5] == [
        "3",
        "0.9000",
        "0.1000",
        "0.9000",
    ]  # older seed 1 too
    assert "reached" not in table  # no target: no columns for it


def test_cli_prints_the_groups_and_writes_to_the_default_folder(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # as lrsched train resolves it
    code = main(
        ["compare", "--experiment", "bench", "--latest", "--target", "0.8", "--smooth", "1"]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[2].startswith(f"| {B} | 2 | 2/2 | 15 | 1.5 s | 0.9250 |")
    assert out[-2:] == ["wrote compare-bench/compare.md", "wrote compare-bench/compare.png"]
    assert (tmp_path / "compare-bench" / "compare.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--experiment", "nope"], "--experiment='nope': no such experiment in {uri}; it has: "),
        (["--experiment", "empty"], "--experiment='empty': has no finished run in {uri}"),
        (["--metric", "val_f1"], "--metric='val_f1': no run logged it; "
         "they logged: lr/AdamW/pg0, val_acc"),
        (["--mode", "up"], "--mode='up': must be one of max, min"),
        (["--target", "high"], "--target='high': must be a finite number, e.g. 0.9"),
        (["--target", "0.8", "--smooth", "0"], "--smooth='0': must be "
         "a whole number >= 1 (1: no smoothing)"),
        (["--target", "0.8", "--baseline", "adamw"], "--baseline='adamw': "
         f"matches 2 groups; groups: {A}; {B}; c-run"),
        (["--target", "0.8", "--baseline", "sgd"], "--baseline='sgd': matches no group; groups: "),
        (["--baseline", "a"], "--baseline='a': compares steps to the target: give --target"),
        (["--filter", "params.x ~ 1"], "--filter='params.x ~ 1': MLflow cannot use it: "),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    argv: list[str],
    expected: str,
    store: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["--experiment", "bench", *argv] if "--experiment" not in argv else argv
    code = main(["compare", "--tracking-uri", store, *argv, "--latest"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("lrsched: error: " + expected.format(uri=store)), line
    assert list(tmp_path.iterdir()) == []


def test_a_store_that_is_not_there_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path}/absent.db"
    assert main(["compare", "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err.strip() == (
        f"lrsched: error: --tracking-uri='{uri}': no MLflow store there (no such file)"
    )
    assert list(tmp_path.iterdir()) == []
