"""Give freed memory back to the OS after bursts.

libvips allocates large pixel buffers from many threads; glibc keeps freed
memory in its arenas, so RSS stays at the burst's peak. Every
``IMGPROXY_FREE_MEMORY_INTERVAL`` seconds, when no image is being processed,
``malloc_trim(0)`` returns it (imgproxy does the same). Elsewhere (musl,
jemalloc via LD_PRELOAD, macOS) this is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import AsyncIterator, Callable

from .background import running

log = logging.getLogger("vipsgate")


def _load_trim() -> Callable[[], bool] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: bool(trim(0))


_TRIM = _load_trim()
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_arenas(count: int) -> bool:
    """Cap glibc malloc arenas now, as ``MALLOC_ARENA_MAX`` does at process start.

    Setting the variable from inside the process is too late for glibc (it reads
    it once at start-up), so ``vipsgate serve`` calls this before any worker
    thread exists. False where there is no glibc ``mallopt``.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, count))
    except (OSError, AttributeError):
        return False


def trim() -> bool:
    """Release free heap memory to the OS; True if any was released."""
    return _TRIM() if _TRIM is not None else False


def available() -> bool:
    return _TRIM is not None


async def trim_periodically(interval: float, idle: Callable[[], bool]) -> None:
    """Every ``interval`` seconds, trim when ``idle()`` says no image is in work."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        if idle():
            await loop.run_in_executor(None, trim)


@contextlib.asynccontextmanager
async def trimmer(interval: float, idle: Callable[[], bool]) -> AsyncIterator[None]:
    """Run ``trim_periodically`` for the lifetime of the block (off when interval is 0)."""
    if interval <= 0 or not available():
        yield
        return
    async with running(trim_periodically(interval, idle), "malloc-trim"):
        yield
