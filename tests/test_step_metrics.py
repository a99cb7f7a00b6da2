"""``StepMetrics`` / ``log_step``: every step's values, at their own steps, flushed in batches.

Reference values come from the module itself (it keeps each batch's loss as a float, which the
tests may do: they are not measuring speed); the logged curve must equal them step for step.
"""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning_support import PointsLogger, TinyModule, trainer
from torch import nn

from lightning_lrsched.callbacks import LRLogger, StepMetrics, log_step
from lightning_lrsched.errors import ConfigError


class Reference(TinyModule):
    """Keeps every batch's loss (as a float) with the optimizer step it contributes to, and
    records an extra value per step with ``log_step``; logs nothing through ``self.log``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.batch_losses: list[tuple[int, float]] = []
        self.extra_on_epoch = False

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.batch_losses.append((self.trainer.global_step, loss.item()))
        log_step(self, "weight_norm", self.net[0].weight.norm(), on_epoch=self.extra_on_epoch)
        return {"loss": loss, "abs_error": (self.net(x) - y).abs().mean()}


def series(logger: PointsLogger, key: str) -> list[tuple[int, float]]:
    return [(step, metrics[key]) for step, metrics in logger.points if key in metrics]


def per_step_means(pairs: list[tuple[int, float]]) -> list[tuple[int, float]]:
    steps: dict[int, list[float]] = {}
    for step, value in pairs:
        steps.setdefault(step, []).append(value)
    return [(step, math.fsum(v) / len(v)) for step, v in sorted(steps.items())]


class FlushWatcher(Callback):
    """How many points the logger had after each batch (to see when the flushes happen)."""

    def __init__(self, logger: PointsLogger, key: str):
        self.logger, self.key, self.seen = logger, key, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append((trainer.global_step, len(series(self.logger, self.key))))


def fit(tmp_path, metrics: StepMetrics, *, module=None, callbacks=(), **options):
    torch.manual_seed(0)
    module = module or Reference(scheduler={"name": "cosine"})
    logger = PointsLogger()
    fitter = trainer(
        tmp_path, callbacks=[metrics, *callbacks], logger=logger, log_every_n_steps=1, **options
    )
    fitter.fit(module)
    return module, logger, fitter


def test_every_step_logged_at_its_step_with_the_rate_it_used(tmp_path):
    metrics = StepMetrics(every_n_steps=5)
    module, logger, _ = fit(tmp_path, metrics, callbacks=[LRLogger(plan=False)])
    logged = series(logger, "train_loss")
    assert logged == module.batch_losses  # 16 steps, each once, in order, equal values
    assert [s for s, _ in logged] == list(range(16))
    # the rate of step k is logged at k too: the two curves share their x axis
    assert [s for s, _ in series(logger, "lr/SGD/pg0")] == list(range(16))
    norms = series(logger, "weight_norm")
    assert [s for s, _ in norms] == list(range(16)) and all(v > 0 for _, v in norms)
    assert "train_abs_error" not in {k for _, m in logger.points for k in m}  # not asked for


def test_values_reach_the_loggers_in_batches_of_every_n_steps(tmp_path):
    logger_probe: list[FlushWatcher] = []

    class Watch(FlushWatcher):
        def __init__(self):
            self.seen = []

        def setup(self, trainer, pl_module, stage):
            self.logger, self.key = trainer.logger, "train_loss"
            logger_probe.append(self)

    fit(tmp_path, StepMetrics(every_n_steps=5), callbacks=[Watch()], max_epochs=1)
    seen = logger_probe[0].seen
    # after each batch (global step 1..8): nothing until step 5, then 5 points at once;
    # the last 3 arrive at the epoch's end
    assert seen == [(1, 0), (2, 0), (3, 0), (4, 0), (5, 5), (6, 5), (7, 5), (8, 5)]


def test_values_stay_tensors_until_the_flush(tmp_path):
    """No host transfer per step: what is kept between flushes is the tensors themselves."""
    kept: list[object] = []

    class Peek(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            kept.extend(value for _, _, value in recorder._pending)

    recorder = StepMetrics(every_n_steps=100)
    fit(tmp_path, recorder, callbacks=[Peek()], max_epochs=1)
    assert kept and all(isinstance(v, torch.Tensor) and not v.requires_grad for v in kept)


def test_outputs_by_name_and_epoch_means(tmp_path):
    metrics = StepMetrics(["loss", "abs_error"], every_n_steps=3, on_epoch=True)
    module = Reference(scheduler={"name": "cosine"})
    module.extra_on_epoch = True
    module, logger, fitter = fit(tmp_path, metrics, module=module)
    assert series(logger, "train_loss_step") == module.batch_losses
    assert len(series(logger, "train_abs_error_step")) == 16
    epochs = series(logger, "train_loss_epoch")
    losses = [v for _, v in module.batch_losses]
    assert [s for s, _ in epochs] == [7, 15]
    assert [v for _, v in epochs] == pytest.approx([sum(losses[:8]) / 8, sum(losses[8:]) / 8])
    assert float(fitter.callback_metrics["train_loss"]) == pytest.approx(epochs[-1][1])
    assert [s for s, _ in series(logger, "weight_norm_epoch")] == [7, 15]
    assert "weight_norm" in fitter.callback_metrics


def test_gradient_accumulation_logs_the_mean_of_the_steps_batches(tmp_path):
    module, logger, fitter = fit(tmp_path, StepMetrics(every_n_steps=2), accumulate_grad_batches=2)
    assert fitter.global_step == 8
    assert series(logger, "train_loss") == pytest.approx(per_step_means(module.batch_losses))
    assert [s for s, _ in series(logger, "train_loss")] == list(range(8))


def test_resume_inside_an_epoch_logs_every_step_once(tmp_path):
    """A checkpoint flushes what was recorded: the run resumed from it, added to what was
    logged before it, has every step once and the same epoch mean as the uninterrupted run."""
    at_save: list[int] = []

    class CountAtSave(Callback):
        def on_save_checkpoint(self, trainer, pl_module, checkpoint):  # after state_dict()
            at_save.append(len(series(trainer.logger, "train_loss_step")))

    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=11, save_top_k=-1)
    _, full, _ = fit(
        tmp_path / "a", StepMetrics(every_n_steps=5, on_epoch=True),
        callbacks=[saver, CountAtSave()], enable_checkpointing=True,
    )  # fmt: skip
    assert at_save[0] == 11  # steps 0..10, though the last flush was at step 10
    torch.manual_seed(0)
    resumed = PointsLogger()
    fitter = trainer(
        tmp_path / "b", callbacks=[StepMetrics(every_n_steps=5, on_epoch=True)],
        logger=resumed, log_every_n_steps=1,
    )  # fmt: skip
    checkpoint = tmp_path / "ckpt" / "epoch=1-step=11.ckpt"
    module = Reference(scheduler={"name": "cosine"})
    fitter.fit(module, ckpt_path=str(checkpoint))
    before, after = series(full, "train_loss_step")[:11], series(resumed, "train_loss_step")
    assert [s for s, _ in before + after] == list(range(16))
    assert after == module.batch_losses  # (Lightning's own mid-epoch resume picks the batches)
    # the epoch mean covers the steps before the checkpoint too (kept in the checkpoint)
    epoch_1 = [v for _, v in before[8:] + after]
    assert series(resumed, "train_loss_epoch") == [(15, pytest.approx(sum(epoch_1) / 8))]
    assert float(fitter.callback_metrics["train_loss"]) == pytest.approx(sum(epoch_1) / 8)


def test_an_exception_still_hands_over_what_was_recorded(tmp_path):
    class Fails(Reference):
        def training_step(self, batch, batch_idx):
            if self.trainer.global_step == 6:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    module = Fails(scheduler={"name": "cosine"})
    with pytest.raises(RuntimeError, match="boom"):
        fit(tmp_path, StepMetrics(every_n_steps=50), module=module)
    logger = module.trainer.logger
    assert [s for s, _ in series(logger, "train_loss")] == list(range(6))


def test_log_step_without_the_callback_says_what_to_add(tmp_path):
    with pytest.raises(RuntimeError, match="no StepMetrics callback; add"):
        trainer(tmp_path, max_epochs=1).fit(Reference())


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"every_n_steps": 0}, "every_n_steps"),
        ({"every_n_steps": 2.5}, "every_n_steps"),
        ({"outputs": "loss"}, "outputs"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, key):
    with pytest.raises(ConfigError, match=key) as error:
        StepMetrics(**kwargs)
    assert "\n" not in str(error.value)


def test_classifier_logs_train_loss_through_step_metrics(tmp_path):
    """The app's module: every step's ``train_loss_step``, ``train_loss_epoch`` per epoch and
    ``callback_metrics["train_loss"]`` (a monitor's value), and no ``self.log`` per step."""
    from lightning_lrsched.tasks.models import MLP, Classifier

    x = torch.randn(48, 6, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
    module = Classifier(MLP(6, 2, hidden=(8,)), scheduler={"name": "cosine"})
    logger = PointsLogger()
    fitter = trainer(tmp_path, logger=logger, log_every_n_steps=50)
    loader = torch.utils.data.DataLoader(data, batch_size=16)
    fitter.fit(module, train_dataloaders=loader)
    assert [s for s, _ in series(logger, "train_loss_step")] == list(range(6))
    epochs = series(logger, "train_loss_epoch")
    assert [s for s, _ in epochs] == [2, 5]
    assert float(fitter.callback_metrics["train_loss"]) == pytest.approx(epochs[-1][1])
    assert sum(isinstance(c, StepMetrics) for c in fitter.callbacks) == 1
    # a StepMetrics of the user's own is kept, not replaced
    own = StepMetrics(every_n_steps=2)
    fitter = trainer(tmp_path, callbacks=[own], logger=PointsLogger())
    fitter.fit(Classifier(MLP(6, 2, hidden=(8,))), train_dataloaders=loader)
    assert [c for c in fitter.callbacks if isinstance(c, StepMetrics)] == [own]
