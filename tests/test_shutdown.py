"""Graceful shutdown of the real ``vipsgate serve`` process: SIGTERM flips /ready to 503,
serving continues for the drain delay, the listener closes, the in-flight request
(held by a slow origin on 127.0.0.1) still completes, and the process exits 0.
Also: the separate IMGPROXY_PROMETHEUS_BIND listener, and JSON logs on stderr."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from conftest import ROOT, TEST_KEY, TEST_SALT, signed
from imagegen import jpeg, load

pytestmark = pytest.mark.timeout(60)


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    base: str
    metrics: str

    async def stop_output(self) -> list[str]:
        """Wait for the exit; stderr lines."""
        assert self.proc.stderr is not None
        err = await self.proc.stderr.read()
        await self.proc.wait()
        return err.decode().splitlines()


async def start_server(images: str, **env: str) -> Server:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("IMGPROXY_", "VIPSGATE_"))}
    clean.update({"IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT,
                  "IMGPROXY_WORKERS": "2", "IMGPROXY_LOCAL_FILESYSTEM_ROOT": images,
                  "IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES": "true",
                  "IMGPROXY_PROMETHEUS_BIND": "127.0.0.1:0", "VIPSGATE_LOG_FORMAT": "json"})
    clean.update(env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1", "--port", "0",
        cwd=ROOT, env=clean, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    found: dict[str, str] = {}
    async with asyncio.timeout(30):
        while len(found) < 2:
            line = (await proc.stdout.readline()).decode()
            assert line, "server exited before listening"
            match = re.search(r"(listening|metrics) on (http://\S+?)(/metrics)?(\s|$)", line)
            if match:
                found[match.group(1)] = match.group(2)
    return Server(proc, found["listening"], found["metrics"])


@pytest.fixture
async def slow_origin(aiohttp_server) -> AsyncIterator[tuple[str, asyncio.Event, asyncio.Event]]:
    """An HTTP origin that answers only once the test sets ``release``."""
    got, release = asyncio.Event(), asyncio.Event()
    image = jpeg(400, 300)

    async def slow(request: web.Request) -> web.Response:
        got.set()
        await release.wait()
        return web.Response(body=image, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/slow.jpg", slow)
    origin = await aiohttp_server(app)
    yield f"http://127.0.0.1:{origin.port}/slow.jpg", got, release
    release.set()


async def poll(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Repeat ``check`` until it holds (the server runs in another process)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def test_sigterm_drains_then_finishes_in_flight(images, slow_origin):
    source, got, release = slow_origin
    server = await start_server(str(images), VIPSGATE_DRAIN_DELAY="1",
                                IMGPROXY_GRACEFUL_STOP_TIMEOUT="20")
    path = signed(f"/rs:fit:100:100/plain/{source}")
    probes = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    async with aiohttp.ClientSession() as client, probes:
        assert (await probes.get(server.base + "/ready")).status == 200
        in_flight = asyncio.ensure_future(client.get(server.base + path))
        await asyncio.wait_for(got.wait(), 10)  # the request is waiting on the origin

        metrics = await (await probes.get(server.metrics + "/")).text()  # any path
        assert re.search(r"^vipsgate_requests_in_flight 1\.0$", metrics, re.M)
        assert re.search(r"^process_resident_memory_bytes [1-9]", metrics, re.M)

        server.proc.send_signal(signal.SIGTERM)

        async def not_ready() -> bool:
            response = await probes.get(server.base + "/ready")
            return response.status == 503 and "draining" in await response.text()
        await poll(not_ready)
        metrics = await (await probes.get(server.metrics + "/metrics")).text()
        assert re.search(r"^vipsgate_draining 1\.0$", metrics, re.M)

        async def listener_closed() -> bool:
            try:
                await probes.get(server.base + "/health")
            except aiohttp.ClientConnectionError:
                return True
            return False
        await poll(listener_closed)
        assert not in_flight.done()

        release.set()
        response = await asyncio.wait_for(in_flight, 10)
        assert response.status == 200
        assert response.headers["Connection"].lower() == "close"  # answered while draining
        assert load(await response.read()).width == 100
    lines = await asyncio.wait_for(server.stop_output(), 20)
    assert server.proc.returncode == 0

    entries = [json.loads(line) for line in lines]  # every stderr line is JSON
    messages = [e["msg"] for e in entries]
    sigterm = next(i for i, m in enumerate(messages) if m.startswith("SIGTERM received"))
    closing = next(i for i, m in enumerate(messages) if m.startswith("closing the listener"))
    [served] = [i for i, e in enumerate(entries)
                if e["logger"] == "vipsgate.access" and e["source"] == "http"]
    assert sigterm < closing < served
    assert entries[served]["status"] == 200 and entries[served]["path"].startswith("/<sig>/")
    assert messages[-1] == "stopped"
    text = "\n".join(lines)
    assert path.split("/")[1] not in text and TEST_KEY not in text


async def test_requests_past_the_grace_period_are_cut(images, slow_origin):
    source, got, _release = slow_origin
    server = await start_server(str(images), IMGPROXY_GRACEFUL_STOP_TIMEOUT="0.5")
    async with aiohttp.ClientSession() as client:
        in_flight = asyncio.ensure_future(
            client.get(server.base + signed(f"/rs:fit:100:100/plain/{source}")))
        await asyncio.wait_for(got.wait(), 10)
        server.proc.send_signal(signal.SIGTERM)
        lines = await asyncio.wait_for(server.stop_output(), 15)
        assert server.proc.returncode == 0
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(in_flight, 5)
    cut = [json.loads(line) for line in lines if '"vipsgate.access"' in line]
    assert [(e["status"], e["error"]) for e in cut] == [(499, "cancelled")]


def test_exit_is_not_held_up_by_a_running_libvips_call(tmp_path):
    """A long blur still in a worker thread when the grace period ends does not keep
    the process alive (Python would otherwise join the thread at exit)."""
    import pyvips
    pyvips.Image.gaussnoise(3000, 2000).cast("uchar").jpegsave(str(tmp_path / "big.jpg"))
    port = _free_port_for_exit()
    env = {**os.environ, "IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT,
           "IMGPROXY_LOCAL_FILESYSTEM_ROOT": str(tmp_path), "IMGPROXY_WORKERS": "1",
           "IMGPROXY_GRACEFUL_STOP_TIMEOUT": "0.5", "IMGPROXY_TIMEOUT": "60",
           "VIPSGATE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening" in proc.stdout.readline()
        # about 17 s of libvips work on this machine (blur + sharpen at 48 MP)
        path = signed("/bl:50/sh:10/rs:fit:8000:6000:1/plain/local:///big.jpg@png")
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        deadline = time.monotonic() + 20
        while "vipsgate_workers_busy 1.0" not in _scrape(port):
            assert time.monotonic() < deadline, "the request never reached a worker"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - started < 8
        sock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _free_port_for_exit() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return answer.read().decode()
