"""``local:///path``: files under IMGPROXY_LOCAL_FILESYSTEM_ROOT, never outside it.

The path is resolved (``..``, ``%2e%2e`` after decoding, symlinks) and must land on a
regular file inside the root; anything else, including a symlink pointing out of
the root, answers 404 without saying why.
"""

from __future__ import annotations

import asyncio
import os
import stat
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import SourceNotFound, SourceTooLarge
from .base import Buffered, Fetched, SourceMeta


class LocalSource:
    def __init__(self, root: str, separator: str = "?") -> None:
        self.root = Path(root).resolve()
        self.separator = separator  # IMGPROXY_SOURCE_URL_QUERY_SEPARATOR: what ends the path

    def resolve(self, url: str) -> Path:
        """The real path for ``url``; 404 for anything outside the root (``..``, links)."""
        if self.separator == "?":
            path = unquote(urlsplit(url).path).lstrip("/")
        else:  # another separator, or none: ``?`` and ``#`` belong to the file name
            rest = url.partition("://")[2]
            rest = rest.partition(self.separator)[0] if self.separator else rest
            path = unquote(rest.partition("/")[2]).lstrip("/")
        try:
            candidate = (self.root / path).resolve()
            inside = candidate.is_relative_to(self.root) and candidate.is_file()
        except (OSError, ValueError, RuntimeError):  # NUL byte, name too long, link loop
            inside = False
        if not inside:
            raise SourceNotFound(f"No such local file: {path[:200]}")
        return candidate

    async def open(self, url: str, max_bytes: int) -> Buffered:
        """The whole file, read in a thread (local files are not streamed)."""
        fetched = await asyncio.to_thread(self._fetch, url, max_bytes)
        return Buffered(fetched.data, fetched.meta, asyncio.get_running_loop().time() + 60)

    def _fetch(self, url: str, max_bytes: int) -> Fetched:
        path = self.resolve(url)
        try:
            # O_NOFOLLOW: the resolved path has no links; refuse one swapped in since.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            raise SourceNotFound(f"No such local file: {path.name}") from None
        with open(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise SourceNotFound(f"Not a regular file: {path.name}")
            if max_bytes and st.st_size > max_bytes:
                raise SourceTooLarge(f"Source is larger than {max_bytes} bytes")
            data = fh.read(max_bytes + 1 if max_bytes else -1)
        if max_bytes and len(data) > max_bytes:
            raise SourceTooLarge(f"Source is larger than {max_bytes} bytes")
        meta = SourceMeta(etag=f'"{st.st_mtime_ns:x}-{st.st_size:x}"',
                          last_modified=formatdate(st.st_mtime, usegmt=True),
                          size=st.st_size)
        return Fetched(data, meta)
