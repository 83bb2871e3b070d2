"""Before any pixel is decoded: the header's facts, the geometry plan, the limits.

imgproxy's "load -> decide -> reload": the header gives size, frames, alpha and
orientation; from them the plan, the output format and every limit check follow,
and only then is the image decoded (shrunk on load where the format allows it).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyvips

from .. import formats
from ..errors import ImageTooLarge
from ..geometry import Plan, plan, result_size, scaled_size
from ..resolve import Effective
from . import codecs, foreign_load

VECTOR_MAX_SIDE = 16384  # librsvg renders tile by tile: the cost grows with the side too


@dataclass(frozen=True)
class Header:
    """What the source's header says, before decoding."""

    format: str
    image: pyvips.Image | None  # opened, not decoded (None: read by ``foreign_load``)
    width: int  # as stored (before EXIF rotation)
    height: int
    frames: int  # frames that would be kept (up to ``max_animation_frames``)
    has_alpha: bool
    orientation: int  # EXIF orientation to apply (1 when auto_rotate is off)

    @property
    def vector(self) -> bool:
        return self.format == "svg"

    @property
    def shown(self) -> tuple[int, int]:
        """The size as displayed, after the EXIF orientation."""
        return oriented(self.width, self.height, self.orientation)


def inspect(data: codecs.Input, fmt: str, e: Effective) -> Header:
    if fmt in foreign_load.FORMATS:  # one still image, already oriented by its decoder
        declared = foreign_load.probe(data.whole(), fmt)
        return Header(fmt, None, declared.width, declared.height, 1, declared.alpha, 1)
    image = codecs.load(data, fmt, thumbnail=e.enforce_thumbnail)
    pages = image.get("n-pages") if image.get_typeof("n-pages") else 1
    frames = min(pages, e.max_animation_frames) if fmt in formats.ANIMATED else 1
    return Header(fmt, image, image.width, image.height, frames, image.hasalpha(),
                  orientation(image, e))


def stored_size(data: bytes, fmt: str) -> tuple[int, int]:
    """The size the header declares (for ``skip_processing``), nothing decoded."""
    if fmt in foreign_load.FORMATS:
        declared = foreign_load.probe(data, fmt)
        return declared.width, declared.height
    image = codecs.load(codecs.Input(data), fmt)
    return image.width, image.height


def orientation(header: pyvips.Image, e: Effective) -> int:
    if not e.auto_rotate or not header.get_typeof("orientation"):
        return 1
    value = header.get("orientation")
    return value if 1 <= value <= 8 else 1


def oriented(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation >= 5 else (width, height)


def geometry(e: Effective, width: int, height: int, vector: bool) -> tuple[Plan, int, int]:
    """The plan and the result size for a ``width x height`` (EXIF-rotated) source."""
    # geometry works on the image as it will be displayed: EXIF and user rotation applied
    plan_w, plan_h = (height, width) if e.rotate % 180 else (width, height)
    p = plan(e, plan_w, plan_h, e.max_result_dimension, vector)
    out_w, out_h = result_size(p, plan_w, plan_h)
    if vector:
        p = vector_guard(p, e, plan_w, plan_h, out_w, out_h)
        out_w, out_h = result_size(p, plan_w, plan_h)
    else:  # the image before crop-to-result exists in memory too: bound it like a source
        mid_w, mid_h = scaled_size(p, plan_w, plan_h)
        if mid_w * mid_h > max(pixel_limit(e), out_w * out_h):
            raise ImageTooLarge(f"Scaled image would be {mid_w}x{mid_h} before cropping")
    return p, out_w, out_h


def pixel_limit(e: Effective) -> float:
    return e.max_src_resolution * 1_000_000


def check_resolution(width: int, height: int, frames: int, e: Effective) -> None:
    """Refuse decompression bombs from the header, before any pixel is decoded."""
    per_frame = e.max_animation_frame_resolution
    if per_frame and frames > 1:
        if width * height > per_frame * 1_000_000:
            raise ImageTooLarge(f"Source frame is too large: {width}x{height}")
    elif width * height * frames > pixel_limit(e):
        raise ImageTooLarge(f"Source image is too large: {width}x{height}x{frames}")


def vector_guard(p: Plan, e: Effective, width: int, height: int, out_w: int, out_h: int
                 ) -> Plan:
    """Shrink an SVG's plan so that its raster stays within the limits, or refuse it.

    Like imgproxy's vectorGuardScale: vector sources skip the source-resolution
    check, so a 10,000,000 px canvas is rendered smaller, never at full size.
    The rendered area stays within the resolution limit and its longest side
    within ``VECTOR_MAX_SIDE`` (or the result cap, if larger); a canvas that
    cannot fit even at one pixel high (10,000,000 x 1) is refused.
    """
    limit = pixel_limit(e)
    side_cap = max(VECTOR_MAX_SIDE, e.max_result_dimension)

    def excess(q: Plan, ow: int, oh: int) -> float:
        render = min(q.scale)  # the scale load_shrink asks librsvg for
        area = max(width * render * height * render, ow * oh) / limit
        return max(area ** 0.5, max(width, height) * render / side_cap)

    over = excess(p, out_w, out_h)
    if over <= 1:
        return p
    p = plan(e, width, height, max(1, int(max(out_w, out_h) / over)), True)
    if excess(p, *result_size(p, width, height)) > 1.001:
        raise ImageTooLarge(f"SVG of {width}x{height} cannot be rendered within the limits")
    return p


def load_shrink(fmt: str, p: Plan, animated: bool) -> float:
    """How much the loader may shrink while decoding (never below the needed size)."""
    if fmt == "svg":
        return 1 / min(p.scale)
    if not codecs.shrinks_on_load(fmt, animated):
        return 1.0
    return max(1.0, 1 / max(p.scale))


def needs_alpha(e: Effective, p: Plan) -> bool:
    """Transparency is expected when padding/extend adds area and no background is set."""
    return e.background is None and (p.extend_to is not None or p.aspect_to is not None
                                     or any(p.padding))


def working_memory(header: Header, p: Plan, shrink: float, frames: int, out: tuple[int, int],
                   e: Effective, whole: bool) -> int:
    """An estimate of the memory this job's decode, steps and encode hold at their peak.

    A sequential decode (JPEG/PNG shrunk on load, no trim) keeps a band of lines; other
    loaders and ``trim`` hold the whole loaded image (``whole``). The scaled image is
    copied to memory once (and once more by a step such as extend or a filter), and
    the encoder holds at most the output's pixels.
    """
    image = header.image
    if image is None:  # decoded outside libvips (foreign_load): up to 16-bit RGBA
        bands, depth = 4, 2
    else:
        bands = image.bands + (0 if header.has_alpha else 1)  # room for an added alpha
        depth = {"uchar": 1, "char": 1, "ushort": 2, "short": 2}.get(image.format, 4)
    load_w = max(1, int(header.width / shrink))
    load_h = max(1, int(header.height / shrink))
    decoded = load_w * load_h if whole else load_w * min(load_h, 256)
    scaled_w, scaled_h = scaled_size(p, *header.shown)
    pixels = decoded * depth + 2 * scaled_w * scaled_h + out[0] * out[1]
    return int(pixels * bands * frames * 1.25) + (4 << 20)
