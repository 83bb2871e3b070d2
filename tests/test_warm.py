"""``vipsgate warm`` against the real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from conftest import TEST_KEY, TEST_SALT, make_settings, signed
from imagegen import jpeg
from vipsgate import warm
from vipsgate.app import create_app

FORMATS = ["avif", "webp", "jpeg"]


class ConcurrencyProbe:
    """A middleware that counts requests and the most in flight at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.paths: Counter[tuple[str, str]] = Counter()

    @web.middleware
    async def middleware(self, request, handler):  # type: ignore[no-untyped-def]
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.paths[(request.path_qs, request.headers.get("Accept", ""))] += 1
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def server(images: Path):  # type: ignore[no-untyped-def]
    for i in range(4):
        (images / f"p{i}.jpg").write_bytes(jpeg(320, 240))
    app = create_app(make_settings(images, VIPSGATE_DEBUG_HEADERS="1"))
    probe = ConcurrencyProbe()
    app.middlewares.insert(0, probe.middleware)
    async with TestServer(app, host="127.0.0.1") as srv:
        srv.probe = probe  # type: ignore[attr-defined]
        yield srv


def _urls(server: TestServer, count: int = 4) -> list[str]:
    return [str(server.make_url(signed(f"/rs:fit:{100 + i}:100/plain/local:///p{i}.jpg")))
            for i in range(count)]


async def test_every_url_once_per_format_then_cache_hits(server):
    urls = _urls(server)
    summary = await warm.warm(warm.build_jobs(urls, FORMATS), concurrency=3)
    assert summary.statuses == Counter({200: len(urls) * 3})
    assert not summary.failed
    probe = server.probe
    assert sorted(probe.paths.values()) == [1] * (len(urls) * 3)  # each URL x format once
    assert probe.peak <= 3
    async with ClientSession() as session:
        for url in urls:
            for fmt in FORMATS:
                async with session.get(url, headers={"Accept": warm.ACCEPT[fmt]}) as response:
                    assert response.status == 200
                    assert response.headers["X-Cache"] == "hit"
                    expected = {"avif": "image/avif", "webp": "image/webp",
                                "jpeg": "image/jpeg"}[fmt]
                    assert response.headers["Content-Type"] == expected


async def test_concurrency_bound_is_respected_at_the_server(server):
    urls = [str(server.make_url(signed(f"/rs:fit:{50 + i}:50/plain/local:///p{i % 4}.jpg")))
            for i in range(24)]
    summary = await warm.warm(warm.build_jobs(urls, ["jpeg"]), concurrency=2)
    assert summary.statuses[200] == 24
    assert 1 <= server.probe.peak <= 2


async def test_429_with_retry_after_is_retried(server, origin):
    """A front (the test origin) that answers 429 (Retry-After: 0) to the first try of
    each URL and passes the others on to the server."""
    async def flaky(request: web.Request) -> web.StreamResponse:
        if origin.hits[request.path] == 1:
            return web.Response(status=429, headers={"Retry-After": "0"}, text="slow down")
        async with ClientSession() as session, session.get(
                server.make_url(request.path_qs)) as upstream:
            return web.Response(status=upstream.status, body=await upstream.read())

    origin.route("/*", flaky)
    urls = [origin.base + signed("/rs:fit:80:80/plain/local:///p0.jpg")]
    summary = await warm.warm(warm.build_jobs(urls, ["jpeg"]), retries=3)
    assert summary.statuses == Counter({200: 1})
    assert summary.retries == 1
    assert list(origin.hits.values()) == [2]


async def test_permanent_failure_exits_nonzero_and_lists_url(server, tmp_path):
    good = _urls(server, 1)[0]
    bad = str(server.make_url(signed("/rs:fit:80:80/plain/local:///missing.jpg")))
    url_file = tmp_path / "urls.txt"
    url_file.write_text(f"# a comment\n{good}\n{bad}\n")
    failed = tmp_path / "failed.txt"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vipsgate", "warm", str(url_file), "--format", "jpeg",
        "--failed", str(failed), "--retries", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1, stderr.decode()
    assert failed.read_text().split() == [bad]
    assert "404: 1" in stderr.decode() and "200: 1" in stderr.decode()


async def test_build_from_sources_and_option_sets(server, tmp_path):
    sources = tmp_path / "sources.txt"
    sources.write_text("local:///p1.jpg\nlocal:///p2.jpg\n")
    base = str(server.make_url("")).rstrip("/")
    env = {"IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vipsgate", "warm", "--sources", str(sources), "--base-url", base,
        "--options", "rs:fill:60:40", "--options", "rs:fit:90:90/q:70",
        "--format", "webp", "--format", "jpeg",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    assert "200: 8" in stderr.decode()
    assert sum(server.probe.paths.values()) == 8  # 2 sources x 2 option sets x 2 formats


async def test_escaped_plain_source_keeps_its_signature(server, images):
    """A percent-escaped plain source is sent byte for byte (the signature covers it)."""
    (images / "a b@2x.jpg").write_bytes(jpeg(64, 48))
    url = str(server.make_url("")).rstrip("/") + signed(
        "/rs:fit:32:32/plain/local:///a%20b%402x.jpg@png")
    summary = await warm.warm([warm.Job(url, "")])
    assert summary.statuses == Counter({200: 1})


def test_retry_delay_honours_retry_after():
    assert warm.retry_delay({"Retry-After": "7"}, attempt=0) == 7
    assert warm.retry_delay({}, attempt=3, base=0.5) == 4.0
    assert warm.retry_delay({"Retry-After": "999"}, attempt=0, cap=30) == 30


def test_progress_plain_line_when_not_a_tty():
    stream = io.StringIO()
    progress = warm.Progress(stream, interval=0)
    summary = warm.Summary()
    summary.statuses[200] += 1
    progress.update(summary, 4)
    assert stream.getvalue().startswith("warm: 1/4 ")
