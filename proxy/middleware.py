"""Middleware: request ids, the one error -> HTTP status mapping, access log, metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from . import __version__
from .config import Settings
from .errors import ProxyError
from .metrics import Metrics, RequestTrace

log = logging.getLogger("vipsgate")
access_log = logging.getLogger("vipsgate.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")

TRACE: web.RequestKey[RequestTrace] = web.RequestKey("trace")
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")

@web.middleware
async def trace_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    """Request id, error -> status mapping (the only place), access log, metrics."""
    settings, metrics = request.app[SETTINGS], request.app[METRICS]
    given = request.headers.get("X-Request-ID", "")
    trace = RequestTrace(request_id=given if _REQUEST_ID.match(given) else uuid.uuid4().hex,
                         method=request.method, path=redact(request.raw_path))
    request[TRACE] = trace
    try:
        response = await handler(request)
    except ProxyError as exc:
        response = error_response(exc, settings)
        trace.error = exc.category if exc.status != 304 else ""
        if exc.status >= 500 or exc.status == 422:
            log.warning("%s %s: %s", trace.request_id, trace.path, exc.reason)
    except web.HTTPException as exc:
        response = exc
    except asyncio.CancelledError:
        trace.status = 499
        raise
    except Exception:
        log.exception("%s %s: unexpected error", trace.request_id, trace.path)
        response = error_response(ProxyError("unexpected"), settings)
        trace.error = "unexpected"
    response.headers["X-Request-ID"] = trace.request_id
    response.headers["Server"] = f"vipsgate/{__version__}"
    if settings.allow_origin:
        response.headers["Access-Control-Allow-Origin"] = settings.allow_origin
        response.headers["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
    trace.status = response.status
    if isinstance(response, web.Response) and response.body is not None:
        trace.bytes = len(response.body)  # type: ignore[arg-type]
    if trace.format or trace.error or trace.cache:
        metrics.observe(trace)
        log_request(trace, settings.log_format)
    return response


def error_response(exc: ProxyError, settings: Settings) -> web.Response:
    headers = dict(exc.headers)
    if exc.status == 304:
        return web.Response(status=304, headers=headers)
    body = exc.public
    if exc.status == 404 and exc.public == "Invalid URL":
        body = f"Invalid URL: {exc.reason}" if exc.reason != exc.public else exc.public
    if settings.error_ttl and exc.status >= 400:
        headers["Cache-Control"] = f"public, max-age={settings.error_ttl}"
    return web.Response(status=exc.status, text=body + "\n", headers=headers,
                        content_type="text/plain")


def redact(raw_path: str) -> str:
    """The request path with its signature replaced, for logs."""
    path = raw_path.split("?", 1)[0]
    parts = path.split("/", 2)
    if len(parts) == 3 and parts[1] not in ("health", "ready", "metrics", "playground", ""):
        return f"/<sig>/{parts[2]}"
    return path


def log_request(trace: RequestTrace, fmt: str) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    if fmt == "json":
        access_log.info(json.dumps({
            "ts": round(time.time(), 3), "request_id": trace.request_id, "method": trace.method,
            "path": trace.path, "status": trace.status, "bytes": trace.bytes,
            "duration_ms": round(trace.duration * 1000, 2), "format": trace.format,
            "cache": trace.cache, "source": trace.source_scheme, "error": trace.error,
            "stages_ms": {k: round(v * 1000, 2) for k, v in trace.stages.items()},
        }, separators=(",", ":")))
    else:
        access_log.info("%s %s %s %d %dB %.1fms %s %s", trace.request_id[:8], trace.method,
                        trace.path, trace.status, trace.bytes, trace.duration * 1000,
                        trace.cache or "-", trace.format or "-")
