"""Kafka intake through the real `dagster-daemon` and a real broker (tansu), without Redis: request state in the
SQLite state file shared by the sensor and the run workers.

The claim: SIGKILL the daemon repeatedly in the middle of intake, and every message is still carried by exactly
one submission (one run key, one root run) and delivered once on the results topic; a malformed message is one
dead letter; a duplicate makes no run. Waits follow progress (offsets, results, runs), never the clock alone, as in
test_intake_daemon.py, whose daemon helpers this reuses.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.storage.tags import RUN_KEY_TAG

from tests.system import test_intake_daemon as redis_daemon
from tests.system.test_intake_daemon import RETRY_NUMBER_TAG, STALL_TIMEOUT, Daemon, carried_requests, runs_table

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
daemon_factory = redis_daemon.daemon_factory  # fixtures shared with the Redis daemon tests
images = redis_daemon.images


def progress(topics: Any, instance: DagsterInstance) -> tuple:
    """What moves while intake works: committed offsets, result messages, each run's status and last event."""
    runs = []
    for run in instance.get_runs():
        last = None
        if not run.is_finished:
            records = instance.get_records_for_run(run.run_id, limit=1, ascending=False).records
            last = records[0].storage_id if records else None
        runs.append((run.run_id, run.status.value, last))
    committed = tuple(topics.broker.committed(topics.requests, topics.group))
    return committed, len(topics.broker.read_all(topics.results)), tuple(sorted(runs))


def wait_for(condition: Callable[[DagsterInstance], Any], what: str, topics: Any, daemon: Daemon) -> Any:
    """Poll until ``condition(instance)`` is truthy; fail only after STALL_TIMEOUT s in which nothing moved."""
    with daemon.instance() as instance:
        last, moved = None, time.monotonic()
        while not (value := condition(instance)):
            now = progress(topics, instance)
            if now != last:
                last, moved = now, time.monotonic()
            elif time.monotonic() - moved > STALL_TIMEOUT:
                pytest.fail(f"{what}: nothing moved for {STALL_TIMEOUT:.0f} s\n{runs_table(instance.get_runs())}\n"
                            f"{daemon.log_tail()}")
            time.sleep(1.0)
        return value


def test_daemon_sigkill_mid_kafka_intake_loses_and_duplicates_nothing(tmp_path, kafka_topics, daemon_factory,
                                                                      images):
    topics = kafka_topics
    ids = [f"k{i}" for i in range(8)]
    messages: list[Any] = [{"request_id": rid, "image_url": str(images[i % len(images)]), "source_lang": "zh",
                            "target_lang": "en", "options": {"force": True}}  # no dedupe shortcut
                           for i, rid in enumerate(ids)]
    messages.insert(3, "{not json")
    # k1 sent twice (without options.force: a forced request sent again after it succeeded is redone, as on Redis)
    messages.append({**messages[1], "options": {}})
    topics.broker.produce(topics.requests, *messages)
    daemon = daemon_factory("", **topics.env(), IMGTRANS_INTAKE_STATE_DB=str(tmp_path / "intake-state.sqlite"),
                            IMGTRANS_CLAIM_WAIT_SECONDS="1", IMGTRANS_MAX_IN_FLIGHT="4")
    # At most 4 requests in flight (2 runs of 2): intake goes on for as long as the runs do, one tick reading,
    # committing and submitting after another, so the kills land in the middle of it rather than after it.
    rng = random.Random(11)
    for _ in range(3):
        # Kill once this daemon has moved something (committed, created, launched or delivered), plus a seeded
        # offset: the kill lands inside reading, submitting or launching whatever the machine's speed.
        with daemon.instance() as instance:
            before = progress(topics, instance)
        daemon.start()
        wait_for(lambda inst, before=before: progress(topics, inst) != before, "the daemon made no progress",
                 topics, daemon)
        time.sleep(rng.uniform(0.0, 2.0))
        daemon.kill()
    daemon.start()

    def delivered(_instance: DagsterInstance) -> list[dict] | None:
        results = topics.broker.read_all(topics.results)
        return results if {r["request_id"] for r in results} >= set(ids) else None

    wait_for(delivered, "not every request was delivered", topics, daemon)

    def settled(instance: DagsterInstance) -> list[Any] | None:
        runs = instance.get_runs()
        done = all(run.is_finished for run in runs)
        return runs if done and topics.broker.committed(topics.requests, topics.group) == [len(messages)] else None

    runs = wait_for(settled, "not all runs finished and offsets committed", topics, daemon)
    table = runs_table(runs)

    results = topics.broker.read_all(topics.results)
    assert Counter(r["request_id"] for r in results) == Counter(ids), (results, table)  # each delivered once
    assert {r["status"] for r in results} == {"succeeded"}, (results, table)
    [letter] = topics.broker.read_all(topics.dead)
    assert letter["payload"] == "{not json" and letter["stage"] == "intake", letter
    by_id = {run.run_id: run for run in runs}
    keys: dict[str, set[str]] = defaultdict(set)
    roots: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        root = run.root_run_id or run.run_id
        if run.parent_run_id:  # a Dagster run retry of a run a killed daemon left STARTING: same submission
            assert run.tags.get(RETRY_NUMBER_TAG) and run.tags.get(RUN_KEY_TAG) == by_id[root].tags.get(RUN_KEY_TAG)
        for rid in carried_requests(run):
            keys[rid].add(run.tags.get(RUN_KEY_TAG, ""))
            roots[rid].add(root)
        assert run.tags[RUN_KEY_TAG].startswith(f"kafka:{topics.requests}:0:"), table
    assert sorted(keys) == sorted(ids), table
    assert all(len(v) == 1 for v in keys.values()), (dict(keys), table)  # one run key each: k1 not run twice
    assert all(len(v) == 1 for v in roots.values()), (dict(roots), table)
    succeeded = Counter(rid for run in runs if run.status == DagsterRunStatus.SUCCESS for rid in carried_requests(run))
    assert succeeded == Counter(ids), table
