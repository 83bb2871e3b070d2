"""Abandoned work stops (issue 24, defect 2): a job past its deadline, or one nobody
waits for any more, frees its worker within a second, read from ``/metrics`` of a
real ``vipsgate serve``; with both executors.

The image is a 7071x7071 JPEG blurred at the largest sigma and written as PNG: some
seconds of libvips work (every tile of it can be stopped), against a one-second
deadline.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
import pyvips

from conftest import ServeFactory, ServerProcess, signed, wait_until

SLOW = "/rs:fit:0:0/bl:50/plain/local:///big.jpg@png"


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cancel")
    noise = pyvips.Image.gaussnoise(7071, 7071, sigma=40, mean=128).cast("uchar")
    noise.bandjoin([noise, noise]).copy(interpretation="srgb").jpegsave(str(root / "big.jpg"))
    return root


async def busy_workers(session: aiohttp.ClientSession, server: ServerProcess) -> float:
    async with session.get(server.url("/metrics")) as response:
        for line in (await response.text()).splitlines():
            if line.startswith("vipsgate_workers_busy "):
                return float(line.split()[1])
    raise AssertionError("no vipsgate_workers_busy in /metrics")


def start(serve: ServeFactory, root: Path, executor: str) -> ServerProcess:
    return serve(IMGPROXY_LOCAL_FILESYSTEM_ROOT=str(root), IMGPROXY_TIMEOUT="1",
                 IMGPROXY_WORKERS="1", VIPSGATE_EXECUTOR=executor,
                 VIPSGATE_MEMORY_BUDGET="0", IMGPROXY_MAX_RESULT_DIMENSION="0")


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_work_past_the_deadline_stops(serve: ServeFactory, big_jpeg: Path,
                                            executor: str) -> None:
    server = start(serve, big_jpeg, executor)
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url(signed(SLOW))) as response:
            assert response.status == 503, await response.text()
        answered = time.monotonic()
        await wait_until(lambda: _idle(session, server), timeout=10)
        assert time.monotonic() - answered < 1.0


async def _idle(session: aiohttp.ClientSession, server: ServerProcess) -> bool:
    return await busy_workers(session, server) == 0


async def test_work_nobody_waits_for_stops(serve: ServeFactory, big_jpeg: Path) -> None:
    """The client hangs up while its image is being made: the job is stopped (and
    nothing is cached: see the README's "Reliability")."""
    server = start(serve, big_jpeg, "thread")
    async with aiohttp.ClientSession() as session:
        request = asyncio.ensure_future(session.get(server.url(signed(SLOW))))
        await wait_until(lambda: _busy(session, server), timeout=10)
        request.cancel()  # the connection is closed
        gone = time.monotonic()
        await wait_until(lambda: _idle(session, server), timeout=10)
        assert time.monotonic() - gone < 1.0


async def _busy(session: aiohttp.ClientSession, server: ServerProcess) -> bool:
    return await busy_workers(session, server) > 0
