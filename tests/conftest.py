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
    """Every xdist worker starts with its share of the slow tests.

    ``--dist worksteal`` (scripts/test.sh) gives each worker one contiguous slice of this order
    and lets an idle worker take the rest of another's queue. Slow tests simply first would put
    them all on the first worker; dealing them out over the slices starts every worker on long
    runs (mostly subprocesses that wait), and the many quick tests fill in around them.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    quick = [item for item in items if item.get_closest_marker("slow") is None]
    size = -(-len(items) // workers)  # the slice each worker is given
    ordered: list[pytest.Item] = []
    for worker in range(workers):
        own = slow[worker::workers]
        take = max(0, min(len(quick), size * (worker + 1) - len(ordered) - len(own)))
        ordered += own + quick[:take]
        quick = quick[take:]
    items[:] = ordered + quick
