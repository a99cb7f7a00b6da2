"""MLflow tracking, end to end on real stores: ``MLflowTracker`` + ``RunTracking`` + ``LRLogger``.

Nothing of MLflow is mocked. Every test writes to its own SQLite store under ``tmp_path``
(artifacts next to it: the tests run with ``tmp_path`` as cwd, MLflow's default artifact root
being ``./mlruns``); the outage test runs a real ``mlflow server`` on 127.0.0.1 and stops it.
What is pinned down:

1. a Trainer run logs every optimizer step exactly once (``lr/<opt>/<group>`` from LRLogger,
   ``train_loss_step`` with ``log_every_n_steps=1``), with the rates the optimizer used; the run
   ends FINISHED with the planned and realised schedule PNGs, the flattened hyperparameters as
   params and the experiment tagged as a model-training experiment;
2. endings: an exception (FAILED), SIGTERM (KILLED) and SIGKILL of a training process: nothing
   is lost up to the last step run, except with SIGKILL at most the last flush interval;
3. an outage of the tracking server (~15 s) never slows an optimizer step down, and every point
   logged meanwhile arrives, once, after the server is back; a server down when training starts
   holds nothing up: the run is kept on disk and sent when it answers, or with ``lrsched send``;
4. 4 processes starting together on a store that does not exist yet all get their run and all
   their points;
5. secrets never reach the store (a table of planted secrets, searched for in the raw bytes of
   the database and of every artifact); long values are kept whole in an artifact;
6. a resumed fit continues the checkpoint's run without logging a step twice;
7. under DDP (2 CPU processes) there is one run, every rank knows its id, every step once.

Subprocesses: ``tracking_script.py`` (a training process, signalled by the test; the DDP run)
and ``store_race_script.py`` (imports once, then forks the racing processes).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning_support import RateRecorder, subprocess_env, trainer
from mlflow import MlflowClient
from mlflow.entities import ViewType
from tracking_script import COSINE, OPTIMIZER, TrackedModule

from lightning_lrsched.callbacks import LRLogger
from lightning_lrsched.lightning.scheduling import attached_schedules
from lightning_lrsched.tracking import MLflowTracker, RunTracking, saved_run_id

TESTS = Path(__file__).resolve().parent
TRAINING_SCRIPT = TESTS / "tracking_script.py"
RACE_SCRIPT = TESTS / "store_race_script.py"

GROUPS = ["head", "default"]  # OPTIMIZER's param groups, in the optimizer's order
STEPS_PER_EPOCH = 8  # TrackedModule's default data: 64 samples, batches of 8
# Metrics logged once per optimizer step (the optimizer is SGD with momentum and weight decay).
STEP_KEYS = [
    *(f"{kind}/SGD/{group}" for kind in ("lr", "momentum", "weight_decay") for group in GROUPS),
    "train_loss_step",
]
FLUSH_INTERVAL = 1.0  # MLflowTracker's default: the most a SIGKILL may lose
# time for the writer process to write one interval's points: on the 2-core CI machine running
# two test workers (and their subprocesses) it can wait seconds for a core
WRITE_SLACK = 3.0


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """cwd = tmp_path (MLflow's default artifact root ./mlruns lands there); no ambient store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path}"


def steps_of(client: MlflowClient, run_id: str, key: str) -> list[int]:
    """The steps of a metric's history, sorted, duplicates kept."""
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def values_by_step(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def assert_each_step_once(client, run_id, steps, keys=STEP_KEYS):
    expected = list(steps)
    for key in keys:
        got = steps_of(client, run_id, key)
        assert got == expected, (
            f"{key}: missing {sorted(set(expected) - set(got))}, "
            f"duplicated {sorted({s for s in got if got.count(s) > 1})}, "
            f"unexpected {sorted(set(got) - set(expected))}"
        )


def runs_of(client: MlflowClient, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    return client.search_runs([found.experiment_id], run_view_type=ViewType.ALL)


def make_trainer(root: Path, callbacks, **kwargs) -> pl.Trainer:
    return trainer(root, callbacks=callbacks, log_every_n_steps=1, **kwargs)


def clean_env() -> dict[str, str]:
    env = subprocess_env()
    env.pop("MLFLOW_TRACKING_URI", None)
    env["OMP_NUM_THREADS"] = "1"
    return env


def launch(command: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """A subprocess in its own session (so that it and its children can be killed together),
    its output in ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            command, cwd=cwd, env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no output)"


def wait_for_file(path: Path, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the subprocess ended (rc {proc.returncode}) before {path.name}:\n"
                        f"{tail(log)}")  # fmt: skip
        if time.monotonic() > deadline:
            pytest.fail(f"no {path.name} after {timeout} s:\n{tail(log)}")
        time.sleep(0.02)


def reported_steps(out: Path) -> list[tuple[int, float]]:
    """(step, unix time) of every optimizer step the training subprocess finished."""
    lines = (out / "steps.txt").read_text().splitlines()
    return [(int(step), float(at)) for step, at in (line.split() for line in lines if line)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_alive(pgid: int) -> bool:
    """Whether a process of the group is still running (zombies do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_group_gone(pgid: int, timeout: float = 60) -> None:
    """Wait until no process of the group runs any more (a training process's MLflow writer
    process outlives it: it writes what it was handed, then ends)."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() > deadline:
            pytest.fail(f"processes of group {pgid} still run {timeout} s later")
        time.sleep(0.1)


class MlflowServer:
    """A real ``mlflow server`` (SQLite backend, proxied artifacts under ``root``) on 127.0.0.1,
    in its own process group: ``mlflow server`` runs uvicorn as a child process."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", sqlite_uri(self.root / "server.db"),
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        env = clean_env()
        # The tracking API needs no job runner; its consumers cost seconds of CPU at each start.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                command, cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited:\n{tail(self.log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server not healthy after {timeout} s:\n"
                                   f"{tail(self.log)}")  # fmt: skip
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to the whole group, wait until every process of it is gone (SIGKILL after
        30 s)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while (proc.poll() is None or group_alive(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None or group_alive(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- 1. a run: every step once, params, artifacts, tags --------------------------------------


def test_trainer_run_logs_every_step_once_with_params_and_plots(in_tmp):
    uri = sqlite_uri(in_tmp / "mlflow.db")
    tracker = MLflowTracker(experiment_name="steps", tracking_uri=uri)
    rates = RateRecorder()
    module = TrackedModule(scheduler=COSINE, optimizer=OPTIMIZER)
    fit = make_trainer(in_tmp, [RunTracking(), LRLogger(), rates], logger=tracker, max_epochs=3)
    fit.fit(module)
    total = 3 * STEPS_PER_EPOCH
    assert fit.global_step == total

    client = MlflowClient(uri)
    (run,) = runs_of(client, "steps")
    assert run.info.run_id == tracker.version
    assert run.info.status == "FINISHED"
    assert_each_step_once(client, run.info.run_id, range(total))

    # The values are the rates and momenta the optimizer used at each step.
    assert [step for step, _, _ in rates.rates] == list(range(total))
    for index, group in enumerate(GROUPS):
        lrs = values_by_step(client, run.info.run_id, f"lr/SGD/{group}")
        momenta = values_by_step(client, run.info.run_id, f"momentum/SGD/{group}")
        for step, group_lrs, group_momenta in rates.rates:
            assert lrs[step] == group_lrs[index], (group, step)
            assert momenta[step] == group_momenta[index], (group, step)
    # the cosine schedule with warmup: from 0 up to the head group's base rate
    head = values_by_step(client, run.info.run_id, "lr/SGD/head")
    assert head[0] == 0.0 and max(head.values()) == pytest.approx(0.02)

    # Params: the module's hyperparameters, flattened ("a/b"), lists as their text ...
    params = run.data.params
    assert {k: v for k, v in params.items() if not k.startswith("lrsched/")} == {
        "scheduler/name": "cosine",
        "scheduler/warmup": "25%",
        "optimizer/name": "sgd",
        "optimizer/lr": "0.05",
        "optimizer/momentum": "0.9",
        "optimizer/param_groups": str(OPTIMIZER["param_groups"]),
        "n": "64",
        "batch_size": "8",
    }
    assert run.data.tags.get("lrsched.world_size") == "1"
    # ... and what produced the curves, from the callbacks (no app involved): the strategy,
    # its resolved plan and fingerprint, the horizon, each group's base rate and settings
    (schedule,) = attached_schedules(fit)
    assert params["lrsched/SGD/strategy"] == run.data.tags["lrsched.strategy"] == "cosine"
    assert params["lrsched/SGD/fingerprint"] == schedule.fingerprint
    assert json.loads(params["lrsched/SGD/plan"]) == schedule.description
    assert params["lrsched/SGD/total_steps"] == str(total)
    assert params["lrsched/SGD/optimizer"] == "SGD"
    for group, lr in (("head", "0.02"), ("default", "0.05")):
        assert params[f"lrsched/SGD/{group}/lr"] == lr
        assert params[f"lrsched/SGD/{group}/momentum"] == "0.9"
        assert f"lrsched/SGD/{group}/weight_decay" in params

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "schedule")}
    assert artifacts == {"schedule/planned.png", "schedule/realised.png"}
    for name in sorted(artifacts):
        local = Path(client.download_artifacts(run.info.run_id, name, str(in_tmp / "dl")))
        assert local.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name

    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"

    # A later stage (here validate) logs to the same run through the same writer process:
    # starting another would cost a second MLflow import.
    writers = writer_processes(uri)
    assert len(writers) == 1, writers
    fit.validate(module)
    assert writer_processes(uri) == writers
    (run,) = runs_of(client, "steps")
    assert run.info.status == "FINISHED"
    assert "val_loss" in run.data.metrics


def test_idle_writer_process_ends_and_a_later_point_starts_another(tmp_path, existing_store):
    """A writer process kept for a later stage does not outlive ``keep_alive`` seconds idle
    (a notebook that fits many times keeps no process per fit)."""
    from lightning_lrsched.tracking.writer import MetricWriter

    uri = sqlite_uri(existing_store(tmp_path))
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("idle")).info.run_id
    writer = MetricWriter(uri, run_id, flush_interval=0.05, keep_alive=1.0)
    writer.put({"x": 1.0}, step=0)
    assert writer.flush(timeout=60)
    assert len(writer_processes(uri)) == 1
    deadline = time.monotonic() + 30
    while writer_processes(uri) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert writer_processes(uri) == [], "the idle writer process is still there"
    writer.put({"x": 2.0}, step=1)
    assert writer.close(timeout=60)
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "x")] == [
        (0, 1.0),
        (1, 2.0),
    ]
    assert writer_processes(uri) == []


def test_runs_one_after_another_share_one_writer_process(tmp_path, existing_store):
    """A sweep's jobs in one process (or a notebook's fits) write through one writer process
    per store: no MLflow import per run. Each run's points and counts stay its own; the process
    ends when the last writer closes."""
    from lightning_lrsched.tracking.writer import MetricWriter

    uri = sqlite_uri(existing_store(tmp_path))
    client = MlflowClient(uri)
    experiment = client.create_experiment("shared")
    runs = [client.create_run(experiment).info.run_id for _ in range(2)]
    first = MetricWriter(uri, runs[0], flush_interval=0.05)
    for step in range(3):
        first.put({"x": float(step)}, step=step)
    assert first.flush(timeout=60)
    (pid,) = writer_processes(uri)
    second = MetricWriter(uri, runs[1], flush_interval=0.05)
    second.put({"x": 10.0, "y": 1.0}, step=0)
    assert second.flush(timeout=60)
    assert writer_processes(uri) == [pid]
    assert (first.written, second.written) == (3, 2)
    assert first.close(timeout=60)
    assert writer_processes(uri) == [pid]  # the second run still uses it
    second.put({"x": 11.0}, step=1)
    assert second.close(timeout=60)
    assert writer_processes(uri) == []
    assert [m.value for m in client.get_metric_history(runs[0], "x")] == [0.0, 1.0, 2.0]
    assert [m.value for m in client.get_metric_history(runs[1], "x")] == [10.0, 11.0]


def writer_processes(uri: str) -> list[int]:
    """The pids of this process's MLflow writer processes (``lightning_lrsched.tracking.sink``)
    for the store ``uri``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if (
            parent == os.getpid()
            and b"lightning_lrsched.tracking.sink" in command
            and uri.encode() in command
        ):
            found.append(int(entry.name))
    return sorted(found)


# -- 2. endings: exception, SIGTERM, SIGKILL -------------------------------------------------


def test_exception_mid_training_loses_nothing_and_fails_the_run(in_tmp):
    uri = sqlite_uri(in_tmp / "mlflow.db")
    tracker = MLflowTracker(experiment_name="failure", tracking_uri=uri)
    module = TrackedModule(optimizer=OPTIMIZER, fail_at=13)  # in epoch 1, before step 13
    fit = make_trainer(in_tmp, [RunTracking(plots=False), LRLogger()], logger=tracker)
    with pytest.raises(RuntimeError, match="planned failure"):
        fit.fit(module)

    client = MlflowClient(uri)
    (run,) = runs_of(client, "failure")
    assert run.info.status == "FAILED"
    assert_each_step_once(client, run.info.run_id, range(13))  # steps 0..12 all ran


class Training:
    """A training subprocess (``tracking_script.py``, mode "signal") with its own store."""

    def __init__(self, root: Path, marker_step: int) -> None:
        self.uri = sqlite_uri(root / "mlflow.db")
        self.out, self.log = root / "out", root / "train.log"
        self.out.mkdir(parents=True)
        config = {"mode": "signal", "uri": self.uri, "step_sleep": 0.02, "marker_step": marker_step}
        command = [sys.executable, str(TRAINING_SCRIPT), str(self.out), json.dumps(config)]
        self.proc = launch(command, self.out, self.log)

    def wait_for_marker(self) -> None:
        wait_for_file(self.out / "marker", self.proc, self.log, timeout=240)


@pytest.fixture(scope="module")
def trainings(tmp_path_factory):
    """The SIGTERM and the SIGKILL training processes, started together (their start-up, mostly
    importing Lightning, overlaps); each test waits for its own marker, then signals its own."""
    root = tmp_path_factory.mktemp("signals")
    # ~50 steps a second at most (20 ms sleep a step): the flush interval is a known step count.
    started = {"term": Training(root / "term", 30), "kill": Training(root / "kill", 150)}
    yield started
    for training in started.values():
        kill_group(training.proc)


@pytest.mark.slow
@pytest.mark.xdist_group("signals")  # with the other user of `trainings`: it starts once
def test_sigterm_flushes_everything_and_marks_the_run_killed(trainings):
    training = trainings["term"]
    training.wait_for_marker()
    training.proc.send_signal(signal.SIGTERM)  # to the training process only
    training.proc.wait(timeout=120)
    wait_group_gone(training.proc.pid)
    ended_file = training.out / "ended.txt"
    ended = ended_file.read_text() if ended_file.exists() else "(no ended.txt)"
    assert "SIGTERMException" in ended, f"{ended}\n{tail(training.log)}"

    last = reported_steps(training.out)[-1][0]
    assert last >= 30
    client = MlflowClient(training.uri)
    (run,) = runs_of(client, "signals")
    assert run.info.status == "KILLED", tail(training.log)
    # Lightning finishes the step in progress, then stops: every step it ran is in the store.
    assert_each_step_once(client, run.info.run_id, range(last + 1))


@pytest.mark.slow
@pytest.mark.xdist_group("signals")  # with the other user of `trainings`: it starts once
def test_sigkill_loses_at_most_the_last_flush_interval(trainings):
    training = trainings["kill"]
    training.wait_for_marker()
    killed_at = time.time()
    os.kill(training.proc.pid, signal.SIGKILL)  # the training process only
    training.proc.wait(timeout=30)
    wait_group_gone(training.proc.pid)  # what was handed to the writer process is written

    reports = reported_steps(training.out)
    last_reported = reports[-1][0]
    assert [step for step, _ in reports] == list(range(last_reported + 1))
    client = MlflowClient(training.uri)
    (run,) = runs_of(client, "signals")
    assert run.info.status == "RUNNING"  # nobody could end it
    stored = steps_of(client, run.info.run_id, "lr/SGD/head")
    assert stored, "nothing was written in the seconds before the kill"
    last_stored = stored[-1]
    # What arrived is a prefix of the steps (no holes, no duplicates) ...
    assert stored == list(range(last_stored + 1))
    assert steps_of(client, run.info.run_id, "lr/SGD/default") == stored
    assert last_stored <= last_reported + 1  # (the step in flight may have logged its rate)
    # ... that holds every step finished more than one flush interval (plus the time to write
    # it) before the kill.
    old_enough = [s for s, at in reports if at < killed_at - FLUSH_INTERVAL - WRITE_SLACK]
    lost = last_reported - last_stored
    rate = len(reports) / (reports[-1][1] - reports[0][1])
    assert old_enough and last_stored >= old_enough[-1], (
        f"lost {lost} steps ({lost / rate:.2f} s of training at {rate:.0f} steps/s); "
        f"step {old_enough[-1]} was done {killed_at - reports[old_enough[-1]][1]:.2f} s before "
        f"the kill but the store ends at step {last_stored}"
    )
    print(f"SIGKILL lost {lost} steps = {lost / rate:.2f} s at {rate:.0f} steps/s")


# -- 3. an outage of the tracking server -----------------------------------------------------


class StepClock(pl.Callback):
    """The (monotonic) start time of every training batch."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(time.monotonic())

    def intervals(self) -> list[tuple[float, float]]:
        """(start, end) of every step but the last: from its batch's start to the next one's,
        so a step's time includes everything the loop does for it (logging, epoch ends)."""
        return list(zip(self.starts, self.starts[1:], strict=False))


class Outage(pl.Callback):
    """After ``at_step``: stops the server (SIGTERM, whole process group) from another thread,
    restarts it ``restart_after`` seconds later on the same port and store, and stops training
    ``steps_after`` steps after it is healthy again."""

    def __init__(self, server: MlflowServer, at_step: int, restart_after: float) -> None:
        self.server = server
        self.at_step = at_step
        self.restart_after = restart_after
        self.steps_after = 40
        self.thread: threading.Thread | None = None
        self.stopping_at = self.down_at = self.up_at = None
        self.down_wall = self.up_wall = None
        self.was_down = False
        self.error: BaseException | None = None
        self.steps_since_up = 0
        self.deadline = time.monotonic() + 600

    def _cycle(self) -> None:
        try:
            self.stopping_at = time.monotonic()
            self.server.stop()
            self.down_at, self.down_wall = time.monotonic(), time.time()
            self.was_down = not self.server.healthy()
            time.sleep(self.restart_after)
            self.server.start()
            self.server.wait_healthy()
            self.up_at, self.up_wall = time.monotonic(), time.time()
        except BaseException as error:
            self.error = error

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step and self.thread is None:
            self.thread = threading.Thread(target=self._cycle, daemon=True)
            self.thread.start()
        if self.up_at is not None:
            self.steps_since_up += 1
        if (
            self.steps_since_up >= self.steps_after
            or self.error is not None
            or time.monotonic() > self.deadline
        ):
            trainer.should_stop = True


@pytest.mark.slow
def test_server_outage_never_blocks_training_and_loses_nothing(tmp_path, monkeypatch):
    """The server is down ~15 s (stopped, then restarted on the same port and backend) while
    training goes on. MLflow's HTTP client alone would retry a refused request for ~4 minutes
    (7 retries with exponential backoff); with its retries off, each write fails at once and
    the package's own writer retries: that is the behaviour under test, and the run does not
    end minutes after the server is back."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = MlflowServer(tmp_path / "server")
    started = time.monotonic()
    server.start()
    try:
        server.wait_healthy()
        startup = time.monotonic() - started
        # down ~15 s in all: the wait, then the restart (a start takes ~2/3 of the first)
        outage = Outage(server, at_step=60, restart_after=max(5.0, 15.0 - 0.7 * startup))
        clock = StepClock()
        tracker = MLflowTracker(experiment_name="outage", tracking_uri=server.uri)
        module = TrackedModule(optimizer=OPTIMIZER, n=256, step_sleep=0.03)
        fit = make_trainer(
            tmp_path,
            [RunTracking(), LRLogger(), clock, outage],
            logger=tracker,
            max_epochs=100_000,
            limit_val_batches=0,
        )
        fit.fit(module)
        assert outage.thread is not None
        outage.thread.join(timeout=180)
        if outage.error is not None:
            raise outage.error
        assert outage.was_down, "the server still answered after being stopped"
        assert outage.up_at is not None
        down_for = outage.up_at - outage.down_at
        assert down_for >= 10, f"the outage lasted {down_for:.1f} s only"

        # No step took longer while the server was down.
        steps = clock.intervals()
        before = [end - start for start, end in steps[10:] if end < outage.stopping_at]
        during = [
            end - start
            for start, end in steps
            if start >= outage.stopping_at and end <= outage.up_at
        ]
        assert len(before) >= 40 and len(during) >= 100, (len(before), len(during))
        typical = statistics.median(before)
        worst = max(during)
        # A step that waited on the store would wait out an HTTP attempt and a retry's backoff
        # (MLflow's second retry alone sleeps 4 s); scheduling noise on a loaded 2-core machine
        # stays below that (one step stalled 2.4 s there once, in another test).
        assert statistics.median(during) < 2 * typical + 0.02, (typical, during)
        assert worst - typical < 3.0, (
            f"a step took {worst * 1000:.0f} ms during the outage, typically "
            f"{typical * 1000:.0f} ms (p90 during: "
            f"{statistics.quantiles(during, n=10)[-1] * 1000:.0f} ms)"
        )

        # After the run: every point once, including those logged while the server was down.
        client = MlflowClient(server.uri)
        run = client.get_run(tracker.version)
        assert run.info.status == "FINISHED"
        assert_each_step_once(client, run.info.run_id, range(fit.global_step))
        logged_while_down = [
            m
            for m in client.get_metric_history(run.info.run_id, "lr/SGD/head")
            if outage.down_wall * 1000 <= m.timestamp <= outage.up_wall * 1000
        ]
        assert len(logged_while_down) >= 100
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "schedule")}
        assert "schedule/realised.png" in artifacts
        print(
            f"outage {down_for:.1f} s, {len(during)} steps meanwhile, step {typical * 1000:.1f} ms"
            f" typical, {worst * 1000:.1f} ms worst; {fit.global_step} steps in all"
        )
    finally:
        server.stop()


class ServerComesBack(pl.Callback):
    """Starts the server (not running when training started) at ``at_step``, from another
    thread, and stops training ``steps_after`` steps after the tracker's kept run was sent."""

    def __init__(self, server: MlflowServer, tracker: MLflowTracker, at_step: int) -> None:
        self.server, self.tracker, self.at_step = server, tracker, at_step
        self.steps_after = 15
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.up_at: float | None = None
        self.sent_at_step: int | None = None
        self.deadline = time.monotonic() + 300

    def _start(self) -> None:
        try:
            self.server.start()
            self.server.wait_healthy()
            self.up_at = time.monotonic()
        except BaseException as error:
            self.error = error

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step and self.thread is None:
            assert self.tracker.unsent is not None  # kept on disk until now
            self.thread = threading.Thread(target=self._start, daemon=True)
            self.thread.start()
        if self.sent_at_step is None and self.tracker.unsent is None:
            self.sent_at_step = trainer.global_step
        done = self.sent_at_step is not None and (
            trainer.global_step - self.sent_at_step >= self.steps_after
        )
        if done or self.error is not None or time.monotonic() > self.deadline:
            trainer.should_stop = True


def tracking_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("lrsched tracking:")]


@pytest.mark.slow
def test_server_down_at_the_start_never_holds_training_and_the_run_is_sent_later(
    tmp_path, monkeypatch, capfd
):
    """Training starts at once with the server down; the run is kept on disk. A first run ends
    before the server answers: one line says where it is kept and how to send it; `lrsched
    send` sends it later. A second run sees the server come up during training: it is sent
    then, and the rest of its points go to the store as usual. Both runs end up complete."""
    from lightning_lrsched.app.cli import main as lrsched

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LRSCHED_UNSENT_DIR", raising=False)
    server = MlflowServer(tmp_path / "server")  # its port is free: nothing answers there yet
    params = {"optimizer": {"name": "sgd", "lr": 0.05}, "note": "kept while down"}

    # 1. The server never answers during the run.
    started = time.monotonic()
    first = MLflowTracker(experiment_name="down-at-start", tracking_uri=server.uri)
    first.log_hyperparams(params)
    first.set_tags({"lrsched.strategy": "cosine"})
    clock = StepClock()
    fit = make_trainer(tmp_path, [RunTracking(), LRLogger(), clock], logger=first, max_epochs=2)
    fit.fit(TrackedModule(scheduler=COSINE, optimizer=OPTIMIZER))
    first_step_after = clock.starts[0] - started  # was minutes: MLflow's retries, then a crash
    assert first_step_after < 20, first_step_after  # ~0.2 s alone; a loaded CI host is slower
    lines = tracking_lines(capfd.readouterr().err)
    kept = first.unsent
    assert kept is not None and kept.parent == tmp_path / "lrsched-unsent"
    assert len(lines) == 2, lines
    assert "does not answer; training goes on" in lines[0] and str(kept) in lines[0]
    assert lines[1].endswith(f"send it with: lrsched send {kept.parent}"), lines[1]
    first_steps = fit.global_step

    # 2. The server comes up while the second run trains.
    second = MLflowTracker(experiment_name="down-at-start", tracking_uri=server.uri)
    comes_back = ServerComesBack(server, second, at_step=5)
    clock = StepClock()
    fit = make_trainer(
        tmp_path, [RunTracking(), LRLogger(), clock, comes_back], logger=second,
        max_epochs=100_000, limit_val_batches=0,
    )  # fmt: skip
    try:
        fit.fit(TrackedModule(optimizer=OPTIMIZER, n=256, step_sleep=0.02))
        assert comes_back.thread is not None
        comes_back.thread.join(timeout=180)
        if comes_back.error is not None:
            raise comes_back.error
        assert comes_back.sent_at_step is not None, "the kept run was never sent"
        steps = [end - start for start, end in clock.intervals()[5:]]
        typical = statistics.median(steps)
        # nobody waited on the store: a wait would be MLflow's HTTP retries with backoff, a
        # minute or more; a loaded 2-core CI host alone has stalled one step for 2.4 s
        worst = max(steps)
        assert worst - typical < 10.0, f"a step took {worst:.2f} s, typically {typical:.3f} s"
        client = MlflowClient(server.uri)
        run = client.get_run(second.version)
        assert run.info.status == "FINISHED"
        assert_each_step_once(client, run.info.run_id, range(fit.global_step))
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "schedule")}
        assert artifacts == {"schedule/realised.png"}  # no schedule to plan; read back at the end
        lines = tracking_lines(capfd.readouterr().err)
        assert "does not answer; training goes on" in lines[0], "\n".join(lines)
        assert lines[-1].endswith(f"the kept run is now MLflow run {run.info.run_id}"), lines
        # between them, at most tries that found the port open before the server was ready
        assert all("failed (" in line and line.endswith("; kept") for line in lines[1:-1]), lines

        # 3. `lrsched send` sends the first run, whole; sending again finds nothing.
        assert lrsched(["send"]) == 0
        out = capfd.readouterr().out
        assert f"{kept.name}: sent as MLflow run" in out, out
        (run,) = [r for r in runs_of(client, "down-at-start") if r.info.run_id != second.version]
        assert run.info.status == "FINISHED"
        assert_each_step_once(client, run.info.run_id, range(first_steps))
        assert run.data.params["note"] == "kept while down"
        assert run.data.params["optimizer/lr"] == "0.05"
        assert run.data.tags["lrsched.strategy"] == "cosine"
        assert run.data.tags["lrsched.world_size"] == "1"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "schedule")}
        assert artifacts == {"schedule/planned.png"}  # the realised curve is read from a store
        assert lrsched(["send"]) == 0
        assert capfd.readouterr().out.startswith("nothing to send")
        print(f"first step {first_step_after:.1f} s after the tracker was made, server down")
    finally:
        server.stop()


# -- 4. many processes on a fresh store ------------------------------------------------------

RACERS = 4
RACE_POINTS = 200


@pytest.mark.slow
def test_processes_starting_together_on_a_fresh_sqlite_store(tmp_path):
    db = tmp_path / "store" / "mlflow.db"  # neither the file nor its directory exists yet
    uri = sqlite_uri(db)
    out, log = tmp_path / "race", tmp_path / "race.log"
    out.mkdir()
    command = [sys.executable, str(RACE_SCRIPT), str(out), uri, str(RACERS), str(RACE_POINTS)]
    proc = launch(command, out, log)
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the racers hung:\n{tail(log)}")
    finally:
        kill_group(proc)
    assert proc.returncode == 0, tail(log)

    results = [json.loads((out / f"result-{i}.json").read_text()) for i in range(RACERS)]
    client = MlflowClient(uri)
    runs = runs_of(client, "race")
    assert len(runs) == RACERS
    by_id = {run.info.run_id: run for run in runs}
    assert set(by_id) == {r["run_id"] for r in results}
    for index, result in enumerate(results):
        run = by_id[result["run_id"]]
        assert run.info.status == "FINISHED"
        assert run.info.run_name == f"racer-{index}"
        assert result["dropped"] == result["refused"] == 0
        assert result["written"] == 2 * RACE_POINTS
        assert result["longest_put"] < 0.05, result  # logging never waited on the store
        values = client.get_metric_history(run.info.run_id, "value")
        assert sorted((m.step, m.value) for m in values) == [
            (step, float(index * 100_000 + step)) for step in range(RACE_POINTS)
        ]
        assert steps_of(client, run.info.run_id, "step_copy") == list(range(RACE_POINTS))
    experiments = [e.name for e in client.search_experiments(view_type=ViewType.ALL)]
    assert experiments.count("race") == 1
    print("store race: seconds per process", [round(r["seconds"], 1) for r in results])


# -- 5. secrets never reach the store --------------------------------------------------------

LONG_TEXT = "a long prompt template. " * 300  # 7200 characters
# (config fragment, secrets that must not be stored, params expected as they are)
REDACTION_TABLE = [
    pytest.param({"db": {"password": "pw-hunter2-r01", "user": "bob"}}, ["pw-hunter2-r01"],
                 {"db/password": "***", "db/user": "bob"}, id="password"),
    pytest.param({"api_key": "ak-9f8e7d-r02"}, ["ak-9f8e7d-r02"], {"api_key": "***"},
                 id="api_key"),
    pytest.param({"hub": {"token": "tok-abc-r03"}}, ["tok-abc-r03"], {"hub/token": "***"},
                 id="token"),
    pytest.param({"aws_secret_access_key": "AwsSecret-r04"}, ["AwsSecret-r04"],
                 {"aws_secret_access_key": "***"}, id="aws_secret_access_key"),
    pytest.param({"gcp": {"credentials": "gcp-cred-r05"}}, ["gcp-cred-r05"],
                 {"gcp/credentials": "***"}, id="credentials"),
    pytest.param({"credentials": {"aws": "aws-cred-r06", "gcp": "gcp-cred-r06"}},
                 ["aws-cred-r06", "gcp-cred-r06"], {}, id="credentials-block"),
    pytest.param({"logger": {"tracking_uri": "http://alice:uri-pw-r07@mlflow.example.com:5000"}},
                 ["uri-pw-r07"], {"logger/tracking_uri": "http://***@mlflow.example.com:5000"},
                 id="uri-userinfo"),
    pytest.param({"data": {"url": "https://data.example.com/t.tar?token=qtok-r08&split=train"}},
                 ["qtok-r08"], {"data/url": "https://data.example.com/t.tar?token=***&split=train"},
                 id="url-token-query"),
    pytest.param({"a": {"b": {"c": {"client_secret": "cs-deep-r09"}}}}, ["cs-deep-r09"],
                 {"a/b/c/client_secret": "***"}, id="nested-deep"),
    pytest.param({"headers": {"Authorization": "Bearer bearer-r10"}}, ["bearer-r10"],
                 {"headers/Authorization": "***"}, id="authorization-header"),
    pytest.param({"HF_TOKEN": "hf_r11xyz"}, ["hf_r11xyz"], {"HF_TOKEN": "***"}, id="upper-case"),
    pytest.param({"database_url": "postgresql://bob:db-pw-r12@db.internal:5432/runs"},
                 ["db-pw-r12"], {"database_url": "postgresql://***@db.internal:5432/runs"},
                 id="db-url-userinfo"),
    pytest.param({"loggers": [{"name": "wandb", "api_key": "ak-in-list-r13"}]},
                 ["ak-in-list-r13"], {}, id="secret-in-a-list"),
    pytest.param({"notes": LONG_TEXT + "https://u:long-pw-r14@host.example.com/"},
                 ["long-pw-r14"], {}, id="long-value-with-uri"),
    # non-secrets are kept as they are
    pytest.param({"tokenizer_name": "bert-base-uncased"}, [],
                 {"tokenizer_name": "bert-base-uncased"}, id="keep-tokenizer_name"),
    pytest.param({"callbacks": {"early_stopping": {"monitor": "val_loss"}}}, [],
                 {"callbacks/early_stopping/monitor": "val_loss"}, id="keep-monitor"),
    pytest.param({"mirror": "https://example.com/data.tar?split=train&shard=3"}, [],
                 {"mirror": "https://example.com/data.tar?split=train&shard=3"}, id="keep-url"),
    pytest.param({"passes": 3}, [], {"passes": "3"}, id="keep-passes"),
]  # fmt: skip


@pytest.fixture(scope="module")
def redacted_run(tmp_path_factory):
    """One run whose config holds every row of the table, logged as params and as the config
    artifact; returns (store dir, params, config artifact text, long params, run)."""
    root = tmp_path_factory.mktemp("redaction")
    config: dict = {}
    for row in REDACTION_TABLE:
        config.update(row.values[0])
    config["prompt_template"] = LONG_TEXT  # long, nothing secret in it
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        uri = sqlite_uri(root / "mlflow.db")
        tracker = MLflowTracker(experiment_name="redaction", tracking_uri=uri)
        tracker.log_hyperparams(config)
        tracker.log_config(config)
        tracker.finalize("success")
        client = MlflowClient(uri)
        run = client.get_run(tracker.version)
        downloads = root.parent / f"{root.name}-downloads"
        text = Path(client.download_artifacts(run.info.run_id, "config/config.yaml", downloads))
        long = Path(client.download_artifacts(run.info.run_id, "config/long_params.json",
                                              downloads))  # fmt: skip
        return root, run.data.params, text.read_text(), json.loads(long.read_text()), run


def files_containing(root: Path, secret: str) -> list[str]:
    needle = secret.encode()
    return [
        str(path.relative_to(root))
        for path in sorted(root.rglob("*"))
        if path.is_file() and needle in path.read_bytes()
    ]


@pytest.mark.xdist_group("redaction")  # with the other user of `redacted_run`
@pytest.mark.parametrize(("fragment", "secrets", "params"), REDACTION_TABLE)
def test_secrets_never_reach_the_store(redacted_run, fragment, secrets, params):
    root, logged, config_text, _, run = redacted_run
    assert (root / "mlflow.db").is_file()
    assert run.info.status == "FINISHED"
    for secret in secrets:
        # the raw bytes of the database (and its journal) and of every artifact file
        assert files_containing(root, secret) == [], f"{secret!r} is stored"
    for key, value in params.items():
        assert logged.get(key) == value, key
    # the config artifact keeps the non-secret values
    for key, value in params.items():
        if value != "***" and "***" not in value:
            assert value in config_text, (key, value)


@pytest.mark.xdist_group("redaction")
def test_long_params_are_kept_whole_in_an_artifact(redacted_run):
    _, logged, config_text, long_params, _ = redacted_run
    assert "prompt_template" not in logged and "notes" not in logged  # not cut to 6000
    assert long_params["prompt_template"] == LONG_TEXT
    assert long_params["notes"] == LONG_TEXT + "https://***@host.example.com/"
    assert all(len(value) <= 6000 for value in logged.values())
    assert yaml.safe_load(config_text)["prompt_template"] == LONG_TEXT


# -- 6. resume continues the run -------------------------------------------------------------


def test_resume_continues_the_run_without_duplicates(in_tmp):
    """Run A fails in epoch 3 (at step 28) after checkpoints at epochs 0..2; the fit resumed
    from the epoch-1 checkpoint (step 16) with a new tracker replays steps 16..27, which are in
    the store already, and goes on to step 31."""
    uri = sqlite_uri(in_tmp / "mlflow.db")
    checkpoints = in_tmp / "checkpoints"

    def checkpointing(directory):
        return ModelCheckpoint(dirpath=directory, filename="{epoch}", save_top_k=-1)

    first = MLflowTracker(experiment_name="resume", tracking_uri=uri)
    fit = make_trainer(
        in_tmp,
        [RunTracking(plots=False), LRLogger(), checkpointing(checkpoints)],
        logger=first,
        max_epochs=4,
        enable_checkpointing=True,
    )
    with pytest.raises(RuntimeError, match="planned failure"):
        fit.fit(TrackedModule(scheduler=COSINE, optimizer=OPTIMIZER, fail_at=28))
    run_id = first.version
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "FAILED"
    assert_each_step_once(client, run_id, range(28))

    ckpt = checkpoints / "epoch=1.ckpt"
    assert saved_run_id(str(ckpt)) == run_id
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["callbacks"]["RunTracking"] == {"run_id": run_id}
    assert state["global_step"] == 16

    second = MLflowTracker(experiment_name="resume", tracking_uri=uri)  # knows no run
    rates = RateRecorder()
    fit = make_trainer(
        in_tmp,
        [RunTracking(), LRLogger(), rates, checkpointing(in_tmp / "resumed")],
        logger=second,
        max_epochs=4,
        enable_checkpointing=True,
    )
    fit.fit(TrackedModule(scheduler=COSINE, optimizer=OPTIMIZER), ckpt_path=str(ckpt))
    assert fit.global_step == 32
    assert second.version == run_id
    (run,) = runs_of(client, "resume")
    assert run.info.run_id == run_id
    assert run.info.status == "FINISHED"
    assert_each_step_once(client, run_id, range(32))
    # the new steps carry the resumed fit's rates
    head = values_by_step(client, run_id, "lr/SGD/head")
    for step, lrs, _ in rates.rates:
        if step >= 28:
            assert head[step] == lrs[0], step
    # the checkpoints of the resumed fit name the same run
    assert saved_run_id(str(in_tmp / "resumed" / "epoch=3.ckpt")) == run_id


# -- 7. DDP: tests/test_ddp.py (the tracked case of its pair of DDP processes) -------------
