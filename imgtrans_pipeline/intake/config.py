"""Where the Redis intake lives: key names, queue kind and connection knobs (from ``core.settings``: ``intake``).

Key names are configurable so the pipeline can be pointed at an existing producer's queue (e.g. the seeds'
``ocr_tasks``) without changing the producer. Every key lives under one prefix by default so ``SCAN imgtrans:*``
shows the whole intake state; on Redis Cluster give all keys one hash tag (``{imgtrans}:requests`` ...), because
the atomic move scripts touch the queue and the dead-letter key together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from ..core.settings import FALLBACK_REDIS_URL, IntakeSection, default_of

QUEUE_KINDS = ("list", "stream")
_DEFAULT = IntakeSection  # defaults are written once, in core.settings


@dataclass(frozen=True)
class IntakeConfig:
    """Redis intake configuration; :meth:`from_settings` takes it from the ``intake`` settings section."""

    redis_url: str = FALLBACK_REDIS_URL
    queue: str = default_of(_DEFAULT, "queue")
    queue_kind: str = default_of(_DEFAULT, "queue_kind")  # "list": producers LPUSH; "stream": XADD key * payload
    results: str = default_of(_DEFAULT, "results")
    dead: str = default_of(_DEFAULT, "dead")
    status_prefix: str = default_of(_DEFAULT, "status_prefix")
    stream_group: str = default_of(_DEFAULT, "stream_group")
    # One stable consumer name: the sensor runs in short-lived processes, and a per-process name would strand
    # entries under consumers that never come back (pending() shows those too, but one name keeps XINFO tidy).
    stream_consumer: str = default_of(_DEFAULT, "stream_consumer")
    webhook_secret: str | None = None
    status_ttl_seconds: int = default_of(_DEFAULT, "status_ttl_seconds")
    socket_timeout: float = default_of(_DEFAULT, "socket_timeout_s")
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
    def from_settings(cls, section: Any, **overrides: Any) -> IntakeConfig:
        """From ``core.settings.Settings.intake`` (``overrides``: non-empty values replace the section's)."""
        secret = section.webhook_secret
        values: dict[str, Any] = {
            "redis_url": section.url, "queue": section.queue, "queue_kind": section.queue_kind,
            "results": section.results, "dead": section.dead, "status_prefix": section.status_prefix,
            "stream_group": section.stream_group, "stream_consumer": section.stream_consumer,
            "webhook_secret": secret.get_secret_value() if secret else None,
            "status_ttl_seconds": section.status_ttl_seconds, "socket_timeout": section.socket_timeout_s}
        values.update({key: value for key, value in overrides.items() if value not in (None, "")})
        return cls(**values)

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
