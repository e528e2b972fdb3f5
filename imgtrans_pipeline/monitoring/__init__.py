"""Observability: what the seeds' ``/metrics``, ``/health`` and ``/worker/status`` showed, backed by Dagster + Redis.

* :mod:`.collect` — one :class:`StatusSnapshot` from the Redis intake (queue depth, claimed, dead letters), the
  Dagster instance (runs of ``translate_images`` by status, requests in flight, throughput, GPU pool slots) and
  the artifact store (per-stage timings from recent ``meta.json`` files);
* :mod:`.prometheus` — the snapshot as ``prometheus_client`` metric families (:class:`SnapshotCollector`);
* :mod:`.quality` — the ``imgtrans_quality_score`` histogram from rendered-image materialization metadata;
* :mod:`.monitor` — :class:`Monitor`: cached snapshots, health checks and the registry of both collectors,
  served over HTTP by ``imgtrans_pipeline.web``;
* :mod:`.cli` — ``imgtrans status`` and ``imgtrans metrics-server``.

Nothing here imports Dagster at module level: ``imgtrans status`` against an unreachable Redis should answer fast.
Nothing here reads environment variables either, except the command-line entry points in :mod:`.cli`.
"""

from .collect import GpuPool, StageTiming, StatusSnapshot, check_health, collect_status, quantile
from .monitor import Monitor
from .prometheus import SnapshotCollector, render_prometheus, snapshot_metrics
from .quality import QualityScores

__all__ = [
    "GpuPool",
    "Monitor",
    "QualityScores",
    "SnapshotCollector",
    "StageTiming",
    "StatusSnapshot",
    "check_health",
    "collect_status",
    "quantile",
    "render_prometheus",
    "snapshot_metrics",
]
