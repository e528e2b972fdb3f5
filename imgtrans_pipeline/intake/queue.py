"""The request queue: claim, look at what is claimed, acknowledge — safe against a crash at any point.

The caller (the Dagster intake sensor) runs in short-lived processes that can be killed between any two Redis
commands. So a message is never *taken* from Redis, only *claimed*: it moves (atomically, server side) to a place
where it stays visible until the caller acknowledges it, after the work it stands for has been recorded
elsewhere (a Dagster run with a deterministic run key). A crash between claim and ack therefore loses nothing:
the next tick sees the entry in :meth:`RequestQueue.pending` and reconciles it. Every operation is idempotent:
claiming twice claims different entries, acking twice removes once, reading ``pending()`` changes nothing.

Two layouts, chosen by ``IMGTRANS_QUEUE_KIND``:

* ``list`` — producers ``LPUSH``; a claim is ``LMOVE queue queue:processing RIGHT LEFT`` (oldest first), done
  for up to ``limit`` entries inside one Lua script so a claim is one atomic step; ack is ``LREM``.
* ``stream`` — producers ``XADD queue * payload <json>``; a consumer group (created at id ``0`` so entries added
  before the group existed are delivered too) tracks delivery: claim is ``XREADGROUP ... >``, claimed entries sit
  in the group's pending entries list (PEL) until ``XACK``; acked entries are also ``XDEL``eted so the stream
  only ever holds work not yet done.

Both can claim *blocking* (``BLMOVE`` / ``XREADGROUP BLOCK``): the sensor's idle ticks long-poll, so a request is
claimed the moment it arrives instead of at the next tick; the entry moves server side exactly as in a plain claim.

Priority is carried in the request but does **not** reorder the queue in v1: both layouts are strictly FIFO.
(A priority queue would need one key per level or a sorted set, and starvation rules; not needed yet.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import redis

from ..core.errors import InvalidRequest
from ..core.request import TranslationRequest
from .config import IntakeConfig
from .messages import parse_message

logger = logging.getLogger(__name__)

_PAGE = 500

# Up to ARGV[1] entries from the queue's tail (oldest) to the processing list's head, atomically.
_CLAIM_LIST = """
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local v = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not v then break end
  out[#out + 1] = v
end
return out
"""


@dataclass(frozen=True)
class ClaimedEntry:
    """One claimed message. ``request`` is set when it is valid; otherwise ``error`` says why it is not.

    ``raw`` is the message exactly as the producer sent it (dead letters keep it byte for byte). ``entry_id`` is
    stable across reads: the stream entry id, or for lists a digest of ``raw`` (identical list messages share
    an id; acking each of them removes one copy each).
    """

    entry_id: str
    raw: str
    request: TranslationRequest | None
    error: str | None

    @property
    def request_id(self) -> str | None:
        return self.request.request_id if self.request is not None else None


def make_entry(entry_id: str, raw: str, error: str | None = None) -> ClaimedEntry:
    """Parse ``raw`` into a :class:`ClaimedEntry`; a given ``error`` (e.g. no payload field) wins."""
    if error is not None:
        return ClaimedEntry(entry_id, raw, None, error)
    try:
        return ClaimedEntry(entry_id, raw, parse_message(raw), None)
    except InvalidRequest as exc:
        return ClaimedEntry(entry_id, raw, None, exc.reason)


def _encode(message: str | Mapping[str, Any]) -> str:
    if isinstance(message, str):
        return message
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


@runtime_checkable
class RequestQueue(Protocol):
    """What the intake sensor needs from a queue. All methods are safe to repeat and to interrupt."""

    kind: str
    key: str

    def push(self, message: str | Mapping[str, Any]) -> str:
        """Enqueue one message the way a producer would; returns its entry id."""
        ...

    def claim(self, limit: int, wait_s: float = 0.0, linger_s: float = 0.0) -> list[ClaimedEntry]:
        """Claim up to ``limit`` new entries, oldest first. They stay pending until :meth:`ack`.

        With ``wait_s`` > 0 and nothing waiting, block up to that long for the first entry (server side, so it
        is claimed the instant it arrives), then wait ``linger_s`` for the ones right behind it and claim those.
        """
        ...

    def pending(self) -> list[ClaimedEntry]:
        """Every entry claimed (by anyone, in any earlier process) and not yet acknowledged, oldest first."""
        ...

    def ack(self, entries: Iterable[ClaimedEntry]) -> int:
        """Remove claimed entries for good; returns how many were still pending."""
        ...

    def depth(self) -> int:
        """Entries waiting to be claimed."""
        ...

    def in_processing(self) -> int:
        """Entries claimed and not yet acknowledged."""
        ...


class ListQueue:
    """``LPUSH`` producers, ``LMOVE`` into ``{queue}:processing``, ``LREM`` to acknowledge."""

    kind = "list"

    def __init__(self, client: redis.Redis, settings: IntakeConfig) -> None:
        self.client = client
        self.key = settings.queue
        self.processing = settings.processing
        self._claim = client.register_script(_CLAIM_LIST)

    @staticmethod
    def entry_id(raw: str) -> str:
        return "list:" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def push(self, message: str | Mapping[str, Any]) -> str:
        raw = _encode(message)
        self.client.lpush(self.key, raw)
        return self.entry_id(raw)

    def claim(self, limit: int, wait_s: float = 0.0, linger_s: float = 0.0) -> list[ClaimedEntry]:
        if limit <= 0:
            return []
        raws = list(self._claim(keys=[self.key, self.processing], args=[int(limit)]))
        if not raws and wait_s > 0:
            # BLMOVE claims as atomically as the script: an entry is in the processing list or still queued.
            first = self.client.blmove(self.key, self.processing, wait_s, "RIGHT", "LEFT")
            if first is not None:
                raws.append(first)
                if limit > 1:
                    time.sleep(linger_s)
                    raws.extend(self._claim(keys=[self.key, self.processing], args=[int(limit) - 1]))
        return [make_entry(self.entry_id(raw), raw) for raw in raws]

    def pending(self) -> list[ClaimedEntry]:
        # LMOVE pushes onto the head, so the tail holds the earliest claim: reverse for oldest first.
        raws = self.client.lrange(self.processing, 0, -1)
        return [make_entry(self.entry_id(raw), raw) for raw in reversed(raws)]

    def ack(self, entries: Iterable[ClaimedEntry]) -> int:
        entries = list(entries)
        if not entries:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for entry in entries:
            pipe.lrem(self.processing, 1, entry.raw)
        return sum(int(n) for n in pipe.execute())

    def depth(self) -> int:
        return int(self.client.llen(self.key))

    def in_processing(self) -> int:
        return int(self.client.llen(self.processing))


def _is_error(exc: redis.ResponseError, code: str) -> bool:
    return str(exc).upper().startswith(code)


class StreamQueue:
    """``XADD`` producers, a consumer group for delivery state, ``XACK`` + ``XDEL`` to acknowledge."""

    kind = "stream"
    payload_field = "payload"

    def __init__(self, client: redis.Redis, settings: IntakeConfig) -> None:
        self.client = client
        self.key = settings.queue
        self.group = settings.stream_group
        self.consumer = settings.stream_consumer
        self._group_ready = False

    def ensure_group(self) -> None:
        """Create the consumer group at id 0 (with the stream, if missing); a no-op when it exists.

        Id 0 rather than ``$``: ``$`` would skip every message producers added before the first claim.
        """
        try:
            self.client.xgroup_create(self.key, self.group, id="0", mkstream=True)
            logger.info("created consumer group %s on stream %s", self.group, self.key)
        except redis.ResponseError as exc:
            if not _is_error(exc, "BUSYGROUP"):
                raise
        self._group_ready = True

    def push(self, message: str | Mapping[str, Any]) -> str:
        return str(self.client.xadd(self.key, {self.payload_field: _encode(message)}))

    def _entry(self, entry_id: str, fields: Mapping[str, str] | None) -> ClaimedEntry:
        if fields is None or not fields:
            # In the PEL but gone from the stream (XDEL/XTRIM by someone else): nothing left to process.
            return ClaimedEntry(entry_id, "", None, "stream entry was deleted before it was processed")
        if self.payload_field not in fields:
            raw = json.dumps(dict(fields), ensure_ascii=False, sort_keys=True)
            names = ", ".join(sorted(fields))
            return make_entry(entry_id, raw, f"stream entry has no '{self.payload_field}' field (fields: {names})")
        return make_entry(entry_id, fields[self.payload_field])

    def claim(self, limit: int, wait_s: float = 0.0, linger_s: float = 0.0) -> list[ClaimedEntry]:
        if limit <= 0:
            return []
        if not self._group_ready:
            self.ensure_group()
        reply = self._read_or_recreate(limit)
        if not reply and wait_s > 0:
            reply = self._read_or_recreate(limit, block_ms=max(1, int(wait_s * 1000)))
            if reply and len(reply) < limit:
                time.sleep(linger_s)
                reply += self._read_or_recreate(limit - len(reply))
        return [self._entry(entry_id, fields) for entry_id, fields in reply]

    def _read_or_recreate(self, limit: int, block_ms: int | None = None) -> list[tuple[str, dict[str, str] | None]]:
        try:
            return self._read(limit, block_ms)
        except redis.ResponseError as exc:
            if not _is_error(exc, "NOGROUP"):
                raise
            self.ensure_group()  # the stream (and its group) was deleted since: start over
            return self._read(limit, block_ms)

    def _read(self, limit: int, block_ms: int | None = None) -> list[tuple[str, dict[str, str] | None]]:
        reply: Any = self.client.xreadgroup(self.group, self.consumer, {self.key: ">"}, count=int(limit),
                                            block=block_ms)
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3
            return [(i, f) for items in reply.values() for batch in items for i, f in batch]
        return [(entry_id, fields) for _stream, items in reply for entry_id, fields in items]

    def pending(self) -> list[ClaimedEntry]:
        # XPENDING over the whole group (every consumer name, including ones whose process died), then the
        # contents by id. Read-only: unlike XAUTOCLAIM it neither changes owners nor bumps delivery counts.
        ids: list[str] = []
        start = "-"
        while True:
            try:
                page = self.client.xpending_range(self.key, self.group, start, "+", _PAGE)
            except redis.ResponseError as exc:
                if _is_error(exc, "NOGROUP"):
                    return []
                raise
            ids.extend(str(item["message_id"]) for item in page)
            if len(page) < _PAGE:
                break
            start = "(" + str(page[-1]["message_id"])
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xrange(self.key, entry_id, entry_id, count=1)
        rows = pipe.execute()
        return [self._entry(entry_id, row[0][1] if row else None) for entry_id, row in zip(ids, rows, strict=True)]

    def ack(self, entries: Iterable[ClaimedEntry]) -> int:
        ids = list(dict.fromkeys(entry.entry_id for entry in entries))
        if not ids:
            return 0
        pipe = self.client.pipeline(transaction=True)  # MULTI/EXEC: acked and deleted together
        pipe.xack(self.key, self.group, *ids)
        pipe.xdel(self.key, *ids)
        acked, _deleted = pipe.execute()
        return int(acked)

    def _group_info(self) -> dict[str, Any] | None:
        try:
            groups = self.client.xinfo_groups(self.key)
        except redis.ResponseError:  # no such key
            return None
        for group in groups:
            if group.get("name") == self.group:
                return group
        return None

    def depth(self) -> int:
        info = self._group_info()
        if info is None:  # no group yet: every entry is waiting (the group will start at 0)
            return int(self.client.xlen(self.key))
        lag = info.get("lag")
        if lag is not None:
            return int(lag)
        # Redis reports no lag when it cannot compute it cheaply (e.g. deletions after the group's last
        # delivered id): count the undelivered entries instead.
        count, start = 0, "(" + str(info.get("last-delivered-id") or "0-0")
        while True:
            page = self.client.xrange(self.key, start, "+", count=_PAGE)
            count += len(page)
            if len(page) < _PAGE:
                return count
            start = "(" + str(page[-1][0])

    def in_processing(self) -> int:
        info = self._group_info()
        return int(info.get("pending") or 0) if info else 0


def create_queue(client: redis.Redis, settings: IntakeConfig) -> ListQueue | StreamQueue:
    """The queue implementation named by ``settings.queue_kind``."""
    if settings.queue_kind == "stream":
        return StreamQueue(client, settings)
    return ListQueue(client, settings)

