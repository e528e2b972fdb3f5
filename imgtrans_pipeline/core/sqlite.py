"""One SQLite file shared by the threads of a process: the translation cache and the translation memory."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import ClassVar


class SqliteFile:
    """A lazily opened connection to ``path`` (``":memory:"`` works too) with the subclass's ``SCHEMA`` applied;
    callers hold ``self._lock`` around their use of ``self._connection()``."""

    SCHEMA: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross a fork (Dagster's multiprocess executor forks/spawns workers).
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=30000")
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            for statement in self.SCHEMA:
                conn.execute(statement)
            self._conn, self._pid = conn, os.getpid()
        return self._conn
