"""Kafka intake through the real `dagster-daemon` and a real broker (tansu), without Redis: request state in the
SQLite state file shared by the sensor and the run workers.

The claim: SIGKILL the daemon repeatedly in the middle of intake, and every message is still carried by exactly
one submission (one run key, one root run) and delivered once on the results topic; a malformed message is one
dead letter; a duplicate makes no run. Waits follow progress (offsets, results, runs), never the clock alone: see
tests/support/daemon.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from dagster import DagsterInstance
from dagster._core.storage.tags import RUN_KEY_TAG

from tests.support.daemon import Daemon, assert_exactly_once, kill_repeatedly, runs_progress, runs_table
from tests.support.daemon import wait_for as wait_for_progress

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def progress(topics: Any, instance: DagsterInstance) -> tuple:
    """What moves while intake works: committed offsets, result messages, the runs."""
    committed = tuple(topics.broker.committed(topics.requests, topics.group))
    return committed, len(topics.broker.read_all(topics.results)), runs_progress(instance)


def wait_for(condition: Callable[[DagsterInstance], Any], what: str, topics: Any, daemon: Daemon) -> Any:
    return wait_for_progress(condition, what, daemon, partial(progress, topics))


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
    kill_repeatedly(daemon, partial(progress, topics), random.Random(11), max_delay=2.0)

    def delivered(instance: DagsterInstance) -> list[dict] | None:
        # A request that ended dead would never be delivered: say so now, with what the runs and the daemon saw.
        letters = [letter for letter in topics.broker.read_all(topics.dead) if letter.get("stage") != "intake"]
        if letters:
            pytest.fail(f"requests ended dead: {letters}\n{runs_table(instance.get_runs())}\n{daemon.log_tail()}")
        results = topics.broker.read_all(topics.results)
        return results if {r["request_id"] for r in results} >= set(ids) else None

    wait_for(delivered, "not every request was delivered", topics, daemon)

    def settled(instance: DagsterInstance) -> list[Any] | None:
        runs = instance.get_runs()
        done = all(run.is_finished for run in runs)
        return runs if done and topics.broker.committed(topics.requests, topics.group) == [len(messages)] else None

    runs = wait_for(settled, "not all runs finished and offsets committed", topics, daemon)
    table = runs_table(runs)

    assert_exactly_once(topics.broker.read_all(topics.results), runs, ids)  # k1, sent twice, run once
    [letter] = topics.broker.read_all(topics.dead)
    assert letter["payload"] == "{not json" and letter["stage"] == "intake", letter
    assert all(run.tags[RUN_KEY_TAG].startswith(f"kafka:{topics.requests}:0:") for run in runs), table
