"""The queue message contract: raw text in, a validated ``TranslationRequest`` or a reason out.

``core.request.parse_request`` is the validator of record. The queue adds exactly one rule: ``request_id`` is
required. ``parse_request`` invents a random id when it is missing, which is right for the CLI but wrong for a
queue: a message that is redelivered (after a crash, from the pending list) would get a new id on every read,
so the sensor could never recognise it and would launch it again and again; and the producer could never look
up its status. ``schema/request.schema.json`` describes the same contract for producers.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from ..core.errors import InvalidRequest
from ..core.request import TranslationRequest, parse_request

SCHEMA_RESOURCE = ("schema", "request.schema.json")


def parse_message(raw: str | bytes) -> TranslationRequest:
    """Validate one queue message. Raises :class:`InvalidRequest` (never anything else) with the reason."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest("request", f"message is not UTF-8 text: {exc}") from exc
    try:
        data: Any = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("request", f"message is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("request", f"must be a JSON object, not {type(data).__name__}")
    if data.get("request_id") in (None, ""):
        raise InvalidRequest("request_id", "is required in queue messages")
    try:
        return parse_request(data)
    except InvalidRequest:
        raise
    except (TypeError, ValueError) as exc:  # urlsplit raises ValueError on e.g. "http://[::1"
        raise InvalidRequest("request", f"malformed value: {exc}") from exc


def request_id_of(raw: str) -> str | None:
    """Best-effort request id of a raw message (valid or not), for dead letters and logs."""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return None
    value = data.get("request_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


@cache
def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a queue message, shipped as package data."""
    text = resources.files(__package__).joinpath(*SCHEMA_RESOURCE).read_text(encoding="utf-8")
    return json.loads(text)
