"""Colour management: every source is processed as 8-bit sRGB.

CMYK, ICC-tagged (Adobe RGB, Display P3, ProPhoto, grey gamma 2.2), 16-bit and
grey(+alpha) sources are converted with libvips/lcms. The source profile is
kept (and the pixels left in its space) only when the caller asks for it
(``strip_color_profile:0``) and the profile is an RGB one; CMYK and grey
profiles cannot describe the sRGB-layout pixels the pipeline works on, so
those sources are always converted and their profile dropped.
"""

from __future__ import annotations

import contextlib

import pyvips

ICC = "icc-profile-data"


def profile_space(image: pyvips.Image) -> bytes | None:
    """The colour-space signature of the embedded ICC profile (``b"RGB "``, ``b"CMYK"``...)."""
    if not image.get_typeof(ICC):
        return None
    data = image.get(ICC)
    return bytes(data[16:20]) if len(data) >= 20 else b""


def to_srgb(image: pyvips.Image, keep_profile: bool = False) -> pyvips.Image:
    """8-bit sRGB (plus alpha if any); a kept RGB profile stays attached, others go."""
    space = profile_space(image)
    keep = keep_profile and space == b"RGB "
    if space is not None and not keep:
        with contextlib.suppress(pyvips.Error):  # a broken profile: plain conversion below
            image = image.icc_transform("srgb", embedded=True)
    elif image.interpretation == "cmyk":
        image = image.icc_transform("srgb", input_profile="cmyk")
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")
        if image.format != "uchar":
            image = image.cast("uchar")
    if not keep and image.get_typeof(ICC):
        image = image.copy()
        image.remove(ICC)
    return image
