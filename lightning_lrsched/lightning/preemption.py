"""``Preemption``: stop on a cluster's warning signal at one step all ranks agree on, write one
checkpoint, requeue the job, and let the same command resume it exactly.

SLURM sends ``--signal=SIGUSR1@90`` before a time limit and SIGTERM when it preempts a job;
Kubernetes and torchrun's agent send SIGTERM. Lightning's own handlers act *inside* the signal
handler (its SLURM handler writes the checkpoint there, with a barrier that can wait forever
when another rank is inside the gradient all-reduce; its SIGTERM handler broadcasts there too)
and end the run with no checkpoint on SIGTERM. Here the handler only notes the signal; the
decision is taken at the end of a training step (or of a validation), where every rank is, from
an all-reduce of the ranks' notes on a small CPU (gloo) group, so one signalled rank is enough
and no rank is ever inside another collective. The per-step exchange is asynchronous: started
at one step, read at the next, it never holds the step, and nothing goes to or from a GPU.

Where the stop lands decides where the checkpoint is written, so that the resumed run repeats
nothing and skips nothing (Lightning treats a checkpoint written on the batch before a
validation as if that validation had run, and skips it on resume):

- inside an epoch, no validation next: at that step's end (resumed from the next batch, the
  data loader fast-forwarded when it is resumable);
- on a batch a validation follows: after that validation (its plateau decision included);
- on the epoch's last batch: at the epoch's end, after its validation and epoch-end hooks.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from ..errors import ConfigError

#: ``lrsched train``'s exit status after a preemption: the run is resumable (0 is success;
#: torchrun and job controllers restart workers that fail).
PREEMPTED_EXIT_CODE = 3
CHECKPOINT_NAME = "preempted.ckpt"


class Preempted(Exception):  # noqa: N818 - a planned stop, not an error
    """Training stopped on a preemption signal; ``checkpoint`` resumes it."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path, requeued: bool) -> None:
        self.signal_name, self.step, self.checkpoint, self.requeued = (
            signal_name,
            step,
            checkpoint,
            requeued,
        )
        then = "the job was requeued" if requeued else "run the same command to resume"
        super().__init__(
            f"preempted ({signal_name}) after optimizer step {step}: checkpoint {checkpoint}; "
            f"{then}"
        )


def newest_checkpoint(directory: str | Path) -> Path | None:
    """The most recently written ``*.ckpt`` in ``directory`` (None when there is none)."""
    found = [p for p in Path(directory).glob("*.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def _signal_numbers(names: Any) -> list[signal.Signals]:
    numbers = []
    for name in [names] if isinstance(names, str) else list(names):
        try:
            numbers.append(signal.Signals[str(name).upper()])
        except KeyError:
            raise ConfigError(
                "signals", name, "must be signal names such as SIGUSR1, SIGTERM"
            ) from None
        if numbers[-1] in (signal.SIGKILL, signal.SIGSTOP):
            raise ConfigError("signals", name, "cannot be caught")
    return numbers


def slurm_job_id() -> str | None:
    """The job id ``scontrol requeue`` takes (an array task's own id for array jobs)."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array is not None and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class Preemption(Callback):
    """Checkpoint and stop on ``signals`` (default SIGUSR1 and SIGTERM) during ``fit``.

    Args:
        dirpath: where ``preempted.ckpt`` goes (default: ``<default_root_dir>/checkpoints``;
            ``ckpt_path=auto`` in ``lrsched train`` resumes from the newest checkpoint there).
        signals: the signals that mean "stop soon".
        requeue: ``auto``: under SLURM, on SIGUSR1 (``--signal=SIGUSR1@90``: the time limit
            is near) run ``scontrol requeue $SLURM_JOB_ID``; never on SIGTERM, which
            ``scancel`` sends too (a preempted job is requeued by SLURM itself when its
            ``PreemptMode`` says so). ``true``: on every signal; ``false``: never.

    After the checkpoint is written, the loggers are finalized with ``"requeued"`` or
    ``"preempted"`` (the MLflow run shows KILLED, never FINISHED, with the tag
    ``lrsched.preempted`` saying why, until the resumed job continues it), then
    :class:`Preempted` is raised on every rank.

    It is not one of Lightning's ``Checkpoint`` callbacks (those would replace the default
    ``ModelCheckpoint``). Its checkpoint must hold the plateau decision of the validation it
    follows: the helper's ``PlateauControl`` is placed before it by itself; an ``LRSchedule``
    with a plateau schedule must come before it in the callbacks (checked when training starts).
    """

    def __init__(
        self,
        dirpath: str | None = None,
        signals: Any = ("SIGUSR1", "SIGTERM"),
        requeue: bool | str = "auto",
    ) -> None:
        if requeue not in (True, False, "auto"):
            raise ConfigError("requeue", requeue, "must be auto, true or false")
        self.dirpath = dirpath
        self.signals = _signal_numbers(signals)
        self.requeue = requeue
        self.received: str | None = None  # the signal noted by the handler
        self._previous: dict[signal.Signals, Any] = {}
        self._active = False
        self._group: Any = None
        self._in_flight: tuple[Any, torch.Tensor] | None = None
        self._stop_at: str | None = None  # "validation_end" / "epoch_end": agreed, deferred
        self._last_batch = -1  # the epoch's last training batch so far
        self._validation_due = False  # a validation follows the batch that just ended
        self._restored_due = False  # the checkpoint resumed from was written in such a gap

    # -- signals ------------------------------------------------------------------------------
    def _handler(self, number: int, frame: Any) -> None:
        if self._active:
            self.received = self.received or signal.Signals(number).name
            return
        previous = self._previous.get(signal.Signals(number))
        if callable(previous):
            previous(number, frame)
        elif previous != signal.SIG_IGN:  # the default action: end the process as asked
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for number in self.signals:
            current = signal.getsignal(number)
            if current is not self._handler:
                if number not in self._previous:
                    self._previous[number] = current
                signal.signal(number, self._handler)

    # -- hooks ----------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received, self._stop_at, self._in_flight = None, None, None
        self._active = True
        self._install()  # before Lightning's: its SLURM handler then stays out of SIGUSR1
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            # every rank calls this at the same point; gloo: the notes stay on the host
            self._group = dist.new_group(backend="gloo")

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install()  # Lightning registered its SIGTERM handler since on_fit_start

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install()
        _check_plateau_feeds_first(trainer, self)
        apply_restored_loader_state(trainer)
        if self._restored_due:
            self._restored_due = False
            rank_zero_warn(
                f"lightning_lrsched: {trainer.ckpt_path} was written after a training batch "
                "and before the validation that follows it (e.g. by ModelCheckpoint("
                "every_n_train_steps=...)); Lightning resumes without that validation, so a "
                "plateau schedule or an early stop misses its value. Preemption's own "
                "checkpoints are never written there; resume from one of them, or from a "
                "checkpoint written after a validation (ModelCheckpoint's default).",
                category=UserWarning,
            )

    def state_dict(self) -> dict[str, Any]:
        # read by whoever writes a checkpoint now: whether a validation is still due
        return {"validation_due": self._validation_due}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_due = bool(state_dict.get("validation_due", False))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        self._last_batch = batch_idx
        self._validation_due = _validation_follows(trainer, batch_idx)
        if self._stop_at is not None or not self._agreed(trainer, wait=False):
            return
        if batch_idx + 1 >= trainer.num_training_batches:
            self._stop_at = "epoch_end"
        elif self._validation_due:
            self._stop_at = "validation_end"
        else:
            self._stop(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validation_due = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not _fitting(trainer):
            return
        if self._stop_at == "validation_end":
            self._stop(trainer)
        elif self._stop_at is None and self._agreed(trainer, wait=True):
            # signalled during the validation: stop here unless the epoch ends right after
            if self._last_batch + 1 >= trainer.num_training_batches:
                self._stop_at = "epoch_end"
            else:
                self._stop(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stop_at == "epoch_end":
            self._stop(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._finish()

    # -- internals --------------------------------------------------------------------------
    def _finish(self) -> None:
        self._active = False
        if self._in_flight is not None:
            work, _ = self._in_flight
            self._in_flight = None
            work.wait()
        self._group = None

    def _agreed(self, trainer: pl.Trainer, wait: bool) -> bool:
        """Whether any rank was signalled, as every rank learns it at this same point.

        Per step (``wait=False``): the answer is the exchange started one step earlier, and the
        next one starts now. ``wait=True`` (once per validation): this moment's notes, at once.
        """
        if self._group is None:
            return self.received is not None
        # each rank's note is the number of the signal it got (0: none): every rank learns one
        decided = 0
        if self._in_flight is not None:
            work, note = self._in_flight
            self._in_flight = None
            work.wait()
            decided = int(note.item())
        mine = signal.Signals[self.received].value if self.received else 0
        note = torch.tensor([mine], dtype=torch.int32)
        work = dist.all_reduce(note, op=dist.ReduceOp.MAX, group=self._group, async_op=True)
        if wait:
            work.wait()
            decided = decided or int(note.item())
        else:
            self._in_flight = (work, note)
        if decided:
            self.received = self.received or signal.Signals(decided).name
        return bool(decided)

    def _stop(self, trainer: pl.Trainer) -> None:
        if self._in_flight is not None:  # no exchange left half done
            work, _ = self._in_flight
            self._in_flight = None
            work.wait()
        directory = Path(self.dirpath or Path(trainer.default_root_dir) / "checkpoints")
        path = directory / CHECKPOINT_NAME
        partial = directory / f".{CHECKPOINT_NAME}.partial"
        trainer.save_checkpoint(partial)  # every rank; rank zero writes, then a barrier
        if trainer.is_global_zero:
            os.replace(partial, path)  # a signal mid-write never leaves half a checkpoint
        trainer.strategy.barrier("lrsched-preempted")
        signal_name = self.received or "a signal"
        requeue = self.requeue is True or (
            self.requeue == "auto" and signal_name == "SIGUSR1" and SLURMEnvironment.detect()
        )
        what = "requeued" if requeue else "stopped"
        for logger in trainer.loggers:  # written and closed before the job is requeued
            if trainer.is_global_zero and callable(getattr(logger, "set_tags", None)):
                logger.set_tags(  # what the run's KILLED status means, in the MLflow UI
                    {"lrsched.preempted": f"{what}: {signal_name} after step {trainer.global_step}"}
                )
            logger.finalize("requeued" if requeue else "preempted")
        requeued = False
        if requeue and trainer.is_global_zero:
            requeued = _requeue()
        requeued = bool(trainer.strategy.broadcast(requeued, src=0))  # every rank says the same
        self._finish()
        raise Preempted(signal_name, trainer.global_step, path, requeue and requeued)


def apply_restored_loader_state(trainer: pl.Trainer) -> bool:
    """Give a resumable training loader (``state_dict``/``load_state_dict``, e.g. torchdata's
    ``StatefulDataLoader``) the position a checkpoint saved, so a run resumed inside an epoch
    sees the batches it had not seen. Returns whether there was a state to apply.

    Lightning drops that state when ``configure_optimizers`` reads
    ``trainer.estimated_stepping_batches`` (every schedule with a horizon does): the loader is
    set up before the checkpoint is restored and is not set up again
    (Lightning-AI/pytorch-lightning#20550, fixes proposed in #21765 and #21770). No public API
    reaches the pending state, so this does what those fixes do, through the fit loop's private
    members: load it, set the epoch of the loader's sampler, then start the loader's iterator
    again. ``tests/test_preemption.py`` (one process) and ``tests/test_launch.py`` (DDP, the
    same final metrics after a preemption) fail when Lightning changes this.
    """
    loop = trainer.fit_loop
    pending = getattr(loop, "_combined_loader_states_to_load", None)
    if not pending or getattr(loop, "_combined_loader", None) is None:
        return False
    loop._load_combined_loader_states()
    for loader in loop._combined_loader.flattened:
        # the epoch's shuffle first (a DistributedSampler's order depends on it): Lightning sets
        # it only when the epoch starts, after this iterator is made
        for sampler in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            sampler = getattr(sampler, "sampler", sampler)  # a batch sampler's own sampler
            if callable(getattr(sampler, "set_epoch", None)):
                sampler.set_epoch(trainer.current_epoch)
    iter(loop._data_fetcher)
    return True


def _check_plateau_feeds_first(trainer: pl.Trainer, preemption: Preemption) -> None:
    """An ``LRSchedule`` that feeds a plateau schedule after this callback would feed it after
    the preemption checkpoint: the resumed run would miss that validation's decision."""
    from .lr_schedule import LRSchedule

    callbacks = list(trainer.callbacks)
    mine = callbacks.index(preemption)
    for index, callback in enumerate(callbacks):
        scheduler = getattr(callback, "scheduler", None)
        if (
            index > mine
            and isinstance(callback, LRSchedule)
            and getattr(scheduler, "is_plateau", False)
        ):
            raise ConfigError(
                "callbacks",
                "Preemption before LRSchedule(plateau)",
                "put Preemption after the LRSchedule of a plateau schedule, so that its "
                "checkpoint holds the decision of the validation it follows",
            )


def _fitting(trainer: pl.Trainer) -> bool:
    from lightning.pytorch.trainer.states import TrainerFn

    return trainer.state.fn == TrainerFn.FITTING


def _validation_follows(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether a validation runs right after this training batch."""
    if not trainer.enable_validation:
        return False
    every = trainer.check_val_every_n_epoch
    if every is not None and (trainer.current_epoch + 1) % every != 0:
        return False
    interval = trainer.val_check_batch
    return isinstance(interval, int) and (batch_idx + 1) % interval == 0


def _requeue() -> bool:
    """``scontrol requeue <job>``: SLURM ends this job and queues it again, same job id."""
    job = slurm_job_id()
    if job is None:
        print("lrsched: preempted, but no SLURM_JOB_ID to requeue", file=sys.stderr)
        return False
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        print("lrsched: preempted, but scontrol is not on PATH: not requeued", file=sys.stderr)
        return False
    for attempt in range(3):
        done = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True)
        if done.returncode == 0:
            return True
        time.sleep(1 + attempt)
    print(
        f"lrsched: scontrol requeue {job} failed: {done.stderr.strip() or done.returncode}",
        file=sys.stderr,
    )
    return False
