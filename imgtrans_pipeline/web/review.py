"""The review page (``/review``): the queue of requests held by the quality gate, and one page per request to
correct its translations, re-render, approve or reject. Everything goes through ``ReviewService``; images come from
the artifact store through the app (local or S3), never from files read directly.

Routes, relative to the mount point:

* ``GET /`` — the queue; filters ``state`` (``needs_review`` default, ``approved``, ``rejected``, ``succeeded``,
  ``all``), ``min`` / ``max`` score, ``q`` (text in the request id or the reasons);
* ``GET /requests/{id}`` — source and result side by side, the blocks outlined, one form row per block;
* ``GET /requests/{id}/details`` — the same as JSON (``ReviewService.details``);
* ``GET /requests/{id}/image/{source|result}`` — the image bytes (``?revision=N`` for a kept older result);
* ``POST /requests/{id}/rerender|approve|reject`` — JSON (what the page's script sends) or a urlencoded form.
  JSON answers JSON: ``{"error", "kind"}`` with 400 (bad input, unknown block), 404 (unknown request), 409
  (``RevisionConflict``, wrong state). A form answers with a redirect to the request page, or an error page.

Cross-site requests: when the app has a token the middleware requires it on every request (a cross-site form
cannot know it); without one (loopback), POSTs whose ``Origin`` or ``Sec-Fetch-Site`` says another site are
refused, so a web page elsewhere cannot drive a reviewer's local review page.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .. import names
from ..review import BlockEdit, ReviewError, RevisionConflict, UnknownBlock, UnknownRequest, WrongState
from ..review.state import REVIEW_STATES
from ..storage.base import ArtifactNotFound, StorageError, guess_content_type

NO_STORE = {"Cache-Control": "no-store"}
COLOR = re.compile(r"#[0-9a-fA-F]{6}")
MAX_BODY = 1 << 20  # a page's edits are a few kB
QUEUE_LIMIT = 500
FONT_PX = (4, 400)


class BadInput(ReviewError):
    kind = "bad_request"


STATUS = {BadInput: 400, UnknownBlock: 400, UnknownRequest: 404, RevisionConflict: 409, WrongState: 409}


def _status(error: ReviewError) -> int:
    return next((code for cls, code in STATUS.items() if isinstance(error, cls)), 422)


# --- input ----------------------------------------------------------------------------------------------------------

async def _body(request: Request) -> tuple[dict[str, Any], bool]:
    """(fields, came as JSON). JSON objects or urlencoded forms (parsed here: no multipart is accepted)."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise BadInput(f"request body over {MAX_BODY} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(raw or b"{}")
        except ValueError as error:
            raise BadInput(f"body is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise BadInput("body must be a JSON object")
        return data, True
    if kind in ("application/x-www-form-urlencoded", ""):
        try:
            return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True)), False
        except UnicodeDecodeError:
            raise BadInput("form body is not UTF-8") from None
    raise BadInput(f"unsupported content type {kind!r} (send application/json or a urlencoded form)")


def _int(value: Any, what: str, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool):
        raise BadInput(f"{what} must be a whole number, not {value!r}")
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise BadInput(f"{what} must be a whole number, not {value!r}") from None
    if number < low or (high is not None and number > high):
        raise BadInput(f"{what} {number} is out of range ({low}-{high if high is not None else '…'})")
    return number


def _by(data: dict[str, Any]) -> str:
    by = str(data.get("by") or "reviewer").strip()[:80]
    return by or "reviewer"


def _flag(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise BadInput(f"keep_original must be true or false, not {value!r}")


def parse_edit(data: Any) -> BlockEdit:
    """One block edit from JSON (or a form's fields): validated, so the backend gets only sane values."""
    if not isinstance(data, dict):
        raise BadInput("each edit must be an object with a block index")
    if "block" not in data:
        raise BadInput("an edit lacks its block index")
    block = _int(data["block"], "block", low=0)
    text = data.get("text")
    if text is not None:
        if not isinstance(text, str):
            raise BadInput(f"block {block}: text must be a string")
        if not text.strip():
            raise BadInput(f"block {block}: the translation is empty (use keep original to leave the source text)")
    font_px = data.get("font_px")
    font_px = None if font_px in (None, "") else _int(font_px, f"block {block}: font_px", low=FONT_PX[0],
                                                      high=FONT_PX[1])
    color = data.get("color") or None
    if color is not None and (not isinstance(color, str) or not COLOR.fullmatch(color)):
        raise BadInput(f"block {block}: colour must look like #rrggbb, not {color!r}")
    return BlockEdit(block=block, text=text, font_px=font_px, color=color.lower() if color else None,
                     keep_original=_flag(data.get("keep_original")), reset=bool(_flag(data.get("reset"))))


def _form_edits(data: dict[str, Any]) -> list[BlockEdit]:
    """Form fields ``text-<i>``, ``font_px-<i>``, ``color-<i>``, ``keep_original-<i>`` (what the page's form has)."""
    blocks: dict[int, dict[str, Any]] = {}
    for key, value in data.items():
        field, _, index = key.rpartition("-")
        if field in ("text", "font_px", "color", "keep_original", "reset") and index.isdigit():
            blocks.setdefault(int(index), {"block": int(index)})[field] = value
    return [parse_edit(fields) for _, fields in sorted(blocks.items())]


# --- output ---------------------------------------------------------------------------------------------------------

def _age(stamp: str | None, now: float | None = None) -> str:
    if not stamp:
        return ""
    try:
        then = time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    except ValueError:
        return stamp
    seconds = max(0, int((now or time.time()) - then))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _with_token(request: Request, path: str, **params: Any) -> str:
    """``path`` with ``params``, and the ``token`` query parameter the page was opened with (links, images)."""
    query = {k: v for k, v in params.items() if v not in (None, "")}
    token = request.query_params.get("token")
    if token:
        query["token"] = token
    return f"{path}?{urlencode(query)}" if query else path


def _cross_site(request: Request) -> bool:
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


class ReviewPages:
    """The handlers over one ``ReviewService`` (anything with its methods and ``store``)."""

    def __init__(self, service: Any, *, prefix: str = "/review") -> None:
        self.service = service
        self.prefix = prefix.rstrip("/")

    # --- helpers ------------------------------------------------------------------------------------------------
    def url(self, request: Request, path: str = "", **params: Any) -> str:
        return _with_token(request, f"{self.prefix}{path}" or "/", **params)

    def request_url(self, request: Request, request_id: str, tail: str = "", **params: Any) -> str:
        return self.url(request, f"/requests/{request_id}{tail}", **params)

    def _render(self, request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
        context = {"url": lambda path="", **p: self.url(request, path, **p),
                   "request_url": lambda rid, tail="", **p: self.request_url(request, rid, tail, **p), **context}
        return request.app.state.templates.TemplateResponse(request, template, context, status_code=status,
                                                            headers=NO_STORE)

    def _error(self, request: Request, error: ReviewError, as_json: bool) -> Response:
        status = _status(error)
        if as_json:
            return JSONResponse({"error": error.message, "kind": error.kind}, status_code=status, headers=NO_STORE)
        return self._render(request, "review_error.html", {"message": error.message, "status": status}, status)

    def _details(self, request_id: str) -> dict[str, Any]:
        try:
            return self.service.details(request_id)
        except StorageError:  # an id the store refuses (bad characters) is no request of ours
            raise UnknownRequest(f"unknown request {request_id}") from None

    # --- pages --------------------------------------------------------------------------------------------------
    def queue(self, request: Request) -> Response:
        params = request.query_params
        state = params.get("state") or names.STATE_NEEDS_REVIEW
        if state not in (*REVIEW_STATES, "all"):
            return self._error(request, BadInput(f"unknown state {state!r}"), False)
        try:
            low = float(params["min"]) if params.get("min") else None
            high = float(params["max"]) if params.get("max") else None
        except ValueError:
            return self._error(request, BadInput("min and max must be numbers (scores are 0-1)"), False)
        text = (params.get("q") or "").strip().lower()
        entries = []
        for entry in self.service.pending(None if state == "all" else state):
            score = entry.get("score")
            if low is not None and (score is None or score < low):
                continue
            if high is not None and (score is None or score > high):
                continue
            reasons = [str(r) for r in entry.get("reasons") or []]
            if text and text not in entry.get("request_id", "").lower() \
                    and not any(text in r.lower() for r in reasons):
                continue
            entries.append({**entry, "reasons": reasons, "age": _age(entry.get("created_at"))})
        shown = entries[:QUEUE_LIMIT]
        return self._render(request, "review_queue.html", {
            "entries": shown, "total": len(entries), "states": (*REVIEW_STATES, "all"),
            "filters": {"state": state, "min": params.get("min", ""), "max": params.get("max", ""),
                        "q": params.get("q", "")}})

    def page(self, request: Request) -> Response:
        request_id = request.path_params["request_id"]
        try:
            details = self._details(request_id)
        except ReviewError as error:
            return self._error(request, error, False)
        meta_image = self._image_size(request_id)
        blocks = []
        for block in details["blocks"]:
            x0, y0, x1, y1 = (float(v) for v in (block.get("bbox") or (0, 0, 0, 0)))
            blocks.append({**block, "box": {"x": x0, "y": y0, "w": max(1.0, x1 - x0), "h": max(1.0, y1 - y0)},
                           "override": block.get("override") or {}})
        revision = int(details.get("revision") or 1)
        return self._render(request, "review_request.html", {
            "d": details, "blocks": blocks, "size": meta_image, "revision": revision,
            "editable": details.get("state") in (names.STATE_NEEDS_REVIEW, "succeeded"),
            "decidable": details.get("state") == names.STATE_NEEDS_REVIEW,
            "message": request.query_params.get("message", ""),
            "page": {"revision": revision, "request_id": request_id,
                     "editable": details.get("state") in (names.STATE_NEEDS_REVIEW, "succeeded"),
                     "decidable": details.get("state") == names.STATE_NEEDS_REVIEW,
                     "urls": {"rerender": self.request_url(request, request_id, "/rerender"),
                              "approve": self.request_url(request, request_id, "/approve"),
                              "reject": self.request_url(request, request_id, "/reject"),
                              "result": self.request_url(request, request_id, "/image/result"),
                              "queue": self.url(request, "/")},
                     "blocks": [{"block": b["block"], "text": b["translation"], **b["override"]} for b in blocks]}})

    def _image_size(self, request_id: str) -> dict[str, int]:
        from ..storage import get_json

        try:
            image = get_json(self.service.store, request_id, names.META_JSON).get("image") or {}
        except (ArtifactNotFound, StorageError, ValueError):
            image = {}
        return {"width": int(image.get("width") or 0), "height": int(image.get("height") or 0)}

    def details(self, request: Request) -> Response:
        try:
            return JSONResponse(self._details(request.path_params["request_id"]), headers=NO_STORE)
        except ReviewError as error:
            return self._error(request, error, True)

    def image(self, request: Request) -> Response:
        request_id, which = request.path_params["request_id"], request.path_params["which"]
        store = self.service.store
        try:
            if which == "source":
                name = names.SOURCE_PNG
            elif which == "result":
                name = names.find_result_name(store.list(request_id)) or ""
                if request.query_params.get("revision"):
                    revision = _int(request.query_params["revision"], "revision", low=1)
                    # The latest revision is un-prefixed; older ones were copied aside as rev-<n>.result.*
                    details = self._details(request_id)
                    if revision != int(details.get("revision") or 1):
                        name = names.revision_name(revision, name)
            else:
                raise UnknownRequest(f"no image {which!r} (source or result)")
            data = store.get(request_id, name) if name else None
        except ReviewError as error:
            return JSONResponse({"error": error.message, "kind": error.kind}, status_code=_status(error))
        except (ArtifactNotFound, StorageError):
            data = None
        if data is None:
            return JSONResponse({"error": f"no {which} image for request {request_id}", "kind": "not_found"},
                                status_code=404)
        return Response(data, media_type=guess_content_type(name), headers={"Cache-Control": "private, no-cache"})

    # --- actions ------------------------------------------------------------------------------------------------
    async def action(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        request_id, what = request.path_params["request_id"], request.path_params["action"]
        as_json = "application/json" in request.headers.get("content-type", "")
        if _cross_site(request):
            return JSONResponse({"error": "cross-site request refused", "kind": "forbidden"}, status_code=403)
        try:
            data, as_json = await _body(request)
            handler = self._actions().get(what)
            if handler is None:
                raise UnknownRequest(f"no action {what!r} (rerender, approve or reject)")
            # The service blocks (a Dagster run, the store, Redis): off the event loop.
            outcome = await run_in_threadpool(handler, request_id, data, as_json)
        except ReviewError as error:
            return self._error(request, error, as_json)
        if as_json:
            return JSONResponse(outcome, headers=NO_STORE)
        message = outcome.get("message", "")
        return RedirectResponse(self.request_url(request, request_id, message=message), status_code=303)

    def _actions(self) -> dict[str, Callable[[str, dict[str, Any], bool], dict[str, Any]]]:
        return {"rerender": self._rerender, "approve": self._approve, "reject": self._reject}

    def _expected(self, data: dict[str, Any]) -> int:
        if data.get("expected_revision") in (None, ""):
            raise BadInput("expected_revision is required: the revision the page was loaded at")
        return _int(data["expected_revision"], "expected_revision", low=1)

    def _check_revision(self, request_id: str, expected: int) -> None:
        current = int(self._details(request_id).get("revision") or 1)
        if current != expected:
            raise RevisionConflict(f"request {request_id} is at revision {current}, not {expected}: reload the "
                                   "page to see the latest result before deciding")

    def _rerender(self, request_id: str, data: dict[str, Any], as_json: bool) -> dict[str, Any]:
        expected = self._expected(data)
        if as_json:
            edits_data = data.get("edits")
            if not isinstance(edits_data, list):
                raise BadInput("edits must be a list of {block, text, font_px, color, keep_original, reset}")
            edits = [parse_edit(edit) for edit in edits_data]
        else:
            edits = _form_edits(data)
        self._details(request_id)  # 404 before any run for an unknown request
        result = self.service.rerender(request_id, edits, expected_revision=expected, by=_by(data),
                                       note=str(data.get("note") or "")[:500])
        outcome = result.to_dict()
        outcome["message"] = (f"revision {result.revision} rendered" if result.changed
                              else f"nothing changed: still revision {result.revision}")
        return outcome

    def _approve(self, request_id: str, data: dict[str, Any], as_json: bool) -> dict[str, Any]:
        if data.get("expected_revision") not in (None, ""):
            self._check_revision(request_id, self._expected(data))
        self._details(request_id)
        done = self.service.approve(request_id, by=_by(data), note=str(data.get("note") or "")[:500])
        return {**done, "message": f"approved revision {done['revision']}"}

    def _reject(self, request_id: str, data: dict[str, Any], as_json: bool) -> dict[str, Any]:
        reason = str(data.get("reason") or "").strip()
        if not reason:
            raise BadInput("a rejection needs a reason")
        if data.get("expected_revision") not in (None, ""):
            self._check_revision(request_id, self._expected(data))
        self._details(request_id)
        done = self.service.reject(request_id, reason=reason[:1000], by=_by(data))
        return {**done, "message": "rejected"}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.queue, name="review_queue"),
            Route("/requests/{request_id}", self.page, name="review_request"),
            Route("/requests/{request_id}/details", self.details, name="review_details"),
            Route("/requests/{request_id}/image/{which}", self.image, name="review_image"),
            Route("/requests/{request_id}/{action}", self.action, methods=["POST"], name="review_action"),
        ]


def review_routes(service: Any, *, prefix: str = "/review") -> list[BaseRoute]:
    """The review area's routes over ``service``, for ``Mount(prefix, routes=...)``."""
    return ReviewPages(service, prefix=prefix).routes()


def create_review_app(service: Any, monitor: Any, *, host: str = "127.0.0.1", token: str | None = None) -> Any:
    """One app: ``/metrics``, ``/health``, ``/status`` of ``monitor`` and the review area under ``/review``."""
    from starlette.routing import Mount

    from .app import create_app

    app = create_app(monitor, host=host, token=token, routes=[Mount("/review", routes=review_routes(service))],
                     links=[("/review/", "review queue (requests held by the quality gate)")])
    app.state.review_service = service
    return app


def review_server(*, host: str, port: int, token: str | None, instance: Any, settings: Any = None) -> Any:
    """A :class:`~.server.WebServer` (not started) for the configured artifact store, Redis intake and ``instance``;
    ValueError for a non-loopback ``host`` without ``token``, OSError when the port cannot be bound."""
    from ..core.settings import get_settings
    from ..intake import IntakeConfig
    from ..monitoring.monitor import Monitor
    from ..review.service import ReviewService
    from .app import check_token_rule
    from .server import WebServer

    check_token_rule(host, token)  # before connecting to anything
    settings = settings or get_settings()
    service = ReviewService(settings, instance=instance)
    intake = IntakeConfig.from_settings(settings.intake) if settings.intake.enabled else None
    monitor = Monitor.for_instance(instance, intake, store=service.store, min_quality=settings.runtime.min_quality)
    return WebServer(create_review_app(service, monitor, host=host, token=token), port=port)
