"""Memory bombs and huge results (issue 24, defects 1, 2 and 8), against a real
``vipsgate serve`` with its default limits: each hostile file answers 422 (or a valid
200) in time, the server's peak resident memory grows by less than 256 MiB for any one
of them, and its resident memory returns near idle afterwards.

The peak is the kernel's high-water mark (``VmHWM``), reset before each request by
writing 5 to ``/proc/PID/clear_refs``. The files are generated (``hostilegen``); the
issue's originals were larger versions of the same classes (49,000,000 x 1 instead
of 1,000,000 x 1, and so on): each class is refused before its size matters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from conftest import ServeFactory, ServerProcess, signed, wait_until
from hostilegen import blank_png, jpeg_with_scans, noise_png, svg_embedding, svg_with_text

MIB = 1 << 20
GROWTH = 256 * MIB  # the most one request may add to the server's resident memory
DEADLINE = 10.0

#: name -> (the file's maker, URL options, Accept, expected status)
CASES: dict[str, tuple[Callable[[], bytes], str, str, int]] = {
    "wide-16bit.png": (lambda: blank_png(1_000_000, 1, depth=16), "rs:fit:300:300", "", 422),
    "wide-2-rows.png": (lambda: blank_png(1_000_000, 2), "rs:fit:300:300", "", 422),
    "wide-but-allowed.png": (lambda: blank_png(65535, 16, depth=16), "rs:fit:300:300", "",
                             200),
    "svg-embedding-64mp.svg": (lambda: svg_embedding(blank_png(8000, 8000, colour=False)),
                               "rs:fit:300:300", "", 422),
    "svg-embedding-4mp.svg": (lambda: svg_embedding(blank_png(2000, 2000, colour=False)),
                              "rs:fit:300:300", "", 200),
    "svg-text-1m.svg": (lambda: svg_with_text(1_000_000), "rs:fit:300:300", "", 422),
    "svg-text-2k.svg": (lambda: svg_with_text(2_000), "rs:fit:300:300", "", 200),
    "jpeg-scans.jpg": (lambda: jpeg_with_scans(2000, 1000), "rs:fit:300:300", "", 422),
    "logo-to-8192-avif.png": (lambda: noise_png(600), "rs:fit:8192:8192:1", "image/avif,*/*",
                              422),
    "tiny-to-8192.png": (lambda: blank_png(8, 8), "rs:fit:8192:8192:1", "", 422),
}


class PeakMemory:
    """A process's resident memory and its peak since ``reset`` (Linux)."""

    def __init__(self, pid: int) -> None:
        self.proc = Path(f"/proc/{pid}")

    def _status(self, field: str) -> int:
        for line in (self.proc / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in {self.proc}/status")

    @property
    def resident(self) -> int:
        return self._status("VmRSS")

    @property
    def peak(self) -> int:
        return self._status("VmHWM")

    def reset(self) -> None:
        (self.proc / "clear_refs").write_text("5")


@pytest.fixture(scope="module")
def hostile_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bombs")
    for name, (make, *_) in CASES.items():
        (root / name).write_bytes(make())
    return root


def start(serve: ServeFactory, root: Path) -> tuple[ServerProcess, PeakMemory]:
    server = serve(IMGPROXY_LOCAL_FILESYSTEM_ROOT=str(root), IMGPROXY_TIMEOUT=str(DEADLINE),
                   IMGPROXY_FREE_MEMORY_INTERVAL="1")
    memory = PeakMemory(server.pid)
    try:
        memory.reset()
    except OSError:
        pytest.skip("resetting the peak resident memory needs /proc/PID/clear_refs (root)")
    return server, memory


async def test_each_hostile_request_is_bounded(serve: ServeFactory, hostile_root: Path) -> None:
    server, memory = start(serve, hostile_root)
    async with aiohttp.ClientSession() as session:
        tiny = signed("/rs:fit:10:10/plain/local:///tiny-to-8192.png")
        async with session.get(server.url(tiny)) as warm:
            assert warm.status == 200  # libvips and the worker threads are up before measuring
        idle = memory.resident
        report = {}
        for name, (_, options, accept, status) in CASES.items():
            before = memory.resident
            memory.reset()
            started = time.monotonic()
            async with session.get(server.url(signed(f"/{options}/plain/local:///{name}")),
                                   headers={"Accept": accept} if accept else {}) as response:
                body = await response.read()
                elapsed = time.monotonic() - started
                report[name] = (response.status, round(elapsed, 2),
                                (memory.peak - before) // MIB)
                assert response.status == status, (name, response.status, body[:200])
            assert elapsed < DEADLINE, (name, elapsed)
            assert memory.peak - before < GROWTH, (name, report[name])
        async with session.get(server.url("/health")) as health:
            assert health.status == 200
        # what the requests allocated goes back (freed, then trimmed within a second)
        await wait_until(lambda: memory.resident - idle < 64 * MIB, timeout=15)
    print(report)
