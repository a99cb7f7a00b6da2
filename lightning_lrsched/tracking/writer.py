"""A background writer: the training loop hands over points, a thread writes them in batches.

``put`` only appends to a list under a lock (about a microsecond), so no optimizer step waits on
the store, whatever its latency. The thread wakes every ``flush_interval`` seconds (or once
``batch_size`` points are pending), converts values (tensors are turned into floats here, off
the hot path) and writes batches of at most 1,000 metrics with ``log_batch``. A failed write is
retried with backoff, keeping its points, until the store answers: an outage delays points, it
does not lose them. Memory is bounded by ``max_pending`` points; beyond it the oldest are
dropped and counted (``dropped``).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from .store import is_transient

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch


class MetricWriter:
    """Writes ``(key, value, step)`` points to one MLflow run from a daemon thread."""

    def __init__(
        self,
        log_batch: Callable[[list[Any]], None],
        *,
        flush_interval: float = 1.0,
        batch_size: int = MAX_METRICS_PER_BATCH,
        max_pending: int = 5_000_000,
    ) -> None:
        self._log_batch = log_batch
        self.flush_interval = flush_interval
        self.batch_size = min(batch_size, MAX_METRICS_PER_BATCH)
        self.max_pending = max_pending
        self._pending: deque[tuple[int, int, Mapping[str, Any]]] = deque()
        self._pending_points = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closing = False
        self.dropped = 0
        self.written = 0
        self.failures = 0
        self.last_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lrsched-mlflow-writer", daemon=True)
        self._thread.start()

    # -- the training loop's side ----------------------------------------------------------
    def put(self, metrics: Mapping[str, Any], step: int) -> None:
        """Queue one step's metrics (values may be floats or 0-d tensors)."""
        timestamp = int(time.time() * 1000)
        with self._lock:
            self._pending.append((step, timestamp, metrics))
            self._pending_points += len(metrics)
            self._idle.clear()
            while self._pending_points > self.max_pending and len(self._pending) > 1:
                _, _, old = self._pending.popleft()
                self._pending_points -= len(old)
                self.dropped += len(old)
            wake = self._pending_points >= self.batch_size
        if wake:
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written; False if ``timeout`` passed first."""
        self._wake.set()
        return self._idle.wait(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush and stop the thread; True when everything was written."""
        done = self.flush(timeout)
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=0 if not done else 5)
        return done

    @property
    def pending(self) -> int:
        return self._pending_points

    # -- the writer thread -----------------------------------------------------------------
    def _take(self) -> list[tuple[int, int, Mapping[str, Any]]]:
        with self._lock:
            taken = list(self._pending)
            self._pending.clear()
            self._pending_points = 0
        return taken

    def _run(self) -> None:
        from mlflow.entities import Metric

        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            rows = self._take()
            if rows:
                metrics = [
                    Metric(key, _to_float(value), timestamp, step)
                    for step, timestamp, values in rows
                    for key, value in values.items()
                ]
                for start in range(0, len(metrics), self.batch_size):
                    self._write(metrics[start : start + self.batch_size])
            with self._lock:
                if not self._pending:
                    self._idle.set()
            if self._closing and self._idle.is_set():
                return

    def _write(self, batch: list[Any]) -> None:
        delay = 0.1
        while True:
            try:
                self._log_batch(batch)
                self.written += len(batch)
                return
            except Exception as error:  # keep the points and try again: nothing is lost
                self.failures += 1
                self.last_error = error
                if not is_transient(error) and self.failures > 20:
                    warnings.warn(
                        f"MLflow keeps refusing metrics ({error}); dropping a batch", stacklevel=1
                    )
                    self.dropped += len(batch)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _to_float(value: Any) -> float:
    if hasattr(value, "item"):
        value = value.item()
    return float(value)
