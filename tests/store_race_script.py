"""Processes that start at the same moment on a fresh SQLite store, for ``tests/test_tracking.py``.

    python tests/store_race_script.py OUT_DIR STORE_URI RACERS POINTS

Imports once (Lightning and MLflow cost seconds of CPU per process), then forks ``RACERS``
processes that wait at a barrier and leave it together. Each one, through ``MLflowTracker``:
prepares the store (which does not exist yet), creates the experiment (all at once: they race
to create it) and its own run, waits for the others to have theirs, then logs ``POINTS`` steps
of two metrics (the background writer flushes every 10 ms: many small write transactions,
interleaved with the other processes') and finishes the run. Each writes
``OUT_DIR/result-<i>.json``: its run id, the writer's counters and the longest ``log_metrics``
call (the caller never waits on the store).
The exit status is non-zero if any racer failed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

# Imported before forking, so that no racer pays for it inside the race.
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
from mlflow import MlflowClient  # noqa: F401
from mlflow.entities import Metric  # noqa: F401

from lightning_lrsched.tracking import MLflowTracker


def race(out: Path, uri: str, index: int, points: int, barrier) -> None:
    barrier.wait(timeout=120)
    started = time.time()
    tracker = MLflowTracker(
        experiment_name="race", tracking_uri=uri, run_name=f"racer-{index}", flush_interval=0.01
    )
    longest_put = 0.0
    for step in range(points):
        before = time.perf_counter()
        tracker.log_metrics({"value": float(index * 100_000 + step), "step_copy": step}, step=step)
        if step == 0:  # that call created the run: now all write together
            barrier.wait(timeout=120)
        else:
            longest_put = max(longest_put, time.perf_counter() - before)
        if step % 10 == 9:
            time.sleep(0.005)  # let the writer take a batch now and then
    writer = tracker._writer  # its counts, read after the finalize
    tracker.finalize("success")
    result = {
        "run_id": tracker.version,
        "seconds": time.time() - started,
        "dropped": writer.dropped,
        "refused": writer.refused,
        "written": writer.written,
        "longest_put": longest_put,
    }
    (out / f"result-{index}.json").write_text(json.dumps(result))


def racer(out: Path, uri: str, index: int, points: int, barrier) -> None:
    try:
        race(out, uri, index, points, barrier)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


def main() -> None:
    out, uri = Path(sys.argv[1]), sys.argv[2]
    racers, points = int(sys.argv[3]), int(sys.argv[4])
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(racers)
    processes = [
        context.Process(target=racer, args=(out, uri, i, points, barrier)) for i in range(racers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    codes = [process.exitcode for process in processes]
    print("exit codes:", codes)
    sys.exit(0 if all(code == 0 for code in codes) else 1)


if __name__ == "__main__":
    main()
