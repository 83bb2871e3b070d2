"""``IMGPROXY_CACHE_USE=fs``: entries as files under a directory, e.g. a volume every
pod mounts (NFS, EFS, a ReadWriteMany PVC).

``IMGPROXY_CACHE_FS_ROOT[/IMGPROXY_CACHE_BUCKET]/prefix/ab/cd/abcd...``. A write goes to
a temporary file in the same directory and is renamed into place, so a reader sees
the old object, the new one or none, never half of one. The files are read and
written by a few threads of their own: a hung volume ties up only those (its calls
time out and the images are computed), never the threads that read ``local:///``
sources. Nothing here deletes old files: expire them with e.g.
``find ROOT -type f -mtime +30 -delete``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..errors import CacheUnavailable

log = logging.getLogger("vipsgate.tier")
THREADS = 4
T = TypeVar("T")


class FsStore:
    name = "fs"

    def __init__(self, root: str, bucket: str = "") -> None:
        self.root = Path(root) / bucket if bucket else Path(root)
        self._threads: ThreadPoolExecutor | None = None

    async def __aenter__(self) -> FsStore:
        self._threads = ThreadPoolExecutor(THREADS, thread_name_prefix="tier-fs")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # counted as errors on every call; the server still starts
            log.warning("shared cache (fs): cannot create %s: %s", self.root,
                        exc.strerror or exc)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None

    async def get(self, key: str) -> bytes | None:
        return await self._run(self._read, key)

    async def put(self, key: str, blob: bytes, ttl: int) -> None:
        await self._run(self._write, key, blob)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        assert self._threads is not None, "FsStore used outside its context"
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    def _read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheUnavailable(f"reading {self.root / key}: {exc.strerror or exc}") from None

    def _write(self, key: str, blob: bytes) -> None:
        path = self.root / key
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(blob)
            os.replace(temporary, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise CacheUnavailable(f"writing {path}: {exc.strerror or exc}") from None
