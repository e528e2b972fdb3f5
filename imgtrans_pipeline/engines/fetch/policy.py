"""URL policy: which URLs the downloader may fetch (the SSRF guard).

Image URLs come from request payloads, i.e. from outside. Without a guard, a request could make the pipeline read
cloud metadata (169.254.169.254), an internal admin API on 10.x, or local files. The policy therefore:

* allows only the configured schemes (http, https, file, s3 by default);
* refuses http(s) hosts whose addresses are loopback, private, link-local, multicast, reserved, unspecified or
  otherwise not globally routable -- for IPv4, IPv6 and IPv6 forms that embed an IPv4 address (IPv4-mapped,
  6to4, Teredo, NAT64), since ``::ffff:127.0.0.1`` reaches the same socket as ``127.0.0.1``;
* refuses a host if *any* of its addresses is refused (a name with one public and one private address could be
  connected to either);
* restricts ``file://`` and bare paths to ``allowed_file_roots`` (after resolving symlinks and ``..``), and
  ``s3://`` to ``allowed_s3_buckets`` (the trust boundary of queued requests).

The check must hold for the address actually connected to, otherwise DNS rebinding (public answer at check time,
private answer at connect time) defeats it. :class:`PolicyResolver` is an aiohttp resolver that applies the policy
to the addresses it hands to the connector, so the connector only ever connects to checked addresses. IP literals
never reach a resolver in aiohttp, so :meth:`UrlPolicy.check_url` checks those itself. Redirects are followed by
the downloader one hop at a time and each hop goes through the same checks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from imgtrans_pipeline.core.errors import FetchError, URLNotAllowed

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_SCHEMES: tuple[str, ...] = ("http", "https", "file", "s3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def blocked_reason(ip: IPAddress | str) -> str | None:
    """Why ``ip`` must not be connected to, or None when it is a public (globally routable) unicast address."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 zone id ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d *is* the IPv4 address on a dual-stack socket
            inner = blocked_reason(ip.ipv4_mapped)
            return f"{inner} (IPv4-mapped {ip})" if inner else None
        embedded: ipaddress.IPv4Address | None = ip.sixtofour
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]  # the client address; the server half is public by construction
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = blocked_reason(embedded)
            if inner:
                return f"{inner} (embedded in IPv6 address {ip})"
    for flag in ("is_unspecified", "is_loopback", "is_link_local", "is_multicast", "is_private", "is_reserved"):
        if getattr(ip, flag):
            return f"{flag.removeprefix('is_').replace('_', '-')} address {ip}"
    if not ip.is_global:  # shared address space 100.64/10, documentation ranges, ...
        return f"non-global address {ip}"
    return None


def _is_ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class Target:
    """A URL that passed the static part of the policy (no DNS yet)."""

    url: str
    scheme: str  # "http" | "https" | "file" | "s3"
    host: str = ""  # http(s): lower-cased host; s3: bucket
    port: int = 0
    path: Path | None = None  # file: the resolved local path
    key: str = ""  # s3: object key


class UrlPolicy:
    """Decides whether a URL (and, for http(s), each resolved address) may be fetched.

    ``allowed_hosts`` names hosts exempt from the address check (e.g. an internal image CDN); they are matched by
    exact host name, so a redirect from an allowed host to another private host is still refused.
    """

    def __init__(
        self,
        allow_private: bool = False,
        allowed_schemes: Sequence[str] = DEFAULT_SCHEMES,
        allowed_file_roots: Iterable[Path | str] | None = None,
        allowed_hosts: Iterable[str] = (),
        allowed_s3_buckets: Iterable[str] | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.allowed_schemes = tuple(s.lower() for s in allowed_schemes)
        self.allowed_file_roots = (
            None if allowed_file_roots is None else [Path(r).expanduser().resolve() for r in allowed_file_roots]
        )
        self.allowed_hosts = frozenset(h.lower().rstrip(".") for h in allowed_hosts)
        self.allowed_s3_buckets = None if allowed_s3_buckets is None else frozenset(allowed_s3_buckets)

    # ---- static checks -------------------------------------------------------------------------------------------
    def check_url(self, url: str, *, redirect: bool = False) -> Target:
        """Check scheme, file roots and IP-literal hosts; return the parsed target. Raises :class:`URLNotAllowed`.

        ``redirect=True`` restricts the scheme to http(s): a web server must never be able to send us to a local
        file or a bucket.
        """
        if not isinstance(url, str) or not url.strip():
            raise URLNotAllowed("empty URL")
        url = url.strip()
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "" or (len(scheme) == 1 and url[1:2] == ":"):  # bare path (or a Windows drive letter)
            scheme = "file"
        allowed = ("http", "https") if redirect else self.allowed_schemes
        if scheme not in allowed:
            what = "redirect to" if redirect else "scheme"
            raise URLNotAllowed(f"{what} '{scheme}' not allowed: {url[:200]}")
        if scheme == "file":
            raw = unquote(parts.path) if parts.scheme.lower() == "file" else url
            if parts.scheme.lower() == "file" and parts.netloc not in ("", "localhost"):
                raise URLNotAllowed(f"file URL with a remote host is not allowed: {url[:200]}")
            return Target(url=url, scheme="file", path=self.check_path(Path(raw)))
        if scheme == "s3":
            if not parts.netloc:
                raise URLNotAllowed(f"s3 URL without a bucket: {url[:200]}")
            if self.allowed_s3_buckets is not None and parts.netloc not in self.allowed_s3_buckets:
                allowed = ", ".join(sorted(self.allowed_s3_buckets)) or "none"
                raise URLNotAllowed(f"s3 bucket '{parts.netloc}' is not an allowed bucket (allowed: {allowed})")
            return Target(url=url, scheme="s3", host=parts.netloc, key=unquote(parts.path.lstrip("/")))
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise URLNotAllowed(f"URL without a host: {url[:200]}")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError as exc:
            raise URLNotAllowed(f"bad port in URL: {url[:200]}") from exc
        ip = _is_ip_literal(host)
        if ip is not None:
            self.check_address(host, ip)
        return Target(url=url, scheme=scheme, host=host, port=port)

    def check_path(self, path: Path) -> Path:
        """Resolve ``path`` (symlinks, ``..``) and refuse it outside ``allowed_file_roots``."""
        resolved = path.expanduser().resolve()
        if self.allowed_file_roots is not None and not any(
            resolved == root or resolved.is_relative_to(root) for root in self.allowed_file_roots
        ):
            roots = ", ".join(map(str, self.allowed_file_roots)) or "none"
            raise URLNotAllowed(f"path {path} is outside the allowed file roots ({roots})")
        return resolved

    def host_exempt(self, host: str) -> bool:
        return self.allow_private or host.lower().rstrip(".") in self.allowed_hosts

    def check_address(self, host: str, ip: IPAddress | str) -> None:
        """Refuse ``ip`` (an address of ``host``) unless private addresses are allowed or the host is exempt."""
        if self.host_exempt(host):
            return
        reason = blocked_reason(ip)
        if reason:
            raise URLNotAllowed(f"host '{host}' resolves to a {reason}")

    # ---- DNS -----------------------------------------------------------------------------------------------------
    async def resolve_and_check(self, host: str, port: int = 0) -> list[str]:
        """Resolve ``host`` (all addresses, IPv4 and IPv6) and check every one; return the addresses.

        Useful to validate a URL up front; the downloader itself relies on :class:`PolicyResolver` so the checked
        addresses are the ones connected to.
        """
        ip = _is_ip_literal(host)
        if ip is not None:
            self.check_address(host, ip)
            return [str(ip)]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError(f"host '{host}' does not resolve: {exc}", transient=True) from exc
        addresses = sorted({str(info[4][0]) for info in infos})
        for address in addresses:
            self.check_address(host, address)
        return addresses


class PolicyResolver(AbstractResolver):
    """aiohttp resolver that refuses hosts with any non-public address, closing the DNS-rebinding window.

    aiohttp connects to exactly the addresses a resolver returns, so checking them here (rather than in a separate
    lookup before the request) means the checked address is the connected address.
    """

    def __init__(self, policy: UrlPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self.policy.check_address(host, result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()
