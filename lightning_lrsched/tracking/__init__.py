"""MLflow tracking that never makes training wait: ``MLflowTracker`` + ``RunTracking``.

Imported on first use, so the writer process (:mod:`.sink`) starts without Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "MLflowTracker": ".tracker",
    "RunTracking": ".callback",
    "saved_run_id": ".callback",
    "flatten_params": ".params",
    "redact_value": ".params",
    "prepare_store": ".store",
    "resolve_uri": ".store",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
