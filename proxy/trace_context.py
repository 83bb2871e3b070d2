"""W3C trace context (``traceparent``, ``tracestate``) in and out.

With ``VIPSGATE_OTEL`` (``tracing.Tracer``), an incoming ``traceparent`` is the parent
of the ``vipsgate.request`` span, and requests to HTTP origins carry that span's
context (OpenTelemetry's configured propagator). Without it, vipsgate takes no part in
the trace but does not break it: a valid incoming ``traceparent`` (and its
``tracestate``) goes to HTTP origins unchanged, so the origin's spans join the
caller's trace.

The headers for origins live in a context variable set per request (``bind``); the
tasks a request starts (the coalesced job, the download) copy it when created, so a
download shared by several requests carries the context of the one that started it.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Mapping

_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
OUTGOING: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "vipsgate_trace_context", default=None)


def valid(traceparent: str) -> bool:
    """A ``traceparent`` as W3C Trace Context level 1 reads it: version ``00`` exactly
    55 characters, a later version at least that (never ``ff``); ids not all zero."""
    value = traceparent.strip()
    if not _TRACEPARENT.fullmatch(value):
        return False
    version, trace_id, span_id = value[:2], value[3:35], value[36:52]
    if version == "ff" or (version == "00" and len(value) != 55):
        return False
    return trace_id != _ZERO_TRACE and span_id != _ZERO_SPAN


def passed_on(headers: Mapping[str, str]) -> dict[str, str]:
    """The incoming trace context to pass on unchanged (nothing when it is invalid)."""
    parent = headers.get("traceparent", "")
    if not valid(parent):
        return {}
    out = {"traceparent": parent.strip()}
    state = headers.get("tracestate", "")
    if state and len(state) <= 512:
        out["tracestate"] = state
    return out


def bind(outgoing: Mapping[str, str]) -> None:
    """The trace headers this request's origin requests carry."""
    OUTGOING.set(outgoing)


def outgoing() -> Mapping[str, str]:
    return OUTGOING.get() or {}
