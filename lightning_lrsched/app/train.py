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
from .schemas import register_configs

CONFIG_PATH = str(Path(__file__).parent.parent / "conf" / "lrsched")


def _fail(message: str, command: str = "train") -> None:
    print(f"lrsched {command}: error: {message}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _app(cfg: DictConfig) -> Any:
    from ..lightning.preemption import PREEMPTED_EXIT_CODE, Preempted
    from .run import check_config, train_and_report  # Lightning: not for --help or --cfg

    try:
        return train_and_report(cfg, check_config(cfg))
    except ConfigError as err:
        _fail(str(err).replace("\n", " "))
    except Preempted as stop:  # every rank: the checkpoint is written, the run is closed
        print(f"lrsched train: {stop}", file=sys.stderr, flush=True)
        sys.exit(PREEMPTED_EXIT_CODE)


def main() -> None:
    """``lrsched train``: see :func:`launch`."""
    launch(_app)


def launch(app: Any, command: str = "train") -> None:
    """Entry point: the process's arguments are Hydra overrides and flags (``-m``,
    ``--cfg job``, ...), checked for every job before Hydra starts.

    ``sys.argv`` is read, never rewritten: it is the command that started this process, which
    is what Lightning's DDP launcher re-runs for the extra processes (with Hydra's run
    directory added). ``lrsched train ...`` gets here by replacing its process with
    ``python -m lightning_lrsched.app.train ...`` (see :func:`lightning_lrsched.app.cli.main`).
    """
    register_configs()
    arguments = sys.argv[1:]
    if "--help" in arguments or "-h" in arguments:
        if command == "find-lr":
            print(
                "lrsched find-lr: the learning-rate range test on the config below (the same "
                "groups and overrides as lrsched train; lr_finder.* sets the test)\n"
            )
        _print_help([a for a in arguments if a not in ("--help", "-h")])
        return
    from .precheck import precheck

    problem = precheck(CONFIG_PATH, sys.argv[1:])
    if problem is not None:
        _fail(problem, command)
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    sys.argv += _rank_output_overrides(arguments)
    app()


def _rank_output_overrides(arguments: list[str]) -> list[str]:
    """For a rank other than zero that torchrun or srun started: its own log file in the job's
    one output directory, and no copy of the config there (as Lightning does for the ranks it
    starts itself), so ranks that share ``hydra.run.dir`` never write the same file.

    Only these processes get their arguments extended: Lightning re-runs no command under an
    external launcher."""
    rank = os.environ.get("RANK")
    if rank is None and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        rank = os.environ.get("SLURM_PROCID")
    if rank is None or int(rank) == 0 or "-m" in arguments or "--multirun" in arguments:
        return []
    extra = []
    if not any(a.startswith("hydra.job.name=") for a in arguments):
        extra.append(f"hydra.job.name=train_rank{int(rank)}")
    if not any(a.startswith("hydra.output_subdir=") for a in arguments):
        extra.append("hydra.output_subdir=null")
    return extra


def _print_help(overrides: list[str]) -> None:
    """The app's help (``conf/lrsched/hydra/help/lrsched.yaml``) with the config these overrides
    compose. Hydra's own ``--help`` renders the same template but first lists every option of
    every group, the packaged copies and schemas included, even where the template does not
    show them: seconds of copying configs."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    from .precheck import one_line

    try:
        with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        _fail(one_line(err))
    template = str(cfg.hydra.help.template)  # resolves the header and footer it names
    with open_dict(cfg):
        del cfg["hydra"]
    print(template.replace("$CONFIG", OmegaConf.to_yaml(cfg).rstrip()))


if __name__ == "__main__":
    main()
