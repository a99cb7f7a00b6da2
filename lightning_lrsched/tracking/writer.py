"""``MetricWriter``: the training loop hands over points; another process writes them.

``put`` only appends to a list under a lock (about a microsecond), so no optimizer step waits on
the store, whatever its latency. A sender thread wakes every ``flush_interval`` seconds (or once
``batch_size`` points are pending), turns the points into plain tuples (tensors become floats
here, off the hot path) and passes them through a pipe to a writer process
(:mod:`~lightning_lrsched.tracking.sink`), which writes batches of at most 1,000 metrics with
``log_batch`` and retries through outages. The costly part of a write (MLflow's Python) so never
competes with training for the interpreter lock. Memory is bounded by ``max_pending`` points
waiting in this process; beyond it the oldest are dropped and counted (``dropped``). The writer
process (:class:`SharedSink`) is one per tracking URI in this process, shared by its runs: the
stages of one run (fit, then test) and the runs that follow (a sweep's jobs in one process, a
notebook that fits again) reuse it instead of importing MLflow again (3.5 s of CPU each, measured).
It ends after ``keep_alive`` seconds without points, or when the last writer using it closes
(a later point starts another).

While the run is kept on disk (its store did not answer when it started, see :mod:`.spool`),
the sender thread appends the points there instead, and every ``retry_interval`` seconds tries
to send the whole run; once it is sent, points go to the store as usual.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from .sink import MAX_METRICS_PER_BATCH, receive, send

if TYPE_CHECKING:
    from .spool import Spool


class MetricWriter:
    """Writes ``(key, value, step)`` points to one MLflow run through a writer process."""

    def __init__(
        self,
        tracking_uri: str,
        run_id: str,
        *,
        flush_interval: float = 1.0,
        batch_size: int = MAX_METRICS_PER_BATCH,
        max_pending: int = 5_000_000,
        keep_alive: float = 30.0,
        spool: Spool | None = None,
        retry_interval: float = 5.0,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.keep_alive = keep_alive
        self.retry_interval = retry_interval
        self._spool = spool
        self._next_try = time.monotonic() + retry_interval
        self._pending: deque[tuple[int, int, Mapping[str, Any]]] = deque()
        self._pending_points = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closing = False
        self.dropped = 0  # points dropped here because too many were waiting
        self.written = 0  # points the writer process has written
        self.refused = 0  # points the store kept refusing (not a transient failure)
        self._sink = SharedSink.of(tracking_uri)
        self._sink.attach(self)
        self._thread = threading.Thread(target=self._run, name="lrsched-mlflow-sender", daemon=True)
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
        """Wait until everything queued so far is written; False if ``timeout`` passed first.
        ``timeout=0`` only starts the writing."""
        self._wake.set()
        return self._idle.wait(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush and let the writer process finish; True when everything was written."""
        done = self.flush(timeout)
        self._closing = True
        self._wake.set()
        if done:
            self._thread.join(timeout=10)
        return done

    # -- the sender thread -----------------------------------------------------------------
    def _take(self) -> list[tuple[str, float, int, int]]:
        with self._lock:
            rows = list(self._pending)
            self._pending.clear()
            self._pending_points = 0
        return [
            (key, _to_float(value), timestamp, step)
            for step, timestamp, values in rows
            for key, value in values.items()
        ]

    def _deliver(self, points: list[tuple[str, float, int, int]]) -> None:
        """Hand points to the writer process and wait until it has written them."""
        self.written, self.refused = self._sink.deliver(self.run_id, points)

    def _run(self) -> None:
        last_delivery = time.monotonic()
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            points = self._take()
            if self._spool is not None:
                points = self._keep(points)
            if self._spool is None and (points or not self._idle.is_set()):
                self._deliver(points)
                last_delivery = time.monotonic()
            with self._lock:
                if not self._pending:
                    self._idle.set()
            if self._closing and self._idle.is_set():
                self._end_process()
                return
            if self._idle.is_set() and time.monotonic() - last_delivery > self.keep_alive:
                self._end_process()

    def _keep(self, points: list[tuple[str, float, int, int]]) -> list[tuple[str, float, int, int]]:
        """Points into the kept run; try to send it now and then. Returns the points it no
        longer takes (it was sent meanwhile: they go to the store)."""
        spool = self._spool
        assert spool is not None
        if points and spool.keep_points(points):
            points = []
        if not spool.sent and time.monotonic() >= self._next_try:
            self._next_try = time.monotonic() + self.retry_interval
            if spool.send_if_reachable():
                print(
                    f"lrsched tracking: {self.tracking_uri} answers; the kept run is now MLflow "
                    f"run {spool.run_id}",
                    file=sys.stderr,
                    flush=True,
                )
        if spool.sent:
            self.run_id = str(spool.run_id)
            self._spool = None
        return points

    def _end_process(self) -> None:
        """Closing: this run is done with the writer process (it ends if no other run uses it);
        idle: it ends once no run has handed it points for ``keep_alive`` seconds."""
        if self._closing:
            self._sink.detach(self)
        else:
            self._sink.end_if_idle(self.keep_alive)


class SharedSink:
    """The writer process of one tracking URI, shared by every :class:`MetricWriter` of this
    process that writes there; each message names its run. One request at a time (a lock):
    hand over the points, then wait for the process to say they are written."""

    _all: ClassVar[dict[tuple[int, str], SharedSink]] = {}
    _all_lock = threading.Lock()

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._last_use = time.monotonic()
        self._writers: weakref.WeakSet[MetricWriter] = weakref.WeakSet()  # not closed yet

    @classmethod
    def of(cls, tracking_uri: str) -> SharedSink:
        """This process's sink for ``tracking_uri`` (a forked child gets its own)."""
        key = (os.getpid(), tracking_uri)
        with cls._all_lock:
            sink = cls._all.get(key)
            if sink is None:
                sink = cls._all[key] = cls(tracking_uri)
            return sink

    def attach(self, writer: MetricWriter) -> None:
        with self._lock:
            self._writers.add(writer)

    def detach(self, writer: MetricWriter) -> None:
        """``writer`` is closed: the process ends unless another writer still uses it."""
        with self._lock:
            self._writers.discard(writer)
            if not self._writers:
                self._end()

    def end_if_idle(self, idle: float) -> None:
        with self._lock:
            if time.monotonic() - self._last_use > idle:
                self._end()

    def deliver(self, run_id: str, points: list[tuple[str, float, int, int]]) -> tuple[int, int]:
        """Write ``points`` to run ``run_id``; (points written, refused) for that run so far."""
        with self._lock:
            for _attempt in range(3):
                process = self._process
                if process is None or process.poll() is not None:
                    process = self._process = self._start()
                try:
                    if points:
                        send(process.stdin, ("points", run_id, points))
                    send(process.stdin, ("sync", run_id))
                    reply = receive(process.stdout)
                except (BrokenPipeError, OSError):
                    reply = None
                if reply is not None:
                    self._last_use = time.monotonic()
                    return reply[1], reply[2]
                self._process = None  # it died: start another one and hand the points over again
                warnings.warn("the MLflow writer process stopped; restarting it", stacklevel=1)
            raise RuntimeError("the MLflow writer process keeps failing")

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "lightning_lrsched.tracking.sink", self.tracking_uri],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def _end(self) -> None:
        """The writer process ends after its last write (it reads the end of its input)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _to_float(value: Any) -> float:
    if hasattr(value, "item"):
        value = value.item()
    return float(value)
