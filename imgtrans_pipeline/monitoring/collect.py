"""Collect one status snapshot of the pipeline: Redis intake, Dagster runs, GPU pool, per-stage timings.

Where each number comes from, and why there:

* **Queue depth / claimed / dead letters / results** — Redis, through the intake's own classes (``create_queue``,
  ``DeadLetters``), so list and stream layouts are counted exactly as the sensor sees them.
* **Runs by status, requests in flight, throughput** — Dagster run records of ``translate_images``. Run records
  cover every way a request is processed (Redis sensor, CLI, Launchpad), are indexed by status and update time,
  and carry the request count (tag ``imgtrans/requests`` from the sensor, else the length of the run config's
  request list). The Redis results list was the alternative, but it only sees sensor-driven requests and would
  need a scan of message timestamps. Throughput = requests of the runs that *ended* (success, failure or
  cancellation) inside the window ÷ window minutes: "requests the pipeline got through per minute", the seeds'
  ``processed``/``failed`` counters turned into a rate.
* **Per-stage timings** — ``timings_s`` of the ``meta.json`` of the last ``timing_sample`` (200) distinct requests
  of the most recent finished runs. Request ids come from the run configs (no store listing: an S3 listing of a
  big bucket costs far more than 200 GETs, and a local ``list_requests()`` walks every folder ever written), and
  the files are read concurrently. Reading ``meta.json`` beats scanning ``AssetMaterialization`` events: one small
  file per request instead of five events per request, and failed requests (which have no rendered image) count
  too. Requests whose id was generated inside the run (Launchpad with an empty id) are not in the run config and
  are skipped.
* **GPU pool** — ``instance.event_log_storage.get_concurrency_info("gpu")``: slots claimed, steps waiting, limit.

Every source is optional: Redis not configured or unreachable, a Dagster storage error, an unreadable store — the
affected fields are ``None`` and an ``*_error`` field says why, never an exception to the caller.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..core.settings import RuntimeSection, default_of
from ..names import GPU_POOL, META_JSON, TRANSLATE_JOB
from ..names import TAG_REQUEST_COUNT as REQUEST_COUNT_TAG

logger = logging.getLogger(__name__)


DEFAULT_WINDOW_S = 15 * 60
DEFAULT_MIN_QUALITY = default_of(RuntimeSection, "min_quality")
DEFAULT_TIMING_SAMPLE = 200
MAX_RUN_RECORDS = 5000  # bound on run records read per snapshot (the window's finished runs)
QUANTILES = (0.5, 0.95)
REDIS_TIMEOUT_S = 2.0  # a monitoring call must answer quickly, whatever the intake's own timeout is
META_READERS = 8

RUN_GROUPS = ("queued", "in_progress", "succeeded", "failed", "canceled")


@dataclass
class StageTiming:
    """Distribution of one stage's wall time (seconds) over the sampled requests that ran it."""

    count: int
    p50: float
    p95: float
    max: float
    sum: float


@dataclass
class GpuPool:
    """Dagster concurrency pool of the GPU ops. ``limit`` None: no limit is set (the pool does not throttle)."""

    pool: str
    limit: int | None
    in_use: int
    pending: int


@dataclass
class QualitySummary:
    """Quality scores (meta.json ``quality.score``) of the sampled finished requests."""

    count: int
    p50: float
    min: float
    below_minimum: int  # scored under ``minimum`` (IMGTRANS_MIN_QUALITY): worth a look
    minimum: float


@dataclass
class InspectionSummary:
    """Content inspection (meta.json ``inspection``) of the sampled finished requests."""

    inspected: int
    verdicts: dict[str, int]  # pass / flag / review / reject -> requests
    categories: dict[str, int]  # category -> matches
    rules: dict[str, int]  # rule id -> matches
    rule_categories: dict[str, str] = field(default_factory=dict)  # rule id -> its category


@dataclass
class StatusSnapshot:
    """Everything ``imgtrans status`` prints and ``/metrics`` exports; :meth:`to_dict` is JSON-serialisable.

    ``runs`` counts ``queued`` and ``in_progress`` runs now, and ``succeeded`` / ``failed`` / ``canceled`` runs
    that ended within the last ``window_s`` seconds.
    """

    collected_at: str
    window_s: float
    job: str = TRANSLATE_JOB
    # Redis intake
    redis_url: str | None = None  # password redacted
    queue_key: str | None = None
    queue_kind: str | None = None
    queue_depth: int | None = None
    in_processing: int | None = None
    dead_letters: int | None = None
    results: int | None = None
    redis_error: str | None = None
    # Dagster runs
    runs: dict[str, int] | None = None
    requests_in_flight: int | None = None
    requests_finished: int | None = None
    throughput_per_min: float | None = None
    runs_truncated: bool = False
    dagster_error: str | None = None
    # Per-stage timings from meta.json
    stage_timings: dict[str, StageTiming] = field(default_factory=dict)
    timing_requests: int = 0
    timings_error: str | None = None
    quality: QualitySummary | None = None  # from the same meta.json sample
    inspection: InspectionSummary | None = None  # from the same meta.json sample
    # GPU pool
    gpu_pool: GpuPool | None = None
    gpu_pool_error: str | None = None
    collect_seconds: float = 0.0

    @property
    def redis_ok(self) -> bool:
        return self.redis_error is None and self.queue_depth is not None

    @property
    def dagster_ok(self) -> bool:
        return self.dagster_error is None and self.runs is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile: an observed value (no interpolation), so p95 of a few samples is their maximum."""
    if not values:
        raise ValueError("quantile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def redact_url(url: str) -> str:
    """The URL without its password (status output ends up in logs and dashboards)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def monitoring_client(settings: Any) -> Any:
    """A Redis client for monitoring: the intake's settings with short timeouts."""
    timeout = min(float(settings.socket_timeout), REDIS_TIMEOUT_S)
    return dataclasses.replace(settings, socket_timeout=timeout).connect()


# --- Redis ------------------------------------------------------------------------------------------------------


def _collect_redis(snapshot: StatusSnapshot, settings: Any | None, client: Any | None) -> None:
    if settings is None:
        snapshot.redis_error = "Redis intake not configured (IMGTRANS_REDIS_URL is not set)"
        return
    from ..intake import DeadLetters, create_queue

    snapshot.redis_url = redact_url(settings.redis_url)
    snapshot.queue_key = settings.queue
    snapshot.queue_kind = settings.queue_kind
    try:
        client = client if client is not None else monitoring_client(settings)
        queue = create_queue(client, settings)
        depth = queue.depth()
        processing = queue.in_processing()
        dead = DeadLetters(client, settings).count()
        results = int(client.llen(settings.results))
    except Exception as exc:  # redis.RedisError, OSError, a WRONGTYPE key...: report, never crash the caller
        snapshot.redis_error = _error_text(exc)
        logger.warning("status: Redis at %s unreachable: %s", snapshot.redis_url, snapshot.redis_error)
        return
    snapshot.queue_depth, snapshot.in_processing, snapshot.dead_letters, snapshot.results = (
        depth, processing, dead, results)


# --- Dagster runs -----------------------------------------------------------------------------------------------


def requests_of_run(run: Any) -> int:
    """How many requests a run carries: the sensor's tag, else the run config's request list."""
    tag = run.tags.get(REQUEST_COUNT_TAG)
    if tag is not None:
        try:
            return max(0, int(tag))
        except ValueError:
            pass
    return len(request_ids_of_run(run, keep_empty=True))


def request_ids_of_run(run: Any, *, keep_empty: bool = False) -> list[str]:
    """Request ids in the run config (``ops.download.config.requests[].request_id``)."""
    config = run.run_config or {}
    requests = (((config.get("ops") or {}).get("download") or {}).get("config") or {}).get("requests") or []
    ids = [str(r.get("request_id") or "") for r in requests if isinstance(r, dict)]
    return ids if keep_empty else [i for i in ids if i]


def _status_groups() -> dict[str, list[Any]]:
    from dagster import DagsterRunStatus as S

    return {
        "queued": [S.QUEUED, S.NOT_STARTED],
        "in_progress": [S.STARTING, S.STARTED, S.CANCELING],
        "succeeded": [S.SUCCESS],
        "failed": [S.FAILURE],
        "canceled": [S.CANCELED],
    }


def _collect_runs(snapshot: StatusSnapshot, instance: Any, now: float) -> None:
    from dagster import RunsFilter

    groups = _status_groups()
    window_start = now - snapshot.window_s
    try:
        runs = dict.fromkeys(RUN_GROUPS, 0)
        in_flight = 0
        live = instance.get_run_records(
            RunsFilter(job_name=snapshot.job, statuses=groups["queued"] + groups["in_progress"]),
            limit=MAX_RUN_RECORDS)
        for record in live:
            run = record.dagster_run
            runs["queued" if run.status in groups["queued"] else "in_progress"] += 1
            in_flight += requests_of_run(run)
        finished_statuses = groups["succeeded"] + groups["failed"] + groups["canceled"]
        # updated_after narrows the query with the index; end_time (set when the run ended) decides.
        ended = instance.get_run_records(
            RunsFilter(job_name=snapshot.job, statuses=finished_statuses,
                       updated_after=datetime.fromtimestamp(window_start, UTC) - timedelta(seconds=1)),
            limit=MAX_RUN_RECORDS)
        finished_requests = 0
        for record in ended:
            end = record.end_time if record.end_time is not None else record.update_timestamp.timestamp()
            if not window_start <= end <= now:
                continue
            status = record.dagster_run.status
            group = next(name for name in ("succeeded", "failed", "canceled") if status in groups[name])
            runs[group] += 1
            finished_requests += requests_of_run(record.dagster_run)
    except Exception as exc:  # storage unreachable (Postgres down), schema mismatch...
        snapshot.dagster_error = _error_text(exc)
        logger.warning("status: Dagster instance query failed: %s", snapshot.dagster_error)
        return
    snapshot.runs = runs
    snapshot.requests_in_flight = in_flight
    snapshot.requests_finished = finished_requests
    snapshot.throughput_per_min = round(finished_requests / (snapshot.window_s / 60.0), 4)
    snapshot.runs_truncated = len(live) >= MAX_RUN_RECORDS or len(ended) >= MAX_RUN_RECORDS


def _collect_gpu_pool(snapshot: StatusSnapshot, instance: Any, pool: str) -> None:
    try:
        storage = instance.event_log_storage
        if not storage.supports_global_concurrency_limits:
            snapshot.gpu_pool_error = "this Dagster storage does not support concurrency pools"
            return
        info = storage.get_concurrency_info(pool)
        snapshot.gpu_pool = GpuPool(pool=pool, limit=info.limit, in_use=info.active_slot_count,
                                    pending=info.pending_step_count)
    except Exception as exc:
        snapshot.gpu_pool_error = _error_text(exc)


# --- per-stage timings ------------------------------------------------------------------------------------------


def recent_request_ids(instance: Any, job: str, limit: int) -> list[str]:
    """Distinct request ids of the most recent finished runs, newest first, at most ``limit``.

    A request id seen in several runs (a retry, a re-run) counts once, for its newest run: its ``meta.json``
    holds that run's timings.
    """
    from dagster import DagsterRunStatus, RunsFilter

    seen: dict[str, None] = {}
    # Each run carries at least one request, so ``limit`` runs are always enough.
    for run in instance.get_runs(RunsFilter(job_name=job, statuses=[DagsterRunStatus.SUCCESS,
                                                                      DagsterRunStatus.FAILURE]), limit=limit):
        for request_id in request_ids_of_run(run):
            seen.setdefault(request_id, None)
            if len(seen) >= limit:
                return list(seen)
    return list(seen)


def _read_meta(store: Any, request_id: str) -> tuple[dict[str, float], float | None, dict[str, Any] | None] | None:
    """(stage timings, quality score or None, inspection or None) of one request's meta.json; None when there is
    none to read."""
    from ..storage import get_json

    try:
        meta = get_json(store, request_id, META_JSON)
    except Exception:  # not written (run died early), deleted, unreadable: it just is not in the sample
        return None
    timings = meta.get("timings_s") if isinstance(meta, dict) else None
    if not isinstance(timings, dict):
        return None
    quality = meta.get("quality")
    score = quality.get("score") if isinstance(quality, dict) else None
    numeric = isinstance(score, int | float) and not isinstance(score, bool)
    inspection = meta.get("inspection")
    return ({str(k): float(v) for k, v in timings.items() if isinstance(v, int | float) and not isinstance(v, bool)},
            float(score) if numeric else None, inspection if isinstance(inspection, dict) else None)


def inspection_summary(inspections: list[dict[str, Any]]) -> InspectionSummary | None:
    if not inspections:
        return None
    verdicts: dict[str, int] = {}
    categories: dict[str, int] = {}
    rules: dict[str, int] = {}
    rule_categories: dict[str, str] = {}
    for inspection in inspections:
        verdict = str(inspection.get("verdict", "pass"))
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
        for match in inspection.get("matches", []) or []:
            if isinstance(match, dict):
                categories[str(match.get("category"))] = categories.get(str(match.get("category")), 0) + 1
                rules[str(match.get("rule"))] = rules.get(str(match.get("rule")), 0) + 1
                rule_categories[str(match.get("rule"))] = str(match.get("category"))
    return InspectionSummary(inspected=len(inspections), verdicts=dict(sorted(verdicts.items())),
                             categories=dict(sorted(categories.items())), rules=dict(sorted(rules.items())),
                             rule_categories=rule_categories)


def quality_summary(scores: list[float], minimum: float) -> QualitySummary | None:
    if not scores:
        return None
    return QualitySummary(count=len(scores), p50=quantile(scores, 0.5), min=min(scores),
                          below_minimum=sum(1 for s in scores if s < minimum), minimum=minimum)


def stage_timings(samples: Iterable[dict[str, float]]) -> dict[str, StageTiming]:
    """p50/p95/max/sum per stage over per-request ``timings_s`` dicts (a stage counts where it ran)."""
    per_stage: dict[str, list[float]] = {}
    for timings in samples:
        for stage, seconds in timings.items():
            per_stage.setdefault(stage, []).append(seconds)
    return {
        stage: StageTiming(count=len(values), p50=quantile(values, 0.5), p95=quantile(values, 0.95),
                           max=max(values), sum=round(sum(values), 6))
        for stage, values in per_stage.items()
    }


def _collect_timings(snapshot: StatusSnapshot, instance: Any, store: Any | None, sample: int,
                     min_quality: float) -> None:
    if store is None:
        snapshot.timings_error = "no artifact store given"
        return
    try:
        ids = recent_request_ids(instance, snapshot.job, sample)
        if not ids:
            return
        with ThreadPoolExecutor(max_workers=min(META_READERS, len(ids)), thread_name_prefix="imgtrans-meta") as pool:
            found = [t for t in pool.map(lambda rid: _read_meta(store, rid), ids) if t is not None]
    except Exception as exc:
        snapshot.timings_error = _error_text(exc)
        logger.warning("status: per-stage timings unavailable: %s", snapshot.timings_error)
        return
    snapshot.timing_requests = len(found)
    snapshot.stage_timings = stage_timings(timings for timings, _, _ in found)
    snapshot.quality = quality_summary([score for _, score, _ in found if score is not None], min_quality)
    snapshot.inspection = inspection_summary([inspection for _, _, inspection in found if inspection is not None])


# --- entry points -----------------------------------------------------------------------------------------------


def collect_status(instance: Any, intake_settings: Any | None, *, window_s: float = DEFAULT_WINDOW_S,
                   store: Any | None = None, redis_client: Any | None = None,
                   timing_sample: int = DEFAULT_TIMING_SAMPLE, pool: str = GPU_POOL,
                   now: float | None = None, min_quality: float = DEFAULT_MIN_QUALITY) -> StatusSnapshot:
    """One snapshot of the pipeline's state. Never raises for an unreachable source (see the ``*_error`` fields).

    ``instance`` is a ``DagsterInstance``; ``intake_settings`` an ``IntakeConfig`` (None: Redis not configured);
    ``store`` the artifact store holding ``meta.json`` files (None: no stage timings); ``redis_client``
    reuses a connection (the metrics server keeps one); ``now`` (epoch seconds) is the end of the window.
    """
    if window_s <= 0:
        raise ValueError("window_s must be positive")
    started = time.perf_counter()
    now = time.time() if now is None else now
    snapshot = StatusSnapshot(
        collected_at=datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        window_s=float(window_s))
    _collect_redis(snapshot, intake_settings, redis_client)
    if instance is None:
        snapshot.dagster_error = snapshot.timings_error = snapshot.gpu_pool_error = "no Dagster instance"
    else:
        _collect_runs(snapshot, instance, now)
        _collect_gpu_pool(snapshot, instance, pool)
        _collect_timings(snapshot, instance, store, timing_sample, min_quality)
    snapshot.collect_seconds = round(time.perf_counter() - started, 4)
    return snapshot


def check_health(instance: Any, intake_settings: Any | None, *, redis_client: Any | None = None
                 ) -> tuple[bool, dict[str, str]]:
    """Cheap liveness checks: one run-storage query and one Redis ``PING``.

    Healthy when the Dagster instance answers and, if Redis intake is configured, Redis answers. Returns
    ``(healthy, {"dagster": "ok" | reason, "redis": "ok" | "not configured" | reason})``.
    """
    checks: dict[str, str] = {}
    try:
        if instance is None:
            raise RuntimeError("no Dagster instance")
        instance.get_run_records(limit=1)
        checks["dagster"] = "ok"
    except Exception as exc:
        checks["dagster"] = _error_text(exc)
    if intake_settings is None:
        checks["redis"] = "not configured"
    else:
        try:
            client = redis_client if redis_client is not None else monitoring_client(intake_settings)
            client.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = _error_text(exc)
    healthy = checks["dagster"] == "ok" and checks["redis"] in ("ok", "not configured")
    return healthy, checks
