"""Hydra structured configs: registered in Hydra's ConfigStore under ``lrsched_schema/``.

The YAML options in ``lightning_lrsched/conf/lrsched/<group>/`` build on these schemas, so
Hydra checks keys and types when it composes a config; the packaged configs are visible to any
Hydra app through the ``hydra_plugins`` search-path plugin (``lrsched/scheduler=onecycle``).
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from .schedulers import SCHEDULER_SCHEMAS
from .tasks import CNN1DConfig, DigitsConfig, MLPConfig, MNIST1DConfig, TrainConfig
from .training import (
    AdamConfig,
    AdamWConfig,
    AdamWScheduleFreeConfig,
    CSVLoggerConfig,
    LRLoggerConfig,
    MLflowLoggerConfig,
    OptimizerConfig,
    PreemptionConfig,
    RMSpropConfig,
    RunTrackingConfig,
    SGDConfig,
    SGDScheduleFreeConfig,
    TrainerConfig,
)

SCHEMA_ROOT = "lrsched_schema"

_GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "scheduler": dict(SCHEDULER_SCHEMAS),
    "optimizer": {
        "base": OptimizerConfig,
        "sgd": SGDConfig,
        "adamw": AdamWConfig,
        "adam": AdamConfig,
        "rmsprop": RMSpropConfig,
        "adamw_schedulefree": AdamWScheduleFreeConfig,
        "sgd_schedulefree": SGDScheduleFreeConfig,
    },
    "trainer": {"base": TrainerConfig},
    "logger": {"mlflow": MLflowLoggerConfig, "csv": CSVLoggerConfig},
    "data": {"digits": DigitsConfig, "mnist1d": MNIST1DConfig},
    "model": {"mlp": MLPConfig, "cnn1d": CNN1DConfig},
    "callbacks": {
        "lr_logger": LRLoggerConfig,
        "run_tracking": RunTrackingConfig,
        "preemption": PreemptionConfig,
    },
}


def schema_by_class_name(name: str) -> type | None:
    """The registered schema dataclass called ``name`` (for error messages)."""
    for schemas in _GROUP_SCHEMAS.values():
        for schema in schemas.values():
            if schema.__name__ == name:
                return schema
    return TrainConfig if name == "TrainConfig" else None


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    for group, schemas in _GROUP_SCHEMAS.items():
        for name, schema in schemas.items():
            store.store(group=f"{SCHEMA_ROOT}/{group}", name=name, node=schema)
    store.store(group=SCHEMA_ROOT, name="train", node=TrainConfig)


__all__ = ["SCHEMA_ROOT", "register_configs"]
