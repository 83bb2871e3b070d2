"""libvips process setup, in one place: ``init()``.

Importing the processing package changes nothing process-wide; ``init()`` (called
by the worker pool when it starts, in this process for threads and in each worker
process for processes) sets up libvips the way vipsgate needs it. Idempotent.
"""

from __future__ import annotations

import pyvips

from .. import native
from . import foreign_load

_done = False
#: the only libvips loader classes left enabled (every other loader is blocked)
SAFE_LOADERS = ("VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadWebp",
                "VipsForeignLoadNsgif", "VipsForeignLoadHeif", "VipsForeignLoadTiff",
                "VipsForeignLoadSvg")


def init() -> None:
    """One libvips thread per image, no operation cache, only safe loaders, warnings
    (not INFO lines) forwarded to Python logging, nested GLib messages not fatal; the
    decoders of ``foreign_load`` (HEIC, BMP, ICO, JPEG XL) set up likewise (pillow-heif
    on its first use)."""
    global _done
    if _done:
        return
    _done = True
    pyvips.concurrency_set(1)  # parallelism comes from requests (IMGPROXY_WORKERS)
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    pyvips.block_untrusted_set(True)
    restrict_loaders()
    forward_only_warnings()
    native.survive_nested_log_messages()
    foreign_load.init()


def restrict_loaders() -> None:
    """Block every libvips loader except ``SAFE_LOADERS``.

    Stricter than ``VIPS_BLOCK_UNTRUSTED``, which would also block SVG: librsvg
    is allowed explicitly because SVGs are only ever rasterised, never passed
    through, and it resolves no external references (see tests/test_hostile.py).
    """
    pyvips.operation_block_set("VipsForeignLoad", True)
    for name in SAFE_LOADERS:
        pyvips.operation_block_set(name, False)


def forward_only_warnings() -> None:
    """Let pyvips forward libvips warnings and errors to Python logging, not INFO.

    libvips emits several INFO lines per image ("residual reducev ...",
    "threadpool completed ..."); pyvips' handler takes the GIL for each of them
    just to have logging drop them. GLib's default handler drops INFO unless
    ``G_MESSAGES_DEBUG=VIPS`` is set, which is how to see them when debugging.
    """
    handler_id = getattr(pyvips, "_log_handler_id", None)
    if not handler_id:
        return
    flags, domain = pyvips.GLogLevelFlags, b"VIPS"
    pyvips.glib_lib.g_log_remove_handler(domain, handler_id)
    pyvips._log_handler_id = pyvips.glib_lib.g_log_set_handler(
        domain, flags.LEVEL_WARNING | flags.LEVEL_CRITICAL | flags.LEVEL_ERROR
        | flags.FLAG_FATAL | flags.FLAG_RECURSION, pyvips._log_handler_cb, pyvips.ffi.NULL)


def version() -> str:
    return ".".join(str(pyvips.version(i)) for i in range(3))


def message(exc: pyvips.Error) -> str:
    """The first line of a libvips error, for the log and the 422 reason."""
    detail = (exc.detail or exc.message or "").strip().splitlines()
    return detail[0][:200] if detail else "libvips error"
