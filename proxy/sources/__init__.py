"""Sources by URL scheme behind one interface: ``await sources.fetch(url)``.

``Sources`` owns the long-lived clients (one aiohttp session, one S3 client)
and is opened/closed by the app's cleanup context. A failed start-up closes
whatever was already opened.
"""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from urllib.parse import urlsplit

from ..errors import InvalidSource
from .base import Fetched, Source, SourceMeta
from .http import HttpSource

__all__ = ["Fetched", "Source", "SourceMeta", "Sources", "allowed_source_matcher"]


def allowed_source_matcher(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """imgproxy's IMGPROXY_ALLOWED_SOURCES: prefixes, ``*`` matches within a segment."""
    if not patterns:
        return None
    parts = ["^" + "[^/]*".join(re.escape(piece) for piece in pat.split("*"))
             for pat in patterns]
    return re.compile("|".join(f"(?:{p})" for p in parts))


class Sources:
    def __init__(self, settings) -> None:
        self.settings = settings
        self.by_scheme: dict[str, Source] = {}
        self.allowed = allowed_source_matcher(settings.allowed_sources)
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
        """The source for ``url``, or ``InvalidSource`` (404) when not allowed."""
        scheme = urlsplit(url).scheme.lower()
        source = self.by_scheme.get(scheme)
        if source is None:
            raise InvalidSource(f"Unknown or disabled source scheme: {scheme or url[:20]}")
        if self.allowed is not None and not self.allowed.match(url):
            raise InvalidSource(f"Source URL is not allowed: {url}")
        return source

    async def fetch(self, url: str) -> Fetched:
        return await self.check(url).fetch(url, self.settings.max_src_file_size)
