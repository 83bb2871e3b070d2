"""ctypes access to the loaded libvips, for the few GLib/libvips calls pyvips does not bind."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("vipsgate")
G_LOG_LEVEL_ERROR = 1 << 2


def loaded_library(stem: str) -> str | None:
    """Path of a shared library this process has mapped (Linux), e.g. pyvips-binary's."""
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.rsplit(None, 1)[-1]
                name = path.rsplit("/", 1)[-1]
                if name.startswith(stem) and ".so" in name:
                    return path
    except OSError:
        return None
    return None


def open_library(stem: str, name: str, symbol: str) -> ctypes.CDLL | None:
    """The mapped library ``stem*.so*`` (else ``name`` from the linker) if it exports
    ``symbol``; None where neither does."""
    for path in (loaded_library(stem), ctypes.util.find_library(name)):
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
            getattr(lib, symbol)
        except (OSError, AttributeError):
            continue
        return lib
    return None


def survive_nested_log_messages() -> bool:
    """Make a log message emitted inside a GLib log handler non-fatal.

    pyvips forwards libvips warnings to Python logging from a GLib log handler. If
    Python's cyclic GC runs there, it can free a libvips image whose loader then
    reports its own warning ("read gave 6 warnings"): a message inside a handler,
    which GLib treats as fatal by default (``G_LOG_FLAG_RECURSION`` is in the
    default fatal masks) and aborts the process. With only ``G_LOG_LEVEL_ERROR``
    fatal, GLib prints the nested message itself ("(recursed)") and carries on.
    The wheel links GLib into libvips; a system libvips uses libglib.
    """
    glib = open_library("libvips", "vips", "g_log_set_fatal_mask")
    if glib is None or not hasattr(glib, "g_log_set_always_fatal"):
        glib = open_library("libglib-2.0", "glib-2.0", "g_log_set_fatal_mask")
    if glib is None:
        log.warning("GLib not found: a nested libvips log message would abort")
        return False
    glib.g_log_set_always_fatal(G_LOG_LEVEL_ERROR)
    glib.g_log_set_fatal_mask(b"VIPS", G_LOG_LEVEL_ERROR)
    return True
