"""Every built-in strategy: how its parameters are read, checked and turned into a schedule.

Parameter names follow ``torch.optim.lr_scheduler`` where torch has the strategy and Hugging
Face ``transformers`` otherwise. Durations accept steps, ``"<n>ep"`` or ``"<p>%"``.
"""

from __future__ import annotations

from typing import Any

from .durations import is_duration_text, resolve_duration
from .errors import ConfigError, HorizonError
from .params import Params
from .registry import resolve, strategy
from .schedules.compose import Chain, Phases
from .schedules.cosine import Cosine, CosineCycles, CosineRestarts, WarmupStableDecay
from .schedules.cyclic import Cyclic, OneCycle
from .schedules.decay import (
    Constant,
    Exponential,
    InverseSqrt,
    Linear,
    MultiStep,
    Polynomial,
    Step,
)
from .schedules.passthrough import TorchSchedulerSource, import_scheduler_class
from .schedules.plateau import PlateauController


@strategy("constant", "the base rate throughout (with warmup: HF constant_with_warmup)", "-")
def _constant(p: Params) -> Constant:
    return Constant()


@strategy("step", "multiply by gamma every step_size steps (torch StepLR)", "step_size, gamma=0.1")
def _step(p: Params) -> Step:
    return Step(step_size=p.duration("step_size"), gamma=p.number("gamma", 0.1, gt=0.0))


@strategy(
    "multistep", "multiply by gamma at each milestone (torch MultiStepLR)", "milestones, gamma=0.1"
)
def _multistep(p: Params) -> MultiStep:
    return MultiStep(milestones=p.durations("milestones"), gamma=p.number("gamma", 0.1, gt=0.0))


@strategy("exponential", "multiply by gamma every step (torch ExponentialLR)", "gamma")
def _exponential(p: Params) -> Exponential:
    return Exponential(gamma=p.number("gamma", gt=0.0))


@strategy(
    "linear",
    "linear from start_factor to end_factor over total_iters (torch LinearLR, HF linear)",
    "start_factor=1.0, end_factor=0.0, total_iters=rest of training",
)
def _linear(p: Params) -> Linear:
    return Linear(
        start_factor=p.number("start_factor", 1.0, ge=0.0),
        end_factor=p.number("end_factor", 0.0, ge=0.0),
        total_iters=p.duration("total_iters", None),
    )


@strategy(
    "polynomial",
    "polynomial decay to end_factor over total_iters (torch PolynomialLR, HF polynomial)",
    "total_iters=rest of training, power=1.0, end_factor=0.0",
)
def _polynomial(p: Params) -> Polynomial:
    return Polynomial(
        total_iters=p.duration("total_iters", None),
        power=p.number("power", 1.0, ge=0.0),
        end_factor=p.number("end_factor", 0.0, ge=0.0, lt=1.0),
    )


@strategy(
    "cosine",
    "half-cosine from the base rate to eta_min over T_max (torch CosineAnnealingLR, HF cosine)",
    "T_max=rest of training, eta_min=0.0",
)
def _cosine(p: Params) -> Cosine:
    return Cosine(T_max=p.duration("T_max", None), eta_min=p.number("eta_min", 0.0, ge=0.0))


@strategy(
    "cosine_restarts",
    "cosine restarted every T_0 steps, cycles growing by T_mult (torch "
    "CosineAnnealingWarmRestarts); or num_cycles equal cycles over training (HF hard restarts)",
    "T_0 | num_cycles=1, T_mult=1, eta_min=0.0",
)
def _cosine_restarts(p: Params) -> CosineRestarts | CosineCycles:
    eta_min = p.number("eta_min", 0.0, ge=0.0)
    if p.has("T_0"):
        if p.has("num_cycles"):
            raise ConfigError(
                p.key("num_cycles"), p.raw("num_cycles"), "set either T_0 or num_cycles"
            )
        return CosineRestarts(
            T_0=p.duration("T_0"), T_mult=p.integer("T_mult", 1, ge=1), eta_min=eta_min
        )
    if p.has("T_mult") and p.raw("T_mult") != 1:
        raise ConfigError(p.key("T_mult"), p.raw("T_mult"), "needs T_0 (the first cycle's length)")
    if p.ctx.rest is None:
        raise HorizonError(
            p.key("T_0"), None, "is required when the number of training steps is unknown"
        )
    return CosineCycles(
        length=p.ctx.rest, num_cycles=p.number("num_cycles", 1.0, gt=0.0), eta_min=eta_min
    )


def _check_momentum(p: Params, cycle_momentum: bool) -> None:
    if cycle_momentum and p.ctx.momentum_kind is None:
        name = type(p.ctx.optimizer).__name__ if p.ctx.optimizer is not None else "the optimizer"
        raise ConfigError(
            p.key("cycle_momentum"),
            True,
            f"{name} has neither momentum nor betas; set cycle_momentum=false",
        )


def _momentum_range(p: Params, base_default: float, max_default: float) -> tuple[tuple, tuple]:
    base = p.per_group("base_momentum", base_default, ge=0.0, le=1.0)
    high = p.per_group("max_momentum", max_default, ge=0.0, le=1.0)
    for i, (b, m) in enumerate(zip(base, high, strict=True)):
        if b > m:
            raise ConfigError(
                p.key("base_momentum"), b, f"must be <= max_momentum ({m}) for group {i}"
            )
    return base, high


@strategy(
    "cyclic",
    "triangle waves between base_lr and max_lr, momentum opposite (torch CyclicLR)",
    "max_lr, base_lr=group lr, step_size_up=2000, step_size_down=step_size_up, "
    "mode=triangular|triangular2|exp_range, gamma=1.0, cycle_momentum=true, "
    "base_momentum=0.8, max_momentum=0.9",
)
def _cyclic(p: Params) -> Cyclic:
    base = p.per_group("base_lr", list(p.ctx.base_lrs), ge=0.0)
    high = p.per_group("max_lr", ge=0.0)
    for i, (b, m) in enumerate(zip(base, high, strict=True)):
        if m < b:
            raise ConfigError(p.key("max_lr"), m, f"must be >= base_lr ({b}) for group {i}")
    up = p.duration("step_size_up", 2000)
    cycle_momentum = p.boolean("cycle_momentum", True)
    _check_momentum(p, cycle_momentum)
    base_m, max_m = _momentum_range(p, 0.8, 0.9)
    return Cyclic(
        base_lrs=None if not p.has("base_lr") else base,
        max_lrs=high,
        step_size_up=float(up),
        step_size_down=float(p.duration("step_size_down", up)),
        mode=p.choice("mode", "triangular", ("triangular", "triangular2", "exp_range")),
        gamma=p.number("gamma", 1.0, gt=0.0),
        cycle_momentum=cycle_momentum,
        base_momenta=base_m,
        max_momenta=max_m,
    )


@strategy(
    "onecycle",
    "warm up to max_lr, anneal far below it; momentum opposite (torch OneCycleLR)",
    "max_lr=group lr, pct_start=0.3, anneal_strategy=cos|linear, div_factor=25, "
    "final_div_factor=1e4, three_phase=false, cycle_momentum=true, base_momentum=0.85, "
    "max_momentum=0.95, total_steps=rest of training",
)
def _onecycle(p: Params) -> OneCycle:
    peaks = p.per_group("max_lr", list(p.ctx.base_lrs), ge=0.0)
    total = p.duration("total_steps", None)
    pct_start = p.number("pct_start", 0.3, gt=0.0, lt=1.0)
    three_phase = p.boolean("three_phase", False)
    if pct_start * total <= 1:
        raise ConfigError(
            p.key("pct_start"),
            pct_start,
            f"leaves no step to warm up in {total} steps; needs pct_start * total_steps > 1",
        )
    if three_phase and total * (1 - 2 * pct_start) + 1 <= 0:
        raise ConfigError(p.key("pct_start"), pct_start, "must be <= 0.5 with three_phase=true")
    cycle_momentum = p.boolean("cycle_momentum", True)
    _check_momentum(p, cycle_momentum)
    base_m, max_m = _momentum_range(p, 0.85, 0.95)
    return OneCycle(
        max_lrs=peaks if p.has("max_lr") else None,
        total_steps=total,
        pct_start=pct_start,
        anneal_strategy=p.choice("anneal_strategy", "cos", ("cos", "linear")),
        div_factor=p.number("div_factor", 25.0, gt=0.0),
        final_div_factor=p.number("final_div_factor", 1e4, gt=0.0),
        three_phase=three_phase,
        cycle_momentum=cycle_momentum,
        base_momenta=base_m,
        max_momenta=max_m,
    )


@strategy(
    "inverse_sqrt",
    "1/sqrt decay after the warmup (HF get_inverse_sqrt_schedule)",
    "timescale=warmup length (10000 without warmup)",
)
def _inverse_sqrt(p: Params) -> InverseSqrt:
    return InverseSqrt(timescale=p.duration("timescale", p.ctx.warmup_steps or 10_000))


class _WSD(WarmupStableDecay):
    """WSD's warmup starts from min_lr_ratio (as in Hugging Face), unless told otherwise."""

    @property
    def warmup_start_default(self) -> float:
        return self.min_lr_ratio


@strategy(
    "wsd",
    "warmup, stable at the base rate, decay to min_lr_ratio (HF get_wsd_schedule)",
    "num_decay_steps=10%, num_stable_steps=rest - decay, min_lr_ratio=0, "
    "decay_type=cosine|linear|1-sqrt, num_cycles=0.5",
)
def _wsd(p: Params) -> WarmupStableDecay:
    decay = p.duration("num_decay_steps", "10%")
    if p.has("num_stable_steps"):
        stable = p.duration("num_stable_steps", allow_zero=True)
    elif p.ctx.rest is None:
        raise HorizonError(
            p.key("num_stable_steps"),
            None,
            "is required when the number of training steps is unknown",
        )
    else:
        stable = p.ctx.rest - decay
        if stable < 0:
            raise ConfigError(
                p.key("num_decay_steps"),
                p.raw("num_decay_steps", decay),
                f"must fit in the {p.ctx.rest} steps after warmup",
            )
    return _WSD(
        num_stable_steps=stable,
        num_decay_steps=decay,
        min_lr_ratio=p.number("min_lr_ratio", 0.0, ge=0.0, le=1.0),
        decay_type=p.choice("decay_type", "cosine", ("linear", "cosine", "1-sqrt")),
        num_cycles=p.number("num_cycles", 0.5, gt=0.0),
    )


@strategy(
    "plateau",
    "multiply by factor when the monitored metric stops improving (torch ReduceLROnPlateau)",
    "monitor=val_loss, mode=min|max, factor=0.1, patience=10, threshold=1e-4, "
    "threshold_mode=rel|abs, cooldown=0, min_lr=0, eps=1e-8, check_on=validation|train_epoch, "
    "strict=true",
    top_level_only=True,
)
def _plateau(p: Params) -> PlateauController:
    return PlateauController(
        monitor=p.text("monitor", "val_loss"),
        mode=p.choice("mode", "min", ("min", "max")),
        factor=p.number("factor", 0.1, gt=0.0, lt=1.0),
        patience=p.integer("patience", 10),
        threshold=p.number("threshold", 1e-4, ge=0.0),
        threshold_mode=p.choice("threshold_mode", "rel", ("rel", "abs")),
        cooldown=p.integer("cooldown", 0),
        min_lrs=p.per_group("min_lr", 0.0, ge=0.0),
        eps=p.number("eps", 1e-8, ge=0.0),
        lrs=list(p.ctx.base_lrs),
        check_on=p.choice("check_on", "validation", ("validation", "train_epoch")),
        strict=p.boolean("strict", True),
    )


def _schedule_list(p: Params, key: str) -> list[Any]:
    items = p.raw(key)
    if isinstance(items, str | bytes | dict) or not hasattr(items, "__len__") or not items:
        raise ConfigError(p.key(key), items, "must be a non-empty list of schedule configs")
    return list(items)


@strategy(
    "sequence",
    "phases one after another, each from its own step 0 (torch SequentialLR)",
    "phases: [{name, duration, ...}, ...] (the last phase's duration defaults to the rest)",
)
def _sequence(p: Params) -> Phases:
    phases, starts = [], []
    items = _schedule_list(p, "phases")
    start = 0
    for i, item in enumerate(items):
        path = f"{p.key('phases')}[{i}]"
        item = dict(item) if hasattr(item, "keys") else item
        if not isinstance(item, dict):
            raise ConfigError(path, item, "must be a schedule config with name and duration")
        last = i == len(items) - 1
        duration = item.pop("duration", None)
        if duration is None:
            if not last:
                raise ConfigError(
                    f"{path}.duration", None, "is required for every phase but the last"
                )
            length = None if p.ctx.rest is None else p.ctx.rest - start
        else:
            length = resolve_duration(
                duration,
                f"{path}.duration",
                total_steps=p.ctx.total_steps,
                steps_per_epoch=p.ctx.steps_per_epoch,
            )
        if length is not None and length <= 0:
            raise ConfigError(f"{path}.duration", duration, "leaves no steps for this phase")
        if length is not None and p.ctx.rest is not None and start + length > p.ctx.rest:
            raise ConfigError(
                f"{path}.duration",
                duration,
                f"ends at step {start + length}, after the {p.ctx.rest} steps of training",
            )
        phases.append(resolve(item, p.ctx.with_rest(length), path, top=False))
        starts.append(start)
        if length is not None:
            start += length
    return Phases(phases=tuple(phases), starts=tuple(starts))


@strategy(
    "chain",
    "schedules applied together, their factors multiplied (torch ChainedScheduler)",
    "schedules: [{name, ...}, ...]",
)
def _chain(p: Params) -> Chain:
    items = _schedule_list(p, "schedules")
    return Chain(
        schedules=tuple(
            resolve(item, p.ctx, f"{p.key('schedules')}[{i}]", top=False)
            for i, item in enumerate(items)
        )
    )


# kwargs of torch schedulers that are durations and may be written as "2ep" or "5%"
_TORCH_DURATION_KWARGS = {
    "step_size",
    "T_max",
    "T_0",
    "total_iters",
    "total_steps",
    "step_size_up",
    "step_size_down",
}


@strategy(
    "torch",
    "any torch.optim.lr_scheduler class, driven as torch drives it",
    "_target_ (class path), and that class's keyword arguments",
    top_level_only=True,
)
def _torch(p: Params) -> TorchSchedulerSource:
    cls = import_scheduler_class(p.raw("_target_"), p.key("_target_"))
    kwargs: dict[str, Any] = {}
    for key in list(p.config):
        if key in ("name", "_target_", "warmup", "warmup_start_factor", "warmup_type"):
            continue
        value = p.raw(key)
        if key in _TORCH_DURATION_KWARGS and is_duration_text(value):
            value = resolve_duration(
                value,
                p.key(key),
                total_steps=p.ctx.total_steps,
                steps_per_epoch=p.ctx.steps_per_epoch,
            )
        elif key == "milestones" and isinstance(value, list):
            value = [
                resolve_duration(
                    v,
                    f"{p.key(key)}[{i}]",
                    total_steps=p.ctx.total_steps,
                    steps_per_epoch=p.ctx.steps_per_epoch,
                )
                for i, v in enumerate(value)
            ]
        kwargs[key] = value
    if p.ctx.optimizer is None:
        raise ConfigError(p.key("_target_"), p.raw("_target_"), "needs an optimizer to drive")
    try:
        return TorchSchedulerSource(cls, kwargs, p.ctx.optimizer, p.ctx.base_lrs)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            p.key("_target_"), p.raw("_target_"), f"torch refused the arguments: {err}"
        ) from None
