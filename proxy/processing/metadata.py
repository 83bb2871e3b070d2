"""What metadata the encoder keeps: ``strip_metadata``, ``keep_copyright``, ICC.

libvips rebuilds the EXIF block from the image's ``exif-ifd*`` fields when
saving, so removing fields removes the tags. With ``keep_copyright`` (and
stripping on) the output keeps exactly the EXIF ``Copyright`` and ``Artist``
tags (plus the few structural tags libvips always writes: resolution, pixel
dimensions, EXIF version); GPS, camera, dates, XMP and IPTC are dropped.
"""

from __future__ import annotations

import pyvips

COPYRIGHT_TAGS = ("exif-ifd0-Copyright", "exif-ifd0-Artist")
EXIF_DATA = "exif-data"


def keep_flags(strip: bool, keep_copyright: bool, keep_icc: bool, exif: bool = True) -> str:
    """The ``keep`` argument of libvips savers (``exif``: the image has an EXIF block)."""
    parts = ["xmp", "iptc", "other"] if not strip else []
    if exif and (not strip or keep_copyright):
        parts.append("exif")
    if keep_icc:
        parts.append("icc")
    return ":".join(parts) or "none"


def copyright_only(image: pyvips.Image) -> pyvips.Image:
    """Drop every EXIF tag but the copyright ones (and the block if none is there)."""
    fields = image.get_fields()
    if EXIF_DATA not in fields:
        return image
    image = image.copy()
    wanted = [f for f in COPYRIGHT_TAGS if f in fields]
    for name in fields:
        if (name.startswith("exif-ifd") and name not in wanted) or (name == EXIF_DATA
                                                                    and not wanted):
            image.remove(name)
    return image


def prepare(image: pyvips.Image, strip: bool, keep_copyright: bool, keep_icc: bool
            ) -> tuple[pyvips.Image, str]:
    """The image with only the metadata to write, and the saver's ``keep`` flags."""
    if strip and keep_copyright:
        image = copyright_only(image)
    exif = bool(image.get_typeof(EXIF_DATA))  # else libvips would write a fresh block
    return image, keep_flags(strip, keep_copyright, keep_icc, exif)
