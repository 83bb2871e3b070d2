"""Encoders for the output formats the libvips wheel cannot write: BMP, ICO, JPEG XL.

Same signature as the libvips savers in ``codecs.py``. BMP is written by Pillow
(1-band grey stays an 8-bit grey BMP), or with alpha as a 32-bit V4 BMP, ICO as imgproxy
writes it (one PNG entry behind a 22-byte directory; ``format_limits`` keeps it
within 256 px), JPEG XL by pillow-jxl-plugin (libjxl). BMP and the JPEG XL
encoder carry no ICC profile, so a kept profile is applied to the pixels first.
"""

from __future__ import annotations

import contextlib
import io
import struct
from typing import Any

import pyvips

from ..errors import UnprocessableImage
from .color import ICC, is_grey

ICO_MAX_SIDE = 256
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _profile_applied(image: pyvips.Image) -> pyvips.Image:
    """Pixels in sRGB (or sGrey) with no profile attached, for encoders without ICC."""
    if not image.get_typeof(ICC):
        return image
    with contextlib.suppress(pyvips.Error):  # a profile lcms cannot use: pixels as they are
        image = image.icc_transform("sgrey" if is_grey(image) else "srgb", embedded=True)
    image = image.cast("uchar").copy()
    image.remove(ICC)
    return image


def _pillow(image: pyvips.Image) -> Any:
    from PIL import Image

    return Image.frombytes(_MODES[image.bands], (image.width, image.height),
                           image.write_to_memory())


def save_bmp(image: pyvips.Image, quality: int, keep: str, e: Any) -> bytes:
    image = _profile_applied(image)
    if image.hasalpha():
        return _bmp_with_alpha(image.colourspace("srgb").cast("uchar"))
    out = io.BytesIO()
    _pillow(image).save(out, "BMP")  # 8-bit grey (a grey palette) or 24-bit
    return out.getvalue()


def _bmp_with_alpha(image: pyvips.Image) -> bytes:
    """32-bit BMP with a BITMAPV4HEADER and an alpha mask (BI_BITFIELDS), as imgproxy
    writes it: readers ignore the fourth byte of a plain 32-bit BMP."""
    bgra = image[2].bandjoin([image[1], image[0], image[3]]).flipver()  # bottom-up rows
    pixels = bytes(bgra.write_to_memory())
    info = struct.pack("<IiiHHIIiiII4I4s36s3I", 108, image.width, image.height, 1, 32, 3,
                       len(pixels), 2835, 2835, 0, 0, 0x00FF0000, 0x0000FF00, 0x000000FF,
                       0xFF000000, b"BGRs", b"", 0, 0, 0)
    head = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    return head + info + pixels


def save_ico(image: pyvips.Image, quality: int, keep: str, e: Any) -> bytes:
    if max(image.width, image.height) > ICO_MAX_SIDE:
        raise UnprocessableImage(f"ICO is at most {ICO_MAX_SIDE} px a side")
    png = image.pngsave_buffer(keep=keep, compression=6)
    bits = 8 * image.bands if image.bands != 2 else 32
    directory = struct.pack("<HHH", 0, 1, 1)  # reserved, type 1 (icon), one image
    entry = struct.pack("<BBBBHHII", image.width % 256, image.height % 256, 0, 0, 1, bits,
                        len(png), len(directory) + 16)
    return directory + entry + png


def save_jxl(image: pyvips.Image, quality: int, keep: str, e: Any) -> bytes:
    import pillow_jxl

    image = _profile_applied(image)
    make: Any = pillow_jxl.Encoder  # its bundled type stubs are stale
    encoder = make(_MODES[image.bands], lossless=False, quality=float(quality),
                      effort=e.jxl_effort, num_threads=0)
    exif = None
    if "exif" in keep.split(":") and image.get_typeof("exif-data"):
        exif = bytes(image.get("exif-data")).removeprefix(b"Exif\x00\x00") or None
    return bytes(encoder(bytes(image.write_to_memory()), image.width, image.height,
                         jpeg_encode=False, exif=exif))
