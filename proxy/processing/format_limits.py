"""What an output format cannot hold, settled just before encoding (as imgproxy does).

- **AVIF** needs at least 16 px a side: a smaller result is written as PNG when it
  has alpha, else as JPEG (an explicit ``@avif`` too; negotiation already skips
  AVIF for such results).
- **ICO** holds at most 256 px a side: a larger result is scaled down to fit.
"""

from __future__ import annotations

import pyvips

from .foreign_save import ICO_MAX_SIDE
from .steps import resize_premultiplied

AVIF_MIN_SIDE = 16


def settle(image: pyvips.Image, fmt: str) -> tuple[pyvips.Image, str]:
    """The image and format to encode."""
    if fmt == "avif" and min(image.width, image.height) < AVIF_MIN_SIDE:
        fmt = "png" if image.hasalpha() else "jpeg"
    if fmt == "ico" and max(image.width, image.height) > ICO_MAX_SIDE:
        factor = ICO_MAX_SIDE / max(image.width, image.height)
        image = (resize_premultiplied(image, factor, factor) if image.hasalpha()
                 else image.resize(factor))
    return image, fmt
