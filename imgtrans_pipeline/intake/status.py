"""Per-request status in a Redis hash, so producers can ask "where is my request?" without Dagster.

``{prefix}{request_id}`` holds ``state`` (queued / running / succeeded / failed / dead, or needs_review: held by
the quality gate until a reviewer approves or rejects it), ``created_at`` and ``updated_at`` (ISO 8601 UTC),
``run_id`` and ``run_ids`` (JSON list, every run that touched the request), ``attempts`` and whatever fields the
caller adds (``result_url``, ``error``, delivery outcome, ...). The hash expires
``status_ttl_seconds`` after its last update, so finished requests do not accumulate forever.

Each update is one Lua script, so it is atomic and, for the parts that matter, idempotent: ``created_at`` is
written once, a run id is appended once, and ``attempts`` counts a run id once. The one transition refused is
overwriting ``succeeded`` with anything else: a stale duplicate (a redelivered message, a late event from an
old run) must not make a finished request look queued, running or failed again. A deliberate redo passes
``force=True``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import redis

from .config import IntakeConfig

logger = logging.getLogger(__name__)

STATES = ("queued", "running", "succeeded", "failed", "dead", "needs_review")
_RESERVED = {"state", "created_at", "updated_at", "run_ids", "attempts"}

# KEYS: hash. ARGV: state, now, ttl, force, attempts_increment, run_id, n_set, n_set*(field, value), deletes...
_MARK = """
local key = KEYS[1]
local state, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local previous = redis.call('HGET', key, 'state')
if previous == 'succeeded' and state ~= 'succeeded' and ARGV[4] ~= '1' then
  return {0, previous}
end
redis.call('HSET', key, 'state', state, 'updated_at', now)
redis.call('HSETNX', key, 'created_at', now)
local new_run = false
local run_id = ARGV[6]
if run_id ~= '' then
  redis.call('HSET', key, 'run_id', run_id)
  local ids = {}
  local stored = redis.call('HGET', key, 'run_ids')
  if stored then
    local ok, decoded = pcall(cjson.decode, stored)
    if ok and type(decoded) == 'table' then ids = decoded end
  end
  local seen = false
  for _, v in ipairs(ids) do if v == run_id then seen = true end end
  if not seen then
    table.insert(ids, run_id)
    redis.call('HSET', key, 'run_ids', cjson.encode(ids))
    new_run = true
  end
end
if ARGV[5] == '1' and (run_id == '' or new_run) then
  redis.call('HINCRBY', key, 'attempts', 1)
end
local n = tonumber(ARGV[7])
local i = 8
for _ = 1, n do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', key, ARGV[i])
  i = i + 1
end
redis.call('EXPIRE', key, ttl)
return {1, previous or ''}
"""

# KEYS: hash. ARGV: now, ttl.
_DUPLICATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'duplicates', 1)
redis.call('HSET', KEYS[1], 'last_duplicate_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""


# KEYS: hash. ARGV: run id. Drops the run's delivery claim of the current attempt (only its own).
_RELEASE = """
local field = 'delivered_by:' .. (redis.call('HGET', KEYS[1], 'attempt') or '1')
if redis.call('HGET', KEYS[1], field) == ARGV[1] then
  redis.call('HDEL', KEYS[1], field)
  return 1
end
return 0
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class RequestStatus:
    """Read and update the status hashes of one intake."""

    def __init__(self, client: redis.Redis, settings: IntakeConfig) -> None:
        self.client = client
        self.prefix = settings.status_prefix
        self.ttl = settings.status_ttl_seconds
        self._mark = client.register_script(_MARK)
        self._duplicate = client.register_script(_DUPLICATE)
        self._release = client.register_script(_RELEASE)

    def key(self, request_id: str) -> str:
        return f"{self.prefix}{request_id}"

    def mark(self, request_id: str, state: str, *, run_id: str | None = None, attempts_increment: bool = False,
             force: bool = False, **fields: Any) -> bool:
        """Set ``state`` (plus ``fields``; a None value deletes the field) and refresh the TTL.

        ``run_id`` is recorded as the current run and appended to ``run_ids`` once; ``attempts_increment`` adds
        one to ``attempts`` — once per new run id, so repeating the call is harmless. Returns False, changing
        nothing, when the request already succeeded and ``state`` is not ``succeeded`` (unless ``force``).
        """
        if state not in STATES:
            raise ValueError(f"unknown state {state!r} (one of {', '.join(STATES)})")
        reserved = _RESERVED & set(fields)
        if reserved:
            raise ValueError(f"fields managed by RequestStatus cannot be set directly: {sorted(reserved)}")
        to_set = [(name, _text(value)) for name, value in fields.items() if value is not None]
        to_delete = [name for name, value in fields.items() if value is None]
        args: list[Any] = [state, _now(), self.ttl, "1" if force else "0", "1" if attempts_increment else "0",
                           run_id or "", len(to_set)]
        for name, value in to_set:
            args += [name, value]
        args += to_delete
        applied, previous = self._mark(keys=[self.key(request_id)], args=args)
        if not int(applied):
            logger.info("status of %s stays %s (refused %s)", request_id, previous, state)
            return False
        return True

    def claim_delivery(self, request_id: str, run_id: str) -> str | None:
        """Make ``run_id`` the one run that delivers this attempt of the request (results list, webhook).

        Returns None when it may deliver (first claim, or its own claim repeated), else the run id that already
        did. Why: a run Dagster's monitoring failed while its process kept going and the retry of that run may both
        reach publish; the request must still be delivered once. A re-queued request is a new attempt.
        """
        field = f"delivered_by:{self.client.hget(self.key(request_id), 'attempt') or '1'}"
        if self.client.hsetnx(self.key(request_id), field, run_id):
            return None
        owner = self.client.hget(self.key(request_id), field)
        return None if owner == run_id else owner

    def release_delivery(self, request_id: str, run_id: str) -> bool:
        """Give back ``run_id``'s claim when its delivery failed (broker or Redis down while publishing), so that a
        retry of the step or of the run delivers; True when a claim was dropped."""
        return bool(int(self._release(keys=[self.key(request_id)], args=[run_id])))

    def note_duplicate(self, request_id: str) -> bool:
        """Count a duplicate delivery of an already known request (no-op when there is no status yet)."""
        return bool(self._duplicate(keys=[self.key(request_id)], args=[_now(), self.ttl]))

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The status hash, or None. Values are strings, except ``run_ids`` (list) and the counters
        ``attempts`` and ``duplicates`` (int)."""
        data: dict[str, Any] = self.client.hgetall(self.key(request_id))
        if not data:
            return None
        if "run_ids" in data:
            try:
                data["run_ids"] = [str(x) for x in json.loads(data["run_ids"])]
            except (ValueError, TypeError):
                data["run_ids"] = [x for x in str(data["run_ids"]).split(",") if x]
        for counter in ("attempts", "duplicates"):
            if counter in data:
                data[counter] = int(data[counter])
        return data

    def ttl_of(self, request_id: str) -> int:
        """Seconds until the status hash expires (-2 when there is none)."""
        return int(self.client.ttl(self.key(request_id)))
