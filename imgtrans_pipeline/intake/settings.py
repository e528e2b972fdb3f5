"""Where the Redis intake lives: key names, queue kind and connection knobs, all from ``IMGTRANS_*`` variables.

Key names are configurable so the pipeline can be pointed at an existing producer's queue (e.g. the seeds'
``ocr_tasks``) without changing the producer. Every key lives under one prefix by default so ``SCAN imgtrans:*``
shows the whole intake state; on Redis Cluster give all keys one hash tag (``{imgtrans}:requests`` ...), because
the atomic move scripts touch the queue and the dead-letter key together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import redis

QUEUE_KINDS = ("list", "stream")


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class IntakeSettings:
    """Redis intake configuration; :meth:`from_env` reads the ``IMGTRANS_*`` variables."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    queue: str = "imgtrans:requests"
    queue_kind: str = "list"  # "list": producers LPUSH; "stream": producers XADD key * payload <json>
    results: str = "imgtrans:results"
    dead: str = "imgtrans:dead"
    status_prefix: str = "imgtrans:request:"
    stream_group: str = "imgtrans"
    # One stable consumer name: the sensor runs in short-lived processes, and a per-process name would strand
    # entries under consumers that never come back (pending() shows those too, but one name keeps XINFO tidy).
    stream_consumer: str = "imgtrans-intake"
    webhook_secret: str | None = None
    status_ttl_seconds: int = 7 * 24 * 3600
    socket_timeout: float = 5.0
    health_check_interval: int = 30

    def __post_init__(self) -> None:
        if self.queue_kind not in QUEUE_KINDS:
            raise ValueError(f"IMGTRANS_QUEUE_KIND must be one of {QUEUE_KINDS}, not {self.queue_kind!r}")
        if self.status_ttl_seconds <= 0:
            raise ValueError("IMGTRANS_STATUS_TTL_SECONDS must be positive")
        if not self.queue or not self.dead or not self.results or not self.status_prefix:
            raise ValueError("Redis key names must not be empty")

    @property
    def processing(self) -> str:
        """The list-queue's in-flight list: claimed entries stay here until acknowledged."""
        return f"{self.queue}:processing"

    @classmethod
    def from_env(cls) -> IntakeSettings:
        return cls(
            redis_url=_env("IMGTRANS_REDIS_URL", cls.redis_url),
            queue=_env("IMGTRANS_QUEUE", cls.queue),
            queue_kind=_env("IMGTRANS_QUEUE_KIND", cls.queue_kind).strip().lower(),
            results=_env("IMGTRANS_RESULTS", cls.results),
            dead=_env("IMGTRANS_DEAD", cls.dead),
            status_prefix=_env("IMGTRANS_STATUS_PREFIX", cls.status_prefix),
            stream_group=_env("IMGTRANS_STREAM_GROUP", cls.stream_group),
            stream_consumer=_env("IMGTRANS_STREAM_CONSUMER", cls.stream_consumer),
            webhook_secret=os.environ.get("IMGTRANS_WEBHOOK_SECRET") or None,
            status_ttl_seconds=int(_env("IMGTRANS_STATUS_TTL_SECONDS", str(cls.status_ttl_seconds))),
            socket_timeout=float(_env("IMGTRANS_REDIS_SOCKET_TIMEOUT", str(cls.socket_timeout))),
        )

    def connect(self) -> redis.Redis:
        """A client with string replies and bounded waits.

        Timeouts keep a sensor tick from hanging on a dead server; ``health_check_interval`` pings idle pooled
        connections before reuse, so a server restart between ticks costs a reconnect instead of an error.
        redis-py retries on connection errors; that is safe here because every operation tolerates being run
        twice (a claim whose reply was lost leaves its entries in ``pending()``; acks and scripts are guarded).
        """
        return redis.Redis.from_url(
            self.redis_url,
            decode_responses=True,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            health_check_interval=self.health_check_interval,
            client_name="imgtrans-intake",
        )
