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
from .resources import ArtifactStoreResource, IntakeResource

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
    _settle_failed_run(context, intake, names.SOURCE_REDIS)


# --- Kafka intake -------------------------------------------------------------------------------------------------
# Why it cannot lose or duplicate a message, whatever moment the daemon dies at (compare the Redis argument above):
#
# 1. The group's committed offsets are the only cursor, and they move only past messages that are *settled*: carried
#    by a run that exists in the instance (its tags name the topic, partition and offsets), dead-lettered (recorded
#    in the status store after the dead letter is on the broker), or a duplicate of live work. A tick reads from
#    the committed offsets every time, so whatever an earlier tick did not finish is read and decided again.
# 2. Run keys are the message coordinates (``kafka:<topic>:<partition>:<offset ranges>``) and runs carrying a
#    message are found by offset, not by key: a re-read never makes a second run for a message whose run exists,
#    even when it would cut the batches differently. Dagster skips a run key it has seen (across ticks), and a
#    tick the daemon was killed in the middle of submitting is resumed from its stored run requests before the
#    sensor is evaluated again, so no request of a dead tick is created after a newer tick decided anew.
# 3. Ticks never overlap (the tick lease, as for Redis; in the SQLite state file when Redis is not configured).
_KAFKA_DEFAULT_STATUS = (DefaultSensorStatus.RUNNING if get_settings().kafka.enabled
                         else DefaultSensorStatus.STOPPED)
# Runs looked at per partition to find the offsets already carried: far more than can be in flight, so every
# message at or after the committed offset whose run exists is among them.
_CARRIED_RUNS_LOOKBACK = 2000


def kafka_run_key(topic: str, partition: int, offsets: list[int]) -> str:
    from ..intake.kafka import format_offsets

    return f"kafka:{topic}:{partition}:{format_offsets(offsets)}"


def _kafka_in_flight(context: SensorEvaluationContext) -> int:
    runs = context.instance.get_runs(RunsFilter(job_name=names.TRANSLATE_JOB, statuses=IN_FLIGHT_STATUSES,
                                                tags={names.TAG_SOURCE: names.SOURCE_KAFKA}))
    return sum(int(run.tags.get(names.TAG_REQUEST_COUNT, "1")) for run in runs)


def _carried_offsets(context: SensorEvaluationContext, topic: str, partition: int) -> dict[int, str]:
    """Offset -> run key, for the messages of this partition that runs carry (a retried run repeats its root's)."""
    from ..intake.kafka import parse_offsets

    runs = context.instance.get_runs(RunsFilter(tags={names.TAG_KAFKA_PARTITION: f"{topic}:{partition}"}),
                                     limit=_CARRIED_RUNS_LOOKBACK)
    carried: dict[int, str] = {}
    for run in runs:
        for offset in parse_offsets(run.tags.get(names.TAG_KAFKA_OFFSETS, "")):
            carried[offset] = run.tags.get(RUN_KEY_TAG, "")
    return carried


def _kafka_run_request(topic: str, partition: int, members: list[Any], attempts: dict[str, int]) -> RunRequest:
    from ..intake.kafka import format_offsets

    request = _run_request(kafka_run_key(topic, partition, [e.offset for e in members]), members, attempts)
    return request.with_replaced_attrs(tags={
        **request.tags, names.TAG_SOURCE: names.SOURCE_KAFKA,
        names.TAG_KAFKA_PARTITION: f"{topic}:{partition}",
        names.TAG_KAFKA_OFFSETS: format_offsets(e.offset for e in members)})


@sensor(
    name="kafka_intake",
    job=translate_images,
    minimum_interval_seconds=1,  # as redis_intake: ticks still start at most every 5 s
    default_status=_KAFKA_DEFAULT_STATUS,
    description="Reads translation requests from a Kafka topic (consumer group) and launches runs, with "
                "backpressure; offsets are committed once the runs carrying them exist.",
)
def kafka_intake_sensor(context: SensorEvaluationContext, intake: IntakeResource,
                        artifacts: ArtifactStoreResource) -> SensorResult:
    config = intake.kafka_config()
    lease = intake.tick_lease(f"kafka:{config.group}:{config.topic}", TICK_LEASE_SECONDS)
    if not lease.acquire():
        log_event(logger, logging.WARNING, "intake.tick_overlap", holder=lease.holder(), source="kafka")
        return SensorResult(skip_reason=SkipReason(
            "another Kafka intake tick is still running (e.g. one left behind by a killed daemon); retrying"))
    try:
        return _kafka_tick(context, intake, artifacts, lease)
    finally:
        lease.release()


def _kafka_tick(context: SensorEvaluationContext, intake: IntakeResource, artifacts: ArtifactStoreResource,
                lease: Any) -> SensorResult:
    from ..pipeline.dedupe import stored_source_uri

    store = artifacts.store()
    status, transport = intake.status(), intake.transport(names.SOURCE_KAFKA)
    in_flight = _kafka_in_flight(context)
    capacity = max(0, intake.max_in_flight - in_flight)
    with intake.kafka().session() as session:
        # Read past the capacity only to settle what is already carried; an idle tick long-polls, as for Redis.
        entries = session.read(intake.max_claim_per_tick, lambda h: stored_source_uri(store, h),
                               wait_s=intake.claim_wait_seconds if capacity else 0.0)
        by_partition: dict[int, list[Any]] = defaultdict(list)
        for entry in entries:
            by_partition[entry.partition].append(entry)
        lease.confirm()  # the read may have waited: no other tick may have taken over before we decide

        attempts: dict[str, int] = {}
        seen: set[str] = set()
        next_offsets: dict[int, int] = {}
        run_requests: list[RunRequest] = []
        counts: dict[str, int] = defaultdict(int)
        for partition, part in sorted(by_partition.items()):
            carried = _carried_offsets(context, session.config.topic, partition)
            batch: list[Any] = []
            frontier: int | None = None  # first offset of this partition not settled
            for entry in part:
                settled = False
                if entry.offset in carried:
                    settled = True
                    counts["carried"] += 1
                elif entry.request is None:
                    marker = f"kafka-dead:{entry.coordinates}"
                    if not status.get(marker):  # dead-lettered by an earlier tick that died before committing
                        transport.add_dead_letter(entry.raw, entry.error or "malformed", stage="intake",
                                                  source=entry.coordinates)
                        status.mark(marker, "dead", error=entry.error or "malformed")
                    settled = True
                    counts["dead"] += 1
                else:
                    request_id = entry.request.request_id
                    state = status.get(request_id) or {}
                    current = state.get("state") if state.get("run_key") else None
                    if current == "queued" and not _run_exists(context, state["run_key"]):
                        current = None  # submitted by a tick whose runs were never created
                    rerun = current in ("dead", "failed") or (current == "succeeded" and entry.request.options.force)
                    if request_id in seen or (current in LIVE_STATES and not rerun):
                        status.note_duplicate(request_id)
                        settled = True
                        counts["duplicates"] += 1
                    elif capacity > 0:
                        capacity -= 1
                        seen.add(request_id)
                        previous = int(state.get("attempt") or 0)
                        attempts[request_id] = previous + 1 if rerun else max(previous, 1)
                        batch.append(entry)
                    else:
                        frontier = entry.offset if frontier is None else frontier
                        break  # backpressure: this message and the rest of the partition wait in Kafka
                if not settled and frontier is None:
                    frontier = entry.offset
            next_offsets[partition] = frontier if frontier is not None else part[-1].offset + 1
            for start in range(0, len(batch), intake.batch_size):
                members = batch[start:start + intake.batch_size]
                run_request = _kafka_run_request(session.config.topic, partition, members, attempts)
                for entry in members:
                    # Recorded before the run request leaves this tick, as for Redis: a later tick tells a
                    # duplicate from a request whose run was never created.
                    status.mark(entry.request.request_id, "queued", run_key=run_request.run_key,
                                entry_id=entry.coordinates, attempt=attempts[entry.request.request_id],
                                payload=entry.raw, source=names.SOURCE_KAFKA, force=True, error=None,
                                result_url=None)
                run_requests.append(run_request)
        committed = session.commit(next_offsets)
    log_event(logger, logging.INFO, "intake.tick", source="kafka", read=len(entries), runs=len(run_requests),
              committed=committed, in_flight=in_flight, **counts)
    if not run_requests:
        return SensorResult(skip_reason=SkipReason(
            f"nothing to launch: read {len(entries)}, {in_flight} in flight (limit {intake.max_in_flight})"))
    return SensorResult(run_requests=run_requests)


def _settle_failed_run(context: RunFailureSensorContext, intake: IntakeResource, source: str) -> None:
    run = context.dagster_run
    if run.tags.get(names.TAG_SOURCE) != source:
        return
    reason = (context.failure_event.message or "run failed").strip().splitlines()[0]
    will_retry = run.tags.get(WILL_RETRY_TAG) == "true"
    requests = names.requests_of_run_config(run.run_config)
    intake.settle_failed_run(run.run_id, [r["request_id"] for r in requests if r.get("request_id")], reason,
                             will_retry=will_retry, source=source)


@run_failure_sensor(
    name="kafka_dead_letters",
    monitored_jobs=[translate_images],
    default_status=_KAFKA_DEFAULT_STATUS,
    description="Marks the requests of a failed Kafka run dead (unless Dagster will retry the run) and publishes "
                "them to the dead-letter topic.",
)
def kafka_dead_letter_sensor(context: RunFailureSensorContext, intake: IntakeResource) -> None:
    _settle_failed_run(context, intake, names.SOURCE_KAFKA)
