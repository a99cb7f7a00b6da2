"""Whole-process wall times of the ``lrsched`` commands, beside what they cannot avoid.

Each command runs ``--repeat`` times (median printed) in a fresh temporary directory, next to
its baseline run in the same way: ``python -c pass`` for the commands that need no torch
(``list``, ``train --help``), ``import torch`` for ``plot``, and ``import lightning.pytorch,
mlflow`` for ``train`` (what any Lightning run tracked in MLflow imports). The ratio says how
much the command adds to that floor.

    python benchmarks/startup.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LRSCHED = [sys.executable, "-m", "lightning_lrsched"]
PYTHON = [sys.executable, "-c"]
CASES = [
    ("lrsched list", [*LRSCHED, "list"], [*PYTHON, "pass"]),
    ("lrsched train --help", [*LRSCHED, "train", "--help"], [*PYTHON, "pass"]),
    (
        "lrsched plot cosine",
        [*LRSCHED, "plot", "cosine", "warmup=10%", "--total-steps", "100", "--out", "c.png"],
        [*PYTHON, "import torch"],
    ),
    (
        "lrsched train trainer.max_epochs=1",
        [*LRSCHED, "train", "trainer.max_epochs=1"],
        [*PYTHON, "import lightning.pytorch, mlflow"],
    ),
]


def wall(command: list[str]) -> float:
    """Seconds one run of ``command`` takes, in a fresh directory (a fresh MLflow store)."""
    with tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        start = time.perf_counter()
        subprocess.run(command, cwd=directory, env=env, capture_output=True, check=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{Path(sys.executable).name}, median of {args.repeat} runs each")
    for name, command, baseline in CASES:
        ours, floor = [], []
        for _ in range(args.repeat):  # interleaved: both see the same machine load
            floor.append(wall(baseline))
            ours.append(wall(command))
        ours_s, floor_s = statistics.median(ours), statistics.median(floor)
        print(
            f"{name:38s} {ours_s:6.2f} s   baseline {' '.join(baseline[2:]):34s} {floor_s:6.2f} s"
            f"   ours/baseline {ours_s / floor_s:5.1f}"
        )


if __name__ == "__main__":
    main()
