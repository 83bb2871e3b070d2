"""The ``watermark`` option: composite the server's watermark image, as imgproxy does.

The watermark comes from ``IMGPROXY_WATERMARK_DATA`` / ``_PATH`` / ``_URL`` and
is decoded once per process (``decoded``), then shared read-only by every
worker thread. Per request it is resized when ``scale`` > 0 (relative to the
result), placed by position and pixel offsets (times dpr; it may overflow the
edges) or tiled with ``re`` (offsets become the spacing), and blended with
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
    if w.position == "re":  # spacing past the image's size tiles nothing more
        x, y = max(0, min(x, image.width)), max(0, min(y, image.height))
        mark = mark.embed(x // 2, y // 2, mark.width + x, mark.height + y)
        tiles = mark.replicate(-(-image.width // mark.width), -(-image.height // mark.height))
        mark, left, top = tiles.crop(0, 0, image.width, image.height), 0, 0
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
