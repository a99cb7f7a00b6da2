"""Ready-made training tasks: small offline data modules, networks and a classifier module.

The data modules need the ``tasks`` extra (``pip install 'lightning-lrsched[tasks]'``:
scikit-learn and mnist1d); without it they raise :class:`MissingExtraError` when loading data.

>>> from lightning_lrsched.tasks import Classifier, DigitsDataModule, MLP
>>> module = Classifier(MLP(64, 10), scheduler={"name": "cosine", "warmup": "10%"})
"""

from .data import (
    TASKS_EXTRA,
    DigitsDataModule,
    MissingExtraError,
    MNIST1DDataModule,
    default_cache_dir,
    load_mnist1d,
)
from .models import CNN1D, MLP, Classifier

__all__ = [
    "CNN1D",
    "MLP",
    "TASKS_EXTRA",
    "Classifier",
    "DigitsDataModule",
    "MNIST1DDataModule",
    "MissingExtraError",
    "default_cache_dir",
    "load_mnist1d",
]
