"""Where runs are stored, and getting a store ready safely when many processes start at once."""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError

DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT_KIND_TAG = ("mlflow.experimentKind", "custom_model_development")
_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "file")
_prepared: set[str] = set()
T = TypeVar("T")


def resolve_uri(uri: str | None = None) -> str:
    """The given URI, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the cwd
    (MLflow's own default, so a plain ``mlflow ui`` started there shows the runs)."""
    key = "tracking_uri"
    if not uri and os.environ.get("MLFLOW_TRACKING_URI"):
        key, uri = "MLFLOW_TRACKING_URI", os.environ["MLFLOW_TRACKING_URI"]
    uri = uri or DEFAULT_URI
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if scheme not in _SCHEMES:
        raise ConfigError(key, uri, "must be a store URI: sqlite:///path.db or http://host:port")
    if scheme == "file":
        _check_file_store_accepted(key, uri)
    if uri == DEFAULT_URI:
        uri = f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    return uri


def _check_file_store_accepted(key: str, uri: str) -> None:
    """MLflow 3.13 and later refuse the file store (``./mlruns``) unless told otherwise: say so
    in one line before training, not in a traceback at its first point. MLflow itself is asked
    (opening the store is all it takes), so a version that accepts it passes."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except MlflowException as error:
        reason = str(error).split(". ")[0].strip()
        raise ConfigError(
            key,
            uri,
            f"MLflow refuses this store ({reason}); use sqlite:///mlflow.db (`mlflow "
            "migrate-filestore` moves old runs there) or set MLFLOW_ALLOW_FILE_STORE=true",
        ) from None


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


# HTTP statuses that say "not now" rather than "never": rate limiting, an overloaded or restarting
# server, a proxy whose upstream is down or slow.
TRANSIENT_HTTP_STATUSES = frozenset({408, 429, 502, 503, 504})
# SQLite's primary result codes for another connection holding the database: busy, locked, and a
# failed file-locking protocol (https://sqlite.org/rescode.html).
TRANSIENT_SQLITE_CODES = frozenset({5, 6, 15})  # SQLITE_BUSY, SQLITE_LOCKED, SQLITE_PROTOCOL


def is_transient(error: BaseException) -> bool:
    """Errors worth retrying: a busy SQLite database, an unreachable, slow or overloaded server.

    Decided by exception type, status code and error code, never by message text, for the
    error and every exception it was raised from or while handling (MLflow's REST client
    re-raises a refused connection as a plain ``MlflowException`` in its ``except`` block).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _transient_by_itself(current):
            return True
        # the chain Python prints: the explicit cause, else the exception being handled when
        # this one was raised, unless `raise ... from None` hid it
        if current.__cause__ is not None:
            current = current.__cause__
        else:
            current = None if current.__suppress_context__ else current.__context__
    return False


def _transient_by_itself(error: BaseException) -> bool:
    import sqlite3

    if isinstance(error, ConnectionError | TimeoutError):  # refused, reset, broken pipe, timeout
        return True
    if isinstance(error, sqlite3.OperationalError):
        code = getattr(error, "sqlite_errorcode", None)  # Python >= 3.11
        # Python 3.10 does not say which: a failed operation (not a bad statement) is retried
        return code is None or (code & 0xFF) in TRANSIENT_SQLITE_CODES
    if _http_status(error) in TRANSIENT_HTTP_STATUSES:
        return True
    return _transient_transport_error(error)


def _http_status(error: BaseException) -> int | None:
    """The HTTP status an error carries: an ``HTTPError``'s response, or the status of an
    ``MlflowException``'s error code (MLflow maps each code to one: TEMPORARILY_UNAVAILABLE,
    which its SQL stores raise for a failed operation such as a locked database, to 503;
    REQUEST_LIMIT_EXCEEDED and RESOURCE_EXHAUSTED to 429; DEADLINE_EXCEEDED to 504)."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    get_status = getattr(error, "get_http_status_code", None)
    if callable(get_status) and isinstance(getattr(error, "error_code", None), str):
        code = get_status()
        return code if isinstance(code, int) else None
    return None


def _transient_transport_error(error: BaseException) -> bool:
    """requests' and urllib3's own connection, timeout and retries-exhausted errors (they are
    ``IOError``s, not ``ConnectionError``s). ``RetryError``: the server kept answering with a
    status MLflow retries (429, 5xx) until MLflow's own retries ran out."""
    try:
        import requests
    except ImportError:  # pragma: no cover - MLflow requires it
        return False
    transport = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.RetryError,
        requests.exceptions.ChunkedEncodingError,
    )
    if isinstance(error, transport):
        return True
    from urllib3 import exceptions as urllib3_errors  # requests requires urllib3

    return isinstance(
        error,
        urllib3_errors.MaxRetryError  # urllib3 retried a connection or a status and gave up
        | urllib3_errors.ProtocolError
        | urllib3_errors.TimeoutError
        | urllib3_errors.NewConnectionError,
    )


def retrying(action: Callable[[], T], *, deadline: float = 60.0) -> T:
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
            retrying(lambda: MlflowClient(uri).search_experiments(max_results=1))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _prepared.add(uri)


def get_or_create_experiment(client: Any, name: str) -> str:
    """The experiment's id, creating it (tagged as model training) if another process did not
    just do so."""

    def find_or_create() -> str:
        found = client.get_experiment_by_name(name)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            try:
                experiment_id = client.create_experiment(name)
            except Exception:  # another process created it at the same moment
                found = client.get_experiment_by_name(name)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND_TAG)
        return experiment_id

    return retrying(find_or_create)


def last_steps(client: Any, run_id: str) -> dict[str, int]:
    """The last step of every metric already in a run, so a resume does not log them twice."""
    run = retrying(lambda: client.get_run(run_id))
    steps = {}
    for key in run.data.metrics:
        history = retrying(lambda key=key: client.get_metric_history(run_id, key))
        steps[key] = max((m.step for m in history), default=-1)
    return steps
