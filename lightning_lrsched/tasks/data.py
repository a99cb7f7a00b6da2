"""Small, offline classification data modules: scikit-learn's digits and MNIST-1D.

Both hold the whole data set in memory as tensors (a few hundred kilobytes), split it
deterministically from ``seed`` and serve it through plain ``DataLoader``s, so Lightning's
distributed samplers and ``seed_everything`` work on them as on any other data module.

Their data packages (scikit-learn, mnist1d) are the optional ``tasks`` extra, not requirements of
the scheduling library: without them, loading the data raises :class:`MissingExtraError`,
which names the package and the extra to install.
"""

from __future__ import annotations

import importlib
import os
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from ..errors import ConfigError
from ..random_state import random_state_kept

#: What ``pip install`` needs to add the training tasks' data packages.
TASKS_EXTRA = "lightning-lrsched[tasks]"


class MissingExtraError(ImportError):
    """A data package of the ``tasks`` extra is not installed; the message says what to install.

    ``package`` is the distribution's name (``scikit-learn``), ``name`` the module that failed.
    """

    def __init__(self, package: str, module: str) -> None:
        self.package = package
        super().__init__(
            f"{package} is not installed; the training tasks need it: pip install '{TASKS_EXTRA}'",
            name=module,
        )


def _import_extra(module: str, package: str) -> ModuleType:
    """``module`` from the ``tasks`` extra, or :class:`MissingExtraError` naming ``package``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        top = module.split(".")[0]
        if err.name is not None and err.name.split(".")[0] == top:  # not a missing dependency of it
            raise MissingExtraError(package, top) from None
        raise


#: The MNIST-1D reference generator seed (``mnist1d.data.get_dataset_args()``).
MNIST1D_REFERENCE_SEED = 42


# what validation evaluates: the validation split, or (a benchmark's protocol: accuracy on the
# test set as training goes, no validation split taken from the training data) the test split
VALIDATE_ON = ("val", "test")


def _check_int(key: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, value, f"must be a whole number >= {minimum}")


def _check_fraction(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(key, value, "must be a fraction strictly between 0 and 1")


def _split_off(
    y: np.ndarray, indices: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (kept, taken) with ``fraction`` of them taken, stratified by ``y``."""
    train_test_split = _import_extra("sklearn.model_selection", "scikit-learn").train_test_split
    kept, taken = train_test_split(
        indices, test_size=fraction, random_state=seed, stratify=y[indices]
    )
    return np.sort(kept), np.sort(taken)


class _BatchFetchedDataset(TensorDataset):
    """A ``TensorDataset`` that hands a loader a whole batch with one indexing per tensor.

    torch's loader calls ``__getitems__`` with a batch's indices when a dataset has it; read
    one sample at a time and stacked by the default collate, a batch of 100 small signals cost
    1.7 ms (about half of a MNIST-1D CNN step on one thread). The batch is already stacked, so
    the loader's ``collate_fn`` is :func:`_fetched_batch`; the values are the same as the
    default path's, bit for bit, in the same order (tested).
    """

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return [tensor[index] for tensor in self.tensors]


def _fetched_batch(batch: list[torch.Tensor]) -> list[torch.Tensor]:
    """The loader's ``collate_fn`` for :class:`_BatchFetchedDataset`: the batch as fetched."""
    return batch


def _dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return _BatchFetchedDataset(
        torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    )


class _InMemoryDataModule(pl.LightningDataModule):
    """Shared loaders over three in-memory ``TensorDataset`` splits set by ``setup``."""

    num_classes = 10

    def __init__(self, batch_size: int, num_workers: int, validate_on: str = "val") -> None:
        super().__init__()
        _check_int("batch_size", batch_size, 1)
        _check_int("num_workers", num_workers, 0)
        if validate_on not in VALIDATE_ON:
            raise ConfigError(
                "validate_on", validate_on, f"must be one of {', '.join(VALIDATE_ON)}"
            )
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.validate_on = validate_on
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def _loader(self, dataset: TensorDataset | None, shuffle: bool) -> DataLoader:
        assert dataset is not None, "setup() builds the splits"
        loader_class = DataLoader
        if shuffle:  # training: torchdata's loader, whose position Lightning saves in
            # checkpoints, so a run resumed inside an epoch sees the batches it had not seen
            stateful = _import_extra("torchdata.stateful_dataloader", "torchdata")
            loader_class = stateful.StatefulDataLoader
        return loader_class(
            dataset,
            batch_size=self.batch_size,
            sampler=self._shuffled(dataset) if shuffle else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=_fetched_batch if isinstance(dataset, _BatchFetchedDataset) else None,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        return self._loader(self.train_set, shuffle=True)

    def _shuffled(self, dataset: TensorDataset) -> DistributedSampler:
        """Each epoch's order from the seed and the epoch alone (Lightning sets the epoch), this
        rank's share of it: the same batches again after a resume. Lightning would otherwise
        wrap the loader's own random sampler, whose order depends on the random state at the
        time, and a resumed run would train on other batches."""
        trainer = getattr(self, "trainer", None)  # set by Lightning while it fits
        replicas = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # as Lightning's own sampler
        return DistributedSampler(dataset, replicas, rank, shuffle=True, seed=seed)

    def val_dataloader(self) -> DataLoader:
        if self.validate_on == "test":  # a benchmark's protocol: the test set, evaluated often
            return self.test_dataloader()
        if self.val_set is None:
            self.setup("fit")
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            self.setup("test")
        return self._loader(self.test_set, shuffle=False)


class DigitsDataModule(_InMemoryDataModule):
    """scikit-learn's ``load_digits``: 1797 8×8 images of the digits 0-9, flattened to 64 features.

    The split is stratified and depends only on ``seed``: ``test_fraction`` and ``val_fraction``
    of the whole set go to test and validation (``validate_on="test"``: no validation split;
    validation evaluates the test split). Every feature is standardized with the training
    split's mean and standard deviation (constant pixels are only centred); the statistics are
    kept as ``mean`` and ``std``.
    """

    num_features = 64

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
        validate_on: str = "val",
    ) -> None:
        super().__init__(batch_size, num_workers, validate_on)
        _check_fraction("val_fraction", val_fraction)
        _check_fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1:
            raise ConfigError(
                "val_fraction + test_fraction",
                val_fraction + test_fraction,
                "must leave some data for training (sum < 1)",
            )
        _check_int("seed", seed, 0)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        """Load, split and standardize once; later calls are free."""
        if self.train_set is not None:
            return
        load_digits = _import_extra("sklearn.datasets", "scikit-learn").load_digits
        x, y = load_digits(return_X_y=True)
        rest, test = _split_off(y, np.arange(len(y)), self.test_fraction, self.seed)
        if self.validate_on == "test":
            train, val = rest, rest[:0]
        else:
            fraction = self.val_fraction / (1 - self.test_fraction)
            train, val = _split_off(y, rest, fraction, self.seed)
        self.mean = x[train].mean(axis=0)
        std = x[train].std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        x = (x - self.mean) / self.std
        self.train_set = _dataset(x[train], y[train])
        self.val_set = _dataset(x[val], y[val])
        self.test_set = _dataset(x[test], y[test])


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lightning_lrsched`` (``~/.cache/lightning_lrsched`` by default)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "lightning_lrsched"


def _mnist1d_version() -> str:
    try:
        return version("mnist1d")
    except PackageNotFoundError:  # pragma: no cover - an unpackaged checkout
        return "unknown"


def mnist1d_cache_path(
    num_samples: int = 5000,
    seed: int = MNIST1D_REFERENCE_SEED,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Where :func:`load_mnist1d` keeps the arrays generated with these settings."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / f"mnist1d-{_mnist1d_version()}-n{num_samples}-seed{seed}.npz"


def _generate_mnist1d(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """Run the reference generator offline (``make_dataset``; never ``get_dataset``, which
    downloads), leaving the global ``random`` and ``numpy`` generators as they were."""
    reference = _import_extra("mnist1d.data", "mnist1d")
    get_dataset_args, make_dataset = reference.get_dataset_args, reference.make_dataset
    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    with random_state_kept():
        data = make_dataset(args)
    return {
        "x": data["x"].astype(np.float32),
        "y": data["y"].astype(np.int64),
        "x_test": data["x_test"].astype(np.float32),
        "y_test": data["y_test"].astype(np.int64),
    }


def load_mnist1d(
    num_samples: int = 5000,
    seed: int = MNIST1D_REFERENCE_SEED,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, np.ndarray]:
    """MNIST-1D as arrays ``x``, ``y`` (train), ``x_test``, ``y_test``: generated once, then cached.

    With the defaults this is the reference benchmark (Greydanus, 2020): 4000 training and
    1000 test signals of length 40, already centred and scaled to unit variance by the
    generator. The first call generates them (about a second) and writes an ``.npz`` to
    :func:`mnist1d_cache_path`, atomically, so concurrent processes never read half a file;
    later calls only load it.
    """
    _check_int("num_samples", num_samples, 10)
    path = mnist1d_cache_path(num_samples, seed, cache_dir)
    if path.exists():
        with np.load(path) as stored:
            return {key: stored[key] for key in stored.files}
    arrays = _generate_mnist1d(num_samples, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return arrays


class MNIST1DDataModule(_InMemoryDataModule):
    """The MNIST-1D benchmark: 1-D signals of length 40 from 10 digit templates.

    The data are generated offline with the reference generator and cached (see
    :func:`load_mnist1d`); ``num_samples=5000`` and ``dataset_seed=42`` reproduce the reference
    set, whose 1000 test signals are the test split here. ``val_fraction`` of the reference's
    4000 training signals (stratified, chosen by ``seed``) become the validation split; with
    ``validate_on="test"`` (the reference protocol) all 4000 are trained on and validation
    evaluates the test split.
    ``cache_dir`` defaults to :func:`default_cache_dir`.
    """

    num_features = 40

    def __init__(
        self,
        batch_size: int = 100,
        seed: int = 0,
        num_samples: int = 5000,
        val_fraction: float = 0.1,
        cache_dir: str | None = None,
        num_workers: int = 0,
        dataset_seed: int = MNIST1D_REFERENCE_SEED,
        validate_on: str = "val",
    ) -> None:
        super().__init__(batch_size, num_workers, validate_on)
        _check_int("seed", seed, 0)
        _check_int("num_samples", num_samples, 10)
        _check_fraction("val_fraction", val_fraction)
        _check_int("dataset_seed", dataset_seed, 0)
        self.seed = seed
        self.num_samples = num_samples
        self.val_fraction = val_fraction
        self.cache_dir = cache_dir
        self.dataset_seed = dataset_seed
        self.save_hyperparameters()

    def prepare_data(self) -> None:
        """Generate and cache the data (Lightning calls this on one process per node)."""
        load_mnist1d(self.num_samples, self.dataset_seed, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        """Load the cached arrays and split off validation once; later calls are free."""
        if self.train_set is not None:
            return
        data = load_mnist1d(self.num_samples, self.dataset_seed, self.cache_dir)
        x, y = data["x"], data["y"]
        if self.validate_on == "test":  # the reference protocol: all 4000 to train on
            train, val = np.arange(len(y)), np.arange(0)
        else:
            train, val = _split_off(y, np.arange(len(y)), self.val_fraction, self.seed)
        self.train_set = _dataset(x[train], y[train])
        self.val_set = _dataset(x[val], y[val])
        self.test_set = _dataset(data["x_test"], data["y_test"])
