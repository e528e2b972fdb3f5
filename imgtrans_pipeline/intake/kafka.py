"""Kafka intake: read request messages, commit what is settled, publish results and dead letters.

Plain Python over confluent-kafka (no Dagster); the ``kafka_intake`` sensor decides what a message becomes.

Messages on ``IMGTRANS_KAFKA_TOPIC`` are either the JSON requests of the Redis queue (:func:`.messages.parse_message`,
``request_id`` required) or *hash-only* messages naming an image already in the artifact store by its content
hash, as seed 002's producers send them::

    {"image_hash": "<sha256 hex>", "target_lang": "en", ...any other request field}

A hash-only message resolves to the stored ``source.png`` of that image (the ``hash-<sha256>/`` index the
backfills read); without a ``request_id`` it gets ``hash-<first 40 hex digits>.<target>``, so the same image and
language sent again is recognised as a duplicate (seed 002's "skip hashes already done"; ``options.force`` redoes it).

Reading never moves the group's committed offsets: a session assigns every partition at its committed offset
(no group membership, so no rebalances and no consumer left behind by a killed process), reads, and commits only
the offsets the caller says are settled. Offsets are the durable cursor; what a message became is found again
from the Dagster runs carrying it (run tags), so a process killed anywhere re-reads and re-decides.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..core.errors import InvalidRequest
from ..core.languages import normalize_language
from ..core.request import TranslationRequest
from ..core.settings import KafkaSection, default_of
from .messages import parse_message, request_id_of

logger = logging.getLogger(__name__)

_HASH = re.compile(r"^[0-9a-f]{64}$")
HashResolver = Callable[[str], str | None]  # content hash -> URI of the stored source image, or None


@dataclass(frozen=True)
class KafkaConfig:
    """Where the Kafka intake lives (from ``core.settings``: ``kafka``)."""

    bootstrap: str
    topic: str = default_of(KafkaSection, "topic")
    group: str = default_of(KafkaSection, "group")
    dead_topic: str = default_of(KafkaSection, "dead_topic")
    results_topic: str = default_of(KafkaSection, "results_topic")
    timeout_s: float = default_of(KafkaSection, "timeout_s")

    @classmethod
    def from_settings(cls, section: KafkaSection, **overrides: Any) -> KafkaConfig:
        values: dict[str, Any] = {"bootstrap": section.bootstrap or "", "topic": section.topic,
                                  "group": section.group, "dead_topic": section.dead_topic,
                                  "results_topic": section.results_topic, "timeout_s": section.timeout_s}
        values.update({key: value for key, value in overrides.items() if value not in (None, "")})
        if not values["bootstrap"]:
            raise ValueError("IMGTRANS_KAFKA_BOOTSTRAP is not set")
        return cls(**values)

    def client_options(self) -> dict[str, Any]:
        # librdkafka's own log lines (connection refused, retries...) go through Python logging, not raw stderr.
        return {"bootstrap.servers": self.bootstrap, "socket.timeout.ms": int(self.timeout_s * 1000),
                "logger": logging.getLogger("imgtrans_pipeline.kafka.client")}


# --- messages ---------------------------------------------------------------------------------------------------
def hash_request_id(content_hash: str, target_lang: str) -> str:
    # 160 bits of the hash: request ids become Dagster tag values, which may not exceed 63 characters.
    return f"hash-{content_hash[:40]}.{target_lang}"


def parse_kafka_message(raw: str | bytes, resolve_hash: HashResolver) -> TranslationRequest:
    """A request from a message (full JSON request or hash-only). Raises :class:`InvalidRequest` with the reason."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        data: Any = json.loads(text)
    except (TypeError, ValueError):
        data = None
    if not isinstance(data, dict) or "image_hash" not in data:
        return parse_message(raw)
    content_hash = data.pop("image_hash")
    if not isinstance(content_hash, str) or not _HASH.fullmatch(content_hash.lower()):
        raise InvalidRequest("image_hash", "must be the 64 hex digits of the image's sha256")
    if "image_url" in data:
        raise InvalidRequest("image_hash", "give image_hash or image_url, not both")
    content_hash = content_hash.lower()
    target = normalize_language(data.get("target_lang"), field="target_lang")
    uri = resolve_hash(content_hash)
    if uri is None:
        raise InvalidRequest("image_hash", f"no stored image has hash {content_hash}")
    data["image_url"] = uri
    if data.get("request_id") in (None, ""):
        data["request_id"] = hash_request_id(content_hash, target)
    return parse_message(json.dumps(data, ensure_ascii=False))


@dataclass(frozen=True)
class KafkaEntry:
    """One message read: its coordinates, the text as sent, and the request (or why there is none)."""

    topic: str
    partition: int
    offset: int
    raw: str
    request: TranslationRequest | None
    error: str | None

    @property
    def coordinates(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


def make_entry(topic: str, partition: int, offset: int, value: bytes | None,
               resolve_hash: HashResolver) -> KafkaEntry:
    raw = (value or b"").decode("utf-8", "replace")
    if value is None:
        return KafkaEntry(topic, partition, offset, raw, None, "message has no value")
    try:
        return KafkaEntry(topic, partition, offset, raw, parse_kafka_message(value, resolve_hash), None)
    except InvalidRequest as exc:
        return KafkaEntry(topic, partition, offset, raw, None, exc.reason)


def format_offsets(offsets: Iterable[int]) -> str:
    """``[3, 5, 6, 7]`` -> ``"3,5-7"`` (run tags and run keys)."""
    ranges: list[list[int]] = []
    for offset in sorted(set(offsets)):
        if ranges and offset == ranges[-1][1] + 1:
            ranges[-1][1] = offset
        else:
            ranges.append([offset, offset])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def parse_offsets(text: str) -> set[int]:
    offsets: set[int] = set()
    for part in filter(None, (text or "").split(",")):
        start, _, end = part.partition("-")
        offsets.update(range(int(start), int(end or start) + 1))
    return offsets


# --- reading ----------------------------------------------------------------------------------------------------
class KafkaSession:
    """One consumer for one tick: every partition assigned at the group's committed offset."""

    def __init__(self, config: KafkaConfig, consumer: Any) -> None:
        self.config = config
        self.consumer = consumer
        self.start: dict[int, int] = {}  # partition -> offset this session started reading at

    def partitions(self) -> list[int]:
        metadata = self.consumer.list_topics(self.config.topic, timeout=self.config.timeout_s)
        topic = metadata.topics.get(self.config.topic)
        if topic is None or topic.error is not None:
            return []
        return sorted(topic.partitions)

    def read(self, limit: int, resolve_hash: HashResolver, wait_s: float = 0.0) -> list[KafkaEntry]:
        """Up to ``limit`` messages from the committed offsets on, in offset order per partition.

        Returns once every partition is read to its end (or ``limit`` is reached); with ``wait_s`` > 0 and nothing
        to read, waits that long for the first message to arrive.
        """
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        partitions = self.partitions()
        if not partitions or limit <= 0:
            return []
        topic = self.config.topic
        committed = self.consumer.committed([TopicPartition(topic, p) for p in partitions],
                                            timeout=self.config.timeout_s)
        assignment = []
        for tp in committed:
            self.start[tp.partition] = tp.offset if tp.offset >= 0 else 0
            assignment.append(TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
        self.consumer.assign(assignment)
        entries: list[KafkaEntry] = []
        at_end: set[int] = set()
        started = time.monotonic()
        give_up = started + max(wait_s, self.config.timeout_s)
        while len(entries) < limit:
            now = time.monotonic()
            if len(at_end) == len(partitions) and (entries or now - started >= wait_s):
                break
            if now >= give_up:
                logger.warning("kafka: %s not read to its end within %.0f s", topic, give_up - started)
                break
            message = self.consumer.poll(min(0.5, give_up - now))
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                    continue
                if error.fatal() or not error.retriable():
                    raise RuntimeError(f"kafka: reading {topic}: {error}")
                logger.warning("kafka: reading %s: %s", topic, error)
                continue
            at_end.discard(message.partition())
            entries.append(make_entry(message.topic(), message.partition(), message.offset(), message.value(),
                                      resolve_hash))
        entries.sort(key=lambda e: (e.partition, e.offset))
        return entries

    def commit(self, next_offsets: dict[int, int]) -> dict[int, int]:
        """Commit, per partition, the offset of the next message to read; only offsets past where this session
        started (a commit never moves a partition back). Returns what was committed."""
        from confluent_kafka import TopicPartition

        moved = {p: o for p, o in next_offsets.items() if o > self.start.get(p, 0)}
        if moved:
            self.consumer.commit(offsets=[TopicPartition(self.config.topic, p, o) for p, o in moved.items()],
                                 asynchronous=False)
        return moved


class KafkaIntake:
    """The consumer side of the Kafka intake."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config

    @contextmanager
    def session(self) -> Iterator[KafkaSession]:
        from confluent_kafka import Consumer

        consumer = Consumer({**self.config.client_options(), "group.id": self.config.group,
                             "client.id": "imgtrans-intake", "enable.auto.commit": False,
                             "enable.auto.offset.store": False, "enable.partition.eof": True,
                             "auto.offset.reset": "earliest"})
        try:
            yield KafkaSession(self.config, consumer)
        finally:
            consumer.close()


# --- writing ----------------------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dead_letter_record(raw: str, reason: str, *, request_id: str | None = None, run_id: str | None = None,
                       stage: str | None = None, source: str | None = None) -> dict[str, Any]:
    """The record of :class:`.dead.DeadLetters`, plus where the message came from (``topic:partition:offset``)."""
    record = {"dead_id": uuid.uuid4().hex, "payload": raw, "reason": reason,
              "request_id": request_id or request_id_of(raw), "run_id": run_id, "stage": stage, "dead_at": _now()}
    if source:
        record["source"] = source
    return record


class KafkaTransport:
    """Results and dead letters as messages on their topics (keyed by request id, so one request's messages stay
    in order on one partition)."""

    def __init__(self, config: KafkaConfig) -> None:
        from confluent_kafka import Producer

        self.config = config
        self.producer = Producer({**self.config.client_options(), "client.id": "imgtrans-delivery",
                                  "enable.idempotence": False, "acks": "all"})

    def _send(self, topic: str, key: str | None, record: dict[str, Any]) -> None:
        errors: list[Any] = []

        def done(error: Any, _message: Any) -> None:
            if error is not None:
                errors.append(error)

        body = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
        self.producer.produce(topic, body, key=key.encode("utf-8") if key else None, on_delivery=done)
        # Synchronous: the caller records the delivery (status, offset commit) only once the broker has it.
        remaining = self.producer.flush(self.config.timeout_s)
        if remaining:
            # Not sent yet: drop it from the producer's queue, or it could still go out after the caller's retry
            # has sent it again.
            self.producer.purge(in_queue=True, in_flight=False)
            self.producer.poll(0)
        if remaining or errors:
            raise RuntimeError(f"kafka: could not publish to {topic}: {errors[0] if errors else 'timed out'}")

    def push_result(self, result: dict[str, Any]) -> None:
        self._send(self.config.results_topic, result.get("request_id"), result)

    def add_dead_letter(self, raw: str, reason: str, *, request_id: str | None = None, run_id: str | None = None,
                        stage: str | None = None, source: str | None = None) -> dict[str, Any]:
        record = dead_letter_record(raw, reason, request_id=request_id, run_id=run_id, stage=stage, source=source)
        self._send(self.config.dead_topic, record["request_id"], record)
        logger.warning("dead letter: request_id=%s stage=%s reason=%s", record["request_id"], stage, reason)
        return record

    def publish_request(self, payload: str) -> None:
        """Put a request message on the request topic (requeue; tests)."""
        self.producer.produce(self.config.topic, payload.encode("utf-8"))
        if self.producer.flush(self.config.timeout_s):
            raise RuntimeError(f"kafka: could not publish to {self.config.topic}: timed out")


def read_topic(config: KafkaConfig, topic: str, group: str | None = None) -> Iterator[tuple[int, int, bytes | None]]:
    """Every message of ``topic`` from the start (or from ``group``'s committed offsets): (partition, offset, value)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer({**config.client_options(), "group.id": group or f"imgtrans-reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=config.timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            return
        tps = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
        committed = consumer.committed(tps, timeout=config.timeout_s) if group else tps
        consumer.assign([TopicPartition(topic, tp.partition, tp.offset if group and tp.offset >= 0
                                        else OFFSET_BEGINNING) for tp in committed])
        at_end: set[int] = set()
        give_up = time.monotonic() + config.timeout_s
        while len(at_end) < len(tps) and time.monotonic() < give_up:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                continue
            at_end.discard(message.partition())
            give_up = time.monotonic() + config.timeout_s
            yield message.partition(), message.offset(), message.value()
    finally:
        consumer.close()


REQUEUE_GROUP_SUFFIX = ".requeue"


def requeue_dead_letters(config: KafkaConfig, request_ids: Iterable[str] | None = None,
                         limit: int | None = None) -> tuple[int, int]:
    """Re-publish dead letters' payloads onto the request topic (the operator retry); returns (moved, read).

    Without ``request_ids`` every dead letter not re-published before is (the group ``<group>.requeue`` remembers
    how far, committed after the payloads are on the broker: a crash in between re-publishes a few again, which
    the intake then sees as duplicates or new attempts of dead requests). With ``request_ids`` the whole topic is
    searched and nothing is committed, so the other letters stay for a later plain requeue.
    """
    from confluent_kafka import Consumer, TopicPartition

    wanted = None if request_ids is None else set(request_ids)
    group = config.group + REQUEUE_GROUP_SUFFIX
    transport = KafkaTransport(config)
    moved = read = 0
    next_offsets: dict[int, int] = {}
    for partition, offset, value in read_topic(config, config.dead_topic, None if wanted else group):
        if limit is not None and moved >= limit:
            break
        read += 1
        next_offsets[partition] = offset + 1
        try:
            record = json.loads(value or b"")
        except ValueError:
            record = None
        payload = record.get("payload") if isinstance(record, dict) else None
        rid = request_id_of(payload) if isinstance(payload, str) else None
        if wanted is not None and rid not in wanted and (record or {}).get("request_id") not in wanted:
            continue
        if not isinstance(payload, str) or (rid is None and '"image_hash"' not in payload):
            logger.warning("dead letter at %s:%d not requeued: no request payload", partition, offset)
            continue
        transport.publish_request(payload)
        moved += 1
    if wanted is None and next_offsets:
        consumer = Consumer({**config.client_options(), "group.id": group, "enable.auto.commit": False})
        try:
            consumer.commit(offsets=[TopicPartition(config.dead_topic, p, o) for p, o in next_offsets.items()],
                            asynchronous=False)
        finally:
            consumer.close()
    return moved, read
