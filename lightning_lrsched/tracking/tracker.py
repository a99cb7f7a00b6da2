"""``MLflowTracker``: a Lightning logger on MLflow's client that never makes training wait.

Metrics go through a :class:`MetricWriter` (batched, from a background thread, retried through
outages). The run is created (or, after a resume, reopened) on first use, on rank zero only;
``RunTracking`` (the companion callback) tells every rank its id and saves it in checkpoints.
Params are the flattened config with secrets redacted; values too long for a param go into
the config artifact. The final status is FINISHED, FAILED or KILLED (interrupted or preempted).
"""

from __future__ import annotations

import atexit
import json
import signal
import threading
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from .params import flatten_params, redact_config, split_long
from .store import prepare_store, resolve_uri, retrying
from .writer import MetricWriter

EXPERIMENT_KIND_TAG = ("mlflow.experimentKind", "custom_model_development")
_STATUS = {"success": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


class MLflowTracker(Logger):
    """Log to MLflow without blocking the training loop.

    Args:
        experiment_name: created if missing, tagged as a model-training experiment.
        tracking_uri: a store URI; default ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``
            in the current directory.
        run_name, tags: of a new run.
        run_id: continue this run (set by ``RunTracking`` from a checkpoint when resuming).
        flush_interval: the writer's period in seconds (the most a SIGKILL can lose).
    """

    def __init__(
        self,
        experiment_name: str = "lightning-lrsched",
        tracking_uri: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        flush_interval: float = 1.0,
    ) -> None:
        super().__init__()
        self._experiment_name = experiment_name
        self.tracking_uri = resolve_uri(tracking_uri)
        self._run_name = run_name
        self._tags = {k: str(v) for k, v in (tags or {}).items()}
        self._run_id = run_id
        self._experiment_id: str | None = None
        self._client: Any = None
        self._writer: MetricWriter | None = None
        self._flush_interval = flush_interval
        self._lock = threading.RLock()
        self._finalized = False
        self._started = False  # the run exists (created or reopened) on this rank
        self._logged = False  # something was written to it
        self._hooks_installed = False
        self._skip_until: dict[str, int] = {}  # after a resume: steps already in the store
        self.interrupted_by: str | None = None

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
        """The ``MlflowClient`` (the store is prepared and the experiment exists; no run yet)."""
        with self._lock:
            if self._client is None:
                from mlflow import MlflowClient

                prepare_store(self.tracking_uri)
                self._client = MlflowClient(self.tracking_uri)
                self._experiment_id = retrying(self._get_or_create_experiment)
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
            assert self._run_id is not None
            return self._run_id

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
                empty = self._run_id
                self._close_writer()
                retrying(lambda: self.experiment.delete_run(empty))
                self._started = False
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
        from mlflow.entities import Param

        if isinstance(params, Namespace):
            params = vars(params)
        params = _plain(params)
        flat, long = split_long(flatten_params(params))
        run_id = self.run_id
        self._logged = True
        client = self.experiment
        existing = retrying(lambda: client.get_run(run_id)).data.params
        fresh = [Param(k, v) for k, v in flat.items() if k not in existing]
        for start in range(0, len(fresh), 100):
            chunk = fresh[start : start + 100]
            retrying(lambda chunk=chunk: client.log_batch(run_id, params=chunk))
        if long:
            retrying(
                lambda: client.log_text(
                    run_id, json.dumps(long, indent=1), "config/long_params.json"
                )
            )

    @rank_zero_only
    def log_config(self, config: Mapping[str, Any], name: str = "config/config.yaml") -> None:
        """The composed config as a YAML artifact, secrets redacted."""
        import yaml

        text = yaml.safe_dump(redact_config(_plain(config)), sort_keys=False)
        retrying(lambda: self.experiment.log_text(self.run_id, text, name))

    @rank_zero_only
    def log_figure(self, figure: Any, name: str) -> None:
        retrying(lambda: self.experiment.log_figure(self.run_id, figure, name))

    @rank_zero_only
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        run_tags = [RunTag(k, str(v)) for k, v in tags.items()]
        retrying(lambda: self.experiment.log_batch(self.run_id, tags=run_tags))

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
        SIGTERM seen earlier, mark the run KILLED.
        """
        if not self._started:
            return
        if self.interrupted_by is not None or status == "finished":
            status = "killed"
        self.flush(timeout=120)
        run_id = self._run_id
        state = _STATUS.get(status, "FAILED")
        retrying(lambda: self.experiment.set_terminated(run_id, state))
        self._finalized = True

    # -- pickling (ddp_spawn sends the Trainer, loggers included, to new processes) ---------
    def __getstate__(self) -> dict[str, Any]:
        self.flush(timeout=60)
        state = self.__dict__.copy()
        # the client, the writer thread and the lock stay here; the new process reopens the run
        state.update(
            _client=None, _writer=None, _lock=None, _skip_until={}, _started=False,
            _hooks_installed=False,
        )  # fmt: skip
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # -- internals --------------------------------------------------------------------------
    def _get_or_create_experiment(self) -> str:
        client = self._client
        found = client.get_experiment_by_name(self._experiment_name)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            try:
                experiment_id = client.create_experiment(self._experiment_name)
            except Exception:  # another process created it at the same moment
                found = client.get_experiment_by_name(self._experiment_name)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND_TAG)
        return experiment_id

    def _start_run(self) -> None:
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
            self._skip_until = _last_steps(client, run_id)
        self._started = True
        if not self._hooks_installed:
            atexit.register(self._at_exit)
            _install_signal_flush(self)
            self._hooks_installed = True

    def _writer_for_run(self) -> MetricWriter:
        """The writer (started when first needed, again after a resume closed it)."""
        _ = self.run_id
        if self._writer is None:
            assert self._run_id is not None
            self._writer = MetricWriter(
                self.tracking_uri, self._run_id, flush_interval=self._flush_interval
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
            run_id = self._run_id
            retrying(lambda: self.experiment.set_terminated(run_id, "KILLED"), deadline=10)


def _last_steps(client: Any, run_id: str) -> dict[str, int]:
    """The last step of every metric already in a run, so a resume does not log them twice."""
    run = retrying(lambda: client.get_run(run_id))
    steps = {}
    for key in run.data.metrics:
        history = retrying(lambda key=key: client.get_metric_history(run_id, key))
        steps[key] = max((m.step for m in history), default=-1)
    return steps


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
