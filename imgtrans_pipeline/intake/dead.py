"""Dead letters: messages that cannot be processed, kept with the reason until an operator retries them.

A record is JSON ``{dead_id, payload, reason, request_id, run_id, stage, dead_at[, note]}`` where ``payload`` is
the message exactly as the producer sent it, so a retry (:meth:`DeadLetters.requeue`, the "operator retry" of
the failure flow) re-sends precisely what was received. Records live in a list (``LPUSH``, newest at the head)
or a stream (``XADD dead * record <json>``), matching the queue kind.

Crash safety: every move between keys is one Lua script (atomic on the server), guarded by a check that the
source still holds the item. :meth:`DeadLetters.bury` acknowledges a claimed entry and records it in one step;
:meth:`DeadLetters.requeue` removes a record and re-enqueues its payload in one step; :meth:`DeadLetters.add`
is de-duplicated by a short-lived fingerprint key, so a caller that dies after ``add`` and repeats it (because
it never got to acknowledge the entry) does not create a second record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import redis

from .config import IntakeConfig
from .messages import request_id_of
from .queue import ClaimedEntry, ListQueue, StreamQueue

logger = logging.getLogger(__name__)

DEDUPE_WINDOW_SECONDS = 24 * 3600
NOT_REQUEUEABLE = "not requeued: payload is not a JSON object with a request_id"

# KEYS: dead, fingerprint key. ARGV: record, fingerprint ttl, kind.
_ADD = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[2])) then return 0 end
if ARGV[3] == 'stream' then redis.call('XADD', KEYS[1], '*', 'record', ARGV[1])
else redis.call('LPUSH', KEYS[1], ARGV[1]) end
return 1
"""

# Atomically take one value off a list and push another onto a second list: burying (processing -> dead) and
# re-queueing (dead -> queue) are the same move. KEYS: from list, to list. ARGV: value to remove, value to push.
_MOVE_LIST = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# KEYS: stream, dead stream. ARGV: group, entry id, record.
_BURY_STREAM = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('XDEL', KEYS[1], ARGV[2])
  redis.call('XADD', KEYS[2], '*', 'record', ARGV[3])
  return 1
end
return 0
"""

# KEYS: dead stream, queue stream. ARGV: dead entry id, payload.
_REQUEUE_STREAM = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('XADD', KEYS[2], '*', 'payload', ARGV[2])
  return 1
end
return 0
"""

# Replace a record with an annotated copy. KEYS: dead. ARGV: kind, ref (record or entry id), new record.
_ANNOTATE = """
if ARGV[1] == 'stream' then
  if redis.call('XDEL', KEYS[1], ARGV[2]) == 1 then
    redis.call('XADD', KEYS[1], '*', 'record', ARGV[3])
    return 1
  end
  return 0
end
local pos = redis.call('LPOS', KEYS[1], ARGV[2])
if pos then
  redis.call('LSET', KEYS[1], pos, ARGV[3])
  return 1
end
return 0
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class DeadLetters:
    """The dead-letter queue of one intake (list or stream, like the request queue)."""

    def __init__(self, client: redis.Redis, settings: IntakeConfig,
                 dedupe_window_seconds: int = DEDUPE_WINDOW_SECONDS) -> None:
        self.client = client
        self.settings = settings
        self.key = settings.dead
        self.kind = settings.queue_kind
        self.dedupe_window_seconds = dedupe_window_seconds
        self._add = client.register_script(_ADD)
        self._move_list = client.register_script(_MOVE_LIST)
        self._bury_stream = client.register_script(_BURY_STREAM)
        self._requeue_stream = client.register_script(_REQUEUE_STREAM)
        self._annotate = client.register_script(_ANNOTATE)

    # ---- writing -------------------------------------------------------------------------------------------------
    @staticmethod
    def record(raw: str, reason: str, *, request_id: str | None = None, run_id: str | None = None,
               stage: str | None = None) -> dict[str, Any]:
        """A dead-letter record (``request_id`` defaults to the one inside ``raw``, when it has one)."""
        return {
            "dead_id": uuid.uuid4().hex,
            "payload": raw,
            "reason": reason,
            "request_id": request_id or request_id_of(raw),
            "run_id": run_id,
            "stage": stage,
            "dead_at": _now(),
        }

    def add(self, raw: str, reason: str, *, request_id: str | None = None, run_id: str | None = None,
            stage: str | None = None) -> bool:
        """Record ``raw`` as dead. Returns False when the very same letter (payload, reason, stage, run, request)
        was already recorded within the de-duplication window: a repeated call after a crash is a no-op."""
        record = self.record(raw, reason, request_id=request_id, run_id=run_id, stage=stage)
        fingerprint = hashlib.sha256(
            "\0".join(str(record[k] or "") for k in ("payload", "reason", "stage", "run_id", "request_id")).encode(
                "utf-8", "surrogatepass")
        ).hexdigest()[:32]
        added = bool(self._add(keys=[self.key, f"{self.key}:seen:{fingerprint}"],
                               args=[_dumps(record), self.dedupe_window_seconds, self.kind]))
        if added:
            logger.warning("dead letter: request_id=%s stage=%s reason=%s", record["request_id"], stage, reason)
        return added

    def bury(self, queue: ListQueue | StreamQueue, entry: ClaimedEntry, reason: str, *,
             request_id: str | None = None, run_id: str | None = None, stage: str | None = "intake") -> bool:
        """Acknowledge a claimed ``entry`` and record it as dead in one atomic step.

        Returns False (and records nothing) when the entry is no longer pending, e.g. a repeat after a crash.
        """
        record = self.record(entry.raw, reason, request_id=request_id or entry.request_id, run_id=run_id,
                             stage=stage)
        if isinstance(queue, StreamQueue):
            moved = self._bury_stream(keys=[queue.key, self.key], args=[queue.group, entry.entry_id, _dumps(record)])
        else:
            moved = self._move_list(keys=[queue.processing, self.key], args=[entry.raw, _dumps(record)])
        if moved:
            logger.warning("dead letter: request_id=%s stage=%s reason=%s", record["request_id"], stage, reason)
        return bool(moved)

    # ---- reading -------------------------------------------------------------------------------------------------
    def _scan(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(ref, record) pairs, oldest first; ``ref`` is the stored record text (list) or the entry id (stream)."""
        if self.kind == "stream":
            start = "-"
            while True:
                page = self.client.xrange(self.key, start, "+", count=500)
                for entry_id, fields in page:
                    yield entry_id, self._decode(fields.get("record"))
                if len(page) < 500:
                    return
                start = "(" + page[-1][0]
        else:
            for text in reversed(self.client.lrange(self.key, 0, -1)):
                yield text, self._decode(text)

    @staticmethod
    def _decode(text: str | None) -> dict[str, Any]:
        try:
            record = json.loads(text or "")
        except ValueError:
            record = None
        if not isinstance(record, dict):  # written by someone else: keep it visible, never requeue it blindly
            return {"payload": None, "reason": "unreadable dead-letter record", "raw_record": text}
        return record

    def list(self, limit: int | None = 100) -> list[dict[str, Any]]:
        """Dead letters, newest first (at most ``limit``; None for all)."""
        if limit is not None and limit <= 0:
            return []
        if self.kind == "stream":
            rows = self.client.xrevrange(self.key, "+", "-", count=limit)
            return [self._decode(fields.get("record")) for _id, fields in rows]
        texts = self.client.lrange(self.key, 0, -1 if limit is None else limit - 1)
        return [self._decode(text) for text in texts]

    def count(self) -> int:
        return int(self.client.xlen(self.key) if self.kind == "stream" else self.client.llen(self.key))

    # ---- operator retry ------------------------------------------------------------------------------------------
    def requeue(self, request_ids: Iterable[str] | None = None, limit: int | None = None) -> int:
        """Move dead letters back onto the request queue, oldest first; returns how many moved.

        ``request_ids`` selects records by request id (all records when None). Each move removes the record and
        enqueues its original payload in one atomic step, so a crash mid-way leaves every record either dead or
        queued, never both or neither. Records whose payload is not a JSON object with a ``request_id`` stay
        dead and get a ``note`` saying why. Repeating a requeue moves nothing twice.
        """
        wanted = None if request_ids is None else set(request_ids)
        moved = 0
        for ref, record in list(self._scan()):
            if limit is not None and moved >= limit:
                break
            payload = record.get("payload")
            rid = request_id_of(payload) if isinstance(payload, str) else None
            if wanted is not None and record.get("request_id") not in wanted and rid not in wanted:
                continue
            if rid is None:
                if record.get("note") != NOT_REQUEUEABLE and "raw_record" not in record:
                    self._annotate(keys=[self.key], args=[self.kind, ref, _dumps({**record, "note": NOT_REQUEUEABLE})])
                logger.warning("dead letter %s not requeued: %s", record.get("dead_id"), NOT_REQUEUEABLE)
                continue
            if self.kind == "stream":
                ok = self._requeue_stream(keys=[self.key, self.settings.queue], args=[ref, payload])
            else:
                ok = self._move_list(keys=[self.key, self.settings.queue], args=[ref, payload])
            if ok:
                moved += 1
                logger.info("requeued dead letter %s (request_id=%s)", record.get("dead_id"), rid)
        return moved
