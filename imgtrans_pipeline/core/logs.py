"""Structured logging: every line is ``event key=value ...`` and carries the request id when there is one."""

from __future__ import annotations

import json
import logging
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if not text or any(c in text for c in ' ="'):
        return json.dumps(text, ensure_ascii=False)
    return text


def format_event(event: str, **fields: Any) -> str:
    parts = [event] + [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
    return " ".join(parts)


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with fields; ``request_id`` also goes into the record's ``extra`` for JSON handlers."""
    logger.log(level, format_event(event, **fields), extra={"request_id": fields.get("request_id")})


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers; selected with IMGTRANS_LOG_FORMAT=json."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            data["request_id"] = request_id
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)
