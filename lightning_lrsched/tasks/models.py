"""Small networks and a LightningModule that trains any of them as a classifier.

The networks are plain ``nn.Module``s with simple constructor arguments, so a Hydra config can
build them with ``_target_`` and hand them to :class:`Classifier`, whose optimizer and schedule
come from this package (:func:`lightning_lrsched.configure_optimizers`). Every network takes the
same two size arguments first, ``in_features`` and ``num_classes``, which a data module of
:mod:`lightning_lrsched.tasks.data` supplies (``num_features``, ``num_classes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ..adapter import check_plan_change
from ..errors import ConfigError
from ..lightning.helper import configure_optimizers
from ..lightning.lr_finder import resolve_auto_rates
from ..lightning.optimizers import build_optimizer
from ..lightning.step_metrics import StepMetrics
from ..lightning.trainer_info import SCALE_MODES

DEFAULT_OPTIMIZER: dict[str, Any] = {"name": "adamw", "lr": 1e-3}


def _check_width(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "must be a whole number >= 1")


def _check_dropout(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError("dropout", value, "must be a number >= 0 and < 1")


class MLP(nn.Module):
    """Flatten, then ``Linear → ReLU → Dropout`` per hidden width, then a linear classifier.

    >>> MLP(64, 10)(torch.zeros(2, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for i, size in enumerate(hidden):
            _check_width(f"hidden[{i}]", size)
        _check_dropout(dropout)
        self.num_classes = num_classes
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, int(size)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(size)
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CNN1D(nn.Module):
    """The MNIST-1D reference ConvNet (Greydanus, 2020), made configurable.

    One input channel, three ``Conv1d → ReLU`` layers of ``channels`` filters (kernel sizes
    ``kernel_sizes``, stride ``stride``, padding ``padding``), flattened into a linear
    classifier. The reference is ``channels=25``, ``kernel_sizes=(5, 3, 3)``, ``stride=2``,
    ``padding=1`` on signals of length 40 (about 5k parameters, ~94% test accuracy).
    ``dropout`` applies before the classifier. Inputs are ``(batch, length)`` or
    ``(batch, 1, length)``; ``in_features`` is that length, so every network here takes the
    same size arguments (``in_features``, ``num_classes``) from the data module.

    On the reference MNIST-1D split, ``channels=32`` with AdamW ``lr=0.03``, ``onecycle``
    (``max_lr`` = that rate), batch 100 and 30 epochs (1080 steps) reaches 93-94.6% test
    accuracy in about 10 s on one CPU thread; ``lr=0.01`` stops near 89%.

    >>> CNN1D()(torch.zeros(2, 40)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        in_features: int = 40,
        num_classes: int = 10,
        channels: int = 32,
        kernel_sizes: Sequence[int] = (5, 3, 3),
        stride: int = 2,
        padding: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_width("channels", channels)
        for i, kernel in enumerate(kernel_sizes):
            _check_width(f"kernel_sizes[{i}]", kernel)
        _check_width("stride", stride)
        _check_dropout(dropout)
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        length, width = in_features, 1
        for kernel in kernel_sizes:
            layers += [nn.Conv1d(width, channels, int(kernel), stride, padding), nn.ReLU()]
            length = (length + 2 * padding - int(kernel)) // stride + 1
            width = channels
        if length < 1:
            raise ConfigError(
                "in_features", in_features, "is too short a signal for these convolutions"
            )
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * length, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.head(self.features(x))


class Classifier(pl.LightningModule):
    """Train ``net`` with cross-entropy; log ``train_loss``, ``val_loss``/``val_acc`` and
    ``test_loss``/``test_acc``.

    ``optimizer`` is anything :func:`lightning_lrsched.lightning.build_optimizer` takes
    (default ``{"name": "adamw", "lr": 1e-3}``). With a ``scheduler`` config the optimizer and
    its schedule come from :func:`lightning_lrsched.configure_optimizers` (``scale_lr``,
    ``reference_batch_size``, ``on_plan_change`` and ``lr_finder`` are passed on); with
    ``scheduler=None`` only the optimizer is returned, for an ``LRSchedule`` callback (or no
    schedule at all).

    ``num_classes`` defaults to ``net.num_classes`` (the resolved value is saved). ``train_loss``
    is logged per step and per epoch by :class:`~lightning_lrsched.lightning.StepMetrics`,
    which the module adds to the Trainer (loggers see ``train_loss_step`` at every optimizer
    step and ``train_loss_epoch``, the mean of the epoch's steps;
    ``trainer.callback_metrics["train_loss"]`` is that mean). The network is not saved as a
    hyperparameter: load a checkpoint with ``Classifier.load_from_checkpoint(path, net=...)``.
    """

    #: The metrics this module logs, by the Trainer call that logs them: a plateau ``monitor``
    #: must be one of the ``fit`` ones, the app's ``optimized_metric`` one of either.
    LOGGED_METRICS: ClassVar[dict[str, tuple[str, ...]]] = {
        "fit": ("train_loss", "val_loss", "val_acc"),
        "test": ("test_loss", "test_acc"),
    }

    def __init__(
        self,
        net: nn.Module,
        optimizer: Any = None,
        scheduler: Any = None,
        scale_lr: str = "none",
        reference_batch_size: int | None = None,
        on_plan_change: str = "error",
        num_classes: int | None = None,
        lr_finder: Any = None,
    ) -> None:
        super().__init__()
        if scale_lr not in SCALE_MODES:
            raise ConfigError("scale_lr", scale_lr, f"must be one of {', '.join(SCALE_MODES)}")
        if scheduler is None and scale_lr != "none":
            raise ConfigError(
                "scale_lr",
                scale_lr,
                "needs a scheduler here; with scheduler=None give it to the LRSchedule callback",
            )
        check_plan_change(on_plan_change)
        num_classes = num_classes if num_classes is not None else getattr(net, "num_classes", None)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(
                "num_classes", num_classes, "must be >= 2 (give it, or a net with num_classes)"
            )
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.optimizer_config = dict(DEFAULT_OPTIMIZER) if optimizer is None else optimizer
        self.scale_lr = scale_lr
        self.reference_batch_size = reference_batch_size
        self.on_plan_change = on_plan_change
        self.scheduler_config = scheduler
        self.lr_finder = lr_finder
        self.criterion = nn.CrossEntropyLoss()
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        x, y = batch
        return self.criterion(self(x), y)  # logged by StepMetrics (configure_callbacks)

    def configure_callbacks(self) -> list[pl.Callback]:
        """``train_loss`` of every step, and its epoch mean, through :class:`StepMetrics`
        (no host sync per step, unlike ``self.log``), unless the Trainer has one already."""
        if any(isinstance(callback, StepMetrics) for callback in self.trainer.callbacks):
            return []
        return [StepMetrics({"loss": "train_loss"}, on_epoch=True)]

    def _evaluate(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, accuracy: MulticlassAccuracy
    ) -> None:
        x, y = batch
        logits = self(x)
        accuracy.update(logits, y)
        self.log(
            f"{stage}_loss",
            self.criterion(logits, y),
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=len(y),
        )
        self.log(f"{stage}_acc", accuracy, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc)

    def configure_optimizers(self) -> Any:
        if self.scheduler_config is None:  # "auto" still means the range test's rate
            optimizer, _, _ = resolve_auto_rates(
                self.trainer, self, self.optimizer_config, None, self.lr_finder, build_optimizer
            )
            return build_optimizer(self, optimizer)
        return configure_optimizers(
            self,
            optimizer=self.optimizer_config,
            scheduler=self.scheduler_config,
            scale_lr=self.scale_lr,
            reference_batch_size=self.reference_batch_size,
            on_plan_change=self.on_plan_change,
            lr_finder=self.lr_finder,
        )
