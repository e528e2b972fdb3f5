"""Structured logging: every line is ``event key=value ...`` and carries the request id when there is one."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import logging.handlers
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
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


# --- dated log files ------------------------------------------------------------------------------------------

_REQUEST_ID_IN_LINE = re.compile(
    r"""request_id["']?\s*[=:]\s*["']?(?P<a>[A-Za-z0-9][A-Za-z0-9._:-]{0,127})"""  # key=value and JSON lines
    r"""|\brequests?\s+(?P<b>[A-Za-z0-9][A-Za-z0-9._:-]{0,127})(?=[\s:,]+(?:succeeded|failed|needs|same|answered|:))"""
    r"""|\bof request (?P<c>[A-Za-z0-9][A-Za-z0-9._:-]{0,127})"""
    r"""|^\s*(?P<d>[A-Za-z0-9][A-Za-z0-9._:-]{0,127}): \[[a-z]+\] """)  # failure summaries: "<id>: [stage] ..."


def request_id_in(line: str) -> str | None:
    """The request id a log line names (our ``request_id=...`` fields, JSON logs, Dagster's "request X
    succeeded"/"... of request X" messages), if any."""
    match = _REQUEST_ID_IN_LINE.search(line)
    if match is None:
        return None
    return match.group("a") or match.group("b") or match.group("c") or match.group("d")


class DatedFileHandler(logging.handlers.TimedRotatingFileHandler):
    """``<directory>/<stem>_YYYYMMDD.log``: a new file every midnight (local time), as the seed services wrote
    them; ``backup_count`` days are kept (today's included), older files removed. Rotation only switches to the
    new day's file (no renaming), so a reader holding yesterday's file keeps it whole."""

    def __init__(self, directory: str | Path, stem: str, *, backup_count: int = 30,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory)
        self.stem = stem
        self.clock = clock
        self.directory.mkdir(parents=True, exist_ok=True)
        super().__init__(self.path_for(clock()), when="midnight", backupCount=backup_count, encoding="utf-8",
                         delay=True)
        self.rolloverAt = self.computeRollover(int(clock()))

    def path_for(self, when: float) -> str:
        return str(self.directory / f"{self.stem}_{time.strftime('%Y%m%d', time.localtime(when))}.log")

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        return int(self.clock()) >= self.rolloverAt

    def doRollover(self) -> None:
        if self.stream:
            self.stream.close()
            self.stream = None  # type: ignore[assignment]
        now = int(self.clock())
        self.baseFilename = os.path.abspath(self.path_for(now))
        if self.backupCount > 0:
            # Keep backup_count days, today's included.
            days = [p for p in sorted(self.directory.glob(f"{glob.escape(self.stem)}_[0-9]*.log"))
                    if os.path.abspath(p) != self.baseFilename]
            for old in days[:max(0, len(days) - (self.backupCount - 1))]:
                with contextlib.suppress(OSError):
                    old.unlink()
        self.rolloverAt = self.computeRollover(now)


def dated_line_logger(directory: str | Path, name: str, *, backup_count: int = 30,
                      clock: Callable[[], float] = time.time) -> logging.Logger:
    """A logger writing ``<ts> <name> request_id=<id or -> <line>`` lines to ``<directory>/<name>_YYYYMMDD.log``."""
    logger = logging.getLogger(f"imgtrans.dated.{name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    handler = DatedFileHandler(directory, name, backup_count=backup_count, clock=clock)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process_name)s request_id=%(request_id)s %(message)s"))
    logger.addHandler(handler)
    return logger


def log_line(logger: logging.Logger, name: str, line: str) -> None:
    """One line of a child process's output, with the request id it names (``-`` when none)."""
    logger.info(line, extra={"process_name": name, "request_id": request_id_in(line) or "-"})
