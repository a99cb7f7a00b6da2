"""The small optimizers the schedule tests drive: one tensor per param group."""

from __future__ import annotations

from collections.abc import Sequence

import torch

KINDS = ("sgd", "adam", "adamw", "adagrad")


def make_optimizer(
    lrs: Sequence[float] = (0.1,),
    kind: str = "sgd",
    *,
    default_lr: float | None = None,
    numel: int = 1,
) -> torch.optim.Optimizer:
    """One group per base rate in ``lrs``; SGD with momentum 0.9, Adam/AdamW with betas
    (0.9, 0.999), or Adagrad (neither momentum nor betas). ``default_lr`` is the optimizer's
    own ``lr`` (Hugging Face reads it), the first group's rate unless given."""
    groups = [{"params": [torch.zeros(numel, requires_grad=True)], "lr": lr} for lr in lrs]
    lr = lrs[0] if default_lr is None else default_lr
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999))
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    if kind == "adagrad":
        return torch.optim.Adagrad(groups, lr=lr)
    raise AssertionError(f"unknown optimizer kind {kind!r}; known: {', '.join(KINDS)}")
