"""Logs, metrics, tracing and development aids."""

from __future__ import annotations

from dataclasses import dataclass

from .values import boolean, choice, setting


def log_level(text: str) -> str:
    """``debug``, ``info``, ``warning`` or ``error``; imgproxy's ``warn`` is ``warning``."""
    text = text.strip().lower()
    return choice("debug", "info", "warning", "error")("warning" if text == "warn" else text)


@dataclass(frozen=True)
class ObservabilitySettings:
    # observability
    debug_headers: bool = setting(False, "VIPSGATE_DEBUG_HEADERS",
                                  "IMGPROXY_ENABLE_DEBUG_HEADERS", parse=boolean,
                                  doc="Add X-Cache and X-Origin-*/X-Result-* headers")
    prometheus_bind: str = setting("", "IMGPROXY_PROMETHEUS_BIND",
                                   doc="Serve /metrics on a separate HOST:PORT")
    log_format: str = setting("text", "VIPSGATE_LOG_FORMAT", parse=choice("text", "json"),
                              doc="`json` for one structured line per request")
    log_level: str = setting("info", "VIPSGATE_LOG_LEVEL", "IMGPROXY_LOG_LEVEL",
                             parse=log_level, doc="Log level: `debug`, `info`, `warning` "
                                                  "(`warn`), `error`")
    playground: bool = setting(False, "VIPSGATE_PLAYGROUND", parse=boolean,
                               doc="Serve the development playground at /playground")
    otel: bool = setting(False, "VIPSGATE_OTEL", parse=boolean,
                         doc="OpenTelemetry spans per stage (needs `opentelemetry-api`)")
