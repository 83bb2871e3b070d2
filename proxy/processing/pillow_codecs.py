"""Pillow's libjpeg-turbo and libwebp where they give libvips' exact output for less CPU.

The libvips wheel's JPEG decoder and libwebp build cost more per image than Pillow's
(``loadtest/README.md``, "libvips against Pillow"), and libvips' savers
carry a fixed cost per call that dominates small outputs. So, for the common cases:

- **JPEG decode shrunk on load** (2, 4 or 8) of a file in memory: Pillow's ``draft``
  (the same libjpeg scaled IDCT and upsampling: identical pixels) into a libvips
  memory image that carries the header's metadata;
- **JPEG and lossy WebP encode** of small 8-bit still results without metadata to keep:
  identical bytes (Pillow's JFIF segment, which libvips does not write, is removed).

Anything else (CMYK, 12-bit, progressive or multiscan, suspicious files, metadata to
write, animations, large images, a file Pillow refuses) returns ``None``, and the
caller uses libvips. A file Pillow cannot decode is never answered by Pillow: libvips
decodes it and says why. Measured in ``loadtest/README.md``, "Pillow's codecs on the
fast path": each part is kept because it won there.

Bounds: Pillow holds a decoded RGB pixel in 4 bytes and ``tobytes`` copies it out in
chunks, so a decode briefly holds about 10 bytes per decoded pixel where libvips holds
strips; ``MAX_DECODE_PIXELS`` keeps that (12 MB) inside the memory model's fixed
allowance (``memory_model.FIXED``). A kill switch cannot stop Pillow's decoder (it runs
outside libvips' tile loop): ``MAX_SOURCE_PIXELS`` bounds its work to a few tens of
milliseconds, and the image it returns is watched like libvips' own. Both codecs release
the GIL while they work, so worker threads run them in parallel.
"""

from __future__ import annotations

import io

import pyvips
from PIL import Image

from . import metadata

#: a shrunk decode up to this many pixels (Pillow holds 4 bytes a pixel, plus a copy)
MAX_DECODE_PIXELS = 1_200_000
#: sources up to this many pixels (stored) are decoded by Pillow: the uninterruptible part
MAX_SOURCE_PIXELS = 16_000_000
#: results up to this many pixels are encoded by Pillow
MAX_SAVE_PIXELS = 2_000_000
#: the header fields of a memory image, or of the loader: never copied from the header
_LAYOUT = frozenset({"width", "height", "bands", "format", "coding", "interpretation",
                     "xres", "yres", "xoffset", "yoffset", "filename", "jpeg-multiscan",
                     "jpeg-chroma-subsample", "interlaced"})
#: what can reach the output when metadata is stripped (``metadata.prepare``: the ICC
#: profile, and the EXIF block with its copyright tags); the orientation for the steps
STRIPPED = ("icc-profile-data", "orientation", "resolution-unit", "exif-data",
            *metadata.COPYRIGHT_TAGS)
_MODES = {1: "L", 3: "RGB"}
_JFIF = b"\xff\xe0\x00\x10JFIF\x00"  # APP0, length 16: what Pillow writes after SOI


def decode_jpeg(data: bytes, header: pyvips.Image, shrink: float, strip: bool
                ) -> pyvips.Image | None:
    """``data`` (a JPEG whose libvips ``header`` is given) decoded as ``codecs.load``
    would at ``shrink``; None where this path does not apply. ``strip``: metadata will
    be stripped, so only the fields that can still reach the output are copied.

    libjpeg rounds the scaled size up, libvips down (it drops the last, partial row
    and column): the same pixels otherwise."""
    factor = 8 if shrink >= 8 else 4 if shrink >= 4 else 2 if shrink >= 2 else 1
    if factor == 1:
        return None
    full, bands = (header.width, header.height), header.bands  # each a call into libvips
    fields = header.get_fields()  # one call; a field's type is asked only if it is there
    if header.format != "uchar" or bands not in _MODES or \
            full[0] * full[1] > MAX_SOURCE_PIXELS or _multiscan(header, fields):
        return None
    width, height = full[0] // factor, full[1] // factor
    scaled = (-(-full[0] // factor), -(-full[1] // factor))
    if scaled[0] * scaled[1] > MAX_DECODE_PIXELS or min(width, height) < 8:
        return None
    mode = _MODES[bands]
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as im:
            if im.mode != mode or im.size != full:
                return None
            im.draft(mode, (width, height))
            if im.size != scaled:
                return None
            im.decodermaxblock = len(data)  # one call into libjpeg: the GIL released once
            pixels = im.tobytes()  # decodes
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None  # libvips decodes it, and says why it cannot
    image = pyvips.Image.new_from_memory(pixels, *scaled, bands, "uchar")
    if scaled != (width, height):
        image = image.crop(0, 0, width, height)
    image = image.copy(interpretation=header.interpretation, xres=header.xres,
                       yres=header.yres)
    for name in [n for n in STRIPPED if n in fields] if strip else fields:
        if name not in _LAYOUT and not name.startswith("vips-"):
            image.set_type(header.get_typeof(name), name, header.get(name))
    return image


def _multiscan(header: pyvips.Image, fields: list[str]) -> bool:
    """Progressive (or multiscan) JPEGs stay with libvips: their scans are counted
    (``codecs.MAX_JPEG_SCANS``) and their coefficients are in the memory estimate."""
    return "jpeg-multiscan" in fields and bool(header.get("jpeg-multiscan"))


def save(image: pyvips.Image, fmt: str, quality: int, keep: str, e: object) -> bytes | None:
    """``image`` encoded as libvips' saver would (``codecs.SAVERS``); None where this
    path does not apply. ``e``: the effective options (``resolve.Effective``)."""
    if keep != "none" or image.format != "uchar" or \
            image.width * image.height > MAX_SAVE_PIXELS or _frames(image):
        return None
    if fmt == "jpeg" and image.bands in _MODES:
        return _jpeg(image, quality, bool(getattr(e, "jpeg_progressive", False)))
    if fmt == "webp" and image.bands in (3, 4) and getattr(e, "webp_preset", "") == "default":
        return _webp(image, quality, int(getattr(e, "webp_effort", 4)))
    return None


def _frames(image: pyvips.Image) -> bool:
    """Whether ``image`` holds several frames (an animation, saved by libvips)."""
    return bool(image.get_typeof("page-height")) and image.get("page-height") != image.height


def _pixels(image: pyvips.Image, mode: str) -> Image.Image:
    return Image.frombuffer(mode, (image.width, image.height), image.write_to_memory(),
                            "raw", mode, 0, 1)


def _jpeg(image: pyvips.Image, quality: int, progressive: bool) -> bytes:
    """``jpegsave(Q=quality, optimize_coding=True, interlace=progressive)``: libvips
    subsamples chroma below quality 90 only (``subsample_mode=auto``), and writes a grey
    image's one component unsampled."""
    out = io.BytesIO()
    _pixels(image, _MODES[image.bands]).save(
        out, "JPEG", quality=quality, optimize=True, progressive=progressive,
        subsampling=2 if quality < 90 and image.bands == 3 else 0)
    data = out.getvalue()
    if data[2:2 + len(_JFIF)] == _JFIF:  # libvips writes no JFIF segment without metadata
        data = data[:2] + data[20:]
    return data


def _webp(image: pyvips.Image, quality: int, effort: int) -> bytes:
    """``webpsave(Q=quality, effort=effort)``, lossy, alpha at quality 100."""
    out = io.BytesIO()
    _pixels(image, "RGBA" if image.bands == 4 else "RGB").save(
        out, "WEBP", quality=quality, method=effort, alpha_quality=100)
    return out.getvalue()
