"""Hypergradient descent: the rate learns itself online from successive gradients.

Baydin et al., "Online Learning Rate Adaptation with Hypergradient Descent" (ICLR 2018). With
the update ``theta_t = theta_{t-1} - alpha_t * u_t`` (``u`` the optimizer's step direction),
the derivative of the loss at step ``t`` with respect to the previous rate is
``-g_t . u_{t-1}``, so gradient descent on the rate gives, once per step and param group::

    alpha_t = clip(alpha_{t-1} + beta * g_t . u_{t-1}, min_lr, max_lr)

where ``g_t`` is the gradient of step ``t`` (with the optimizer's L2 weight decay, as the
authors' code has it) and the dot product runs over the group's parameters. The rate of step
``t`` uses the gradient of step ``t``: it is set after the backward and before the update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..registry import register
from ..spec import Reader, param
from .base import Evaluate, Strategy

if TYPE_CHECKING:  # torch is imported when the source adapts, not to list strategies
    from torch import Tensor
    from torch.optim import Optimizer

HYPERGRADIENT_STATE_FORMAT = 1
VARIANTS = ("auto", "sgd", "adam", "delta")
# the authors' defaults: SGDHD 1e-6, AdamHD 1e-8 (delta serves Adam-like optimizers mostly)
DEFAULT_HYPERGRAD_LR = {"sgd": 1e-6, "adam": 1e-8, "delta": 1e-8}


def variant_for(optimizer: Optimizer) -> str:
    """``sgd`` for torch's SGD, ``adam`` for Adam and AdamW, ``delta`` for any other."""
    import torch

    if isinstance(optimizer, torch.optim.SGD):
        return "sgd"
    if isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        return "adam"
    return "delta"


@register
@dataclass(kw_only=True)
class Hypergradient(Strategy):
    """Adapt the rate online by gradient descent on it (hypergradient descent).

    At every optimizer step, after the backward and before the update, each param group's rate
    moves by ``hypergrad_lr`` times the dot product of the step's gradient ``g_t`` and the
    previous update direction ``u_{t-1}``: up while successive steps agree, down when they
    overshoot, clipped to ``[min_lr, max_lr]``. The direction ``u`` is the one the optimizer
    takes, read from its state (``variant``):

    - ``sgd`` (SGD-HD): the gradient with L2 weight decay; with momentum the momentum buffer
      (Nesterov: ``g + momentum * buffer``); ``maximize`` flips the gradient, as torch does;
    - ``adam`` (Adam-HD): ``m_hat / (sqrt(v_hat) + eps)`` as torch's Adam/AdamW step takes it
      (``amsgrad``: with the running maximum); AdamW's decoupled decay is not part of it;
    - ``delta`` (any optimizer, approximate): the last parameter change divided by its rate;
      it keeps a copy of the parameters, and a rate that reached 0 stays there;
    - ``auto``: ``sgd`` for SGD, ``adam`` for Adam and AdamW, else ``delta``.

    The first step has no previous direction and keeps the base rate; with a ``warmup`` the
    warmup ramps to the base rate and the adaptation starts from it at the first step after.
    A hypergradient that is not finite (an AMP step about to be skipped) leaves the rates.

    >>> import torch
    >>> w = torch.zeros(1, requires_grad=True)
    >>> opt = torch.optim.SGD([w], lr=0.01)
    >>> source = Hypergradient(hypergrad_lr=0.1, min_lr=(0.0,), max_lr=None, variant="sgd",
    ...                        lrs=[0.01])
    >>> for _ in range(3):  # minimise (w - 1)^2: successive gradients agree, the rate grows
    ...     opt.zero_grad()
    ...     ((w - 1) ** 2).sum().backward()
    ...     source.adapt(opt, active=True)
    ...     opt.param_groups[0]["lr"] = source.lrs[0]
    ...     opt.step()
    >>> [round(lr, 4) for lr in source.lrs]
    [0.4773]
    """

    name = "hypergradient"
    reference = "Baydin et al. 2018: SGD-HD, Adam-HD"
    nestable = False
    cycles_momentum = False
    hypergrad_lr: float | None = param(
        "number",
        "the rate's own learning rate (beta)",
        None,
        gt=0.0,
        shown="1e-6 (sgd), 1e-8 (adam, delta)",
        # the packaged option: AdamW at 0.01 on the demo app's digits MLP visibly adapts
        # (measured: up to 0.020 in the first steps, about 0.012 from then on)
        example=1e-4,
    )
    min_lr: tuple[float, ...] = param(
        "per_group", "the lowest rate (or one per group)", 0.0, ge=0.0
    )
    max_lr: tuple[float, ...] | None = param(
        "per_group", "the highest rate (or one per group); null: no bound", None, gt=0.0
    )
    variant: str = param("choice", "how the update direction is read", "auto", choices=VARIANTS)
    # state
    lrs: list[float] = field(default_factory=list)
    used_lrs: list[float] = field(default_factory=list)  # the rates of the last update
    adaptations: int = 0
    # per group, per parameter: the gradient (sgd without momentum, Nesterov) or the parameters
    # (delta) of the last update, or None
    previous: list[list[Any]] = field(default_factory=list)

    @classmethod
    def resolve(cls, read: Reader) -> Hypergradient:
        values = read.values()
        base = read.ctx.base_lrs
        optimizer = read.ctx.optimizer
        if optimizer is None:
            raise read.error("name", "needs the optimizer it adapts", "hypergradient")
        variant = values["variant"]
        if variant == "auto":
            variant = variant_for(optimizer)
        elif variant == "sgd" and "momentum" not in optimizer.defaults:
            raise read.error(
                "variant", f"sgd needs an SGD-like optimizer, not {type(optimizer).__name__}"
            )
        elif variant == "adam" and not {"betas", "eps"} <= set(optimizer.defaults):
            raise read.error(
                "variant", f"adam needs an Adam-like optimizer, not {type(optimizer).__name__}"
            )
        values["variant"] = variant
        if values["hypergrad_lr"] is None:
            values["hypergrad_lr"] = DEFAULT_HYPERGRAD_LR[variant]
        low, high = values["min_lr"], values["max_lr"]
        for i, lr in enumerate(base):
            if lr < low[i]:
                raise read.error("min_lr", f"must be <= the base rate {lr:g} of param group {i}")
            if high is not None and lr > high[i]:
                raise read.error("max_lr", f"must be >= the base rate {lr:g} of param group {i}")
        return cls(**values, lrs=list(base))

    def __post_init__(self) -> None:
        if isinstance(self.min_lr, int | float):  # a plain number, as the dataclass default
            self.min_lr = (float(self.min_lr),) * len(self.lrs)
        if not self.used_lrs:
            self.used_lrs = list(self.lrs)

    def bind(self, base_lrs: tuple[float, ...]) -> Evaluate:
        return lambda step: (list(self.lrs), None)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "hypergrad_lr": self.hypergrad_lr,
            "min_lr": list(self.min_lr),
            "max_lr": None if self.max_lr is None else list(self.max_lr),
            "variant": self.variant,
        }

    # -- the adaptation -------------------------------------------------------------------
    def adapt(self, optimizer: Optimizer, active: bool) -> None:
        """One step's adaptation: read the gradients now in ``optimizer`` (after the backward,
        before the update) and, when ``active`` (after the warmup), move each group's rate by
        the hypergradient. Then remember what the next step needs (the rates this update uses:
        ``lrs`` when active, else the groups' own)."""
        import torch

        groups = optimizer.param_groups
        if len(self.previous) != len(groups):
            self.previous = [[None] * len(group["params"]) for group in groups]
        sums: list[Tensor | None] = [
            self._hypergradient(optimizer, i, group) for i, group in enumerate(groups)
        ]
        found = [s for s in sums if s is not None]
        if found:  # one host-device sync for all groups
            device = found[0].device
            values = iter(torch.stack([s.to(device) for s in found]).tolist())
            hypergrads = [None if s is None else next(values) for s in sums]
        else:
            hypergrads = [None] * len(groups)
        for i, h in enumerate(hypergrads):
            if active and h is not None and math.isfinite(h):
                lr = max(self.lrs[i] + self.hypergrad_lr * h, self.min_lr[i])
                self.lrs[i] = lr if self.max_lr is None else min(lr, self.max_lr[i])
        self.used_lrs = list(self.lrs) if active else [float(g["lr"]) for g in groups]
        self.adaptations += int(active)
        self._remember(optimizer)

    def _hypergradient(self, optimizer: Optimizer, i: int, group: dict[str, Any]) -> Tensor | None:
        """``g_t . u_{t-1}`` over the group's parameters; None when no parameter has both."""
        import torch

        dots = []
        for j, p in enumerate(group["params"]):
            if p.grad is None:
                continue
            direction = self._direction(optimizer, i, j, p, group)
            if direction is None:
                continue
            gradient = self._gradient(optimizer, p, group)
            dots.append(torch.dot(_flat(gradient), _flat(direction)))
        if not dots:
            return None
        device = dots[0].device
        return torch.stack([d.to(device) for d in dots]).sum()

    def _gradient(self, optimizer: Optimizer, p: Tensor, group: dict[str, Any]) -> Tensor:
        """The gradient the optimizer descends: signed for ``maximize``, with L2 decay."""
        grad = p.grad.detach()
        if group.get("maximize", False):
            grad = -grad
        decay = group.get("weight_decay", 0.0)
        if decay and not _decoupled(optimizer, group):
            grad = grad.add(p.detach(), alpha=decay)
        return grad

    def _previous(self, i: int, j: int, p: Tensor) -> Tensor | None:
        saved = self.previous[i][j]
        if saved is not None and (saved.device != p.device or saved.dtype != p.dtype):
            saved = self.previous[i][j] = saved.to(device=p.device, dtype=p.dtype)
        return saved

    def _direction(
        self, optimizer: Optimizer, i: int, j: int, p: Tensor, group: dict[str, Any]
    ) -> Tensor | None:
        """``u_{t-1}``: the direction of the last update (``theta -= lr * u``), or None."""
        state = optimizer.state.get(p, {})
        if self.variant == "sgd":
            momentum = group.get("momentum", 0.0)
            if not momentum:
                return self._previous(i, j, p)
            buffer = state.get("momentum_buffer")
            if buffer is None or not group.get("nesterov", False):
                return buffer
            last = self._previous(i, j, p)
            return None if last is None else last.add(buffer, alpha=momentum)
        if self.variant == "adam":
            if "exp_avg" not in state or "step" not in state:
                return None
            steps = float(state["step"])
            if steps < 1:
                return None
            beta1, beta2 = (float(b) for b in group["betas"])
            second = state["max_exp_avg_sq"] if group.get("amsgrad", False) else state["exp_avg_sq"]
            # torch's Adam step: lr / (1 - beta1^k) * m / (sqrt(v) / sqrt(1 - beta2^k) + eps)
            denom = (second.sqrt() / math.sqrt(1.0 - beta2**steps)).add_(float(group["eps"]))
            return (state["exp_avg"] / denom).div_(1.0 - beta1**steps)
        # delta: (theta_{t-2} - theta_{t-1}) / alpha_{t-1}
        before = self._previous(i, j, p)
        rate = self.used_lrs[i] if i < len(self.used_lrs) else 0.0
        if before is None or rate <= 0.0:
            return None
        return (before - p.detach()).div_(rate)

    def _remember(self, optimizer: Optimizer) -> None:
        """Keep what the next step's direction needs and the optimizer's state lacks."""
        for i, group in enumerate(optimizer.param_groups):
            if self.variant == "adam":
                continue
            if self.variant == "sgd" and group.get("momentum", 0.0) and not group.get("nesterov"):
                continue  # the momentum buffer is the direction
            for j, p in enumerate(group["params"]):
                if p.grad is None:
                    self.previous[i][j] = None
                    continue
                keep = (
                    p.detach() if self.variant == "delta" else self._gradient(optimizer, p, group)
                )
                saved = self.previous[i][j]
                if saved is not None and saved.shape == keep.shape and saved.device == keep.device:
                    saved.copy_(keep)
                else:
                    self.previous[i][j] = keep.clone()

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": HYPERGRADIENT_STATE_FORMAT,
            "lrs": list(self.lrs),
            "used_lrs": list(self.used_lrs),
            "adaptations": self.adaptations,
            "previous": [list(row) for row in self.previous],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != HYPERGRADIENT_STATE_FORMAT:
            raise ValueError(f"hypergradient state has unknown format {state.get('format')!r}")
        self.lrs = [float(lr) for lr in state["lrs"]]
        self.used_lrs = [float(lr) for lr in state.get("used_lrs", self.lrs)]
        self.adaptations = int(state.get("adaptations", 0))
        self.previous = [list(row) for row in state.get("previous", [])]


def _flat(tensor: Tensor) -> Tensor:
    """A 1-d view for the dot product, in float32 at least (half-precision sums drift)."""
    import torch

    flat = tensor.reshape(-1)
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    return flat


def _decoupled(optimizer: Optimizer, group: dict[str, Any]) -> bool:
    """Whether the weight decay is decoupled (AdamW), so not part of the gradient."""
    import torch

    return isinstance(optimizer, torch.optim.AdamW) or bool(
        group.get("decoupled_weight_decay", False)
    )
