"""Sources by URL scheme behind one interface.

``Sources.check(url)`` runs once per URL (the resolve stage): the scheme must be
enabled and the URL allowed (``IMGPROXY_ALLOWED_SOURCES``); it returns a
``SourceRef``. ``await sources.fetch(ref, max_bytes)`` then downloads it. ``Sources``
owns the long-lived clients (one aiohttp session; one S3, GCS and Azure client each)
and is opened and closed by the app's cleanup context; a failed start-up closes
whatever was opened.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import SplitResult, urlsplit

from ..errors import InvalidSource
from .allowlist import AllowList
from .base import Body, Fetched, Relayed, Source, SourceMeta, Unchanged, check_size
from .download import download, pump
from .http import HttpSource
from .stream import SourceStream

__all__ = ["AllowList", "Body", "Fetched", "Relayed", "Source", "SourceMeta", "SourceRef",
           "SourceStream", "Sources", "Unchanged", "check_size", "content_etag", "download",
           "origin_of", "pump", "scheme_of"]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def scheme_of(url: str) -> str:
    """The lower-cased scheme of ``url`` ("" when none); never raises, unlike urlsplit."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else ""


def content_etag(data: bytes) -> str:
    """A strong validator from the bytes, for sources whose origin gives none."""
    return f'"b2-{hashlib.blake2b(data, digest_size=16).hexdigest()}"'


def origin_of(scheme: str, parts: SplitResult) -> str:
    """Who serves a source, for per-origin limits: ``http:<host>`` for either HTTP scheme
    (any port), ``s3:<bucket>``; the host as written, lower-cased. "" for ``local:///``:
    the disk is no remote origin that can stall."""
    if scheme == "local":
        return ""
    family = "http" if scheme == "https" else scheme
    return f"{family}:{(parts.hostname or '').rstrip('.')}"


@dataclasses.dataclass(frozen=True)
class SourceRef:
    """A source URL that passed ``Sources.check``: its scheme is on and it is allowed.
    ``origin``: who serves it (``origin_of``; "" for none)."""

    url: str
    scheme: str
    origin: str = ""


class Sources:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.allowed = AllowList.from_patterns(settings.allowed_sources)
        self.schemes = {"http", "https"}
        if settings.local_root:
            self.schemes.add("local")
        if settings.use_s3:
            self.schemes.add("s3")
        if settings.use_gcs:
            self.schemes.add("gs")
        if settings.use_abs:
            self.schemes.add("abs")
        self.by_scheme: dict[str, Source] = {}
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Sources:
        s = self.settings
        try:
            if s.local_root:
                from .local import LocalSource
                self.by_scheme["local"] = LocalSource(s.local_root,
                                                      s.source_url_query_separator)
            http = await self._stack.enter_async_context(HttpSource(s, self.allowed))
            self.by_scheme["http"] = self.by_scheme["https"] = http
            if s.use_s3:
                from .s3 import S3Source  # imports aiobotocore only when S3 is on
                self.by_scheme["s3"] = await self._stack.enter_async_context(S3Source(s))
            if s.use_gcs:
                from .gcs import GcsSource  # the vipsgate[gcs] extra
                self.by_scheme["gs"] = await self._stack.enter_async_context(GcsSource(s))
            if s.use_abs:
                from .azure import AzureSource  # the vipsgate[azure] extra
                self.by_scheme["abs"] = await self._stack.enter_async_context(AzureSource(s))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        self.by_scheme.clear()

    def check(self, url: str) -> SourceRef:
        """``url`` as a ``SourceRef``, or ``InvalidSource`` (404) when it is malformed,
        its scheme is off, or it is not allowed."""
        scheme = scheme_of(url)
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise InvalidSource(f"Invalid source URL: {exc}") from None
        if scheme not in self.schemes:
            raise InvalidSource(f"Unknown or disabled source scheme: {scheme or url[:20]}")
        if self.allowed is not None and not self.allowed.allows(url):
            raise InvalidSource(f"Source URL is not allowed: {url[:500]}")
        return SourceRef(url, scheme, origin_of(scheme, parts))

    async def open(self, ref: SourceRef, max_bytes: int) -> Body:
        """The source's response, its body unread (see ``download.pump``)."""
        source = self.by_scheme.get(ref.scheme)
        if source is None:
            raise InvalidSource(f"Source scheme {ref.scheme} is not open")
        return await source.open(ref.url, max_bytes)

    async def fetch(self, ref: SourceRef, max_bytes: int) -> Fetched:
        """The whole source, at most ``max_bytes`` (0: no limit)."""
        return await self._whole(await self.open(ref, max_bytes), ref, max_bytes)

    async def fetch_if_changed(self, ref: SourceRef, max_bytes: int,
                               conditions: Mapping[str, str]) -> Fetched | Unchanged:
        """``fetch`` with the client's validators forwarded where the scheme can (HTTP, S3):
        ``Unchanged`` when the origin says the client's copy is current."""
        source = self.by_scheme.get(ref.scheme)
        conditional = getattr(source, "open_if_changed", None)
        if conditional is None:
            return await self.fetch(ref, max_bytes)
        opened = await conditional(ref.url, max_bytes, conditions)
        if isinstance(opened, Unchanged):
            return opened
        return await self._whole(opened, ref, max_bytes)

    async def relay(self, ref: SourceRef, headers: Mapping[str, str], max_bytes: int
                    ) -> Relayed:
        """``raw``: the origin's response to the client's forwarded ``headers`` (HTTP), or
        the whole file with its validators (other schemes, which ignore the headers)."""
        source = self.by_scheme.get(ref.scheme)
        relay = getattr(source, "relay", None)
        if relay is not None:
            return await relay(ref.url, headers, max_bytes)
        fetched = await self.fetch(ref, max_bytes)
        meta = fetched.meta
        given = {"ETag": meta.etag, "Last-Modified": meta.last_modified,
                 "Content-Type": meta.content_type}
        return Relayed(200, {k: v for k, v in given.items() if v}, fetched.data)

    @staticmethod
    async def _whole(body: Body, ref: SourceRef, max_bytes: int) -> Fetched:
        stream = SourceStream(body.meta)
        await pump(body, stream, max_bytes, ref.url)
        return Fetched(await stream.data(), stream.meta)
