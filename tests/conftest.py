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
