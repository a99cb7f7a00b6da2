"""The one bridge to torch: an ``LRScheduler`` that evaluates a schedule at its step count.

Every ``step()`` computes the rates of the new step in closed form from the step index and
the base rates (O(1) whatever the index: no replay, no recursion on the previous rate) and
writes them, and the momenta where a schedule cycles them, into the param groups.
``state_dict()`` is plain data (survives ``torch.load(weights_only=True)``) and carries a
fingerprint of the resolved schedule, so state from a different plan is refused, not applied.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from .errors import ConfigError
from .schedules.base import GradientDriven, MetricDriven, RateSource, Stateful
from .schedules.compose import TakeOver, Warmup

STATE_FORMAT = "lightning_lrsched.schedule/1"


def momentum_kind(optimizer: Optimizer) -> str | None:
    """``"betas"`` (Adam family: beta1 is the momentum), ``"momentum"`` (SGD family) or None."""
    if "betas" in optimizer.defaults:
        return "betas"
    if "momentum" in optimizer.defaults:
        return "momentum"
    return None


def fingerprint(description: dict[str, Any]) -> str:
    """A short, stable hash of a schedule's resolved description."""
    text = json.dumps(description, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# What loading state saved under another plan does (see ScheduleLR.load_state_dict).
PLAN_CHANGES = ("error", "rewarm", "jump", "continue")


def check_plan_change(value: Any) -> str:
    """``value`` if it is one of :data:`PLAN_CHANGES`, else a one-line ``ConfigError``."""
    if value not in PLAN_CHANGES:
        raise ConfigError("on_plan_change", value, "must be one of " + ", ".join(PLAN_CHANGES))
    return value


# torch's own words (LRScheduler.step), so that users recognise the mistake it names
STEP_ORDER_WARNING = (
    "Detected call of `lr_scheduler.step()` before `optimizer.step()`. In PyTorch 1.1.0 and "
    "later, you should call them in the opposite order: `optimizer.step()` before "
    "`lr_scheduler.step()`.  Failure to do this will result in PyTorch skipping the first value "
    "of the learning rate schedule. See more details at "
    "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"
)


class ScheduleLR(LRScheduler):
    """Drives an optimizer's param groups from a rate source (a closed-form schedule, the
    plateau controller, a torch scheduler), behind torch's ``LRScheduler`` contract.

    Torch's convention: right after construction the groups hold the rates of step 0 and
    ``get_last_lr()`` returns them; after ``k`` calls of :meth:`step` they hold step ``k``
    (``last_epoch == k``, ``_step_count == k + 1``). Torch's own constructor runs (it wraps
    ``optimizer.step`` and takes the first step), and ``step()`` called before the optimizer's
    first ``step()`` warns as torch's schedulers do. Base rates are the groups' ``lr`` at
    construction; nothing is written into the groups except ``lr`` and (for sources that cycle
    it) ``momentum`` or ``betas[0]``: the ``initial_lr`` key torch's constructor adds is removed.

    For a metric-driven source (``plateau``), ``step(metric)`` reports a monitored value (as
    with torch's ``ReduceLROnPlateau``) while ``step()`` advances one optimizer step (it matters
    during the warmup); values reported during the warmup are ignored.

    ``replan(offset, anchor_lrs, mode)`` gives the rate source (and the base rates it is bound
    to) that takes over at step ``offset`` from the rates ``anchor_lrs`` in effect there, for
    the ``on_plan_change`` modes (see :meth:`load_state_dict`).

    ``only_after_optimizer_step=True`` (mixed precision): ``step()`` advances only when the
    optimizer took a step since the last advance (a ``GradScaler`` that found inf/NaN gradients
    skips ``optimizer.step()``); otherwise it leaves the rates where they were and counts the
    call in ``skipped_steps`` (kept in the state). The schedule then counts the optimizer's real
    steps, however often ``step()`` is called (torch issue 44511, Lightning issue 16228). The
    default keeps torch's convention: every ``step()`` advances.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: RateSource,
        *,
        replan: Callable[[int, list[float], str], tuple[RateSource, list[float]]] | None = None,
        on_plan_change: str = "error",
        only_after_optimizer_step: bool = False,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.only_after_optimizer_step = False  # torch's constructor takes its first step freely
        self.skipped_steps = 0
        self._optimizer_stepped = False
        self.on_plan_change = check_plan_change(on_plan_change)
        self.optimizer = optimizer
        self.replan = replan
        groups = optimizer.param_groups
        base_lrs = [float(group["lr"]) for group in groups]
        self._tensor_lrs = any(isinstance(group["lr"], Tensor) for group in groups)
        self.offset = 0  # > 0 once a changed plan took over at that step
        self.take_over: str | None = None  # how it took over (an on_plan_change mode)
        self.anchor_lrs: list[float] | None = None  # the rates it took over from
        # rates a range test chose for this run ("auto"), kept in the state for its resumes
        self.chosen_rates: dict[str, float] | None = None
        self._set_plan(schedule, base_lrs)
        had_initial_lr = ["initial_lr" in group for group in groups]
        # torch's constructor: wraps optimizer.step, sets last_epoch and _step_count, and takes
        # the first step (ours, which writes the rates of step 0)
        super().__init__(optimizer)
        self.base_lrs = base_lrs  # torch took them from "initial_lr", which may predate us
        for group, had in zip(groups, had_initial_lr, strict=True):
            if not had:
                group.pop("initial_lr", None)
        self._adapt_hook: Any = None
        if self.gradient_driven is not None:  # plain torch: adapt after backward, before update
            self._adapt_hook = optimizer.register_step_pre_hook(self._adapt_before_step)
        if only_after_optimizer_step:
            self.only_after_optimizer_step = True
            self._watch_optimizer_steps()

    def _set_plan(self, schedule: RateSource, base_lrs: list[float]) -> None:
        self.base_lrs = base_lrs
        self.schedule = schedule
        source = schedule
        while isinstance(source, Warmup | TakeOver):
            source = source.inner
        self.stateful: Stateful | None = source if isinstance(source, Stateful) else None
        kind = momentum_kind(self.optimizer) if schedule.cycles_momentum else None
        self._momentum_kind = kind
        self.base_momenta: list[float] | None = None
        if kind is not None:
            self.base_momenta = [
                float(_read_momentum(g, kind)) for g in self.optimizer.param_groups
            ]
        self.description: dict[str, Any] = schedule.describe()
        self.fingerprint = fingerprint({"plan": self.description, "offset": self.offset})
        self._evaluate = schedule.bind(tuple(base_lrs))

    @property
    def controller(self) -> MetricDriven | None:
        """The metric-driven source (reduce-on-plateau) behind the warmup, or None."""
        return self.stateful if isinstance(self.stateful, MetricDriven) else None

    @property
    def is_plateau(self) -> bool:
        """True when the rates after the warmup come from a metric-driven controller."""
        return self.controller is not None

    @property
    def monitor(self) -> str | None:
        """The metric a plateau schedule watches (None for other schedules)."""
        controller = self.controller
        return None if controller is None else controller.monitor

    def step(self, metrics: Any = None, epoch: int | None = None) -> None:  # type: ignore[override]
        """Advance one optimizer step and write that step's rates (plateau: see the class doc)."""
        if epoch is not None:
            raise TypeError(
                "step(epoch) is not supported: the schedule counts optimizer steps itself; "
                "restore a position with load_state_dict()"
            )
        if metrics is not None:
            self.observe(metrics)
            return
        if self.only_after_optimizer_step and not self._took_optimizer_step():
            return
        if self._step_count == 1 and not optimizer_stepped(self.optimizer):
            warnings.warn(STEP_ORDER_WARNING, UserWarning, stacklevel=2)
        self._step_count += 1
        self.last_epoch += 1
        self._apply()

    # -- skipped optimizer steps (only_after_optimizer_step) -------------------------------
    def _watch_optimizer_steps(self) -> None:
        """Note every real ``optimizer.step()`` (torch's public step post hook; a step the
        GradScaler skips runs no hook). The hook holds the scheduler weakly, so an optimizer
        that outlives it does not keep it alive."""
        this = weakref.ref(self)

        def stepped(*_: Any) -> None:
            scheduler = this()
            if scheduler is not None:
                scheduler._optimizer_stepped = True

        self._optimizer_step_hook = self.optimizer.register_step_post_hook(stepped)

    def _took_optimizer_step(self) -> bool:
        """Whether the optimizer stepped since the last advance; if not, count a skipped step."""
        if not self._optimizer_stepped:
            self.skipped_steps += 1
            return False
        self._optimizer_stepped = False
        return True

    def observe(self, metric: Any) -> None:
        """Feed one monitored value to the plateau controller and apply its decision."""
        controller = self.controller
        if controller is None:
            raise TypeError(f"a {self.description['kind']} schedule does not take metrics")
        if self._past_warmup():
            controller.update(float(metric), step=self.source_step())
            self._apply()

    def rebase(self, base_lrs: list[float]) -> None:
        """Drive the same plan, at the same step, from new base rates (the range test's
        suggestion): every group's curve scales with its base rate; rates a strategy resolved to
        absolute values (an explicit ``max_lr``) stay as they are."""
        if self.stateful is not None:
            raise ValueError(f"a {self.description['kind']} schedule cannot change its base rates")
        self._set_plan(self.schedule, [float(lr) for lr in base_lrs])
        self._apply()

    def source_step(self) -> int:
        """The current step as the rate source behind the warmup (and a take-over) counts it:
        where a plateau with ``warm_restart`` starts its new cycle."""
        step, source = self.last_epoch - self.offset, self.schedule
        while isinstance(source, Warmup | TakeOver):  # undo what their evaluators do to a step
            step = step - source.steps if isinstance(source, Warmup) else step + source.offset
            source = source.inner
        return step

    def _past_warmup(self) -> bool:
        """Whether the current step is past the warmup (a changed plan has none)."""
        warmup_steps = self.schedule.steps if isinstance(self.schedule, Warmup) else 0
        return self.last_epoch >= (warmup_steps if self.offset == 0 else 0)

    # -- gradient-driven sources (hypergradient) ------------------------------------------
    @property
    def gradient_driven(self) -> GradientDriven | None:
        """The gradient-driven source (hypergradient) behind the warmup, or None."""
        return self.stateful if isinstance(self.stateful, GradientDriven) else None

    def adapt(self) -> None:
        """Let a gradient-driven source set this step's rates from the gradients now in the
        optimizer, and write them; call it after the backward and before the update. In plain
        torch an optimizer step pre-hook calls it; in Lightning ``GradientControl`` does, from
        ``on_before_optimizer_step`` (see :meth:`adapt_from_caller`)."""
        source = self.gradient_driven
        if source is not None:
            source.adapt(self.optimizer, active=self._past_warmup())
            self._apply()

    def adapt_from_caller(self) -> None:
        """Remove the optimizer pre-hook: the caller calls :meth:`adapt` itself (Lightning
        steps optimizers with a closure that runs the backward inside ``step()``, after the
        pre-hooks)."""
        if self._adapt_hook is not None:
            self._adapt_hook.remove()
            self._adapt_hook = None

    def _adapt_before_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        # torch passes the step's positional arguments with the optimizer first: a closure is
        # the one callable among them
        closure = kwargs.get("closure") or next((a for a in args if callable(a)), None)
        if closure is not None:
            raise RuntimeError(
                f"scheduler {self.description['kind']!r} sets the rate from the gradients of the "
                "step before its update, but optimizer.step(closure) computes them inside the "
                "step: call loss.backward() and then optimizer.step() without a closure (in "
                "Lightning: lightning_lrsched.configure_optimizers or the LRSchedule callback)"
            )
        self.adapt()

    def planned_rates(self, steps: int) -> list[list[float]] | None:
        """The rates of steps ``0..steps-1`` as planned now (None when they depend on metrics or
        on a torch scheduler's own state, which cannot be evaluated ahead)."""
        if self.stateful is not None:
            return None
        evaluate = self.schedule.bind(tuple(self.base_lrs))
        return [
            self.base_lrs if step < self.offset else evaluate(step - self.offset)[0]
            for step in range(steps)
        ]

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """The rates of the current step (``get_last_lr()`` is what was last written)."""
        return self._evaluate(self.last_epoch - self.offset)[0]

    def get_last_lr(self) -> list[float]:  # type: ignore[override]
        return self._last_lr

    def _apply(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.base_lrs):
            raise RuntimeError(
                f"the optimizer has {len(groups)} param groups but the scheduler was built for "
                f"{len(self.base_lrs)}; build the scheduler after adding param groups"
            )
        lrs, momenta = self._evaluate(self.last_epoch - self.offset)
        self._last_lr = lrs
        kind = self._momentum_kind
        if self._tensor_lrs:
            _write_slowly(groups, lrs, kind, momenta or self.base_momenta)
        elif kind is None:
            for group, lr in zip(groups, lrs, strict=False):  # lengths checked above
                group["lr"] = lr
        else:
            if momenta is None:  # a phase that does not cycle momentum restores the configured one
                momenta = self.base_momenta
            if kind == "momentum":
                for group, lr, momentum in zip(groups, lrs, momenta, strict=False):
                    group["lr"] = lr
                    group["momentum"] = momentum
            else:
                for group, lr, momentum in zip(groups, lrs, momenta, strict=False):
                    group["lr"] = lr
                    group["betas"] = (momentum, *group["betas"][1:])

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """Plain data: position, base and current rates, the plan's description and fingerprint."""
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "step": self.last_epoch,
            "offset": self.offset,
            "take_over": self.take_over,
            "anchor_lrs": self.anchor_lrs,
            "base_lrs": list(self.base_lrs),
            "lrs": list(self.get_last_lr()),
            "base_momenta": None if self.base_momenta is None else list(self.base_momenta),
            "fingerprint": self.fingerprint,
            "schedule": self.description,
        }
        if self.stateful is not None:
            state["controller"] = self.stateful.state_dict()
        if self.chosen_rates:
            state["chosen_rates"] = dict(self.chosen_rates)
        if self.only_after_optimizer_step:
            state["skipped_steps"] = self.skipped_steps
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Continue from a saved position.

        State saved under a different plan (other strategy, parameters or horizon, e.g.
        ``max_epochs`` raised to train longer) raises a ``ValueError`` saying what changed,
        unless ``on_plan_change`` says how the new plan takes over at the saved step:

        - ``"rewarm"``: the new plan as if it had run from step 0, reached by a new warmup from
          the saved rates (over the strategy's own warmup, else 5% of the steps left, else 100
          steps);
        - ``"jump"``: the new plan's rates at the saved step, at once;
        - ``"continue"``: the strategy's curve over the steps left, from the saved rates (no
          warmup). A finished plan saved rate 0, and 0 then stays: that warns.

        A later resume of such a run, with the same config, is exact.
        """
        state = state_dict
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"scheduler state has format {state.get('format')!r}, expected "
                f"{STATE_FORMAT!r}: it was not saved by lightning_lrsched's scheduler"
            )
        if len(state["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(
                f"scheduler state has {len(state['base_lrs'])} param groups, the optimizer "
                f"has {len(self.optimizer.param_groups)}"
            )
        saved_offset = int(state.get("offset", 0))
        if saved_offset != self.offset:  # the run continued a changed plan: rebuild it likewise
            anchors = state.get("anchor_lrs") or state["base_lrs"]
            mode = state.get("take_over") or "continue"
            self._take_over(saved_offset, [float(lr) for lr in anchors], mode)
        step = int(state["step"])
        if state.get("chosen_rates"):
            self.chosen_rates = {k: float(v) for k, v in state["chosen_rates"].items()}
        if state["fingerprint"] != self.fingerprint:
            changes = describe_changes(state.get("schedule", {}), self.description)
            if self.on_plan_change == "error":
                raise ValueError(
                    f"scheduler state was saved for a different plan ({changes}); resume with "
                    "the same config and number of training steps, or pass on_plan_change="
                    "'rewarm' (warm up to the new plan at the saved step), 'jump' (its rate at "
                    "once) or 'continue' (from the saved rate)"
                )
            self._take_over(step, [float(lr) for lr in state["lrs"]], self.on_plan_change)
        else:
            self.base_lrs = [float(lr) for lr in state["base_lrs"]]
            if state.get("base_momenta") is not None:
                self.base_momenta = [float(m) for m in state["base_momenta"]]
            if self.stateful is not None:
                self.stateful.load_state_dict(state["controller"])
            self._evaluate = self.schedule.bind(tuple(self.base_lrs))
        self.last_epoch = step
        self._step_count = step + 1
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self._optimizer_stepped = False  # saved between advances: the next step() needs a new one
        self._apply()

    def _take_over(self, offset: int, anchor_lrs: list[float], mode: str) -> None:
        """Let the configured plan run from step ``offset`` on, from the rates ``anchor_lrs``."""
        if self.replan is None:
            raise ValueError("this scheduler cannot change its plan: it was built without one")
        configured = list(self.base_lrs)
        schedule, base_lrs = self.replan(offset, anchor_lrs, mode)
        self.offset, self.take_over, self.anchor_lrs = offset, mode, list(anchor_lrs)
        self._set_plan(schedule, base_lrs)
        stuck = [
            i for i, (a, b) in enumerate(zip(anchor_lrs, configured, strict=True)) if a == 0 < b
        ]
        if mode == "continue" and stuck:
            warnings.warn(
                f"on_plan_change='continue' goes on from the saved rate 0 of param group(s) "
                f"{stuck} (the saved plan had ended there): the rest of training runs at rate 0; "
                "on_plan_change='rewarm' warms up to the new plan instead",
                UserWarning,
                stacklevel=3,
            )


def optimizer_stepped(optimizer: Optimizer) -> bool:
    """Whether ``optimizer.step()`` ran since a scheduler was built on it.

    torch's ``LRScheduler`` constructor wraps ``optimizer.step`` to set ``_opt_called``, and its
    ``step()`` reads it for the step-order warning; torch offers no public accessor. Our
    ``step()`` replaces torch's (whose generic group writes would cost the speed this adapter
    exists for), so it reads the flag here, in this one place.
    ``tests/test_state.py::test_step_order_warning_is_torchs`` fails if torch changes it.
    (A step hook cannot do this: removing one while the optimizer runs its hooks is an error.)
    """
    return bool(getattr(optimizer, "_opt_called", False))


def _write_slowly(
    groups: list[dict[str, Any]], lrs: list[float], kind: str | None, momenta: Any
) -> None:
    """Write rates into groups whose ``lr`` may be a tensor (capturable / fused optimizers)."""
    for i, group in enumerate(groups):
        if isinstance(group["lr"], Tensor):
            group["lr"].fill_(lrs[i])
        else:
            group["lr"] = lrs[i]
        if kind == "momentum":
            group["momentum"] = momenta[i]
        elif kind == "betas":
            group["betas"] = (momenta[i], *group["betas"][1:])


def _read_momentum(group: dict[str, Any], kind: str) -> float:
    return group["betas"][0] if kind == "betas" else group["momentum"]


def describe_changes(saved: Any, current: Any, prefix: str = "") -> str:
    """Human-readable list of the leaves that differ between two descriptions."""
    diffs: list[str] = []
    _collect(saved, current, prefix, diffs)
    if not diffs:
        return "same parameters, different fingerprint"
    shown = "; ".join(diffs[:4])
    return shown + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")


def _strategy(description: dict[str, Any]) -> str:
    inner = description.get("inner")
    return description.get("kind", "?") + (
        f"({_strategy(inner)})" if isinstance(inner, dict) else ""
    )


def _collect(saved: Any, current: Any, path: str, out: list[str]) -> None:
    if (
        isinstance(saved, dict)
        and isinstance(current, dict)
        and saved.get("kind") != current.get("kind")
    ):
        out.append(f"{path or 'strategy'}: saved {_strategy(saved)}, now {_strategy(current)}")
    elif isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current), key=str):
            _collect(saved.get(key), current.get(key), f"{path}.{key}" if path else str(key), out)
    elif isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        for i, (a, b) in enumerate(zip(saved, current, strict=True)):
            _collect(a, b, f"{path}[{i}]", out)
    elif not _same(saved, current):
        out.append(f"{path or 'schedule'}: saved {saved!r}, now {current!r}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
