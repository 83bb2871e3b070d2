"""Worker processes that die or hang are replaced (issue 24, defect 4), with a real
``vipsgate serve`` and ``VIPSGATE_EXECUTOR=process``: a SIGKILLed worker (as the OOM
killer would) is followed by served requests within seconds, and a job stuck where
libvips' kill flag cannot reach (an AVIF encoder) is killed just past its deadline."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest
import pyvips

from conftest import ServeFactory, ServerProcess, signed, wait_until


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("recovery")
    pyvips.Image.black(64, 64).pngsave(str(root / "small.png"))
    noise = pyvips.Image.gaussnoise(1200, 1200, sigma=60, mean=128).cast("uchar")
    noise.bandjoin([noise, noise]).copy(interpretation="srgb").pngsave(str(root / "noise.png"))
    return root


def workers_of(server: ServerProcess) -> list[int]:
    """The worker processes' ids (children started by multiprocessing's spawn)."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return [int(pid) for pid in children
            if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()
            and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]


async def metric(session: aiohttp.ClientSession, server: ServerProcess, name: str) -> float:
    async with session.get(server.url("/metrics")) as response:
        for line in (await response.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def start(serve: ServeFactory, root: Path, **env: str) -> ServerProcess:
    return serve(IMGPROXY_LOCAL_FILESYSTEM_ROOT=str(root), VIPSGATE_EXECUTOR="process",
                 IMGPROXY_WORKERS="2", **env)


async def test_a_killed_worker_process_is_replaced(serve: ServeFactory, sources: Path) -> None:
    server = start(serve, sources)
    async with aiohttp.ClientSession() as session:
        async def get(n: int) -> int:
            path = signed(f"/rs:fit:{n}:{n}/plain/local:///small.png")
            async with session.get(server.url(path)) as response:
                return response.status

        assert await get(10) == 200
        victims = workers_of(server)
        assert victims, "no worker processes found"
        os.kill(victims[0], signal.SIGKILL)
        killed = time.monotonic()
        # at most the requests already bound to the dead pool fail; then all are served
        statuses = [await get(n) for n in range(11, 16)]
        assert statuses[-3:] == [200, 200, 200], statuses
        assert set(statuses) <= {200, 503}, statuses
        assert time.monotonic() - killed < 20
        async with session.get(server.url("/health")) as health:
            assert health.status == 200
        assert await metric(session, server, "vipsgate_workers_replaced") >= 1
        assert victims[0] not in workers_of(server)


async def test_a_worker_stuck_past_its_deadline_is_killed(serve: ServeFactory,
                                                          sources: Path) -> None:
    """The slowest AVIF encoder on 1.4 MP of noise runs for minutes, none of them
    in libvips' tile loop: only killing its process ends it."""
    server = start(serve, sources, IMGPROXY_TIMEOUT="2", IMGPROXY_AVIF_SPEED="0")
    async with aiohttp.ClientSession() as session:
        path = signed("/rs:fit:0:0/plain/local:///noise.png@avif")
        async with session.get(server.url(path)) as response:
            assert response.status == 503
        answered = time.monotonic()

        async def idle() -> bool:
            return await metric(session, server, "vipsgate_workers_busy") == 0

        await wait_until(idle, timeout=10)
        assert time.monotonic() - answered < 1.0
        assert await metric(session, server, "vipsgate_workers_replaced") == 1

        async def ready() -> bool:  # not while the new worker processes start
            async with session.get(server.url("/ready")) as response:
                return response.status == 200

        await wait_until(ready, timeout=20)
        small = signed("/rs:fit:10:10/plain/local:///small.png")
        async with session.get(server.url(small)) as response:
            assert response.status == 200


async def test_worker_processes_die_with_the_server(serve: ServeFactory, sources: Path) -> None:
    """A SIGKILLed server (as the OOM killer would) leaves no worker process behind,
    still using CPU for nobody."""
    server = start(serve, sources)
    path = server.url(signed("/rs:fit:9:9/plain/local:///small.png"))
    async with aiohttp.ClientSession() as session, session.get(path) as response:
        assert response.status == 200
    workers = workers_of(server)
    assert workers
    server.signal(signal.SIGKILL)
    server.wait()
    await wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers),
                     timeout=10)
