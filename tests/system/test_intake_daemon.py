"""Redis intake through the real `dagster-daemon`: sensor ticks, queued runs, run workers, delivery.

These are the claims producers rely on, proven end to end: pushed requests complete with no other command than
the daemon; failures end dead with a reason and can be re-queued; killing the daemon with SIGKILL or restarting
Redis in the middle of intake loses nothing and runs nothing twice.

Every wait follows progress (queues, request states, runs), never the clock alone: see tests/support/daemon.py.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from dagster import DagsterEvent, DagsterInstance, DagsterRunStatus
from dagster._core.events import DagsterEventType

from imgtrans_pipeline.cli import main as imgtrans
from imgtrans_pipeline.intake import verify_signature
from tests.support.daemon import (
    RETRY_NUMBER_TAG,
    Daemon,
    assert_exactly_once,
    carried_requests,
    kill_repeatedly,
    monitored_config,
    requests_per_run,
    runs_progress,
    runs_table,
)
from tests.support.daemon import WEBHOOK_SECRET as SECRET
from tests.support.daemon import wait_for as wait_for_progress
from tests.support.redis_server import RedisServer
from tests.support.servers import serve_aiohttp

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
TERMINAL = {"succeeded", "dead"}
QUEUE, PROCESSING, RESULTS = "imgtrans:requests", "imgtrans:requests:processing", "imgtrans:results"


def push(client, request_id: str, image: Path | str, **fields: Any) -> None:
    message = {"request_id": request_id, "image_url": str(image), "source_lang": "zh", "target_lang": "en",
               **fields}
    client.lpush("imgtrans:requests", json.dumps(message))


def progress(client, instance: DagsterInstance) -> tuple:
    """Everything that moves while intake works: queue lengths, each request's state, the runs."""
    keys = sorted(client.scan_iter("imgtrans:request:*"))
    states = tuple((key, client.hget(key, "state"), client.hget(key, "updated_at")) for key in keys)
    return client.llen(QUEUE), client.llen(PROCESSING), client.llen(RESULTS), states, runs_progress(instance)


def wait_for(condition: Callable[[DagsterInstance], Any], what: str, client, daemon: Daemon) -> Any:
    return wait_for_progress(condition, what, daemon, partial(progress, client))


def wait_terminal(client, request_ids: list[str], daemon: Daemon) -> dict[str, dict]:
    def terminal(_instance: DagsterInstance) -> dict[str, dict] | None:
        states = {rid: client.hgetall(f"imgtrans:request:{rid}") for rid in request_ids}
        return states if all(s.get("state") in TERMINAL for s in states.values()) else None

    return wait_for(terminal, "not all requests finished", client, daemon)


def settled_runs(client, daemon: Daemon) -> list[Any]:
    """Every run, once all have finished (publish settles requests a moment before its run is marked finished;
    a run left STARTING by a killed daemon finishes when monitoring fails it)."""
    def finished(instance: DagsterInstance) -> list[Any] | None:
        runs = instance.get_runs()
        return runs if all(run.is_finished for run in runs) else None

    return wait_for(finished, "not all runs finished", client, daemon)


def results_of(client) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.lrange(RESULTS, 0, -1)]


def test_pushed_requests_complete_with_results_webhooks_and_dead_letters(tmp_path, redis_server, redis_client,
                                                                          daemon_factory, images):
    received: list[dict[str, Any]] = []
    serve_image = {"ok": False}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        assert verify_signature(SECRET, request.headers["X-Imgtrans-Timestamp"], body,
                                request.headers["X-Imgtrans-Signature"])
        received.append(json.loads(body))
        return web.Response(status=204)

    async def flaky_image(request: web.Request) -> web.Response:
        if not serve_image["ok"]:
            return web.Response(status=404, text="not yet")
        return web.Response(body=images[4].read_bytes(), content_type="image/png")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/late.png", flaky_image)
    with serve_aiohttp(app) as base:
        push(redis_client, "ok-1", images[0], callback_url=f"{base}/hook")
        push(redis_client, "ok-2", images[1])
        push(redis_client, "ok-3", images[2])
        push(redis_client, "late", f"{base}/late.png")
        redis_client.lpush("imgtrans:requests", "{not json")
        daemon = daemon_factory(redis_server.url)
        daemon.start()
        states = wait_terminal(redis_client, ["ok-1", "ok-2", "ok-3", "late"], daemon)

        for rid in ("ok-1", "ok-2", "ok-3"):
            assert states[rid]["state"] == "succeeded", states[rid]
            assert states[rid]["result_url"].endswith(f"/{rid}/result.png")
            assert Path(states[rid]["result_url"].removeprefix("file://")).exists()
        assert states["ok-1"]["delivery"] == "delivered" and states["ok-1"]["delivery_attempts"] == "1"
        assert [m["request_id"] for m in received] == ["ok-1"] and received[0]["status"] == "succeeded"

        assert states["late"]["state"] == "dead" and "404" in states["late"]["error"]
        letters = [json.loads(x) for x in redis_client.lrange("imgtrans:dead", 0, -1)]
        by_id = {letter.get("request_id"): letter for letter in letters}
        assert by_id["late"]["run_id"] == states["late"]["run_id"] and "404" in by_id["late"]["reason"]
        assert json.loads(by_id["late"]["payload"])["image_url"] == f"{base}/late.png"
        assert any(letter["payload"] == "{not json" for letter in letters)
        results = [json.loads(x) for x in redis_client.lrange("imgtrans:results", 0, -1)]
        assert sorted(r["request_id"] for r in results) == ["late", "ok-1", "ok-2", "ok-3"]

        # The operator fixes the cause and re-queues the dead letter: a second attempt, a new run.
        serve_image["ok"] = True
        os.environ["IMGTRANS_REDIS_URL"] = redis_server.url
        try:
            assert imgtrans(["requeue", "--id", "late"]) == 0
        finally:
            del os.environ["IMGTRANS_REDIS_URL"]
        wait_for(lambda _: redis_client.hget("imgtrans:request:late", "state") == "succeeded",
                 "the re-queued request did not succeed", redis_client, daemon)
        late = redis_client.hgetall("imgtrans:request:late")
        assert late["state"] == "succeeded" and late["attempt"] == "2", late
        runs = settled_runs(redis_client, daemon)
        assert requests_per_run(runs) == {"ok-1": 1, "ok-2": 1, "ok-3": 1, "late": 2}
        assert len(runs) == 3  # batches of two: (ok-1, ok-2), (ok-3, late), then late again


def test_daemon_sigkill_mid_intake_loses_and_duplicates_nothing(tmp_path, redis_server, redis_client,
                                                               daemon_factory, images):
    """SIGKILL the daemon three times during intake; every request is then submitted once and delivered once.

    What may legitimately happen: a daemon killed after marking a run STARTING but before a run worker took it
    leaves the run STARTING; run monitoring fails it and ``run_retries`` launches a retry of it, which carries
    the same requests (same run key, same root run). That is one submission retried, not a duplicate. What
    must never happen is one request carried under two run keys (two submissions), or delivered twice.
    """
    ids = [f"k{i}" for i in range(8)]
    for i, rid in enumerate(ids):
        push(redis_client, rid, images[i % len(images)], options={"force": True})  # no dedupe shortcut
    daemon = daemon_factory(redis_server.url)
    kill_repeatedly(daemon, partial(progress, redis_client), random.Random(7))
    states = wait_terminal(redis_client, ids, daemon)
    runs = settled_runs(redis_client, daemon)
    table = runs_table(runs)

    assert all(state["state"] == "succeeded" for state in states.values()), (states, table)
    assert_exactly_once(results_of(redis_client), runs, ids)
    assert redis_client.llen(QUEUE) == 0 and redis_client.llen(PROCESSING) == 0


def test_run_left_starting_by_a_killed_daemon_is_retried_once_and_delivered_once(tmp_path, redis_server, redis_client,
                                                                                daemon_factory, images):
    """The daemon SIGKILLed inside ``launch_run``, after it marked a run STARTING and before a worker took it: the
    run stays STARTING, monitoring fails it, ``run_retries`` retries it. Its requests are then carried by two runs
    of one submission (one run key, one root run) and delivered once. (The random kills of the test above only
    sometimes land in that window; here the window is set up exactly.)"""
    ids = ["s0", "s1", "s2", "s3"]
    for i, rid in enumerate(ids):
        push(redis_client, rid, images[i % len(images)], options={"force": True})
    daemon = daemon_factory(redis_server.url, monitored_config(tmp_path, max_concurrent_runs=0))
    daemon.start()

    def submitted(instance: DagsterInstance) -> list[Any] | None:
        runs = instance.get_runs()
        done = (len(runs) == 2 and all(run.status == DagsterRunStatus.QUEUED for run in runs)
                and redis_client.llen(QUEUE) == 0 and redis_client.llen(PROCESSING) == 0)
        return runs if done else None

    runs = wait_for(submitted, "the sensor did not submit the two batches", redis_client, daemon)
    daemon.kill()
    [stuck] = [run for run in runs if "s0" in carried_requests(run)]
    with daemon.instance() as instance:
        # What DagsterInstance.launch_run records first, before it calls the run launcher: the daemon died there.
        instance.report_dagster_event(DagsterEvent(event_type_value=DagsterEventType.PIPELINE_STARTING.value,
                                                   job_name=stuck.job_name), run_id=stuck.run_id)
        assert instance.get_run_by_id(stuck.run_id).status == DagsterRunStatus.STARTING
    # The run queue launches again; the stuck run is failed 60 s after it was marked STARTING (not Dagster's 180 s:
    # the point is that it is failed and retried, and a worker starts in seconds when the machine is not overloaded).
    shutil.copyfile(monitored_config(tmp_path, start_timeout=60), daemon.home / "dagster.yaml")
    daemon.start()
    states = wait_terminal(redis_client, ids, daemon)
    runs = settled_runs(redis_client, daemon)
    table = runs_table(runs)

    assert all(state["state"] == "succeeded" for state in states.values()), (states, table)
    assert_exactly_once(results_of(redis_client), runs, ids)
    chain = [run for run in runs if (run.root_run_id or run.run_id) == stuck.run_id]
    assert [run.status for run in chain].count(DagsterRunStatus.FAILURE) >= 1, table
    [retry] = [run for run in chain if run.parent_run_id == stuck.run_id]  # Dagster retried it, once
    assert retry.tags[RETRY_NUMBER_TAG] == "1" and carried_requests(retry) == carried_requests(stuck), table
    [done] = [run for run in chain if run.status == DagsterRunStatus.SUCCESS]
    assert states["s0"]["run_id"] == states["s1"]["run_id"] == done.run_id, (states, table)


def test_redis_restart_with_aof_mid_intake_loses_nothing(tmp_path, daemon_factory, images):
    with RedisServer(appendonly=True, appendfsync="always") as server:
        client = server.client()
        ids = [f"a{i}" for i in range(4)]
        for i, rid in enumerate(ids):
            push(client, rid, images[i % len(images)], options={"force": True})
        daemon = daemon_factory(server.url)
        daemon.start()
        wait_for(lambda _: client.llen(QUEUE) < len(ids), "the first tick claimed nothing", client, daemon)
        server.restart()  # SIGKILL + start on the same port and data directory
        client = server.client()
        states = wait_terminal(client, ids, daemon)
        carried = requests_per_run(settled_runs(client, daemon))
    assert all(state["state"] == "succeeded" for state in states.values()), states
    assert sorted(carried) == sorted(ids) and set(carried.values()) == {1}, carried
