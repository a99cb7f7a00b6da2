import os
from pathlib import Path

import pytest
import torch

# The suite runs many tiny models; one thread each is fastest on the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MNIST-1D cache for the session (generated on first use), never ~/.cache."""
    return tmp_path_factory.mktemp("lrsched-cache")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each of two xdist workers starts with half of the slow tests.

    ``--dist worksteal`` (scripts/test.sh) gives each worker one contiguous half of this order
    and lets an idle worker take the rest of the other's queue. Slow tests first would put them
    all on the first worker; alternating them over the two halves starts both workers on long
    runs, and the many quick tests fill in around them.
    """
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    quick = [item for item in items if item.get_closest_marker("slow") is None]
    half = max(0, len(items) // 2 - len(slow[0::2]))  # the halves stay the same size
    items[:] = slow[0::2] + quick[:half] + slow[1::2] + quick[half:]
