"""Optional OpenTelemetry spans per stage, off by default.

With ``VIPSGATE_OTEL=1`` and the ``opentelemetry-api`` package installed, each
image request is a ``vipsgate.request`` span with ``vipsgate.fetch`` and
``vipsgate.process`` children; an incoming ``traceparent`` is its parent, and requests
to HTTP origins carry its context (``trace_context``). Exporters and propagators are
configured the standard way (the OpenTelemetry SDK and its ``OTEL_*`` variables, e.g.
under ``opentelemetry-instrument vipsgate serve``); vipsgate only creates spans.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from . import trace_context

log = logging.getLogger("vipsgate")


class Tracer:
    def __init__(self, enabled: bool) -> None:
        self._tracer: Any = None
        if not enabled:
            return
        try:
            from opentelemetry import trace
        except ImportError:
            log.warning("VIPSGATE_OTEL is on but opentelemetry-api is not installed: no spans")
            return
        self._tracer = trace.get_tracer("vipsgate")

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @contextlib.contextmanager
    def span(self, name: str, parent: Mapping[str, str] | None = None, /,
             **attributes: Any) -> Iterator[Any]:
        """A span as the current one (a no-op when tracing is off); ``parent``: request
        headers whose trace context (``traceparent``) it continues."""
        if self._tracer is None:
            yield None
            return
        context = None
        if parent is not None:
            from opentelemetry import propagate
            context = propagate.extract(parent)
        with self._tracer.start_as_current_span(
                name, context=context,
                attributes={k: v for k, v in attributes.items() if v is not None}) as span:
            yield span

    def outgoing(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The trace headers for this request's origin requests: the current span's
        context (OpenTelemetry), else the incoming ``traceparent`` passed on unchanged."""
        if self._tracer is None:
            return trace_context.passed_on(headers)
        from opentelemetry import propagate
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier
