"""Graceful shutdown of the real ``vipsgate serve`` process: SIGTERM flips /ready to 503,
serving continues for the drain delay, the listener closes, the in-flight request
(held by the origin on 127.0.0.1) still completes, and the process exits 0.
Also: the separate IMGPROXY_PROMETHEUS_BIND listener, and JSON logs on stderr.

Every step waits for what the server does (a request reaching the origin, /ready,
/metrics, the listener closing, log lines), never for a time that suits one machine."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import urllib.request
from pathlib import Path

import aiohttp
import pytest
import pyvips

from conftest import LOOPBACK, TEST_KEY, Origin, ServerProcess, signed, wait_for, wait_until
from imagegen import jpeg, load

pytestmark = pytest.mark.timeout(60)


def start(serve, images: Path, **env: str) -> tuple[ServerProcess, str]:  # type: ignore[no-untyped-def]
    """The server with JSON logs and a separate metrics listener; and that listener's URL."""
    server = serve(IMGPROXY_WORKERS="2", IMGPROXY_LOCAL_FILESYSTEM_ROOT=str(images),
                   IMGPROXY_PROMETHEUS_BIND="127.0.0.1:0", VIPSGATE_LOG_FORMAT="json",
                   **LOOPBACK, **env)
    [metrics] = server.stdout.wait_for(r"metrics on (http://\S+?)/metrics")
    return server, metrics.group(1)


def held_image(origin: Origin) -> str:
    """An image on the origin that is only answered once the test releases it."""
    return origin.add("/slow.jpg", jpeg(400, 300), hold=True)


def messages(lines: list[str]) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in lines]  # every stderr line is JSON


def first(said: list[str], prefix: str) -> int:
    """Where the first message starting with ``prefix`` is."""
    return next(i for i, message in enumerate(said) if message.startswith(prefix))


async def test_sigterm_drains_then_finishes_in_flight(images, origin, serve):
    # a drain delay longer than the test: the second SIGTERM ends it when the test has
    # seen the draining server (the delay running out is test_requests_past_...)
    server, metrics_url = start(serve, images, VIPSGATE_DRAIN_DELAY="60",
                                IMGPROXY_GRACEFUL_STOP_TIMEOUT="20")
    path = signed(f"/rs:fit:100:100/plain/{held_image(origin)}")
    probes = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    async with aiohttp.ClientSession() as client, probes:
        assert (await probes.get(server.url("/ready"))).status == 200
        in_flight = asyncio.ensure_future(client.get(server.url(path)))
        await origin.arrived()  # the request is waiting on the origin

        metrics = await (await probes.get(metrics_url + "/")).text()  # any path
        assert re.search(r"^vipsgate_requests_in_flight 1\.0$", metrics, re.M)
        assert re.search(r"^process_resident_memory_bytes [1-9]", metrics, re.M)

        server.signal(signal.SIGTERM)

        async def not_ready() -> bool:
            response = await probes.get(server.url("/ready"))
            return response.status == 503 and "draining" in await response.text()
        await wait_until(not_ready, interval=0.02)
        assert (await probes.get(server.url("/health"))).status == 200  # still serving
        metrics = await (await probes.get(metrics_url + "/metrics")).text()
        assert re.search(r"^vipsgate_draining 1\.0$", metrics, re.M)

        server.signal(signal.SIGTERM)  # a second signal ends the drain delay

        async def listener_closed() -> bool:
            try:
                await probes.get(server.url("/health"))
            except aiohttp.ClientConnectionError:
                return True
            return False
        await wait_until(listener_closed, interval=0.02)
        assert not in_flight.done()

        origin.release()
        response = await asyncio.wait_for(in_flight, 10)
        assert response.status == 200
        assert response.headers["Connection"].lower() == "close"  # answered while draining
        assert load(await response.read()).width == 100
    assert await asyncio.to_thread(server.wait, 20) == 0

    lines = server.stderr.rest()
    entries = messages(lines)
    said = [e["msg"] for e in entries]
    sigterm, closing = first(said, "SIGTERM received"), first(said, "closing the listener")
    [served] = [i for i, e in enumerate(entries)
                if e["logger"] == "vipsgate.access" and e["source"] == "http"]
    assert sigterm < closing < served
    assert entries[served]["status"] == 200 and entries[served]["path"].startswith("/<sig>/")
    assert said[-1] == "stopped"
    text = "\n".join(lines)
    assert path.split("/")[1] not in text and TEST_KEY not in text


async def test_requests_past_the_grace_period_are_cut(images, origin, serve):
    """The drain delay runs out by itself, the listener closes, and a request still
    waiting when the grace period ends is cut (the origin never answers it)."""
    server, _ = start(serve, images, VIPSGATE_DRAIN_DELAY="0.2",
                      IMGPROXY_GRACEFUL_STOP_TIMEOUT="0.5")
    async with aiohttp.ClientSession() as client:
        in_flight = asyncio.ensure_future(
            client.get(server.url(signed(f"/rs:fit:100:100/plain/{held_image(origin)}"))))
        await origin.arrived()
        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait, 15) == 0
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(in_flight, 5)
    entries = messages(server.stderr.rest())
    said = [e["msg"] for e in entries]
    assert first(said, "SIGTERM received") < first(said, "closing the listener")
    assert said[-1] == "stopped"
    cut = [e for e in entries if e["logger"] == "vipsgate.access"]
    assert [(e["status"], e["error"]) for e in cut] == [(499, "cancelled")]


def test_exit_is_not_held_up_by_a_running_libvips_call(tmp_path, serve):
    """A long blur still in a worker thread when the grace period ends neither keeps
    the process alive (Python would otherwise join the thread at exit) nor runs on:
    its request is cancelled, which throws the job's kill switch.

    The test waits for the job to reach a worker (/metrics), not for a time. The job
    (a 48 MP blur, sharpen and PNG) needs tens of seconds of libvips here, far more than
    the second from SIGTERM to exit; the server warns when it leaves with an image still
    in libvips, and it does not: the job was stopped, not abandoned."""
    pyvips.Image.gaussnoise(3000, 2000).cast("uchar").jpegsave(str(tmp_path / "big.jpg"))
    server = serve(IMGPROXY_LOCAL_FILESYSTEM_ROOT=str(tmp_path), IMGPROXY_WORKERS="1",
                   IMGPROXY_GRACEFUL_STOP_TIMEOUT="0.5", IMGPROXY_TIMEOUT="120",
                   IMGPROXY_MAX_RESULT_DIMENSION="0", VIPSGATE_LOG_LEVEL="warning")
    path = signed("/bl:50/sh:10/rs:fit:8000:6000:1/plain/local:///big.jpg@png")  # 48 MP
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_for(lambda: "vipsgate_workers_busy 1.0" in scrape(server), 20, interval=0.05,
                 what="the request reaching a worker")
        server.signal(signal.SIGTERM)
        assert server.wait(15) == 0
        try:
            answer = sock.recv(65536)
        except ConnectionResetError:
            answer = b""
    assert answer == b""  # never answered: the connection just closed
    assert not any("still in libvips" in line for line in server.stderr.rest())


def scrape(server: ServerProcess) -> str:
    with urllib.request.urlopen(server.url("/metrics"), timeout=5) as answer:
        return answer.read().decode()
