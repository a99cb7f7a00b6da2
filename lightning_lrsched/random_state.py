"""Leaving the random generators as they were: work done beside training (a range test, a
BatchNorm recalibration, generating a data set) must not change the random stream training sees.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def random_state_kept() -> Iterator[None]:
    """Put Python's, NumPy's and torch's generators (CUDA's too, once initialised) back as they
    were when the block started, however it ends.

    >>> with random_state_kept():
    ...     _ = torch.rand(3)
    >>> before = torch.get_rng_state()
    >>> with random_state_kept():
    ...     _ = torch.rand(3), random.random(), np.random.rand()
    >>> torch.equal(torch.get_rng_state(), before)
    True
    """
    python, numpy_state, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy_state)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
