"""Redis intake through the real `dagster-daemon`: sensor ticks, queued runs, run workers, delivery.

These are the claims producers rely on, proven end to end: pushed requests complete with no other command than
the daemon; failures end dead with a reason and can be re-queued; killing the daemon with SIGKILL or restarting
Redis in the middle of intake loses nothing and runs nothing twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from dagster import DagsterInstance, DagsterRunStatus

from imgtrans_pipeline.cli import main as imgtrans
from imgtrans_pipeline.intake import verify_signature
from tests.dagster_services import BIN, PROJECT, _spawn, _stop, initialize_instance, pipeline_env, prepare_home
from tests.imagegen import text_image
from tests.redis_server import RedisServer
from tests.servers import serve_aiohttp

pytestmark = pytest.mark.slow
SECRET = "webhook-secret"
TERMINAL = {"succeeded", "dead"}


class Daemon:
    """`dagster-daemon run` on a temporary instance, startable, SIGKILL-able and restartable."""

    def __init__(self, tmp: Path, redis_url: str, **env: str) -> None:
        self.home = prepare_home(tmp / "dagster_home")
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.env = {**os.environ, "DAGSTER_HOME": str(self.home), **pipeline_env(tmp),
                    "IMGTRANS_REDIS_URL": redis_url, "IMGTRANS_BATCH_SIZE": "2",
                    "IMGTRANS_ALLOW_PRIVATE_URLS": "true", "IMGTRANS_WEBHOOK_SECRET": SECRET, **env}
        initialize_instance(self.home)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        name = f"daemon-{len(self.procs)}"
        self.procs.append(_spawn(name, [str(BIN / "dagster-daemon"), "run", "-w", str(PROJECT / "workspace.yaml")],
                                 self.env, self.logs))

    def kill(self) -> None:
        """SIGKILL the daemon process alone, as a crash would (its children are left to fend for themselves)."""
        os.kill(self.procs[-1].pid, signal.SIGKILL)
        self.procs[-1].wait(10)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc, "daemon")

    def log_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.logs.glob("*.log")))

    @contextlib.contextmanager
    def instance(self) -> Iterator[DagsterInstance]:
        with DagsterInstance.from_config(str(self.home)) as instance:
            yield instance


@pytest.fixture
def daemon_factory(tmp_path) -> Iterator[Callable[..., Daemon]]:
    daemons: list[Daemon] = []

    def make(redis_url: str, **env: str) -> Daemon:
        daemon = Daemon(tmp_path, redis_url, **env)
        daemons.append(daemon)
        return daemon

    yield make
    for daemon in daemons:
        daemon.stop()


def push(client, request_id: str, image: Path | str, **fields: Any) -> None:
    message = {"request_id": request_id, "image_url": str(image), "source_lang": "zh", "target_lang": "en",
               **fields}
    client.lpush("imgtrans:requests", json.dumps(message))


def wait_terminal(client, request_ids: list[str], daemon: Daemon, timeout: float = 240.0) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    states: dict[str, dict] = {}
    while time.monotonic() < deadline:
        states = {rid: client.hgetall(f"imgtrans:request:{rid}") for rid in request_ids}
        if all(s.get("state") in TERMINAL for s in states.values()):
            return states
        time.sleep(1)
    pytest.fail(f"not all requests finished: { {k: v.get('state') for k, v in states.items()} }\n"
                f"{daemon.log_tail()}")


def requests_per_run(instance: DagsterInstance, settle_timeout: float = 60.0) -> tuple[Counter, list[Any]]:
    """How many runs carried each request, once every run has finished (publish settles requests a moment
    before the run itself is marked finished)."""
    deadline = time.monotonic() + settle_timeout
    runs = instance.get_runs()
    while any(not run.is_finished for run in runs) and time.monotonic() < deadline:
        time.sleep(0.5)
        runs = instance.get_runs()
    carried: Counter = Counter()
    for run in runs:
        for request in run.run_config["ops"]["download"]["config"]["requests"]:
            carried[request["request_id"]] += 1
    return carried, runs


@pytest.fixture
def images(tmp_path) -> list[Path]:
    lines = ["全新升级", "限时特价", "免费送货上门", "天然棉麻面料", "透气舒适"]
    return [text_image([line], width=320, height=120, font_size=40, top=30).save(tmp_path / f"img{i}.png")
            for i, line in enumerate(lines)]


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
        deadline = time.monotonic() + 120
        while redis_client.hget("imgtrans:request:late", "state") != "succeeded" and time.monotonic() < deadline:
            time.sleep(1)
        late = redis_client.hgetall("imgtrans:request:late")
        assert late["state"] == "succeeded" and late["attempt"] == "2", late
        with daemon.instance() as instance:
            carried, runs = requests_per_run(instance)
        assert carried == {"ok-1": 1, "ok-2": 1, "ok-3": 1, "late": 2}
        assert len(runs) == 3  # batches of two: (ok-1, ok-2), (ok-3, late), then late again


def test_daemon_sigkill_mid_intake_loses_and_duplicates_nothing(tmp_path, redis_server, redis_client,
                                                               daemon_factory, images):
    ids = [f"k{i}" for i in range(12)]
    for i, rid in enumerate(ids):
        push(redis_client, rid, images[i % len(images)], options={"force": True})  # no dedupe shortcut
    daemon = daemon_factory(redis_server.url)
    rng = random.Random(7)
    for _ in range(3):
        daemon.start()
        time.sleep(rng.uniform(4.0, 9.0))  # somewhere inside claiming, submitting or running
        daemon.kill()
    daemon.start()
    states = wait_terminal(redis_client, ids, daemon, timeout=300)
    with daemon.instance() as instance:
        carried, runs = requests_per_run(instance)
        succeeded = [run for run in runs if run.status == DagsterRunStatus.SUCCESS]
    assert all(state["state"] == "succeeded" for state in states.values()), states
    assert sorted(carried) == sorted(ids) and set(carried.values()) == {1}, carried  # each exactly once
    assert sum(int(run.tags["imgtrans/requests"]) for run in succeeded) == len(ids), [
        (run.run_id[:8], run.status.value, run.tags.get("imgtrans/requests")) for run in runs]
    assert redis_client.llen("imgtrans:requests") == 0 and redis_client.llen("imgtrans:requests:processing") == 0


def test_redis_restart_with_aof_mid_intake_loses_nothing(tmp_path, daemon_factory, images):
    with RedisServer(appendonly=True, appendfsync="always") as server:
        client = server.client()
        ids = [f"a{i}" for i in range(8)]
        for i, rid in enumerate(ids):
            push(client, rid, images[i % len(images)], options={"force": True})
        daemon = daemon_factory(server.url)
        daemon.start()
        deadline = time.monotonic() + 60
        while client.llen("imgtrans:requests") == len(ids) and time.monotonic() < deadline:
            time.sleep(0.2)  # until the first tick has claimed something
        server.restart()  # SIGKILL + start on the same port and data directory
        client = server.client()
        states = wait_terminal(client, ids, daemon, timeout=300)
        with daemon.instance() as instance:
            carried, _ = requests_per_run(instance)
    assert all(state["state"] == "succeeded" for state in states.values()), states
    assert sorted(carried) == sorted(ids) and set(carried.values()) == {1}, carried
