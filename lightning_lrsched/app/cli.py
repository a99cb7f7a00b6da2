"""The ``lrsched`` command line: ``train``, ``find-lr``, ``list``, ``plot <name> [key=value ...]``,
``send`` and ``compare``.

``key=value`` overrides are read as Hydra reads them: ``gamma=0.5``, ``eta_min=1e-4``,
``three_phase=true``, ``warmup=5%``, ``milestones=[30ep,60ep]``,
``phases=[{name: linear, duration: 10}, {name: cosine}]``. Bad input prints one line,
``lrsched: error: <message>``, to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import ConfigError
from ..spec import COMMON_PARAMS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..preview import Plan

PROG = "lrsched"
MAX_EPOCH_LINES = 20


class UsageError(Exception):
    """Bad command-line input; its message is printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# -- key=value overrides ------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """One override value read with Hydra's override grammar, as ``lrsched train`` reads it.

    >>> [parse_value(v) for v in ("5%", "2ep", "1e-4", "3", "true", "[30ep, 60ep]")]
    ['5%', '2ep', 0.0001, 3, True, ['30ep', '60ep']]
    >>> parse_value("[{name:linear,duration:10},{name:cosine}]")
    [{'name': 'linear', 'duration': 10}, {'name': 'cosine'}]
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        (override,) = OverridesParser.create().parse_overrides([f"value={text}"])
    except HydraException as err:
        problem = str(err).strip().splitlines()[0] if str(err).strip() else "not valid"
        raise UsageError(f"{text!r}: cannot read this value ({problem})") from None
    if override.is_sweep_override():
        raise UsageError(f"{text!r}: one value, not a sweep (a list is written [a,b])")
    return override.value()


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["gamma=0.5", "milestones=[2ep,4ep]"]`` → ``{"gamma": 0.5, "milestones": [...]}``.

    A ``scheduler.`` prefix (as in a training override) is accepted and dropped.
    """
    config: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().removeprefix("scheduler.")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageError(
                f"{item!r}: expected key=value with a plain parameter name, "
                "e.g. warmup=5% or milestones=[30ep,60ep]"
            )
        if key == "name":
            raise UsageError(f"{item!r}: give the strategy name as the first argument")
        if key in config:
            raise UsageError(f"{item!r}: {key} is given more than once")
        config[key] = parse_value(text)
    return config


# -- drawing ------------------------------------------------------------------------------------


def draw(plan: Plan, *, title: str, steps_per_epoch: int | None = None) -> Figure:
    """A figure of the planned rate (top) and, when the schedule cycles it, momentum (below).

    Step ``k``'s value holds from ``k`` to ``k + 1`` on the x axis (optimizer steps); epoch
    boundaries are dotted vertical lines and the top axis counts epochs.
    """
    from matplotlib.figure import Figure

    rows = 1 if plan.momenta is None else 2
    fig = Figure(figsize=(9, 4.8 if rows == 1 else 6.8), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False, height_ratios=[2, 1][:rows])[:, 0]
    total = len(plan.steps)
    xs = [*plan.steps, total]
    series = [("learning rate", plan.lrs, "C0")]
    if plan.momenta is not None:
        series.append((plan.momentum_label, plan.momenta, "C1"))
    for ax, (label, values, color) in zip(axes, series, strict=True):
        ax.plot(xs, [*values, values[-1]], drawstyle="steps-post", color=color, label=label)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if steps_per_epoch:
            _mark_epochs(ax, total, steps_per_epoch)
        ax.legend(loc="best", fontsize="small")
    axes[0].set_xlim(0, total)
    axes[-1].set_xlabel("optimizer step")
    if steps_per_epoch:
        top = axes[0].secondary_xaxis(
            "top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch)
        )
        top.set_xlabel("epoch")
    fig.suptitle(textwrap.fill(title, width=100), fontsize="medium")
    return fig


def _mark_epochs(ax: Any, total: int, steps_per_epoch: int) -> None:
    epochs = (total - 1) // steps_per_epoch
    every = 1  # thinned to a round number of epochs (1, 2, 5, 10, 20, ...) when there are many
    while epochs / every > MAX_EPOCH_LINES:
        every = every * 5 // 2 if str(every).startswith("2") else every * 2
    for i, epoch in enumerate(range(every, epochs + 1, every)):
        label = ("epoch start" if every == 1 else f"every {every} epochs") if i == 0 else None
        ax.axvline(epoch * steps_per_epoch, color="0.5", linestyle=":", linewidth=1, label=label)


# -- subcommands --------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    """Print every registered strategy (or one strategy's parameters in detail)."""
    from ..registry import STRATEGIES
    from .generate import describe_lines, list_lines

    if args.name is not None:
        if args.name not in STRATEGIES:
            raise UsageError(f"{args.name!r}: unknown strategy; known: {', '.join(STRATEGIES)}")
        print("\n".join(describe_lines(args.name)))
        return 0
    print("\n".join(list_lines()))
    print()
    shapes = "|".join(COMMON_PARAMS["warmup_type"].choices)
    print(
        "Every strategy also takes warmup (a duration, default 0), warmup_start_factor "
        f"(default 0.0; wsd: min_lr_ratio) and warmup_type ({shapes}); "
        "a choice's first option is its default."
    )
    print(
        "And timm's noise on the rate (noise_range, a duration or [start, end); noise_pct, "
        "noise_std, noise_seed, noise_type) and Composer's scale_schedule_ratio (multiplies "
        "every duration given in steps or epochs)."
    )
    print(
        "Durations (warmup, step_size, milestones, T_max, ...): optimizer steps (500), "
        'epochs ("2ep", needs --steps-per-epoch) or a percentage of all steps ("5%").'
    )
    print(f"One strategy's parameters: {PROG} list cosine")
    print(f"Plot one: {PROG} plot cosine warmup=5% --total-steps 1000 --out cosine.png")
    return 0


def plan_for(args: argparse.Namespace) -> Plan:
    """The plan ``lrsched plot`` draws for its parsed arguments (also the gallery's digest)."""
    from ..preview import plan_rates

    config = {"name": args.name, **parse_overrides(args.overrides)}
    return plan_rates(
        config,
        args.total_steps,
        steps_per_epoch=args.steps_per_epoch,
        base_lr=args.lr,
        optimizer=args.optimizer,
    )


def run_plot(args: argparse.Namespace) -> int:
    """Plan the schedule, draw it and write the PNG; print the PNG's path."""
    try:
        plan = plan_for(args)
    except ConfigError as err:
        if args.steps_per_epoch is None and str(err.value).endswith("ep"):
            raise UsageError(f"{err} (here: --steps-per-epoch M)") from None
        raise
    setup = f"{args.total_steps} steps"
    if args.steps_per_epoch:
        setup += f", {args.steps_per_epoch} per epoch"
    title = f"{args.name} {' '.join(args.overrides)}".strip()
    title += f"  ({setup}, {args.optimizer} lr={args.lr:g})"
    fig = draw(plan, title=title, steps_per_epoch=args.steps_per_epoch)
    out = Path(args.out)
    try:
        fig.savefig(out, dpi=110)
    except OSError as err:
        raise UsageError(
            f"--out {str(out)!r}: cannot write the PNG ({err.strerror or err})"
        ) from None
    print(out)
    return 0


def run_send(args: argparse.Namespace) -> int:
    """Send the runs kept on disk while their tracking server did not answer; exit status 1 if
    one could not be sent (it stays kept, and sending again resumes it)."""
    from ..tracking.spool import Spool, reachable, spool_root, unsent_runs
    from ..tracking.store import resolve_uri

    root = spool_root(args.directory)
    if not root.is_dir():
        raise UsageError(f"{str(root)!r}: no such directory (runs are kept in ./lrsched-unsent)")
    uri = resolve_uri(args.tracking_uri) if args.tracking_uri else None
    runs = [Spool(root)] if (root / "run.json").exists() else unsent_runs(root)
    runs = [spool for spool in runs if not spool.sent]
    if not runs:
        print(f"nothing to send in {root}")
        return 0
    failed = 0
    for spool in runs:
        target = uri or spool.meta["tracking_uri"]
        points = sum(1 for _ in spool.points())
        if not reachable(target):
            print(f"{spool.local_id}: {target} does not answer; kept", file=sys.stderr)
            failed += 1
            continue
        try:
            run_id = spool.send(uri)
        except Exception as err:  # kept; the next send resumes it
            reason = " ".join(str(err).split())[:300]
            print(
                f"{spool.local_id}: not sent ({type(err).__name__}: {reason}); kept",
                file=sys.stderr,
            )
            failed += 1
            continue
        print(f"{spool.local_id}: sent as MLflow run {run_id} ({points} points) to {target}")
    return 1 if failed else 0


def run_compare(args: argparse.Namespace) -> int:
    """Compare an experiment's finished runs (see :mod:`.compare`); print the groups table and
    the files written."""
    from .compare import compare

    table, written = compare(
        experiment=args.experiment,
        tracking_uri=args.tracking_uri,
        filter_string=args.filter,
        metric=args.metric,
        mode=args.mode,
        target=args.target,
        smooth=args.smooth,
        baseline=args.baseline,
        latest=args.latest,
        log_lr=args.log_lr,
        out=args.out,
    )
    print(table)
    for path in written:
        print(f"wrote {path}")
    return 0


def _add_compare(commands: Any) -> None:
    from .compare import DEFAULT_EXPERIMENT, DEFAULT_METRIC, DEFAULT_SMOOTH

    compare = commands.add_parser(
        "compare",
        help="compare an MLflow experiment's finished runs, per run and per group of seeds",
        description="Read the experiment's finished runs back from the MLflow store; write "
        "compare.md (groups of seeds, then runs) and compare.png (learning rates; the metric, "
        "median over seeds with a min-max band) to --out.",
        epilog="example: lrsched compare --experiment compare-schedulers --target 0.95 "
        "--baseline cosine",
    )
    compare.add_argument(
        "--experiment", default=DEFAULT_EXPERIMENT, help=f"default {DEFAULT_EXPERIMENT}"
    )
    compare.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI, else ./mlflow.db")
    compare.add_argument("--filter", help="an MLflow filter string, e.g. \"params.seed = '0'\"")
    compare.add_argument("--metric", default=DEFAULT_METRIC, help=f"default {DEFAULT_METRIC}")
    compare.add_argument("--mode", help="max or min (default: min for a loss or error, else max)")
    compare.add_argument("--target", help="the value to reach (steps and time to it)")
    compare.add_argument(
        "--smooth",
        default=str(DEFAULT_SMOOTH),
        help=f"reached when the mean of this many evaluations is (default {DEFAULT_SMOOTH})",
    )
    compare.add_argument("--baseline", help="a group (or a unique part of its name)")
    compare.add_argument("--latest", action="store_true", help="only the newest run of each name")
    compare.add_argument("--log-lr", action="store_true", help="logarithmic learning-rate axis")
    compare.add_argument("--out", help="directory to write (default ./compare-<experiment>)")
    compare.set_defaults(run=run_compare)


def build_parser() -> argparse.ArgumentParser:
    """The ``lrsched`` argument parser (its errors raise :class:`UsageError`)."""
    from ..preview import OPTIMIZERS  # imported here: `lrsched train` hands over before this

    parser = _Parser(prog=PROG, description="Learning-rate schedules for PyTorch Lightning.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser(  # handled before parsing: Hydra reads its own arguments
        "train", help="train a model (Hydra overrides; see: lrsched train --help)", add_help=False
    )
    commands.add_parser(
        "find-lr",
        help="learning-rate range test on the training config (Hydra overrides, as train)",
        add_help=False,
    )
    listing = commands.add_parser("list", help="list every strategy and its parameters")
    listing.add_argument("name", nargs="?", help="show this strategy's parameters in detail")
    listing.set_defaults(run=run_list)
    plot = commands.add_parser(
        "plot",
        help="draw a strategy's planned rate (and momentum) to a PNG",
        description="Draw the planned rate of every optimizer step, without training.",
        epilog="example: lrsched plot multistep milestones=[2ep,4ep] --total-steps 600 "
        "--steps-per-epoch 100",
    )
    plot.add_argument("name", help=f"strategy ({PROG} list shows them)")
    plot.add_argument("overrides", nargs="*", metavar="key=value", help="strategy parameters")
    plot.add_argument("--total-steps", type=int, required=True, help="optimizer steps to plan")
    plot.add_argument("--steps-per-epoch", type=int, help="resolves '2ep' and marks epochs")
    plot.add_argument("--lr", type=float, default=0.1, help="base learning rate (default 0.1)")
    plot.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="default sgd")
    plot.add_argument("--out", default="schedule.png", help="PNG to write (default schedule.png)")
    plot.set_defaults(run=run_plot)
    sending = commands.add_parser(
        "send",
        help="send runs kept on disk while the tracking server did not answer",
        description="Send every run kept on disk (./lrsched-unsent by default) to its store.",
    )
    sending.add_argument(
        "directory",
        nargs="?",
        help="where the runs are kept, or one run (default ./lrsched-unsent)",
    )
    sending.add_argument("--tracking-uri", help="send to this store instead of the run's own")
    sending.set_defaults(run=run_send)
    _add_compare(commands)
    return parser


TRAIN_MODULE = "lightning_lrsched.app.train"
FIND_LR_MODULE = "lightning_lrsched.app.find_lr"


def run_train(args: Sequence[str], module: str = TRAIN_MODULE) -> NoReturn:
    """``lrsched train ARGS``: replace this process with ``python -m lightning_lrsched.app.train
    ARGS`` (same process id, so a scheduler's signals still reach it).

    Hydra reads its overrides from ``sys.argv[1:]``, where ``train`` would be one too many; and
    Lightning's DDP launcher starts each extra process by re-running ``sys.argv``. Running the
    training module as its own command makes ``sys.argv`` right for both without rewriting it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    command = [sys.executable, "-m", module, *args]
    os.execv(sys.executable, command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lrsched`` with ``argv`` (default: the process's arguments); return the exit code.

    ``train`` does not return: it replaces this process (see :func:`run_train`)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["train"]:
        run_train(args_list[1:])
    if args_list[:1] == ["find-lr"]:  # the range test on the training config (Hydra too)
        run_train(args_list[1:], FIND_LR_MODULE)
    try:
        args, extra = build_parser().parse_known_args(argv)
        if args.command == "plot":  # overrides may also follow the options
            args.overrides += [item for item in extra if not item.startswith("-")]
            extra = [item for item in extra if item.startswith("-")]
        if extra:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
        return args.run(args)
    except (UsageError, ConfigError) as err:
        message = re.sub(r"\s*\n\s*", " ", str(err)).strip()
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
