"""What the machine-translation API engines (DeepL, Papago) share: one HTTP exchange, and the retry loop around it.

The failure rules are those of the LLM engines (``llm_engines``), so every API engine behaves alike in the
pipeline: connection errors, timeouts and the statuses ``core.http`` calls retryable (429, 5xx...) are retried with
backoff, the server's ``Retry-After`` winning; a reply that fails validation is retried too; when the attempts run
out the call raises a transient ``TranslationError`` naming the last reason. Other 4xx answers (a rejected key, a
bad parameter) are permanent ``EngineError``s raised at once, with the service's own message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from ...core.errors import TranslationError
from ...core.http import Retryable, RetryPolicy, parse_retry_after

T = TypeVar("T")

USER_AGENT = "imgtrans-pipeline"


def run_sync(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run ``coro_factory()`` to completion from synchronous code, whatever the calling thread is doing."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())  # type: ignore[arg-type]
    # Called from inside an event loop (async caller): asyncio.run would refuse, so use a helper thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-translate") as pool:
        return pool.submit(asyncio.run, coro_factory()).result()  # type: ignore[arg-type]


def translate_nonblank(texts: Sequence[str], translate: Callable[[list[str]], Awaitable[list[str]]]) -> list[str]:
    """One translation per text: the blank ones stay blank, the others (stripped) go to ``translate`` in one batch,
    run to completion from synchronous code."""
    texts = list(texts)
    todo = [i for i, t in enumerate(texts) if t.strip()]
    out = ["" for _ in texts]
    if todo:
        batch = [texts[i].strip() for i in todo]
        for i, translated in zip(todo, run_sync(lambda: translate(batch)), strict=True):
            out[i] = translated
    return out


@dataclass
class Reply:
    """One HTTP answer: status, parsed JSON body (None when not JSON), raw text and the Retry-After wait."""

    status: int
    body: Any
    raw: str
    retry_after: float | None

    def snippet(self, limit: int = 300) -> str:
        return self.raw[:limit].replace("\n", " ")


async def send(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Reply:
    """One request; a connection error or timeout becomes ``Retryable``."""
    try:
        async with session.request(method, url, **kwargs) as resp:
            raw = await resp.text()
            reply_status = resp.status
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise Retryable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return Reply(reply_status, body, raw, retry_after)


class ApiTranslator:
    """Retry settings and the retry loop of an HTTP translation engine; subclasses do the calls."""

    name = "api"
    model = ""

    def __init__(self, *, timeout: float = 30.0, max_attempts: int = 4, backoff_base: float = 1.0,
                 backoff_max: float = 30.0, max_retry_after: float = 120.0) -> None:
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after

    @property
    def retry_policy(self) -> RetryPolicy:
        # A server asking for a longer wait than max_retry_after (a daily quota, say) ends the retries at once:
        # the step's own retry, much later, is the better place to try again.
        return RetryPolicy(attempts=self.max_attempts, base_s=self.backoff_base, max_s=self.backoff_max,
                           retry_after_max_s=self.max_retry_after, give_up_on_long_retry_after=True)

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                     headers={"User-Agent": USER_AGENT})

    async def with_retries(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``await attempt()`` until it succeeds, retrying ``Retryable`` and ``TranslationError`` failures."""
        label = f"{self.name} {what}"
        try:
            async for state in self.retry_policy.retrying(label, retry_on=(Retryable, TranslationError)):
                with state:
                    return await attempt()
        except Retryable as exc:
            if exc.retry_after is not None and exc.retry_after > self.max_retry_after:
                raise TranslationError(f"{label}: asked to wait {exc.retry_after:.0f}s "
                                       f"(> {self.max_retry_after:.0f}s): {exc.reason}", transient=True) from exc
            last_reason = exc.reason
        except TranslationError as exc:
            last_reason = exc.reason
        raise TranslationError(f"{label} failed after {self.max_attempts} attempts: {last_reason}", transient=True)
