"""The ``trim`` option: cut away a uniform border, as imgproxy's ``vips_trim``.

Works on the whole decoded image (no shrink-on-load) before anything else.
Transparent pixels are judged as magenta (``FF00FF``), as in imgproxy; the
background colour is the given one or the top-left pixel. ``equal_hor`` /
``equal_ver`` cut the smaller of the two margins from both sides. A result
with no pixels left keeps the image unchanged.
"""

from __future__ import annotations

import pyvips

from ..options import Trim
from .color import to_colour

MAGENTA = [255, 0, 255]


def find_box(image: pyvips.Image, t: Trim) -> tuple[int, int, int, int]:
    """``(left, top, width, height)`` of what remains after trimming 8-bit ``image``
    (judged in sRGB: a grey image is compared with the colour as imgproxy does)."""
    probe = to_colour(image)
    probe = probe.flatten(background=MAGENTA) if probe.hasalpha() else probe
    background = list(t.color) if t.color is not None else probe(0, 0)[:3]
    left, top, width, height = probe.find_trim(threshold=t.threshold, background=background)
    if t.equal_hor:
        right = image.width - left - width
        left, width = min(left, right), image.width - 2 * min(left, right)
    if t.equal_ver:
        bottom = image.height - top - height
        top, height = min(top, bottom), image.height - 2 * min(top, bottom)
    return left, top, width, height


def trim(image: pyvips.Image, t: Trim) -> pyvips.Image:
    """The trimmed image, in memory (the next steps need random access)."""
    image = image.copy_memory()
    left, top, width, height = find_box(image, t)
    if width <= 0 or height <= 0 or (width, height) == (image.width, image.height):
        return image
    return image.crop(left, top, width, height).copy_memory()
