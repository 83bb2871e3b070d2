"""Hostile images, generated (issue 24): small files whose decoding costs far more
than their size or pixel count says. Used by tests/test_memory_bombs.py and
loadtest/hostile.py; nothing here is committed as a file.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator

import pyvips


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + \
        struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def blank_png(width: int, height: int, *, depth: int = 8, colour: bool = True) -> bytes:
    """A black PNG of any size (up to 2^31 px a side), written row by row: a 49,000,000
    x 1 16-bit RGB one is about 300 KB."""
    channels = 3 if colour else 1
    row = bytes(1 + width * channels * depth // 8)  # filter byte 0, then zeros

    def rows() -> Iterator[bytes]:
        compressor = zlib.compressobj(9)
        for _ in range(height):
            yield compressor.compress(row)
        yield compressor.flush()

    header = struct.pack(">IIBBBBB", width, height, depth, 2 if colour else 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + \
        _chunk(b"IDAT", b"".join(rows())) + _chunk(b"IEND", b"")


def svg_embedding(image: bytes, mime: str = "image/png", size: int = 300) -> bytes:
    """An SVG that draws ``image`` (a ``data:`` URI) into a ``size``-px square."""
    uri = f"data:{mime};base64,{base64.b64encode(image).decode()}"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}">'
            f'<image href="{uri}" width="{size}" height="{size}"/></svg>').encode()


def svg_with_text(characters: int) -> bytes:
    """An SVG with one ``<text>`` of ``characters`` characters."""
    text = ("lorem ipsum dolor sit amet " * (characters // 27 + 1))[:characters]
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="300" height="100">'
            f'<text x="0" y="50">{text}</text></svg>').encode()


def jpeg_with_scans(side: int, repeats: int) -> bytes:
    """A progressive JPEG whose last scan is repeated ``repeats`` times: each repeat is
    decoded again, over the whole image."""
    image = (pyvips.Image.black(side, side) + 128).cast("uchar")
    data: bytes = image.jpegsave_buffer(interlace=True, Q=50)
    last = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    return data[:end] + data[last:end] * repeats + data[end:]


def noise_png(side: int) -> bytes:
    """An uncompressible RGB PNG (about 3 bytes a pixel)."""
    noise = pyvips.Image.gaussnoise(side, side, sigma=80).cast("uchar")
    data: bytes = noise.bandjoin([noise, noise]).pngsave_buffer(compression=0)
    return data


def corrupt(data: bytes) -> bytes:
    """The file with its second half zeroed: decoders fail part-way through."""
    half = len(data) // 2
    return data[:half] + bytes(len(data) - half)
