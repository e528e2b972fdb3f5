"""Prometheus metrics of a :class:`StatusSnapshot`, as a ``prometheus_client`` custom collector.

:class:`SnapshotCollector` takes a fresh (or briefly cached) snapshot on each scrape and yields metric families;
``prometheus_client`` writes the exposition (text 0.0.4 or 1.0.0, or OpenMetrics, as the scraper asks).
Collectors of other sources (:class:`~.quality.QualityScores`) sit next to it in one ``CollectorRegistry``
(see :meth:`.monitor.Monitor.registry`).

Fields that could not be read (Redis down, ...) are left out rather than exported as 0 (a zero queue depth
would look like an idle queue) and ``imgtrans_up{component=...}`` turns 0, which is what to alert on.

Metric names and labels are those of the hand-written exposition this replaced, so dashboards keep working.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.samples import Sample

from .collect import StatusSnapshot


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # "gauge" or "summary"
    help: str
    labels: tuple[str, ...] = ()


UP = Family("imgtrans_up", "gauge", "Whether the source could be read for this scrape (1) or not (0).",
            ("component",))
QUEUE_DEPTH = Family("imgtrans_queue_depth", "gauge", "Requests waiting in the Redis intake queue, not yet claimed.",
                     ("queue", "kind"))
QUEUE_CLAIMED = Family("imgtrans_queue_claimed", "gauge",
                       "Requests claimed from the queue and not yet acknowledged (in processing).", ("queue", "kind"))
DEAD_LETTERS = Family("imgtrans_dead_letters", "gauge",
                      "Records in the dead-letter queue, waiting for an operator requeue.", ("queue",))
RESULTS = Family("imgtrans_results_list_length", "gauge", "Result messages in the Redis results list.")
RUNS = Family("imgtrans_runs", "gauge", "Runs of translate_images: queued and in_progress now; succeeded, failed, "
              "canceled ended within the window.", ("job", "status", "window_seconds"))
IN_FLIGHT = Family("imgtrans_requests_in_flight", "gauge", "Requests carried by queued and in-progress runs.")
FINISHED = Family("imgtrans_requests_finished", "gauge", "Requests of the runs that ended within the window.",
                  ("window_seconds",))
THROUGHPUT = Family("imgtrans_throughput_requests_per_minute", "gauge",
                    "Requests finished per minute over the window (runs that ended x their request count).",
                    ("window_seconds",))
STAGE_SECONDS = Family("imgtrans_stage_seconds", "summary",
                       "Wall time per pipeline stage over the most recent finished requests (timings_s of their "
                       "meta.json).", ("stage",))
GPU_POOL = Family("imgtrans_gpu_pool_slots", "gauge",
                  "Dagster concurrency pool of the GPU ops: slots in use, steps waiting, limit (absent: no limit).",
                  ("pool", "state"))
COLLECT_SECONDS = Family("imgtrans_collect_seconds", "gauge", "Time taken to collect this snapshot.")
QUALITY_RECENT = Family("imgtrans_quality_recent", "gauge",
                        "Quality scores of the last finished requests (meta.json): median, lowest, and how many fell "
                        "below IMGTRANS_MIN_QUALITY.", ("stat",))

INSPECTION_RECENT = Family("imgtrans_inspection_recent", "gauge",
                           "Content inspection of the last finished requests (meta.json): requests per verdict "
                           "(pass, flag, review, reject).", ("verdict",))
INSPECTION_MATCHES = Family("imgtrans_inspection_matches_recent", "gauge",
                            "Inspection rule matches in the last finished requests, per rule and category.",
                            ("rule", "category"))

FAMILIES = (UP, QUEUE_DEPTH, QUEUE_CLAIMED, DEAD_LETTERS, RESULTS, RUNS, IN_FLIGHT, FINISHED, THROUGHPUT,
            STAGE_SECONDS, GPU_POOL, QUALITY_RECENT, INSPECTION_RECENT, INSPECTION_MATCHES, COLLECT_SECONDS)


class QuantileSummary(SummaryMetricFamily):
    """A summary family that also carries ``quantile`` samples (SummaryMetricFamily has only _count and _sum)."""

    def add_quantile(self, labels: Iterable[str], quantile: float, value: float) -> None:
        self.samples.append(Sample(self.name, {**dict(zip(self._labelnames, labels, strict=True)),
                                               "quantile": str(quantile)}, value))


def _empty(family: Family) -> Metric:
    if family.kind == "summary":
        return QuantileSummary(family.name, family.help, labels=family.labels)
    return GaugeMetricFamily(family.name, family.help, labels=family.labels)


class _Families:
    """Metric families of one scrape; a family is yielded only when it got samples."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def get(self, family: Family) -> Metric:
        if family.name not in self._metrics:
            self._metrics[family.name] = _empty(family)
        return self._metrics[family.name]

    def gauge(self, family: Family, value: float | None, *labels: str) -> None:
        if value is not None:
            metric = self.get(family)
            assert isinstance(metric, GaugeMetricFamily)
            metric.add_metric(list(labels), value)

    def metrics(self) -> list[Metric]:
        return [self._metrics[f.name] for f in FAMILIES if f.name in self._metrics]


def snapshot_metrics(snapshot: StatusSnapshot) -> list[Metric]:
    """The snapshot as metric families, in a fixed order."""
    out = _Families()
    out.gauge(UP, 1 if snapshot.dagster_ok else 0, "dagster")
    if snapshot.queue_key is not None:  # Redis configured
        out.gauge(UP, 1 if snapshot.redis_ok else 0, "redis")

    queue, kind = snapshot.queue_key or "", snapshot.queue_kind or ""
    out.gauge(QUEUE_DEPTH, snapshot.queue_depth, queue, kind)
    out.gauge(QUEUE_CLAIMED, snapshot.in_processing, queue, kind)
    out.gauge(DEAD_LETTERS, snapshot.dead_letters, queue)
    out.gauge(RESULTS, snapshot.results)

    window = str(int(snapshot.window_s))
    for status, count in (snapshot.runs or {}).items():
        out.gauge(RUNS, count, snapshot.job, status, window)
    out.gauge(IN_FLIGHT, snapshot.requests_in_flight)
    out.gauge(FINISHED, snapshot.requests_finished, window)
    out.gauge(THROUGHPUT, snapshot.throughput_per_min, window)

    if snapshot.stage_timings:
        summary = out.get(STAGE_SECONDS)
        assert isinstance(summary, QuantileSummary)
        summary.documentation = (f"Wall time per pipeline stage over the last {snapshot.timing_requests} finished "
                                 "requests (timings_s of their meta.json).")
        for stage, timing in sorted(snapshot.stage_timings.items()):
            summary.add_quantile([stage], 0.5, timing.p50)
            summary.add_quantile([stage], 0.95, timing.p95)
            summary.add_metric([stage], count_value=timing.count, sum_value=timing.sum)

    if snapshot.quality is not None:
        quality = snapshot.quality
        out.gauge(QUALITY_RECENT, quality.p50, "p50")
        out.gauge(QUALITY_RECENT, quality.min, "min")
        out.gauge(QUALITY_RECENT, quality.below_minimum, "below_minimum")
        out.gauge(QUALITY_RECENT, quality.count, "count")

    if snapshot.inspection is not None:
        inspection = snapshot.inspection
        for verdict in ("pass", "flag", "review", "reject"):
            out.gauge(INSPECTION_RECENT, inspection.verdicts.get(verdict, 0), verdict)
        for rule, count in inspection.rules.items():
            out.gauge(INSPECTION_MATCHES, count, rule, inspection.rule_categories.get(rule, ""))

    if snapshot.gpu_pool is not None:
        pool = snapshot.gpu_pool
        out.gauge(GPU_POOL, pool.in_use, pool.pool, "in_use")
        out.gauge(GPU_POOL, pool.pending, pool.pool, "pending")
        out.gauge(GPU_POOL, pool.limit, pool.pool, "limit")
    out.gauge(COLLECT_SECONDS, snapshot.collect_seconds)
    return out.metrics()


class SnapshotCollector:
    """prometheus_client collector: each ``collect()`` (one per scrape) exports ``snapshot()``'s current values."""

    def __init__(self, snapshot: Callable[[], StatusSnapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        # Names only (no collection at registration): lets the registry refuse a clashing collector.
        return [_empty(family) for family in FAMILIES]

    def collect(self) -> Iterable[Metric]:
        return snapshot_metrics(self._snapshot())


def render_prometheus(snapshot: StatusSnapshot) -> str:
    """One snapshot as Prometheus text format 0.0.4 (for ad-hoc use; the server goes through a registry)."""
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: snapshot))
    return generate_latest(registry).decode("utf-8")
