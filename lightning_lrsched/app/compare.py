"""``lrsched compare``: the finished runs of an MLflow experiment, per run and per group of
seeds, written as Markdown tables and one PNG.

A *group* is the runs that share the tag ``lrsched.group`` (the run's name without its seed,
see :mod:`.run_names`): the seeds of one configuration. For each run, the validation metric's
history gives its best and final value and the first evaluation that reaches ``--target``
(``>=`` in max mode, ``<=`` in min mode), raw and smoothed: the first evaluation at which the
mean of ``--smooth`` consecutive evaluations reaches it (its step is the last of them). A
group reports medians over its seeds; a run that never reaches the target counts as infinitely
many steps, so a median of "—" says that half of the seeds or more never got there.

The computation (:func:`first_reaching`, :func:`summarize`, :func:`aggregate`,
:func:`groups_table`) works on plain histories; only :func:`open_experiment` and
:func:`summarize_runs` read a store, through
MLflow's public client (``MlflowClient.search_runs``, ``get_metric_history``).

>>> points = [Point(10, 0.5, 1.0), Point(20, 0.9, 2.0), Point(30, 0.6, 3.0), Point(40, 1.0, 4.0)]
>>> first_reaching(points, 0.8, "max")
Point(step=20, value=0.9, seconds=2.0)
>>> first_reaching(points, 0.8, "max", window=2)  # (0.9 + 0.6) / 2 < 0.8 <= (0.6 + 1.0) / 2
Point(step=40, value=1.0, seconds=4.0)
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .run_names import GROUP_TAG, SCHEDULE_TAG, SEED_TAG

DEFAULT_EXPERIMENT = "lightning-lrsched"  # the app's (conf/lrsched/logger/mlflow.yaml)
DEFAULT_METRIC = "val_acc"
DEFAULT_SMOOTH = 3
MODES = ("max", "min")
LR_PREFIX = "lr/"
RANGE_TEST = ("lrsched.kind", "range_test")
DASH = "—"


# -- the computation, on plain histories -----------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One evaluation: the optimizer step, the value, seconds since the run started."""

    step: int
    value: float
    seconds: float


def default_mode(metric: str) -> str:
    """``min`` for losses and errors, else ``max``.

    >>> default_mode("val_acc"), default_mode("val_loss"), default_mode("val_error")
    ('max', 'min', 'min')
    """
    return "min" if re.search(r"loss|err|perplexity", metric) else "max"


def reaches(value: float, target: float, mode: str) -> bool:
    return value >= target if mode == "max" else value <= target


def first_reaching(
    points: Sequence[Point], target: float, mode: str, window: int = 1
) -> Point | None:
    """The first point at which the mean of the last ``window`` values (this one included)
    reaches ``target``; None if none does. ``window=1``: the first value that reaches it."""
    for i in range(window - 1, len(points)):
        mean = math.fsum(p.value for p in points[i - window + 1 : i + 1]) / window
        if reaches(mean, target, mode):
            return points[i]
    return None


@dataclass(frozen=True)
class RunSummary:
    """What one run's history says (``None``: not reached, or no value)."""

    run_id: str
    name: str
    group: str
    seed: str
    schedule: str
    best: float | None
    final: float | None
    reached: Point | None  # the first evaluation that reaches the target
    reached_smoothed: Point | None
    total_seconds: float | None
    optimizer_steps: int | None
    history: tuple[Point, ...] = field(repr=False, default=())
    lr_curves: dict[str, list[tuple[int, float]]] = field(repr=False, default_factory=dict)


def summarize(
    history: Sequence[Point],
    *,
    mode: str,
    target: float | None,
    smooth: int,
    run_id: str = "",
    name: str = "",
    group: str = "",
    seed: str = "",
    schedule: str = "",
    total_seconds: float | None = None,
    optimizer_steps: int | None = None,
) -> RunSummary:
    """A run's best and final value and when it first reaches ``target`` (raw and smoothed).

    >>> s = summarize([Point(5, 0.4, 1.5), Point(10, 0.8, 3.0), Point(15, 0.7, 4.5)],
    ...               mode="max", target=0.75, smooth=2)
    >>> s.best, s.final, s.reached.step, s.reached_smoothed.step
    (0.8, 0.7, 10, 15)
    """
    points = tuple(history)
    values = [p.value for p in points]
    pick = max if mode == "max" else min
    reached = smoothed = None
    if target is not None:
        reached = first_reaching(points, target, mode)
        smoothed = first_reaching(points, target, mode, smooth)
    return RunSummary(
        run_id, name, group, seed, schedule,
        pick(values) if values else None, values[-1] if values else None,
        reached, smoothed, total_seconds, optimizer_steps, points,
    )  # fmt: skip


def _median(values: Iterable[float]) -> float:
    return statistics.median(values)


@dataclass(frozen=True)
class GroupSummary:
    """Medians over the seeds of one group (``inf``: more than half never reached it)."""

    group: str
    runs: tuple[RunSummary, ...]
    reached: int  # runs that reach the target (raw)
    steps: float  # median steps to the target
    seconds: float  # median seconds to the target
    steps_smoothed: float
    seconds_smoothed: float
    final_median: float | None
    final_worst: float | None  # min over seeds in max mode, max in min mode
    best_median: float | None
    ratio: float | None = None  # steps / the baseline group's steps
    ratio_smoothed: float | None = None


def _steps(point: Point | None) -> float:
    return math.inf if point is None else float(point.step)


def _seconds(point: Point | None) -> float:
    return math.inf if point is None else point.seconds


def _ratio(steps: float, base: float) -> float | None:
    return steps / base if math.isfinite(steps) and math.isfinite(base) and base > 0 else None


def aggregate(
    runs: Sequence[RunSummary], mode: str, baseline: str | None = None
) -> list[GroupSummary]:
    """One :class:`GroupSummary` per group, fastest to the smoothed target first (then the best
    final median); ``ratio`` is median steps over the ``baseline`` group's (exact group name).

    >>> a = [summarize([Point(s, v, s / 10) for s, v in h], mode="max", target=0.8, smooth=1,
    ...                group="a") for h in ([(10, 0.9)], [(10, 0.5), (20, 0.85)], [(10, 0.1)])]
    >>> [(g.group, g.reached, g.steps, g.final_median) for g in aggregate(a, "max")]
    [('a', 2, 20.0, 0.85)]
    """
    by_group: dict[str, list[RunSummary]] = {}
    for run in runs:
        by_group.setdefault(run.group, []).append(run)
    worst = min if mode == "max" else max
    better = -1 if mode == "max" else 1
    groups = []
    for name, members in by_group.items():
        finals = [r.final for r in members if r.final is not None]
        bests = [r.best for r in members if r.best is not None]
        groups.append(
            GroupSummary(
                name,
                tuple(sorted(members, key=lambda r: (_seed_key(r.seed), r.name))),
                sum(r.reached is not None for r in members),
                _median(_steps(r.reached) for r in members),
                _median(_seconds(r.reached) for r in members),
                _median(_steps(r.reached_smoothed) for r in members),
                _median(_seconds(r.reached_smoothed) for r in members),
                _median(finals) if finals else None,
                worst(finals) if finals else None,
                _median(bests) if bests else None,
            )
        )
    if baseline is not None:
        base = next(g for g in groups if g.group == baseline)
        groups = [
            GroupSummary(
                **{
                    **g.__dict__,
                    "ratio": _ratio(g.steps, base.steps),
                    "ratio_smoothed": _ratio(g.steps_smoothed, base.steps_smoothed),
                }
            )
            for g in groups
        ]

    def order(g: GroupSummary) -> tuple[float, float, str]:
        final = g.final_median if g.final_median is not None else -better * math.inf
        return (g.steps_smoothed, better * final, g.group)

    return sorted(groups, key=order)


def _seed_key(seed: str) -> tuple[int, str]:
    return (int(seed), "") if seed.isdigit() else (1 << 62, seed)


def pick_baseline(groups: Iterable[str], wanted: str) -> str:
    """The group ``wanted`` names: itself, else the one group whose name contains it.

    >>> pick_baseline(["cosine · adamw", "onecycle · adamw"], "onecycle")
    'onecycle · adamw'
    """
    names = sorted(set(groups))
    if wanted in names:
        return wanted
    matches = [g for g in names if wanted in g]
    if len(matches) == 1:
        return matches[0]
    found = "matches no group" if not matches else f"matches {len(matches)} groups"
    raise ConfigError("--baseline", wanted, f"{found}; groups: {'; '.join(names)}")


# -- tables ------------------------------------------------------------------------------------


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _metric(value: float | None) -> str:
    return DASH if value is None else f"{value:.4f}"


def _time(seconds: float | None) -> str:
    return DASH if seconds is None or not math.isfinite(seconds) else f"{seconds:.1f} s"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table (``|`` inside a cell escaped)."""
    lines = ["| " + " | ".join(map(_cell, header)) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class Settings:
    """What the tables say they measure."""

    metric: str = DEFAULT_METRIC
    mode: str = "max"
    target: float | None = None
    smooth: int = DEFAULT_SMOOTH
    baseline: str | None = None


def _target_label(settings: Settings) -> str:
    sign = ">=" if settings.mode == "max" else "<="
    return f"{settings.metric} {sign} {settings.target:g}"


def groups_table(groups: Sequence[GroupSummary], settings: Settings) -> str:
    """The groups as a Markdown table: medians over seeds (columns for the target only when
    there is one, for smoothing only when ``smooth > 1``, for the ratio only with a baseline).

    >>> runs = [summarize([Point(10, 0.5, 2.0), Point(20, 0.9, 4.0)], mode="max", target=0.8,
    ...                   smooth=1, group="g")]
    >>> print(groups_table(aggregate(runs, "max"), Settings(target=0.8, smooth=1)))
    | group | runs | reached | steps to target | time to target | final median | final min | best median |
    |---|---|---|---|---|---|---|---|
    | g | 1 | 1/1 | 20 | 4.0 s | 0.9000 | 0.9000 | 0.9000 |
    """  # noqa: E501
    has_target = settings.target is not None
    smoothed = has_target and settings.smooth > 1
    worst = "min" if settings.mode == "max" else "max"
    header = ["group", "runs"]
    if has_target:
        header += ["reached", "steps to target", "time to target"]
    if smoothed:
        header += [f"steps (mean of {settings.smooth})", f"time (mean of {settings.smooth})"]
    header += ["final median", f"final {worst}", "best median"]
    if settings.baseline is not None:
        header += ["steps vs baseline"] + (["smoothed vs baseline"] if smoothed else [])
    rows = []
    for g in groups:
        row = [g.group, str(len(g.runs))]
        if has_target:
            row += [f"{g.reached}/{len(g.runs)}", _number(g.steps), _time(g.seconds)]
        if smoothed:
            row += [_number(g.steps_smoothed), _time(g.seconds_smoothed)]
        row += [_metric(g.final_median), _metric(g.final_worst), _metric(g.best_median)]
        if settings.baseline is not None:
            ratios = [g.ratio] + ([g.ratio_smoothed] if smoothed else [])
            row += [DASH if r is None else f"{r:.2f}×" for r in ratios]
        rows.append(row)
    return markdown(header, rows)


def runs_table(groups: Sequence[GroupSummary], settings: Settings) -> str:
    """Every run, in the groups' order then by seed."""
    has_target = settings.target is not None
    smoothed = has_target and settings.smooth > 1
    header = ["run", "schedule", "seed", "best", "final"]
    if has_target:
        header += ["steps to target", "time to target"]
    if smoothed:
        header += [f"steps (mean of {settings.smooth})", f"time (mean of {settings.smooth})"]
    header += ["total time", "optimizer steps", "run id"]
    rows = []
    for g in groups:
        for r in g.runs:
            row = [r.name, r.schedule, r.seed, _metric(r.best), _metric(r.final)]
            if has_target:
                row += [_number(_steps(r.reached)), _time(_seconds(r.reached))]
            if smoothed:
                row += [_number(_steps(r.reached_smoothed)), _time(_seconds(r.reached_smoothed))]
            row += [_time(r.total_seconds), _number(r.optimizer_steps), r.run_id[:8]]
            rows.append(row)
    return markdown(header, rows)


def report(groups: Sequence[GroupSummary], settings: Settings, title: str) -> str:
    """``compare.md``: what was compared, the groups, then the runs."""
    measured = [f"metric `{settings.metric}` ({settings.mode})"]
    if settings.target is not None:
        measured.append(f"target `{_target_label(settings)}`")
        if settings.smooth > 1:
            measured.append(f"smoothed: mean of {settings.smooth} consecutive evaluations")
    if settings.baseline is not None:
        measured.append(f"baseline `{settings.baseline}`")
    return (
        "\n\n".join(
            [
                f"# {title}",
                "; ".join(measured) + ". Groups: medians over seeds; a run that never reaches "
                f"the target counts as infinite ({DASH}: half of the seeds or more never got "
                "there).",
                "## Groups",
                groups_table(groups, settings),
                "## Runs",
                runs_table(groups, settings),
            ]
        )
        + "\n"
    )


# -- the figure --------------------------------------------------------------------------------


def band(histories: Sequence[Sequence[Point]]) -> list[tuple[int, float, float, float]]:
    """Per step: (step, median, min, max) over the histories that have a value there.

    >>> band([[Point(1, 0.2, 0), Point(2, 0.4, 0)], [Point(1, 0.6, 0)], [Point(1, 0.3, 0)]])
    [(1, 0.3, 0.2, 0.6), (2, 0.4, 0.4, 0.4)]
    """
    at: dict[int, list[float]] = {}
    for history in histories:
        for point in history:
            at.setdefault(point.step, []).append(point.value)
    return [(s, _median(v), min(v), max(v)) for s, v in sorted(at.items())]


def draw(groups: Sequence[GroupSummary], settings: Settings, *, log_lr: bool, title: str) -> Any:
    """Left: each group's learning rate (its first run); right: the metric against the step,
    the median over seeds with a min-max band, and the target."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5), layout="constrained")
    ax_lr, ax_metric = fig.subplots(1, 2)
    for i, g in enumerate(groups):
        color = f"C{i % 10}"
        curves = g.runs[0].lr_curves
        for j, (key, points) in enumerate(sorted(curves.items())):
            label = g.group if len(curves) == 1 else f"{g.group} {key.removeprefix(LR_PREFIX)}"
            steps, rates = zip(*points, strict=True) if points else ((), ())
            ax_lr.plot(steps, rates, color=color, label=label, linestyle=("-", "--", ":")[j % 3])
        rows = band([r.history for r in g.runs])
        if rows:
            steps, mid, low, high = zip(*rows, strict=True)
            ax_metric.plot(steps, mid, color=color, marker="o", markersize=3, label=g.group)
            ax_metric.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
    if settings.target is not None:
        ax_metric.axhline(
            settings.target, color="0.4", linestyle=":", label=_target_label(settings)
        )
    ax_lr.set(title="learning rate (first run of each group)", xlabel="optimizer step")
    ax_lr.set_ylabel("lr")
    if log_lr:
        ax_lr.set_yscale("log")
    ax_metric.set(
        title=f"{settings.metric}: median over seeds, min-max band",
        xlabel="optimizer step",
        ylabel=settings.metric,
    )
    for ax in (ax_lr, ax_metric):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    return fig


# -- the store ---------------------------------------------------------------------------------


@dataclass
class Loaded:
    """The runs read from the store, before they are summarized."""

    uri: str
    experiment: str
    runs: list[Any]  # mlflow.entities.Run, newest first


def open_experiment(uri: str, experiment: str, filter_string: str | None, latest: bool) -> Loaded:
    """The experiment's FINISHED runs (no range tests), newest first; with ``latest``, only the
    newest run of each name (the newest of each seed of each group)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ..tracking.store import sqlite_path

    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise ConfigError("--tracking-uri", uri, "no MLflow store there (no such file)")
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise ConfigError(
            "--experiment", experiment, f"no such experiment in {uri}; it has: {', '.join(names)}"
        )
    where = "attributes.status = 'FINISHED'"
    if filter_string:
        where += f" and {filter_string}"
    runs: list[Any] = []
    token = None
    try:
        while True:
            page = client.search_runs(
                [found.experiment_id], where, max_results=1000,
                order_by=["attributes.start_time DESC"], page_token=token,
            )  # fmt: skip
            runs += page
            token = page.token
            if not token:
                break
    except MlflowException as err:
        reason = str(err).strip().splitlines()[0]
        raise ConfigError("--filter", filter_string, f"MLflow cannot use it: {reason}") from None
    runs = [r for r in runs if r.data.tags.get(RANGE_TEST[0]) != RANGE_TEST[1]]
    if latest:
        seen: set[str] = set()
        runs = [r for r in runs if not (r.info.run_name in seen or seen.add(r.info.run_name))]
    if not runs:
        shown = f" matching {filter_string!r}" if filter_string else ""
        raise ConfigError("--experiment", experiment, f"has no finished run{shown} in {uri}")
    return Loaded(uri, experiment, runs)


def check_metric(runs: Sequence[Any], metric: str) -> None:
    """Refuse a metric that no run logged, listing the ones they did."""
    logged = sorted({key for run in runs for key in run.data.metrics})
    if metric not in logged:
        raise ConfigError("--metric", metric, f"no run logged it; they logged: {', '.join(logged)}")


def _history(client: Any, run: Any, key: str) -> list[Point]:
    start = run.info.start_time
    points = sorted(
        client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp)
    )
    return [Point(int(m.step), float(m.value), (m.timestamp - start) / 1000) for m in points]


def summarize_runs(loaded: Loaded, settings: Settings) -> list[RunSummary]:
    """Every run's summary, its history of the metric and (for the first run of each group)
    its learning-rate curves."""
    from mlflow import MlflowClient

    client = MlflowClient(loaded.uri)
    summaries = []
    for run in loaded.runs:
        tags, info = run.data.tags, run.info
        name = info.run_name or info.run_id
        lr_keys = sorted(k for k in run.data.metrics if k.startswith(LR_PREFIX))
        lr = {key: [(p.step, p.value) for p in _history(client, run, key)] for key in lr_keys}
        steps = max((s for s, _ in lr[lr_keys[0]]), default=-1) + 1 if lr_keys else 0
        schedule = tags.get(SCHEDULE_TAG) or tags.get("lrsched.strategy")
        schedule = schedule or run.data.params.get("scheduler/name") or DASH
        total = (info.end_time - info.start_time) / 1000 if info.end_time else None
        summary = summarize(
            _history(client, run, settings.metric),
            mode=settings.mode,
            target=settings.target,
            smooth=settings.smooth,
            run_id=info.run_id,
            name=name,
            group=tags.get(GROUP_TAG) or name,
            seed=tags.get(SEED_TAG) or run.data.params.get("seed") or DASH,
            schedule=schedule,
            total_seconds=total,
            optimizer_steps=steps or None,
        )
        summaries.append(RunSummary(**{**summary.__dict__, "lr_curves": lr}))
    return summaries


# -- the command -------------------------------------------------------------------------------


def parse_settings(
    metric: str, mode: str | None, target: str | None, smooth: str, baseline: str | None
) -> Settings:
    """The options checked, each refused with its key, value and what is allowed."""
    if mode is None:
        mode = default_mode(metric)
    if mode not in MODES:
        raise ConfigError("--mode", mode, f"must be one of {', '.join(MODES)}")
    value = None
    if target is not None:
        try:
            value = float(target)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConfigError("--target", target, "must be a finite number, e.g. 0.9")
    window = int(smooth) if re.fullmatch(r"\d+", str(smooth).strip()) else 0
    if window < 1:
        raise ConfigError("--smooth", smooth, "must be a whole number >= 1 (1: no smoothing)")
    if baseline is not None and value is None:
        raise ConfigError("--baseline", baseline, "compares steps to the target: give --target")
    return Settings(metric, mode, value, window, baseline)


def default_out(experiment: str) -> Path:
    """``./compare-<experiment>`` (a ``/`` in the name becomes ``_``)."""
    return Path(f"compare-{experiment.replace('/', '_')}")


def compare(
    *,
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
    filter_string: str | None = None,
    metric: str = DEFAULT_METRIC,
    mode: str | None = None,
    target: str | None = None,
    smooth: str = str(DEFAULT_SMOOTH),
    baseline: str | None = None,
    latest: bool = False,
    log_lr: bool = False,
    out: str | None = None,
) -> tuple[str, list[Path]]:
    """Read, compute, write: the groups table and the files written. Every check runs before
    anything is written."""
    from ..tracking.store import resolve_uri

    settings = parse_settings(metric, mode, target, smooth, baseline)
    folder = Path(out) if out else default_out(experiment)
    if folder.exists() and not folder.is_dir():
        raise ConfigError("--out", str(folder), "is a file; give a directory")
    try:
        uri = resolve_uri(tracking_uri)
    except ConfigError as err:
        key = "--tracking-uri" if err.key == "tracking_uri" else err.key
        raise ConfigError(key, err.value, err.allowed) from None
    loaded = open_experiment(uri, experiment, filter_string, latest)
    check_metric(loaded.runs, settings.metric)
    runs = summarize_runs(loaded, settings)
    if settings.baseline is not None:
        chosen = pick_baseline((r.group for r in runs), settings.baseline)
        settings = Settings(**{**settings.__dict__, "baseline": chosen})
    groups = aggregate(runs, settings.mode, settings.baseline)
    title = f"lrsched compare: experiment {experiment}"
    figure = draw(groups, settings, log_lr=log_lr, title=title)
    folder.mkdir(parents=True, exist_ok=True)
    md, png = folder / "compare.md", folder / "compare.png"
    md.write_text(report(groups, settings, title))
    figure.savefig(png, dpi=110)
    return groups_table(groups, settings), [md, png]
