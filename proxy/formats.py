"""The one format registry: names, MIME types, extensions, what each format can do,
and detection from magic bytes.

Standard library only: the URL parser, the URL builder, negotiation, the response
headers and the libvips codecs (``processing/codecs.py``, which binds a loader and a
saver to every format marked ``load``/``save`` here) all read this table. The real
format of a source is always sniffed from its bytes; neither its extension nor the
origin's Content-Type is trusted.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    name: str  # the name in URLs (``@webp``, ``f:webp``) and in settings
    mime: str
    extension: str  # for Content-Disposition file names
    load: bool = False  # sources in this format are decoded
    save: bool = False  # results can be written in this format
    alpha: bool = False  # results keep transparency
    animation: bool = False  # frames are read and written
    quality: bool = False  # the saver takes a quality (``q``, ``fq``, ``mb``)
    stream: bool = False  # decoded while the source arrives (the loader reads sequentially)
    #: bytes the saver holds per output pixel, without and with alpha (measured by
    #: loadtest/memcost.py; see processing/memory_model.py)
    encode_memory: tuple[float, float] = (1.0, 1.0)


REGISTRY: dict[str, Format] = {f.name: f for f in (
    Format("jpeg", "image/jpeg", "jpg", load=True, save=True, quality=True, stream=True,
           encode_memory=(6, 6)),
    Format("png", "image/png", "png", load=True, save=True, alpha=True, stream=True,
           encode_memory=(1, 1.5)),
    Format("webp", "image/webp", "webp", load=True, save=True, alpha=True, animation=True,
           quality=True, encode_memory=(5, 13)),
    Format("avif", "image/avif", "avif", load=True, save=True, alpha=True, quality=True,
           encode_memory=(13, 24)),
    Format("gif", "image/gif", "gif", load=True, save=True, alpha=True, animation=True,
           encode_memory=(9, 9)),
    Format("ico", "image/x-icon", "ico", load=True, save=True, alpha=True, encode_memory=(6, 6)),
    Format("svg", "image/svg+xml", "svg", load=True),
    Format("heic", "image/heif", "heic", load=True),
    Format("bmp", "image/bmp", "bmp", load=True, save=True, alpha=True, encode_memory=(6, 6)),
    Format("tiff", "image/tiff", "tif", load=True, save=True, alpha=True, quality=True,
           encode_memory=(1, 1.5)),
    Format("jxl", "image/jxl", "jxl", load=True, save=True, alpha=True, quality=True,
           encode_memory=(15, 20)),
)}
ALIASES = {"jpg": "jpeg"}
#: every format name a URL may use (output support is checked when processing)
NAMES = tuple(REGISTRY)
LOADABLE = frozenset(f.name for f in REGISTRY.values() if f.load)
SAVEABLE = frozenset(f.name for f in REGISTRY.values() if f.save)
ALPHA = frozenset(f.name for f in REGISTRY.values() if f.alpha)
ANIMATED = frozenset(f.name for f in REGISTRY.values() if f.animation)
QUALITY = frozenset(f.name for f in REGISTRY.values() if f.quality)
STREAMED = frozenset(f.name for f in REGISTRY.values() if f.stream)


def canonical(name: str) -> str | None:
    """The registry name for ``name`` or an alias (``jpg``), or None when unknown."""
    name = ALIASES.get(name, name)
    return name if name in REGISTRY else None


def mime_type(name: str) -> str:
    """The Content-Type for a format name; ``application/octet-stream`` when unknown."""
    fmt = REGISTRY.get(name)
    return fmt.mime if fmt else "application/octet-stream"


def extension(name: str) -> str:
    fmt = REGISTRY.get(name)
    return fmt.extension if fmt else name


# --- detection ------------------------------------------------------------------------

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
