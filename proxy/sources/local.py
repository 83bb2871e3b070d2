"""``local:///path``: files under IMGPROXY_LOCAL_FILESYSTEM_ROOT, never outside it."""

from __future__ import annotations

import asyncio
import os
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import SourceNotFound, SourceTooLarge
from .base import Fetched, SourceMeta


class LocalSource:
    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve()

    def resolve(self, url: str) -> Path:
        """The real path for ``url``; 404 for anything outside the root (``..``, links)."""
        path = unquote(urlsplit(url).path).lstrip("/")
        candidate = (self.root / path).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            raise SourceNotFound(f"No such local file: {path}")
        return candidate

    async def fetch(self, url: str, max_bytes: int) -> Fetched:
        path = self.resolve(url)
        return await asyncio.to_thread(self._read, path, max_bytes)

    @staticmethod
    def _read(path: Path, max_bytes: int) -> Fetched:
        with open(path, "rb") as fh:
            stat = os.fstat(fh.fileno())
            if max_bytes and stat.st_size > max_bytes:
                raise SourceTooLarge(f"Source is larger than {max_bytes} bytes")
            data = fh.read(max_bytes + 1 if max_bytes else -1)
        if max_bytes and len(data) > max_bytes:
            raise SourceTooLarge(f"Source is larger than {max_bytes} bytes")
        meta = SourceMeta(etag=f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
                          last_modified=formatdate(stat.st_mtime, usegmt=True),
                          size=stat.st_size)
        return Fetched(data, meta)
