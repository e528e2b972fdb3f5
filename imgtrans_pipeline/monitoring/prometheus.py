"""Prometheus text exposition (format 0.0.4) of a :class:`StatusSnapshot`, and the HTTP server that serves it.

Endpoints (the seeds' monitoring API, backed by Dagster + Redis instead of in-process counters):

* ``GET /metrics`` — Prometheus text;
* ``GET /health`` — ``200 {"status": "ok", "checks": {...}}`` when the Dagster instance answers and Redis (if
  configured) answers ``PING``; ``503`` with the failing check's reason otherwise;
* ``GET /status`` (also ``/worker/status``, the seed's path) — the snapshot as JSON.

The server is the standard library's ``ThreadingHTTPServer``, not aiohttp: every data source here (Dagster's
storage, redis-py, boto3) is blocking, so an event loop would only push each request to a thread pool anyway;
three GET routes need no framework, and the server then runs in a plain thread that tests and the CLI start and
stop directly. Snapshots are cached for ``cache_seconds`` so that several scrapers (or a scrape storm) cost the
Dagster storage one collection, not one each.

Fields that could not be read (Redis down, ...) are left out of ``/metrics`` rather than exported as 0 — a zero
queue depth would look like an idle queue — and ``imgtrans_up{component=...}`` turns 0, which is what to alert on.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .collect import DEFAULT_WINDOW_S, StatusSnapshot, check_health, collect_status, monitoring_client

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"

Labels = dict[str, str]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Writer:
    """Collects metric families; a family is written (HELP, TYPE, samples) only when it has samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[str, Labels, float | None]]) -> None:
        rows = [(suffix, labels, value) for suffix, labels, value in samples if value is not None]
        if not rows:
            return
        help_escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self.lines.append(f"# HELP {name} {help_escaped}")
        self.lines.append(f"# TYPE {name} {kind}")
        for suffix, labels, value in rows:
            label_text = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
            self.lines.append(f"{name}{suffix}{{{label_text}}} {_number(value)}" if label_text
                              else f"{name}{suffix} {_number(value)}")

    def gauge(self, name: str, help_text: str, value: float | None, labels: Labels | None = None) -> None:
        self.family(name, "gauge", help_text, [("", labels or {}, value)])

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_prometheus(snapshot: StatusSnapshot) -> str:
    """The snapshot as Prometheus text exposition format 0.0.4."""
    w = _Writer()
    up: list[tuple[str, Labels, float | None]] = [("", {"component": "dagster"}, 1 if snapshot.dagster_ok else 0)]
    if snapshot.queue_key is not None:  # Redis configured
        up.append(("", {"component": "redis"}, 1 if snapshot.redis_ok else 0))
    w.family("imgtrans_up", "gauge", "Whether the source could be read for this scrape (1) or not (0).", up)

    queue = {"queue": snapshot.queue_key or "", "kind": snapshot.queue_kind or ""}
    w.gauge("imgtrans_queue_depth", "Requests waiting in the Redis intake queue, not yet claimed.",
            snapshot.queue_depth, queue)
    w.gauge("imgtrans_queue_claimed", "Requests claimed from the queue and not yet acknowledged (in processing).",
            snapshot.in_processing, queue)
    w.gauge("imgtrans_dead_letters", "Records in the dead-letter queue, waiting for an operator requeue.",
            snapshot.dead_letters, {"queue": snapshot.queue_key or ""})
    w.gauge("imgtrans_results_list_length", "Result messages in the Redis results list.", snapshot.results)

    window = str(int(snapshot.window_s))
    if snapshot.runs is not None:
        w.family("imgtrans_runs", "gauge",
                 "Runs of translate_images: queued and in_progress now; succeeded, failed, canceled ended within "
                 "the window.",
                 [("", {"job": snapshot.job, "status": status, "window_seconds": window}, count)
                  for status, count in snapshot.runs.items()])
    w.gauge("imgtrans_requests_in_flight", "Requests carried by queued and in-progress runs.",
            snapshot.requests_in_flight)
    w.gauge("imgtrans_requests_finished", "Requests of the runs that ended within the window.",
            snapshot.requests_finished, {"window_seconds": window})
    w.gauge("imgtrans_throughput_requests_per_minute",
            "Requests finished per minute over the window (runs that ended x their request count).",
            snapshot.throughput_per_min, {"window_seconds": window})

    samples: list[tuple[str, Labels, float | None]] = []
    for stage, timing in sorted(snapshot.stage_timings.items()):
        samples.append(("", {"stage": stage, "quantile": "0.5"}, timing.p50))
        samples.append(("", {"stage": stage, "quantile": "0.95"}, timing.p95))
        samples.append(("_sum", {"stage": stage}, timing.sum))
        samples.append(("_count", {"stage": stage}, timing.count))
    w.family("imgtrans_stage_seconds", "summary",
             f"Wall time per pipeline stage over the last {snapshot.timing_requests} finished requests "
             "(timings_s of their meta.json).", samples)

    if snapshot.gpu_pool is not None:
        pool = snapshot.gpu_pool
        w.family("imgtrans_gpu_pool_slots", "gauge",
                 "Dagster concurrency pool of the GPU ops: slots in use, steps waiting, limit (absent: no limit).",
                 [("", {"pool": pool.pool, "state": "in_use"}, pool.in_use),
                  ("", {"pool": pool.pool, "state": "pending"}, pool.pending),
                  ("", {"pool": pool.pool, "state": "limit"}, pool.limit)])
    w.gauge("imgtrans_collect_seconds", "Time taken to collect this snapshot.", snapshot.collect_seconds)
    return w.text()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "imgtrans-metrics/1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            if path == "/metrics":
                self._send(HTTPStatus.OK, CONTENT_TYPE, render_prometheus(self.server.owner.snapshot()))
            elif path == "/health":
                healthy, checks = self.server.owner.health()
                body = {"status": "ok" if healthy else "unavailable", "checks": checks}
                self._send(HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE, JSON_TYPE, _json(body))
            elif path in ("/status", "/worker/status"):
                self._send(HTTPStatus.OK, JSON_TYPE, _json(self.server.owner.snapshot().to_dict()))
            elif path == "/":
                self._send(HTTPStatus.OK, "text/plain; charset=utf-8", "imgtrans: /metrics /health /status\n")
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", "not found\n")
        except Exception as exc:  # a bug must answer 500, not drop the connection
            logger.exception("metrics server: %s failed", path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", f"{type(exc).__name__}\n")

    def _send(self, status: HTTPStatus, content_type: str, body: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("metrics server: " + format, *args)


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: MetricsServer


class MetricsServer:
    """``/metrics``, ``/health``, ``/status`` over HTTP, in a background thread.

    ``collector`` returns a fresh snapshot and ``health`` the ``(healthy, checks)`` pair; :meth:`for_instance`
    wires both to a Dagster instance and the Redis intake. ``port=0`` picks a free port (see :attr:`port`).
    """

    def __init__(self, collector: Callable[[], StatusSnapshot], health: Callable[[], tuple[bool, dict[str, str]]],
                 *, host: str = "127.0.0.1", port: int = 9464, cache_seconds: float = 5.0) -> None:
        self._collector = collector
        self._health = health
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, StatusSnapshot] | None = None
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @classmethod
    def for_instance(cls, instance: Any, intake_settings: Any | None, *, window_s: float = DEFAULT_WINDOW_S,
                     store: Any | None = None, host: str = "127.0.0.1", port: int = 9464,
                     cache_seconds: float = 5.0) -> MetricsServer:
        """A server over a Dagster instance and (optionally) the Redis intake; one Redis client is reused."""
        client = monitoring_client(intake_settings) if intake_settings is not None else None
        return cls(
            lambda: collect_status(instance, intake_settings, window_s=window_s, store=store, redis_client=client),
            lambda: check_health(instance, intake_settings, redis_client=client),
            host=host, port=port, cache_seconds=cache_seconds)

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def snapshot(self) -> StatusSnapshot:
        """A snapshot at most ``cache_seconds`` old; concurrent requests share one collection."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.cache_seconds:
                return self._cached[1]
            snapshot = self._collector()
            self._cached = (time.monotonic(), snapshot)
            return snapshot

    def health(self) -> tuple[bool, dict[str, str]]:
        return self._health()

    def start(self) -> MetricsServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                            name="imgtrans-metrics", daemon=True)
            self._thread.start()
            logger.info("metrics server listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (daemon threads are not awaited), close the socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def serve_until_signalled(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> int:
        """Serve until SIGINT or SIGTERM, then stop cleanly; returns the signal number. Main thread only."""
        received: list[int] = []
        stop = threading.Event()

        def handler(signum: int, _frame: Any) -> None:
            received.append(signum)
            stop.set()

        previous = {sig: signal.signal(sig, handler) for sig in signals}
        try:
            self.start()
            while not stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
                pass
        finally:
            self.stop()
            for sig, old in previous.items():
                signal.signal(sig, old)
        logger.info("metrics server stopped (signal %s)", received[0] if received else "?")
        return received[0] if received else 0

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
