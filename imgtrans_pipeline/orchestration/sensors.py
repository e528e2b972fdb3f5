"""Redis intake: a sensor that turns queued requests into runs, and a sensor that settles failed runs.

Why it cannot lose or duplicate a request, whatever moment the daemon dies at:

1. A request is *claimed* atomically (``LMOVE`` into a processing list, or ``XREADGROUP`` leaving it pending) and
   stays there until a run that carries it exists; only then is it acknowledged (removed).
2. Before a claimed request is handed to Dagster, its status hash records the ``run_key`` of the run it goes
   into. Run keys are deterministic (request ids + attempt), and Dagster never creates two runs with one key.
3. Every tick first reconciles what is still claimed: entries whose run exists are acknowledged; entries whose
   run was never created are submitted again under the same run key; entries claimed by a tick that died
   before recording anything are treated as new.
4. Ticks never overlap (``intake.lease``): a daemon SIGKILLed mid-tick leaves that evaluation running in its code
   server while the next daemon ticks, and interleaved status writes would lose requests or give one request
   two run keys. A tick skips while another holds the lease, and confirms it still holds it before writing.

Latency: a tick with nothing to do blocks in Redis (``BLMOVE`` / ``XREADGROUP BLOCK``) for up to
``claim_wait_seconds`` and claims a request the moment it arrives, so a lone request does not wait for the next
tick (the daemon starts ticks at most every 5 s). The claim is as atomic as a non-blocking one.

Backpressure: the sensor claims only while requests in queued/in-progress runs stay under ``max_in_flight``;
the rest waits in Redis. Malformed messages go to the dead-letter queue at once, with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from typing import Any

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)
from dagster._core.storage.tags import RUN_KEY_TAG, WILL_RETRY_TAG

from .. import names
from ..core.logs import log_event
from ..core.request import to_config
from ..core.settings import get_settings
from ..intake.lease import TickLease
from .jobs import translate_images
from .resources import IntakeResource

logger = logging.getLogger(__name__)

IN_FLIGHT_STATUSES = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                      DagsterRunStatus.STARTED]
# On by default when IMGTRANS_REDIS_URL is set.
_DEFAULT_STATUS = DefaultSensorStatus.RUNNING if get_settings().intake.enabled else DefaultSensorStatus.STOPPED
# States in which a re-sent request id is a duplicate of work already done or under way.
LIVE_STATES = {"queued", "running", "succeeded", "needs_review"}
# Far above a tick's length (a long poll of <= 4.5 s plus Redis and instance look-ups): the lease only expires
# under its holder when that holder is stuck, and a holder killed mid-tick holds intake up this long at most.
TICK_LEASE_SECONDS = 60.0


def run_key_for(members: list[tuple[str, int]]) -> str:
    """Deterministic run key of a batch: its (request id, attempt) pairs; one request alone keeps its id."""
    if len(members) == 1:
        request_id, attempt = members[0]
        return request_id if attempt <= 1 else f"{request_id}#{attempt}"
    digest = hashlib.sha256(json.dumps(sorted(members)).encode()).hexdigest()[:20]
    return f"batch-{digest}"


def _run_request(run_key: str, entries: list[Any], attempts: dict[str, int]) -> RunRequest:
    requests = [entry.request for entry in entries]
    first = requests[0]
    return RunRequest(
        run_key=run_key,
        run_config=names.run_config(to_config(r) for r in requests),
        tags={
            names.TAG_SOURCE: names.SOURCE_REDIS,
            names.TAG_REQUEST_COUNT: str(len(requests)),
            names.TAG_FIRST_REQUEST: first.request_id,
            names.TAG_LANGUAGES: ",".join(sorted({f"{r.source_lang}->{r.target_lang}" for r in requests})),
            names.TAG_PRIORITY: str(max(r.priority for r in requests)),
            names.TAG_ATTEMPT: str(max(attempts[r.request_id] for r in requests)),
        },
    )


def _in_flight_requests(context: SensorEvaluationContext) -> int:
    runs = context.instance.get_runs(RunsFilter(job_name=names.TRANSLATE_JOB, statuses=IN_FLIGHT_STATUSES,
                                                tags={names.TAG_SOURCE: names.SOURCE_REDIS}))
    return sum(int(run.tags.get(names.TAG_REQUEST_COUNT, "1")) for run in runs)


def _run_exists(context: SensorEvaluationContext, run_key: str) -> bool:
    return bool(context.instance.get_run_ids(RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1))


@sensor(
    name="redis_intake",
    job=translate_images,
    # 1, not 5: the daemon's sensor loop starts at most every 5 s, and with an interval of 5 a tick recorded a few
    # ms after its loop started is "under the interval" at the next loop, which then skips it (measured: single
    # requests waited up to 5 s more). 0 would mean Dagster's default of 30 s. Ticks still start at most every 5 s.
    minimum_interval_seconds=1,
    default_status=_DEFAULT_STATUS,
    description="Claims translation requests from Redis (list or stream) and launches runs, with backpressure.",
)
def redis_intake_sensor(context: SensorEvaluationContext, intake: IntakeResource) -> SensorResult:
    lease = TickLease(intake.client(), f"{intake.config().queue}:tick-lease", TICK_LEASE_SECONDS)
    if not lease.acquire():
        log_event(logger, logging.WARNING, "intake.tick_overlap", holder=lease.holder())
        return SensorResult(skip_reason=SkipReason(
            "another intake tick is still running (e.g. one left behind by a killed daemon); retrying next tick"))
    try:
        return _intake_tick(context, intake, lease)
    finally:
        lease.release()


def _intake_tick(context: SensorEvaluationContext, intake: IntakeResource, lease: TickLease) -> SensorResult:
    queue, status, dead = intake.queue(), intake.status(), intake.dead_letters()

    # 1. Reconcile what earlier ticks claimed.
    acked: list[Any] = []
    resubmit: dict[str, list[Any]] = defaultdict(list)  # run key -> entries whose run was never created
    fresh: list[Any] = []
    for entry in queue.pending():
        if entry.request is None:  # claimed by a tick that died before dead-lettering it
            dead.bury(queue, entry, entry.error or "malformed")
            continue
        state = status.get(entry.request.request_id) or {}
        run_key = state.get("run_key")
        if run_key and _run_exists(context, run_key):
            acked.append(entry)
        elif run_key and state.get("state") == "queued" and state.get("entry_id") == entry.entry_id:
            resubmit[run_key].append(entry)
        else:
            fresh.append(entry)

    # 2. Backpressure: claim only what keeps requests in flight under the limit.
    in_flight = _in_flight_requests(context) + sum(len(v) for v in resubmit.values()) + len(fresh)
    capacity = max(0, intake.max_in_flight - in_flight)
    # Nothing else to do this tick: long-poll for the next request instead of leaving it until the next tick.
    wait_s = intake.claim_wait() if not fresh and not resubmit else 0.0
    claimed = (queue.claim(min(capacity, intake.max_claim_per_tick), wait_s=wait_s, linger_s=intake.linger_seconds)
               if capacity else [])
    for entry in claimed:
        if entry.request is None:
            dead.bury(queue, entry, entry.error or "malformed")  # dead-letter + ack in one atomic step
            log_event(logger, logging.WARNING, "intake.malformed", reason=entry.error)
        else:
            fresh.append(entry)
    # The claim may have blocked for seconds: make sure no other tick took over before deciding and writing.
    lease.confirm()

    # 3. New requests: drop duplicates of live work, give the rest an attempt number and a batch.
    attempts: dict[str, int] = {}
    batch: list[Any] = []
    seen: set[str] = set()
    for entry in fresh:
        request_id = entry.request.request_id
        state = status.get(request_id) or {}
        current = state.get("state") if state.get("run_key") else None
        rerun = current in ("dead", "failed") or (current == "succeeded" and entry.request.options.force)
        if request_id in seen or (current in LIVE_STATES and not rerun):
            status.note_duplicate(request_id)  # a resubmission never makes a second run
            acked.append(entry)
            continue
        seen.add(request_id)
        previous = int(state.get("attempt") or 0)
        attempts[request_id] = previous + 1 if rerun else max(previous, 1)
        batch.append(entry)

    run_requests: list[RunRequest] = []
    for start in range(0, len(batch), intake.batch_size):
        members = batch[start:start + intake.batch_size]
        run_key = run_key_for([(e.request.request_id, attempts[e.request.request_id]) for e in members])
        for entry in members:
            # Recorded before the run request leaves this tick, so a later tick can tell "submitted or not".
            status.mark(entry.request.request_id, "queued", run_key=run_key, entry_id=entry.entry_id,
                        attempt=attempts[entry.request.request_id], payload=entry.raw, force=True,
                        error=None, result_url=None)
        run_requests.append(_run_request(run_key, members, attempts))
    for run_key, members in resubmit.items():
        for entry in members:
            attempts[entry.request.request_id] = int((status.get(entry.request.request_id) or {}).get("attempt")
                                                     or 1)
        run_requests.append(_run_request(run_key, members, attempts))

    queue.ack(acked)
    log_event(logger, logging.INFO, "intake.tick", claimed=len(claimed), runs=len(run_requests),
              resubmitted=sum(len(v) for v in resubmit.values()), acked=len(acked), in_flight=in_flight,
              waiting=queue.depth())
    if not run_requests:
        return SensorResult(skip_reason=SkipReason(
            f"nothing to launch: {queue.depth()} waiting, {in_flight} in flight (limit {intake.max_in_flight})"))
    return SensorResult(run_requests=run_requests)


@run_failure_sensor(
    name="redis_dead_letters",
    monitored_jobs=[translate_images],
    default_status=_DEFAULT_STATUS,
    description="Marks the requests of a failed run dead (unless Dagster will retry the run) and dead-letters them.",
)
def redis_dead_letter_sensor(context: RunFailureSensorContext, intake: IntakeResource) -> None:
    run = context.dagster_run
    if run.tags.get(names.TAG_SOURCE) != names.SOURCE_REDIS:
        return
    reason = (context.failure_event.message or "run failed").strip().splitlines()[0]
    will_retry = run.tags.get(WILL_RETRY_TAG) == "true"
    requests = names.requests_of_run_config(run.run_config)
    intake.settle_failed_run(run.run_id, [r["request_id"] for r in requests if r.get("request_id")], reason,
                             will_retry=will_retry)
