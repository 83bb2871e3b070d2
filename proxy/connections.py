"""Client connections: a deadline for each request head and each response, an idle
keep-alive timeout, and a cap on connections open at once, so idle, half-sent or
unread connections (slowloris) can neither use up the file descriptors nor keep other
clients out.

aiohttp's server has one timer per connection, ``keepalive_timeout``: it closes a
connection still waiting for a request that long after it opened or after its last
response. vipsgate sets it to ``IMGPROXY_KEEP_ALIVE_TIMEOUT`` (aiohttp's default is an
hour) and adds what aiohttp lacks, in ``GuardedHandler`` (aiohttp's ``RequestHandler``
with six hooks; ``serve.py`` builds it for each accepted connection). The deadlines
are checked by one sweep per process (``ConnectionGuard``), not a timer per request:

* **Head deadline** (``IMGPROXY_READ_REQUEST_TIMEOUT``): set when the connection opens,
  and when the first bytes of a later request arrive; the request starting clears it.
  Past it the socket is closed. Bytes trickling in do not extend it.
* **Write deadline** (``IMGPROXY_WRITE_RESPONSE_TIMEOUT``): a response must be sent
  within that many seconds of being ready; a client reading slower is cut off (the
  socket is reset: closing it would wait for the unsent bytes).
* **Cap** (``IMGPROXY_MAX_CLIENTS``, lowered to fit the descriptor limit: ``client_cap``):
  a connection past the cap closes the connection that has waited longest for a request
  (idle between requests, or still sending its head), as nginx reuses idle connections;
  a legitimate client sends its head within a round trip, so the oldest waiting ones
  are the slow ones. When every connection has a request in flight, the new one gets
  ``503`` with ``Retry-After`` and ``Connection: close`` (``Refusal``).

``vipsgate_client_connections`` and ``vipsgate_client_connections_closed_total{reason}``
(``head_timeout``, ``write_timeout``, ``evicted``, ``refused``) show it at work.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from prometheus_client import CollectorRegistry, Counter, Gauge

from . import __version__
from .config import Settings

Entry = Callable[[BaseRequest], Awaitable[StreamResponse]]
Front = Callable[[BaseRequest], Entry | None]
RESERVED = 128  # descriptors for the process itself: libraries, listeners, logs, clients
REFUSING = 32  # refusals in progress at once (past it, new connections are reset)
LINGER = 1.0  # seconds a refused connection may take to read its 503 and close
MIN_CLIENTS = 16
_BODY = b"Too many connections\n"
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\nServer: vipsgate/%s"
           b"\r\n\r\n%s") % (len(_BODY), __version__.encode(), _BODY)


def client_cap(settings: Settings, descriptors: int) -> tuple[int, int]:
    """``(cap, reserved)``: the client connections allowed at once, and the descriptors
    kept for everything else: the process itself (``RESERVED``), refusals in progress
    (``REFUSING``), the origins' connection pools (HTTP, and S3's) and worker processes."""
    pool = settings.origin_connections[0] * (2 if settings.use_s3 else 1)
    workers = 4 * settings.worker_count if settings.executor == "process" else 0
    reserved = RESERVED + REFUSING + pool + workers
    room = max(MIN_CLIENTS, descriptors - reserved)
    return (min(settings.max_clients, room) if settings.max_clients else room), reserved


class ConnectionGuard:
    """The client connections of one server process: who is open, who waits for a
    request (longest first), the refusals in progress, and the sweep that closes the
    connections past their deadline (every second, or a quarter of the shortest
    timeout: a request does not pay for a timer of its own)."""

    def __init__(self, cap: int, head_timeout: float, write_timeout: float,
                 registry: CollectorRegistry | None = None, namespace: str = "vipsgate",
                 front: Front | None = None) -> None:
        self.cap = cap
        self.front = front  # the request's handler, past the router (``front.py``)
        self.head_timeout = head_timeout
        self.write_timeout = write_timeout
        self.interval = min(1.0, head_timeout / 4, write_timeout / 4)
        self.connections: set[GuardedHandler] = set()
        self.waiting: OrderedDict[GuardedHandler, None] = OrderedDict()  # oldest first
        self.refusing = 0
        self._sweeping: asyncio.TimerHandle | None = None
        registry = registry if registry is not None else CollectorRegistry()
        self.open = Gauge("client_connections", "Client connections open now",
                          namespace=namespace, registry=registry, multiprocess_mode="livesum")
        closed = Counter("client_connections_closed", "Client connections vipsgate closed: "
                         "head_timeout, write_timeout, evicted (waiting longest, at the cap), "
                         "refused (503 at the cap)", ["reason"], namespace=namespace,
                         registry=registry)
        self.head_timeouts = closed.labels("head_timeout")
        self.write_timeouts = closed.labels("write_timeout")
        self.evictions = closed.labels("evicted")
        self.refusals = closed.labels("refused")

    def protocol_factory(self, manager: web.Server, **handler_args: Any
                         ) -> Callable[[], asyncio.Protocol]:
        """What ``loop.create_server`` calls for each accepted connection: a
        ``GuardedHandler`` (``handler_args`` as for aiohttp's ``RequestHandler``), after
        closing the longest-waiting connection when at the cap, or a ``Refusal``. Starts
        the sweep."""
        loop = asyncio.get_running_loop()
        if self._sweeping is None:
            self._sweeping = loop.call_later(self.interval, self._sweep, loop)

        def accept() -> asyncio.Protocol:
            if len(self.connections) >= self.cap and not self._evict():
                self.refusals.inc()
                if self.refusing >= REFUSING:
                    return _Reset()
                self.refusing += 1
                return Refusal(self, loop)
            handler = GuardedHandler(self, manager, loop=loop, **handler_args)
            self.connections.add(handler)  # counted now: connection_made comes later
            self.waiting[handler] = None
            self.open.inc()
            return handler

        return accept

    def close(self) -> None:
        """Stop the sweep."""
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None

    def busy(self, handler: GuardedHandler) -> None:
        self.waiting.pop(handler, None)

    def idle(self, handler: GuardedHandler) -> None:
        if handler in self.connections:
            self.waiting[handler] = None  # the newest waiting

    def closed(self, handler: GuardedHandler) -> None:
        if handler in self.connections:
            self.connections.discard(handler)
            self.waiting.pop(handler, None)
            self.open.dec()

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for handler in [h for h in self.connections if 0 < h.deadline <= now]:
            handler.expire()
        self._sweeping = loop.call_later(self.interval, self._sweep, loop)

    def _evict(self) -> bool:
        """Close the connection that has waited longest for a request; False if none
        waits (every connection has a request in flight)."""
        if not self.waiting:
            return False
        handler, _ = self.waiting.popitem(last=False)
        self.closed(handler)
        self.evictions.inc()
        handler.force_close()
        return True


class GuardedHandler(web.RequestHandler):
    """aiohttp's request handler with a deadline (``deadline``, ``loop.time()``; 0 =
    none) while a request head is awaited and while a response is written, and telling
    its ``ConnectionGuard`` when a request starts and ends; the guard's ``front``
    chooses a request's handler before aiohttp's router would."""

    __slots__ = ("_clock", "_guard", "_in_request", "_writing", "deadline")

    def __init__(self, guard: ConnectionGuard, manager: web.Server, *,
                 loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._guard = guard
        self._clock = loop.time
        self._in_request = self._writing = False
        self.deadline = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._keepalive_handle is not None:  # aiohttp's idle timer: the head deadline
            self._keepalive_handle.cancel()  # rules until the first request instead
            self._keepalive_handle = None
        self.deadline = self._clock() + self._guard.head_timeout

    def data_received(self, data: bytes) -> None:
        if not self.deadline and not self._in_request:  # a later request's first bytes
            self.deadline = self._clock() + self._guard.head_timeout
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard.closed(self)
        super().connection_lost(exc)

    async def _handle_request(
            self, request: BaseRequest, start_time: float | None,
            request_handler: Callable[[BaseRequest], Awaitable[StreamResponse]],
    ) -> tuple[StreamResponse, bool]:
        """One request, from its head being read to its response being written."""
        self.deadline = 0.0
        self._in_request = True
        guard = self._guard
        guard.busy(self)
        if guard.front is not None:  # an image GET goes straight to its handler
            request_handler = guard.front(request) or request_handler
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            self._in_request = False
            self.deadline = 0.0
            self._guard.idle(self)

    async def finish_response(self, request: BaseRequest, resp: StreamResponse,
                              start_time: float | None) -> tuple[StreamResponse, bool]:
        """Send the response, within ``IMGPROXY_WRITE_RESPONSE_TIMEOUT``."""
        self.deadline = self._clock() + self._guard.write_timeout
        self._writing = True
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._writing = False
            self.deadline = 0.0

    def expire(self) -> None:
        """The deadline passed: a response not sent in time resets the connection
        (closing would wait for the bytes the client does not read); a request head
        not complete in time closes it."""
        self.deadline = 0.0
        if self._writing:
            if self.transport is not None:
                self._guard.write_timeouts.inc()
                self.transport.abort()
        elif not self._in_request:
            self._guard.head_timeouts.inc()
            self._guard.closed(self)
            self.force_close()


class Refusal(asyncio.Protocol):
    """A connection past the cap while every connection has a request in flight: ``503``
    with ``Retry-After`` and ``Connection: close`` at once, then the sending side is
    closed and what the client sends is read and dropped until it closes (closing with
    unread bytes would reset the connection, and the client could lose the 503), for at
    most ``LINGER`` seconds."""

    def __init__(self, guard: ConnectionGuard, loop: asyncio.AbstractEventLoop) -> None:
        self.guard = guard
        self.loop = loop
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        stream.write(REFUSAL)
        if stream.can_write_eof():
            stream.write_eof()
        self.timer = self.loop.call_later(LINGER, stream.close)

    def data_received(self, data: bytes) -> None:
        pass  # dropped

    def eof_received(self) -> bool:
        return False  # the client has read the answer: close

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.guard.refusing -= 1


class _Reset(asyncio.Protocol):
    """Past ``REFUSING`` refusals in progress: the connection is reset at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()


async def listen_guarded(runner: web.AppRunner, sockets: list[Any], guard: ConnectionGuard,
                         backlog: int, **handler_args: Any) -> list[asyncio.AbstractServer]:
    """Serve ``runner``'s app on ``sockets`` through ``guard`` (instead of aiohttp's
    ``SockSite``: it builds plain request handlers). Close the servers returned before
    ``runner.cleanup()``, which then finishes the connections."""
    assert runner.server is not None, "runner.setup() first"
    accept = guard.protocol_factory(runner.server, **handler_args)
    loop = asyncio.get_running_loop()
    return [await loop.create_server(accept, sock=sock, backlog=backlog) for sock in sockets]


def describe(guard: ConnectionGuard, settings: Settings, descriptors: tuple[int, int],
             reserved: int) -> str:
    """The start-up line: the cap and what it was fitted to, and the timeouts."""
    soft, hard = descriptors
    asked = settings.max_clients
    lowered = " (IMGPROXY_MAX_CLIENTS lowered to fit)" if asked and guard.cap < asked else ""
    keep_alive = (f"idle keep-alive {settings.keep_alive_timeout:g} s"
                  if settings.keep_alive_timeout else "keep-alive off")
    return (f"client connections: at most {guard.cap} at once{lowered}; file descriptors "
            f"{soft} (hard limit {hard}), {reserved} kept for origins and the process; "
            f"request head within {guard.head_timeout:g} s, {keep_alive}")
