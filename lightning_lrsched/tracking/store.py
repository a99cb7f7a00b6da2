"""Where runs are stored, and getting a store ready safely when many processes start at once."""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import ConfigError

DEFAULT_URI = "sqlite:///mlflow.db"
_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "file")
_prepared: set[str] = set()
T = TypeVar("T")


def resolve_uri(uri: str | None = None) -> str:
    """The given URI, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the cwd
    (MLflow's own default, so a plain ``mlflow ui`` started there shows the runs)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if scheme not in _SCHEMES:
        raise ConfigError(
            "tracking_uri", uri, "must be a store URI: sqlite:///path.db or http://host:port"
        )
    if uri == DEFAULT_URI:
        uri = f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def is_transient(error: BaseException) -> bool:
    """Errors worth retrying: a busy SQLite database, an unreachable or overloaded server."""
    text = f"{type(error).__name__}: {error}".lower()
    words = (
        "database is locked", "database is busy", "connection", "temporarily unavailable",
        "max retries", "timed out", "timeout", "503", "502", "504", "429", "broken pipe",
        "remote end closed", "unable to open database",
    )  # fmt: skip
    return any(word in text for word in words)


def retrying(action: Callable[[], T], *, deadline: float = 60.0, what: str = "MLflow") -> T:
    """Run ``action``, retrying transient failures with jittered backoff until ``deadline`` s."""
    give_up = time.monotonic() + deadline
    delay = 0.05
    while True:
        try:
            return action()
        except Exception as error:
            if not is_transient(error) or time.monotonic() + delay > give_up:
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


def prepare_store(uri: str) -> None:
    """Create and migrate a store once. For SQLite, an exclusive file lock makes processes that
    start together (a parallel sweep) take turns, so only the first creates the tables."""
    if uri in _prepared:
        return
    from mlflow import MlflowClient

    path = sqlite_path(uri)
    if path is None:
        _prepared.add(uri)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            retrying(lambda: MlflowClient(uri).search_experiments(max_results=1), what="store")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _prepared.add(uri)
