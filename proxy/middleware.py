"""Middleware around every route: request ids, the one error -> HTTP status mapping,
CORS, draining, and for the image route the access log line and the metrics.

Probes (/health, /ready, /metrics) are neither logged nor counted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from . import __version__
from .config import Settings
from .errors import ProxyError
from .logs import log_request
from .metrics import TRACE, Metrics, RequestTrace

log = logging.getLogger("vipsgate")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
SERVER = f"vipsgate/{__version__}"
IMAGE_ROUTE = "image"  # name of the image route: the requests that are logged and counted


@dataclass
class Lifecycle:
    """Where the server is in its life: set to draining on SIGTERM (``/ready`` 503,
    responses close their connections)."""

    draining: bool = False


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
LIFECYCLE: web.AppKey[Lifecycle] = web.AppKey("lifecycle", Lifecycle)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]



class Tracing:
    """Request id, the error -> status mapping (the only place), CORS and draining
    headers, and for images the access log line and the metrics, around a handler.

    aiohttp's router reaches it as the app's middleware; the image front door
    (``front.py``) calls ``around`` directly, so a request gets the same treatment
    either way."""

    def __init__(self, settings: Settings, metrics: Metrics, lifecycle: Lifecycle) -> None:
        self.settings, self.metrics, self.lifecycle = settings, metrics, lifecycle
        self.prefix = settings.path_prefix

    @property
    def middleware(self) -> Middleware:
        """The app's middleware: images are the routes named ``IMAGE_ROUTE``."""

        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self.around(request, handler,
                                     request.match_info.route.name == IMAGE_ROUTE)

        return middleware

    async def around(self, request: web.Request, handler: Handler, image: bool
                     ) -> web.StreamResponse:
        """``handler``'s response to ``request``, traced; ``image``: logged and counted."""
        settings, metrics = self.settings, self.metrics
        given = request.headers.get("X-Request-ID", "")
        trace = RequestTrace(request_id=given if _REQUEST_ID.match(given) else new_request_id(),
                             method=request.method,
                             path=redact(request.raw_path, self.prefix, image))
        request[TRACE] = trace
        if image:
            metrics.in_flight += 1
        try:
            try:
                response = await handler(request)
            except ProxyError as exc:
                response = error_response(exc, settings)
                if exc.status != 304:
                    trace.error, trace.reason = exc.category, exc.reason
            except web.HTTPException as exc:  # aiohttp's own 404/405 and redirects
                response = web.Response(status=exc.status, reason=exc.reason, text=exc.text,
                                        headers={k: v for k, v in exc.headers.items()
                                                 if k.lower() != "content-length"})
            except asyncio.CancelledError:
                trace.status = 499  # the client went away (or shutdown timed out)
                trace.error = "cancelled"
                raise
            except Exception as exc:
                log.exception("unexpected error", extra={"request_id": trace.request_id,
                                                         "path": trace.path})
                response = error_response(ProxyError("unexpected"), settings)
                trace.error, trace.reason = "unexpected", f"{type(exc).__name__}: {exc}"[:300]
            trace.status = response.status
            body = getattr(response, "body", None)  # web.Response; None for a stream
            if body is not None:
                trace.bytes = len(body)
        finally:
            trace.finish()
            if image:
                metrics.in_flight -= 1
                metrics.observe(trace)
                log_request(trace, settings.log_format)
        headers = response.headers
        headers["X-Request-ID"] = trace.request_id
        headers["Server"] = SERVER
        if settings.allow_origin:
            headers["Access-Control-Allow-Origin"] = settings.allow_origin
            headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"  # imgproxy's
        if self.lifecycle.draining or not settings.keep_alive_timeout:
            # draining: keep-alive clients reconnect to another instance; 0: keep-alive off
            response.force_close()
        return response


def error_response(exc: ProxyError, settings: Settings) -> web.Response:
    headers = dict(exc.headers)
    if exc.status == 304:
        return web.Response(status=304, headers=headers)
    body = exc.public
    if exc.status == 404 and exc.public == "Invalid URL":
        body = f"Invalid URL: {exc.reason}" if exc.reason != exc.public else exc.public
    if settings.error_ttl and 400 <= exc.status < 500 and exc.status != 429:
        # a short max-age for permanent client errors only: never cache overload or outages
        headers["Cache-Control"] = f"public, max-age={settings.error_ttl}"
    return web.Response(status=exc.status, text=body + "\n", headers=headers,
                        content_type="text/plain")


def new_request_id() -> str:
    """32 random hex digits. ``random`` needs no system call per id (``os.urandom`` does),
    reseeds itself from the OS at start and after ``fork``, and the id is no secret."""
    return f"{random.getrandbits(128):032x}"


def redact(raw_path: str, prefix: str = "", signed: bool = True) -> str:
    """The request path without its query and, for image URLs, with the signature
    replaced by ``<sig>``: logs never carry a signature that could be replayed."""
    path = raw_path.split("?", 1)[0]
    if not signed:
        return path
    rest = path[len(prefix):] if prefix and path.startswith(prefix) else path
    _, _, after = rest.lstrip("/").partition("/")
    return f"{prefix}/<sig>/{after}" if after else f"{prefix}/<sig>"
