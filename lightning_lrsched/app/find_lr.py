"""``lrsched find-lr`` (also ``python -m lightning_lrsched.app.find_lr``): the learning-rate
range test on the training app's own config.

The same config and overrides as ``lrsched train`` (data, model, optimizer, trainer, logger,
``lr_finder.*`` for the test's settings); instead of training, it sweeps the optimizer's rate
(see :mod:`lightning_lrsched.range_test`), prints the suggestions and the override that uses
one, writes the plot to the job's output folder and tracks the sweep as an MLflow run.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from ..errors import ConfigError
from .train import CONFIG_PATH, _fail, launch


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _app(cfg: DictConfig) -> Any:
    from .run import check_config, find_lr_and_report  # Lightning: not for --help

    try:
        return find_lr_and_report(cfg, check_config(cfg))
    except ConfigError as err:
        _fail(str(err).replace("\n", " "), "find-lr")


def main() -> None:
    """Entry point (``lrsched find-lr ARGS`` replaces its process with this module)."""
    launch(_app, "find-lr")


if __name__ == "__main__":
    sys.exit(main())
