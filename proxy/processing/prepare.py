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
from . import codecs, foreign_load, memory_model, svg_guard

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
    whole: bool = False  # the decoder holds every pixel even when read in order
    held: int = 0  # bytes the decoder keeps whatever the shrink (see memory_model)

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
    held = svg_guard.check(data.whole(), pixel_limit(e)) if fmt == "svg" else 0
    image = codecs.load(data, fmt, thumbnail=e.enforce_thumbnail)
    pages = image.get("n-pages") if image.get_typeof("n-pages") else 1
    frames = min(pages, e.max_animation_frames) if fmt in formats.ANIMATED else 1
    whole, coefficients = decoder_holds(image, fmt)
    return Header(fmt, image, image.width, image.height, frames, image.hasalpha(),
                  orientation(image, e), whole, coefficients + held)


def decoder_holds(image: pyvips.Image, fmt: str) -> tuple[bool, int]:
    """What the decoder of a sequential format holds however it is read: an interlaced
    PNG every pixel; a progressive JPEG its DCT coefficients (2 bytes a sample, at full
    size even when shrunk on load)."""
    if fmt == "png":
        return bool(image.get_typeof("interlaced") and image.get("interlaced")), 0
    if fmt == "jpeg" and image.get_typeof("jpeg-multiscan") and image.get("jpeg-multiscan"):
        subsampled = image.get_typeof("jpeg-chroma-subsample") and \
            image.get("jpeg-chroma-subsample") == "4:2:0" and image.bands == 3
        samples = 1.5 if subsampled else image.bands
        return False, int(image.width * image.height * samples * 2)
    return False, 0


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
    """Refuse decompression bombs from the header, before any pixel is decoded: too many
    pixels, or a side so long that rows of it cost more than the image's area says."""
    if e.max_src_dimension and max(width, height) > e.max_src_dimension:
        raise ImageTooLarge(f"Source side is too long: {width}x{height} "
                            f"(at most {e.max_src_dimension} px)")
    per_frame = e.max_animation_frame_resolution
    if per_frame and frames > 1:
        if width * height > per_frame * 1_000_000:
            raise ImageTooLarge(f"Source frame is too large: {width}x{height}")
    elif width * height * frames > pixel_limit(e):
        raise ImageTooLarge(f"Source image is too large: {width}x{height}x{frames}")


def check_result(width: int, height: int, frames: int, e: Effective) -> None:
    """Refuse a result larger than ``max_result_resolution`` (frames summed): a small
    source may ask for a huge result (``enlarge``, ``dpr``, ``zoom``, ``extend``)."""
    if width * height * frames > e.max_result_resolution * 1_000_000:
        what = f"{frames} frames of {width}x{height}" if frames > 1 else f"{width}x{height}"
        raise ImageTooLarge(f"Result would be {what}, more than "
                            f"{e.max_result_resolution:g} megapixels")


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


def working_memory(header: Header, e: Effective, p: Plan, shrink: float, frames: int,
                   out: tuple[int, int], whole: bool, out_format: str, out_alpha: bool) -> int:
    """The job's estimated peak memory (``memory_model.estimate``) from the header."""
    turned = (header.orientation >= 5) != bool(e.rotate % 180)  # stored rows are plan columns
    vscale = p.scale[0] if turned else p.scale[1]
    image = header.image
    if image is None:  # decoded outside libvips (foreign_load): up to 16-bit RGBA
        bands, depth = 4, 2
    else:
        bands = image.bands + (1 if out_alpha and not header.has_alpha else 0)
        depth = memory_model.sample_bytes(image.format)
    return memory_model.estimate(
        stored=(header.width, header.height), shown=header.shown, bands=bands, depth=depth,
        shrink=shrink, p=p, vscale=vscale, frames=frames, out=out, whole=whole or header.whole,
        held=header.held, out_format=out_format, out_alpha=out_alpha)
