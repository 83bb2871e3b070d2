"""``http://`` and ``https://`` sources: one shared aiohttp session, SSRF-guarded.

Every connection goes through two checks on the address actually dialled: the
resolver drops refused addresses (so the connector only ever sees checked IPs, no
DNS-rebinding gap) and the socket factory refuses any address it is asked to dial
that the policy forbids (literal IPs skip the resolver). Redirects are followed
here, hop by hop, each hop checked against ``IMGPROXY_ALLOWED_SOURCES`` and the
address policy before it is requested.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from .. import __version__, trace_context
from ..errors import (
    InvalidSource,
    ProxyError,
    SourceIncomplete,
    SourceNotFound,
    SourceTimeout,
    SourceTooLarge,
    SourceUnreachable,
)
from .allowlist import AllowList, http_url
from .base import CHUNK, Relayed, SourceMeta, Unchanged, read_limited
from .netguard import AddressPolicy, parse

log = logging.getLogger("vipsgate.sources")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CONTENT_RANGE = re.compile(r"bytes 0-(\d+)/(\d+|\*)")


class BlockedAddress(OSError):
    """A source resolved to, or tried to dial, an address the policy refuses."""


class UnusableHost(OSError):
    """A host name the resolver cannot even encode (IDNA: empty or over-long label)."""


class GuardedResolver(AbstractResolver):
    """Resolve with ``inner`` and keep only the addresses ``policy`` permits."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver) -> None:
        self.policy = policy
        self.inner = inner

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        try:
            results = await self.inner.resolve(host, port, family)
        except UnicodeError as exc:
            raise UnusableHost(f"Invalid host name {host[:100]!r}: {exc}") from None
        allowed = [r for r in results if self.policy.permits(r["host"])]
        if not allowed:
            refused = ", ".join(sorted({r["host"] for r in results}))
            raise BlockedAddress(f"{host} resolves only to refused addresses: {refused}")
        return allowed

    async def close(self) -> None:
        await self.inner.close()


def guarded_socket_factory(policy: AddressPolicy) -> Any:
    """An aiohappyeyeballs socket factory that refuses to dial forbidden addresses."""
    def factory(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if not policy.permits(sockaddr[0]):
            raise BlockedAddress(f"Refused to connect to {sockaddr[0]}")
        return socket.socket(family=family, type=type_, proto=proto)
    return factory


def status_error(status: int, url: str) -> ProxyError | None:
    """The error for an origin's final status, as imgproxy 3.31+: 404/410 -> 404, every
    other 4xx as is, anything else 502."""
    if status == 200:
        return None
    if status in (404, 410):
        return SourceNotFound(f"Origin answered {status} for {url}")
    if 400 <= status < 500:
        return SourceUnreachable(f"Origin answered {status} for {url}", status=status)
    return SourceUnreachable(f"Origin answered {status} for {url}")


def whole_range(response: aiohttp.ClientResponse) -> bool:
    """A 206 that holds the whole file (``Content-Range: bytes 0-(N-1)/N``), which
    imgproxy accepts as a 200."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
    if match is None:
        return False
    total = response.content_length if match.group(2) == "*" else int(match.group(2))
    return total is not None and int(match.group(1)) == total - 1


def _refusal(exc: BaseException) -> BlockedAddress | UnusableHost | None:
    """The ``BlockedAddress``/``UnusableHost`` behind an aiohttp connection error, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, aiohttp.ClientConnectorError):
            seen = seen.os_error
        if isinstance(seen, BlockedAddress | UnusableHost):
            return seen
        seen = seen.__cause__
    return None


class HttpSource:
    """Fetch ``http(s)://`` sources; an async context manager owning the session."""

    def __init__(self, settings: Any, allowed: AllowList | None = None) -> None:
        self.settings = settings
        self.allowed = allowed
        self.policy = AddressPolicy.from_settings(settings)
        self.timeout = settings.download_timeout
        self.max_redirects = settings.max_redirects
        self.user_agent = settings.user_agent.replace("%current_version", __version__)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpSource:
        total, per_host = self.settings.origin_connections  # one slow origin cannot take all
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.policy, DefaultResolver()),
            socket_factory=guarded_socket_factory(self.policy), limit=total,
            limit_per_host=per_host, ttl_dns_cache=10,
            keepalive_timeout=self.settings.client_keep_alive_timeout or None,
            force_close=not self.settings.client_keep_alive_timeout)
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout,
                                          sock_read=self.timeout),
            headers={"User-Agent": self.user_agent, "Accept-Encoding": "identity"},
            cookie_jar=aiohttp.DummyCookieJar(),  # never carry cookies between origins
            trust_env=False)  # an HTTP proxy would hide the origin's address from the guard
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def open(self, url: str, max_bytes: int) -> HttpBody:
        """The response to ``url`` after redirects, its body unread; the download
        (headers and body) must end within ``IMGPROXY_DOWNLOAD_TIMEOUT``."""
        deadline, response = await self._start(url)
        return self._body(response, max_bytes, deadline)

    async def open_if_changed(self, url: str, max_bytes: int,
                              conditions: Mapping[str, str]) -> HttpBody | Unchanged:
        """``open`` with the client's validators forwarded (``If-None-Match``,
        ``If-Modified-Since``): ``Unchanged`` when the origin answers 304."""
        deadline, response = await self._start(url, conditions, not_modified=True)
        if response.status == 304:
            response.release()
            h = response.headers
            return Unchanged(SourceMeta(etag=h.get("ETag"), last_modified=h.get("Last-Modified"),
                                        cache_control=h.get("Cache-Control"),
                                        expires=h.get("Expires")))
        return self._body(response, max_bytes, deadline)

    async def relay(self, url: str, headers: Mapping[str, str], max_bytes: int) -> Relayed:
        """``raw``: the origin's final response to a request carrying ``headers`` (the
        client's ``Range``, validators, ``Accept-Encoding``), whatever its status, its
        body as sent (never decompressed) and within ``max_bytes``."""
        deadline, response = await self._start(url, headers, relay=True)
        body = HttpBody(response, SourceMeta(size=response.content_length), deadline)
        try:
            data = b""
            if response.status < 300:
                if max_bytes and (response.content_length or 0) > max_bytes:
                    raise SourceTooLarge(f"Source declares {response.content_length} bytes, "
                                         f"limit is {max_bytes}")
                async with asyncio.timeout_at(deadline):
                    data = await read_limited(body.chunks(), max_bytes)
        except TimeoutError:
            raise SourceTimeout(f"Downloading {url} took longer than {self.timeout}s") from None
        finally:
            await body.close()
        return Relayed(response.status, response.headers, data)

    async def _start(self, url: str, headers: Mapping[str, str] | None = None, *,
                     not_modified: bool = False, relay: bool = False
                     ) -> tuple[float, aiohttp.ClientResponse]:
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._open(url, headers, not_modified, relay)
        except TimeoutError:
            raise SourceTimeout(f"Downloading {url} took longer than {self.timeout}s") from None
        return deadline, response

    def _body(self, response: aiohttp.ClientResponse, max_bytes: int,
              deadline: float) -> HttpBody:
        declared = response.content_length
        if max_bytes and declared is not None and declared > max_bytes:
            response.close()  # never read a body that is declared too large
            raise SourceTooLarge(f"Source declares {declared} bytes, limit is {max_bytes}")
        h = response.headers
        meta = SourceMeta(etag=h.get("ETag"), last_modified=h.get("Last-Modified"),
                          content_type=h.get("Content-Type"),
                          cache_control=h.get("Cache-Control"), expires=h.get("Expires"),
                          size=declared)
        return HttpBody(response, meta, deadline)

    def check_target(self, target: URL, allow_list: bool = True) -> None:
        """Refuse a hop before dialling: scheme, host, allow-list, literal IP. The first
        hop's allow-list check was made when the URL was resolved (``Sources.check``)."""
        http_url(target)
        if allow_list and self.allowed is not None and not self.allowed.allows(target):
            raise InvalidSource(f"Not an allowed source: {target}")
        assert target.host is not None
        try:
            address = parse(target.host)
        except ValueError:
            return  # a name: the guarded resolver checks what it resolves to
        if not self.policy.permits(address):
            raise self._refused(f"Refused source address {address} ({target})")

    @staticmethod
    def _refused(reason: str) -> InvalidSource:
        log.warning("SSRF guard: %s", reason)
        return InvalidSource(reason)

    async def _open(self, url: str, headers: Mapping[str, str] | None = None,
                    not_modified: bool = False, relay: bool = False) -> aiohttp.ClientResponse:
        """The final response after redirects: a 200 (or a 206 of the whole file), a 304
        when ``not_modified`` is allowed, any status when ``relay``ing."""
        assert self.session is not None
        target = http_url(url)
        for hop in range(self.max_redirects + 1):
            self.check_target(target, allow_list=hop > 0)
            response = await self._request(target, headers, decompress=not relay)
            location = response.headers.get("Location")
            if response.status in REDIRECT_STATUSES and location:
                response.release()
                try:
                    target = target.join(URL(location))
                except ValueError:
                    raise SourceUnreachable(f"Bad redirect from {target}") from None
                continue
            if relay or (response.status == 304 and not_modified) or (
                    response.status == 206 and whole_range(response)):
                return response
            error = status_error(response.status, str(target))
            if error is not None:
                response.release()
                raise error
            return response
        raise SourceUnreachable(f"More than {self.max_redirects} redirects for {url}",
                                status=404)

    async def _request(self, target: URL, headers: Mapping[str, str] | None = None,
                       decompress: bool = True) -> aiohttp.ClientResponse:
        assert self.session is not None
        trace = trace_context.outgoing()  # the request's trace context (W3C traceparent)
        if trace:
            headers = {**trace, **(headers or {})}
        try:
            return await self.session.get(target, headers=headers, allow_redirects=False,
                                          auto_decompress=decompress)
        except TimeoutError:
            raise
        except aiohttp.InvalidURL as exc:
            raise InvalidSource(f"Invalid source URL {target}: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            refusal = _refusal(exc)
            if isinstance(refusal, BlockedAddress):
                raise self._refused(str(refusal)) from None
            if refusal is not None:
                raise InvalidSource(str(refusal)) from None
            raise SourceUnreachable(f"Cannot reach {target}: {exc!r}") from None


class HttpBody:
    """An origin's response body, read in chunks; a cut or reset body is
    ``SourceIncomplete`` (the connection is then closed, never reused)."""

    def __init__(self, response: aiohttp.ClientResponse, meta: SourceMeta,
                 deadline: float) -> None:
        self.response, self.meta, self.deadline = response, meta, deadline

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self.response.content
        while True:
            try:
                chunk = await content.read(CHUNK)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                if isinstance(exc, TimeoutError):
                    raise
                self.response.close()
                raise SourceIncomplete(f"Body of {self.response.url} was cut short: "
                                       f"{exc!r}") from None
            if not chunk:
                return
            yield chunk

    async def close(self) -> None:
        """Release the connection: back to the pool when the body was read to its end,
        closed otherwise (the rest of the body is never read)."""
        if self.response.content.at_eof():
            self.response.release()
        else:
            self.response.close()
