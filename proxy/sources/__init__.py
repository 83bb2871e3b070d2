"""Sources by URL scheme behind one interface: ``await sources.fetch(url)``.

``Sources`` owns the long-lived clients (one aiohttp session, one S3 client)
and is opened/closed by the app's cleanup context. A failed start-up closes
whatever was already opened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
from contextlib import AsyncExitStack
from urllib.parse import urlsplit

from ..errors import InvalidSource, SourceTooLarge
from .allowlist import AllowList
from .base import Fetched, Source, SourceMeta
from .http import HttpSource

__all__ = ["AllowList", "Fetched", "Source", "SourceMeta", "Sources", "content_etag",
           "scheme_of"]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def scheme_of(url: str) -> str:
    """The lower-cased scheme of ``url`` ("" when none); never raises, unlike urlsplit."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else ""


def content_etag(data: bytes) -> str:
    """A strong validator from the bytes, for sources whose origin gives none."""
    return f'"b2-{hashlib.blake2b(data, digest_size=16).hexdigest()}"'


class Sources:
    def __init__(self, settings) -> None:
        self.settings = settings
        self.by_scheme: dict[str, Source] = {}
        self.allowed = AllowList.from_patterns(settings.allowed_sources)
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Sources:
        s = self.settings
        if s.local_root:
            from .local import LocalSource
            self.by_scheme["local"] = LocalSource(s.local_root)
        try:
            http = await self._stack.enter_async_context(HttpSource(s, self.allowed))
            self.by_scheme["http"] = self.by_scheme["https"] = http
            if s.use_s3:
                from .s3 import S3Source  # imports aiobotocore only when S3 is on
                self.by_scheme["s3"] = await self._stack.enter_async_context(S3Source(s))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def check(self, url: str) -> Source:
        """The source for ``url``, or ``InvalidSource`` (404) when not allowed or malformed."""
        scheme = scheme_of(url)
        try:
            urlsplit(url)
        except ValueError as exc:
            raise InvalidSource(f"Invalid source URL: {exc}") from None
        source = self.by_scheme.get(scheme)
        if source is None:
            raise InvalidSource(f"Unknown or disabled source scheme: {scheme or url[:20]}")
        if self.allowed is not None and not self.allowed.allows(url):
            raise InvalidSource(f"Source URL is not allowed: {url[:500]}")
        return source

    def limit(self, max_bytes: int | None = None) -> int:
        """The size limit for one request: its own (``msfs``) or the setting; 0 = none."""
        return self.settings.max_src_file_size if max_bytes is None else max_bytes

    def check_size(self, fetched: Fetched, max_bytes: int | None = None) -> Fetched:
        """``fetched`` when within the request's limit (for a source from the originals
        cache, fetched under another request's limit), else ``SourceTooLarge``."""
        limit = self.limit(max_bytes)
        if limit and len(fetched.data) > limit:
            raise SourceTooLarge(f"Source is {len(fetched.data)} bytes, limit is {limit}")
        return fetched

    async def fetch(self, url: str, max_bytes: int | None = None) -> Fetched:
        """The source's bytes and meta, at most ``max_bytes`` (``None``: the setting).

        A source without ETag and Last-Modified gets a content hash as its ETag,
        computed here once, off the event loop."""
        fetched = await self.check(url).fetch(url, self.limit(max_bytes))
        meta = fetched.meta
        if meta.etag or meta.last_modified:
            return fetched
        etag = await asyncio.to_thread(content_etag, fetched.data)
        return dataclasses.replace(fetched, meta=dataclasses.replace(meta, etag=etag))
