"""The flood benchmark's clients (``flood.py``): a raw HTTP/1.1 connection, closed-loop
load, the flood's clients, the side observer (hits, ``/health``, ``/metrics``, RSS) and
CPU accounting. Traffic goes to 127.0.0.1 only; every loop ends at a given time.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from loadtest.bench import MODERN_ACCEPT
from loadtest.common import cpu_seconds, rss_bytes

RAMP = 2.0  # seconds of flood before the measured window
CLIENT_TIMEOUT = 30.0  # a request unanswered this long counts as failed
SHED = (429, 503)


def run_loop(coro: Any) -> Any:
    try:
        import uvloop
        return uvloop.run(coro)
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)


class Connection:
    """One keep-alive connection to 127.0.0.1:port, reopened after any failure."""

    def __init__(self, port: int, close: bool = False) -> None:
        self.port, self.close_each = port, close
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str, headers: bytes = b""
                  ) -> tuple[int, dict[bytes, bytes], bytes]:
        """Status, headers (lower-case names) and body of one GET; status 0 when it
        failed."""
        try:
            async with asyncio.timeout(CLIENT_TIMEOUT):
                if self.streams is None:
                    self.streams = await asyncio.open_connection("127.0.0.1", self.port)
                reader, writer = self.streams
                writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             + (b"Connection: close\r\n" if self.close_each else b"")
                             + headers + b"\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                found = {}
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    found[name.strip().lower()] = value.strip()
                length = found.get(b"content-length")
                body = await (reader.read() if length is None
                              else reader.readexactly(int(length)))
                if self.close_each or found.get(b"connection", b"").lower() == b"close":
                    self.drop()
                return int(head[9:12]), found, body
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            self.drop()
            return 0, {}, b""

    def drop(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


class CpuWindow:
    """CPU seconds over a block: the server's, this process's and the whole machine's
    (what is left is other tenants': the noise of a shared machine)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.server = self.own = self.machine = 0.0

    def _read(self) -> tuple[float, float, float]:
        ticks = [int(v) for v in open("/proc/stat").readline().split()[1:9]]  # noqa: SIM115
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # not idle/io
        own = os.times()
        return cpu_seconds(self.pid), own.user + own.system, busy

    def __enter__(self) -> CpuWindow:
        self.started, self.at = self._read(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        self.seconds = time.monotonic() - self.at
        self.server, self.own, self.machine = (
            b - a for a, b in zip(self.started, end, strict=True))

    def foreign_cores(self, also: float = 0.0) -> float:
        """CPUs used by other processes on average (``also``: more of our own)."""
        return round((self.machine - self.server - self.own - also) / self.seconds, 2)


async def closed_loop(port: int, paths: Iterator[str], clients: int, duration: float,
                      warmup: float = 1.0) -> tuple[float, int]:
    """200s per second from ``clients`` closed-loop clients after ``warmup`` s, and the
    200s in all."""
    start = time.monotonic()
    measure_from, until = start + warmup, start + warmup + duration
    done = total = 0
    accept = f"Accept: {MODERN_ACCEPT}\r\n".encode()

    async def client() -> None:
        nonlocal done, total
        conn = Connection(port)
        while time.monotonic() < until:
            status, _, _ = await conn.get(next(paths), accept)
            total += status == 200
            if status == 200 and measure_from <= time.monotonic() <= until:
                done += 1
        conn.drop()

    await asyncio.gather(*(client() for _ in range(clients)))
    return done / duration, total


@dataclass
class FloodStats:
    useful: int = 0  # 200s in the measured window
    completed: int = 0  # 200s from the start (for CPU per image)
    shed_latencies: list[float] = field(default_factory=list)  # refused, asked in time
    retry_latencies: list[float] = field(default_factory=list)  # refused early retries
    shed_without_retry_after: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


async def flood_clients(port: int, paths: Iterator[str], clients: int, start: float,
                        duration: float, storm: bool) -> FloodStats:
    measure_from, until = start + RAMP, start + RAMP + duration
    stats = FloodStats()
    accept = f"Accept: {MODERN_ACCEPT}\r\n".encode()
    clock = time.perf_counter

    async def client() -> None:
        conn = Connection(port)
        path, retry = next(paths), False
        while time.monotonic() < until:
            sent = clock()
            status, headers, _ = await conn.get(path, accept)
            took, now = clock() - sent, time.monotonic()
            if status == 200:
                stats.completed += 1
            measured = measure_from <= now <= until
            if measured:
                stats.statuses[status] = stats.statuses.get(status, 0) + 1
            if status == 200:
                stats.useful += measured
                path, retry = next(paths), False
                continue
            retry_after = headers.get(b"retry-after")
            if status in SHED and measured:
                early = retry and storm  # before the Retry-After it was given
                (stats.retry_latencies if early else stats.shed_latencies).append(took)
                stats.shed_without_retry_after += retry_after is None
            retry = True
            if not storm:  # a well-behaved client: wait as told, then the same URL
                wait = float(retry_after) if retry_after else 1.0
                await asyncio.sleep(min(wait, until - time.monotonic()))
        conn.drop()

    await asyncio.gather(*(client() for _ in range(clients)))
    return stats


async def observe(port: int, pid: int, start: float, until: float, hit_path: str
                  ) -> dict[str, Any]:
    """The side client: cached hits, /health, /metrics and RSS at steady rates."""
    hits: list[float] = []
    health: list[float] = []
    failed = {"hit": 0, "health": 0}
    gauges: dict[str, float] = {}
    peak_rss = 0

    async def every(interval: float, probe: Any) -> None:
        tick = start
        while tick < until:
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            await probe()
            tick += interval

    hit_conn, metrics_conn = Connection(port), Connection(port)

    async def hit() -> None:
        sent = time.perf_counter()
        status, _, _ = await hit_conn.get(hit_path, f"Accept: {MODERN_ACCEPT}\r\n".encode())
        hits.append(time.perf_counter() - sent)
        failed["hit"] += status != 200

    async def probe_health() -> None:
        sent = time.perf_counter()
        status, _, _ = await Connection(port, close=True).get("/health")
        health.append(time.perf_counter() - sent)
        failed["health"] += status != 200

    async def scrape() -> None:
        nonlocal peak_rss
        peak_rss = max(peak_rss, rss_bytes(pid))
        status, _, body = await metrics_conn.get("/metrics")
        if status != 200:
            return
        text = body.decode(errors="replace")
        for name in ("memory_in_flight_bytes", "memory_budget_bytes", "memory_waiting",
                     "queue_depth", "workers_busy"):
            value = gauge(text, f"vipsgate_{name}")
            if value is not None:
                gauges[name] = max(gauges.get(name, 0.0), value)

    await asyncio.gather(every(0.05, hit), every(0.2, probe_health), every(0.5, scrape))
    hit_conn.drop()
    metrics_conn.drop()
    return {"hit": hits, "health": health, "failed": failed, "gauges": gauges,
            "peak_rss": peak_rss}


def gauge(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def observer_process(port: int, pid: int, duration: float, hit_path: str, inbox: Any,
                     out: Any) -> None:
    """In its own process, so the flood's client loop cannot delay what it measures;
    says when it is ready, then starts when told."""
    out.put("ready")
    start = inbox.get(timeout=60)
    begin = os.times()
    result = run_loop(observe(port, pid, start, start + duration, hit_path))
    end = os.times()
    result["cpu"] = end.user + end.system - begin.user - begin.system
    out.put(result)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(value: float) -> float:
    return round(value * 1000, 2)
