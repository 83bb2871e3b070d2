"""Stage 8, respond: the image response, its headers, and 304 for matching validators.

A hit on a URL whose headers do not count down (no ``exp``, no passed-through
``Expires``, no debug headers) reuses the headers built for that cached result;
the memo holds the result weakly, so it never outlives the byte-bounded cache.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from . import formats
from .cache import Outcome
from .errors import NotModified
from .http_cache import cache_headers, conditional_match
from .resolve import Effective
from .results import CachedResult
from .sources import SourceMeta

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _nothing() -> None:
    return None


class HeaderMemo:
    """The response headers of one URL and format class, for the cached result they
    were made for (held weakly)."""

    __slots__ = ("entry", "headers")

    def __init__(self) -> None:
        self.entry: Callable[[], CachedResult | None] = _nothing
        self.headers: dict[str, str] = {}


class Responder:
    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def check_not_modified(self, request_headers: Mapping[str, str], etag: str,
                           meta: SourceMeta, e: Effective, vary: bool) -> None:
        """Raise ``NotModified`` (304, with the 200's caching headers) when the client's
        validators match."""
        if conditional_match(request_headers.get("If-None-Match"),
                             request_headers.get("If-Modified-Since"), etag,
                             meta.last_modified, self.settings):
            raise NotModified(headers=cache_headers(self.settings, e.expires, vary, meta, etag))

    def respond(self, entry: CachedResult, memo: HeaderMemo, e: Effective, source: str,
                vary: bool, outcome: Outcome) -> web.Response:
        if memo.entry() is entry:  # a hit on the same result: the same headers
            return web.Response(body=entry.result.data, headers=memo.headers)
        headers = self.headers(entry, e, source, vary, outcome)
        if self.static_headers(e, entry.meta):
            memo.entry, memo.headers = weakref.ref(entry), headers
        return web.Response(body=entry.result.data, headers=headers)

    def headers(self, entry: CachedResult, e: Effective, source: str, vary: bool,
                outcome: Outcome) -> dict[str, str]:
        result = entry.result
        headers = cache_headers(self.settings, e.expires, vary, entry.meta, entry.etag)
        headers["Content-Disposition"] = content_disposition(source, e, result.format)
        headers["Content-Security-Policy"] = CSP
        headers["Content-Type"] = formats.mime_type(result.format)
        if self.settings.debug_headers:
            headers.update({
                "X-Cache": outcome.value, "X-Origin-Width": str(result.source_width),
                "X-Origin-Height": str(result.source_height),
                "X-Result-Width": str(result.width), "X-Result-Height": str(result.height),
            })
        return headers

    def static_headers(self, e: Effective, meta: SourceMeta) -> bool:
        """Whether a result's headers stay the same on every hit: not with ``exp`` or a
        passed-through ``Expires`` (a TTL that counts down), nor with debug headers."""
        s = self.settings
        passthrough_expires = s.cache_control_passthrough and not meta.cache_control \
            and bool(meta.expires)
        return e.expires <= 0 and not passthrough_expires and not s.debug_headers


def content_disposition(source: str, e: Effective, fmt: str) -> str:
    """``inline`` or ``attachment`` with the file name (RFC 6266): a plain ASCII
    ``filename`` and, when the name is not ASCII, ``filename*`` in UTF-8 (RFC 8187).
    Control characters never reach the header."""
    source_path = PurePosixPath(urlsplit(source).path)
    stem = e.filename or source_path.stem or "image"
    kind = "attachment" if e.return_attachment else "inline"
    suffix = f".{formats.extension(fmt)}" if fmt else source_path.suffix  # raw non-image
    name = _CONTROL.sub("", stem + suffix) or "image"
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "%22").replace("\\", "_")
    if ascii_name == name:
        return f'{kind}; filename="{name}"'
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
