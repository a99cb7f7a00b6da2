"""One error type for bad configuration: a message naming key, value and what is allowed."""

from __future__ import annotations

import re
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


class HorizonError(ConfigError):
    """A value that needs the number of training steps when the run has none."""


def blamed_key(options: dict[str, Any], message: str) -> str | None:
    """The option a library's error message is about: one it names, else one whose value it
    quotes (so that our one-line error can name the key)."""
    usable = {
        k: v
        for k, v in options.items()
        if not k.startswith("_") and v is not None and not isinstance(v, bool | dict | list)
    }
    for key in usable:
        if re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", message):
            return key
    for key, value in usable.items():
        if re.search(rf"(?<![\w.]){re.escape(str(value))}(?!\w|\.\d)", message):
            return key
    return None
