"""A run kept on local disk while its tracking server does not answer, and sending it later.

When the store cannot be reached as training starts, :class:`MLflowTracker` does not wait for
it: the run (name, tags, params, texts, figures, metrics, final status) is written here, and
sent as soon as the server answers — during training, at its end, or later with
``lrsched send``. One directory per run, ``<root>/<local id>/``:

- ``run.json``: where the run goes (store, experiment, run name, tags, start time) and, once
  sent, its MLflow run id and how much of it was sent (a send that fails half-way resumes);
- ``ops.jsonl``: params, tags, texts, artifacts and statuses in the order they were logged;
- ``metrics.jsonl``: points, one ``[key, value, timestamp_ms, step]`` per line;
- ``files/``: artifacts (figures) under their artifact paths.

After a complete send only ``run.json`` stays (a checkpoint written meanwhile names the local
id; resuming from it finds the real run through that file).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .sink import MAX_METRICS_PER_BATCH
from .store import get_or_create_experiment, last_steps, prepare_store, retrying

LOCAL_PREFIX = "unsent-"
DEFAULT_ROOT = "lrsched-unsent"
_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}


def spool_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Where unsent runs are kept: ``root``, else ``$LRSCHED_UNSENT_DIR``, else
    ``./lrsched-unsent`` (beside the default ``mlflow.db``)."""
    chosen = root or os.environ.get("LRSCHED_UNSENT_DIR") or DEFAULT_ROOT
    return Path(chosen).absolute()


def is_local_id(run_id: str | None) -> bool:
    return bool(run_id) and str(run_id).startswith(LOCAL_PREFIX)


def reachable(uri: str, timeout: float = 2.0) -> bool:
    """Whether a network store accepts a connection (local stores always do).

    A TCP connect, not an MLflow request: MLflow's client retries a refused connection for
    minutes before it gives up, and "is anybody listening" is the question here.
    """
    parts = urlsplit(uri)
    port = _DEFAULT_PORTS.get(parts.scheme.split("+")[0])
    if port is None or not parts.hostname:
        return True
    try:
        with socket.create_connection((parts.hostname, parts.port or port), timeout=timeout):
            return True
    except OSError:
        return False


class Spool:
    """One run on local disk (see the module docstring). Thread-safe: the training loop records
    ops while the metric writer's thread adds points and may send the whole run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.meta: dict[str, Any] = json.loads((path / "run.json").read_text())

    @classmethod
    def create(
        cls,
        root: Path,
        tracking_uri: str,
        experiment: str,
        run_name: str | None,
        tags: dict[str, str],
        run_id: str | None = None,
    ) -> Spool:
        """A new spooled run; ``run_id``: an existing run this one continues (a resume while
        its store does not answer)."""
        local_id = LOCAL_PREFIX + uuid.uuid4().hex
        path = root / local_id
        (path / "files").mkdir(parents=True)
        meta = {
            "tracking_uri": tracking_uri,
            "experiment": experiment,
            "run_name": run_name,
            "tags": tags,
            "start_time": now_ms(),
            "run_id": run_id,
            "continues": run_id is not None,  # points the store already has are not sent again
            "ops_sent": 0,
            "points_sent": 0,
        }
        (path / "run.json").write_text(json.dumps(meta, indent=1))
        return cls(path)

    @classmethod
    def find(cls, root: Path, local_id: str) -> Spool | None:
        path = root / local_id
        return cls(path) if (path / "run.json").exists() else None

    @property
    def local_id(self) -> str:
        return self.path.name

    @property
    def run_id(self) -> str | None:
        """The MLflow run id, once the run was created in the store."""
        return self.meta.get("run_id")

    @property
    def sent(self) -> bool:
        return bool(self.meta.get("sent"))

    # -- keeping ------------------------------------------------------------------------------
    def keep(self, op: dict[str, Any]) -> bool:
        """Append an op (params, tags, text, status); False once the run was sent (the caller
        then writes it to the store itself)."""
        with self.lock:
            if self.sent:
                return False
            _append(self.path / "ops.jsonl", [op])
            return True

    def keep_figure(self, figure: Any, name: str) -> bool:
        with self.lock:
            if self.sent:
                return False
            target = self.path / "files" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(target)
            _append(self.path / "ops.jsonl", [{"file": name}])
            return True

    def keep_points(self, points: list[tuple[str, float, int, int]]) -> bool:
        with self.lock:
            if self.sent:
                return False
            _append(self.path / "metrics.jsonl", points)
            return True

    def points(self) -> Iterator[list[Any]]:
        yield from _lines(self.path / "metrics.jsonl")

    def last_steps(self) -> dict[str, int]:
        """The last step of every metric kept so far (a resume does not log them twice)."""
        steps: dict[str, int] = {}
        for key, _, _, step in self.points():
            steps[key] = max(step, steps.get(key, -1))
        return steps

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # -- sending ------------------------------------------------------------------------------
    def send_if_reachable(self) -> bool:
        """Send the run if its store answers; True when it is in the store. Failures (the server
        went away again) leave it kept, to be sent at the next try."""
        if self.sent:
            return True
        if not reachable(self.meta["tracking_uri"]):
            return False
        try:
            self.send()
        except Exception as error:  # kept on disk; the next try resumes where this one stopped
            reason = " ".join(str(error).split())[:300]
            print(f"lrsched tracking: sending {self.path} failed ({reason}); kept", file=sys.stderr)
            return False
        return True

    def send(self, tracking_uri: str | None = None) -> str:
        """Write the whole run to its store (or ``tracking_uri``): create it once, then the ops
        and points not sent yet, the final status last. Returns the MLflow run id."""
        from mlflow import MlflowClient

        with self.lock:
            if self.sent:
                return str(self.run_id)
            uri = tracking_uri or self.meta["tracking_uri"]
            prepare_store(uri)
            client = MlflowClient(uri)
            if self.run_id is None:
                experiment_id = get_or_create_experiment(client, self.meta["experiment"])
                run = retrying(
                    lambda: client.create_run(
                        experiment_id,
                        start_time=self.meta["start_time"],
                        run_name=self.meta["run_name"],
                        tags=self.meta["tags"],
                    )
                )
                self._save(run_id=run.info.run_id)
            run_id = str(self.run_id)
            ops = list(_lines(self.path / "ops.jsonl"))
            statuses = [op for op in ops if "status" in op]
            for number, op in enumerate(ops):
                if number >= self.meta["ops_sent"] and "status" not in op:
                    apply_op(client, run_id, op, self.path / "files")
                    self._save(ops_sent=number + 1)
            self._send_points(client, run_id)
            if statuses:  # the last one: fit, then test, each end the run
                apply_op(client, run_id, statuses[-1], self.path / "files")
            self._save(sent=True, ops_sent=len(ops))
            for name in ("ops.jsonl", "metrics.jsonl"):
                (self.path / name).unlink(missing_ok=True)
            shutil.rmtree(self.path / "files", ignore_errors=True)
            return run_id

    def _send_points(self, client: Any, run_id: str) -> None:
        from mlflow.entities import Metric

        done = sent = self.meta["points_sent"]
        known = last_steps(client, run_id) if self.meta.get("continues") else {}
        batch: list[Metric] = []
        for number, (key, value, timestamp, step) in enumerate(self.points()):
            if number < done or step <= known.get(key, -1):
                continue
            batch.append(Metric(key, value, timestamp, step))
            sent = number + 1
            if len(batch) == MAX_METRICS_PER_BATCH:
                retrying(lambda batch=batch: client.log_batch(run_id, metrics=batch))
                self._save(points_sent=sent)
                batch = []
        if batch:
            retrying(lambda: client.log_batch(run_id, metrics=batch))
            self._save(points_sent=sent)

    def _save(self, **changes: Any) -> None:
        self.meta.update(changes)
        temporary = self.path / "run.json.tmp"
        temporary.write_text(json.dumps(self.meta, indent=1))
        temporary.replace(self.path / "run.json")  # atomic: a crash never leaves half a file


def apply_op(client: Any, run_id: str, op: dict[str, Any], files: Path | None = None) -> None:
    """Write one op to a run: params (those not there yet), tags, a text, a file, a status."""
    from mlflow.entities import Param, RunTag

    if "params" in op:
        existing = retrying(lambda: client.get_run(run_id)).data.params
        fresh = [Param(k, v) for k, v in op["params"].items() if k not in existing]
        for start in range(0, len(fresh), 100):
            chunk = fresh[start : start + 100]
            retrying(lambda chunk=chunk: client.log_batch(run_id, params=chunk))
    elif "tags" in op:
        tags = [RunTag(k, str(v)) for k, v in op["tags"].items()]
        retrying(lambda: client.log_batch(run_id, tags=tags))
    elif "text" in op:
        retrying(lambda: client.log_text(run_id, op["text"], op["path"]))
    elif "file" in op:
        assert files is not None
        name = Path(op["file"])
        folder = str(name.parent) if str(name.parent) != "." else None
        retrying(lambda: client.log_artifact(run_id, str(files / name), folder))
    elif "status" in op:
        retrying(lambda: client.set_terminated(run_id, op["status"], op.get("end_time")))
    else:  # pragma: no cover - every op written here is one of the above
        raise ValueError(f"unknown op {sorted(op)}")


def unsent_runs(root: Path) -> list[Spool]:
    """The runs under ``root`` not sent yet, oldest first."""
    runs = [Spool(p.parent) for p in sorted(root.glob(f"{LOCAL_PREFIX}*/run.json"))]
    return sorted((s for s in runs if not s.sent), key=lambda s: s.meta["start_time"])


def _append(path: Path, rows: list[Any]) -> None:
    with path.open("a") as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in rows))


def _lines(path: Path) -> Iterator[Any]:
    if not path.exists():
        return
    with path.open() as handle:
        for line in handle:
            if line.endswith("\n"):  # a line cut by a crash mid-write is not a point
                yield json.loads(line)


def now_ms() -> int:
    return int(time.time() * 1000)
