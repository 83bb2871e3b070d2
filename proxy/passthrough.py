"""The ``raw`` option: the origin's response relayed, as imgproxy's stream handler does.

The client's ``If-None-Match``, ``If-Modified-Since``, ``Accept-Encoding`` and
``Range`` go to an HTTP origin; its status (200, 206, 304, or an error's) comes back
with its ``Content-Type``, ``Content-Encoding``, ``Content-Range``, ``Accept-Ranges``,
``Last-Modified`` and ``ETag``, the body as sent (never decoded, never processed,
never cached by vipsgate: the CDN caches it). Other schemes send the whole file with
its validators, and the client's validators are checked here (304).

Deliberate differences, for safety: a ``Content-Type`` a browser would run as a
document (HTML, XML, SVG, scripts) is sent as the sniffed image type or
``application/octet-stream``; an origin's error status comes back with vipsgate's
one-line body, not the origin's page; the body counts against
``IMGPROXY_MAX_SRC_FILE_SIZE``; and each raw request takes a place in the queue.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from aiohttp import web

from . import formats
from .admission import Admission
from .errors import SourceNotFound, SourceUnreachable
from .http_cache import cache_control, conditional_match
from .resolve import Resolved
from .respond import CSP, canonical_link, content_disposition, file_stem
from .sources import Relayed, SourceMeta, Sources

FORWARDED = ("If-None-Match", "If-Modified-Since", "Accept-Encoding", "Range")
PASSED = ("Content-Type", "Content-Encoding", "Content-Range", "Accept-Ranges",
          "Last-Modified", "ETag")
_MEDIA = ("image/", "video/", "audio/", "font/")


class Passthrough:
    def __init__(self, settings: Any, sources: Sources, admission: Admission) -> None:
        self.settings = settings
        self.sources = sources
        self.admission = admission

    async def respond(self, request: web.Request, url: Resolved) -> web.Response:
        e = url.effective
        forwarded = {name: request.headers[name] for name in FORWARDED
                     if name in request.headers}
        async with self.admission.admit(url.source.origin):
            relayed = await self.sources.relay(url.source, forwarded, e.max_src_file_size)
        if relayed.status >= 400:
            error = SourceNotFound if relayed.status in (404, 410) else SourceUnreachable
            raise error(f"Origin answered {relayed.status}", status=relayed.status)
        headers = {name: relayed.headers[name] for name in PASSED if name in relayed.headers}
        status = relayed.status
        if status == 200 and conditional_match(
                request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since"),
                headers.get("ETag", ""), headers.get("Last-Modified"), _VALIDATORS):
            status = 304  # the client's copy is current (an origin that ignored them, a file)
        if status < 300:
            headers["Content-Type"] = content_type(relayed)
            headers["Content-Disposition"] = content_disposition(
                url.source.url, e, "", suffix=suffix(url.source.url, headers["Content-Type"]))
        meta = SourceMeta(cache_control=relayed.headers.get("Cache-Control"),
                          expires=relayed.headers.get("Expires"))
        headers["Cache-Control"] = cache_control(self.settings, e.expires, meta)
        headers["Content-Security-Policy"] = CSP
        if self.settings.set_canonical_header and url.source.scheme in ("http", "https"):
            headers["Link"] = canonical_link(url.source.url)
        if status == 304:
            return web.Response(status=304, headers=headers)
        return web.Response(status=status, body=relayed.body, headers=headers)


class _Validators:
    """``conditional_match``'s settings for a relayed response: both validators on, the
    origin's ``Last-Modified`` as it is."""

    use_etag = use_last_modified = True
    last_modified_buster = ""


_VALIDATORS = _Validators()


def content_type(relayed: Relayed) -> str:
    """The origin's ``Content-Type`` when it names media; else the sniffed image type of
    a whole, unencoded body (never SVG); else ``application/octet-stream``."""
    given = relayed.headers.get("Content-Type", "")
    media = given.split(";", 1)[0].strip().lower()
    if media.startswith(_MEDIA) and "svg" not in media and "xml" not in media:
        return given
    fmt = None
    if relayed.status == 200 and "Content-Encoding" not in relayed.headers:
        fmt = formats.sniff(relayed.body)
    return formats.mime_type(fmt) if fmt and fmt != "svg" else "application/octet-stream"


def suffix(source: str, mime: str) -> str:
    """The file name's extension: the source URL's, else one for the MIME type."""
    found = file_stem(source)[1]
    if found:
        return found
    media = mime.split(";", 1)[0].strip().lower()
    for fmt in formats.REGISTRY.values():
        if fmt.mime == media:
            return f".{fmt.extension}"
    return mimetypes.guess_extension(media) or ""
