"""Listening sockets, bound before anything else starts, and never on a busy port.

A single server binds without ``SO_REUSEPORT``: the kernel then refuses a second
server on the same port, instead of letting it join and split the requests between
the two (a stale instance would answer part of the traffic). With several processes
(``VIPSGATE_PROCESSES``) the supervisor first checks that the port is free with such an
exclusive bind, then binds one ``SO_REUSEPORT`` socket per process before forking:
the kernel spreads connections over them, and no other server was there to join.
The descriptor limit is raised here too, before forking, so every process inherits it.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import socket
from typing import Any

from .errors import ListenError

BACKLOG = 1024
Address = tuple[Any, ...]  # what getaddrinfo gives: (host, port) or (host, port, flow, scope)


def listen(host: str, port: int, processes: int = 1, backlog: int = BACKLOG
           ) -> list[list[socket.socket]]:
    """Listening sockets for ``host:port``: one list per process, one socket per address
    the host resolves to. Raises ``ListenError`` with a one-line reason."""
    try:
        addresses = _addresses(host, port)
        if processes > 1 and port:
            for family, address in addresses:  # busy? an exclusive bind says so
                _bind(family, address, reuse_port=False).close()
        per_process: list[list[socket.socket]] = [[] for _ in range(processes)]
        try:
            for sockets in per_process:
                for index in range(len(addresses)):
                    family, address = addresses[index]
                    sock = _bind(family, address, reuse_port=processes > 1)
                    sockets.append(sock)
                    sock.listen(backlog)
                    if not port:  # the other sockets join the port the kernel picked
                        port = sock.getsockname()[1]
                        addresses = [(f, (a[0], port, *a[2:])) for f, a in addresses]
        except BaseException:
            close(per_process)
            raise
        return per_process
    except OSError as exc:
        shown = f"[{host}]" if ":" in host else host
        raise ListenError(f"cannot listen on {shown}:{port}: {_why(exc)}") from None


def close(per_process: list[list[socket.socket]]) -> None:
    for sockets in per_process:
        for sock in sockets:
            sock.close()


def _addresses(host: str, port: int) -> list[tuple[int, Address]]:
    found = socket.getaddrinfo(host.strip("[]") or None, port, socket.AF_UNSPEC,
                               socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    unique: list[tuple[int, Address]] = []
    for family, _, _, _, address in found:
        if (family, address) not in unique:
            unique.append((family, address))
    return unique


def _bind(family: int, address: Address, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:  # one socket per family, as asyncio does
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the address is already in use (is another server running on that port?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    return exc.strerror or str(exc)


def raise_descriptor_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (as Go does at start); returns
    ``(soft, hard)`` as they are now, an unlimited one as 2**20."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):  # the cap then fits the soft limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    def finite(limit: int) -> int:
        return 1 << 20 if limit == resource.RLIM_INFINITY else limit

    return finite(soft), finite(hard)
