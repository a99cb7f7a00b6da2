"""Figures of learning-rate curves (matplotlib, no pyplot state): planned and realised."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure


def planned_schedule_figure(schedulers: list[Any], total_steps: int) -> Figure | None:
    """The planned rate of every group of every lightning-lrsched scheduler, steps 0..total.

    ``schedulers``: e.g. ``lightning_lrsched.lightning.attached_schedules(trainer)`` (the
    schedules of both the helper and ``LRSchedule``); anything else in the list is skipped, as
    are schedules that depend on metrics (plateau) and cannot be planned.
    """
    from .adapter import ScheduleLR

    curves = []
    for index, scheduler in enumerate(schedulers):
        if isinstance(scheduler, ScheduleLR):
            rates = scheduler.planned_rates(total_steps)
            if rates is not None:
                curves.append((index, scheduler.description.get("kind", "?"), rates))
    if not curves or total_steps < 1:
        return None
    figure = Figure(figsize=(8, 4), layout="constrained")
    axes = figure.add_subplot()
    for index, kind, rates in curves:
        for group in range(len(rates[0])):
            axes.step(
                range(total_steps), [r[group] for r in rates], where="post",
                label=f"scheduler {index} ({kind}) group {group}",
            )  # fmt: skip
    axes.set(xlabel="optimizer step", ylabel="learning rate", title="planned schedule")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return figure


def realised_rates_figure(client: Any, run_id: str) -> Figure | None:
    """Every ``lr/...`` metric of a run, as logged, one line per optimizer and group."""
    run = client.get_run(run_id)
    keys = sorted(k for k in run.data.metrics if k.startswith("lr"))
    if not keys:
        return None
    figure = Figure(figsize=(8, 4), layout="constrained")
    axes = figure.add_subplot()
    for key in keys:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        axes.step([m.step for m in history], [m.value for m in history], where="post", label=key)
    axes.set(xlabel="optimizer step", ylabel="learning rate", title="realised learning rate")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return figure
