"""The libvips pipeline: load header -> decide -> reload shrunk -> steps -> encode.

Runs in a worker thread (never on the event loop). The steps follow
imgproxy's order and user options never reorder them. ``process`` is the
only entry point; each step is a small function over the image and a
``Context``. Before any decoding: ``skip_processing`` returns the source
bytes; ``trim`` decodes the whole image (no shrink-on-load) and plans the
geometry on what is left. Animations run the steps once per frame.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import pyvips

from .. import native
from ..errors import ConfigError, ImageTooLarge, ProxyError, UnprocessableImage, UnsupportedFormat
from ..geometry import Plan, gravity_offset, plan, result_size, scaled_size
from ..options import Gravity, ProcessingOptions
from . import formats, metadata, watermark
from .color import to_srgb
from .trim import trim

WHITE = (255, 255, 255)
formats.restrict_loaders()  # only the loaders in _LOADERS below can ever run


def _forward_only_warnings() -> None:
    """Let pyvips forward libvips warnings and errors to Python logging, not INFO.

    libvips emits several INFO lines per image ("residual reducev ...",
    "threadpool completed ..."); pyvips' handler takes the GIL for each of them
    just to have logging drop them. GLib's default handler drops INFO unless
    ``G_MESSAGES_DEBUG=VIPS`` is set, which is how to see them when debugging.
    """
    handler_id = getattr(pyvips, "_log_handler_id", None)
    if not handler_id:
        return
    flags, domain = pyvips.GLogLevelFlags, b"VIPS"
    pyvips.glib_lib.g_log_remove_handler(domain, handler_id)
    pyvips._log_handler_id = pyvips.glib_lib.g_log_set_handler(
        domain, flags.LEVEL_WARNING | flags.LEVEL_CRITICAL | flags.LEVEL_ERROR
        | flags.FLAG_FATAL | flags.FLAG_RECURSION, pyvips._log_handler_cb, pyvips.ffi.NULL)


_forward_only_warnings()
native.survive_nested_log_messages()


class FormatChooser(Protocol):
    """Decides the output format once the image's facts are known (see negotiate.py)."""

    def choose(self, source: str, alpha: bool, animated: bool, width: int, height: int) -> str: ...


@dataclass(frozen=True)
class ProcessingConfig:
    """Server-wide processing defaults and limits (built once from Settings)."""

    quality: int = 80
    format_quality: tuple[tuple[str, int], ...] = (("webp", 79), ("avif", 63))
    strip_metadata: bool = True
    keep_copyright: bool = True
    strip_color_profile: bool = True
    auto_rotate: bool = True
    enforce_thumbnail: bool = False
    max_src_resolution: float = 50.0
    max_animation_frames: int = 100
    max_animation_frame_resolution: float = 0.0
    max_result_dimension: int = 8192
    max_svg_check_bytes: int = 32 * 1024
    avif_speed: int = 8
    webp_effort: int = 4
    jpeg_progressive: bool = False
    png_interlaced: bool = False
    skip_processing_formats: tuple[str, ...] = ()
    watermark: bytes | None = None
    watermark_opacity: float = 1.0

    @classmethod
    def from_settings(cls, s: Any) -> ProcessingConfig:
        """From ``Settings``; the watermark (DATA, else PATH) is read and checked here."""
        names = set(cls.__dataclass_fields__) - {"watermark"}
        config = cls(**{name: getattr(s, name) for name in names})
        try:
            if getattr(s, "watermark_data", ""):
                return config.with_watermark(base64.b64decode(s.watermark_data))
            if getattr(s, "watermark_path", ""):
                with open(s.watermark_path, "rb") as fh:
                    return config.with_watermark(fh.read())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"IMGPROXY_WATERMARK_DATA/_PATH: {exc}") from None
        return config

    def with_watermark(self, data: bytes) -> ProcessingConfig:
        """A copy using ``data`` as the watermark; ValueError if it is not an image."""
        try:
            watermark.decoded(data)
        except pyvips.Error as exc:
            raise ValueError(f"watermark is not a readable image: {_vips_message(exc)}") \
                from None
        return replace(self, watermark=data)


@dataclass(frozen=True)
class Result:
    data: bytes
    format: str
    width: int
    height: int
    source_format: str
    source_width: int
    source_height: int


@dataclass(frozen=True)
class Context:
    """Per-request facts every step may read."""

    options: ProcessingOptions
    config: ProcessingConfig
    plan: Plan
    orientation: int
    has_alpha: bool
    output_format: str

    @property
    def keep_icc(self) -> bool:
        return _keep_icc(self.options, self.config)


def process(data: bytes, options: ProcessingOptions, chooser: FormatChooser,
            config: ProcessingConfig = ProcessingConfig()) -> Result:
    """Turn source bytes into the encoded result. Raises ``ProxyError`` subclasses."""
    try:
        return _process(data, options, chooser, config)
    except ProxyError:
        raise
    except pyvips.Error as exc:
        raise UnprocessableImage(_vips_message(exc)) from None


def _process(data: bytes, o: ProcessingOptions, chooser: FormatChooser,
             config: ProcessingConfig) -> Result:
    src_format = formats.sniff(data, config.max_svg_check_bytes)
    if src_format is None:
        raise UnsupportedFormat("Failed to detect source image type")
    if src_format in (o.skip_processing or config.skip_processing_formats) \
            and o.format in (None, src_format) and src_format != "svg":
        return skip(data, src_format, o, config)
    if src_format not in formats.LOADABLE:
        raise UnsupportedFormat(f"Source format {src_format} is not supported")
    vector = src_format == "svg"
    thumbnail = o.enforce_thumbnail if o.enforce_thumbnail is not None \
        else config.enforce_thumbnail
    header = load(data, src_format, thumbnail=thumbnail)
    pages = header.get("n-pages") if header.get_typeof("n-pages") else 1
    max_frames = o.max_animation_frames or config.max_animation_frames
    frames = min(pages, max_frames) if src_format in formats.ANIMATED else 1
    has_alpha = header.hasalpha()
    orientation = _orientation(header, o, config)
    width, height = _oriented(header.width, header.height, orientation)
    p, out_w, out_h = _geometry(o, config, width, height, vector)
    out_format = chooser.choose(src_format, has_alpha or _needs_alpha(o, p), frames > 1,
                                out_w, out_h)
    if out_format not in formats.SAVEABLE:
        raise UnsupportedFormat(f"Resulting image format {out_format} is not supported")
    animated = frames > 1 and out_format in formats.ANIMATED
    if not animated:
        frames = 1
    elif frames * out_w * out_h > _pixel_limit(o, config):  # every output frame is in memory
        raise ImageTooLarge(f"Animation result would be {frames} frames of {out_w}x{out_h}")
    if not vector:  # frames beyond the maximum were dropped: only the kept ones count
        check_resolution(header.width, header.height, frames, o, config)
    strict = src_format == "jpeg" and formats.jpeg_suspicious(len(data), header.width,
                                                              header.height)
    fail_on = "warning" if strict else "error"
    if o.trim is not None and not animated:  # trim needs the whole image: no shrink-on-load
        image = load(data, src_format, thumbnail=thumbnail, fail_on=fail_on)
        image = trim(to_srgb(image, _keep_icc(o, config)), o.trim)
        raw_size = (image.width, image.height)
        p, out_w, out_h = _geometry(o, config, *_oriented(*raw_size, orientation), vector)
        out_format = chooser.choose(src_format, has_alpha or _needs_alpha(o, p), False,
                                    out_w, out_h)
    else:
        shrink = _load_shrink(src_format, p, header.width, header.height, orientation,
                              animated)
        image = load(data, src_format, shrink=shrink, frames=frames, thumbnail=thumbnail,
                     fail_on=fail_on)
        raw_size = (header.width, header.height)
    ctx = Context(o, config, p, orientation, has_alpha, out_format)
    if animated:
        image = _process_animation(image, frames, ctx, header)
    else:
        image = _run_steps(image, ctx, raw_size)
    image = finalize(image, ctx)
    encoded = encode(image, out_format, o, config)
    height_out = image.get("page-height") if animated else image.height
    return Result(encoded, out_format, image.width, height_out, src_format, width, height)


def _oriented(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation >= 5 else (width, height)


def _geometry(o: ProcessingOptions, config: ProcessingConfig, width: int, height: int,
              vector: bool) -> tuple[Plan, int, int]:
    """The plan and the result size for a ``width x height`` (EXIF-rotated) source."""
    # geometry works on the image as it will be displayed: EXIF and user rotation applied
    plan_w, plan_h = (height, width) if o.rotate % 180 else (width, height)
    p = plan(o, plan_w, plan_h, o.max_result_dimension if o.max_result_dimension is not None
             else config.max_result_dimension, vector)
    out_w, out_h = result_size(p, plan_w, plan_h)
    if vector:
        p = vector_guard(p, o, config, plan_w, plan_h, out_w, out_h)
        out_w, out_h = result_size(p, plan_w, plan_h)
    else:  # the image before crop-to-result exists in memory too: bound it like a source
        mid_w, mid_h = scaled_size(p, plan_w, plan_h)
        if mid_w * mid_h > max(_pixel_limit(o, config), out_w * out_h):
            raise ImageTooLarge(f"Scaled image would be {mid_w}x{mid_h} before cropping")
    return p, out_w, out_h


def _pixel_limit(o: ProcessingOptions, config: ProcessingConfig) -> float:
    return (o.max_src_resolution or config.max_src_resolution) * 1_000_000


def _keep_icc(o: ProcessingOptions, config: ProcessingConfig) -> bool:
    """``strip_color_profile:0``: keep the source's RGB profile (and its pixel values)."""
    return not (o.strip_color_profile if o.strip_color_profile is not None
                else config.strip_color_profile)


def skip(data: bytes, fmt: str, o: ProcessingOptions, config: ProcessingConfig) -> Result:
    """``skip_processing``: the source bytes unchanged, after the resolution check.

    Never for SVG: SVGs are only ever rasterised, so scripts in them cannot reach
    a browser as ``image/svg+xml``.
    """
    width = height = 0
    if fmt in _LOADERS:
        header = load(data, fmt)
        width, height = header.width, header.height
        if fmt != "svg":
            check_resolution(width, height, 1, o, config)
    return Result(data, fmt, width, height, fmt, width, height)


def raw(data: bytes, config: ProcessingConfig = ProcessingConfig()) -> Result:
    """The ``raw`` option: the source as it is, typed by its sniffed format.

    ``format`` is "" (served as ``application/octet-stream``) when the bytes are
    not a known image, and for SVG, which is never served as ``image/svg+xml``.
    """
    fmt = formats.sniff(data, config.max_svg_check_bytes) or ""
    fmt = "" if fmt == "svg" else fmt
    return Result(data, fmt, 0, 0, fmt, 0, 0)


# --- load ---------------------------------------------------------------------------

_LOADERS: dict[str, Callable[..., pyvips.Image]] = {
    "jpeg": pyvips.Image.jpegload_buffer, "png": pyvips.Image.pngload_buffer,
    "webp": pyvips.Image.webpload_buffer, "gif": pyvips.Image.gifload_buffer,
    "avif": pyvips.Image.heifload_buffer, "heic": pyvips.Image.heifload_buffer,
    "tiff": pyvips.Image.tiffload_buffer, "svg": pyvips.Image.svgload_buffer,
}


def load(data: bytes, fmt: str, shrink: float = 1.0, frames: int = 1,
         thumbnail: bool = False, fail_on: str = "error") -> pyvips.Image:
    """Open ``data`` with the loader for its sniffed format (never a guessing loader).

    ``fail_on="error"`` turns truncated and corrupt files into errors (422)
    instead of libvips' default grey fill.
    """
    kwargs: dict[str, Any] = {"access": "sequential", "fail_on": fail_on}
    if fmt == "jpeg" and shrink >= 2:
        kwargs["shrink"] = 8 if shrink >= 8 else 4 if shrink >= 4 else 2
    elif fmt == "webp" and shrink > 1:
        kwargs["scale"] = 1 / shrink
    elif fmt == "svg":
        kwargs["scale"] = 1 / shrink
        kwargs["unlimited"] = False  # keep librsvg's limits (XML size, nesting)
        del kwargs["access"]
    elif fmt in ("avif", "heic") and thumbnail:
        kwargs["thumbnail"] = True
    if fmt in formats.ANIMATED and frames > 1:
        kwargs["n"] = frames
    return _LOADERS[fmt](data, **kwargs)


def check_resolution(width: int, height: int, frames: int, o: ProcessingOptions,
                     config: ProcessingConfig) -> None:
    """Refuse decompression bombs from the header, before any pixel is decoded."""
    limit = (o.max_src_resolution or config.max_src_resolution) * 1_000_000
    per_frame = o.max_animation_frame_resolution or config.max_animation_frame_resolution
    if per_frame and frames > 1:
        if width * height > per_frame * 1_000_000:
            raise ImageTooLarge(f"Source frame is too large: {width}x{height}")
    elif width * height * frames > limit:
        raise ImageTooLarge(f"Source image is too large: {width}x{height}x{frames}")


VECTOR_MAX_SIDE = 16384  # librsvg renders tile by tile: the cost grows with the side too


def vector_guard(p: Plan, o: ProcessingOptions, config: ProcessingConfig, width: int,
                 height: int, out_w: int, out_h: int) -> Plan:
    """Shrink an SVG's plan so that its raster stays within the limits, or refuse it.

    Like imgproxy's vectorGuardScale: vector sources skip the source-resolution
    check, so a 10,000,000 px canvas is rendered smaller, never at full size.
    The rendered area stays within the resolution limit and its longest side
    within ``VECTOR_MAX_SIDE`` (or the result cap, if larger); a canvas that
    cannot fit even at one pixel high (10,000,000 x 1) is refused.
    """
    limit = (o.max_src_resolution or config.max_src_resolution) * 1_000_000
    cap = o.max_result_dimension if o.max_result_dimension is not None \
        else config.max_result_dimension
    side_cap = max(VECTOR_MAX_SIDE, cap)

    def excess(q: Plan, ow: int, oh: int) -> float:
        render = min(q.scale)  # the scale _load_shrink asks librsvg for
        area = max(width * render * height * render, ow * oh) / limit
        return max(area ** 0.5, max(width, height) * render / side_cap)

    over = excess(p, out_w, out_h)
    if over <= 1:
        return p
    p = plan(o, width, height, max(1, int(max(out_w, out_h) / over)), True)
    if excess(p, *result_size(p, width, height)) > 1.001:
        raise ImageTooLarge(f"SVG of {width}x{height} cannot be rendered within the limits")
    return p


def _orientation(header: pyvips.Image, o: ProcessingOptions, config: ProcessingConfig) -> int:
    enabled = o.auto_rotate if o.auto_rotate is not None else config.auto_rotate
    if not enabled or not header.get_typeof("orientation"):
        return 1
    value = header.get("orientation")
    return value if 1 <= value <= 8 else 1


def _load_shrink(fmt: str, p: Plan, src_w: int, src_h: int, orientation: int,
                 animated: bool) -> float:
    """How much the loader may shrink while decoding (never below the needed size)."""
    if fmt == "svg":
        return 1 / min(p.scale)
    if fmt not in ("jpeg", "webp") or (animated and fmt != "webp"):
        return 1.0
    return max(1.0, 1 / max(p.scale))


def _needs_alpha(o: ProcessingOptions, p: Plan) -> bool:
    """Transparency is expected when padding/extend adds area and no background is set."""
    return o.background is None and (p.extend_to is not None or p.aspect_to is not None
                                     or any(p.padding))


# --- steps --------------------------------------------------------------------------

def _run_steps(image: pyvips.Image, ctx: Context, raw_size: tuple[int, int]) -> pyvips.Image:
    """imgproxy's main pipeline on one (already trimmed) frame, in imgproxy's order."""
    image = to_srgb(image, ctx.keep_icc)
    image, raw_size = crop_source(image, ctx, raw_size)
    image = scale(image, ctx, raw_size)
    image = image.copy_memory()  # small now; the next steps need random access
    image = rotate_and_flip(image, ctx)
    image = crop_to_result(image, ctx)
    image = apply_filters(image, ctx)
    image = extend(image, ctx)
    image = pad(image, ctx)
    image = flatten(image, ctx)
    return apply_watermark(image, ctx)


def _process_animation(image: pyvips.Image, frames: int, ctx: Context,
                       header: pyvips.Image) -> pyvips.Image:
    """Every frame through the same steps; delays (40 ms if absent) and loop kept.

    Smart gravity falls back to centre (as imgproxy does): a per-frame
    smartcrop would make the crop window jump between frames.
    """
    o = ctx.options
    if o.gravity.type == "sm" or (o.crop and o.crop.gravity and o.crop.gravity.type == "sm"):
        crop = o.crop and replace(o.crop, gravity=None if o.crop.gravity
                                  and o.crop.gravity.type == "sm" else o.crop.gravity)
        gravity = Gravity() if o.gravity.type == "sm" else o.gravity
        ctx = replace(ctx, options=replace(o, gravity=gravity, crop=crop))
    page_h = image.get("page-height") if image.get_typeof("page-height") else image.height
    page_h = min(page_h, image.height // frames)
    done = [_run_steps(image.crop(0, i * page_h, image.width, page_h), ctx,
                       (header.width, header.height)) for i in range(frames)]
    out = pyvips.Image.arrayjoin(done, across=1)
    out = out.copy()
    out.set_type(pyvips.GValue.gint_type, "page-height", done[0].height)
    out.set_type(pyvips.GValue.gint_type, "n-pages", frames)
    delay = list(image.get("delay")) if image.get_typeof("delay") else []
    delay = (delay + [40] * frames)[:frames]
    out.set_type(pyvips.GValue.array_int_type, "delay", delay)
    loop = image.get("loop") if image.get_typeof("loop") else 0
    out.set_type(pyvips.GValue.gint_type, "loop", loop)
    return out


def scale(image: pyvips.Image, ctx: Context, raw_size: tuple[int, int]) -> pyvips.Image:
    """Resize to the planned scale, counting what shrink-on-load already did."""
    sx, sy = ctx.plan.scale
    if (ctx.orientation >= 5) != bool(ctx.options.rotate % 180):  # plan axes are rotated
        sx, sy = sy, sx
    crop_factor_w = raw_size[0] / image.width
    crop_factor_h = raw_size[1] / image.height
    hscale, vscale = sx * crop_factor_w, sy * crop_factor_h
    if abs(hscale - 1) < 1e-6 and abs(vscale - 1) < 1e-6:
        return image
    if image.hasalpha():  # premultiplied, so transparent pixels do not bleed their colour
        return resize_premultiplied(image, hscale, vscale)
    return image.resize(hscale, vscale=vscale)


def resize_premultiplied(image: pyvips.Image, hscale: float, vscale: float) -> pyvips.Image:
    """Resize an image with alpha as libvips' own ``thumbnail`` does: premultiply, cast
    back to the band format, resize, unpremultiply, cast back. Resizing in the band
    format rather than float halves the cost (W4: 12 -> 5.7 ms); composited, the
    result is within 7/255 of the float path (mean 0.5)."""
    fmt = image.format
    return (image.premultiply().cast(fmt).resize(hscale, vscale=vscale)
            .unpremultiply().cast(fmt))


#: blur/sharpen sigma is capped: the cost grows with it and a URL could ask for any value
MAX_SIGMA = 50.0
MAX_SHARPEN_SIGMA = 10.0  # libvips' own upper bound for sharpen
_EXIF_ANGLE = {3: 180, 4: 180, 5: 90, 6: 90, 7: 270, 8: 270}


def display_ops(ctx: Context, width: int, height: int) -> list[tuple[str, int, int]]:
    """The rotations and flips that turn a stored frame into the displayed one, in
    order, each with the size of its input: EXIF orientation, then ``rot``, ``fl``."""
    o, ops = ctx.options, []
    steps = []
    if angle := _EXIF_ANGLE.get(ctx.orientation, 0):
        steps.append(f"rot{angle}")
    if ctx.orientation in (2, 4, 5, 7):
        steps.append("fliphor")
    if o.rotate:
        steps.append(f"rot{o.rotate}")
    steps += ["fliphor"] * o.flip[0] + ["flipver"] * o.flip[1]
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


def rotate_and_flip(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    for op, _, _ in display_ops(ctx, image.width, image.height):
        image = getattr(image, op)()
    if image.get_typeof("orientation"):
        image = image.copy()
        image.remove("orientation")
    return image


def crop_source(image: pyvips.Image, ctx: Context, raw_size: tuple[int, int]
                ) -> tuple[pyvips.Image, tuple[int, int]]:
    """The ``crop`` option, before scaling (as imgproxy does), so a small crop that is
    enlarged never scales the whole image. The region is placed on the displayed
    image, mapped back through the rotations, and cut from the (shrunk-on-load)
    frame. Returns the frame and the region's size in full-resolution pixels."""
    o, p = ctx.options, ctx.plan
    if p.crop is None or o.crop is None:
        return image, raw_size
    ops = display_ops(ctx, *raw_size)
    turned = sum(op in ("rot90", "rot270") for op, _, _ in ops) % 2 == 1
    shown = (raw_size[1], raw_size[0]) if turned else raw_size
    fx, fy = image.width / raw_size[0], image.height / raw_size[1]
    gravity = o.crop.gravity or o.gravity
    if gravity.type == "sm":
        w, h = (p.crop[1], p.crop[0]) if turned else p.crop
        w, h = min(image.width, max(1, round(w * fx))), min(image.height, max(1, round(h * fy)))
        image = image.copy_memory().smartcrop(w, h, interesting="attention")
        return image, (round(w / fx), round(h / fy))
    x, y = gravity_offset(gravity, shown, p.crop, 1.0)
    rect = (x, y, *p.crop)
    for op, width, height in reversed(ops):
        rect = _undo(rect, op, width, height)
    x, y, w, h = rect
    left, top = min(image.width - 1, int(x * fx)), min(image.height - 1, int(y * fy))
    width = max(1, min(image.width - left, round(w * fx)))
    height = max(1, min(image.height - top, round(h * fy)))
    return image.crop(left, top, width, height), (w, h)


def crop_to_result(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    tw, th = ctx.plan.target
    w = min(tw, image.width) if tw else image.width
    h = min(th, image.height) if th else image.height
    return _crop(image, w, h, ctx.options.gravity, ctx.plan.dpr)


def _crop(image: pyvips.Image, w: int, h: int, g: Gravity, dpr: float) -> pyvips.Image:
    if w >= image.width and h >= image.height:
        return image
    if g.type == "sm":
        return image.smartcrop(w, h, interesting="attention")
    left, top = gravity_offset(g, (image.width, image.height), (w, h), dpr)
    return image.crop(left, top, w, h)


def apply_filters(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    o = ctx.options
    if not (o.blur or o.sharpen or o.pixelate > 1):
        return image
    alpha = image.hasalpha()
    if alpha:
        image = image.premultiply()
    if o.blur:
        image = image.gaussblur(min(o.blur, MAX_SIGMA))
    if o.sharpen:
        image = image.sharpen(sigma=min(o.sharpen, MAX_SHARPEN_SIGMA))
    if o.pixelate > 1:
        image = pixelate(image, min(o.pixelate, max(image.width, image.height)))
    if alpha:
        image = image.unpremultiply()
    return image.cast("uchar").copy(interpretation="srgb")


def pixelate(image: pyvips.Image, n: int) -> pyvips.Image:
    """imgproxy's ``vips_pixelate``: n x n blocks from the top-left, each its mean colour."""
    w, h = image.width, image.height
    tw, th = -(-w // n) * n, -(-h // n) * n
    if (tw, th) != (w, h):
        image = image.embed(0, 0, tw, th, extend="copy")
    return image.shrink(n, n).zoom(n, n).crop(0, 0, w, h)


def _canvas_background(image: pyvips.Image, o: ProcessingOptions) -> tuple[pyvips.Image, list]:
    """An image ready to embed on transparent (no bg) or coloured background."""
    if o.background is not None:
        color = list(o.background)
        return image, [*color, 255] if image.hasalpha() else color
    if not image.hasalpha():
        image = image.bandjoin(255)
    return image, [0, 0, 0, 0]


def extend(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    o, p = ctx.options, ctx.plan
    if p.extend_to:
        w, h = max(image.width, p.extend_to[0]), max(image.height, p.extend_to[1])
        if (w, h) != (image.width, image.height):
            left, top = gravity_offset(o.extend.gravity, (w, h), (image.width, image.height),
                                       p.dpr)
            image, bg = _canvas_background(image, o)
            image = image.embed(left, top, w, h, background=bg)
    if p.aspect_to:
        w, h = max(image.width, p.aspect_to[0]), max(image.height, p.aspect_to[1])
        if (w, h) != (image.width, image.height):
            left, top = gravity_offset(o.extend_ar.gravity, (w, h), (image.width, image.height),
                                       p.dpr)
            image, bg = _canvas_background(image, o)
            image = image.embed(left, top, w, h, background=bg)
    return image


def pad(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    top, right, bottom, left = ctx.plan.padding
    if not (top or right or bottom or left):
        return image
    image, bg = _canvas_background(image, ctx.options)
    return image.embed(left, top, image.width + left + right, image.height + top + bottom,
                       background=bg)


def flatten(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    o = ctx.options
    if image.hasalpha() and (o.background is not None
                             or ctx.output_format not in formats.ALPHA):
        return image.flatten(background=list(o.background or WHITE)).cast("uchar")
    return image


def apply_watermark(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    """The ``watermark`` option (a no-op when the server has no watermark image)."""
    w = ctx.options.watermark
    if w is None or not ctx.config.watermark:
        return image
    return watermark.apply(image, ctx.config.watermark, w, ctx.config.watermark_opacity,
                           ctx.plan.dpr)


def finalize(image: pyvips.Image, ctx: Context) -> pyvips.Image:
    """Drop the orientation tag; metadata is stripped by the encoder's ``keep``."""
    if image.get_typeof("orientation"):
        image = image.copy()
        image.remove("orientation")
    return image


# --- encode -------------------------------------------------------------------------

def quality_for(fmt: str, o: ProcessingOptions, config: ProcessingConfig) -> int:
    """``q`` option > ``fq`` option > IMGPROXY_FORMAT_QUALITY > IMGPROXY_QUALITY."""
    if o.quality:
        return o.quality
    for table in (o.format_quality, config.format_quality):
        for name, q in table:
            if name == fmt and q:
                return q
    return config.quality


def encode(image: pyvips.Image, fmt: str, o: ProcessingOptions,
           config: ProcessingConfig) -> bytes:
    """Save with the metadata asked for; ``max_bytes`` lowers quality as imgproxy does."""
    quality = quality_for(fmt, o, config)
    strip = o.strip_metadata if o.strip_metadata is not None else config.strip_metadata
    kcr = o.keep_copyright if o.keep_copyright is not None else config.keep_copyright
    image, keep = metadata.prepare(image, strip, kcr, _keep_icc(o, config))
    degrade = bool(o.max_bytes) and fmt in formats.QUALITY
    if degrade:
        image = image.copy_memory()  # saved several times: decode once
    data = _save(image, fmt, quality, keep, config)
    while degrade and len(data) > o.max_bytes and quality > 10:
        ratio = len(data) / o.max_bytes
        factor = 0.25 if ratio > 3 else 0.5 if ratio > 1.5 else 0.75
        quality = max(1, min(quality - 1, int(quality * factor)))
        data = _save(image, fmt, quality, keep, config)
    return data


def _save(image: pyvips.Image, fmt: str, quality: int, keep: str,
          config: ProcessingConfig) -> bytes:
    if fmt == "jpeg":
        return image.jpegsave_buffer(Q=quality, interlace=config.jpeg_progressive, keep=keep,
                                     optimize_coding=True)
    if fmt == "png":
        return image.pngsave_buffer(interlace=config.png_interlaced, keep=keep, compression=6,
                                    filter="none" if image.width * image.height > 1 else "all")
    if fmt == "webp":
        return image.webpsave_buffer(Q=quality, effort=config.webp_effort, keep=keep)
    if fmt == "avif":
        return image.heifsave_buffer(Q=quality, compression="av1", bitdepth=8,
                                     effort=9 - config.avif_speed, keep=keep)
    if fmt == "gif":
        return image.gifsave_buffer(keep=keep)
    if fmt == "tiff":
        return image.tiffsave_buffer(Q=quality, compression="jpeg" if not image.hasalpha()
                                     else "deflate", keep=keep)
    raise UnsupportedFormat(f"Resulting image format {fmt} is not supported")


def _vips_message(exc: pyvips.Error) -> str:
    detail = (exc.detail or exc.message or "").strip().splitlines()
    return detail[0][:200] if detail else "libvips error"
