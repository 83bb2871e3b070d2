"""Streaming sources, measured: overlap, memory, slow origins, the 49 MP flood.

    python loadtest/streaming.py [--before /path/to/other/checkout] [--only overlap,...]

A throttled origin (``throttled_origin.py``, its own process) serves generated JPEGs
at a chosen rate; the server under test (this checkout, and with ``--before`` another
one, in the same run) fetches them over loopback. Scenarios:

* ``overlap``: a 5.3 MB 12 MP JPEG at 4 MiB/s -> ``rs:fit:300:300``: the time from the
  origin's last byte to the answer, against the time the same job takes once the
  source is in the originals cache (median of 3, a fresh source each time).
* ``memory``: 16 concurrent distinct 7 MB sources at 2 MiB/s each: the server's RSS
  growth against the bytes in flight (112 MB), and the answers.
* ``starve``: cold W1 (1080p -> fit 300x200) req/s alone, then while 32 requests for
  5.3 MB sources at 1 MiB/s each are kept in flight; and the share of the server's CPU
  the slow requests' own images took meanwhile (what W1 can keep at most).
* ``flood``: the thumbor OOM report: 150 concurrent cold requests for 49 MP JPEGs
  (8.9 MB) -> ``rs:fit:300:300``, one process, the Helm chart's settings: peak RSS
  against the chart's 512 MiB limit, and the answers (200, or 429/503 + Retry-After).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest import floor
from loadtest.bench import WORKLOADS, cold_paths, path_op
from loadtest.common import (
    Origin,
    RssSampler,
    Server,
    _photo,
    free_port,
    http_load,
    no_metadata,
    rss_bytes,
    source_path,
    write_sources,
)
from loadtest.paired import server_for

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20
LOOPBACK = {"IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES": "1", "IMGPROXY_TIMEOUT": "60",
            "IMGPROXY_DOWNLOAD_TIMEOUT": "60"}
#: the Helm chart's defaults (helm/vipsgate/values.yaml) and what ``auto`` gives at 512 MiB
CHART = {"IMGPROXY_WORKERS": "2", "IMGPROXY_REQUESTS_QUEUE_SIZE": "64",
         "IMGPROXY_MAX_SRC_RESOLUTION": "50", "IMGPROXY_MAX_SRC_FILE_SIZE": "20971520",
         "VIPSGATE_RESULT_CACHE_BYTES": "134217728",
         "VIPSGATE_SOURCE_CACHE_BYTES": "67108864", "VIPSGATE_MEMORY_BUDGET": "144MiB"}


def noisy_jpeg(width: int, height: int, quality: int) -> bytes:
    import pyvips
    noise = pyvips.Image.gaussnoise(width, height, sigma=12)
    image = (_photo(width, height) + noise.bandjoin([noise, noise])).cast("uchar")
    return image.copy(interpretation="srgb").jpegsave_buffer(Q=quality, **no_metadata())


def make_sources(root: Path, only: list[str]) -> None:
    write_sources(root)  # W1's photo_1080.jpg, for the local:/// load
    (root / "12mp.jpg").write_bytes(noisy_jpeg(4000, 3000, 92))  # ~5.3 MB
    if "memory" in only:
        (root / "7mb.jpg").write_bytes(noisy_jpeg(4000, 3000, 94))
    if "flood" in only:
        (root / "49mp.jpg").write_bytes(noisy_jpeg(7000, 7000, 85))  # ~8.9 MB


async def get(session: aiohttp.ClientSession, port: int, path: str) -> tuple[int, float, dict]:
    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
        await response.read()
        return response.status, time.monotonic(), dict(response.headers)


async def overlap(server: Server, origin: Origin, run: str) -> dict[str, Any]:
    assert server.port
    after_last, cached = [], []
    async with aiohttp.ClientSession() as session:
        for n in range(3):
            url = origin.url(f"{run}-overlap{n}", "12mp.jpg", rate=4 * MiB)
            status, answered, _ = await get(session, server.port, source_path(url))
            assert status == 200, status
            async with session.get(f"http://127.0.0.1:{origin.port}/_last") as r:
                last = (await r.json())[f"/{run}-overlap{n}/12mp.jpg"]
            after_last.append(answered - last)
            started = time.monotonic()  # the same source, now in the originals cache
            status, done, _ = await get(session, server.port,
                                        source_path(url, "rs:fit:301:301"))
            assert status == 200, status
            cached.append(done - started)
    result = {"after_last_byte_ms": round(statistics.median(after_last) * 1000, 1),
              "from_cache_ms": round(statistics.median(cached) * 1000, 1)}
    result["ratio"] = round(result["after_last_byte_ms"] / result["from_cache_ms"], 2)
    return result


async def memory(server: Server, origin: Origin, run: str) -> dict[str, Any]:
    assert server.proc and server.port
    size = (origin.log_path.parent / "images" / "7mb.jpg").stat().st_size
    idle = rss_bytes(server.proc.pid)
    paths = [source_path(origin.url(f"{run}-mem{n}", "7mb.jpg", rate=2 * MiB))
             for n in range(16)]
    with RssSampler(server.proc.pid) as rss:
        async with aiohttp.ClientSession() as session:
            answers = await asyncio.gather(*(get(session, server.port, p) for p in paths))
    statuses = sorted(status for status, _, _ in answers)
    growth = rss.peak - idle
    return {"idle_mb": round(idle / MiB, 1), "peak_mb": round(rss.peak / MiB, 1),
            "in_flight_mb": round(16 * size / MiB, 1), "growth_mb": round(growth / MiB, 1),
            "ratio": round(growth / (16 * size), 2), "statuses": statuses}


def image_cpu_ms(data: bytes, options: str = "rs:fit:300:300") -> float:
    """CPU ms of one ``process()`` of ``data`` in this process, from memory (the cheapest
    way the server can make that image; aiohttp's client sends ``Accept: */*``, so
    JPEG): the median of 5 after a warm-up."""
    op = path_op(f"/{options}/plain/local:///source.jpg", data, accept="*/*")
    return floor.cpu_medians({"image": op}, rounds=5, calls=1)["image"]


async def starve(server: Server, origin: Origin, run: str, duration: float) -> dict[str, Any]:
    """W1's req/s alone and beside 32 slow downloads. The slow requests' images are real
    work (a 5.3 MB 12 MP JPEG each), so W1 keeps at most the CPU they leave: ``ceiling``
    is 1 - (slow images finished per second in W1's window x the CPU one costs from
    memory in ``process()``) / (the server's CPU per second under W1 alone), and
    ``efficiency`` is the ratio against that ceiling (above 1: the slow images cost less
    than their share, or W1 used the CPU the client left idle)."""
    assert server.proc and server.port
    w1 = next(w for w in WORKLOADS if w.name == "W1")

    statuses: dict[str, dict[int, int]] = {}
    cpu_per_second: list[float] = []

    def load(offset: int) -> float:
        paths = cold_paths(w1, 4000, offset)
        stats = http_load(server.port or 0, paths, 32, duration, 1.0, {}, server.proc.pid)
        statuses["alone" if offset == 0 else "with_slow"] = stats.statuses
        cpu_per_second.append(stats.cpu / (duration + 1.0))
        return stats.rate

    alone = await asyncio.to_thread(load, 0)
    stop = asyncio.Event()
    counter = iter(range(10**6))
    finished: list[float] = []

    async def slow_client(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            url = origin.url(f"{run}-slow{next(counter)}", "12mp.jpg", rate=MiB)
            status, done, _ = await get(session, server.port or 0, source_path(url))
            if status == 200:
                finished.append(done)

    async with aiohttp.ClientSession() as session:
        slow = [asyncio.create_task(slow_client(session)) for _ in range(32)]
        await asyncio.sleep(2.0)  # let the 32 slow downloads get going
        started = time.monotonic()
        busy = await asyncio.to_thread(load, 100_000)
        window = time.monotonic() - started
        stop.set()
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
    slow_rate = sum(t >= started for t in finished) / window
    image_ms = image_cpu_ms((origin.log_path.parent / "images" / "12mp.jpg").read_bytes())
    slow_share = min(1.0, slow_rate * image_ms / 1000 / cpu_per_second[0])
    ratio = busy / alone
    return {"alone_rps": round(alone, 1), "with_slow_rps": round(busy, 1),
            "ratio": round(ratio, 2), "slow_images_per_s": round(slow_rate, 2),
            "slow_image_cpu_ms": round(image_ms, 1),
            "server_cpu_alone": round(cpu_per_second[0], 2),
            "ceiling": round(1 - slow_share, 2),
            "efficiency": round(ratio / (1 - slow_share), 2) if slow_share < 1 else None,
            "w1_statuses": statuses}


async def flood(server: Server, origin: Origin, run: str) -> dict[str, Any]:
    assert server.proc and server.port
    paths = [source_path(origin.url(f"{run}-flood{n}", "49mp.jpg")) for n in range(150)]
    statuses: dict[str, int] = {}
    with RssSampler(server.proc.pid) as rss:
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=200)) as session:
            answers = await asyncio.gather(*(get(session, server.port, p) for p in paths))
    for status, _, headers in answers:
        key = str(status) + ("+Retry-After" if "Retry-After" in headers else "")
        statuses[key] = statuses.get(key, 0) + 1
    return {"peak_mb": round(rss.peak / MiB, 1), "limit_mb": 512, "statuses": statuses}


async def measure(scenario: str, server: Server, origin: Origin, run: str,
                  duration: float) -> dict[str, Any]:
    if scenario == "overlap":
        return await overlap(server, origin, run)
    if scenario == "memory":
        return await memory(server, origin, run)
    if scenario == "starve":
        return await starve(server, origin, run, duration)
    return await flood(server, origin, run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="another checkout, measured alike")
    parser.add_argument("--only", default="overlap,memory,starve,flood",
                        type=lambda v: v.split(","))
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per W1 load")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vipsgate-streaming-"))
    (tmp / "images").mkdir()
    make_sources(tmp / "images", args.only)
    sides = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    report: dict[str, dict[str, Any]] = {}
    with Origin(tmp / "images", tmp / "origin.log") as origin:
        for side, checkout in sides.items():
            for scenario in args.only:
                env = {**LOOPBACK, **(CHART if scenario == "flood" else {})}
                server = server_for(checkout, tmp / "images", tmp / f"{side}.log",
                                    int(env.get("IMGPROXY_WORKERS", "4")), env)
                server.port = free_port()
                with server:
                    result = asyncio.run(measure(scenario, server, origin, f"{side}-{scenario}",
                                                 args.duration))
                report.setdefault(scenario, {})[side] = result
                print(f"{scenario:8s} {side:6s} {json.dumps(result)}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
