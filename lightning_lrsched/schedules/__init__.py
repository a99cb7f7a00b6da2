"""Every rate source: the built-in strategies (each one declaration: parameters + formula),
their composition (warmup, sequence, chain), reduce-on-plateau and the torch pass-through.

Importing this package registers the strategies, in the order ``lrsched list`` shows them.
"""

# registration order = listing order: decays, cosines, cycles, metric- and gradient-driven,
# composition, torch
from . import decay, cosine, cyclic, plateau, hypergradient, compose, passthrough  # noqa: I001
from .base import (
    GradientDriven,
    MetricDriven,
    RateSource,
    ScaledSchedule,
    Schedule,
    Stateful,
    Strategy,
)

__all__ = [
    "GradientDriven",
    "MetricDriven",
    "RateSource",
    "ScaledSchedule",
    "Schedule",
    "Stateful",
    "Strategy",
    "compose",
    "cosine",
    "cyclic",
    "decay",
    "hypergradient",
    "passthrough",
    "plateau",
]
