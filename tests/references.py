"""Which test compares which strategy with its reference implementation (torch, Hugging Face).

A parity test declares the strategies it checks with ``@reference_test(...)``;
``tests/test_registry.py`` fails when a registered strategy has none, so a new strategy cannot
land without a comparison against the implementation it claims to equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

REFERENCE_TESTS: dict[str, list[str]] = {}  # strategy name -> "module::test" names


def reference_test(*names: str) -> Callable[[F], F]:
    def record(test: F) -> F:
        for name in names:
            REFERENCE_TESTS.setdefault(name, []).append(f"{test.__module__}::{test.__name__}")
        return test

    return record
