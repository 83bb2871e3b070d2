"""Client connections of ``vipsgate serve`` (``proxy/connections.py``): half-sent request
heads closed at ``IMGPROXY_READ_REQUEST_TIMEOUT``, idle keep-alive connections at
``IMGPROXY_KEEP_ALIVE_TIMEOUT``, slow readers at ``IMGPROXY_WRITE_RESPONSE_TIMEOUT``, and
the cap (``IMGPROXY_MAX_CLIENTS``): the connection waiting longest makes room, and when
every connection has a request in flight a new one gets 503. Real sockets against a real
server process on 127.0.0.1; every wait is bounded."""

from __future__ import annotations

import asyncio
import http.client
import re
import resource
import socket
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest
from yarl import URL

from conftest import LOOPBACK, Origin, ServerProcess, make_settings, signed, wait_for
from imagegen import jpeg, solid
from vipsgate.connections import client_cap

HALF_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"  # never ends


def half_sent(port: int) -> socket.socket:
    """A connection that starts a request head and never finishes it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(HALF_HEAD)
    sock.setblocking(False)
    return sock


def closed(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (nothing is ever sent to these)."""
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def get(server: ServerProcess, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(server.url(path), timeout=10) as response:
        return response.status, response.read()


def closes(server: ServerProcess) -> dict[str, float]:
    """``vipsgate_client_connections_closed_total`` by reason."""
    text = get(server, "/metrics")[1].decode()
    found = re.findall(r'^vipsgate_client_connections_closed_total\{reason="(\w+)"\} (\S+)$',
                       text, re.MULTILINE)
    return {reason: float(value) for reason, value in found}


def test_half_sent_heads_are_closed_at_the_deadline_and_never_keep_others_out(serve):
    """80 half-sent connections against a cap of 50: a normal request is answered at
    once (the ones waiting longest made room), and every one of them is closed, those
    not evicted by the 1 s head deadline."""
    server = serve(IMGPROXY_MAX_CLIENTS="50", IMGPROXY_READ_REQUEST_TIMEOUT="1")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    line = server.stderr.wait_for(r"client connections: at most (\d+) at once")[0].string
    assert "at most 50 at once" in line and "request head within 1 s" in line
    if hard != resource.RLIM_INFINITY:
        assert f"file descriptors {hard} (hard limit {hard})" in line
    sockets = [half_sent(server.port) for _ in range(80)]
    try:
        started = time.monotonic()
        assert get(server, "/health")[0] == 200
        assert time.monotonic() - started < 5
        wait_for(lambda: all(closed(sock) for sock in sockets), timeout=20, interval=0.05,
                 what="every half-sent connection closed")
        counts = closes(server)
        assert counts["head_timeout"] + counts["evicted"] == 80
        assert counts["head_timeout"] >= 49  # at most 31 could be evicted
        assert counts["refused"] == 0
    finally:
        for sock in sockets:
            sock.close()


def test_at_the_cap_the_connection_waiting_longest_makes_room(serve):
    server = serve(IMGPROXY_MAX_CLIENTS="8", IMGPROXY_READ_REQUEST_TIMEOUT="60")
    sockets = [half_sent(server.port) for _ in range(12)]
    try:
        assert get(server, "/health")[0] == 200  # the 13th: evicts the 5th
        wait_for(lambda: all(closed(sock) for sock in sockets[:5]), timeout=10, interval=0.02,
                 what="the five oldest closed")
        assert not any(closed(sock) for sock in sockets[5:])  # the newest stay
        # and one more for /metrics' own connection unless /health's had closed by then
        assert closes(server)["evicted"] in (5, 6)
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("timeout", ["1", "0"])
def test_idle_keep_alive_connections_are_closed(serve, timeout):
    """Keep-alive works, and an idle connection is closed after 1 s; with 0 every
    response says ``Connection: close`` and the connection closes at once."""
    server = serve(IMGPROXY_KEEP_ALIVE_TIMEOUT=timeout)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(2 if timeout != "0" else 1):  # twice on one connection
            connection.request("GET", "/health")
            response = connection.getresponse()
            assert response.status == 200 and response.read()
        sock = connection.sock
        assert (response.getheader("Connection") == "close") == (timeout == "0")
        if timeout == "0":
            return  # http.client closed it, as the server asked
        assert sock is not None
        answered = time.monotonic()
        sock.setblocking(False)
        wait_for(lambda: closed(sock), timeout=10, interval=0.02, what="idle connection closed")
        assert time.monotonic() - answered >= 0.9
    finally:
        connection.close()


def test_a_client_that_does_not_read_its_response_is_cut_off(serve, tmp_path):
    """A 27 MB response to a client that reads nothing: the server gives up on it after
    ``IMGPROXY_WRITE_RESPONSE_TIMEOUT`` and resets the connection."""
    (tmp_path / "dot.png").write_bytes(solid(8, 8).pngsave_buffer())
    server = serve(IMGPROXY_WRITE_RESPONSE_TIMEOUT="1",
                   IMGPROXY_LOCAL_FILESYSTEM_ROOT=str(tmp_path))
    path = signed("/rs:fit:3000:3000:1/plain/local:///dot.png@bmp")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        wait_for(lambda: closes(server).get("write_timeout") == 1, timeout=30, interval=0.2,
                 what="the slow reader cut off")


async def test_past_the_cap_with_every_connection_busy_new_ones_get_503(serve,
                                                                         origin: Origin):
    """4 connections (the cap) wait for a held origin: a fifth gets 503 with Retry-After
    and Connection: close, read to its end; once they are answered it serves again."""
    origin.add("/held/*", jpeg(64, 48), hold=True)
    server = serve(IMGPROXY_MAX_CLIENTS="4", VIPSGATE_MAX_QUEUE_SHARE_PER_ORIGIN="1",
                   **LOOPBACK)

    def url(path: str) -> URL:
        return URL(server.url(path), encoded=True)

    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        held = [asyncio.create_task(session.get(url(signed(f"/plain/{origin.base}/held/{i}"))))
                for i in range(4)]
        try:
            await origin.arrived(4)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            async with asyncio.timeout(10):
                answer = await reader.read()  # to its end: the server closed cleanly
            writer.close()
            head = answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            assert head[0] == b"HTTP/1.1 503 Service Unavailable", answer
            assert b"Retry-After: 1" in head and b"Connection: close" in head
        finally:
            origin.release()
        for response in await asyncio.gather(*held):
            assert response.status == 200
            response.release()
        async with session.get(url("/health")) as response:
            assert response.status == 200
        async with session.get(url("/metrics")) as response:
            assert 'vipsgate_client_connections_closed_total{reason="refused"} 1.0' \
                in await response.text()


def test_the_descriptor_limit_is_raised_to_the_hard_limit():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"hard descriptor limit {hard}: nothing to raise to")

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    code = "from vipsgate.listen import raise_descriptor_limit as r; print(*r())"
    done = subprocess.run([sys.executable, "-c", code], preexec_fn=lower, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.split() == [str(hard), str(hard)]


def test_the_cap_fits_the_descriptors_left_for_clients():
    s = make_settings(IMGPROXY_WORKERS="4")  # origin pool: 4 + 64 + 16 = 84
    assert client_cap(s, 1024) == (1024 - 128 - 32 - 84, 128 + 32 + 84)
    assert client_cap(s, 1 << 20)[0] == 2048  # imgproxy's default
    assert client_cap(make_settings(IMGPROXY_WORKERS="4", IMGPROXY_MAX_CLIENTS="100"),
                      1024)[0] == 100
    assert client_cap(make_settings(IMGPROXY_WORKERS="4", IMGPROXY_MAX_CLIENTS="0"),
                      1 << 16)[0] == (1 << 16) - 244
    s3 = make_settings(IMGPROXY_WORKERS="4", VIPSGATE_EXECUTOR="process",
                       IMGPROXY_USE_S3="1")
    assert client_cap(s3, 1024)[1] == 128 + 32 + 2 * 84 + 16
    assert client_cap(s, 100)[0] == 16  # never fewer
