"""The one HTTP retry policy every client here uses (downloads, translation APIs, webhooks), on ``tenacity``.

What is worth another attempt is decided once: connection errors and timeouts, and the statuses in
``RETRYABLE_STATUSES`` (request timeout, rate limits, "too early", server errors); every other 4xx is final. The
wait between attempts is the server's ``Retry-After`` when it sent one (capped), else exponential backoff with full
jitter, so many clients retrying a recovering server do not hit it in lock-step.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

logger = logging.getLogger(__name__)

# 408 Request Timeout, 420 (Twitter-style "enhance your calm"), 425 Too Early, 429 Too Many Requests, 5xx.
RETRYABLE_STATUSES = frozenset({408, 420, 425, 429, *range(500, 600)})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES


class Retryable(Exception):
    """One attempt failed in a way a later attempt may not; ``retry_after`` is the server's requested wait."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a ``Retryable`` failure."""

    attempts: int = 4  # in all, the first included
    base_s: float = 0.5  # full jitter: attempt n waits uniform(0, min(max_s, base_s * 2**n))
    max_s: float = 30.0
    retry_after_max_s: float = 60.0  # a server asking for longer is obeyed only this far (see ``give_up_after``)
    give_up_on_long_retry_after: bool = False  # True: a longer Retry-After ends the retries at once instead

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.retry_after_max_s)
        return float(wait_random_exponential(multiplier=self.base_s, max=self.max_s)(_state(attempt)))

    def retrying(self, what: str, *, retry_on: tuple[type[BaseException], ...] = (Retryable,),
                 sleep: Callable[[float], object] | None = None) -> AsyncRetrying:
        """An async tenacity loop over attempts; the last failure is re-raised as is (``reraise``)."""

        def should_retry(error: BaseException) -> bool:
            if not isinstance(error, retry_on):
                return False
            retry_after = getattr(error, "retry_after", None)
            return not (self.give_up_on_long_retry_after and retry_after is not None
                        and retry_after > self.retry_after_max_s)

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.delay(state.attempt_number, getattr(error, "retry_after", None))

        def log(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            reason = getattr(error, "reason", None) or f"{type(error).__name__}: {error}"
            logger.warning("%s: %s; retry %d/%d in %.2fs", what, reason, state.attempt_number, self.attempts - 1,
                           state.next_action.sleep if state.next_action else 0.0)

        options: dict[str, object] = {}
        if sleep is not None:
            options["sleep"] = sleep
        return AsyncRetrying(stop=stop_after_attempt(max(1, self.attempts)), wait=wait,
                             retry=retry_if_exception(should_retry), before_sleep=log, reraise=True, **options)


def _state(attempt: int) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return state


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date); None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
