"""Download image bytes from http(s), local files and S3, with limits, retries and the URL policy.

Why it looks like this:

* Retries belong here, close to the network: a 503 or a reset connection usually succeeds a second later, and
  retrying one URL is much cheaper than re-running a whole pipeline step. Exponential backoff with *full jitter*
  spreads retries of many images so they don't hit a recovering server in lock-step; ``Retry-After`` from a 429/503
  is honoured (capped, so one header can't park a worker for an hour).
* Errors are classified once: 4xx (except 408/420/425/429), refused URLs, oversized bodies and missing files are
  permanent (retrying cannot help); timeouts, connection errors and 5xx are transient, and after the last retry are
  raised as ``FetchError(transient=True)`` so the orchestrator may try the request again later.
* Size limits are enforced while streaming (and up front from Content-Length) so a huge or endless body never sits
  in memory; decoded size is what is counted, which also caps gzip bombs.
* Redirects are followed by hand, one hop at a time, so every hop goes through the URL policy (a public server
  must not be able to bounce us to 169.254.169.254 or to ``file:///etc/passwd``).
* ``fetch_images`` overlaps network I/O with decoding: each download hands its bytes to a thread pool for
  normalisation while other downloads continue (Pillow releases the GIL while decoding and encoding).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from yarl import URL

from imgtrans_pipeline.core.errors import FetchError, ImageError, PipelineError
from imgtrans_pipeline.core.http import Retryable, RetryPolicy, is_retryable_status, parse_retry_after
from imgtrans_pipeline.core.types import SourceImage
from imgtrans_pipeline.engines.fetch.normalize import DEFAULT_MAX_PIXELS, normalize_image
from imgtrans_pipeline.engines.fetch.policy import PolicyResolver, Target, UrlPolicy

logger = logging.getLogger(__name__)

T = TypeVar("T")

REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass
class FetchSettings:
    """Limits and behaviour of the downloader. Defaults suit production; tests shrink the delays."""

    concurrency: int = 8  # simultaneous downloads per fetch_many / fetch_images call
    connect_timeout: float = 10.0  # seconds to establish a TCP (+TLS) connection
    total_timeout: float = 60.0  # seconds for one attempt, connect + headers + body
    max_bytes: int = 30 * 1024 * 1024  # larger bodies are refused (permanent)
    max_pixels: int = DEFAULT_MAX_PIXELS  # decompression-bomb guard for normalisation
    retries: int = 4  # retries after the first attempt for transient failures (so up to 5 attempts)
    backoff_base: float = 0.5  # seconds; attempt n waits uniform(0, min(backoff_max, base * 2**n))
    backoff_max: float = 20.0
    retry_after_max: float = 60.0  # cap on a server's Retry-After
    max_redirects: int = 5
    allow_private: bool = False  # allow loopback/private/link-local targets (trusted deployments, tests)
    allowed_file_roots: Sequence[Path | str] | None = None  # file:// and bare paths only below these; None = any
    allowed_hosts: Sequence[str] = ()  # host names exempt from the private-address check (internal CDN)
    allowed_s3_buckets: Sequence[str] | None = None  # s3:// only from these buckets; None = any
    s3_endpoint_url: str | None = None  # e.g. a MinIO endpoint; None = AWS
    s3_region: str | None = None
    s3_access_key_id: str | None = None  # None = boto3's credential chain (env, config files, instance role)
    s3_secret_access_key: str | None = None
    s3_session_token: str | None = None
    user_agent: str = "imgtrans-pipeline"
    normalize_workers: int | None = None  # threads decoding images in fetch_images; None = min(4, CPUs)


def redact_url(url: str) -> str:
    """The URL without query string, fragment and credentials: safe for logs and error reasons.

    Pre-signed URLs carry their signature in the query; user:password may sit in the netloc.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url[:200]
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))[:300]


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    error: list[BaseException] = []

    def runner() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=runner, name="imgtrans-fetch", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class Downloader:
    """Fetches image bytes (http, https, file, s3) under a :class:`UrlPolicy`, with retries and size limits."""

    def __init__(self, settings: FetchSettings | None = None) -> None:
        self.settings = settings or FetchSettings()
        self.policy = UrlPolicy(
            allow_private=self.settings.allow_private,
            allowed_file_roots=self.settings.allowed_file_roots,
            allowed_hosts=self.settings.allowed_hosts,
            allowed_s3_buckets=self.settings.allowed_s3_buckets,
        )
        self._s3_client: Any = None
        self._s3_lock = threading.Lock()

    # ---- public API ----------------------------------------------------------------------------------------------
    async def fetch(self, url: str, *, session: aiohttp.ClientSession | None = None) -> bytes:
        """Bytes at ``url``; raises :class:`FetchError` / :class:`URLNotAllowed` (``transient`` says if retryable).

        A ``session`` passed in must come from :meth:`session`: its resolver is what enforces the URL policy for
        host names.
        """
        return await self._fetch(url, session, None)

    async def fetch_many(self, urls: Iterable[str]) -> list[bytes | PipelineError]:
        """Fetch all ``urls`` concurrently (at most ``concurrency`` at once) over one HTTP session.

        Same order as ``urls``; a failed URL yields its error in place, without affecting the others.
        """
        urls = list(urls)
        limiter = asyncio.Semaphore(max(1, self.settings.concurrency))
        async with self.session() as session:
            return list(await asyncio.gather(*(self._fetch_safe(u, session, limiter) for u in urls)))

    async def fetch_images_async(self, urls: Iterable[str]) -> list[SourceImage | PipelineError]:
        """Fetch and normalise ``urls``; decoding runs in a thread pool while other downloads proceed."""
        urls = list(urls)
        loop = asyncio.get_running_loop()
        limiter = asyncio.Semaphore(max(1, self.settings.concurrency))
        workers = self.settings.normalize_workers or min(4, os.cpu_count() or 1)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imgtrans-normalize") as pool:

            async def one(url: str, session: aiohttp.ClientSession) -> SourceImage | PipelineError:
                data = await self._fetch_safe(url, session, limiter)
                if isinstance(data, PipelineError):
                    return data
                job = partial(normalize_image, data, max_pixels=self.settings.max_pixels, source=redact_url(url))
                try:
                    return await loop.run_in_executor(pool, job)
                except PipelineError as exc:
                    return exc
                except Exception as exc:  # a Pillow bug on hostile input must not take down the batch
                    logger.exception("normalising %s failed unexpectedly", redact_url(url))
                    return ImageError(f"could not normalise image from {redact_url(url)}: {exc!r}")

            async with self.session() as session:
                return list(await asyncio.gather(*(one(u, session) for u in urls)))

    def fetch_images(self, urls: Iterable[str]) -> list[SourceImage | PipelineError]:
        """Sync wrapper of :meth:`fetch_images_async` (works inside or outside a running event loop)."""
        return _run_sync(self.fetch_images_async(list(urls)))

    def fetch_image(self, url: str) -> SourceImage:
        """One image, fetched and normalised; raises the :class:`PipelineError` instead of returning it."""
        result = self.fetch_images([url])[0]
        if isinstance(result, PipelineError):
            raise result
        return result

    def session(self) -> aiohttp.ClientSession:
        """A client session whose connector resolves through the URL policy (must run inside an event loop).

        ``trust_env=False``: an HTTP(S)_PROXY from the environment would connect to the proxy instead of the
        checked address, bypassing the policy.
        """
        s = self.settings
        connector = aiohttp.TCPConnector(limit=max(1, s.concurrency), resolver=PolicyResolver(self.policy))
        timeout = aiohttp.ClientTimeout(total=s.total_timeout, sock_connect=s.connect_timeout)
        return aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers={"User-Agent": s.user_agent}, trust_env=False
        )

    # ---- dispatch and retries ------------------------------------------------------------------------------------
    async def _fetch_safe(
        self, url: str, session: aiohttp.ClientSession, limiter: asyncio.Semaphore | None
    ) -> bytes | PipelineError:
        try:
            return await self._fetch(url, session, limiter)
        except PipelineError as exc:
            logger.info("fetch failed (%s): %s", "transient" if exc.transient else "permanent", exc.reason)
            return exc
        except Exception as exc:
            logger.exception("unexpected error fetching %s", redact_url(str(url)))
            return FetchError(f"unexpected error fetching {redact_url(str(url))}: {exc!r}")

    async def _fetch(
        self, url: str, session: aiohttp.ClientSession | None, limiter: asyncio.Semaphore | None
    ) -> bytes:
        target = self.policy.check_url(url)
        if target.scheme == "file":
            return await self._limited(limiter, lambda: asyncio.to_thread(self._read_file, target))
        if target.scheme == "s3":
            return await self._with_retries(target, limiter, lambda: asyncio.to_thread(self._get_s3_object, target))
        if session is None:
            async with self.session() as own:
                return await self._with_retries(target, limiter, lambda: self._get_http(own, target))
        return await self._with_retries(target, limiter, lambda: self._get_http(session, target))

    @staticmethod
    async def _limited(limiter: asyncio.Semaphore | None, attempt: Callable[[], Awaitable[T]]) -> T:
        if limiter is None:
            return await attempt()
        async with limiter:
            return await attempt()

    @property
    def retry_policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(attempts=s.retries + 1, base_s=s.backoff_base, max_s=s.backoff_max,
                           retry_after_max_s=s.retry_after_max)

    async def _with_retries(
        self, target: Target, limiter: asyncio.Semaphore | None, attempt_fn: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """Run ``attempt_fn`` until it succeeds, raises a PipelineError, or transient failures use up the retries.

        The concurrency slot is held per attempt, not during backoff, so a URL waiting out a Retry-After does not
        block others.
        """
        policy = self.retry_policy
        try:
            async for attempt in policy.retrying(f"fetch {redact_url(target.url)}"):
                with attempt:
                    return await self._limited(limiter, attempt_fn)
        except Retryable as last:
            raise FetchError(f"{redact_url(target.url)}: {last.reason} (gave up after {policy.attempts} attempts)",
                             transient=True) from last
        raise AssertionError("unreachable: the retry loop returns or raises")

    # ---- http(s) -------------------------------------------------------------------------------------------------
    async def _get_http(self, session: aiohttp.ClientSession, target: Target) -> bytes:
        """One attempt: follow redirects hop by hop (each re-checked by the policy), then stream the body."""
        url = target.url
        for _hop in range(self.settings.max_redirects + 1):
            shown = redact_url(url)
            try:
                async with session.get(url, allow_redirects=False) as resp:
                    status = resp.status
                    if status in REDIRECT_STATUS:
                        location = resp.headers.get("Location")
                        if not location:
                            raise FetchError(f"HTTP {status} without Location from {shown}")
                        url = str(resp.url.join(URL(location)))
                        self.policy.check_url(url, redirect=True)
                        logger.debug("redirect %s -> %s", shown, redact_url(url))
                        continue
                    if 200 <= status < 300:
                        return await self._read_body(resp, shown)
                    if is_retryable_status(status):
                        raise Retryable(f"HTTP {status} {resp.reason or ''}".strip() + f" from {shown}",
                                        status=status, retry_after=parse_retry_after(resp.headers.get("Retry-After")))
                    raise FetchError(f"HTTP {status} {resp.reason or ''}".strip() + f" from {shown}")
            except (PipelineError, Retryable):
                raise
            except TimeoutError as exc:
                raise Retryable(f"timed out fetching {shown}") from exc
            except aiohttp.ClientConnectorCertificateError as exc:
                raise FetchError(f"TLS certificate rejected for {shown}: {exc.certificate_error}") from exc
            except (aiohttp.InvalidURL, ValueError) as exc:
                raise FetchError(f"invalid URL {shown}: {exc}") from exc
            except aiohttp.ClientError as exc:  # connection refused/reset, DNS failure, payload cut short, ...
                raise Retryable(f"{type(exc).__name__} fetching {shown}: {exc}") from exc
        raise FetchError(f"too many redirects (more than {self.settings.max_redirects}) from {redact_url(target.url)}")

    async def _read_body(self, resp: aiohttp.ClientResponse, shown: str) -> bytes:
        limit = self.settings.max_bytes
        declared = resp.content_length
        if declared is not None and declared > limit:
            raise FetchError(f"response too large: Content-Length {declared:,} > limit {limit:,} bytes ({shown})")
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            buf += chunk
            if len(buf) > limit:
                raise FetchError(f"response too large: more than {limit:,} bytes streamed ({shown})")
        return bytes(buf)

    # ---- local files ---------------------------------------------------------------------------------------------
    def _read_file(self, target: Target) -> bytes:
        path = target.path
        assert path is not None
        limit = self.settings.max_bytes
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):
                raise FetchError(f"not a regular file: {path}")
            if st.st_size > limit:
                raise FetchError(f"file too large: {st.st_size:,} > limit {limit:,} bytes ({path})")
            with path.open("rb") as fh:
                data = fh.read(limit + 1)
        except FileNotFoundError as exc:
            raise FetchError(f"file not found: {path}") from exc
        except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except OSError as exc:  # EIO, a network mount gone away: may come back
            raise FetchError(f"error reading {path}: {exc}", transient=True) from exc
        if len(data) > limit:
            raise FetchError(f"file too large: more than {limit:,} bytes ({path})")
        return data

    # ---- s3 ------------------------------------------------------------------------------------------------------
    def _s3(self) -> Any:
        """One boto3 client per downloader (clients are thread-safe; creating them is not, hence the lock)."""
        with self._s3_lock:
            if self._s3_client is None:
                import boto3
                from botocore.config import Config

                s = self.settings
                session = boto3.session.Session(
                    aws_access_key_id=s.s3_access_key_id,
                    aws_secret_access_key=s.s3_secret_access_key,
                    aws_session_token=s.s3_session_token,
                    region_name=s.s3_region,
                )
                config = Config(
                    connect_timeout=s.connect_timeout,
                    read_timeout=s.total_timeout,
                    retries={"max_attempts": 1, "mode": "standard"},  # our own loop retries, with our backoff
                    max_pool_connections=max(10, s.concurrency),
                )
                self._s3_client = session.client("s3", endpoint_url=s.s3_endpoint_url, config=config)
            return self._s3_client

    def _get_s3_object(self, target: Target) -> bytes:
        from botocore import exceptions as bx

        bucket, key = target.host, target.key
        shown = f"s3://{bucket}/{key}"
        if not key:
            raise FetchError(f"s3 URL without an object key: {shown}")
        limit = self.settings.max_bytes
        try:
            resp = self._s3().get_object(Bucket=bucket, Key=key)
            size = resp.get("ContentLength")
            body = resp["Body"]
            try:
                if size is not None and size > limit:
                    raise FetchError(f"object too large: {size:,} > limit {limit:,} bytes ({shown})")
                data = body.read(limit + 1)
            finally:
                body.close()
        except bx.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            reason = f"S3 {code or status} for {shown}: {error.get('Message', '')}".rstrip(": ")
            if is_retryable_status(status) or code in ("SlowDown", "RequestTimeout", "InternalError",
                                                      "ServiceUnavailable", "Throttling", "ThrottlingException"):
                raise Retryable(reason, status=status) from exc
            raise FetchError(reason) from exc  # NoSuchKey, NoSuchBucket, AccessDenied, InvalidBucketName ...
        except (bx.NoCredentialsError, bx.PartialCredentialsError, bx.ParamValidationError) as exc:
            raise FetchError(f"S3 request for {shown} cannot succeed: {exc}") from exc
        except (bx.ConnectionError, bx.HTTPClientError, bx.ResponseStreamingError, bx.IncompleteReadError) as exc:
            raise Retryable(f"{type(exc).__name__} fetching {shown}: {exc}") from exc
        if len(data) > limit:
            raise FetchError(f"object too large: more than {limit:,} bytes ({shown})")
        return data

    def close(self) -> None:
        """Release the S3 client's connection pool (HTTP sessions are per call and already closed)."""
        with self._s3_lock, contextlib.suppress(Exception):
            if self._s3_client is not None:
                self._s3_client.close()
            self._s3_client = None
