"""A real redis-server for tests (no mocks): a subprocess on a free loopback port, with crash and restart.

Register as a pytest plugin (``pytest_plugins = [..., "tests.support.redis_server"]``) for the fixtures:

* ``redis_server`` — session-wide server without persistence;
* ``redis_client`` — a client on it, with the database flushed before each test;
* ``aof_redis_server`` — a factory of per-test servers with ``appendonly yes`` for crash/restart tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.servers import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """``redis-server`` bound to 127.0.0.1 on a free port, data in its own directory.

    ``kill()`` is SIGKILL (what a crash looks like); ``restart()`` starts again on the same port and directory,
    so with ``appendonly`` the data written before the crash is loaded back.
    """

    def __init__(self, *, appendonly: bool = False, appendfsync: str = "everysec", port: int | None = None,
                 directory: str | os.PathLike[str] | None = None) -> None:
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.port = port or free_port()
        self._own_dir = directory is None
        self.dir = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="imgtrans-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._clients: list[redis.Redis] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", self.appendfsync,
            "--dir", str(self.dir), "--protected-mode", "no", "--loglevel", "warning",
            "--logfile", str(self.dir / "redis.log"),
        ]

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            while True:
                if self.proc.poll() is not None:
                    log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{log}")
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    if probe.ping():
                        return self
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server on port {self.port} did not answer PING in {timeout}s")
                time.sleep(0.02)
        finally:
            probe.close()

    def client(self, **kwargs: object) -> redis.Redis:
        """A string-replies client; closed when the server stops."""
        options: dict[str, object] = {"decode_responses": True, "socket_timeout": 5, "socket_connect_timeout": 5}
        options.update(kwargs)
        client = redis.Redis.from_url(self.url, **options)
        self._clients.append(client)
        return client

    def _wait(self, timeout: float) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM: redis flushes its AOF and exits)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self._wait(10)

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything — only what was already fsync'ed survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self._wait(5)

    def restart(self, *, kill: bool = True) -> RedisServer:
        (self.kill if kill else self.stop)()
        for client in self._clients:
            client.connection_pool.disconnect()
        return self.start()

    def close(self) -> None:
        self.stop()
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One in-memory redis-server for the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on the session server, starting from an empty database."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def aof_redis_server() -> Iterator[Callable[..., RedisServer]]:
    """Factory of redis-servers with an append-only file (``appendfsync always`` by default), for restarts."""
    servers: list[RedisServer] = []

    def make(appendfsync: str = "always") -> RedisServer:
        server = RedisServer(appendonly=True, appendfsync=appendfsync).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
