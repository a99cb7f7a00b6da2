"""``lrsched train`` (also ``python -m lightning_lrsched.app.train``): the Hydra training app.

Composes ``conf/lrsched/train.yaml`` with the command-line overrides, checks every value before
anything runs (a bad value is one line naming the key and what is allowed, exit code 2, and no
MLflow run is created), trains the chosen model on the chosen data with the chosen schedule,
and prints where the run is tracked and how to open it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from ..errors import ConfigError
from .run import check_config, train_and_report
from .schemas import register_configs

CONFIG_PATH = str(Path(__file__).parent.parent / "conf" / "lrsched")


def _fail(message: str) -> None:
    print(f"lrsched train: error: {message}", file=sys.stderr)
    sys.exit(2)


_LAUNCH_ARGV: list[str] = []  # the command as typed, for Lightning's DDP launcher


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _app(cfg: DictConfig) -> Any:
    try:
        checked = check_config(cfg)
        return train_and_report(cfg, checked, argv=_LAUNCH_ARGV or None)
    except ConfigError as err:
        _fail(str(err).replace("\n", " "))


def main(argv: list[str] | None = None, *, launch_argv: list[str] | None = None) -> None:
    """Entry point: ``argv`` are Hydra overrides and flags (``-m``, ``--cfg job``, ...);
    ``launch_argv`` is the full command line to re-run for extra DDP processes."""
    register_configs()
    argv = list(sys.argv[1:] if argv is None else argv)
    _LAUNCH_ARGV[:] = list(sys.argv) if launch_argv is None else launch_argv
    from .precheck import precheck

    problem = precheck(CONFIG_PATH, argv)
    if problem is not None:
        _fail(problem)
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    sys.argv = [sys.argv[0], *argv]
    _app()


if __name__ == "__main__":
    main()
