"""How to start a Ray node that spends its CPU on the analysis, not on itself.

``sonic ingest --ray`` joins a cluster someone started (``ray start``, or a
``ray.cluster_utils.Cluster`` in the tests and ``bench/scale.py``); it never starts
one. What a node costs while it runs is therefore decided where it is started, and
Ray's defaults are made for a cluster with a dashboard: per-node metrics agents
that export every few seconds, task events sent to the GCS for the state API and
the timeline, a log monitor that tails every worker's log for drivers that print
them, idle workers prestarted when the first driver connects. On a two-core
machine those cost a measurable share of an ingest (``bench/ray_idle.py``,
docs/benchmarks.md). None of them is needed by an ingest: the driver shows its own
progress, connects with ``log_to_driver=False``, and the actors are created once.

``LEAN_SYSTEM_CONFIG`` is what the head takes (``_system_config`` for
``ray.init``/``Cluster``, ``--system-config`` for ``ray start --head``; Ray hands it
to every node that joins). :func:`lean_node_args` is the same as keyword arguments
for a ``Cluster`` node, :data:`RAY_START_HEAD` the ``ray start`` line
docs/scaling.md gives.
"""

from __future__ import annotations

import json
from typing import Any

# RayConfig entries (ray 2.60, ray_config_def.h); each one is read by the GCS and
# every raylet and worker of the cluster.
LEAN_SYSTEM_CONFIG: dict[str, Any] = {
    # no per-process metrics recorded and exported to the node's metrics agent
    "enable_metrics_collection": False,
    # 0: no task state events buffered and sent to the GCS (the state API, `ray list
    # tasks`, the dashboard's timeline); an ingest reads none of them
    "task_events_report_interval_ms": 0,
}

# environment for every process of the node (and the driver): no usage-stats report
LEAN_ENV: dict[str, str] = {"RAY_USAGE_STATS_ENABLED": "0"}


def lean_env() -> dict[str, str]:
    """The environment variables a lean node (and its driver) should run with."""
    return dict(LEAN_ENV)


def lean_node_args(base: dict[str, Any] | None = None, head: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``Cluster(head_node_args=...)`` / ``add_node``: a lean node.

    ``head``: the system config and the dashboard are the head's to set (a worker
    node gets the config from the GCS and has no dashboard; ``Cluster`` already
    starts no log monitor on its added nodes).
    """
    args = dict(base or {})
    if head:
        args.update(
            include_dashboard=False,
            include_log_monitor=False,  # the driver connects with log_to_driver=False
            _system_config=dict(LEAN_SYSTEM_CONFIG),
        )
    return args


RAY_START_HEAD = (
    "RAY_USAGE_STATS_ENABLED=0 ray start --head --port 6379 --num-cpus $(nproc) "
    "--include-dashboard=false --include-log-monitor=false "
    f"--system-config='{json.dumps(LEAN_SYSTEM_CONFIG, separators=(',', ':'))}'"
)
