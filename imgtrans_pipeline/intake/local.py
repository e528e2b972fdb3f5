"""Intake state without Redis: request status, delivery claims and the tick lease in one SQLite file.

The Kafka intake keeps its messages in Kafka, but the exactly-once parts of delivery still need a small store
that every process of a deployment shares: the per-request status (duplicates, attempts, "who delivered"), and the
lease that keeps two intake ticks from interleaving. With ``IMGTRANS_REDIS_URL`` set that store is Redis (the
classes of :mod:`.status` and :mod:`.lease`); without it, these classes give the same API over a SQLite file
(``IMGTRANS_INTAKE_STATE_DB``), which is durable and safe across processes of **one host** (SQLite file locks).
A deployment whose sensor and run workers are on several hosts configures Redis.

Every update is one ``BEGIN IMMEDIATE`` transaction (read, decide, write), so it is atomic like the Lua scripts of
the Redis versions, with the same rules: ``succeeded`` is not overwritten unless forced, a run id is appended once,
``attempts`` counts a run id once, and the first run to claim a delivery keeps it.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .lease import LeaseLost
from .status import _RESERVED, STATES, _now, _text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS request_status (id TEXT PRIMARY KEY, data TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS lease (key TEXT PRIMARY KEY, token TEXT NOT NULL, expires REAL NOT NULL);
"""


class _Db:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # readers never wait for the one writer
            db.executescript(_SCHEMA)
        finally:
            db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per operation: callers run in forked and threaded processes alike.
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()


class LocalRequestStatus:
    """:class:`~.status.RequestStatus` over SQLite (same methods, same return values)."""

    def __init__(self, path: str | Path, ttl_seconds: int) -> None:
        self.db = _Db(path)
        self.ttl = ttl_seconds

    def _load(self, db: sqlite3.Connection, request_id: str) -> dict[str, Any]:
        row = db.execute("SELECT data FROM request_status WHERE id = ? AND expires > ?",
                         (request_id, time.time())).fetchone()
        return json.loads(row[0]) if row else {}

    def _store(self, db: sqlite3.Connection, request_id: str, data: dict[str, Any]) -> None:
        db.execute("INSERT OR REPLACE INTO request_status (id, data, expires) VALUES (?, ?, ?)",
                   (request_id, json.dumps(data, ensure_ascii=False), time.time() + self.ttl))

    def mark(self, request_id: str, state: str, *, run_id: str | None = None, attempts_increment: bool = False,
             force: bool = False, **fields: Any) -> bool:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r} (one of {', '.join(STATES)})")
        reserved = _RESERVED & set(fields)
        if reserved:
            raise ValueError(f"fields managed by RequestStatus cannot be set directly: {sorted(reserved)}")
        with self.db.transaction() as db:
            data = self._load(db, request_id)
            if data.get("state") == "succeeded" and state != "succeeded" and not force:
                return False
            now = _now()
            data.update(state=state, updated_at=now)
            data.setdefault("created_at", now)
            new_run = False
            if run_id:
                data["run_id"] = run_id
                run_ids = data.setdefault("run_ids", [])
                if run_id not in run_ids:
                    run_ids.append(run_id)
                    new_run = True
            if attempts_increment and (not run_id or new_run):
                data["attempts"] = int(data.get("attempts", 0)) + 1
            for name, value in fields.items():
                if value is None:
                    data.pop(name, None)
                else:
                    data[name] = _text(value)
            self._store(db, request_id, data)
            if random.random() < 0.01:  # now and then: drop expired rows
                db.execute("DELETE FROM request_status WHERE expires <= ?", (time.time(),))
        return True

    def claim_delivery(self, request_id: str, run_id: str) -> str | None:
        with self.db.transaction() as db:
            data = self._load(db, request_id)
            field = f"delivered_by:{data.get('attempt') or '1'}"
            owner = data.get(field)
            if owner is None:
                data[field] = run_id
                self._store(db, request_id, data)
                return None
            return None if owner == run_id else str(owner)

    def release_delivery(self, request_id: str, run_id: str) -> bool:
        with self.db.transaction() as db:
            data = self._load(db, request_id)
            field = f"delivered_by:{data.get('attempt') or '1'}"
            if data.get(field) != run_id:
                return False
            del data[field]
            self._store(db, request_id, data)
            return True

    def note_duplicate(self, request_id: str) -> bool:
        with self.db.transaction() as db:
            data = self._load(db, request_id)
            if not data:
                return False
            data["duplicates"] = int(data.get("duplicates", 0)) + 1
            data["last_duplicate_at"] = _now()
            self._store(db, request_id, data)
            return True

    def get(self, request_id: str) -> dict[str, Any] | None:
        with self.db.transaction() as db:
            data = self._load(db, request_id)
        return data or None

    def ttl_of(self, request_id: str) -> int:
        with self.db.transaction() as db:
            row = db.execute("SELECT expires FROM request_status WHERE id = ?", (request_id,)).fetchone()
        return -2 if row is None or row[0] <= time.time() else int(row[0] - time.time())


class LocalTickLease:
    """:class:`~.lease.TickLease` over SQLite: one holder until released or expired."""

    def __init__(self, path: str | Path, key: str, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError("the lease's time to live must be positive")
        self.db = _Db(path)
        self.key = key
        self.ttl_s = ttl_s
        self.token = uuid.uuid4().hex

    def acquire(self) -> bool:
        with self.db.transaction() as db:
            row = db.execute("SELECT token, expires FROM lease WHERE key = ?", (self.key,)).fetchone()
            if row is not None and row[1] > time.time() and row[0] != self.token:
                return False
            db.execute("INSERT OR REPLACE INTO lease (key, token, expires) VALUES (?, ?, ?)",
                       (self.key, self.token, time.time() + self.ttl_s))
            return True

    def confirm(self) -> None:
        with self.db.transaction() as db:
            changed = db.execute("UPDATE lease SET expires = ? WHERE key = ? AND token = ? AND expires > ?",
                                 (time.time() + self.ttl_s, self.key, self.token, time.time())).rowcount
        if not changed:
            raise LeaseLost(f"intake tick lease {self.key} expired before the tick wrote its decisions")

    def release(self) -> bool:
        with self.db.transaction() as db:
            return bool(db.execute("DELETE FROM lease WHERE key = ? AND token = ?", (self.key, self.token)).rowcount)

    def holder(self) -> str | None:
        with self.db.transaction() as db:
            row = db.execute("SELECT token FROM lease WHERE key = ? AND expires > ?",
                             (self.key, time.time())).fetchone()
        return str(row[0]) if row else None
