"""Which tracking errors are retried: decided by exception type, status and error code.

Every error here is real: raised by MLflow's client against a real SQLite store, a port where
no server listens any more, a server that accepts and never answers, and a small real HTTP
server answering with the status under test; by SQLite on a database another connection holds;
by SQLAlchemy over it. ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` turns MLflow's own retries off
(the package's writer does the retrying), so each request fails at once.
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from lightning_lrsched import ConfigError
from lightning_lrsched.tracking.store import is_transient, retrying


@pytest.fixture(autouse=True)
def _no_mlflow_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")


def raised(action) -> BaseException:
    try:
        action()
    except Exception as error:
        return error
    raise AssertionError("no error raised")


# -- servers ------------------------------------------------------------------------------------


def free_port() -> int:
    """A port a server just stopped listening on: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Reply(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        status, body = self.server.reply  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Reply)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _mlflow_error(code: str, message: str = "from the test server") -> bytes:
    return json.dumps({"error_code": code, "message": message}).encode()


# -- HTTP -------------------------------------------------------------------------------------


def test_a_server_that_is_down_is_transient():
    client = MlflowClient(f"http://127.0.0.1:{free_port()}")
    error = raised(lambda: client.search_experiments())
    assert isinstance(error, MlflowException)
    assert error.error_code == "INTERNAL_ERROR"  # the code alone would not say it
    assert is_transient(error)


def test_a_server_that_never_answers_is_transient():
    with socket.socket() as listening:  # the handshake completes; no request is ever read
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        client = MlflowClient(f"http://127.0.0.1:{listening.getsockname()[1]}")
        started = time.monotonic()
        error = raised(lambda: client.search_experiments())
        assert time.monotonic() - started < 30
    assert isinstance(error, MlflowException)
    assert is_transient(error)


STATUSES = [
    # (status, body, transient)
    (503, b"<html>Service Unavailable</html>", True),  # an overloaded or restarting server
    (502, b"Bad Gateway", True),  # a proxy whose upstream is down
    (504, b"Gateway Timeout", True),
    (429, _mlflow_error("REQUEST_LIMIT_EXCEEDED"), True),
    (503, _mlflow_error("TEMPORARILY_UNAVAILABLE"), True),
    (500, _mlflow_error("INTERNAL_ERROR"), True),  # MLflow's own client retries 500 too
    (400, _mlflow_error("INVALID_PARAMETER_VALUE"), False),
    (404, _mlflow_error("RESOURCE_DOES_NOT_EXIST"), False),
    (409, _mlflow_error("RESOURCE_ALREADY_EXISTS"), False),
    (401, b"Unauthorized", False),
    (403, b"Forbidden", False),
]


@pytest.mark.parametrize(
    ("status", "body", "transient"), STATUSES, ids=[f"{s}-{b[:24]!r}" for s, b, _ in STATUSES]
)
def test_http_status(status, body, transient, http_server):
    http_server.reply = (status, body)
    client = MlflowClient(f"http://127.0.0.1:{http_server.server_address[1]}")
    error = raised(lambda: client.get_experiment("1"))
    assert isinstance(error, MlflowException)
    assert is_transient(error) is transient


def test_http_error_statuses_from_requests_itself(http_server):
    import requests

    for status, transient in ((503, True), (429, True), (404, False), (400, False)):
        http_server.reply = (status, b"")
        response = requests.get(f"http://127.0.0.1:{http_server.server_address[1]}", timeout=5)
        error = raised(response.raise_for_status)
        assert isinstance(error, requests.HTTPError)
        assert is_transient(error) is transient, status


# -- SQLite -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()  # creates and migrates the tables
    return db


@pytest.fixture
def store(migrated: Path, tmp_path: Path) -> Path:
    """A real, migrated MLflow SQLite store of this test's own (a copy: migrating takes seconds)."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(migrated, db)
    return db


def hold(db: Path) -> sqlite3.Connection:
    """Another process's writer, mid-transaction: every other connection finds it locked."""
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_locked_sqlite_database_is_transient(store):
    holder = hold(store)
    try:
        reader = sqlite3.connect(store, timeout=0)
        error = raised(lambda: reader.execute("SELECT * FROM experiments").fetchall())
        assert isinstance(error, sqlite3.OperationalError)
        assert is_transient(error)
    finally:
        holder.execute("ROLLBACK")


def test_a_locked_database_through_sqlalchemy_is_transient(store):
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"sqlite:///{store}", connect_args={"timeout": 0})
    holder = hold(store)
    try:
        with engine.connect() as connection:
            error = raised(
                lambda: connection.execute(sqlalchemy.text("SELECT * FROM experiments")).all()
            )
        assert isinstance(error, sqlalchemy.exc.OperationalError)
        assert is_transient(error)
    finally:
        holder.execute("ROLLBACK")
        engine.dispose()


@pytest.mark.slow
def test_a_locked_mlflow_store_is_transient(store):
    """MLflow waits 20 s on a locked SQLite store (its busy_timeout), then raises either its own
    TEMPORARILY_UNAVAILABLE or SQLAlchemy's error, depending on where the lock is hit."""
    holder = hold(store)
    try:
        error = raised(lambda: MlflowClient(f"sqlite:///{store}").create_experiment("locked"))
    finally:
        holder.execute("ROLLBACK")
    import sqlalchemy

    if isinstance(error, MlflowException):
        assert error.error_code == "TEMPORARILY_UNAVAILABLE"
    else:
        assert isinstance(error, sqlalchemy.exc.OperationalError), repr(error)
    assert is_transient(error)


def test_retrying_waits_out_a_lock(store):
    holder = hold(store)
    released = threading.Timer(0.5, lambda: holder.execute("ROLLBACK"))
    writer = sqlite3.connect(store, timeout=0, check_same_thread=False)
    started = time.monotonic()
    released.start()
    try:
        retrying(lambda: writer.execute("SELECT count(*) FROM experiments").fetchall(), deadline=30)
    finally:
        released.join()
    assert time.monotonic() - started >= 0.4


# -- what is never retried --------------------------------------------------------------------


def test_permanent_errors_are_not_transient(store):
    client = MlflowClient(f"sqlite:///{store}")
    missing = raised(lambda: client.get_run("0" * 32))
    assert isinstance(missing, MlflowException) and missing.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert not is_transient(missing)

    bad_sql = raised(lambda: sqlite3.connect(store).execute("SELECT * FROM no_such_table"))
    assert isinstance(
        bad_sql, sqlite3.OperationalError
    )  # the same type as "locked": the code differs
    assert not is_transient(bad_sql)

    assert not is_transient(ValueError("connection timed out 503"))  # words prove nothing
    assert not is_transient(ConfigError("tracking_uri", "x", "database is locked"))


def test_the_chain_is_followed_as_python_shows_it():
    """Through ``raise ... from`` and an exception raised while handling another (what MLflow's
    REST client does), not past ``from None``."""
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError:
            raise RuntimeError("raised while handling it")  # noqa: B904
    except RuntimeError as outer:
        assert is_transient(outer)
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError:
            raise RuntimeError("wrapped without from") from None
    except RuntimeError as outer:
        assert not is_transient(outer)  # `from None` cut the chain
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
