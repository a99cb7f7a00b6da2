"""Train ``TinyModule`` under real DDP (2 CPU processes, gloo) for ``tests/test_ddp.py``.

    python tests/ddp_script.py OUT_DIR CASES_JSON

``CASES_JSON`` is a JSON list of cases, run one after the other in the same pair of processes::

    {"name": "...", "via": "helper" | "callback", "scheduler": {...}, "optimizer": {...},
     "max_epochs": 8, "offsets": [[rank 0's val_offset per epoch], [rank 1's ...]],
     "lr_logger": false, "tracking_uri": null}

Lightning's DDP launcher starts rank 1 by re-running this script with the same arguments (the
first ``fit`` launches it; later Trainers find ``LOCAL_RANK`` set and reuse the process group).
Each rank writes ``OUT_DIR/<name>/rank<r>.json``: every optimizer step's (step, lrs, momenta),
every validation's local ``val_loss``, the scheduler's resolved description and, for a
plateau, its controller's state after training. With
``lr_logger`` the case also has an ``LRLogger`` writing to a ``CSVLogger`` under
``OUT_DIR/<name>/logs`` and to a probe logger that records, per rank, the steps it was called for.
With ``tracking_uri`` the case is tracked as a user would: ``TrackedModule`` (saved
hyperparameters, ``train_loss`` per step and epoch), ``MLflowTracker`` (experiment ``<name>``)
with ``RunTracking`` and ``LRLogger``; each rank records the run id its tracker knows.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.loggers import CSVLogger, Logger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lightning_support import PointsLogger, RateRecorder, TinyModule, regression_data
from tracking_script import TrackedModule

from lightning_lrsched.callbacks import LRLogger, LRSchedule, RankDivergenceError, StepMetrics
from lightning_lrsched.lightning import attached_schedules
from lightning_lrsched.tracking import MLflowTracker, RunTracking

torch.set_num_threads(1)


class RankOffsets(pl.Callback):
    """Sets the module's ``val_offset`` to this rank's value for the current epoch."""

    def __init__(self, offsets: list[list[float]]) -> None:
        self.offsets = offsets

    def on_validation_epoch_start(self, trainer, pl_module):
        pl_module.val_offset = float(self.offsets[trainer.global_rank][trainer.current_epoch])


class ExtraStepOnRank(pl.Callback):
    """At the start of epoch ``epoch``, rank ``rank``'s schedule takes one step the others do
    not (a rank that drifted): the rank guard must stop every rank at that epoch's end."""

    def __init__(self, rank: int, epoch: int) -> None:
        self.rank, self.epoch = rank, epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.global_rank == self.rank and trainer.current_epoch == self.epoch:
            (scheduler,) = attached_schedules(trainer)
            # one step on through its state (the helper's schedule advances on step() only
            # after an optimizer step, which would change the weights too)
            state = scheduler.state_dict()
            state["step"] += 1
            scheduler.load_state_dict(state)


class ValidationRecorder(pl.Callback):
    """Records each validation's epoch, global step and this rank's own (unreduced) val_loss."""

    def __init__(self, offsets: list[list[float]]) -> None:
        self.offsets = offsets
        self.records: list[dict[str, Any]] = []

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        self.records.append(
            {
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
                "offset": float(self.offsets[trainer.global_rank][trainer.current_epoch]),
                "val_loss": float(trainer.callback_metrics["val_loss"]),
            }
        )


class RankDataModule(TinyModule):
    """Each rank's own training data, also where Lightning's sampler does not reach (the range
    test reads the module's loader itself): only the cross-rank mean makes them agree."""

    def train_dataloader(self):
        data = regression_data(self.n, seed=10 + self.global_rank)
        return torch.utils.data.DataLoader(data, batch_size=self.batch_size)


class LossRecorder(pl.Callback):
    """This rank's own loss at each optimizer step (what StepMetrics averages over ranks)."""

    def __init__(self) -> None:
        self.losses: list[list[float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append([trainer.global_step - 1, float(outputs["loss"])])


def run_case(case: dict[str, Any], out: Path) -> None:
    pl.seed_everything(0, verbose=False)
    case_dir = out / case["name"]
    offsets = case["offsets"]
    rates = RateRecorder()
    validations = ValidationRecorder(offsets)
    callbacks: list[pl.Callback] = [RankOffsets(offsets), validations, rates]
    module_class = TrackedModule if case.get("tracking_uri") else TinyModule
    if case.get("rank_data"):
        module_class = RankDataModule
    helper = case.get("helper", {})
    if case["via"] == "callback":
        module = module_class(scheduler=None, optimizer=case["optimizer"])
        callbacks.append(LRSchedule(case["scheduler"], **helper))
    else:
        module = module_class(scheduler=case["scheduler"], optimizer=case["optimizer"], **helper)
    if case.get("diverge"):
        callbacks.append(ExtraStepOnRank(**case["diverge"]))
    loggers: list[Logger] | bool = False
    probe = tracker = None
    if case.get("lr_logger"):
        probe = PointsLogger()  # not rank-zero-only: the calls every rank gets
        loggers = [CSVLogger(save_dir=case_dir / "logs", name="csv"), probe]
        callbacks.append(LRLogger())
    losses = None
    if case.get("step_metrics"):  # every step's loss averaged over the ranks, to a probe
        probe, losses = PointsLogger(), LossRecorder()
        loggers = [probe]
        callbacks += [losses, StepMetrics({"loss": "loss_mean"}, every_n_steps=5, sync_dist=True)]
    if case.get("tracking_uri"):
        tracker = MLflowTracker(experiment_name=case["name"], tracking_uri=case["tracking_uri"])
        loggers = [tracker]
        callbacks += [RunTracking(), LRLogger()]
    trainer = pl.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        plugins=[LightningEnvironment()],  # not SLURM/torchelastic even when CI runs under one
        max_epochs=case["max_epochs"],
        logger=loggers,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=case_dir,
        callbacks=callbacks,
    )
    error = None
    try:
        trainer.fit(module)
    except RankDivergenceError as stop:
        error = str(stop)
    (scheduler,) = attached_schedules(trainer)
    result = {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "estimated_stepping_batches": int(trainer.estimated_stepping_batches),
        "num_training_batches": int(trainer.num_training_batches),
        "global_step": trainer.global_step,
        "description": scheduler.description,
        "controller": scheduler.state_dict().get("controller"),
        "group_names": [g.get("name") for g in scheduler.optimizer.param_groups],
        "final_lrs": [float(g["lr"]) for g in scheduler.optimizer.param_groups],
        "rates": [[step, list(lrs), list(momenta)] for step, lrs, momenta in rates.rates],
        "validations": validations.records,
        "probe_lr_steps": None
        if probe is None
        else [step for step, m in probe.points if any(k.startswith("lr/") for k in m)],
        "run_id": None if tracker is None else tracker.version,
        "own_losses": None if losses is None else losses.losses,
        "logged_losses": None
        if losses is None or probe is None
        else [[step, m["loss_mean"]] for step, m in probe.points if "loss_mean" in m],
        "chosen_rates": scheduler.chosen_rates,
        "error": error,
    }
    case_dir.mkdir(parents=True, exist_ok=True)
    path = case_dir / f"rank{trainer.global_rank}.json"
    path.write_text(json.dumps(result, indent=1))


def main() -> None:
    out = Path(sys.argv[1])
    cases = json.loads(sys.argv[2])
    for case in cases:
        run_case(case, out)


if __name__ == "__main__":
    main()
