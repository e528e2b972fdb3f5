"""Redis intake against a real redis-server: queues (list and stream), crashes, restarts, dead letters, status,
results and signed webhooks to a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
import redis
from aiohttp import web

from imgtrans_pipeline.core.errors import InvalidRequest
from imgtrans_pipeline.core.languages import _ALIASES, LANGUAGES
from imgtrans_pipeline.core.request import parse_request
from imgtrans_pipeline.engines.fetch.policy import UrlPolicy
from imgtrans_pipeline.intake import (
    ClaimedEntry,
    DeadLetters,
    IntakeConfig,
    RequestQueue,
    RequestStatus,
    StreamQueue,
    WebhookSender,
    create_queue,
    load_schema,
    parse_message,
    push_result,
    verify_signature,
)
from imgtrans_pipeline.intake.delivery import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from imgtrans_pipeline.intake.lease import LeaseLost, TickLease
from tests.support.servers import free_port, serve_aiohttp

if TYPE_CHECKING:
    from tests.support.redis_server import RedisServer


KINDS = ["list", "stream"]


def msg(i: int | str, **extra: Any) -> dict[str, Any]:
    return {"request_id": f"r{i}", "image_url": f"https://img.example.com/{i}.png", "target_lang": "en", **extra}


def raw(i: int | str, **extra: Any) -> str:
    return json.dumps(msg(i, **extra), separators=(",", ":"))


@pytest.fixture(params=KINDS)
def settings(request: pytest.FixtureRequest, redis_server: RedisServer) -> IntakeConfig:
    return IntakeConfig(redis_url=redis_server.url, queue_kind=request.param, status_ttl_seconds=3600)


@pytest.fixture
def queue(settings: IntakeConfig, redis_client: redis.Redis) -> RequestQueue:
    return create_queue(redis_client, settings)


def ids(entries: list[ClaimedEntry]) -> list[str | None]:
    return [e.request_id for e in entries]


# ---- message contract ----------------------------------------------------------------------------------------------
GOOD = [
    msg(1),
    msg(2, source_lang="zh", priority=5, callback_url="https://hooks.example.com/done?x=1"),
    msg(3, source_lang="auto", options={"output_format": "jpeg", "jpeg_quality": 80, "force": True,
                                        "glossary": {"买一送一": "Buy one, get one"}}),
    msg(4, source_lang="cn", target_lang="ko", options={"output_format": "jpg"}),
    {"request_id": "a.b:c-d_e", "image_url": "s3://bucket/key/x.png", "target_lang": "zh-Hant"},
    {"request_id": "f1", "image_url": "file:///data/in/x.png", "target_lang": "en", "source_lang": None},
    {"request_id": "p1", "image_url": "/data/in/x.png", "target_lang": "ja", "options": None},
    msg(5, callback_url=None, options={"glossary": None}),
]
BAD = [
    ("request_id", {"image_url": "https://x/a.png", "target_lang": "en"}),
    ("request_id", msg("x", request_id="-starts-with-dash")),
    ("request_id", msg("x", request_id="a" * 129)),
    ("request_id", msg("x", request_id="id\n")),
    ("target_lang", {"request_id": "r", "image_url": "https://x/a.png"}),
    ("target_lang", msg("x", target_lang="xx")),
    ("target_lang", msg("x", target_lang="auto")),
    ("target_lang", msg("x", source_lang="zh", target_lang="cn")),  # same language
    ("source_lang", msg("x", source_lang="klingon")),
    ("image_url", msg("x", image_url="ftp://host/a.png")),
    ("image_url", msg("x", image_url="http:///nohost")),
    ("image_url", msg("x", image_url="s3://bucket")),
    ("image_url", msg("x", image_url="")),
    ("image_url", msg("x", image_url=42)),
    ("priority", msg("x", priority="high")),
    ("priority", msg("x", priority=True)),
    ("callback_url", msg("x", callback_url="ftp://hooks/x")),
    ("options.output_format", msg("x", options={"output_format": "gif"})),
    ("options.jpeg_quality", msg("x", options={"jpeg_quality": 101})),
    ("options.force", msg("x", options={"force": "yes"})),
    ("options.glossary", msg("x", options={"glossary": {"": "empty"}})),
    ("options", msg("x", options={"dpi": 300})),
    ("request", msg("x", colour="red")),
]
# Accepted by parse_request, rejected by the (deliberately stricter) schema: producers send canonical forms.
LENIENT = [msg("L1", target_lang="EN"), msg("L2", image_url="relative/x.png"), msg("L3", source_lang="")]


@pytest.mark.parametrize("message", GOOD, ids=lambda m: str(m.get("request_id")))
def test_schema_and_parse_request_accept_the_same_good_messages(message: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(load_schema()).validate(message)
    request = parse_request(message)
    assert parse_message(json.dumps(message)) == request
    assert request.request_id == message["request_id"]


@pytest.mark.parametrize(("field", "message"), BAD, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD)])
def test_schema_and_parse_message_reject_the_same_bad_messages(field: str, message: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(load_schema())
    assert not validator.is_valid(message), f"schema accepted {message}"
    with pytest.raises(InvalidRequest) as info:
        parse_message(json.dumps(message))
    assert info.value.field == field
    if field != "request_id" or "request_id" in message:  # parse_request invents missing ids; the queue may not
        with pytest.raises(InvalidRequest):
            parse_request(message)


@pytest.mark.parametrize("message", LENIENT, ids=lambda m: m["request_id"])
def test_schema_is_never_looser_than_parse_request(message: dict[str, Any]) -> None:
    assert not jsonschema.Draft202012Validator(load_schema()).is_valid(message)
    parse_request(message)


def test_schema_languages_match_core_languages() -> None:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["properties"]["target_lang"]["enum"]) == set(LANGUAGES) | set(_ALIASES)
    assert len(schema["not"]["anyOf"]) == len(LANGUAGES)


def test_config_from_the_settings(setenv) -> None:
    from imgtrans_pipeline.core.settings import Settings

    setenv(IMGTRANS_QUEUE="ocr_tasks", IMGTRANS_QUEUE_KIND="Stream", IMGTRANS_STATUS_TTL_SECONDS="60",
           IMGTRANS_WEBHOOK_SECRET="s3cret")
    s = IntakeConfig.from_settings(Settings().intake)
    assert (s.queue, s.queue_kind, s.status_ttl_seconds, s.webhook_secret) == ("ocr_tasks", "stream", 60, "s3cret")
    assert s.processing == "ocr_tasks:processing" and s.results == "imgtrans:results"
    assert s.redis_url == "redis://127.0.0.1:6379/0"  # IMGTRANS_REDIS_URL unset: local Redis (and intake off)
    setenv(IMGTRANS_QUEUE_KIND="kafka")
    with pytest.raises(ValueError, match="IMGTRANS_QUEUE_KIND"):
        Settings()


def test_connect_returns_a_string_client(redis_server: RedisServer) -> None:
    client = IntakeConfig(redis_url=redis_server.url).connect()
    client.set("imgtrans:probe", "값")
    assert client.get("imgtrans:probe") == "값"
    client.close()


# ---- queues ----------------------------------------------------------------------------------------------------------
def test_claim_is_fifo_and_respects_the_limit(queue: RequestQueue) -> None:
    for i in range(5):
        queue.push(raw(i))
    assert queue.depth() == 5
    assert ids(queue.claim(2)) == ["r0", "r1"]
    assert ids(queue.claim(10)) == ["r2", "r3", "r4"]
    assert queue.claim(3) == [] and queue.claim(0) == []
    assert (queue.depth(), queue.in_processing()) == (0, 5)


def test_blocking_claim_takes_a_request_the_moment_it_arrives(queue: RequestQueue) -> None:
    """The sensor's long poll: nothing waiting, a producer pushes during the wait, the claim returns it (and the
    two pushed right behind it, within the linger) without waiting out its timeout."""

    def produce() -> None:
        time.sleep(0.3)
        for i in range(3):
            queue.push(raw(i))

    producer = threading.Thread(target=produce)
    started = time.monotonic()
    producer.start()
    claimed = queue.claim(10, wait_s=3.0, linger_s=0.3)
    returned_after = time.monotonic() - started
    producer.join()
    assert ids(claimed) == ["r0", "r1", "r2"]
    assert returned_after < 3.0  # it returned on arrival, not on timeout
    assert (queue.depth(), queue.in_processing()) == (0, 3)  # claimed as atomically as a plain claim


def test_blocking_claim_on_an_idle_queue_returns_nothing_after_its_wait(queue: RequestQueue) -> None:
    started = time.monotonic()
    assert queue.claim(5, wait_s=0.5) == []
    assert time.monotonic() - started >= 0.45
    queue.push(raw(7))
    assert ids(queue.claim(1, wait_s=5.0)) == ["r7"]  # something waiting: no blocking at all


def test_pending_lists_claimed_entries_until_acked(queue: RequestQueue) -> None:
    for i in range(4):
        queue.push(raw(i, priority=9 - i))
    claimed = queue.claim(3)
    assert [e.request.priority for e in claimed if e.request] == [9, 8, 7]  # carried through, not reordered
    pending = queue.pending()
    assert pending == claimed
    assert (queue.depth(), queue.in_processing()) == (1, 3)
    assert queue.ack(claimed[:2]) == 2
    assert queue.ack(claimed[:2]) == 0  # idempotent
    assert ids(queue.pending()) == ["r2"]
    assert (queue.depth(), queue.in_processing()) == (1, 1)
    assert ids(queue.claim(5)) == ["r3"]
    assert queue.ack(queue.pending()) == 2
    assert (queue.depth(), queue.in_processing()) == (0, 0)
    assert queue.pending() == []


def test_crash_between_claim_and_ack_loses_nothing(settings: IntakeConfig, redis_server: RedisServer) -> None:
    first = create_queue(redis_server.client(), settings)
    first.client.flushall()
    for i in range(5):
        first.push(raw(i))
    claimed = first.claim(2)
    del first  # the sensor process dies here, before acknowledging

    other_consumer = dataclasses.replace(settings, stream_consumer="someone-else")
    second = create_queue(redis_server.client(), other_consumer)
    assert ids(second.pending()) == ["r0", "r1"]
    assert [e.raw for e in second.pending()] == [e.raw for e in claimed]
    assert [e.entry_id for e in second.pending()] == [e.entry_id for e in claimed]
    assert ids(second.claim(10)) == ["r2", "r3", "r4"]  # pending ones are not handed out twice
    assert ids(second.pending()) == ["r0", "r1", "r2", "r3", "r4"]
    assert second.ack(second.pending()) == 5
    assert second.in_processing() == 0


def test_duplicate_list_messages_are_acked_one_copy_each(redis_client: redis.Redis,
                                                         redis_server: RedisServer) -> None:
    queue = create_queue(redis_client, IntakeConfig(redis_url=redis_server.url))
    queue.push(raw(1))
    queue.push(raw(1))
    a, b = queue.claim(2)
    assert a.entry_id == b.entry_id
    assert queue.ack([a]) == 1 and queue.in_processing() == 1
    assert queue.ack([b]) == 1 and queue.in_processing() == 0


MALFORMED = [
    ("not json {", "not valid JSON"),
    ('["a list"]', "must be a JSON object"),
    (json.dumps({"request_id": "m1", "image_url": "https://x/a.png"}), "'target_lang': is required"),
    (json.dumps({"image_url": "https://x/a.png", "target_lang": "en"}), "'request_id': is required"),
    (raw("m2", image_url="ftp://files.example.com/a.png"), "scheme 'ftp' is not supported"),
    (raw("m3", target_lang="tlh"), "unknown language 'tlh'"),
    (raw("m4", image_url="http://[::1/a.png"), "image_url': malformed URL"),
]


def test_malformed_messages_come_back_with_a_reason(queue: RequestQueue, redis_client: redis.Redis) -> None:
    queue.push(raw("ok"))
    for text, _ in MALFORMED:
        queue.push(text)
    expected = [reason for _, reason in MALFORMED]
    if isinstance(queue, StreamQueue):
        redis_client.xadd(queue.key, {"cctvId": "c1", "hls": "https://x/s.m3u8"})  # the seeds' other format
        expected.append("no 'payload' field (fields: cctvId, hls)")
    entries = queue.claim(50)
    assert entries[0].request is not None and entries[0].error is None
    assert len(entries) == 1 + len(expected)
    for entry, reason in zip(entries[1:], expected, strict=True):
        assert entry.request is None
        assert entry.error is not None and reason in entry.error, entry.error
    assert [e.raw for e in entries[1 : 1 + len(MALFORMED)]] == [t for t, _ in MALFORMED]
    assert queue.ack(queue.pending()) == len(entries)


def test_stream_group_sees_messages_added_before_it_existed(redis_client: redis.Redis,
                                                            redis_server: RedisServer) -> None:
    settings = IntakeConfig(redis_url=redis_server.url, queue="ocr_tasks", queue_kind="stream")
    redis_client.xadd("ocr_tasks", {"payload": raw(1)})
    queue = create_queue(redis_client, settings)
    assert queue.depth() == 1  # no group yet
    assert ids(queue.claim(5)) == ["r1"]
    redis_client.xgroup_destroy("ocr_tasks", settings.stream_group)  # someone removed the group: recreated at 0
    assert ids(queue.claim(5)) == ["r1"]


def test_stream_pending_entry_deleted_by_someone_else(redis_client: redis.Redis, redis_server: RedisServer) -> None:
    queue = create_queue(redis_client, IntakeConfig(redis_url=redis_server.url, queue_kind="stream"))
    queue.push(raw(1))
    (entry,) = queue.claim(1)
    redis_client.xdel(queue.key, entry.entry_id)
    (ghost,) = queue.pending()
    assert ghost.entry_id == entry.entry_id and ghost.request is None and "deleted" in (ghost.error or "")
    assert queue.ack([ghost]) == 1 and queue.pending() == []


def test_stream_depth_when_redis_cannot_report_lag(redis_client: redis.Redis, redis_server: RedisServer) -> None:
    queue = create_queue(redis_client, IntakeConfig(redis_url=redis_server.url, queue_kind="stream"))
    for i in range(5):
        queue.push(raw(i))
    queue.ack(queue.claim(2))
    redis_client.xdel(queue.key, redis_client.xrange(queue.key)[-1][0])  # an undelivered entry deleted: no lag
    assert queue.depth() == 2
    assert ids(queue.claim(10)) == ["r2", "r3"]


@pytest.mark.parametrize("kind", KINDS)
def test_queue_survives_a_server_crash_with_aof(kind: str, aof_redis_server: Callable[..., RedisServer]) -> None:
    server = aof_redis_server()
    settings = IntakeConfig(redis_url=server.url, queue_kind=kind)
    queue = create_queue(settings.connect(), settings)
    for i in range(6):
        queue.push(raw(i, options={"glossary": {"新品": "New"}}))
    claimed = queue.claim(2)
    queue.ack(claimed[:1])

    server.restart(kill=True)  # SIGKILL, then start on the same port and directory: the AOF is replayed
    after = create_queue(settings.connect(), settings)
    assert (after.depth(), after.in_processing()) == (4, 1)
    assert [(e.entry_id, e.raw) for e in after.pending()] == [(claimed[1].entry_id, claimed[1].raw)]
    assert ids(after.claim(10)) == ["r2", "r3", "r4", "r5"]
    assert after.pending()[0].request == claimed[1].request


# ---- dead letters ----------------------------------------------------------------------------------------------------
def test_dead_letters_add_list_count_and_dedupe(settings: IntakeConfig, redis_client: redis.Redis) -> None:
    dead = DeadLetters(redis_client, settings)
    payload = '{"request_id": "d1",  "image_url": "https://x/a.png", "target_lang": "en", "note": "空白 kept"}'
    assert dead.add(payload, "download: HTTP 404", run_id="run-1", stage="download")
    assert not dead.add(payload, "download: HTTP 404", run_id="run-1", stage="download")  # repeat: no-op
    assert dead.add(payload, "download: HTTP 404", run_id="run-2", stage="download")  # a later run failing too
    assert dead.add("garbage", "not JSON", stage="intake")
    assert dead.count() == 3
    newest, middle, oldest = dead.list(10)
    assert newest["payload"] == "garbage" and newest["request_id"] is None
    assert oldest["payload"] == payload  # byte for byte
    assert (oldest["request_id"], oldest["run_id"], oldest["stage"]) == ("d1", "run-1", "download")
    assert oldest["reason"] == "download: HTTP 404" and oldest["dead_at"].endswith("Z")
    assert middle["run_id"] == "run-2"
    assert len(dead.list(2)) == 2 and dead.list(0) == []


def test_bury_acks_and_dead_letters_in_one_step(queue: RequestQueue, settings: IntakeConfig,
                                                redis_client: redis.Redis) -> None:
    dead = DeadLetters(redis_client, settings)
    queue.push("not json")
    queue.push(raw(2))
    bad, good = queue.claim(2)
    assert dead.bury(queue, bad, bad.error or "malformed")
    assert not dead.bury(queue, bad, bad.error or "malformed")  # repeated after a crash: nothing happens
    assert ids(queue.pending()) == ["r2"] and queue.in_processing() == 1
    (record,) = dead.list()
    assert record["payload"] == "not json" and "not valid JSON" in record["reason"]
    assert record["stage"] == "intake"
    assert good.request is not None


def test_requeue_moves_exact_payloads_back(queue: RequestQueue, settings: IntakeConfig,
                                           redis_client: redis.Redis) -> None:
    dead = DeadLetters(redis_client, settings)
    exact = ' {"target_lang":"en", "request_id":"q1","image_url":"https://x/ü.png"} '
    dead.add(exact, "timeout", run_id="a")
    dead.add(raw("q2"), "timeout", run_id="b")
    dead.add(raw("q3"), "timeout", run_id="c")
    dead.add("<html>", "not JSON", stage="intake")
    dead.add(raw("q4"), "timeout", run_id="d")

    assert dead.requeue(["rq2"]) == 1
    assert dead.requeue(["rq2"]) == 0  # repeat: nothing moves twice
    assert [e.raw for e in queue.claim(10)] == [raw("q2")]
    assert dead.requeue(limit=1) == 1  # oldest first
    assert dead.requeue() == 2  # q3, q4; "<html>" stays with a note
    claimed = queue.claim(10)
    assert [e.raw for e in claimed] == [exact, raw("q3"), raw("q4")]
    assert claimed[0].request is not None and claimed[0].request.request_id == "q1"
    (left,) = dead.list()
    assert left["payload"] == "<html>" and "not requeued" in left["note"]
    assert dead.requeue() == 0 and dead.count() == 1


# ---- status ----------------------------------------------------------------------------------------------------------
def test_one_run_delivers_each_attempt(redis_client: redis.Redis, redis_server: RedisServer) -> None:
    """A run failed by monitoring while its process went on, and that run's retry, both reach publish: only the
    first delivers. A re-queued request (attempt 2) is delivered again, once."""
    status = RequestStatus(redis_client, IntakeConfig(redis_url=redis_server.url))
    status.mark("d1", "queued", attempt=1)
    assert status.claim_delivery("d1", "run-a") is None
    assert status.claim_delivery("d1", "run-a") is None  # its own claim, repeated (a retried publish step)
    assert status.claim_delivery("d1", "run-b") == "run-a"
    assert not status.release_delivery("d1", "run-b")  # only the owner gives a claim back
    assert status.release_delivery("d1", "run-a")  # its delivery failed: another run may deliver
    assert status.claim_delivery("d1", "run-b") is None and status.claim_delivery("d1", "run-a") == "run-b"
    status.mark("d1", "queued", attempt=2, force=True)
    assert status.claim_delivery("d1", "run-c") is None
    assert status.claim_delivery("d1", "run-b") == "run-c"


def test_status_transitions_and_ttl(redis_client: redis.Redis, redis_server: RedisServer) -> None:
    status = RequestStatus(redis_client, IntakeConfig(redis_url=redis_server.url, status_ttl_seconds=600))
    assert status.get("s1") is None
    assert status.mark("s1", "queued", entry_id="e1", payload=raw("s1"))
    first = status.get("s1")
    assert first is not None and first["state"] == "queued" and first["created_at"] == first["updated_at"]
    assert 590 < status.ttl_of("s1") <= 600

    time.sleep(0.01)
    assert status.mark("s1", "running", run_id="run-a", attempts_increment=True)
    assert status.mark("s1", "running", run_id="run-a", attempts_increment=True)  # repeated: counted once
    assert status.mark("s1", "failed", run_id="run-a", error="HTTP 503")
    assert status.mark("s1", "running", run_id="run-b", attempts_increment=True)
    state = status.get("s1")
    assert state is not None
    assert (state["state"], state["run_id"], state["run_ids"], state["attempts"]) == (
        "running", "run-b", ["run-a", "run-b"], 2)
    assert state["created_at"] == first["created_at"] and state["updated_at"] > first["updated_at"]

    assert status.mark("s1", "succeeded", run_id="run-b", error=None, result_url="s3://b/s1/result.png")
    for stale in ("running", "queued", "failed", "dead"):
        assert not status.mark("s1", stale, run_id="run-old", error="stale duplicate")
    state = status.get("s1")
    assert state is not None and state["state"] == "succeeded" and "error" not in state
    assert state["run_ids"] == ["run-a", "run-b"] and state["result_url"] == "s3://b/s1/result.png"
    assert status.mark("s1", "succeeded", delivery="delivered", delivery_attempts=2)  # same state: fields update
    assert status.get("s1")["delivery_attempts"] == "2"  # type: ignore[index]
    assert status.mark("s1", "queued", force=True)  # a deliberate redo
    assert status.get("s1")["state"] == "queued"  # type: ignore[index]

    assert not status.note_duplicate("unknown")
    assert status.note_duplicate("s1") and status.get("s1")["duplicates"] == 1  # type: ignore[index]
    with pytest.raises(ValueError, match="unknown state"):
        status.mark("s1", "paused")
    with pytest.raises(ValueError, match="cannot be set"):
        status.mark("s1", "queued", attempts=3)


def test_tick_lease_is_held_by_one_tick_until_released_or_expired(redis_client: redis.Redis) -> None:
    first, second = TickLease(redis_client, "t:lease", 30), TickLease(redis_client, "t:lease", 30)
    assert first.acquire() and not second.acquire()  # one holder at a time
    assert first.holder() == first.token
    first.confirm()  # still ours: renewed
    assert 29_000 < redis_client.pttl("t:lease") <= 30_000
    with pytest.raises(LeaseLost):
        second.confirm()
    assert not second.release() and first.holder() == first.token  # only the holder releases
    assert first.release() and first.holder() is None
    assert second.acquire()

    short = TickLease(redis_client, "t:short", 0.05)
    assert short.acquire()
    time.sleep(0.1)  # expired under its holder, then taken by another tick
    other = TickLease(redis_client, "t:short", 30)
    assert other.acquire()
    with pytest.raises(LeaseLost):
        short.confirm()
    assert not short.release() and other.holder() == other.token
    with pytest.raises(ValueError):
        TickLease(redis_client, "t:bad", 0)


def test_dead_request_can_be_queued_again(redis_client: redis.Redis, redis_server: RedisServer) -> None:
    status = RequestStatus(redis_client, IntakeConfig(redis_url=redis_server.url))
    status.mark("s2", "dead", run_id="r1", error="HTTP 404")
    assert status.mark("s2", "queued")
    assert status.get("s2")["state"] == "queued"  # type: ignore[index]


def test_push_result_appends_json(redis_client: redis.Redis, redis_server: RedisServer) -> None:
    settings = IntakeConfig(redis_url=redis_server.url, results="hosting_tasks")
    push_result(redis_client, settings, {"request_id": "a", "status": "succeeded", "result_url": "s3://b/ä.png"})
    push_result(redis_client, settings, {"request_id": "b", "status": "failed", "error": "HTTP 404"})
    oldest = redis_client.rpop("hosting_tasks")
    assert json.loads(oldest) == {"request_id": "a", "status": "succeeded", "result_url": "s3://b/ä.png"}
    assert json.loads(redis_client.rpop("hosting_tasks"))["error"] == "HTTP 404"


# ---- webhooks --------------------------------------------------------------------------------------------------------
class Receiver:
    """A real HTTP receiver answering a planned sequence of statuses and recording what it got."""

    def __init__(self) -> None:
        self.plan: list[int] = []
        self.headers: dict[int, str] = {}
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        status = self.plan.pop(0) if self.plan else 200
        return web.Response(status=status, text="ok", headers=self.headers)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    with serve_aiohttp(app) as base:
        yield rec, f"{base}/hook"


@pytest.fixture
def hook(receiver: tuple[Receiver, str]) -> tuple[Receiver, str]:
    rec, url = receiver
    rec.plan.clear()
    rec.received.clear()
    return rec, url


def sender(**kwargs: Any) -> WebhookSender:
    options: dict[str, Any] = {"attempts": 3, "backoff_base": 0.01, "timeout": 5,
                               "url_policy": UrlPolicy(allow_private=True)}
    options.update(kwargs)
    return WebhookSender("topsecret", **options)


PAYLOAD = {"request_id": "w1", "status": "succeeded", "result_url": "https://cdn.example.com/w1.png", "번역": "완료"}


def test_webhook_is_signed_and_verifiable(hook: tuple[Receiver, str]) -> None:
    rec, url = hook
    outcome = sender().send(url, PAYLOAD)
    assert outcome.delivered and (outcome.attempts, outcome.status, outcome.error) == (1, 200, None)
    ((headers, body),) = rec.received
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body.decode("utf-8")) == PAYLOAD and b" " not in body.replace(b"\xec", b"")[:20]
    ts, signature = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert signature.startswith("sha256=") and abs(int(ts) - time.time()) < 60
    assert verify_signature("topsecret", ts, body, signature)
    assert not verify_signature("wrong", ts, body, signature)
    assert not verify_signature("topsecret", ts, body + b" ", signature)
    assert not verify_signature("topsecret", int(ts) - 1, body, signature)
    assert not verify_signature("topsecret", ts, body, signature, now=int(ts) + 301)  # replayed too late


def test_webhook_retries_5xx_then_delivers(hook: tuple[Receiver, str]) -> None:
    rec, url = hook
    rec.plan[:] = [500, 500, 200]
    outcome = sender().send(url, PAYLOAD)
    assert outcome.delivered and outcome.attempts == 3 and outcome.status == 200
    assert len(rec.received) == 3
    assert len({h[DELIVERY_HEADER] for h, _ in rec.received}) == 1  # one delivery id across attempts
    assert all(verify_signature("topsecret", h[TIMESTAMP_HEADER], b, h[SIGNATURE_HEADER]) for h, b in rec.received)


def test_webhook_gives_up_after_three_5xx(hook: tuple[Receiver, str]) -> None:
    rec, url = hook
    rec.plan[:] = [500, 503, 502, 200]
    outcome = sender().send(url, PAYLOAD)
    assert not outcome.delivered and outcome.attempts == 3 and outcome.status == 502
    assert outcome.error == "HTTP 502 (gave up after 3 attempts)"
    assert len(rec.received) == 3


def test_webhook_does_not_retry_404(hook: tuple[Receiver, str]) -> None:
    rec, url = hook
    rec.plan[:] = [404, 200]
    outcome = sender().send(url, PAYLOAD)
    assert (outcome.delivered, outcome.attempts, outcome.status) == (False, 1, 404)
    assert "not retried" in (outcome.error or "") and len(rec.received) == 1


def test_webhook_honours_retry_after(hook: tuple[Receiver, str]) -> None:
    rec, url = hook
    rec.plan[:] = [429, 200]
    rec.headers = {"Retry-After": "1"}
    try:
        started = time.monotonic()
        outcome = sender().send(url, PAYLOAD)
    finally:
        rec.headers = {}
    assert outcome.delivered and outcome.attempts == 2
    assert time.monotonic() - started >= 0.95


def test_webhook_refuses_private_and_non_http_urls(hook: tuple[Receiver, str]) -> None:
    rec, url = hook
    refused = WebhookSender("s", attempts=3, backoff_base=0.01, url_policy=UrlPolicy(allow_private=False))
    outcome = refused.send(url, PAYLOAD)
    assert (outcome.delivered, outcome.attempts, outcome.status) == (False, 0, None)
    assert "refused" in (outcome.error or "") and "loopback" in (outcome.error or "")
    outcome = sender().send("file:///etc/passwd", PAYLOAD)
    assert not outcome.delivered and outcome.attempts == 0 and "http(s)" in (outcome.error or "")
    assert rec.received == []


def test_webhook_connection_refused_is_retried_then_reported() -> None:
    outcome = sender().send(f"http://127.0.0.1:{free_port()}/hook", PAYLOAD)
    assert not outcome.delivered and outcome.attempts == 3 and outcome.status is None
    assert "gave up after 3 attempts" in (outcome.error or "")


def test_webhook_send_works_inside_a_running_event_loop(hook: tuple[Receiver, str]) -> None:
    rec, url = hook

    async def caller() -> bool:
        return sender().send(url, PAYLOAD).delivered

    assert asyncio.run(caller())
    assert len(rec.received) == 1
