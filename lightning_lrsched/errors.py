"""One error type for bad configuration: a message naming key, value and what is allowed."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value that cannot be used.

    The message is one line: ``<key>=<value>: <what is allowed>``, so a user can find and fix the
    offending override without reading a traceback.
    """

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"{key}={value!r}: {allowed}")
