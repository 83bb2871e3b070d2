"""The ``watermark`` option: composite the server's watermark image, as imgproxy does.

The watermark comes from ``IMGPROXY_WATERMARK_DATA`` / ``_PATH`` / ``_URL`` and
is decoded once per process (``decoded``), then shared read-only by every
worker thread. Per request it is resized when ``scale`` > 0 (relative to the
result), placed by position and pixel offsets (times dpr; it may overflow the
edges) or tiled with ``re`` (offsets become the spacing, the grid centred on the
image), and blended with
``opacity`` (already multiplied by ``IMGPROXY_WATERMARK_OPACITY``, see resolve.py).
"""

from __future__ import annotations

import functools

import pyvips

from ..options import Watermark
from . import vips
from .color import matching, to_standard


@functools.lru_cache(maxsize=4)
def decoded(data: bytes) -> pyvips.Image:
    """The watermark as 8-bit sRGB (or grey) with alpha, in memory."""
    image = to_standard(pyvips.Image.new_from_buffer(data, "", access="sequential"))
    if not image.hasalpha():
        image = image.bandjoin(255)
    return image.copy_memory()


def check(data: bytes) -> None:
    """ValueError when ``data`` is not an image libvips can read."""
    try:
        decoded(data)
    except pyvips.Error as exc:
        raise ValueError(f"not a readable image: {vips.message(exc)}") from None


def position(outer: tuple[int, int], inner: tuple[int, int], kind: str, x: int, y: int
             ) -> tuple[int, int]:
    """imgproxy's ``calcPosition`` with overflow allowed (offsets are pixels)."""
    (ow, oh), (iw, ih) = outer, inner
    left, top = (ow - iw + 1) // 2 + x, (oh - ih + 1) // 2 + y
    if kind.startswith("no"):
        top = y
    if kind.startswith("so"):
        top = oh - ih - y
    if kind.endswith("ea"):
        left = ow - iw - x
    if kind.endswith("we"):
        left = x
    return left, top


def spacing(offset: float, dpr: float, size: int) -> int:
    """A ``re`` offset as the room between tiles: pixels (times dpr) when >= 1, else a
    share of the image's side (imgproxy's rounding, half to even)."""
    room = round(offset * dpr) if abs(offset) >= 1 else round(size * offset)
    return max(0, min(room, size))  # more room than the image tiles nothing more


def replicate(mark: pyvips.Image, width: int, height: int, pad_x: int, pad_y: int
              ) -> pyvips.Image:
    """The watermark tiled over ``width x height`` as imgproxy does: each tile padded by
    the spacing (half before, half after), an odd number of tiles each way, the grid
    centred on the image (a tile's centre on the image's)."""
    tile = mark.embed(pad_x // 2, pad_y // 2, mark.width + pad_x, mark.height + pad_y)
    across, down = -(-width // tile.width), -(-height // tile.height)
    across, down = across + (across % 2 == 0), down + (down % 2 == 0)
    tiles = tile.replicate(across, down)
    return tiles.crop((tiles.width - width) // 2, (tiles.height - height) // 2, width, height)


def _fit(mark: pyvips.Image, width: int, height: int) -> pyvips.Image:
    factor = min(width / mark.width, height / mark.height)
    if abs(factor - 1) < 1e-9:
        return mark
    return mark.premultiply().resize(factor).unpremultiply().cast("uchar")


MAX_SCALE = 4.0


def apply(image: pyvips.Image, data: bytes, w: Watermark, dpr: float) -> pyvips.Image:
    """``image`` (8-bit sRGB or grey, any alpha) with the watermark composited on it: a
    grey image stays grey under a grey watermark and turns sRGB under a colour one."""
    image, mark = matching(image, decoded(data))
    if w.scale > 0:  # at most 4x the image: a larger mark only adds pixels nobody sees
        scale = min(w.scale, MAX_SCALE)
        mark = _fit(mark, max(1, round(image.width * scale)),
                    max(1, round(image.height * scale)))
    x, y = round(w.x * dpr), round(w.y * dpr)
    if w.opacity < 1:
        mark = (mark * ([1] * (mark.bands - 1) + [w.opacity])).cast("uchar")
    if w.position == "re":
        mark, left, top = replicate(mark, image.width, image.height,
                                    spacing(w.x, dpr, image.width),
                                    spacing(w.y, dpr, image.height)), 0, 0
    else:
        left, top = position((image.width, image.height), (mark.width, mark.height),
                             w.position, x, y)
        if (left >= image.width or top >= image.height or -left >= mark.width
                or -top >= mark.height):
            return image
    had_alpha, interpretation = image.hasalpha(), image.interpretation
    out = image.composite2(mark, "over", x=left, y=top,
                           compositing_space=interpretation).cast("uchar")
    if not had_alpha:
        out = out.extract_band(0, n=out.bands - 1)
    return out.copy(interpretation=interpretation)
