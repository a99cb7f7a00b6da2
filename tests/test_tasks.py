"""The training tasks: data modules, networks and the Classifier, down to short real runs."""

from __future__ import annotations

import random

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning_support import trainer
from sklearn.datasets import load_digits

from lightning_lrsched import ConfigError
from lightning_lrsched.lightning import LRSchedule, attached_schedules
from lightning_lrsched.tasks import (
    CNN1D,
    MLP,
    Classifier,
    DigitsDataModule,
    MNIST1DDataModule,
    data,
    load_mnist1d,
)


def arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    x, y = dataset.tensors
    return x.numpy(), y.numpy()


def sorted_rows(x: np.ndarray) -> np.ndarray:
    return x[np.lexsort(x.T[::-1])]


@pytest.fixture(scope="module")
def mnist1d_dir(tmp_path_factory) -> str:
    """A cache directory holding the reference MNIST-1D set, generated once for this module."""
    path = tmp_path_factory.mktemp("mnist1d")
    load_mnist1d(cache_dir=path)
    return str(path)


# ----------------------------------------------------------------------------- digits


def test_digits_splits_are_a_stratified_partition():
    dm = DigitsDataModule()
    dm.setup()
    splits = [arrays(s) for s in (dm.train_set, dm.val_set, dm.test_set)]
    assert [len(y) for _, y in splits] == [1077, 360, 360]
    for x, y in splits:
        assert x.shape[1:] == (64,) and x.dtype == np.float32
        assert set(y) == set(range(10))
    # Undoing the standardization gives back exactly the 1797 images, each once.
    raw_x, _ = load_digits(return_X_y=True)
    restored = np.concatenate([x for x, _ in splits]) * dm.std + dm.mean
    np.testing.assert_allclose(sorted_rows(restored), sorted_rows(raw_x), atol=1e-4)


def test_digits_standardized_with_training_statistics():
    dm = DigitsDataModule(seed=3)
    dm.setup()
    train_x, _ = arrays(dm.train_set)
    varying = train_x.std(axis=0) > 0
    np.testing.assert_allclose(train_x.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(train_x.std(axis=0)[varying], 1, atol=1e-4)
    # Validation uses the training statistics: restored pixels are the integers 0..16.
    val_pixels = arrays(dm.val_set)[0] * dm.std + dm.mean
    np.testing.assert_allclose(val_pixels, np.round(val_pixels), atol=1e-4)
    assert val_pixels.min() > -1e-4 and val_pixels.max() < 16 + 1e-4


def test_digits_split_is_deterministic_in_seed():
    def train_x(seed):
        dm = DigitsDataModule(seed=seed)
        dm.setup()
        return arrays(dm.train_set)[0]

    assert np.array_equal(train_x(0), train_x(0))
    assert not np.array_equal(train_x(0), train_x(1))


def test_digits_loaders_batch_and_shuffle_training_only():
    dm = DigitsDataModule(batch_size=32)
    x, y = next(iter(dm.train_dataloader()))  # setup() runs on demand
    assert x.shape == (32, 64) and y.dtype == torch.long
    assert len(dm.val_dataloader()) == 12 and len(dm.test_dataloader()) == 12
    first = [next(iter(dm.val_dataloader()))[1] for _ in range(2)]
    assert torch.equal(*first)


def test_validate_on_test_evaluates_the_test_split_and_trains_on_the_rest(mnist1d_dir):
    digits = DigitsDataModule(validate_on="test")
    digits.setup("fit")
    assert len(digits.val_set) == 0 and len(digits.train_set) + len(digits.test_set) == 1797
    (x, _), (x_test, _) = next(iter(digits.val_dataloader())), next(iter(digits.test_dataloader()))
    assert torch.equal(x, x_test)
    signals = MNIST1DDataModule(validate_on="test", cache_dir=mnist1d_dir)
    signals.setup("fit")
    assert len(signals.train_set) == 4000  # the reference protocol
    assert len(signals.val_dataloader().dataset) == 1000
    with pytest.raises(ConfigError, match="validate_on"):
        DigitsDataModule(validate_on="train")


def test_loaders_fetch_whole_batches_equal_to_sample_by_sample():
    """The splits hand the loader a batch per indexing (``__getitems__``): the same tensors, in
    the same order, as torch's default sample-by-sample fetch and collate."""
    from torch.utils.data import DataLoader, TensorDataset

    dm = DigitsDataModule(batch_size=50)
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        plain = DataLoader(
            TensorDataset(*loader.dataset.tensors), batch_size=50, sampler=loader.sampler
        )
        fetched, reference = list(loader), list(plain)
        assert len(fetched) == len(reference) > 1
        for (x, y), (x_ref, y_ref) in zip(fetched, reference, strict=True):
            assert torch.equal(x, x_ref) and torch.equal(y, y_ref) and x.dtype == x_ref.dtype


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction + test_fraction"),
        ({"num_workers": -1}, "num_workers"),
    ],
)
def test_digits_rejects_bad_arguments(kwargs, key):
    with pytest.raises(ConfigError) as err:
        DigitsDataModule(**kwargs)
    assert err.value.key == key


# ----------------------------------------------------------------------------- MNIST-1D


def test_mnist1d_reference_splits(mnist1d_dir):
    dm = MNIST1DDataModule(cache_dir=mnist1d_dir)
    dm.prepare_data()
    dm.setup()
    reference = load_mnist1d(cache_dir=mnist1d_dir)
    (train_x, _), (val_x, val_y), (test_x, test_y) = (
        arrays(s) for s in (dm.train_set, dm.val_set, dm.test_set)
    )
    assert train_x.shape == (3600, 40) and val_x.shape == (400, 40) and test_x.shape == (1000, 40)
    stratified = np.bincount(reference["y"]) * 0.1
    assert np.all(np.abs(np.bincount(val_y) - stratified) <= 1)
    # The test split is the reference's; train and validation partition its 4000 training signals.
    assert np.array_equal(test_x, reference["x_test"])
    assert np.array_equal(test_y, reference["y_test"])
    np.testing.assert_array_equal(
        sorted_rows(np.concatenate([train_x, val_x])), sorted_rows(reference["x"])
    )
    assert abs(float(reference["x"].mean())) < 0.05 and 0.9 < float(reference["x"].std()) < 1.1


def test_mnist1d_split_depends_on_seed_only(mnist1d_dir):
    def val_x(seed):
        dm = MNIST1DDataModule(seed=seed, cache_dir=mnist1d_dir)
        dm.setup()
        return arrays(dm.val_set)[0]

    assert np.array_equal(val_x(0), val_x(0))
    assert not np.array_equal(val_x(0), val_x(1))


def test_mnist1d_cache_is_reused_not_regenerated(tmp_path, monkeypatch):
    first = load_mnist1d(num_samples=200, cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    assert path.suffix == ".npz" and "n200-seed42" in path.name
    stamp = path.stat().st_mtime_ns

    def no_generation(*args):
        raise AssertionError("regenerated although the cache exists")

    monkeypatch.setattr(data, "_generate_mnist1d", no_generation)
    second = load_mnist1d(num_samples=200, cache_dir=tmp_path)
    dm = MNIST1DDataModule(num_samples=200, cache_dir=str(tmp_path))
    dm.prepare_data()
    dm.setup()
    assert path.stat().st_mtime_ns == stamp and list(tmp_path.iterdir()) == [path]
    assert first.keys() == second.keys() == {"x", "y", "x_test", "y_test"}
    for key in first:
        assert np.array_equal(first[key], second[key])
    assert len(dm.train_set) + len(dm.val_set) == 160 and len(dm.test_set) == 40


def test_mnist1d_generation_is_deterministic_and_leaves_global_rngs_alone(tmp_path):
    random.seed(7)
    np.random.seed(7)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    a = load_mnist1d(num_samples=200, cache_dir=tmp_path / "a")
    b = load_mnist1d(num_samples=200, cache_dir=tmp_path / "b")
    assert random.getstate() == python_state
    now = np.random.get_state()
    assert all(np.array_equal(s, t) for s, t in zip(now, numpy_state, strict=True))
    assert all(np.array_equal(a[key], b[key]) for key in a)
    other = load_mnist1d(num_samples=200, seed=1, cache_dir=tmp_path / "a")
    assert not np.array_equal(a["x"], other["x"])


def test_mnist1d_default_cache_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data.mnist1d_cache_path().parent == tmp_path / "lightning_lrsched"


# ----------------------------------------------------------------------------- networks


def test_networks_shapes_and_reference_size():
    assert MLP(64, 10)(torch.zeros(3, 8, 8)).shape == (3, 10)
    assert MLP(40, 4, hidden=[16], dropout=0.5)(torch.zeros(3, 40)).shape == (3, 4)
    cnn = CNN1D()
    assert cnn(torch.zeros(3, 40)).shape == cnn(torch.zeros(3, 1, 40)).shape == (3, 10)
    # channels=25 is the paper's ConvBase: 5,210 parameters.
    assert sum(p.numel() for p in CNN1D(channels=25).parameters()) == 5210
    with pytest.raises(ConfigError, match="in_features"):
        CNN1D(in_features=2)


# ----------------------------------------------------------------------------- Classifier


def test_classifier_arguments_and_hyperparameters():
    module = Classifier(MLP(64, 10), scheduler={"name": "cosine"})
    assert "net" not in module.hparams
    assert module.hparams["scheduler"] == {"name": "cosine"}
    assert module.optimizer_config == {"name": "adamw", "lr": 1e-3}
    with pytest.raises(ConfigError, match="scale_lr"):
        Classifier(MLP(64, 10), scheduler={"name": "cosine"}, scale_lr="cubic")
    with pytest.raises(ConfigError, match="LRSchedule"):
        Classifier(MLP(64, 10), scale_lr="linear", reference_batch_size=64)
    with pytest.raises(ConfigError, match="on_plan_change"):
        Classifier(MLP(64, 10), on_plan_change="ignore")
    with pytest.raises(ConfigError, match="num_classes"):
        Classifier(torch.nn.Linear(4, 3))
    assert Classifier(torch.nn.Linear(4, 3), num_classes=3).val_acc.num_classes == 3


def test_mlp_on_digits_with_warmup_cosine_learns(tmp_path):
    pl.seed_everything(0)
    module = Classifier(
        MLP(64, 10),
        optimizer={"name": "adamw", "lr": 1e-2},
        scheduler={"name": "cosine", "warmup": "10%"},
    )
    run = trainer(tmp_path, max_epochs=5)
    run.fit(module, DigitsDataModule())
    metrics = run.callback_metrics
    assert {"train_loss", "val_loss", "val_acc"} <= metrics.keys()
    assert metrics["val_acc"] > 0.9
    assert run.lr_scheduler_configs[0].interval == "step"
    # cosine decays to zero at the end of the 5 * 17 steps
    assert run.optimizers[0].param_groups[0]["lr"] < 1e-4
    (result,) = run.test(module, DigitsDataModule(), verbose=False)
    assert result["test_acc"] > 0.9 and result["test_loss"] < 0.5


def test_optimizer_only_classifier_takes_its_schedule_from_the_callback(tmp_path):
    module = Classifier(MLP(64, 10), optimizer={"name": "sgd", "lr": 0.1})
    schedule = LRSchedule({"name": "linear"})
    run = trainer(tmp_path, callbacks=[schedule], max_epochs=1, limit_val_batches=0)
    run.fit(module, DigitsDataModule())
    (scheduler,) = attached_schedules(run)
    assert scheduler is schedule.scheduler
    assert run.lr_scheduler_configs == []  # the callback steps it, Lightning's list is untouched
    assert run.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_cnn1d_on_mnist1d_subset_learns(tmp_path, mnist1d_dir):
    pl.seed_everything(0)
    module = Classifier(
        CNN1D(), optimizer={"name": "adamw", "lr": 3e-2}, scheduler={"name": "onecycle"}
    )
    run = trainer(tmp_path, max_epochs=6, limit_train_batches=20)  # a third of the training set
    run.fit(module, MNIST1DDataModule(cache_dir=mnist1d_dir))
    assert run.global_step == 120
    assert run.callback_metrics["val_acc"] > 0.45  # chance is 0.1; seeds 0-5 give 0.60-0.67


# ----------------------------------------------------------------------------- the tasks extra

# A fresh interpreter in which each package of the `tasks` extra in turn cannot be imported, as
# when it is not installed (None in sys.modules is Python's documented way to make an import fail).
_WITHOUT = """
import json, sys
from lightning_lrsched.tasks import DigitsDataModule, MNIST1DDataModule, MissingExtraError
found = []
for module, load in (
    ("mnist1d", lambda: MNIST1DDataModule(cache_dir=sys.argv[1]).setup("fit")),
    ("sklearn", lambda: DigitsDataModule().setup("fit")),
):
    sys.modules[module] = None
    try:
        load()
    except MissingExtraError as err:
        found.append({"package": err.package, "name": err.name, "message": str(err)})
    del sys.modules[module]
print(json.dumps(found))
"""


def test_missing_data_packages_name_the_extra(tmp_path):
    import json
    import subprocess
    import sys

    from lightning_support import subprocess_env

    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT, str(tmp_path / "empty-cache")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    advice = "is not installed; the training tasks need it: pip install 'lightning-lrsched[tasks]'"
    assert json.loads(done.stdout) == [
        {"package": "mnist1d", "name": "mnist1d", "message": f"mnist1d {advice}"},
        {"package": "scikit-learn", "name": "sklearn", "message": f"scikit-learn {advice}"},
    ]
