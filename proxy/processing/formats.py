"""Image formats: detection from magic bytes, MIME types, what we can load and save.

The real format is always sniffed from the bytes; the extension and the
origin's Content-Type are never trusted.
"""

from __future__ import annotations

import re
import zlib

MIME_TYPES = {
    "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif",
    "gif": "image/gif", "ico": "image/x-icon", "svg": "image/svg+xml", "heic": "image/heif",
    "bmp": "image/bmp", "tiff": "image/tiff", "jxl": "image/jxl",
}
EXTENSIONS = {"jpeg": "jpg", "tiff": "tif"}
#: formats whose pixels the bundled libvips decodes (HEIC/HEVC, BMP, ICO, JXL are not)
LOADABLE = frozenset({"jpeg", "png", "webp", "avif", "gif", "tiff", "svg"})
#: formats we can encode
SAVEABLE = frozenset({"jpeg", "png", "webp", "avif", "gif", "tiff"})
ALPHA = frozenset({"png", "webp", "avif", "gif", "tiff"})
ANIMATED = frozenset({"gif", "webp"})
QUALITY = frozenset({"jpeg", "webp", "avif", "tiff"})
#: the only libvips loader classes left enabled (every other loader is blocked)
SAFE_LOADERS = ("VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadWebp",
                "VipsForeignLoadNsgif", "VipsForeignLoadHeif", "VipsForeignLoadTiff",
                "VipsForeignLoadSvg")

_HEIF_BRANDS_AVIF = (b"avif", b"avis")
_HEIF_BRANDS_HEIC = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_SVG_TAG = re.compile(rb"<svg[\s>/]", re.IGNORECASE)
_SVG_PROLOG = re.compile(rb"^(\s|<\?xml[^>]*\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(\[.*?\])?\s*>)*",
                         re.DOTALL | re.IGNORECASE)


def sniff(data: bytes, svg_check_bytes: int = 32 * 1024) -> str | None:
    """Format name from the leading bytes, or None when unknown."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return _heif_brand(data)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ico"
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \x0d\x0a\x87\x0a":
        return "jxl"
    return "svg" if _is_svg(data, svg_check_bytes) else None


def _heif_brand(data: bytes) -> str | None:
    size = int.from_bytes(data[:4], "big")
    box = data[8:max(16, min(size, 256))]
    brands = [box[:4]] + [box[i:i + 4] for i in range(8, len(box), 4)]
    if any(b in _HEIF_BRANDS_AVIF for b in brands):
        return "avif"
    if any(b in _HEIF_BRANDS_HEIC for b in brands):
        return "heic"
    return None


def _is_svg(data: bytes, limit: int) -> bool:
    head = data[:limit]
    if head[:2] == b"\x1f\x8b":  # SVGZ
        try:
            head = zlib.decompressobj(wbits=47).decompress(head, limit)
        except zlib.error:
            return False
    head = head.lstrip(b"\xef\xbb\xbf")
    prolog = _SVG_PROLOG.match(head)
    rest = head[prolog.end() if prolog else 0:]
    return bool(_SVG_TAG.match(rest))


def restrict_loaders() -> None:
    """Block every libvips loader except ``SAFE_LOADERS`` (idempotent).

    Stricter than ``VIPS_BLOCK_UNTRUSTED``, which would also block SVG: librsvg
    is allowed explicitly because SVGs are only ever rasterised, never passed
    through, and it resolves no external references (see tests/test_hostile.py).
    """
    import pyvips

    pyvips.operation_block_set("VipsForeignLoad", True)
    for name in SAFE_LOADERS:
        pyvips.operation_block_set(name, False)


def jpeg_suspicious(size: int, width: int, height: int) -> bool:
    """True when a JPEG has less than one bit per 8x8 block of its declared size.

    Real JPEGs never get that small; a forged header over a few bytes of data
    does, and libjpeg only warns ("premature end of data segment") while it
    fills the declared area with grey. Such files are decoded with
    ``fail_on="warning"`` so they are refused instead.
    """
    return size * 8 * 64 < width * height


def extension(fmt: str) -> str:
    return EXTENSIONS.get(fmt, fmt)
