"""Logging: the access log (batched, written by vipsgate itself) and the formatters.

Every image request gets one access-log line (JSON with ``VIPSGATE_LOG_FORMAT=json``,
a short human line otherwise); the error's cause is in that line, so it is logged
once. Other records go through ``logging`` with the same formats.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import re
import sys
import threading
import time
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from .metrics import RequestTrace

access_log = logging.getLogger("vipsgate.access")


def log_request(trace: RequestTrace, fmt: str) -> None:
    """One access-log line for ``trace``: straight to the server's ``AccessLog`` when
    ``configure_logging`` installed one, else through the ``vipsgate.access`` logger
    (its fields go along as ``record.fields``)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    if _sink is not None:
        _sink.write(trace, fmt)
        return
    fields = access_fields(trace)
    if fmt == "json":
        access_log.info("request", extra={"fields": fields})
    else:
        access_log.info("%s", text_message(trace), extra={"fields": fields})


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def escape(text: str) -> str:
    """``text`` with control characters written as ``\\xNN``: one event, one log line (a
    newline in a decoded source URL cannot forge a line)."""
    if text.isprintable():  # no control character (the common case, checked in C)
        return text
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def text_message(trace: RequestTrace) -> str:
    """The human access-log message: id, method, path, status, bytes, time, cache, format."""
    stages = "".join(f" {k}={round(v * 1000, 2)}ms" for k, v in trace.stages.items()) \
        if trace.stages else ""  # a hit has none
    error = f" error={trace.error}: {escape(trace.reason)}" if trace.error else ""
    return (f"{trace.request_id[:12]} {trace.method} {escape(trace.path)} {trace.status} "
            f"{trace.bytes}B {trace.duration * 1000:.1f}ms cache={trace.cache or '-'} "
            f"{trace.format or '-'}{stages}{error}")


class AccessLog:
    """Access-log lines written straight to a stream, in batches.

    Going through ``logging`` costs about 20 µs a line (a LogRecord, handler locks, a
    write and flush per line): a third of a cache hit. The lines are those the
    ``vipsgate`` formatters write, so the log reads the same; they reach the stream
    at most ``FLUSH_SECONDS`` after the request, every ``FLUSH_LINES`` lines, and at exit.
    """

    FLUSH_SECONDS = 0.1
    FLUSH_LINES = 256

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._json_seconds = _Seconds("%Y-%m-%dT%H:%M:%S", time.gmtime)
        self._text_seconds = _Seconds("%Y-%m-%d %H:%M:%S", time.localtime)

    def write(self, trace: RequestTrace, fmt: str) -> None:
        now = time.time()
        millis = int(now * 1000) % 1000
        if fmt == "json":
            line = {"ts": f"{self._json_seconds(now)}.{millis:03d}Z", "level": "info",
                    "logger": access_log.name, "msg": "request", **access_fields(trace)}
            text = json.dumps(line, separators=(",", ":"), default=str)
        else:
            text = (f"{self._text_seconds(now)},{millis:03d} INFO {access_log.name}: "
                    f"{text_message(trace)}")
        with self._lock:
            self.lines.append(text)
            pending = len(self.lines)
        if pending == 1:
            try:
                asyncio.get_running_loop().call_later(self.FLUSH_SECONDS, self.flush)
            except RuntimeError:  # no loop (not the server): write now
                self.flush()
        elif pending >= self.FLUSH_LINES:
            self.flush()  # the timer finds nothing, or the next batch's first lines

    def flush(self) -> None:
        """Write the pending lines (any thread: other log records flush from theirs)."""
        with self._lock:
            if not self.lines:
                return
            lines, self.lines = self.lines, []
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()


_sink: AccessLog | None = None


def flush_access_log() -> None:
    """Write out access-log lines still buffered (at exit)."""
    if _sink is not None:
        _sink.flush()


def access_fields(trace: RequestTrace) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "request_id": trace.request_id, "method": trace.method, "path": trace.path,
        "status": trace.status, "bytes": trace.bytes,
        "duration_ms": round(trace.duration * 1000, 2),
        "stages_ms": {k: round(v * 1000, 2) for k, v in trace.stages.items()},
        "cache": trace.cache, "source_cache": trace.source_cache,
        "source": trace.source_scheme, "format": trace.format,
    }
    if trace.error:
        fields["error"], fields["reason"] = trace.error, trace.reason
    return fields


class _Seconds:
    """``strftime`` once per second, not once per log line (a hot-path cost)."""

    def __init__(self, fmt: str, convert: Any) -> None:
        self.fmt, self.convert = fmt, convert
        self.second, self.text = -1, ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self.second:
            self.second, self.text = second, time.strftime(self.fmt, self.convert(second))
        return self.text


class TextFormatter(logging.Formatter):
    """``time level logger: message`` with the timestamp formatted once per second."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._seconds = _Seconds("%Y-%m-%d %H:%M:%S", time.localtime)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{self._seconds(record.created)},{int(record.msecs):03d}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The message with control characters escaped: a line per record (a traceback,
        appended after this, keeps its own lines)."""
        record.message = escape(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus a record's ``fields``,
    ``request_id`` and ``path`` extras, and ``exc`` for a traceback."""

    _seconds = _Seconds("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": f"{self._seconds(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "path"):
            if hasattr(record, key):
                line[key] = getattr(record, key)
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


class BadRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse as an ERROR with a traceback that quotes
    the raw request line, signature included. Such a request is the client's fault: one
    INFO line with the parser's reason and no request bytes (nothing to replay)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            reason = (exc.message or "").strip().splitlines()[:1] or ["malformed request"]
            record.msg, record.args = "Bad request: %s", (escape(reason[0].rstrip(":")),)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class _OrderedHandler(logging.StreamHandler):
    """Writes buffered access lines first, so the log keeps the order of events."""

    def emit(self, record: logging.LogRecord) -> None:
        flush_access_log()
        super().emit(record)


def configure_logging(level: str, fmt: str, access_stream: Any = None) -> None:
    """Root logging to stderr: JSON lines, or ``time level logger: message`` text.
    Access-log lines go to ``access_stream`` (stderr by default) through an
    ``AccessLog``, in the same format."""
    global _sink
    handler = _OrderedHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # pyvips logs every call at DEBUG; libvips itself forwards only warnings (pipeline.py)
    logging.getLogger("pyvips").setLevel("DEBUG" if level == "debug" else "WARNING")
    # the Azure SDK logs every request's headers at INFO (abs:// sources, the abs tier)
    logging.getLogger("azure").setLevel("DEBUG" if level == "debug" else "WARNING")
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, BadRequestFilter) for f in server_log.filters):
        server_log.addFilter(BadRequestFilter())
    if _sink is None:
        atexit.register(flush_access_log)
    flush_access_log()
    _sink = AccessLog(access_stream or sys.stderr)
