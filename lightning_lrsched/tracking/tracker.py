"""``MLflowTracker``: a Lightning logger on MLflow's client that never makes training wait.

Metrics go through a :class:`MetricWriter` (batched, from a background thread, retried through
outages). The run is created (or, after a resume, reopened) on first use, on rank zero only;
``RunTracking`` (the companion callback) tells every rank its id and saves it in checkpoints.
A store that does not answer at that moment does not hold training up: the run is kept on local
disk (:mod:`.spool`) and sent when it answers, or later with ``lrsched send``.
Params are the flattened config with secrets redacted; values too long for a param go into
the config artifact. The final status is FINISHED, FAILED or KILLED (interrupted or preempted).
"""

from __future__ import annotations

import atexit
import json
import signal
import sys
import threading
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from .params import flatten_params, redact_config, split_long
from .spool import Spool, apply_op, is_local_id, now_ms, reachable, spool_root
from .store import get_or_create_experiment, last_steps, prepare_store, resolve_uri, retrying
from .system_metrics import check_system_metrics
from .writer import MetricWriter

# "requeued" and "preempted": from ``Preemption``, after its checkpoint. KILLED (never FINISHED)
# until the resumed job continues the run (RUNNING again); its tag lrsched.preempted says which.
_STATUS = {
    "success": "FINISHED",
    "failed": "FAILED",
    "killed": "KILLED",
    "requeued": "KILLED",
    "preempted": "KILLED",
}
_PREEMPTED = ("requeued", "preempted")


class MLflowTracker(Logger):
    """Log to MLflow without blocking the training loop.

    Args:
        experiment_name: created if missing, tagged as a model-training experiment.
        tracking_uri: a store URI; default ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``
            in the current directory.
        run_name, tags: of a new run.
        run_id: continue this run (set by ``RunTracking`` from a checkpoint when resuming).
        flush_interval: the writer's period in seconds (the most a SIGKILL can lose).
        unsent_dir: where a run is kept while its store does not answer; default
            ``$LRSCHED_UNSENT_DIR``, else ``./lrsched-unsent``.
        system_metrics: also record MLflow's system metrics (CPU, memory, GPU where present),
            every ``system_metrics_interval`` seconds, from one process per node, as
            ``system/node<N>/...`` (with ``RunTracking``; needs psutil).
    """

    def __init__(
        self,
        experiment_name: str = "lightning-lrsched",
        tracking_uri: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        flush_interval: float = 1.0,
        unsent_dir: str | None = None,
        system_metrics: bool = False,
        system_metrics_interval: float = 10.0,
    ) -> None:
        super().__init__()
        check_system_metrics(system_metrics, system_metrics_interval)
        self.system_metrics = system_metrics
        self.system_metrics_interval = float(system_metrics_interval)
        self._experiment_name = experiment_name
        self.tracking_uri = resolve_uri(tracking_uri)
        self._run_name = run_name
        self._tags = {k: str(v) for k, v in (tags or {}).items()}
        self._run_id = run_id
        self._experiment_id: str | None = None
        self._client: Any = None
        self._writer: MetricWriter | None = None
        self._flush_interval = flush_interval
        self._unsent_root = spool_root(unsent_dir)
        self._spool: Spool | None = None  # the run, while it is kept on disk
        self._said_unsent = False
        self._lock = threading.RLock()
        self._finalized = False
        self._started = False  # the run exists (created or reopened) on this rank
        self._logged = False  # something was written to it
        self._hooks_installed = False
        self._skip_until: dict[str, int] = {}  # after a resume: steps already in the store
        self.interrupted_by: str | None = None
        self._preempted = False  # finalized as requeued/preempted: what follows is no failure

    # -- Lightning's Logger interface --------------------------------------------------------
    @property
    def name(self) -> str:
        return self._experiment_name

    @property
    def version(self) -> str | None:
        """The run id (asking for it on rank zero creates the run, as Lightning expects)."""
        return self.run_id if rank_zero_only.rank == 0 else self._run_id

    @property
    def save_dir(self) -> None:
        # None: checkpoints go to the Trainer's default_root_dir, and asking for the directory
        # does not create the run before RunTracking could set the one to resume.
        return None

    @property
    def experiment(self) -> Any:
        """The ``MlflowClient`` (the store is prepared and the experiment exists; no run yet).

        Lightning asks for it as a fit starts: while the store does not answer, the client is
        returned as it is (asking the store would wait out MLflow's retries, minutes).
        """
        with self._lock:
            if self._client is None:
                from mlflow import MlflowClient

                if self._spool is not None or not reachable(self.tracking_uri):
                    return MlflowClient(self.tracking_uri)
                prepare_store(self.tracking_uri)
                client = MlflowClient(self.tracking_uri)
                self._experiment_id = get_or_create_experiment(client, self._experiment_name)
                self._client = client
            return self._client

    @property
    def experiment_id(self) -> str:
        _ = self.experiment
        assert self._experiment_id is not None
        return self._experiment_id

    @property
    def run_id(self) -> str:
        """The run's id, creating the run (or reopening the one to resume) on first use."""
        if rank_zero_only.rank != 0:  # other ranks only know the id RunTracking gave them
            return self._run_id  # type: ignore[return-value]
        with self._lock:
            if not self._started:
                self._start_run()
            self._adopt_sent_run()
            assert self._run_id is not None
            return self._run_id

    @property
    def unsent(self) -> Path | None:
        """Where the run is kept while its store has not answered (None once it is there)."""
        self._adopt_sent_run()
        return None if self._spool is None else self._spool.path

    def resume(self, run_id: str) -> None:
        """Continue ``run_id`` instead of creating a run.

        Lightning may have asked for the run (a checkpoint directory is named after it) before
        a checkpoint's run id is known; if that run is still empty it is deleted and ``run_id``
        continued instead.
        """
        with self._lock:
            if self._run_id == run_id:
                return
            if self._started:
                if self._logged:
                    raise RuntimeError("the tracker already logged to another run")
                empty, spool = self._run_id, self._spool
                self._close_writer()
                if spool is not None:
                    spool.discard()
                else:
                    retrying(lambda: self.experiment.delete_run(empty))
                self._started = False
                self._spool = None
            self._run_id = run_id

    def adopt(self, run_id: str) -> None:
        """On ranks other than zero: know the run's id (they never write to it)."""
        self._run_id = run_id

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self._finalized = False
        self._logged = True
        writer = self._writer or self._writer_for_run()
        step = int(step or 0)
        if self._skip_until:
            metrics = {k: v for k, v in metrics.items() if step > self._skip_until.get(k, -1)}
            if not metrics:
                return
        writer.put(dict(metrics), step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Log params: flattened, secrets redacted; values too long for MLflow go to the
        artifact ``config/long_params.json`` instead of being cut."""
        if isinstance(params, Namespace):
            params = vars(params)
        flat, long = split_long(flatten_params(_plain(params)))
        self._record({"params": flat})
        if long:
            self._record({"text": json.dumps(long, indent=1), "path": "config/long_params.json"})

    @rank_zero_only
    def log_config(self, config: Mapping[str, Any], name: str = "config/config.yaml") -> None:
        """The composed config as a YAML artifact, secrets redacted."""
        import yaml

        text = yaml.safe_dump(redact_config(_plain(config)), sort_keys=False)
        self._record({"text": text, "path": name})

    @rank_zero_only
    def log_figure(self, figure: Any, name: str) -> None:
        _ = self.run_id
        self._logged = True
        if self._spool is not None and self._spool.keep_figure(figure, name):
            return
        self._adopt_sent_run()
        run_id = self._run_id
        retrying(lambda: self.experiment.log_figure(run_id, figure, name))

    @rank_zero_only
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._record({"tags": {k: str(v) for k, v in tags.items()}})

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued point is in the store (True) or ``timeout`` passed."""
        return True if self._writer is None else self._writer.flush(timeout)

    @rank_zero_only
    def save(self) -> None:  # points are written continuously; nothing is held back
        pass

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Write everything, then mark the run FINISHED, FAILED or KILLED.

        Lightning calls this after every stage (fit, then test): everything queued is written
        first; the writer process stays for a later stage's points (starting one costs an
        MLflow import, seconds of CPU) and ends at interpreter exit, or when this process dies.
        Lightning's SLURM requeue handler passes "finished" for a preempted job: that, and a
        SIGTERM seen earlier, mark the run KILLED. ``Preemption`` passes "requeued" or
        "preempted" (KILLED too); the "failed" Lightning passes next, as the stop unwinds
        ``fit``, changes nothing.
        """
        if not self._started or self._preempted:
            return
        self._preempted = status in _PREEMPTED
        if self.interrupted_by is not None or status == "finished":
            status = "killed"
        self.flush(timeout=120)
        self._record({"status": _STATUS.get(status, "FAILED"), "end_time": now_ms()})
        spool = self._spool
        if spool is not None and not spool.send_if_reachable():
            # kept until `lrsched send`: no thread keeps trying after the end (a later stage
            # starts another writer, which keeps its points with the run and tries again)
            self._close_writer()
        if spool is not None and not spool.sent and not self._said_unsent:
            self._said_unsent = True
            print(
                f"lrsched tracking: {self.tracking_uri} did not answer; the run (params, "
                f"metrics, plots) is kept in {spool.path}; send it with: lrsched send "
                f"{spool.path.parent}",
                file=sys.stderr,
                flush=True,
            )
        self._adopt_sent_run()
        self._finalized = True

    # -- pickling (ddp_spawn sends the Trainer, loggers included, to new processes) ---------
    def __getstate__(self) -> dict[str, Any]:
        self.flush(timeout=60)
        state = self.__dict__.copy()
        # the client, the writer thread and the lock stay here; the new process reopens the run
        state.update(
            _client=None, _writer=None, _lock=None, _skip_until={}, _started=False,
            _hooks_installed=False, _spool=None,
        )  # fmt: skip
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # -- internals --------------------------------------------------------------------------
    def _start_run(self) -> None:
        if is_local_id(self._run_id):  # resuming a run that was kept on disk
            spool = Spool.find(self._unsent_root, str(self._run_id))
            if spool is None:
                raise RuntimeError(
                    f"run {self._run_id} was kept in {self._unsent_root} and is not there now"
                )
            if not spool.send_if_reachable():
                self._keep_on_disk(spool)
                return
            self._run_id = spool.run_id
        elif not reachable(self.tracking_uri):
            spool = Spool.create(
                self._unsent_root, self.tracking_uri, self._experiment_name, self._run_name,
                self._tags, run_id=self._run_id,
            )  # fmt: skip
            self._keep_on_disk(spool)
            return
        client = self.experiment
        if self._run_id is None:
            run = retrying(
                lambda: client.create_run(
                    self.experiment_id, run_name=self._run_name, tags=self._tags
                )
            )
            self._run_id = run.info.run_id
        else:
            run_id = self._run_id
            retrying(lambda: client.update_run(run_id, status="RUNNING"))
            self._skip_until = last_steps(client, run_id)
        self._mark_started()

    def _keep_on_disk(self, spool: Spool) -> None:
        """The store does not answer: keep the run in ``spool`` until it does."""
        self._spool = spool
        self._run_id = spool.run_id or spool.local_id
        self._skip_until = spool.last_steps()
        print(
            f"lrsched tracking: {self.tracking_uri} does not answer; training goes on, the run "
            f"is kept in {spool.path} and sent when it answers",
            file=sys.stderr,
            flush=True,
        )
        self._mark_started()

    def _mark_started(self) -> None:
        self._started = True
        if not self._hooks_installed:
            atexit.register(self._at_exit)
            _install_signal_flush(self)
            self._hooks_installed = True

    def _adopt_sent_run(self) -> None:
        """Once the kept run is in the store (sent by the writer, or at the end): its id."""
        spool = self._spool
        if spool is not None and spool.sent:
            self._run_id = spool.run_id
            self._spool = None

    def _record(self, op: dict[str, Any]) -> None:
        """Write one op (params, tags, a text, a status) to the run, or keep it with the run."""
        _ = self.run_id
        self._logged = True
        if self._spool is not None and self._spool.keep(op):
            return
        self._adopt_sent_run()
        apply_op(self.experiment, str(self._run_id), op)

    def _writer_for_run(self) -> MetricWriter:
        """The writer (started when first needed, again after a resume closed it)."""
        _ = self.run_id
        if self._writer is None:
            assert self._run_id is not None
            self._writer = MetricWriter(
                self.tracking_uri,
                self._run_id,
                flush_interval=self._flush_interval,
                spool=self._spool,
            )
        return self._writer

    def _close_writer(self, timeout: float | None = 120) -> bool:
        writer, self._writer = self._writer, None
        return True if writer is None else writer.close(timeout)

    def _at_exit(self) -> None:
        """At interpreter exit (after a SIGTERM too): write what is queued, record the end."""
        if self._writer is not None:
            self._close_writer(timeout=30)
        if self._started and not self._finalized and self.interrupted_by is not None:
            killed = {"status": "KILLED", "end_time": now_ms()}
            if self._spool is not None and self._spool.keep(killed):
                return
            self._adopt_sent_run()
            run_id = self._run_id
            retrying(lambda: self.experiment.set_terminated(run_id, "KILLED"), deadline=10)


def _plain(value: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, DictConfig | ListConfig):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return value


def _install_signal_flush(tracker: MLflowTracker) -> None:
    """On SIGTERM: note it (the run ends KILLED) and start writing what is queued, then let the
    previous handler act. Lightning wraps this handler in its own during ``fit`` and stops
    gracefully (its ``finalize`` writes the rest). Alone, in a plain loop, the process exits as
    SIGTERM asks, through ``SystemExit``, so the exit handler writes the rest: nothing is
    waited for inside the signal handler, which may have interrupted the writer's own lock."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(number: int, frame: Any) -> None:
        tracker.interrupted_by = signal.Signals(number).name
        tracker.flush(timeout=0)
        if callable(previous):
            previous(number, frame)
        elif signal.getsignal(signal.SIGTERM) is handler and previous != signal.SIG_IGN:
            raise SystemExit(128 + number)

    signal.signal(signal.SIGTERM, handler)
