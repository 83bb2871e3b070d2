"""Stage 8, respond: the image response, its headers, and 304 for matching validators.

A hit on a URL whose headers do not count down (no ``exp``, no passed-through
``Expires``, no debug headers) reuses the headers built for that cached result;
the memo holds the result weakly, so it never outlives the byte-bounded cache.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from . import formats
from .cache import Outcome
from .errors import NotModified
from .http_cache import cache_control, cache_headers, conditional_match
from .resolve import Effective
from .results import CachedResult
from .sources import SourceMeta

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL_SAFE = "/:?#[]@!$&'()*+,;=%~-._"


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
            raise self.not_modified(etag, meta, e, vary)

    def not_modified(self, etag: str, meta: SourceMeta, e: Effective, vary: bool) -> NotModified:
        """The 304, with the 200's caching headers (no ETag when there is none)."""
        headers = cache_headers(self.settings, e.expires, vary, meta, etag)
        if not etag:
            headers.pop("ETag", None)
        return NotModified(headers=headers)

    def fallback(self, entry: CachedResult, e: Effective, source: str, vary: bool,
                 status: int) -> web.Response:
        """The fallback image (imgproxy's headers): no validators; ``max-age`` from
        IMGPROXY_FALLBACK_IMAGE_TTL, else as a 200 would have it; none on an error status
        unless ``exp`` or that TTL sets one."""
        s = self.settings
        headers = self.headers(entry, e, source, vary, Outcome.MISS)
        for name in ("ETag", "Last-Modified"):
            headers.pop(name, None)
        ttl = s.fallback_image_ttl or None
        if ttl is None and status >= 400 and e.expires <= 0:
            del headers["Cache-Control"]
        else:
            headers["Cache-Control"] = cache_control(s, e.expires, SourceMeta(), ttl)
        return web.Response(status=status, body=entry.result.data, headers=headers)

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
        if self.settings.set_canonical_header and source.startswith(("http://", "https://")):
            headers["Link"] = canonical_link(source)
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


def canonical_link(source: str) -> str:
    """``Link: <source>; rel="canonical"`` (IMGPROXY_SET_CANONICAL_HEADER), the URL's
    characters that cannot stand in a header or a ``<>`` reference escaped."""
    return f'<{quote(source, safe=_URL_SAFE)}>; rel="canonical"'


def file_stem(source: str) -> tuple[str, str]:
    """``(stem, extension)`` of the last segment of the source URL's path, as imgproxy
    names files: ``http://x/a/`` has none (then ``image``), ``.hidden`` is an extension."""
    name = urlsplit(source).path.rpartition("/")[2]
    dot = name.rfind(".")
    return (name[:dot], name[dot:]) if dot >= 0 else (name, "")


def content_disposition(source: str, e: Effective, fmt: str, suffix: str | None = None) -> str:
    """``inline`` or ``attachment`` with the file name, as imgproxy writes it (``"`` as
    ``%22``); a name that is not ASCII also gets ``filename*`` in UTF-8 (RFC 8187), its
    ``filename`` made ASCII. Control characters never reach the header. ``suffix``
    replaces the format's extension (``raw``: the source's, or its MIME type's)."""
    stem, source_suffix = file_stem(source)
    stem = e.filename or stem or "image"
    kind = "attachment" if e.return_attachment else "inline"
    if suffix is None:
        suffix = f".{formats.extension(fmt)}" if fmt else source_suffix
    name = _CONTROL.sub("", stem + suffix) or "image"
    quoted = name.replace('"', "%22")
    if name.isascii():
        return f'{kind}; filename="{quoted}"'
    ascii_name = quoted.encode("ascii", "replace").decode()
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
