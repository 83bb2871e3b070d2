"""What rendering an SVG would cost beyond its canvas, checked on its text first.

``vector_guard`` (``prepare``) bounds the raster librsvg draws, but not what it does
to draw it: an image embedded as a ``data:`` URI is decoded whole whatever its
displayed size (a 20000x20000 PNG in a 1.5 MB SVG took 3.5 GiB), text is laid out
glyph by glyph (a million characters: minutes and gigabytes), and every element and
filter primitive costs time over the whole canvas. ``check`` refuses SVGs past the
limits below with ``ImageTooLarge`` (422) and returns the bytes their embedded images
will need, for the memory model. Nested SVG images are checked the same way.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import unquote_to_bytes

import pyvips

from .. import formats
from ..errors import ImageTooLarge, ProxyError
from . import foreign_load

MAX_TEXT = 10_000  # characters inside <text> elements
MAX_ELEMENTS = 100_000
MAX_FILTER_PRIMITIVES = 100
SNIFF = 32 * 1024  # bytes read to recognise a nested SVG
MAX_NESTING = 2  # SVGs embedded in SVGs embedded in an SVG
EMBEDDED_BYTES_PER_PIXEL = 8  # the decoded RGBA pixels and the surface they are drawn from

_ELEMENT = re.compile(rb"<[A-Za-z]")
_TEXT = re.compile(rb"<text\b[^>]*>(.*?)</text\s*>", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(rb"<[^>]*>")
_FILTER_PRIMITIVE = re.compile(rb"<fe[A-Z]")
_DATA_URI = re.compile(rb"data:([\w.+/-]*)((?:;[\w=.+-]*)*),([^\"')<>]*)", re.IGNORECASE)


def check(svg: bytes, pixel_limit: float, depth: int = 0) -> int:
    """Refuse an SVG whose rendering the limits cannot bound; the bytes its embedded
    raster images decode to (0 when none)."""
    if len(_ELEMENT.findall(svg)) > MAX_ELEMENTS:
        raise ImageTooLarge(f"SVG has more than {MAX_ELEMENTS} elements")
    text = sum(len(_TAG.sub(b"", body)) for body in _TEXT.findall(svg))
    if text > MAX_TEXT:
        raise ImageTooLarge(f"SVG has {text} characters of text (at most {MAX_TEXT})")
    if len(_FILTER_PRIMITIVE.findall(svg)) > MAX_FILTER_PRIMITIVES:
        raise ImageTooLarge(f"SVG has more than {MAX_FILTER_PRIMITIVES} filter primitives")
    pixels = held = 0
    for payload in embedded(svg):
        fmt = formats.sniff(payload[:SNIFF], SNIFF)
        if fmt == "svg":
            if depth >= MAX_NESTING:
                raise ImageTooLarge("SVG images nested too deep")
            held += check(payload, pixel_limit, depth + 1)
            continue
        size = raster_size(payload, fmt)
        if size is None:
            continue  # not an image librsvg can decode: it draws nothing there
        pixels += size[0] * size[1]
        if pixels > pixel_limit:
            raise ImageTooLarge(f"SVG embeds images of more than {pixel_limit / 1e6:g} "
                                f"megapixels ({size[0]}x{size[1]})")
    return held + pixels * EMBEDDED_BYTES_PER_PIXEL


def embedded(svg: bytes) -> list[bytes]:
    """The payloads of the ``data:`` URIs in ``svg``, decoded."""
    payloads = []
    for match in _DATA_URI.finditer(svg):
        params, payload = match.group(2).lower(), match.group(3)
        if b";base64" in params:
            try:
                payloads.append(base64.b64decode(re.sub(rb"\s+", b"", payload)))
            except (binascii.Error, ValueError):
                continue
        else:
            payloads.append(unquote_to_bytes(payload))
    return payloads


def raster_size(data: bytes, fmt: str | None) -> tuple[int, int] | None:
    """The declared size of a raster image, from its header; None when unreadable."""
    try:
        if fmt in foreign_load.FORMATS:
            declared = foreign_load.probe(data, fmt)
            return declared.width, declared.height
        image = pyvips.Image.new_from_buffer(data, "")
    except (pyvips.Error, ProxyError):
        return None
    return image.width, image.height
