"""MLflow tracking that never makes training wait: ``MLflowTracker`` + ``RunTracking``."""

from .callback import RunTracking, saved_run_id
from .params import flatten_params, redact_value
from .store import prepare_store, resolve_uri
from .tracker import MLflowTracker

__all__ = [
    "MLflowTracker",
    "RunTracking",
    "flatten_params",
    "prepare_store",
    "redact_value",
    "resolve_uri",
    "saved_run_id",
]
