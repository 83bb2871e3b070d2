"""Header readers for the formats libvips cannot load: sizes before any pixel.

Standard library only. Each reader looks at the few bytes that declare an
image's size (the ICO entry's embedded PNG/BMP header, the JPEG XL size header
and image metadata) so that ``prepare.check_resolution`` can refuse a bomb
before a decoder allocates anything. A reader raises ``HeaderError`` when the
bytes do not hold a readable header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JXL_CODESTREAM = b"\xff\x0a"
JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \x0d\x0a\x87\x0a"
#: how much of a JPEG XL codestream the header reader looks at (names of extra
#: channels make the header variable in length; real headers are a few dozen bytes)
JXL_HEADER_BYTES = 64 * 1024


class HeaderError(ValueError):
    """The bytes do not hold a readable header of the expected format."""


@dataclass(frozen=True)
class Declared:
    """What a header declares, as displayed (orientation applied by the decoder)."""

    width: int
    height: int
    alpha: bool
    animated: bool = False


# --- ICO --------------------------------------------------------------------------------

def ico_entry(data: bytes, offset: int) -> Declared:
    """The size an ICO entry's own PNG or BMP header declares (not the directory's,
    which a forged file sets to 16x16 over a 65535x65535 bitmap)."""
    head = data[offset:offset + 32]
    if head.startswith(PNG_MAGIC):
        if len(head) < 26 or head[12:16] != b"IHDR":
            raise HeaderError("ICO entry has a truncated PNG header")
        width, height = struct.unpack(">II", head[16:24])
        return Declared(width, height, alpha=head[25] in (3, 4, 6))
    if len(head) < 16:
        raise HeaderError("ICO entry has a truncated bitmap header")
    header_size = struct.unpack("<I", head[:4])[0]
    if header_size == 12:
        width, height = struct.unpack("<HH", head[4:8])
    else:
        width, height = struct.unpack("<ii", head[4:12])
    # the bitmap holds the colour image and the AND mask: twice the icon's height
    return Declared(abs(width), abs(height) // 2, alpha=True)


# --- JPEG XL ----------------------------------------------------------------------------

class _Bits:
    """Reads a JPEG XL bit stream: least significant bit of each byte first."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, count: int) -> int:
        value = 0
        for i in range(count):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise HeaderError("JPEG XL header is truncated")
            value |= ((self.data[byte] >> (self.pos & 7)) & 1) << i
            self.pos += 1
        return value

    def u32(self, *choices: tuple[int, int]) -> int:
        """The spec's U32: a 2-bit selector picks ``(offset, extra bits)``."""
        offset, bits = choices[self.read(2)]
        return offset + (self.read(bits) if bits else 0)


_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}
_SIZE = ((1, 9), (1, 13), (1, 18), (1, 30))  # value - 1 is coded
_PREVIEW_DIV8 = ((16, 0), (32, 0), (1, 5), (33, 9))
_PREVIEW = ((1, 6), (65, 8), (321, 10), (1345, 12))
_ENUM = ((0, 0), (1, 0), (2, 4), (18, 6))
_ALPHA, _SPOT_COLOUR, _CFA = 0, 2, 5


def _sized(bits: _Bits, small: tuple[tuple[int, int], ...] | None,
           large: tuple[tuple[int, int], ...], div8_bits: int = 5) -> tuple[int, int]:
    """A SizeHeader or PreviewHeader: ``(width, height)``."""
    if bits.read(1):
        def read() -> int:
            return (bits.u32(*small) if small else bits.read(div8_bits) + 1) * 8
    else:
        def read() -> int:
            return bits.u32(*large)
    height = read()
    ratio = bits.read(3)
    if ratio:
        num, den = _RATIOS[ratio]
        return height * num // den, height
    return read(), height


def _bit_depth(bits: _Bits) -> None:
    if bits.read(1):  # floating point samples: mantissa bits, exponent bits
        bits.u32((32, 0), (16, 0), (24, 0), (1, 6))
        bits.read(4)
    else:
        bits.u32((8, 0), (10, 0), (12, 0), (1, 6))


def _extra_channel_is_alpha(bits: _Bits) -> bool:
    if bits.read(1):  # d_alpha: a default alpha channel
        return True
    kind = bits.u32(*_ENUM)
    _bit_depth(bits)
    bits.u32((0, 0), (3, 0), (4, 0), (1, 3))  # dim_shift
    bits.read(8 * bits.u32((0, 0), (0, 4), (16, 5), (48, 10)))  # the name
    if kind == _ALPHA:
        bits.read(1)  # alpha_associated
    elif kind == _SPOT_COLOUR:
        bits.read(64)
    elif kind == _CFA:
        bits.u32((1, 0), (0, 2), (3, 4), (19, 8))
    return kind == _ALPHA


def jxl_codestream(data: bytes) -> bytes:
    """The start of the codestream: the data itself, or the ``jxlc``/``jxlp`` boxes
    of the ISO BMFF container, joined (up to ``JXL_HEADER_BYTES``)."""
    if data.startswith(JXL_CODESTREAM):
        return data[:JXL_HEADER_BYTES]
    if not data.startswith(JXL_CONTAINER):
        raise HeaderError("not a JPEG XL file")
    parts, pos, have = [], 0, 0
    while pos + 8 <= len(data) and have < JXL_HEADER_BYTES:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        start = pos + 8
        if size == 1:
            if pos + 16 > len(data):
                break
            size, start = struct.unpack(">Q", data[pos + 8:pos + 16])[0], pos + 16
        end = len(data) if size == 0 else pos + size
        if end < start or end > len(data):
            raise HeaderError("JPEG XL container box overruns the file")
        if kind == b"jxlp":
            start += 4  # the part's index
        if kind in (b"jxlc", b"jxlp"):
            parts.append(data[start:end])
            have += end - start
        pos = end
    stream = b"".join(parts)
    if not stream.startswith(JXL_CODESTREAM):
        raise HeaderError("JPEG XL container holds no codestream")
    return stream[:JXL_HEADER_BYTES]


def jxl(data: bytes) -> Declared:
    """Size (after the header's orientation), alpha and animation of a JPEG XL file."""
    bits = _Bits(jxl_codestream(data))
    bits.read(16)  # the signature
    width, height = _sized(bits, None, _SIZE)
    if bits.read(1):  # all_default: 8-bit, no extra channels, no animation
        return Declared(width, height, alpha=False)
    animated = False
    if bits.read(1):  # extra_fields
        if 1 + bits.read(3) >= 5:  # orientations 5-8 swap the axes
            width, height = height, width
        if bits.read(1):
            _sized(bits, None, _SIZE)  # intrinsic size
        if bits.read(1):
            _sized(bits, _PREVIEW_DIV8, _PREVIEW)  # preview
        animated = bool(bits.read(1))
        if animated:  # ticks per second, loops, timecodes
            bits.u32((100, 0), (1000, 0), (1, 10), (1, 30))
            bits.u32((1, 0), (1001, 0), (1, 8), (1, 10))
            bits.u32((0, 0), (0, 3), (0, 16), (0, 32))
            bits.read(1)
    _bit_depth(bits)
    bits.read(1)  # modular_16bit_buffers
    channels = bits.u32((0, 0), (1, 0), (2, 4), (1, 12))
    alpha = False
    for _ in range(channels):
        alpha = _extra_channel_is_alpha(bits) or alpha
    return Declared(width, height, alpha, animated)
