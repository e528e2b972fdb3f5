"""The Kafka intake sensor, tick by tick, against a real Kafka-API broker (tansu) and a real Dagster instance.

No Redis here: request state lives in the SQLite state file (IMGTRANS_INTAKE_STATE_DB), as in a Kafka-only
deployment. Runs are created the way the daemon records a sensor's run requests (run key tag included) or executed
in process with those tags, so each test can stop "the daemon" between any two steps. The daemon itself is
exercised in test_kafka_daemon.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context
from dagster._core.storage.tags import RUN_KEY_TAG

from imgtrans_pipeline import names
from imgtrans_pipeline.catalogue import stored_hashes
from imgtrans_pipeline.orchestration.definitions import build_definitions, build_resources
from imgtrans_pipeline.orchestration.sensors import kafka_intake_sensor
from tests.support.imagegen import text_image


@pytest.fixture
def env(tmp_path, setenv, kafka_topics):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(Path(__file__).resolve().parents[2] / "dagster.yaml", home / "dagster.yaml")
    setenv(DAGSTER_HOME=str(home), IMGTRANS_ARTIFACTS=str(tmp_path / "artifacts"),
           IMGTRANS_TRANSLATION_CACHE=str(tmp_path / "cache.sqlite"),
           IMGTRANS_INTAKE_STATE_DB=str(tmp_path / "intake-state.sqlite"), IMGTRANS_CLAIM_WAIT_SECONDS="0",
           **kafka_topics.env())
    return kafka_topics


@pytest.fixture
def instance(env) -> DagsterInstance:
    with DagsterInstance.get() as inst:
        yield inst


def tick(instance: DagsterInstance, **intake_changes: Any) -> SensorResult:
    resources = build_resources()
    if intake_changes:
        current = resources["intake"]
        fields = {name: getattr(current, name) for name in type(current).model_fields}
        resources["intake"] = type(current)(**{**fields, **intake_changes})
    return kafka_intake_sensor(build_sensor_context(instance=instance, resources=resources))


def create_runs(instance: DagsterInstance, result: SensorResult, only: int | None = None) -> list[str]:
    """What the daemon does with a tick's run requests (``only``: the first n, then it "dies")."""
    job = build_definitions().resolve_job_def(names.TRANSLATE_JOB)
    return [instance.create_run_for_job(job, run_config=r.run_config, tags={**r.tags, RUN_KEY_TAG: r.run_key}).run_id
            for r in (result.run_requests or [])[:only]]


def execute(instance: DagsterInstance, result: SensorResult) -> None:
    """Run each requested run in process, tagged as the daemon would create it."""
    job = build_definitions().resolve_job_def(names.TRANSLATE_JOB)
    for request in result.run_requests or []:
        job.execute_in_process(run_config=request.run_config, instance=instance,
                               tags={**request.tags, RUN_KEY_TAG: request.run_key}, raise_on_error=False)


def carried(result: SensorResult) -> list[list[str]]:
    return [[r["request_id"] for r in rr.run_config["ops"]["download"]["config"]["requests"]]
            for rr in result.run_requests or []]


def request(tmp_path: Path, request_id: str, line: str = "全新升级", **fields: Any) -> dict[str, Any]:
    image = tmp_path / f"{request_id}.png"
    if not image.exists():
        text_image([line], width=320, height=120, font_size=40, top=30).save(image)
    return {"request_id": request_id, "image_url": str(image), "source_lang": "zh", "target_lang": "en", **fields}


def test_valid_malformed_and_duplicate_messages(tmp_path, env, instance):
    lines = ["全新升级", "限时特价", "免费送货上门", "透气舒适"]
    messages: list[Any] = [request(tmp_path, f"k{i}", line) for i, line in enumerate(lines)]
    messages.insert(2, "{not json")
    messages.append(request(tmp_path, "k1", lines[1]))  # a producer sent k1 twice
    env.broker.produce(env.requests, *messages)

    first = tick(instance)
    assert carried(first) == [["k0", "k1", "k2", "k3"]]
    [run_request] = first.run_requests
    assert run_request.run_key == f"kafka:{env.requests}:0:0-1,3-4"
    assert run_request.tags[names.TAG_SOURCE] == "kafka"
    assert run_request.tags[names.TAG_KAFKA_OFFSETS] == "0-1,3-4"
    [letter] = env.broker.read_all(env.dead)
    assert letter["payload"] == "{not json" and letter["stage"] == "intake" and "JSON" in letter["reason"]
    assert letter["source"] == f"{env.requests}:0:2"
    # Nothing committed: the run carrying offset 0 does not exist yet.
    assert env.broker.committed(env.requests, env.group) == [-1001]

    # The daemon died before creating the run: the next tick asks for the same run again, and dead-letters nothing
    # twice.
    again = tick(instance)
    assert [r.run_key for r in again.run_requests] == [run_request.run_key]
    assert len(env.broker.read_all(env.dead)) == 1

    execute(instance, again)
    settled = tick(instance)
    assert not settled.run_requests
    assert env.broker.committed(env.requests, env.group) == [6]
    results = env.broker.read_all(env.results)
    assert sorted(r["request_id"] for r in results) == ["k0", "k1", "k2", "k3"]
    assert {r["status"] for r in results} == {"succeeded"}
    assert all(Path(r["result_url"].removeprefix("file://")).exists() for r in results)
    assert instance.get_runs_count() == 1

    env.broker.produce(env.requests, request(tmp_path, "k3", lines[3]))  # a late duplicate of finished work
    assert not tick(instance).run_requests
    assert env.broker.committed(env.requests, env.group) == [7]
    assert instance.get_runs_count() == 1 and len(env.broker.read_all(env.dead)) == 1


def test_hash_only_message_resolves_a_stored_image(tmp_path, env, instance):
    env.broker.produce(env.requests, request(tmp_path, "first"))
    execute(instance, tick(instance))
    resources = build_resources()
    [content_hash] = stored_hashes(resources["artifacts"].store())

    env.broker.produce(env.requests, {"image_hash": content_hash, "target_lang": "en", "source_lang": "zh",
                                      "options": {"force": True}},
                       {"image_hash": "0" * 64, "target_lang": "en"})
    result = tick(instance)
    [[request_id]] = carried(result)
    assert request_id == f"hash-{content_hash[:40]}.en"
    config = result.run_requests[0].run_config["ops"]["download"]["config"]["requests"][0]
    assert config["image_url"].endswith("/first/source.png")
    [letter] = env.broker.read_all(env.dead)
    assert f"no stored image has hash {'0' * 64}" in letter["reason"]
    execute(instance, result)
    assert not tick(instance).run_requests
    results = {r["request_id"]: r for r in env.broker.read_all(env.results)}
    assert results[request_id]["status"] == "succeeded"
    assert Path(results[request_id]["result_url"].removeprefix("file://")).exists()


def test_partially_created_runs_and_backpressure(tmp_path, env, instance):
    env.broker.produce(env.requests, *(request(tmp_path, f"b{i}") for i in range(5)))
    first = tick(instance, batch_size=2, max_in_flight=4)
    assert carried(first) == [["b0", "b1"], ["b2", "b3"]]  # b4 waits: 4 in flight at most
    create_runs(instance, first, only=1)  # the daemon created one run, then was killed

    # The run of b0, b1 holds 2 of the 4 slots: the re-read submits b2, b3 again (same key) and b4 still waits.
    second = tick(instance, batch_size=2, max_in_flight=4)
    assert carried(second) == [["b2", "b3"]]
    assert second.run_requests[0].run_key == first.run_requests[1].run_key
    assert env.broker.committed(env.requests, env.group) == [2]
    create_runs(instance, second)
    assert not tick(instance, batch_size=2, max_in_flight=4).run_requests  # 4 in flight
    assert env.broker.committed(env.requests, env.group) == [4]

    for run in instance.get_runs():
        instance.report_run_canceled(run)  # finished: room for b4
    third = tick(instance, batch_size=3, max_in_flight=4)  # another batch size cuts no message twice
    assert carried(third) == [["b4"]]
    create_runs(instance, third)
    tick(instance)
    assert env.broker.committed(env.requests, env.group) == [5]
    per_request = sorted(rid for run in instance.get_runs()
                         for rid in (r["request_id"] for r in run.run_config["ops"]["download"]["config"]["requests"]))
    assert per_request == ["b0", "b1", "b2", "b3", "b4"]


def test_failed_request_is_dead_lettered_and_requeued(tmp_path, env, instance):
    from imgtrans_pipeline.cli import main as imgtrans

    missing = tmp_path / "later.png"
    env.broker.produce(env.requests, request(tmp_path, "ok"), {**request(tmp_path, "gone"), "image_url": str(missing)})
    first = tick(instance)
    execute(instance, first)
    [run] = instance.get_runs()
    [letter] = env.broker.read_all(env.dead)
    assert letter["request_id"] == "gone" and letter["stage"] == "download" and letter["run_id"] == run.run_id
    assert json.loads(letter["payload"])["image_url"] == str(missing)
    results = {r["request_id"]: r for r in env.broker.read_all(env.results)}
    assert results["ok"]["status"] == "succeeded" and results["gone"]["status"] == "failed"

    # The operator fixes the cause and re-publishes the dead letter: the next tick makes a second attempt.
    text_image(["限时特价"], width=320, height=120, font_size=40, top=30).save(missing)
    assert imgtrans(["requeue", "--kafka"]) == 0
    assert imgtrans(["requeue", "--kafka"]) == 0  # nothing re-published twice
    retry = tick(instance)
    assert carried(retry) == [["gone"]]
    assert retry.run_requests[0].tags[names.TAG_ATTEMPT] == "2"
    execute(instance, retry)
    assert not tick(instance).run_requests
    finals = [r for r in env.broker.read_all(env.results) if r["request_id"] == "gone"]
    assert [r["status"] for r in finals] == ["failed", "succeeded"]
    assert env.broker.committed(env.requests, env.group) == [3]


def test_a_result_the_broker_did_not_take_is_delivered_by_the_retry_not_lost(env, instance, setenv):
    """Publishing the result fails (the broker is unreachable): the request must not look settled. Its delivery
    claim is given back and its state says why, so Dagster's retry of the run delivers it, once."""
    from imgtrans_pipeline.orchestration.resources import IntakeResource
    from tests.support.servers import free_port

    setenv(IMGTRANS_KAFKA_TIMEOUT_SECONDS="1")
    working = build_resources()["intake"]
    broken = IntakeResource(kafka_bootstrap=f"127.0.0.1:{free_port()}")  # nothing listens there
    status = working.status()
    status.mark("d1", "queued", attempt=1, source=names.SOURCE_KAFKA, payload='{"request_id": "d1"}')
    status.mark("d1", "running", run_id="run-a", attempts_increment=True)
    outcome = {"request_id": "d1", "status": "succeeded", "result_url": "file:///d1/result.png", "meta": None}

    with pytest.raises(RuntimeError, match="could not publish"):
        broken.deliver([outcome], "run-a", names.SOURCE_KAFKA)
    state = status.get("d1")
    assert state["state"] == "running" and state["error"].startswith("delivery failed"), state
    assert env.broker.read_all(env.results) == []

    working.deliver([outcome], "run-b", names.SOURCE_KAFKA)  # Dagster's retry of run-a
    working.deliver([outcome], "run-a", names.SOURCE_KAFKA)  # run-a's process, still going, tries again
    results = env.broker.read_all(env.results)
    assert [(r["request_id"], r["run_id"]) for r in results] == [("d1", "run-b")]
    assert status.get("d1")["state"] == "succeeded"
