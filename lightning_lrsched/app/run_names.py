"""Run names and tags that say what a run is, so the MLflow UI's run list reads without opening
runs: ``mnist1d_cnn · cosine warmup=5% · adam lr=0.003 · seed 1``.

A name has four parts: the ``experiment=`` option (when there is one), the strategy with the
parameters that differ from its declared defaults (:mod:`lightning_lrsched.spec`), the optimizer
with its rate (``auto`` stays ``auto``) and the seed. The *group* is the same name without the
seed: what the seeds of one configuration share (tag ``lrsched.group``, read by
``lrsched compare``).

>>> plain = {"seed": 1, "optimizer": {"name": "adam", "lr": 0.003},
...          "scheduler": {"name": "cosine", "warmup": "5%", "eta_min": 0.0, "T_max": None}}
>>> run_name(plain, "mnist1d_cnn")
'mnist1d_cnn · cosine warmup=5% · adam lr=0.003 · seed 1'
>>> run_tags(plain, "mnist1d_cnn")["lrsched.group"]
'mnist1d_cnn · cosine warmup=5% · adam lr=0.003'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

SEP = " · "
GROUP_TAG = "lrsched.group"
SEED_TAG = "lrsched.seed"
SCHEDULE_TAG = "lrsched.schedule"  # the strategy with its key parameters, as in the name
MAX_VALUE_CHARS = 24  # a longer parameter value is cut (with "…"): names stay one line
NO_EXPERIMENT = ("none", "", None)


def short_value(value: Any) -> str:
    """A parameter value as it reads in a name: numbers in their shortest form, lists without
    spaces, a nested strategy by its name.

    >>> [short_value(v) for v in (0.003, 1e-05, 3, True, "5%", ["30ep", "60ep"])]
    ['0.003', '1e-05', '3', 'true', '5%', '[30ep,60ep]']
    >>> short_value([{"name": "linear", "duration": 10}, {"name": "cosine"}])
    '[linear,cosine]'
    """
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, Mapping):
        text = str(value.get("name", "{…}"))
    elif isinstance(value, Sequence) and not isinstance(value, str):
        text = "[" + ",".join(short_value(v) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _is_default(value: Any, default: Any) -> bool:
    from ..spec import GROUP_LR, REQUIRED, REST

    if any(default is marker for marker in (REQUIRED, REST, GROUP_LR)):  # unset is None
        return value is None
    if isinstance(default, tuple) and isinstance(value, list):
        value = tuple(value)
    try:
        return bool(value == default)
    except (TypeError, ValueError):
        return False


def strategy_label(scheduler: Mapping[str, Any] | None) -> str:
    """The strategy and the parameters that differ from its declared defaults, in declaration
    order (the strategy's own, then the ones every strategy takes); ``none`` without a schedule.

    >>> strategy_label({"name": "onecycle", "max_lr": 0.1, "pct_start": 0.3, "warmup": 0})
    'onecycle max_lr=0.1'
    >>> strategy_label({"name": "torch", "_target_": "torch.optim.lr_scheduler.StepLR",
    ...                 "step_size": "1ep", "gamma": 0.5})
    'torch StepLR step_size=1ep gamma=0.5'
    >>> strategy_label(None)
    'none'
    """
    if not scheduler:
        return "none"
    from .. import STRATEGIES  # (importing the package registers every strategy)
    from ..spec import COMMON_PARAMS, declared_params

    name = str(scheduler.get("name", "?"))
    strategy = STRATEGIES.get(name)
    own = declared_params(strategy) if dataclasses.is_dataclass(strategy) else {}
    declared = {**own, **COMMON_PARAMS}
    parts = [name]
    if isinstance(scheduler.get("_target_"), str):  # torch: the class, by its own name
        parts.append(scheduler["_target_"].rsplit(".", 1)[-1])
    keys = [k for k in declared if k in scheduler]
    keys += [k for k in scheduler if k not in declared and k not in ("name", "_target_")]
    for key in keys:
        value = scheduler[key]
        if key in declared and _is_default(value, declared[key].default):
            continue
        parts.append(f"{key}={short_value(value)}")
    return " ".join(parts)


def optimizer_label(optimizer: Mapping[str, Any] | None) -> str:
    """The optimizer and its rate: ``adam lr=0.003``, ``adamw lr=auto``.

    >>> optimizer_label({"name": "sgd", "lr": 0.1, "momentum": 0.9})
    'sgd lr=0.1'
    """
    if not optimizer:
        return "?"
    name = str(optimizer.get("name", "?"))
    return f"{name} lr={short_value(optimizer['lr'])}" if "lr" in optimizer else name


def group_name(
    plain: Mapping[str, Any], experiment: str | None, *, range_test: bool = False
) -> str:
    """The run's name without its seed: experiment, strategy, optimizer (a range test sweeps
    the rate, so its group names the optimizer alone).

    >>> group_name({"optimizer": {"name": "adamw", "lr": "auto"}}, "none", range_test=True)
    'range test · adamw'
    """
    parts = [] if experiment in NO_EXPERIMENT else [str(experiment)]
    if range_test:
        parts += ["range test", str((plain.get("optimizer") or {}).get("name", "?"))]
    else:
        parts += [strategy_label(plain.get("scheduler")), optimizer_label(plain.get("optimizer"))]
    return SEP.join(parts)


def run_name(plain: Mapping[str, Any], experiment: str | None, *, range_test: bool = False) -> str:
    """:func:`group_name` and the seed."""
    group = group_name(plain, experiment, range_test=range_test)
    return f"{group}{SEP}seed {plain.get('seed', 0)}"


def run_tags(
    plain: Mapping[str, Any], experiment: str | None, *, range_test: bool = False
) -> dict[str, str]:
    """The tags ``lrsched compare`` groups and labels runs by."""
    tags = {
        GROUP_TAG: group_name(plain, experiment, range_test=range_test),
        SEED_TAG: str(plain.get("seed", 0)),
    }
    if not range_test:
        tags[SCHEDULE_TAG] = strategy_label(plain.get("scheduler"))
    return tags
