"""The pipeline's steps, each a small function ``(image, ctx) -> image``.

``pipeline.STEPS`` lists them in imgproxy's order; user options never reorder
them. Every step reads what it needs from the ``Context`` (the effective options
and the plan made before decoding) and does nothing when its option is off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyvips

from .. import formats
from ..geometry import Plan, gravity_offset
from ..options import Extend, Gravity
from ..resolve import Effective
from . import watermark
from .color import is_grey, to_colour, to_standard

WHITE = (255, 255, 255)
#: blur/sharpen sigma is capped: the cost grows with it and a URL could ask for any value
MAX_SIGMA = 50.0
MAX_SHARPEN_SIGMA = 10.0  # libvips' own upper bound for sharpen
_EXIF_ANGLE = {3: 180, 4: 180, 5: 90, 6: 90, 7: 270, 8: 270}


def _unwatched(image: pyvips.Image) -> pyvips.Image:
    return image


@dataclass(frozen=True)
class Context:
    """Per-request facts every step may read."""

    options: Effective
    plan: Plan
    orientation: int
    output_format: str
    raw_size: tuple[int, int]  # the frame's full-resolution size (before shrink-on-load)
    watermark: bytes | None = None  # the server's watermark image
    watch: Callable[[pyvips.Image], pyvips.Image] = _unwatched  # see ``cancel.KillSwitch``

    @property
    def keep_icc(self) -> bool:
        """``strip_color_profile:0``: keep the source's RGB profile (and its pixel values)."""
        return not self.options.strip_color_profile


Step = Callable[[pyvips.Image, Context], pyvips.Image]


def colour(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    return to_standard(image, ctx.keep_icc)


def display_ops(ctx: Context, width: int, height: int) -> list[tuple[str, int, int]]:
    """The rotations and flips that turn a stored frame into the displayed one, in
    order, each with the size of its input: EXIF orientation, then ``rot``, ``fl``."""
    e, ops = ctx.options, []
    steps = []
    if angle := _EXIF_ANGLE.get(ctx.orientation, 0):
        steps.append(f"rot{angle}")
    if ctx.orientation in (2, 4, 5, 7):
        steps.append("fliphor")
    if e.rotate:
        steps.append(f"rot{e.rotate}")
    steps += ["fliphor"] * e.flip[0] + ["flipver"] * e.flip[1]
    for op in steps:
        ops.append((op, width, height))
        if op in ("rot90", "rot270"):
            width, height = height, width
    return ops


def _undo(rect: tuple[int, int, int, int], op: str, width: int, height: int
          ) -> tuple[int, int, int, int]:
    """The rectangle of an op's input (``width x height``) that lands on ``rect``."""
    x, y, w, h = rect
    return {
        "rot90": (y, height - x - w, h, w),
        "rot180": (width - x - w, height - y - h, w, h),
        "rot270": (width - y - h, x, h, w),
        "fliphor": (width - x - w, y, w, h),
        "flipver": (x, height - y - h, w, h),
    }[op]


def crop_source(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    """The ``crop`` option, before scaling (as imgproxy does), so a small crop that is
    enlarged never scales the whole image. The region is placed on the displayed
    image, mapped back through the rotations, and cut from the (shrunk-on-load)
    frame. The next step scales the region by ``crop_region`` (full-size pixels)."""
    e, p, raw_size = ctx.options, ctx.plan, ctx.raw_size
    if p.crop is None or e.crop is None:
        return image
    ops = display_ops(ctx, *raw_size)
    turned = sum(op in ("rot90", "rot270") for op, _, _ in ops) % 2 == 1
    shown = (raw_size[1], raw_size[0]) if turned else raw_size
    fx, fy = image.width / raw_size[0], image.height / raw_size[1]
    gravity = e.crop.gravity or e.gravity
    if gravity.type == "sm":
        w, h = (p.crop[1], p.crop[0]) if turned else p.crop
        w, h = min(image.width, max(1, round(w * fx))), min(image.height, max(1, round(h * fy)))
        return _region(ctx.watch(image.copy_memory()).smartcrop(w, h, interesting="attention"),
                       (round(w / fx), round(h / fy)))
    x, y = gravity_offset(gravity, shown, p.crop, 1.0)
    rect = (x, y, *p.crop)
    for op, width, height in reversed(ops):
        rect = _undo(rect, op, width, height)
    x, y, w, h = rect
    left, top = min(image.width - 1, int(x * fx)), min(image.height - 1, int(y * fy))
    width = max(1, min(image.width - left, round(w * fx)))
    height = max(1, min(image.height - top, round(h * fy)))
    return _region(image.crop(left, top, width, height), (w, h))


CROP_REGION = "vipsgate-crop-region"  # full-resolution size of a cropped frame


def _region(image: pyvips.Image, size: tuple[int, int]) -> pyvips.Image:
    image = image.copy()
    image.set_type(pyvips.GValue.array_int_type, CROP_REGION, list(size))
    return image


def scale(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    """Resize to the planned scale, counting what shrink-on-load already did."""
    sx, sy = ctx.plan.scale
    if (ctx.orientation >= 5) != bool(ctx.options.rotate % 180):  # plan axes are rotated
        sx, sy = sy, sx
    raw_w, raw_h = (image.get(CROP_REGION) if image.get_typeof(CROP_REGION)
                    else ctx.raw_size)
    hscale, vscale = sx * raw_w / image.width, sy * raw_h / image.height
    if abs(hscale - 1) < 1e-6 and abs(vscale - 1) < 1e-6:
        return ctx.watch(image.copy_memory())
    interpretation = image.interpretation
    if ctx.options.linear_colorspace:  # IMGPROXY_USE_LINEAR_COLORSPACE: resize light
        image = image.colourspace("scrgb")
    if image.hasalpha():  # premultiplied, so transparent pixels do not bleed their colour
        image = resize_premultiplied(image, hscale, vscale)
    else:
        image = image.resize(hscale, vscale=vscale)
    if ctx.options.linear_colorspace:
        image = image.colourspace(interpretation).cast("uchar")
    return ctx.watch(image.copy_memory())  # small now; the next steps need random access


def resize_premultiplied(image: pyvips.Image, hscale: float, vscale: float) -> pyvips.Image:
    """Resize an image with alpha as libvips' own ``thumbnail`` does: premultiply, cast
    back to the band format, resize, unpremultiply, cast back. Resizing in the band
    format rather than float halves the cost (W4: 12 -> 5.7 ms); composited, the
    result is within 7/255 of the float path (mean 0.5)."""
    fmt = image.format
    return (image.premultiply().cast(fmt).resize(hscale, vscale=vscale)
            .unpremultiply().cast(fmt))


def rotate_and_flip(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    """EXIF orientation, then ``rot``, then ``fl`` (the tag goes in ``finalize``)."""
    for op, _, _ in display_ops(ctx, image.width, image.height):
        image = getattr(image, op)()
    return image


def crop_to_result(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    tw, th = ctx.plan.target
    w = min(tw, image.width) if tw else image.width
    h = min(th, image.height) if th else image.height
    return crop_to(image, w, h, ctx.options.gravity, ctx.plan.dpr)


def crop_to(image: pyvips.Image, w: int, h: int, g: Gravity, dpr: float) -> pyvips.Image:
    if w >= image.width and h >= image.height:
        return image
    if g.type == "sm":
        return image.smartcrop(w, h, interesting="attention")
    left, top = gravity_offset(g, (image.width, image.height), (w, h), dpr)
    return image.crop(left, top, w, h)


def filters(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    """``blur`` -> ``sharpen`` -> ``pixelate``, premultiplied."""
    e = ctx.options
    if not (e.blur or e.sharpen or e.pixelate > 1):
        return image
    alpha, interpretation = image.hasalpha(), image.interpretation
    if alpha:
        image = image.premultiply()
    if e.blur:
        image = image.gaussblur(min(e.blur, MAX_SIGMA))
    if e.sharpen:
        image = image.sharpen(sigma=min(e.sharpen, MAX_SHARPEN_SIGMA))
    if e.pixelate > 1:
        image = pixelate(image, min(e.pixelate, max(image.width, image.height)))
    if alpha:
        image = image.unpremultiply()
    return image.cast("uchar").copy(interpretation=interpretation)


def pixelate(image: pyvips.Image, n: int) -> pyvips.Image:
    """imgproxy's ``vips_pixelate``: n x n blocks from the top-left, each its mean colour."""
    w, h = image.width, image.height
    tw, th = -(-w // n) * n, -(-h // n) * n
    if (tw, th) != (w, h):
        image = image.embed(0, 0, tw, th, extend="copy")
    return image.shrink(n, n).zoom(n, n).crop(0, 0, w, h)


def background_for(image: pyvips.Image, rgb: tuple[int, int, int]
                   ) -> tuple[pyvips.Image, list[float]]:
    """``image`` and ``rgb`` as a fill for its colour bands: one value for a grey
    image and a neutral colour; a grey image turns sRGB for any other colour."""
    if is_grey(image):
        if rgb[0] == rgb[1] == rgb[2]:
            return image, [float(rgb[0])]
        image = to_colour(image)
    return image, [float(c) for c in rgb]


def _canvas(image: pyvips.Image, ctx: Context) -> tuple[pyvips.Image, list[float]]:
    """An image ready to embed on a transparent (no ``bg``) or coloured background."""
    background = ctx.options.background
    if background is not None:
        image, color = background_for(image, background)
        return image, [*color, 255.0] if image.hasalpha() else color
    if not image.hasalpha():
        image = image.bandjoin(255)
    return image, [0.0] * image.bands


def _grow(image: pyvips.Image, ctx: Context, size: tuple[int, int] | None,
          how: Extend) -> pyvips.Image:
    """``image`` placed by ``how.gravity`` on a canvas of at least ``size``."""
    if size is None:
        return image
    w, h = max(image.width, size[0]), max(image.height, size[1])
    if (w, h) == (image.width, image.height):
        return image
    left, top = gravity_offset(how.gravity, (w, h), (image.width, image.height), ctx.plan.dpr)
    image, background = _canvas(image, ctx)
    return image.embed(left, top, w, h, background=background)


def extend(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    return _grow(image, ctx, ctx.plan.extend_to, ctx.options.extend)


def extend_aspect_ratio(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    return _grow(image, ctx, ctx.plan.aspect_to, ctx.options.extend_ar)


def pad(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    top, right, bottom, left = ctx.plan.padding
    if not (top or right or bottom or left):
        return image
    image, background = _canvas(image, ctx)
    return image.embed(left, top, image.width + left + right, image.height + top + bottom,
                       background=background)


def flatten(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    background = ctx.options.background
    if image.hasalpha() and (background is not None
                             or ctx.output_format not in formats.ALPHA):
        image, color = background_for(image, background or WHITE)
        return image.flatten(background=color).cast("uchar")
    return image


def apply_watermark(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    """The ``watermark`` option (a no-op when the server has no watermark image)."""
    w = ctx.options.watermark
    if w is None or not ctx.watermark:
        return image
    return watermark.apply(image, ctx.watermark, w, ctx.plan.dpr)


def finalize(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    """The pixels are rotated: no orientation tag may reach the output (metadata is
    otherwise chosen by the encoder's ``keep``)."""
    return _without(image, "orientation", CROP_REGION)


def _without(image: pyvips.Image, *names: str) -> pyvips.Image:
    present = [name for name in names if image.get_typeof(name)]
    if not present:
        return image
    image = image.copy()
    for name in present:
        image.remove(name)
    return image
