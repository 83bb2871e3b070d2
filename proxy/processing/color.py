"""Colour management: every source is processed as 8-bit sRGB, or 8-bit grey.

CMYK, ICC-tagged (Adobe RGB, Display P3, ProPhoto), 16-bit and other sources
are converted to sRGB with libvips/lcms. Grey sources (1 band, or grey + alpha;
8 or 16 bits, with or without a grey ICC profile) stay grey, as in imgproxy:
8-bit sGrey is smaller to store, and every output format takes it (WebP, AVIF
and GIF encoders store it as colour). A step that brings colour in (a coloured
``bg``, a colour watermark) turns the image into sRGB first (``to_colour``).

The source profile is kept (and the pixels left in its space) only when the
caller asks for it (``strip_color_profile:0``) and the profile is an RGB one;
CMYK and grey profiles are always applied to the pixels and dropped.
"""

from __future__ import annotations

import contextlib

import pyvips

ICC = "icc-profile-data"
GREY = ("b-w", "grey16")


def profile_space(image: pyvips.Image) -> bytes | None:
    """The colour-space signature of the embedded ICC profile (``b"RGB "``, ``b"CMYK"``...)."""
    if not image.get_typeof(ICC):
        return None
    data = image.get(ICC)
    return bytes(data[16:20]) if len(data) >= 20 else b""


def is_grey(image: pyvips.Image) -> bool:
    """One grey band, with or without alpha."""
    return image.bands in (1, 2) and image.interpretation in GREY


def to_standard(image: pyvips.Image, keep_profile: bool = False) -> pyvips.Image:
    """8-bit sRGB, or 8-bit grey for a grey source (plus alpha if any); a kept RGB
    profile stays attached, others go."""
    grey = is_grey(image)
    space = profile_space(image)
    keep = keep_profile and space == b"RGB " and not grey
    if space is not None and not keep:
        with contextlib.suppress(pyvips.Error):  # a broken profile: plain conversion below
            image = image.icc_transform("sgrey" if grey and space == b"GRAY" else "srgb",
                                        embedded=True)
    elif image.interpretation == "cmyk":
        image = image.icc_transform("srgb", input_profile="cmyk")
    target = "b-w" if grey else "srgb"
    if image.interpretation != target or image.format != "uchar":
        image = image.colourspace(target)
        if image.format != "uchar":
            image = image.cast("uchar")
    if not keep and image.get_typeof(ICC):
        image = image.copy()
        image.remove(ICC)
    return image


def to_colour(image: pyvips.Image) -> pyvips.Image:
    """A grey image as 8-bit sRGB (3 bands, plus alpha); others unchanged."""
    return image.colourspace("srgb").cast("uchar") if is_grey(image) else image


def matching(image: pyvips.Image, other: pyvips.Image) -> tuple[pyvips.Image, pyvips.Image]:
    """Both in colour unless both are grey (to composite one onto the other)."""
    if is_grey(image) and is_grey(other):
        return image, other
    return to_colour(image), to_colour(other)
