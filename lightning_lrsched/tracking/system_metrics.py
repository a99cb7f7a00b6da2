"""MLflow's system metrics (CPU, memory, disk, network, GPU where present) from every node of a
multi-node run: one sampler per node (the process of local rank zero), named after its node.

The samples go to the run's ``system/node<N>/...`` metrics, so the MLflow UI shows each node
of a job side by side (not node 0 alone, and not once per GPU). Each node's sampler writes to
the run directly, as MLflow's own sampler does, so it needs the tracking server (or the shared
SQLite file) from every node, which a multi-node job has anyway.
"""

from __future__ import annotations

import importlib.util
import socket
from typing import Any

from ..errors import ConfigError


def check_system_metrics(enabled: Any, interval: Any) -> None:
    """Refuse, before training, what the sampler cannot do (one line naming the key)."""
    if not isinstance(enabled, bool):
        raise ConfigError("system_metrics", enabled, "must be true or false")
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
        raise ConfigError("system_metrics_interval", interval, "must be a number of seconds > 0")
    if enabled and importlib.util.find_spec("psutil") is None:
        raise ConfigError(
            "system_metrics", enabled, "MLflow samples them with psutil: pip install psutil"
        )


def start_node_sampler(tracking_uri: str, run_id: str, node: int, interval: float) -> Any:
    """Start MLflow's sampler for this node's run ``run_id`` and return it (``.finish()``).

    MLflow offers per-node sampling through ``mlflow.start_run(log_system_metrics=True)``, which
    would also make this process end the run (mark it FINISHED) when it ends; the sampler class
    behind it, :class:`SystemMetricsMonitor`, samples without touching the run's status. It lives
    in a module of MLflow's without a public name; this is the one place that reaches it, and
    ``tests/test_launch.py`` (the SLURM job's per-node metrics) fails when MLflow changes it.
    """
    from mlflow import MlflowClient
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    name = f"node{node}"
    MlflowClient(tracking_uri).set_tag(run_id, f"lrsched.{name}.host", socket.gethostname())
    sampler = SystemMetricsMonitor(
        run_id,
        sampling_interval=interval,
        samples_before_logging=1,
        resume_logging=True,  # a resumed job's samples continue after the earlier ones
        node_id=name,
        tracking_uri=tracking_uri,
    )
    sampler.start()
    return sampler


def stop_node_sampler(sampler: Any) -> None:
    """Take one last sample and write it, then stop ``sampler``: MLflow's sampler writes only
    whole intervals, so a node whose training is shorter than one would show nothing."""
    try:
        sampler.collect_metrics()
        sampler.publish_metrics(sampler.aggregate_metrics())
    finally:
        sampler.finish()
