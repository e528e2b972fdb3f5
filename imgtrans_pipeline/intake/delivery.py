"""Result delivery: a results list for pollers, and signed webhooks for producers that gave a ``callback_url``.

Results list: every finished request is ``LPUSH``ed as one JSON object onto ``IMGTRANS_RESULTS`` (the seeds'
``hosting_tasks`` / ``OCR_RESULT_QUEUE`` role), so a downstream worker can ``BRPOP`` them in order.

Webhooks are POSTed with a compact UTF-8 JSON body and these headers::

    Content-Type: application/json
    X-Imgtrans-Timestamp: <unix seconds>
    X-Imgtrans-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>   (when a secret is set)
    X-Imgtrans-Delivery: <uuid, the same for every attempt of one delivery: dedupe on it>

How a receiver verifies (what :func:`verify_signature` does): take the raw request body bytes (before any JSON
parsing), compute ``HMAC-SHA256(secret, timestamp + "." + body)``, compare its hex digest with the header in
constant time, and reject timestamps more than a few minutes old (replay protection). Signing the timestamp
with the body is what makes the age check trustworthy.

Delivery is at-least-once within one call: up to ``attempts`` tries with exponential backoff and jitter on
connection errors, timeouts and the statuses ``core.http`` retries (408, 429, 5xx...; a ``Retry-After`` header is
honoured, capped); other statuses
(4xx, 3xx: redirects are not followed) end the delivery at once. The callback URL comes from the request, i.e.
from outside, so it passes the same SSRF guard as image downloads (:class:`UrlPolicy`, checked again at connect
time by :class:`PolicyResolver`): a refused URL is a recorded non-delivery, never an exception. Nothing here
raises for a failed delivery; the outcome says what happened, and the caller stores it in the status hash.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import redis

from ..core.errors import PipelineError, URLNotAllowed
from ..core.http import Retryable, RetryPolicy, is_retryable_status, parse_retry_after
from ..engines.fetch.downloader import redact_url
from ..engines.fetch.policy import PolicyResolver, UrlPolicy
from .config import IntakeConfig

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Imgtrans-Signature"
TIMESTAMP_HEADER = "X-Imgtrans-Timestamp"
DELIVERY_HEADER = "X-Imgtrans-Delivery"


def encode_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are sent and signed: compact JSON, UTF-8, non-ASCII kept as is."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def push_result(client: redis.Redis, settings: IntakeConfig, result: dict[str, Any]) -> None:
    """Append a finished request's result to the results list (consumers ``BRPOP`` it, oldest first)."""
    client.lpush(settings.results, encode_body(result).decode("utf-8"))


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``f"{timestamp}.{body}"``."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + data, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str | int, body: bytes | str, header: str | None, *,
                     tolerance_seconds: float | None = 300, now: float | None = None) -> bool:
    """Receiver side: True when ``header`` signs ``timestamp`` + ``body`` with ``secret`` and the timestamp is
    within ``tolerance_seconds`` of now (None skips the age check)."""
    if not header or not secret:
        return False
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    if tolerance_seconds is not None and abs((time.time() if now is None else now) - ts) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, ts, body), header.strip())


@dataclass(frozen=True)
class DeliveryOutcome:
    """What happened to one webhook delivery (stored in the status hash by the caller)."""

    delivered: bool
    attempts: int
    status: int | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Final(Exception):
    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


class WebhookSender:
    """POSTs signed JSON to callback URLs with bounded retries; synchronous API, asyncio inside."""

    def __init__(self, secret: str | None, attempts: int = 3, backoff_base: float = 0.5, timeout: float = 10,
                 url_policy: UrlPolicy | None = None, *, backoff_max: float = 30.0,
                 retry_after_max: float = 60.0) -> None:
        self.secret = secret or None
        self.attempts = max(1, attempts)
        self.backoff_base = backoff_base
        self.timeout = timeout
        self.policy = url_policy if url_policy is not None else UrlPolicy(allowed_schemes=("http", "https"))
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        if self.secret is None:
            logger.warning("webhooks are sent unsigned: set IMGTRANS_WEBHOOK_SECRET")

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.attempts, base_s=self.backoff_base, max_s=self.backoff_max,
                           retry_after_max_s=self.retry_after_max)

    def headers(self, body: bytes, delivery_id: str, timestamp: int | None = None) -> dict[str, str]:
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(ts), DELIVERY_HEADER: delivery_id,
                   "User-Agent": "imgtrans-pipeline-webhook/1"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, ts, body)
        return headers

    def send(self, url: str, payload: dict[str, Any]) -> DeliveryOutcome:
        """Deliver ``payload`` to ``url``; never raises for a failed or refused delivery.

        Usable from any thread; inside a running event loop (where ``asyncio.run`` is not allowed) it runs the
        delivery on a helper thread.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.asend(url, payload))
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="webhook") as pool:
            return pool.submit(asyncio.run, self.asend(url, payload)).result()

    async def asend(self, url: str, payload: dict[str, Any]) -> DeliveryOutcome:
        shown = redact_url(str(url))
        try:
            if urlsplit(str(url)).scheme.lower() not in ("http", "https"):
                raise URLNotAllowed(f"callback URLs must be http(s): {shown}")
            target = self.policy.check_url(str(url))
            await self.policy.resolve_and_check(target.host, target.port)
        except URLNotAllowed as exc:
            logger.warning("webhook %s refused: %s", shown, exc.reason)
            return DeliveryOutcome(False, 0, None, f"callback URL refused: {exc.reason}")
        except PipelineError as exc:  # the host does not resolve now: worth the normal retries below
            logger.info("webhook %s: %s (will try to connect anyway)", shown, exc.reason)

        body = encode_body(payload)
        delivery_id = uuid.uuid4().hex
        connector = aiohttp.TCPConnector(resolver=PolicyResolver(self.policy), limit=1)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        attempt_number = 0
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            try:
                async for attempt in self.retry_policy.retrying(f"webhook {shown}"):
                    with attempt:
                        attempt_number = attempt.retry_state.attempt_number
                        status = await self._post(session, target.url, body, delivery_id)
                        logger.info("webhook %s delivered (HTTP %d, attempt %d)", shown, status, attempt_number)
                        return DeliveryOutcome(True, attempt_number, status, None)
            except URLNotAllowed as exc:  # resolved to a refused address at connect time
                return DeliveryOutcome(False, attempt_number, None, f"callback URL refused: {exc.reason}")
            except _Final as exc:
                logger.warning("webhook %s not delivered: %s", shown, exc.reason)
                return DeliveryOutcome(False, attempt_number, exc.status, exc.reason)
            except Retryable as exc:
                reason = f"{exc.reason} (gave up after {self.attempts} attempts)"
                logger.warning("webhook %s not delivered: %s", shown, reason)
                return DeliveryOutcome(False, self.attempts, exc.status, reason)
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def _post(self, session: aiohttp.ClientSession, url: str, body: bytes, delivery_id: str) -> int:
        try:
            async with session.post(url, data=body, headers=self.headers(body, delivery_id),
                                    allow_redirects=False) as resp:
                status = resp.status
                await resp.read()
        except PipelineError:
            raise
        except TimeoutError as exc:
            raise Retryable(f"timed out after {self.timeout}s") from exc
        except (aiohttp.InvalidURL, ValueError) as exc:
            raise _Final(f"invalid callback URL: {exc}") from exc
        except aiohttp.ClientError as exc:  # refused, reset, DNS failure, ...
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            return status
        if is_retryable_status(status):
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            raise Retryable(f"HTTP {status}", status=status, retry_after=retry_after)
        raise _Final(f"HTTP {status} (not retried)", status)
