"""Routes of the monitoring endpoints: ``/metrics`` (Prometheus), ``/health`` and ``/status`` (JSON).

Endpoints are plain functions: Starlette runs them in its thread pool, which is where they belong, since every
source behind them (Dagster storage, redis-py, boto3) blocks. (prometheus_client's ``make_asgi_app`` would run
the collection on the event loop and stall every other request during a slow scrape.)
"""

from __future__ import annotations

from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..monitoring.monitor import Monitor

NO_STORE = {"Cache-Control": "no-store"}


def monitoring_routes(monitor: Monitor) -> list[BaseRoute]:
    def metrics(request: Request) -> Response:
        # Prometheus text 0.0.4 by default; OpenMetrics or text 1.0.0 when the scraper's Accept asks for it.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(monitor.registry), headers={**NO_STORE, "Content-Type": content_type})

    def health(request: Request) -> Response:
        healthy, checks = monitor.health()
        return JSONResponse({"status": "ok" if healthy else "unavailable", "checks": checks},
                            status_code=200 if healthy else 503, headers=NO_STORE)

    def status(request: Request) -> Response:
        return JSONResponse(monitor.snapshot().to_dict(), headers=NO_STORE)

    return [
        Route("/metrics", metrics, name="metrics"),
        Route("/health", health, name="health"),
        Route("/status", status, name="status"),
        Route("/worker/status", status, name="worker_status"),  # the seeds' path
    ]
