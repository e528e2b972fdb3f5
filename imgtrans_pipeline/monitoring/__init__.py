"""Observability: what the seeds' ``/metrics``, ``/health`` and ``/worker/status`` showed, backed by Dagster + Redis.

* :mod:`.collect` — one :class:`StatusSnapshot` from the Redis intake (queue depth, claimed, dead letters), the
  Dagster instance (runs of ``translate_images`` by status, requests in flight, throughput, GPU pool slots) and
  the artifact store (per-stage timings from recent ``meta.json`` files);
* :mod:`.prometheus` — the snapshot as Prometheus text (format 0.0.4) and a small HTTP server with ``/metrics``,
  ``/health`` and ``/status``;
* :mod:`.cli` — ``imgtrans status`` and ``imgtrans metrics-server``.

Nothing here imports Dagster at module level: ``imgtrans status`` against an unreachable Redis should answer fast.
"""

from .collect import GpuPool, StageTiming, StatusSnapshot, check_health, collect_status, quantile
from .prometheus import MetricsServer, render_prometheus

__all__ = [
    "GpuPool",
    "MetricsServer",
    "StageTiming",
    "StatusSnapshot",
    "check_health",
    "collect_status",
    "quantile",
    "render_prometheus",
]
