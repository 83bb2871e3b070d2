"""The shared tier between the in-process LRU and the computation.

``get`` is called inside the coalesced job (one call per result key, however many
requests wait) and within ``VIPSGATE_CACHE_TIMEOUT``; a miss, a timeout, an error or a
corrupt object all mean "compute it" (or, with ``IMGPROXY_CACHE_REPORT_ERRORS``,
errors and timeouts raise ``CacheUnavailable``). ``put`` never waits: the result goes
into a queue bounded in bytes, written by a few background writers, each write
within the same timeout; a result that does not fit is dropped and counted.

The key is the result key's digest (effective options, source URL, format class;
never the signature), the server fingerprint (vipsgate and libvips versions, the
watermark: a pod that would render other bytes never shares) and the values of
``IMGPROXY_CACHE_KEY_HEADERS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import CacheUnavailable
from ..metrics import JobReport
from ..results import CachedResult, ResultKey
from .base import CorruptEntry, Store, decode, encode
from .metrics import TierMetrics

log = logging.getLogger("vipsgate.tier")
WRITERS = 4  # background writers: writes in flight at once
OFF_LOOP_BYTES = 256 * 1024  # entries this large are encoded/decoded in a thread


class NoTier:
    """No shared tier (``IMGPROXY_CACHE_USE`` empty): every lookup misses."""

    name = ""

    def key(self, key: ResultKey, headers: Mapping[str, str]) -> str:
        return ""

    async def get(self, name: str, report: JobReport) -> CachedResult | None:
        return None

    def put(self, name: str, entry: CachedResult) -> None:
        return None

    async def flush(self) -> None:
        return None

    async def __aenter__(self) -> NoTier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class Complaints:
    """Logs the first failure, then at most one line per ``interval`` with a count:
    a tier that is down must not flood the log from every request."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self.last = -interval
        self.quiet = 0

    def __call__(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            self.quiet += 1
            return
        suffix = f" ({self.quiet} more since the last report)" if self.quiet else ""
        log.warning(message + suffix, *args)
        self.last, self.quiet = now, 0


class SharedCache:
    """Lookups (bounded in time) and write-behind for one ``Store``."""

    def __init__(self, store: Store, settings: Any, metrics: TierMetrics,
                 fingerprint: Callable[[], str]) -> None:
        s = settings
        self.store, self.metrics, self.fingerprint = store, metrics, fingerprint
        self.name = store.name
        self.timeout, self.ttl = s.cache_timeout, s.cache_ttl
        self.max_object, self.queue_limit = s.cache_max_object_size, s.cache_write_queue_bytes
        self.report_errors = s.cache_report_errors
        self.prefix = s.cache_path_prefix.strip("/")
        self.key_headers = s.cache_key_headers
        self.queued_bytes = 0
        self.complain = Complaints()
        self._queue: asyncio.Queue[tuple[str, CachedResult]] = asyncio.Queue()
        self._writers: list[asyncio.Task[None]] = []

    def key(self, key: ResultKey, headers: Mapping[str, str]) -> str:
        """The object's path: ``prefix/ab/cd/abcd...`` (64 hex digits)."""
        parts = [key.digest(), self.fingerprint(),
                 *(f"{name}:{headers.get(name, '')}" for name in self.key_headers)]
        digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        path = f"{digest[:2]}/{digest[2:4]}/{digest}"
        return f"{self.prefix}/{path}" if self.prefix else path

    # --- reads ------------------------------------------------------------------------

    async def get(self, name: str, report: JobReport) -> CachedResult | None:
        """The stored result (its ``report`` gets the ``tier`` seconds), or None: compute.
        Raises ``CacheUnavailable`` only with ``IMGPROXY_CACHE_REPORT_ERRORS``."""
        started = time.perf_counter()
        try:
            return await self._lookup(name, report)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.get_seconds.observe(elapsed)
            report.stages["tier"] = elapsed

    async def _lookup(self, name: str, report: JobReport) -> CachedResult | None:
        m = self.metrics
        try:
            async with asyncio.timeout(self.timeout):
                blob = await self.store.get(name)
                if blob is None:
                    m.lookup["miss"].inc()
                    return None
                if len(blob) >= OFF_LOOP_BYTES:
                    entry, stored = await asyncio.to_thread(decode, name, blob, report)
                else:
                    entry, stored = decode(name, blob, report)
        except TimeoutError:
            self._failed("timeout", f"read took longer than {self.timeout}s")
            return None
        except CorruptEntry as exc:
            m.lookup["corrupt"].inc()
            self.complain("shared cache (%s): ignored %s: %s", self.name, name, exc)
            return None
        except Exception as exc:  # CacheUnavailable, or a store's unexpected failure
            self._failed("error", str(exc) or type(exc).__name__)
            return None
        if self.ttl and time.time() - stored > self.ttl:
            m.lookup["expired"].inc()
            return None
        m.lookup["hit"].inc()
        m.read_bytes.inc(len(blob))
        return entry

    def _failed(self, outcome: str, reason: str) -> None:
        self.metrics.lookup[outcome].inc()
        if self.report_errors:
            raise CacheUnavailable(f"shared cache ({self.name}): {reason}")
        self.complain("shared cache (%s) read failed, computing instead: %s", self.name, reason)

    # --- writes -----------------------------------------------------------------------

    def put(self, name: str, entry: CachedResult) -> None:
        """Queue ``entry`` to be written; never waits. Dropped (and counted) when it is
        larger than ``VIPSGATE_CACHE_MAX_OBJECT_SIZE`` or the queue is full."""
        size = len(entry.result.data)
        if size > self.max_object:
            self.metrics.write["too_large"].inc()
            return
        if self.queued_bytes + size > self.queue_limit:
            self.metrics.write["dropped"].inc()
            return
        self.queued_bytes += size
        self.metrics.queue_bytes.set(self.queued_bytes)
        self._queue.put_nowait((name, entry))

    async def flush(self) -> None:
        """Wait until every queued write has finished (stored, failed or timed out)."""
        await self._queue.join()

    async def _writer(self) -> None:
        while True:
            name, entry = await self._queue.get()
            size = len(entry.result.data)
            try:
                await self._write(name, entry)
            finally:
                self.queued_bytes -= size
                self.metrics.queue_bytes.set(self.queued_bytes)
                self._queue.task_done()

    async def _write(self, name: str, entry: CachedResult) -> None:
        m = self.metrics
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                if len(entry.result.data) >= OFF_LOOP_BYTES:
                    blob = await asyncio.to_thread(encode, name, entry, time.time())
                else:
                    blob = encode(name, entry, time.time())
                await self.store.put(name, blob, self.ttl)
        except TimeoutError:
            m.write["timeout"].inc()
            self.complain("shared cache (%s) write took longer than %ss", self.name,
                          self.timeout)
        except Exception as exc:  # CacheUnavailable, or a store's unexpected failure
            m.write["error"].inc()
            self.complain("shared cache (%s) write failed: %s", self.name, exc)
        else:
            m.write["stored"].inc()
            m.written_bytes.inc(len(blob))
        finally:
            m.put_seconds.observe(time.perf_counter() - started)

    # --- life -------------------------------------------------------------------------

    async def __aenter__(self) -> SharedCache:
        await self.store.__aenter__()
        self._writers = [asyncio.create_task(self._writer(), name=f"tier-writer-{n}")
                         for n in range(WRITERS)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Give queued writes two timeouts to finish, drop (and count) the rest, close."""
        try:
            async with asyncio.timeout(2 * self.timeout):
                await self.flush()
        except TimeoutError:
            left = self._queue.qsize()
            self.metrics.write["dropped"].inc(left)
            log.warning("shared cache (%s): %d queued writes dropped at shutdown", self.name,
                        left)
        for task in self._writers:
            task.cancel()
        for task in self._writers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._writers = []
        await self.store.__aexit__(None, None, None)
