"""Preemption in real Lightning runs: a signal at each point of training, then a resume.

Each case trains ``TinyModule`` (8 batches per epoch, 3 epochs = 24 optimizer steps) with the
``Preemption`` callback; ``SignalAt`` sends SIGUSR1 or SIGTERM to this process at one point.
The run must stop with ``Preempted`` and one ``preempted.ckpt``; a fresh Trainer and module
resumed from it must take exactly the remaining steps, and the whole curve (rate and momentum
of both param groups at every step) and the final weights must equal those of an
uninterrupted run, bit for bit. The two plateau strategies validate every 4 steps and at each
epoch's end, and their validation loss stalls, so a lost or repeated validation changes when
the rate is reduced.
"""

from __future__ import annotations

import signal

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning_support import RateRecorder, regression_data
from lightning_support import trainer as make_trainer
from preemption_support import SignalAt
from resume_script import TOTAL_STEPS, build, normalise, spec
from torchdata.stateful_dataloader import StatefulDataLoader

from lightning_lrsched.lightning.preemption import CHECKPOINT_NAME, Preempted, Preemption

pytestmark = [
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated"),
]

# point -> (signal once this many steps are done, the signal, the first step after the resume).
# Steps are counted from 0: the run that stops after 5 steps took steps 0..4.
POINTS = {
    "mid-epoch": (5, "SIGUSR1", 5),
    "last-batch": (12, "SIGTERM", 16),  # epoch 1's last batch: stops after its validation
    "before-validation": (12, "SIGUSR1", 16),
    # plateau+warmup validates every 4 steps: the one after 12 steps, inside epoch 1; the
    # others validate at epoch 1's end
    "during-validation": (9, "SIGTERM", {"plateau+warmup": 12}, 16),
    # epoch 0's checkpoint is written after the stop was checked: the next step's end decides
    # (plateau+warmup's first checkpoint is at its validation after 4 steps)
    "during-checkpoint": (3, "SIGUSR1", {"plateau+warmup": 5}, 9),
}
STRATEGIES = ("plateau+warmup", "plateau+warmup/epoch-val", "onecycle", "cosine_restarts")


def run(strategy, root, callbacks, ckpt_path=None, logger=False):
    """One fit of a case (``helper``); the steps' rates, the weights, how it ended."""
    torch.manual_seed(0)
    module, extra = build(strategy, "helper")
    # a loader that can resume inside an epoch (torchdata's, which Lightning saves and restores)
    data = regression_data(module.n)
    module.train_dataloader = lambda: StatefulDataLoader(data, batch_size=module.batch_size)
    recorder = RateRecorder()
    checkpoints = ModelCheckpoint(root / "epochs", every_n_epochs=1, save_top_k=-1)
    trainer = make_trainer(
        root,
        [recorder, *extra, *callbacks, checkpoints],
        max_epochs=3,
        enable_checkpointing=True,
        logger=logger,
        **spec(strategy).trainer_options,
    )
    preempted = None
    try:
        trainer.fit(module, ckpt_path=ckpt_path)
    except Preempted as stop:
        preempted = stop
    weights = [p.detach().clone() for p in module.parameters()]
    return normalise(recorder.rates), weights, preempted


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cache = {}

    def get(strategy):
        if strategy not in cache:
            rates, weights, preempted = run(strategy, tmp_path_factory.mktemp("whole"), [])
            assert preempted is None
            assert [s for s, _, _ in rates] == list(range(TOTAL_STEPS))
            cache[strategy] = rates, weights
        return cache[strategy]

    return get


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("point", list(POINTS))
def test_preempted_run_resumes_the_uninterrupted_curve(point, strategy, uninterrupted, tmp_path):
    after, name, *resumed_from = POINTS[point]
    resumed_from = (
        resumed_from[0].get(strategy, resumed_from[1])
        if len(resumed_from) == 2
        else resumed_from[0]
    )
    whole_rates, whole_weights = uninterrupted(strategy)
    previous = signal.getsignal(signal.SIGTERM)

    first, _, stop = run(strategy, tmp_path / "first", [SignalAt(point, after, name), Preemption()])
    assert stop is not None, f"{point}: training was not preempted"
    assert stop.signal_name == name
    assert stop.checkpoint == tmp_path / "first" / "checkpoints" / CHECKPOINT_NAME
    assert stop.checkpoint.exists() and not stop.requeued
    assert [p.name for p in stop.checkpoint.parent.iterdir()] == [CHECKPOINT_NAME]
    assert signal.getsignal(signal.SIGTERM) in (previous, signal.SIG_DFL) or callable(
        signal.getsignal(signal.SIGTERM)
    )

    second, weights, again = run(
        strategy, tmp_path / "second", [Preemption()], ckpt_path=stop.checkpoint
    )
    assert again is None
    steps = [s for s, _, _ in first] + [s for s, _, _ in second]
    assert steps == list(range(TOTAL_STEPS)), f"{point}: steps {steps}"
    assert second[0][0] == resumed_from
    assert first + second == whole_rates
    for got, want in zip(weights, whole_weights, strict=True):
        assert torch.equal(got, want), f"{point}: the resumed run trained on other batches"


def test_three_preemptions_in_one_slurm_job_are_one_run_and_one_curve(
    tmp_path, uninterrupted, monkeypatch
):
    """A SLURM job stopped three times (SIGUSR1 mid-epoch, SIGTERM on an epoch's last batch,
    SIGUSR1 during a validation) and started again each time with the same arguments: each
    SIGUSR1 requeues the job (a stand-in ``scontrol`` on PATH records it), SIGTERM does not
    (``scancel`` sends it too); each stop leaves the MLflow run KILLED, tagged with why; the
    last start finishes it. One run holds every step's rate once,
    and the rates are the uninterrupted run's."""
    from mlflow import MlflowClient

    from lightning_lrsched.callbacks import LRLogger
    from lightning_lrsched.lightning.preemption import newest_checkpoint
    from lightning_lrsched.tracking import MLflowTracker, RunTracking

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    requeues = tmp_path / "requeues.log"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {requeues}\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_JOB_NAME", "lrsched")  # not "bash": Lightning ignores SLURM then
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    monkeypatch.setenv("SLURM_NODEID", "0")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    root = tmp_path / "job"
    stops = [
        ("mid-epoch", 5, "SIGUSR1"),
        ("last-batch", 9, "SIGTERM"),
        ("during-validation", 17, "SIGUSR1"),
    ]
    rates, run_ids = [], set()
    for start in range(len(stops) + 1):
        ckpt = newest_checkpoint(root / "checkpoints") if start else None
        tracker = MLflowTracker(experiment_name="preempted", tracking_uri=uri)
        callbacks = [RunTracking(plots=False), LRLogger(), Preemption()]
        if start < len(stops):
            callbacks.append(SignalAt(*stops[start]))
        got, _, stop = run("onecycle", root, callbacks, ckpt_path=ckpt, logger=tracker)
        rates += got
        run_ids.add(tracker.version)
        status = client.get_run(tracker.version).info.status
        if start < len(stops):
            usr1 = stops[start][2] == "SIGUSR1"
            assert stop is not None and stop.requeued == usr1, f"start {start}"
            assert status == "KILLED"
            tag = client.get_run(tracker.version).data.tags["lrsched.preempted"]
            what = "requeued" if usr1 else "stopped"
            assert tag.startswith(f"{what}: {stops[start][2]} after step "), tag
            requeued = sum(s[2] == "SIGUSR1" for s in stops[: start + 1])
            assert requeues.read_text().splitlines() == ["requeue 4242"] * requeued
        else:
            assert stop is None and status == "FINISHED"
    assert len(run_ids) == 1
    assert rates == uninterrupted("onecycle")[0]
    (run_id,) = run_ids
    history = client.get_metric_history(run_id, "lr/SGD/pg0")
    steps = [m.step for m in history]
    assert sorted(steps) == list(range(TOTAL_STEPS)), steps
    assert {m.step: m.value for m in history} == {s: lrs[0] for s, lrs, _ in rates}


@pytest.mark.parametrize(
    ("options", "key", "allowed"),
    [
        ({"signals": ["SIGUSR3"]}, "signals", "signal names"),
        ({"signals": "SIGKILL"}, "signals", "cannot be caught"),
        ({"requeue": "maybe"}, "requeue", "auto, true or false"),
    ],
)
def test_bad_options_are_one_line_naming_the_key(options, key, allowed):
    from lightning_lrsched import ConfigError

    with pytest.raises(ConfigError) as caught:
        Preemption(**options)
    assert caught.value.key == key and allowed in str(caught.value)
    assert "\n" not in str(caught.value)


def test_lightnings_default_checkpoint_stays_and_a_plateau_lrschedule_must_come_first(tmp_path):
    """Preemption is no Lightning ``Checkpoint``: the default ``ModelCheckpoint`` is still
    added (and ``enable_checkpointing=False`` still allowed). An ``LRSchedule`` that feeds a
    plateau after it would feed it after the preemption checkpoint: refused as training starts."""
    from lightning_lrsched import ConfigError
    from lightning_lrsched.callbacks import LRSchedule

    kept = make_trainer(tmp_path, [Preemption()], enable_checkpointing=True)
    assert kept.checkpoint_callback is not None
    make_trainer(tmp_path, [Preemption()], enable_checkpointing=False)

    module, _ = build("plateau+warmup", "callback")
    plateau = LRSchedule(spec("plateau+warmup").config)
    late = make_trainer(tmp_path, [Preemption(), plateau], max_epochs=1)
    with pytest.raises(ConfigError, match="put Preemption after the LRSchedule"):
        late.fit(module)
    module, _ = build("plateau+warmup", "callback")
    fine = make_trainer(
        tmp_path, [LRSchedule(spec("plateau+warmup").config), Preemption()], max_epochs=1
    )
    fine.fit(module)


def test_resuming_from_a_checkpoint_written_before_a_due_validation_warns(tmp_path):
    """The gap Preemption never writes into, and a user's per-step ModelCheckpoint does: the
    checkpoint after epoch 0's last batch, before its validation. Lightning resumes without
    that validation; resuming from it says so. A checkpoint written after the validation (the
    end of epoch 0) resumes quietly."""
    import warnings

    from resume_script import Interrupt, SimulatedCrashError

    module, extra = build("onecycle", "helper")
    steps = ModelCheckpoint(tmp_path / "steps", every_n_train_steps=1, save_top_k=-1)
    epochs = ModelCheckpoint(tmp_path / "epochs", save_top_k=-1)  # after each validation
    crashing = make_trainer(
        tmp_path, [*extra, Preemption(), Interrupt(epoch=1), steps, epochs], max_epochs=2,
        enable_checkpointing=True,
    )  # fmt: skip
    with pytest.raises(SimulatedCrashError):
        crashing.fit(module)
    gap = tmp_path / "steps" / "epoch=0-step=8.ckpt"
    assert gap.exists(), sorted(p.name for p in (tmp_path / "steps").iterdir())
    module, extra = build("onecycle", "helper")
    resumed = make_trainer(tmp_path / "r", [*extra, Preemption()], max_epochs=2)
    with pytest.warns(UserWarning, match="before the validation that follows it"):
        resumed.fit(module, ckpt_path=gap)

    (after,) = (tmp_path / "epochs").iterdir()
    module, extra = build("onecycle", "helper")
    quiet = make_trainer(tmp_path / "q", [*extra, Preemption()], max_epochs=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.fit(module, ckpt_path=after)
    assert not [w for w in caught if "before the validation" in str(w.message)]
