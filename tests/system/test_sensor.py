"""The Redis intake sensor, tick by tick, against a real redis-server and a real Dagster instance.

Runs are created here the way the daemon records a sensor's run requests (run key tag included), so each test
can stop "the daemon" between any two steps. The daemon itself is exercised in test_intake_daemon.py.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import redis
from dagster import DagsterInstance, SensorResult, build_sensor_context, instance_for_test
from dagster._core.storage.tags import RUN_KEY_TAG

from imgtrans_pipeline.intake import DeadLetters, RequestStatus, create_queue
from imgtrans_pipeline.intake.lease import LeaseLost
from imgtrans_pipeline.names import TRANSLATE_JOB
from imgtrans_pipeline.orchestration.definitions import build_definitions
from imgtrans_pipeline.orchestration.resources import IntakeResource
from imgtrans_pipeline.orchestration.sensors import redis_intake_sensor, run_key_for
from tests.support.servers import free_port


@pytest.fixture
def instance() -> DagsterInstance:
    with instance_for_test() as inst:
        yield inst


@pytest.fixture(params=["list", "stream"])
def intake(request, redis_server, redis_client) -> IntakeResource:
    return IntakeResource(redis_url=redis_server.url, queue_kind=request.param, batch_size=2, max_in_flight=64,
                          claim_wait_seconds=0)


def push(intake: IntakeResource, request_id: str, **fields: Any) -> None:
    message = {"request_id": request_id, "image_url": f"https://cdn.example.com/{request_id}.jpg",
               "source_lang": "zh", "target_lang": "en", **fields}
    intake.queue().push(json.dumps(message))


def tick(instance: DagsterInstance, intake: IntakeResource) -> SensorResult:
    return redis_intake_sensor(build_sensor_context(instance=instance, resources={"intake": intake}))


def create_runs(instance: DagsterInstance, result: SensorResult) -> list[str]:
    """What the daemon does with a tick's run requests: one run per new run key."""
    job = build_definitions().resolve_job_def(TRANSLATE_JOB)
    run_ids = []
    for request in result.run_requests or []:
        run = instance.create_run_for_job(job, run_config=request.run_config,
                                          tags={**request.tags, RUN_KEY_TAG: request.run_key})
        run_ids.append(run.run_id)
    return run_ids


def request_ids(result: SensorResult) -> list[list[str]]:
    return [[r["request_id"] for r in rr.run_config["ops"]["download"]["config"]["requests"]]
            for rr in result.run_requests or []]


def test_claims_fifo_in_batches_and_records_the_run_key_first(instance, intake):
    for i in range(1, 6):
        push(intake, f"r{i}")
    result = tick(instance, intake)
    assert request_ids(result) == [["r1", "r2"], ["r3", "r4"], ["r5"]]
    first = result.run_requests[0]
    assert first.run_key == run_key_for([("r1", 1), ("r2", 1)])
    assert first.tags["imgtrans/source"] == "redis" and first.tags["imgtrans/requests"] == "2"
    assert result.run_requests[2].run_key == "r5"  # a request alone keeps its id as run key
    status = intake.status()
    assert status.get("r1")["state"] == "queued" and status.get("r1")["run_key"] == first.run_key
    assert intake.queue().depth() == 0 and intake.queue().in_processing() == 5


def test_entries_stay_claimed_until_their_run_exists(instance, intake):
    for i in range(1, 4):
        push(intake, f"r{i}")
    first = tick(instance, intake)
    # The daemon died before creating the runs: the next tick submits the same runs again, under the same keys.
    again = tick(instance, intake)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in first.run_requests]
    assert intake.queue().in_processing() == 3
    create_runs(instance, again)
    settled = tick(instance, intake)
    assert not settled.run_requests and intake.queue().in_processing() == 0
    assert instance.get_runs_count() == 2


def test_partially_created_runs_are_not_duplicated(instance, intake):
    for i in range(1, 5):
        push(intake, f"r{i}")
    result = tick(instance, intake)
    job = build_definitions().resolve_job_def(TRANSLATE_JOB)
    only_first = result.run_requests[0]  # the daemon created one run, then was killed
    instance.create_run_for_job(job, run_config=only_first.run_config,
                                tags={**only_first.tags, RUN_KEY_TAG: only_first.run_key})
    retry = tick(instance, intake)
    assert request_ids(retry) == [["r3", "r4"]]
    create_runs(instance, retry)
    assert not tick(instance, intake).run_requests
    runs = instance.get_runs()
    carried = sorted(r["request_id"] for run in runs
                     for r in run.run_config["ops"]["download"]["config"]["requests"])
    assert carried == ["r1", "r2", "r3", "r4"]


def test_claimed_by_a_tick_that_died_before_recording_anything(instance, intake):
    push(intake, "r1")
    push(intake, "r2")
    intake.queue().claim(2)  # claimed, then the daemon was SIGKILLed before the status was written
    result = tick(instance, intake)
    assert request_ids(result) == [["r1", "r2"]]


def test_duplicate_request_id_makes_one_run(instance, intake):
    push(intake, "dup")
    push(intake, "dup")
    result = tick(instance, intake)
    assert request_ids(result) == [["dup"]]
    create_runs(instance, result)
    push(intake, "dup")  # a later resubmission while the first is queued/running/succeeded
    later = tick(instance, intake)
    assert not later.run_requests
    assert intake.queue().in_processing() == 0 and intake.queue().depth() == 0
    assert instance.get_runs_count() == 1


def test_dead_request_resubmitted_gets_a_new_attempt(instance, intake):
    push(intake, "r1")
    create_runs(instance, tick(instance, intake))
    intake.status().mark("r1", "dead", error="[download] HTTP 404")
    push(intake, "r1")
    retry = tick(instance, intake)
    assert [r.run_key for r in retry.run_requests] == ["r1#2"]
    assert intake.status().get("r1")["state"] == "queued" and intake.status().get("r1")["attempt"] == "2"


def test_forced_request_reruns_a_succeeded_one(instance, intake):
    push(intake, "r1")
    create_runs(instance, tick(instance, intake))
    intake.status().mark("r1", "succeeded", result_url="file:///x.png")
    push(intake, "r1", options={"force": True})
    assert [r.run_key for r in tick(instance, intake).run_requests] == ["r1#2"]


def test_idle_tick_long_polls_and_launches_a_request_pushed_during_it(instance, redis_server, redis_client):
    """A lone request is claimed while the tick waits, not at the next tick (which starts >= 5 s later)."""
    intake = IntakeResource(redis_url=redis_server.url, batch_size=8, claim_wait_seconds=3, linger_seconds=0.1)
    pusher = threading.Timer(0.5, lambda: push(intake, "lone"))
    pusher.start()
    result = tick(instance, intake)
    pusher.join()
    assert request_ids(result) == [["lone"]]  # claimed inside this tick: without the long poll it found nothing
    assert intake.status().get("lone")["state"] == "queued"
    assert intake.claim_wait() == 3.0
    # The wait stays under the Redis socket timeout (5 s), whatever is configured.
    assert IntakeResource(redis_url=redis_server.url, claim_wait_seconds=30).claim_wait() == 4.5


def test_backpressure_holds_the_in_flight_limit(instance, redis_server, redis_client):
    intake = IntakeResource(redis_url=redis_server.url, batch_size=8, max_in_flight=3, claim_wait_seconds=0)
    for i in range(10):
        push(intake, f"b{i}")
    first = tick(instance, intake)
    assert request_ids(first) == [["b0", "b1", "b2"]]
    assert intake.queue().depth() == 7
    [run_id] = create_runs(instance, first)
    held = tick(instance, intake)  # the run is queued: 3 requests in flight, nothing more is claimed
    assert not held.run_requests and intake.queue().depth() == 7
    assert "7 waiting, 3 in flight (limit 3)" in held.skip_reason.skip_message
    instance.report_run_canceled(instance.get_run_by_id(run_id))  # finished: room for the next three
    assert request_ids(tick(instance, intake)) == [["b3", "b4", "b5"]]


def test_malformed_messages_are_dead_lettered_at_once(instance, intake):
    queue = intake.queue()
    queue.push("this is not json")
    queue.push(json.dumps({"request_id": "m2", "image_url": "https://x/a.png"}))
    queue.push(json.dumps({"request_id": "m3", "image_url": "ftp://x/a.png", "target_lang": "en"}))
    queue.push(json.dumps({"request_id": "m4", "image_url": "https://x/a.png", "target_lang": "xx"}))
    result = tick(instance, intake)
    assert not result.run_requests
    letters = {r["request_id"]: r for r in intake.dead_letters().list()}
    assert letters["m2"]["reason"].startswith("invalid request field 'target_lang'")
    assert "scheme 'ftp'" in letters["m3"]["reason"] and "unknown language 'xx'" in letters["m4"]["reason"]
    assert any(r["payload"] == "this is not json" for r in intake.dead_letters().list())
    assert intake.dead_letters().count() == 4
    assert queue.depth() == 0 and queue.in_processing() == 0
    assert not tick(instance, intake).run_requests  # never retried


def test_redis_down_fails_the_tick_without_claiming(instance):
    intake = IntakeResource(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(redis.ConnectionError):
        tick(instance, intake)
    assert instance.get_runs_count() == 0


def test_status_dead_letters_and_queue_share_one_configuration(intake, redis_client):
    settings = intake.config()
    assert isinstance(intake.status(), RequestStatus) and isinstance(intake.dead_letters(), DeadLetters)
    assert type(intake.queue()) is type(create_queue(redis_client, settings))


def test_failed_run_settles_only_what_its_publish_step_did_not(instance, intake):
    for rid in ("s1", "s2", "s3"):
        push(intake, rid)
    result = tick(instance, intake)
    status = intake.status()
    status.mark("s1", "running", run_id="run-a")
    status.mark("s1", "succeeded", run_id="run-a", result_url="file:///s1.png")  # settled by publish
    status.mark("s2", "running", run_id="run-a")  # the run process died before publish
    intake.settle_failed_run("run-a", ["s1", "s2"], "run worker died", will_retry=False)
    assert status.get("s1")["state"] == "succeeded"
    assert status.get("s2")["state"] == "dead" and status.get("s2")["error"] == "run worker died"
    [letter] = intake.dead_letters().list()
    assert letter["request_id"] == "s2" and letter["run_id"] == "run-a" and letter["stage"] == "run"
    assert json.loads(letter["payload"])["request_id"] == "s2"  # the original message, ready to re-queue
    results = [json.loads(r) for r in intake.client().lrange(intake.config().results, 0, -1)]
    assert [(r["request_id"], r["status"]) for r in results] == [("s2", "failed")]
    # When Dagster will retry the run, the request is only "failed" for now: nothing is dead-lettered.
    status.mark("s3", "running", run_id="run-b")
    intake.settle_failed_run("run-b", ["s3"], "step failed", will_retry=True)
    assert status.get("s3")["state"] == "failed" and intake.dead_letters().count() == 1
    assert result.run_requests  # (the batch was launched normally)


class _Paused:
    """A real queue or status object with a pause at the first call of one method: lets a test interleave two
    ticks at an exact point. ``hook`` runs before that call; everything else is the real object's behaviour."""

    def __init__(self, target: Any, method: str, hook: Any) -> None:
        self._target, self._method, self._hook = target, method, hook

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name != self._method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._hook is not None:
                hook, self._hook = self._hook, None
                hook()
            return attr(*args, **kwargs)

        return call


# hook name -> (object "queue" or "status", method, callable). Dagster copies resources from their config, so
# the hook cannot live on the resource instance.
_HOOKS: dict[str, tuple[str, str, Any]] = {}


class _HookedIntake(IntakeResource):
    """IntakeResource whose queue or status pauses at one call (see _Paused); configuration as usual."""

    hook: str = ""

    def queue(self) -> Any:
        spec = _HOOKS.get(self.hook)
        return _Paused(super().queue(), spec[1], spec[2]) if spec and spec[0] == "queue" else super().queue()

    def status(self) -> Any:
        spec = _HOOKS.get(self.hook)
        return _Paused(super().status(), spec[1], spec[2]) if spec and spec[0] == "status" else super().status()


def _overlapping_ticks(instance: DagsterInstance, intake: IntakeResource, before: str) -> SensorResult:
    """Tick O (``orphan``) claims r1..r3 and decides their run keys, then stalls before writing them: its daemon
    was SIGKILLed and nobody will submit what it returns. Meanwhile r0 arrives and tick N of the next daemon
    runs; O's status marks land just before N's ``before`` queue call."""
    o_paused, o_go, o_done = threading.Event(), threading.Event(), threading.Event()

    def o_pause() -> None:
        o_paused.set()
        assert o_go.wait(30)

    def run_orphan() -> None:
        try:
            tick(instance, orphan)  # its run requests are lost with the daemon that asked for them
        finally:
            o_done.set()

    def let_orphan_finish() -> None:
        o_go.set()
        assert o_done.wait(30)

    options = {"redis_url": intake.redis_url, "queue_kind": intake.queue_kind, "batch_size": 2,
               "claim_wait_seconds": 0}
    _HOOKS["orphan"] = ("status", "mark", o_pause)
    _HOOKS["current"] = ("queue", before, let_orphan_finish)
    orphan, current = _HookedIntake(**options, hook="orphan"), _HookedIntake(**options, hook="current")
    thread = threading.Thread(target=run_orphan, daemon=True)
    try:
        thread.start()
        assert o_paused.wait(30)
        push(intake, "r0")
        result = tick(instance, current)
    finally:
        let_orphan_finish()
        thread.join(30)
        _HOOKS.clear()
    return result


def _settle(instance: DagsterInstance, intake: IntakeResource, first: SensorResult) -> dict[str, set[str]]:
    """Create the runs the daemon would (this tick's, then the next ticks'), until nothing is left pending;
    return the run keys that carried each request."""
    create_runs(instance, first)
    for _ in range(4):
        create_runs(instance, tick(instance, intake))
    keys: dict[str, set[str]] = {}
    for run in instance.get_runs():
        for request in run.run_config["ops"]["download"]["config"]["requests"]:
            keys.setdefault(request["request_id"], set()).add(run.tags[RUN_KEY_TAG])
    assert intake.queue().in_processing() == 0 and intake.queue().depth() == 0
    return keys


@pytest.mark.parametrize("before", ["claim", "ack"])
def test_tick_overlapping_an_orphaned_tick_neither_loses_nor_duplicates(instance, intake, before):
    """A daemon SIGKILLed mid-tick leaves its evaluation running in its code server; the next daemon's first tick
    can overlap it. Whatever the interleaving, every request ends in exactly one run key.

    ``claim``: the orphan's status marks land after the new tick listed r1..r3 as claimed-but-unrecorded (fresh)
    and before it checked them for duplicates. ``ack``: they land after the new tick recorded its own run keys
    (r3 batched with r0, where the orphan had r3 alone), over them.
    """
    for rid in ("r1", "r2", "r3"):
        push(intake, rid)
    first = _overlapping_ticks(instance, intake, before)
    keys = _settle(instance, intake, first)
    assert sorted(keys) == ["r0", "r1", "r2", "r3"], keys  # nothing lost
    assert all(len(k) == 1 for k in keys.values()), keys  # nothing under two run keys


def test_tick_that_lost_its_lease_while_claiming_writes_nothing(instance, intake):
    """A tick stalled past its lease's expiry (another tick took over meanwhile) must not write its decisions:
    what it claimed stays pending, unrecorded, for the ticks that follow."""
    lease_key = f"{intake.config().queue}:tick-lease"
    for rid in ("r1", "r2"):
        push(intake, rid)

    def taken_over() -> None:
        intake.client().set(lease_key, "another-tick")

    _HOOKS["stalled"] = ("queue", "claim", taken_over)
    stalled = _HookedIntake(redis_url=intake.redis_url, queue_kind=intake.queue_kind, batch_size=2,
                            claim_wait_seconds=0, hook="stalled")
    try:
        with pytest.raises(LeaseLost):
            tick(instance, stalled)
    finally:
        _HOOKS.clear()
    assert intake.client().get(lease_key) == "another-tick"  # not released by the tick that lost it
    assert intake.status().get("r1") is None and intake.status().get("r2") is None
    assert intake.queue().in_processing() == 2
    skipped = tick(instance, intake)  # the other tick still holds the lease
    assert not skipped.run_requests and "another intake tick" in skipped.skip_reason.skip_message
    intake.client().delete(lease_key)  # it finished
    assert request_ids(tick(instance, intake)) == [["r1", "r2"]]
