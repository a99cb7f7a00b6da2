"""Compare the runs of a scheduler sweep, read back from the MLflow store.

Prints one row per finished run (strategy, val_acc, test_acc), best validation accuracy first,
and draws every run's ``lr/<optimizer>/<group>`` curve, with its ``val_acc``, on one PNG::

    python recipes/compare_schedulers/compare.py                 # ./mlflow.db, compare-schedulers
    python recipes/compare_schedulers/compare.py --latest --out curves.png
    python recipes/compare_schedulers/compare.py --tracking-uri http://mlflow:5000 --experiment x

The store is ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in
the current directory: the same one ``lrsched train`` writes to when started from there.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_EXPERIMENT = "compare-schedulers"
LR_PREFIX = "lr/"


def store_uri(arg: str | None) -> str:
    """The tracking URI as ``lrsched train`` resolves it."""
    return arg or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _text(value: Any) -> str | None:
    """A param or tag as text; None for what pandas or MLflow leave empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value)
    return None if text in ("", "None", "null") else text


def _metric(row: Any, key: str) -> float:
    value = row.get(f"metrics.{key}")
    return float("nan") if value is None else float(value)


def label(row: Any) -> str:
    """The run's strategy (tag ``lrsched.strategy``, else the ``scheduler/name`` param), with
    its warmup when it has one: ``cosine``, ``cosine warmup=5%``."""
    name = _text(row.get("tags.lrsched.strategy")) or _text(row.get("params.scheduler/name"))
    name = name or "?"
    warmup = _text(row.get("params.scheduler/warmup"))
    return f"{name} warmup={warmup}" if warmup not in (None, "0") else name


def load_runs(uri: str, experiment: str, latest: bool) -> list[dict[str, Any]]:
    """The experiment's finished runs as dicts, best ``val_acc`` first (then ``test_acc``)."""
    import mlflow

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise SystemExit(f"compare.py: no MLflow store at {uri}")
    mlflow.set_tracking_uri(uri)
    frame = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    runs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _, row in frame.iterrows():
        name = label(row)
        if latest and name in seen:
            continue
        seen.add(name)
        runs.append(
            {
                "strategy": name,
                "val_acc": _metric(row, "val_acc"),
                "test_acc": _metric(row, "test_acc"),
                "run_id": row["run_id"],
                "lr_keys": sorted(
                    c.removeprefix("metrics.")
                    for c in frame.columns
                    if c.startswith(f"metrics.{LR_PREFIX}") and not math.isnan(row[c])
                ),
            }
        )

    def key(run: dict[str, Any]) -> tuple[float, float]:
        val, test = run["val_acc"], run["test_acc"]
        return (-val if val == val else math.inf, -test if test == test else math.inf)

    return sorted(runs, key=key)


def table(runs: list[dict[str, Any]]) -> str:
    """A plain-text table: strategy, val_acc, test_acc, run id."""
    width = max([len("strategy"), *(len(r["strategy"]) for r in runs)])
    lines = [f"{'strategy':<{width}}  val_acc  test_acc  run"]
    for run in runs:
        lines.append(
            f"{run['strategy']:<{width}}  {run['val_acc']:7.4f}  {run['test_acc']:8.4f}"
            f"  {run['run_id'][:8]}"
        )
    return "\n".join(lines)


def history(client: Any, run_id: str, key: str) -> tuple[list[int], list[float]]:
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return [m.step for m in points], [m.value for m in points]


def plot(uri: str, runs: list[dict[str, Any]], out: Path, log_lr: bool) -> None:
    """Every run's learning-rate curves (left) and validation accuracy (right) on one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    fig, (ax_lr, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for run in runs:
        for key in run["lr_keys"]:
            steps, values = history(client, run["run_id"], key)
            group = f" {key.removeprefix(LR_PREFIX)}" if len(run["lr_keys"]) > 1 else ""
            ax_lr.plot(steps, values, label=f"{run['strategy']}{group}")
        steps, values = history(client, run["run_id"], "val_acc")
        ax_acc.plot(steps, values, marker="o", markersize=3, label=run["strategy"])
    keys = sorted({k for run in runs for k in run["lr_keys"]})
    ax_lr.set(title="learning rate per optimizer step", xlabel="optimizer step")
    ax_lr.set_ylabel(", ".join(keys) or "lr")
    if log_lr:
        ax_lr.set_yscale("log")
    ax_acc.set(title="validation accuracy", xlabel="optimizer step", ylabel="val_acc")
    for ax in (ax_lr, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else ./mlflow.db")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name")
    parser.add_argument("--out", type=Path, default=Path("compare_schedulers.png"), help="PNG")
    parser.add_argument("--latest", action="store_true", help="only the newest run per strategy")
    parser.add_argument("--log-lr", action="store_true", help="logarithmic learning-rate axis")
    args = parser.parse_args(argv)
    uri = store_uri(args.tracking_uri)
    runs = load_runs(uri, args.experiment, args.latest)
    if not runs:
        print(f"compare.py: no finished run in experiment {args.experiment!r} of {uri}")
        return 1
    print(table(runs))
    plot(uri, runs, args.out, args.log_lr)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
