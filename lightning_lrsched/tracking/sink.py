"""The writing end of :class:`~lightning_lrsched.tracking.writer.MetricWriter`: a separate process.

MLflow's client spends most of a write in Python; in a thread of the training process it would
hold the interpreter lock the training loop needs. Here it has its own interpreter (and, on a
multi-core machine, its own core). It writes to the runs of one tracking URI (the runs of
its training process, one after the other: see ``SharedSink``) and reads length-prefixed
pickled messages on stdin: ``("points", run_id, [(key, value, timestamp_ms, step), ...])`` and
``("sync", run_id)``, which it answers on stdout with ``("synced", written, dropped)`` (that
run's counts) once everything before it is written. Failed
writes are retried until the store answers. It ignores SIGINT and SIGTERM (a job's whole process
group gets those): it stops when its input closes, after writing all it received — so even a
training process killed with SIGKILL loses only what it had not handed over yet.

Run as ``python -m lightning_lrsched.tracking.sink <tracking_uri>``.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import time
from typing import Any, BinaryIO

from .store import is_transient, retrying

_HEADER = struct.Struct("!I")
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch


def send(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream: BinaryIO) -> Any | None:
    """The next message, or None at the end of the stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def write_points(client: Any, run_id: str, points: list[tuple], counts: dict[str, int]) -> None:
    from mlflow.entities import Metric

    for start in range(0, len(points), MAX_METRICS_PER_BATCH):
        batch = [Metric(k, v, t, s) for k, v, t, s in points[start : start + MAX_METRICS_PER_BATCH]]
        failures, delay = 0, 0.1
        while True:
            try:
                client.log_batch(run_id, metrics=batch)
                counts["written"] += len(batch)
                break
            except Exception as error:  # keep the points and try again: an outage loses nothing
                failures += 1
                if not is_transient(error) and failures > 20:
                    print(
                        f"lrsched tracking: dropping {len(batch)} points: {error}", file=sys.stderr
                    )
                    counts["dropped"] += len(batch)
                    break
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def main(argv: list[str]) -> int:
    (uri,) = argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # nothing but replies on the reply channel
    from mlflow import MlflowClient

    client = retrying(lambda: MlflowClient(uri), deadline=120)
    counts: dict[str, dict[str, int]] = {}  # per run
    requests = sys.stdin.buffer
    while (message := receive(requests)) is not None:
        run = counts.setdefault(message[1], {"written": 0, "dropped": 0})
        if message[0] == "points":
            write_points(client, message[1], message[2], run)
        elif message[0] == "sync":
            send(replies, ("synced", run["written"], run["dropped"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
