"""Compose and check a command line's configs before Hydra runs anything.

Hydra reports a bad override with several lines and a hint about HYDRA_FULL_ERROR, and only
once it has created an output directory. Composing first, for every combination of a sweep's
choices, turns each problem into one line that names the key and what is allowed, before any
job or MLflow run exists.
"""

from __future__ import annotations

import copy
import itertools
import re

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, open_dict
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError

MAX_COMBINATIONS = 64
# Hydra flags after which this check steps aside and lets Hydra answer (help, config printing).
_PASS_THROUGH = ("-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc",
                 "--shell-completion", "-cp", "--config-path", "-cn", "--config-name",
                 "-cd", "--config-dir", "-p", "--package", "--experimental-rerun")  # fmt: skip


def _combinations(overrides: list[str]) -> tuple[list[list[str]], bool]:
    """Every combination of the sweep's choices (capped), and whether it is a sweep."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    options: list[list[str]] = []
    sweep = False
    for override, text in zip(parsed, overrides, strict=True):
        if override.is_sweep_override():
            sweep = True
            key = override.get_key_element()
            try:
                values = list(override.sweep_string_iterator())
            except Exception:  # interval() and other sweeps an optimizer samples: not checked
                continue
            options.append([f"{key}={v}" for v in values])
        else:
            options.append([text])
    combos = itertools.islice(itertools.product(*options), MAX_COMBINATIONS)
    return [list(c) for c in combos], sweep


def one_line(err: Exception) -> str:
    """A Hydra or OmegaConf composition error as one line naming the key."""
    if isinstance(err, MissingConfigException):
        group = getattr(err, "missing_cfg_file", None) or ""
        options = getattr(err, "options", None) or []
        text = str(err).splitlines()[0]
        match = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
        if match:
            key, value = match.group(1), match.group(2)
            return f"{key}={value!r}: unknown option; available: {', '.join(sorted(options))}"
        return f"{group}: {text}"
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    cause = err.__cause__ or err.__context__
    key_match = re.search(r"Could not override '([^']+)'", text)
    if key_match and cause is not None:
        reason = str(cause).splitlines()[0]
        unknown = re.match(r"Key '([^']+)' not in '([^']+)'", reason)
        value = re.search(r"=(\S+)", text.split("Could not override", 1)[-1])
        shown = f"{key_match.group(1)}={value.group(1)}" if value else key_match.group(1)
        if unknown:
            return f"{shown}: {unknown_key_message(unknown.group(1), unknown.group(2))}"
        return f"{shown}: {reason}"
    merge = re.match(r"Error merging override (\S+)", text)
    if merge and cause is not None:
        return f"{merge.group(1)}: {str(cause).splitlines()[0]}"
    if isinstance(err, OmegaConfBaseException):
        return text.split(" full_key:")[0]
    return text.replace(
        "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.", ""
    ).strip()


def unknown_key_message(key: str, schema_name: str) -> str:
    """ "unknown parameter (did you mean ...?); allowed: ..." from the schema's fields (the same
    message the strategy reader gives outside Hydra)."""
    import dataclasses

    from ..spec import unknown_key_error
    from .schemas import schema_by_class_name

    schema = schema_by_class_name(schema_name)
    if schema is None:
        return f"not a key of {schema_name}"
    allowed = [f.name for f in dataclasses.fields(schema) if not f.name.startswith("_")]
    return unknown_key_error("", key, None, allowed).allowed


def precheck(config_dir: str, argv: list[str]) -> str | None:
    """None when every job of this command line composes and passes the checks, else why not."""
    if any(arg in _PASS_THROUGH or arg.split("=")[0] in _PASS_THROUGH for arg in argv):
        return None
    overrides = [a for a in argv if a not in ("-m", "--multirun")]
    multirun = len(overrides) != len(argv)
    try:
        combos, sweep = _combinations(overrides)
    except HydraException as err:
        return one_line(err)
    if sweep and not multirun:
        return f"{' '.join(overrides)}: a sweep needs -m (--multirun)"
    search = [
        o for o in overrides if o.startswith("hparams_search=") and o != "hparams_search=null"
    ]
    if search and not multirun:
        return f"{search[0]}: a hyperparameter search needs -m (--multirun)"
    from .run import check_config

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            for number, combo in enumerate(combos):
                try:
                    cfg = _compose_job(combo, number if multirun else None)
                except (HydraException, OmegaConfBaseException) as err:
                    return one_line(err)
                try:
                    checked = check_config(cfg)
                except ConfigError as err:
                    return str(err).replace("\n", " ")
                if multirun and checked.relaunches:
                    return (
                        f"trainer.strategy={cfg.trainer.strategy!r}: in a sweep Lightning would "
                        "re-run the whole command in each extra process (a nested sweep); use "
                        "trainer=ddp_spawn for sweeps, or launch single runs with trainer=ddp"
                    )
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None  # type: ignore[assignment]
    return None


def _compose_job(overrides: list[str], job_number: int | None) -> DictConfig:
    """The job's config with ``${hydra:...}`` resolvable, as in the job itself: a user's
    ``+callbacks.x.dirpath=${hydra:runtime.output_dir}/ckpt`` must pass the check. The output
    directory is the one Hydra would choose; nothing is created."""
    cfg = compose("train", overrides=overrides, return_hydra_config=True)
    hydra = cfg.hydra
    with open_dict(cfg):  # interpolations, resolved only where a value uses them
        if job_number is None:
            hydra.runtime.output_dir = "${hydra.run.dir}"
        else:
            hydra.job.num = job_number
            hydra.runtime.output_dir = "${hydra.sweep.dir}/${hydra.sweep.subdir}"
    HydraConfig.instance().set_config(cfg)  # resolves against cfg: the job gets a copy, as in Hydra
    job = copy.deepcopy(cfg)
    with open_dict(job):
        del job["hydra"]
    return job
