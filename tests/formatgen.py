"""HEIC, BMP, ICO and JPEG XL files generated for tests (Pillow, pillow-heif,
pillow-jxl-plugin), and bombs whose headers declare far more than their data."""

from __future__ import annotations

import io
import struct
import zlib

import pillow_heif
import pyvips
from PIL import Image

from imagegen import photo

RED, BLUE = (255, 0, 0), (0, 0, 255)


def pil(image: pyvips.Image) -> Image.Image:
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[image.bands]
    return Image.frombytes(mode, (image.width, image.height), image.write_to_memory())


def marked(width: int = 60, height: int = 40) -> Image.Image:
    """Blue with a red 10x10 square in the top-left corner (to follow rotations)."""
    im = Image.new("RGB", (width, height), BLUE)
    im.paste(RED, (0, 0, 10, 10))
    return im


def heic(im: Image.Image, orientation: int | None = None, quality: int = 90) -> bytes:
    """An HEIC; an EXIF orientation becomes HEIF ``irot``/``imir`` (pillow-heif)."""
    kwargs = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    out = io.BytesIO()
    pillow_heif.from_pillow(im).save(out, quality=quality, **kwargs)
    return out.getvalue()


def heic_16bit(rgb16: tuple[int, int, int], size: tuple[int, int] = (32, 24)) -> bytes:
    """A 10-bit HEIC of one colour, given as 16-bit samples."""
    data = struct.pack("<3H", *rgb16) * (size[0] * size[1])
    out = io.BytesIO()
    pillow_heif.from_bytes("RGB;16", size, data).save(out, quality=-1)
    return out.getvalue()


def heic_multi(first: Image.Image, second: Image.Image, primary: int) -> bytes:
    heif = pillow_heif.from_pillow(first)
    heif.add_from_pillow(second)
    out = io.BytesIO()
    heif.save(out, quality=90, primary_index=primary)
    return out.getvalue()


def saved(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **kwargs)
    return out.getvalue()


def jxl(im: Image.Image, **kwargs: object) -> bytes:
    import pillow_jxl  # noqa: F401  (registers the JPEG XL plugin with Pillow)

    return saved(im, "JXL", **kwargs)


def photo_pil(width: int = 120, height: int = 80) -> Image.Image:
    return pil(photo(width, height))


# --- bombs: a header declaring a huge image over a few bytes ----------------------------

def png_declaring(width: int, height: int) -> bytes:
    small = photo(8, 8).pngsave_buffer()
    ihdr = b"IHDR" + struct.pack(">II", width, height) + small[24:29]
    return small[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + small[33:]


def bmp_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    head = b"BM" + struct.pack("<IHHI", 14 + len(info) + 64, 0, 0, 14 + len(info))
    return head + info + b"\x00" * 64


def ico_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """An ICO whose directory says 16x16 and whose PNG entry declares ``width x height``."""
    png = png_declaring(width, height)
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def heic_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real 64x64 HEIC whose ``ispe`` boxes declare ``width x height``."""
    data = bytearray(heic(Image.new("RGB", (64, 64), BLUE)))
    at = data.find(b"ispe")
    assert at > 0
    while at > 0:
        data[at + 8:at + 16] = struct.pack(">II", width, height)
        at = data.find(b"ispe", at + 4)
    return bytes(data)


class BitWriter:
    """Writes a JPEG XL bit stream (least significant bit of each byte first)."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def write(self, value: int, count: int) -> None:
        self.bits += [(value >> i) & 1 for i in range(count)]

    def bytes(self) -> bytes:
        padded = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(sum(b << i for i, b in enumerate(padded[n:n + 8]))
                     for n in range(0, len(padded), 8))


def jxl_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A JPEG XL codestream whose size header declares ``width x height``."""
    bits = BitWriter()
    bits.write(0, 1)  # not a small size
    bits.write(3, 2)  # U32 selector: 30 bits follow
    bits.write(height - 1, 30)
    bits.write(0, 3)  # no fixed ratio: the width follows
    bits.write(3, 2)
    bits.write(width - 1, 30)
    bits.write(1, 1)  # all_default metadata
    return b"\xff\x0a" + bits.bytes() + b"\x00" * 32
