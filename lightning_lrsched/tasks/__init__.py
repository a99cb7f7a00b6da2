"""Ready-made training tasks: small offline data modules, networks and a classifier module.

>>> from lightning_lrsched.tasks import Classifier, DigitsDataModule, MLP
>>> module = Classifier(MLP(64, 10), scheduler={"name": "cosine", "warmup": "10%"})
"""

from .data import DigitsDataModule, MNIST1DDataModule, default_cache_dir, load_mnist1d
from .models import CNN1D, MLP, Classifier

__all__ = [
    "CNN1D",
    "MLP",
    "Classifier",
    "DigitsDataModule",
    "MNIST1DDataModule",
    "default_cache_dir",
    "load_mnist1d",
]
