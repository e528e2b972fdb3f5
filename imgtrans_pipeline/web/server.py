"""Run the web app with uvicorn in a background thread: started and stopped directly by the CLI and by tests.

The listening socket is bound here, before uvicorn starts, so that ``port=0`` gives a known free port at once and
a busy port fails in the constructor. uvicorn runs in a thread rather than the main thread because uvicorn, run
in the main thread, re-raises SIGTERM after its graceful shutdown (the process then dies of the signal instead of
exiting 0); :meth:`WebServer.serve_until_signalled` keeps signal handling in the main thread instead.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette

from .app import DEFAULT_HOST

logger = logging.getLogger(__name__)


class WebServer:
    """Serves ``app`` on the address it was created for (``app.state.host``, see ``create_app``) and ``port``."""

    def __init__(self, app: Starlette, *, port: int = 9464, graceful_shutdown_s: int = 5,
                 log_level: str = "warning") -> None:
        self.app = app
        host = str(getattr(app.state, "host", DEFAULT_HOST))
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        self._socket = socket.socket(family, kind, proto)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind(address)
            self._socket.listen(2048)  # connections made before uvicorn runs wait in the backlog, not refused
        except OSError:
            self._socket.close()
            raise
        self.host, self.port = host, int(self._socket.getsockname()[1])
        # log_config=None: uvicorn leaves logging to the application; no access log (scrapes every few seconds,
        # and a ?token= query string must not land in logs).
        config = uvicorn.Config(app, host=host, port=self.port, log_config=None, log_level=log_level,
                                access_log=False, timeout_graceful_shutdown=graceful_shutdown_s,
                                server_header=False)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 15.0) -> WebServer:
        """Start serving; returns once uvicorn accepts connections. RuntimeError if it did not start."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="imgtrans-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"web server on {self.url} did not start")
            time.sleep(0.02)
        logger.info("web server listening on %s", self.url)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop accepting, let in-flight requests finish (up to ``graceful_shutdown_s``), close the socket."""
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
            self._thread = None
        with contextlib.suppress(OSError):
            self._socket.close()

    def serve_until_signalled(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM), *,
                              ready: Callable[[], None] | None = None) -> int:
        """Serve until SIGINT or SIGTERM, then stop cleanly; returns the signal number. Main thread only.

        ``ready`` is called once the server accepts connections (with the signal handlers already in place)."""
        received: list[int] = []
        stop = threading.Event()

        def handler(signum: int, _frame: Any) -> None:
            received.append(signum)
            stop.set()

        previous = {sig: signal.signal(sig, handler) for sig in signals}
        try:
            self.start()
            if ready is not None:
                ready()
            while not stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
                if self._thread is not None and not self._thread.is_alive():
                    raise RuntimeError("web server stopped unexpectedly")
        finally:
            self.stop()
            for sig, old in previous.items():
                signal.signal(sig, old)
        logger.info("web server stopped (signal %s)", received[0] if received else "?")
        return received[0] if received else 0

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
