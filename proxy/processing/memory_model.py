"""What one job's decode, steps and encode hold at their peak, estimated from the header
before any pixel is decoded (the memory model).

The pixel count alone does not bound memory: libvips works in strips of rows, so a
sequential decode costs rows x width, and extreme widths, 16-bit samples (floated for
the colour conversion and the resize), interlaced PNGs and progressive JPEGs (decoded
whole), SVGs' embedded images and the encoders all add their own. The terms:

- ``FIXED``: threads, codec state and buffers any job holds;
- the decode: the whole image for whole-image decoders (WebP, GIF, TIFF, AVIF, HEIC,
  interlaced PNG, ``trim``), else the rows the vertical shrink needs at once; plus what
  the decoder keeps whatever the shrink (a progressive JPEG's coefficients, an SVG's
  embedded images: ``Header.held``);
- the float stages: a strip of ``FLOAT_ROWS`` rows at 4 bytes a sample (12 for 16-bit
  sources, converted twice);
- the scaled image, copied to memory once (8-bit);
- the encoder, per output pixel and by format (``formats.Format.encode_memory``).

Every term is multiplied by the frames kept. The constants are measured by
``loadtest/memcost.py``, which checks the estimate against the peak resident memory of
real jobs (hostile ones included): the estimate is meant to be above it.
"""

from __future__ import annotations

from .. import formats
from ..geometry import Plan, scaled_size

FIXED = 32 << 20
FLOAT_ROWS = 64
#: rows a sequential decode holds besides the vertical shrink's window
STRIP_ROWS = 32
#: the vertical shrink's window, in input rows per output row
WINDOW = 8
#: the strips' terms are rougher than the others: they are weighted up
STRIP_MARGIN = 1.3


def sample_bytes(vips_format: str) -> int:
    return {"uchar": 1, "char": 1, "ushort": 2, "short": 2}.get(vips_format, 4)


def estimate(*, stored: tuple[int, int], shown: tuple[int, int], bands: int, depth: int,
             shrink: float, p: Plan, vscale: float, frames: int, out: tuple[int, int],
             whole: bool, held: int, out_format: str, out_alpha: bool) -> int:
    """Bytes the job holds at its peak. ``stored``: the size as stored; ``shown``: as
    displayed (EXIF); ``bands``/``depth``: of the decoded image (depth in bytes a
    sample); ``shrink``: the decoder's; ``vscale``: the planned scale of the stored
    image's rows; ``whole``: the decoder holds every pixel; ``held``: bytes the decoder
    keeps whatever the shrink."""
    load_w = max(1, int(stored[0] / shrink))
    load_h = max(1, int(stored[1] / shrink))
    floats = load_w * bands * (16 if depth > 1 else 4) * min(load_h, FLOAT_ROWS)
    if whole:  # exact: no margin
        decoded = load_w * load_h * bands * depth
        strips = int(floats * STRIP_MARGIN)
    else:
        window = 1 / max(vscale * shrink, 1e-9)  # loaded rows per output row
        rows = min(load_h, STRIP_ROWS + WINDOW * window)
        decoded = 0
        strips = int((load_w * bands * depth * rows + floats) * STRIP_MARGIN)
    scaled_w, scaled_h = scaled_size(p, *shown)
    scaled = scaled_w * scaled_h * min(bands, 4)
    encoder = formats.REGISTRY[out_format].encode_memory[1 if out_alpha else 0]
    encode = int(out[0] * out[1] * encoder)
    return FIXED + held + (decoded + strips + scaled + encode) * frames
