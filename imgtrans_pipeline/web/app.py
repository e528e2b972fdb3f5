"""The imgtrans web app (Starlette): monitoring endpoints now, more pages (the review page) mounted next to them.

Layout for additions: each area is a function returning Starlette routes (``monitoring_routes(monitor)`` in
:mod:`.monitoring`); :func:`create_app` puts them together, and a new area is passed in ``routes`` (e.g.
``Mount("/review", routes=review_routes(...))``) or added to the list below. Server-rendered pages use
``request.app.state.templates`` (Jinja2, autoescaping on; templates under ``web/templates/`` extend ``base.html``).

Access: bound to 127.0.0.1 by default and open there. Bound to any other address the app requires a token (the
setting ``IMGTRANS_REVIEW_TOKEN``, passed in as ``token``): ``Authorization: Bearer <token>`` (what Prometheus'
``authorization`` scrape option sends) or ``?token=<token>`` (a link a browser can open); without one the answer
is 401, with a wrong one 403. Given on loopback, a token is enforced there too.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from ..monitoring.monitor import Monitor
from .monitoring import monitoring_routes

TEMPLATES_DIR = Path(__file__).with_name("templates")
DEFAULT_HOST = "127.0.0.1"
TOKEN_QUERY_PARAM = "token"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, ``localhost``); ``0.0.0.0`` is not."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # another host name: it may resolve to any interface
        return False


def check_token_rule(host: str, token: str | None) -> None:
    """ValueError when ``host`` is not loopback and no token is given (an open page on a network address)."""
    if not token and not is_loopback(host):
        raise ValueError(f"binding to {host!r} (not loopback) requires a token (IMGTRANS_REVIEW_TOKEN)")


class TokenAuth:
    """ASGI middleware: every HTTP request must carry the token (bearer header or ``token`` query parameter)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        given = self._given(scope)
        if given is None:
            response: Response = PlainTextResponse("token required\n", status_code=401,
                                                   headers={"WWW-Authenticate": 'Bearer realm="imgtrans"'})
        elif not hmac.compare_digest(given.encode("utf-8"), self._token):
            response = PlainTextResponse("wrong token\n", status_code=403)
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)

    @staticmethod
    def _given(scope: Scope) -> str | None:
        authorization = Headers(scope=scope).get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return QueryParams(scope.get("query_string", b"")).get(TOKEN_QUERY_PARAM) or None


def _index(request: Request) -> Response:
    links = [("/metrics", "Prometheus metrics"), ("/health", "liveness of Dagster and Redis (JSON)"),
             ("/status", "status snapshot (JSON)"), *request.app.state.links]
    return request.app.state.templates.TemplateResponse(request, "index.html", {"links": links},
                                                        headers={"Cache-Control": "no-store"})


def create_app(monitor: Monitor, *, host: str = DEFAULT_HOST, token: str | None = None,
               routes: Sequence[BaseRoute] = (), links: Sequence[tuple[str, str]] = (),
               debug: bool = False) -> Starlette:
    """The app serving ``/metrics``, ``/health``, ``/status`` (and ``/worker/status``) for ``monitor``, plus ``routes``.

    ``host`` is the address the app will be bound to (:class:`~.server.WebServer` binds there): anything but a
    loopback address requires ``token``. Raises ValueError when it is missing. ``links`` (path, label) are added
    to the index page.
    """
    check_token_rule(host, token)
    token = token or None
    middleware = [Middleware(TokenAuth, token=token)] if token is not None else []
    app = Starlette(debug=debug, middleware=middleware,
                    routes=[Route("/", _index, name="index"), *monitoring_routes(monitor), *routes])
    state: Any = app.state
    state.host = host
    state.token_required = token is not None
    state.monitor = monitor
    state.links = list(links)
    state.templates = Jinja2Templates(directory=TEMPLATES_DIR)
    return app
