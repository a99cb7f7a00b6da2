"""Turning a resolved config into MLflow params: flattened, secrets redacted, long values kept out.

>>> flatten_params({"optimizer": {"lr": 0.1}, "logger": {"tracking_uri": "http://u:pw@host"}})
{'optimizer/lr': '0.1', 'logger/tracking_uri': 'http://***@host'}
>>> flatten_params({"db": {"password": "hunter2"}, "api_token": "abc"})
{'db/password': '***', 'api_token': '***'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param's value
_SECRET_WORDS = {
    "password", "passwd", "pass", "pwd", "secret", "secrets", "token", "tokens", "apikey",
    "key", "keys", "credential", "credentials", "auth", "authorization", "signature",
    "cookie", "private",
}  # fmt: skip
_URI_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@", re.I)
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&](?:token|access_token|api_key|apikey|key|secret|password|sig|signature)=)"
    r"(?P<value>[^&\s]+)",
    re.IGNORECASE,
)


def redact_value(value: str) -> str:
    """Hide credentials inside URIs (``user:pass@``, ``?token=``)."""
    value = _URI_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", value)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('name')}{REDACTED}", value)


def is_secret_key(key: str) -> bool:
    """Whether the last part of a key names a secret (``db_password``, ``api-key``, ``TOKEN``;
    not ``tokenizer`` or ``monitor``)."""
    words = re.split(r"[^a-z0-9]+", key.rsplit("/", 1)[-1].lower())
    return any(word in _SECRET_WORDS for word in words)


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` → ``{"a/b": "1"}``; lists become their text; secrets are redacted
    (everything under a secret-named key, and secrets inside lists too)."""
    out: dict[str, str] = {}
    for key, value in redact_config(config, prefix).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, f"{name}/"))
        else:
            out[name] = str(value)
    return out


def split_long(params: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(params short enough for MLflow, the long ones), the latter to go to an artifact."""
    short = {k: v for k, v in params.items() if len(v) <= MAX_PARAM_LENGTH}
    long = {k: v for k, v in params.items() if len(v) > MAX_PARAM_LENGTH}
    return short, long


def redact_config(config: Any, path: str = "", *, secret: bool = False) -> Any:
    """The redaction applied to a nested config: every leaf under a secret-named key (at any
    depth, inside lists too) is hidden, and credentials inside URIs in the other strings."""
    if isinstance(config, Mapping):
        return {
            key: redact_config(
                value, f"{path}{key}/", secret=secret or is_secret_key(f"{path}{key}")
            )
            for key, value in config.items()
        }
    if isinstance(config, list | tuple):
        return [redact_config(v, path, secret=secret) for v in config]
    if secret and config not in (None, ""):
        return REDACTED
    if isinstance(config, str):
        return redact_value(config)
    return config
