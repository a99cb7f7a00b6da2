import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

# The parity references (Hugging Face transformers) live beside the environment, in
# .venv/reference (scripts/setup-env.sh says why): on the tests' path only, never on that of the
# processes they start.
REFERENCE_DIR = Path(sys.prefix) / "reference"
if REFERENCE_DIR.is_dir() and str(REFERENCE_DIR) not in sys.path:
    sys.path.append(str(REFERENCE_DIR))

# The suite runs many tiny models; one thread each is fastest on the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MNIST-1D cache for the session (generated on first use), never ~/.cache."""
    return tmp_path_factory.mktemp("lrsched-cache")


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, made by MLflow itself once per test process.

    A fresh store costs MLflow's schema migrations (about 2.5 s of CPU here) in every process
    that opens it first; tests whose subject is not the creation of a store start from a copy of
    this one (what a user's second run finds). Store creation itself keeps its own tests.
    """
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("migrated-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def existing_store(migrated_store: Path) -> Callable[[Path], Path]:
    """``existing_store(directory, name="mlflow.db")`` puts a copy of :func:`migrated_store`
    there and returns its path."""

    def put(directory: Path, name: str = "mlflow.db") -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / name
        shutil.copyfile(migrated_store, target)
        return target

    return put
