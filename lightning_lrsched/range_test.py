"""The learning-rate range test (Smith 2015, 2017): sweep the rate upward over a few steps,
watch the loss, and read a good rate off the curve.

:func:`sweep` trains for at most ``num_steps`` steps, rate ``i`` being
``min_lr * (max_lr / min_lr) ** (i / (num_steps - 1))`` (``mode="exponential"``) or
``min_lr + (max_lr - min_lr) * i / (num_steps - 1)`` (``"linear"``), and records each step's
loss and its bias-corrected exponential average
``avg_i = beta * avg_{i-1} + (1 - beta) * loss_i``, ``smoothed_i = avg_i / (1 - beta ** (i + 1))``.
It stops early once the smoothed loss exceeds ``diverge_threshold`` times the lowest seen, or the
loss is not finite. Everything it touched (weights, buffers, optimizer state and settings, the
random number generators) is put back afterwards, bit for bit, so a training run after the test
is the run it would have been without it.

The suggestions (:class:`RangeTestResult`) read the smoothed curve between ``skip_begin`` points
from its start and ``skip_end`` points from its end:

- ``valley`` (the default, fastai's): the middle of the longest stretch over which the loss keeps
  falling. Robust where the steepest slope is thrown off by noise or an early spike;
- ``steep``: the rate where the loss falls fastest against ``log(rate)``, before its lowest point;
- ``minimum``: the rate of the lowest loss, divided by 10.

>>> import torch
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> w = torch.nn.Parameter(torch.tensor([4.0]))
>>> opt = torch.optim.SGD([w], lr=0.1)
>>> result = sweep([w], opt, lambda _: (w**2).sum(), [None] * 100, min_lr=1e-4, max_lr=10.0)
>>> 1e-3 < result.suggestion() < 1.0, result.stopped_early, w.item()
(True, True, 4.0)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import ConfigError
from .random_state import random_state_kept
from .spec import check_number

SUGGESTIONS = ("valley", "steep", "minimum")
MODES = ("exponential", "linear")


@dataclass(frozen=True)
class RangeTestConfig:
    """The settings of one range test, checked on construction (one-line ``ConfigError``)."""

    min_lr: float = 1e-7
    max_lr: float = 10.0
    num_steps: int = 100
    mode: str = "exponential"
    beta: float = 0.98  # smoothing of the loss
    diverge_threshold: float = 4.0  # stop when smoothed loss > this x the lowest
    suggestion: str = "valley"
    skip_begin: int = 10
    skip_end: int = 5

    def __post_init__(self) -> None:
        check_number("lr_finder.min_lr", self.min_lr, gt=0.0)
        check_number("lr_finder.max_lr", self.max_lr, gt=0.0)
        if not self.max_lr > self.min_lr:
            raise ConfigError("lr_finder.max_lr", self.max_lr, f"must be > min_lr={self.min_lr}")
        for key in ("num_steps", "skip_begin", "skip_end"):
            value = getattr(self, key)
            low = 2 if key == "num_steps" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"lr_finder.{key}", value, f"must be a whole number >= {low}")
        if self.mode not in MODES:
            raise ConfigError("lr_finder.mode", self.mode, f"must be one of {', '.join(MODES)}")
        if self.suggestion not in SUGGESTIONS:
            raise ConfigError(
                "lr_finder.suggestion", self.suggestion, f"must be one of {', '.join(SUGGESTIONS)}"
            )
        check_number("lr_finder.beta", self.beta, ge=0.0, lt=1.0)
        check_number("lr_finder.diverge_threshold", self.diverge_threshold, gt=1.0)
        if self.skip_begin + self.skip_end + 3 > self.num_steps:
            raise ConfigError(
                "lr_finder.num_steps",
                self.num_steps,
                f"must leave at least 3 points after skip_begin={self.skip_begin} and "
                f"skip_end={self.skip_end}",
            )

    def rate(self, i: int) -> float:
        """The rate of sweep step ``i``."""
        share = i / (self.num_steps - 1)
        if self.mode == "linear":
            return self.min_lr + (self.max_lr - self.min_lr) * share
        return self.min_lr * (self.max_lr / self.min_lr) ** share


@dataclass
class RangeTestResult:
    """The points of one sweep and the rates read off them."""

    config: RangeTestConfig
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    stopped_early: bool = False

    def _window(self) -> tuple[int, int]:
        """The points suggestions read: ``skip_begin`` off the start, ``skip_end`` off the end
        (fewer when the sweep stopped early: at least 3 points stay)."""
        n = len(self.smoothed)
        if n < 3:
            raise ValueError(
                f"the range test recorded {n} point(s): too few to suggest a rate; lower "
                "lr_finder.min_lr or raise lr_finder.diverge_threshold"
            )
        begin = min(self.config.skip_begin, n - 3)
        end = max(begin + 3, n - self.config.skip_end)
        return begin, min(end, n)

    def suggestion(self, method: str | None = None) -> float:
        """The rate ``method`` (default: the configured one) reads off the smoothed curve."""
        method = method or self.config.suggestion
        begin, end = self._window()
        lrs, losses = self.lrs[begin:end], self.smoothed[begin:end]
        if method == "valley":
            return lrs[_valley(losses)]
        if method == "steep":  # before the lowest loss: past it the curve only diverges
            lowest = min(range(len(losses)), key=losses.__getitem__)
            return lrs[_steepest(lrs[: lowest + 1], losses[: lowest + 1])]
        if method == "minimum":
            return lrs[min(range(len(losses)), key=losses.__getitem__)] / 10.0
        allowed = f"must be one of {', '.join(SUGGESTIONS)}"
        raise ConfigError("lr_finder.suggestion", method, allowed)

    def suggestions(self) -> dict[str, float]:
        """Every method's rate: ``{"valley": ..., "steep": ..., "minimum": ...}``."""
        return {method: self.suggestion(method) for method in SUGGESTIONS}

    def figure(self) -> Any:
        """Loss against rate (log scale), raw and smoothed, each suggestion marked."""
        from matplotlib.figure import Figure

        figure = Figure(figsize=(7, 4), layout="constrained")
        axes = figure.add_subplot()
        axes.plot(self.lrs, self.losses, color="0.75", linewidth=0.8, label="loss")
        axes.plot(self.lrs, self.smoothed, color="C0", label="smoothed loss")
        markers = {"valley": "o", "steep": "^", "minimum": "s"}
        for i, (method, rate) in enumerate(self.suggestions().items()):
            at = min(range(len(self.lrs)), key=lambda j: abs(math.log(self.lrs[j] / rate)))
            chosen = " (chosen)" if method == self.config.suggestion else ""
            axes.plot(
                [rate], [self.smoothed[at]], markers[method], color=f"C{i + 1}", markersize=8,
                label=f"{method}: {rate:.3g}{chosen}",
            )  # fmt: skip
        if self.config.mode == "exponential":
            axes.set_xscale("log")
        # the y range of the useful part: up to the lowest loss, with room above for the rise
        lowest = min(range(len(self.smoothed)), key=self.smoothed.__getitem__)
        low, high = self.smoothed[lowest], max(self.smoothed[: lowest + 1])
        span = high - low or abs(high) or 1.0
        axes.set_ylim(low - 0.1 * span, high + 0.5 * span)
        stop = " (stopped: diverging)" if self.stopped_early else ""
        axes.set(xlabel="learning rate", ylabel="training loss", title=f"range test{stop}")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
        return figure

    def table(self) -> str:
        """The suggestions as lines of text, the chosen one marked."""
        lines = [f"range test: {len(self.lrs)} steps, {self.lrs[0]:.3g} .. {self.lrs[-1]:.3g}"]
        if self.stopped_early:
            lines[0] += " (stopped early: the loss diverged)"
        for method, rate in self.suggestions().items():
            mark = "  <- suggestion" if method == self.config.suggestion else ""
            lines.append(f"  {method:<8} {rate:.4g}{mark}")
        return "\n".join(lines)


def _valley(losses: Sequence[float]) -> int:
    """Index in the middle of the longest run of decreasing loss (a longest decreasing
    subsequence ending at each point, O(n^2) on ~100 points), 2/3 of the way down it."""
    n = len(losses)
    length = [1] * n
    best_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and length[i] < length[j] + 1:
                length[i] = length[j] + 1
        if length[i] > length[best_end]:
            best_end = i
    start = best_end - length[best_end] + 1
    third = (best_end - start) / 3
    return min(n - 1, start + int(third) + int(third / 2))


def _steepest(lrs: Sequence[float], losses: Sequence[float]) -> int:
    """Index of the most negative slope of loss against log(rate) (central differences)."""
    if len(losses) < 2:
        return 0
    x = [math.log(lr) for lr in lrs]
    slopes = []
    for i in range(len(losses)):
        lo, hi = max(0, i - 1), min(len(losses) - 1, i + 1)
        slopes.append((losses[hi] - losses[lo]) / (x[hi] - x[lo]))
    return min(range(len(slopes)), key=slopes.__getitem__)


class _Snapshot:
    """Everything a sweep changes, taken before it and put back after it, bit for bit."""

    def __init__(self, modules: Iterable[Any], optimizer: torch.optim.Optimizer) -> None:
        self.modules = list(modules)
        self.states = [_clone_state(m.state_dict()) for m in self.modules]
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.values = [p.detach().clone() for p in self.params]
        # the group settings (rate, schedule-free's mode, ...) come back with the state dict
        self.optimizer_state = copy.deepcopy(optimizer.state_dict())

    def restore(self) -> None:
        with torch.no_grad():
            for module, state in zip(self.modules, self.states, strict=True):
                module.load_state_dict(state)
            for param, value in zip(self.params, self.values, strict=True):
                param.copy_(value)
        self.optimizer.load_state_dict(self.optimizer_state)  # replaces state and settings


def _clone_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def sweep(
    modules: Any,
    optimizer: torch.optim.Optimizer,
    loss_of: Callable[[Any], torch.Tensor],
    batches: Iterable[Any],
    config: RangeTestConfig | None = None,
    *,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    on_step: Callable[[int, float, float, float], None] | None = None,
    **settings: Any,
) -> RangeTestResult:
    """Run the range test and put everything back; return its points and suggestions.

    ``modules``: the module (or modules) whose state the sweep changes and must restore, buffers
    included (the optimizer's parameters are restored in any case). ``loss_of(batch)`` computes
    the loss of one batch (forward only: the sweep calls ``backward`` and ``optimizer.step``).
    ``batches``: the batches to sweep on, iterated again when they run out.
    ``config`` or keyword ``settings`` (``min_lr``, ``max_lr``, ``num_steps``,
    ``mode``, ``beta``, ``diverge_threshold``, ``suggestion``, ``skip_begin``, ``skip_end``):
    see :class:`RangeTestConfig`. ``reduce`` (distributed training) turns each step's loss and
    gradients into their mean over processes, so every process sweeps the same curve.
    ``on_step(i, rate, loss, smoothed)``, if given, is called after each recorded step (a
    progress bar's hook; it must not touch the model or the optimizer).
    """
    config = config or RangeTestConfig(**settings)
    if isinstance(modules, torch.nn.Module):
        modules = [modules]
    stateful = [m for m in modules if isinstance(m, torch.nn.Module)]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    snapshot = _Snapshot(stateful, optimizer)
    result = RangeTestResult(config)
    with random_state_kept():  # dropout and shuffling in the sweep: training sees no trace
        try:
            train_mode = getattr(optimizer, "train", None)
            if callable(train_mode):  # schedule-free optimizers step in train mode only
                train_mode()
            _sweep_steps(
                optimizer, params, loss_of, _cycled(batches), config, reduce, result, on_step
            )
        finally:
            optimizer.zero_grad(set_to_none=True)
            snapshot.restore()
    return result


def _sweep_steps(
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    loss_of: Callable[[Any], torch.Tensor],
    batches: Iterator[Any],
    config: RangeTestConfig,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None,
    result: RangeTestResult,
    on_step: Callable[[int, float, float, float], None] | None = None,
) -> None:
    """The sweep itself: one training step per rate, recorded into ``result`` until the loss
    diverges or the rates run out."""
    average, best = 0.0, math.inf
    for i in range(config.num_steps):
        rate = config.rate(i)
        for group in optimizer.param_groups:
            group["lr"] = rate
        optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = loss_of(next(batches))
            loss.backward()
        if reduce is not None:
            loss = reduce(loss.detach())
            for p in params:
                if p.grad is not None:
                    p.grad.copy_(reduce(p.grad))
        value = float(loss.detach())
        if not math.isfinite(value):
            result.stopped_early = True
            return
        optimizer.step()
        average = config.beta * average + (1 - config.beta) * value
        smooth = average / (1 - config.beta ** (i + 1))
        result.lrs.append(rate)
        result.losses.append(value)
        result.smoothed.append(smooth)
        if on_step is not None:
            on_step(i, rate, value, smooth)
        if i > 0 and smooth > config.diverge_threshold * best:
            result.stopped_early = True
            return
        best = min(best, smooth)


def _cycled(batches: Iterable[Any]) -> Any:
    """The batches again and again, so that a short loader feeds a long sweep: a loader (an
    iterable) is iterated anew; a one-pass iterator's batches are kept to be seen again."""
    reiterable = iter(batches) is not batches
    seen: list[Any] = []
    while True:
        count = 0
        for batch in batches if reiterable else (seen or batches):
            count += 1
            if not reiterable and len(seen) < count:
                seen.append(batch)
            yield batch
        if count == 0:
            raise ConfigError("lr_finder", "no batches", "the training data yielded no batch")
