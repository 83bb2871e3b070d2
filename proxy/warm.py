"""``vipsgate warm``: request many URLs ahead of traffic, at a pace the origin can take.

URLs come signed, one per line (a file or stdin), or are built from sources and
option sets with the URL helper. Each URL is requested once per wanted format
(an ``Accept`` header per format, so AVIF, WebP and JPEG variants are all
warmed when the server negotiates), with bounded concurrency, an optional rate,
and retries with backoff on 429/503 that honour ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import aiohttp
from yarl import URL

ACCEPT = {
    "avif": "image/avif,image/webp,image/*;q=0.8,*/*;q=0.5",
    "webp": "image/webp,image/*;q=0.8,*/*;q=0.5",
    "jpeg": "image/*;q=0.8,*/*;q=0.5",  # an old browser: neither AVIF nor WebP
}
RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Job:
    url: str
    fmt: str  # key of ACCEPT, or "" for no Accept header


@dataclass
class Summary:
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    bytes: int = 0
    failed: list[Job] = field(default_factory=list)
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # why requests got no answer

    @property
    def done(self) -> int:
        return sum(self.statuses.values())

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class RateLimiter:
    """At most ``rate`` starts per second (evenly spaced); ``None`` means unlimited."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1 / rate if rate else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


def retry_delay(response_headers: dict[str, str] | aiohttp.typedefs.LooseHeaders,
                attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait: the server's ``Retry-After`` (seconds) or exponential backoff."""
    value = str(dict(response_headers).get("Retry-After", ""))  # type: ignore[call-overload]
    if value.strip().isdigit():
        return min(cap, float(value))
    return min(cap, base * 2 ** attempt)


def error_reason(exc: BaseException) -> str:
    """Why a request got no answer, in words: ``cannot connect to 127.0.0.1:1:
    Connection refused``, ``timed out``."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error  # asyncio's strerror repeats the address: name the errno
        cause = os.strerror(error.errno) if error.errno else str(error) or type(error).__name__
        return f"cannot connect to {exc.host}:{exc.port}: {cause}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


async def _fetch(session: aiohttp.ClientSession, job: Job, retries: int,
                 summary: Summary) -> tuple[int, float, int]:
    """(status, seconds, bytes) of the last attempt; status 0 when nothing answered, its
    reason counted in ``summary.errors``."""
    headers = {"Accept": ACCEPT[job.fmt]} if job.fmt else {}
    attempt = 0
    while True:
        started = time.perf_counter()
        reason = ""
        try:
            # encoded=True: send the path byte for byte, or escaped sources lose their signature
            async with session.get(URL(job.url, encoded=True), headers=headers) as response:
                body = await response.read()
                status = response.status
                wait = retry_delay(response.headers, attempt)
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, body, wait, reason = 0, b"", retry_delay({}, attempt), error_reason(exc)
        elapsed = time.perf_counter() - started
        retryable = status == 0 or status in RETRY_STATUSES
        if not retryable or attempt >= retries:
            if reason:
                summary.errors[reason] += 1
            return status, elapsed, len(body)
        attempt += 1
        summary.retries += 1
        await asyncio.sleep(wait)


async def warm(jobs: Sequence[Job], concurrency: int = 8, rate: float | None = None,
               retries: int = 4, timeout: float = 60.0, progress: Progress | None = None,
               headers: dict[str, str] | None = None) -> Summary:
    """Request every job once (plus retries); never more than ``concurrency`` at a time."""
    summary = Summary()
    limiter = RateLimiter(rate)
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    connector = aiohttp.TCPConnector(limit=concurrency)

    async def worker() -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await limiter.wait()
            status, elapsed, size = await _fetch(session, job, retries, summary)
            summary.statuses[status] += 1
            summary.latencies.append(elapsed)
            summary.bytes += size
            if not 200 <= status < 400:
                summary.failed.append(job)
            if progress is not None:
                progress.update(summary, len(jobs))

    async with aiohttp.ClientSession(timeout=client_timeout, connector=connector,
                                     headers=headers) as session:
        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    if progress is not None:
        progress.finish(summary, len(jobs))
    return summary


class Progress:
    """A bar on a terminal; one plain line per interval otherwise."""

    def __init__(self, stream: TextIO = sys.stderr, interval: float = 2.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, summary: Summary, total: int) -> None:
        now = time.monotonic()
        if not self.tty and now - self._last < self.interval:
            return
        self._last = now
        self.stream.write(self.line(summary, total, now))
        self.stream.flush()

    def line(self, summary: Summary, total: int, now: float) -> str:
        done = summary.done
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate else 0.0
        errors = len(summary.failed)
        text = f"{done}/{total} {rate:.1f}/s errors {errors} eta {eta:.0f}s"
        if self.tty:
            width = 30
            filled = int(width * done / max(total, 1))
            return f"\r[{'#' * filled}{'.' * (width - filled)}] {text}"
        return f"warm: {text}\n"

    def finish(self, summary: Summary, total: int) -> None:
        if self.tty:
            self.stream.write(self.line(summary, total, time.monotonic()) + "\n")
            self.stream.flush()


def read_urls(lines: Iterable[str], base_url: str = "") -> list[str]:
    """Non-empty, non-comment lines; paths are joined to ``base_url``."""
    urls = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("/") and base_url:
            line = base_url.rstrip("/") + line
        urls.append(line)
    return urls


def build_jobs(urls: Sequence[str], formats: Sequence[str]) -> list[Job]:
    return [Job(url, fmt) for url in urls for fmt in (formats or [""])]


def report(summary: Summary, stream: TextIO) -> None:
    statuses = ", ".join(f"{s or 'no answer'}: {n}" for s, n in sorted(summary.statuses.items()))
    p50, p99 = summary.percentile(0.5) * 1000, summary.percentile(0.99) * 1000
    stream.write(
        f"warmed {summary.done} requests ({statuses}); {summary.bytes} bytes; "
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms; {summary.retries} retries; "
        f"{len(summary.failed)} failed\n")
    for reason, count in summary.errors.most_common():
        stream.write(f"  no answer x{count}: {reason}\n")
