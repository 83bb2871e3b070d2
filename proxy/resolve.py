"""Stage 2, resolve: URL options + server settings -> the ``Effective`` options, and
the source URL -> a checked ``SourceRef``.

``resolve`` runs once per URL (kept on the verified URL's memo) and is the only
place where a URL value and a setting meet: nothing downstream (pipeline, cache
key, sources, limits) reads ``Settings`` or an "unset" value. The rule is the same
for every option: a value given in the URL replaces the setting, and ``0`` means
what it means for the setting (README "What 0 means").

The result-cache key is derived from the fields of ``Effective`` (``key.py``):
every field counts unless its metadata says it only shapes the response headers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import client_hints, formats
from .client_hints import Hints
from .options import RGB, Crop, Extend, Gravity, ProcessingOptions, Trim, Watermark


def _response_only() -> Any:
    """Marks a field that changes response headers, never the pixels (not in the key)."""
    return field(metadata={"key": False})


@dataclass(frozen=True)
class Effective:
    """What one request will do: every value concrete, no "server default" left."""

    # geometry (read by geometry.plan)
    resizing_type: str
    width: int
    height: int
    min_width: int
    min_height: int
    zoom: tuple[float, float]
    dpr: float
    enlarge: bool
    extend: Extend
    extend_ar: Extend
    gravity: Gravity
    crop: Crop | None  # None: no crop
    trim: Trim | None  # None: no trim
    padding: tuple[int, int, int, int]
    rotate: int
    flip: tuple[bool, bool]
    # pixels
    background: RGB | None  # None: keep transparency (white where the format has none)
    blur: float
    sharpen: float
    pixelate: int
    watermark: Watermark | None  # opacity already multiplied by IMGPROXY_WATERMARK_OPACITY
    auto_rotate: bool
    strip_color_profile: bool
    enforce_thumbnail: bool
    preserve_hdr: bool  # accepted (``ph``), not honoured: every result is 8 bits per channel
    linear_colorspace: bool  # resize in linear light (IMGPROXY_USE_LINEAR_COLORSPACE)
    shrink_on_load: bool  # decoders may shrink (not IMGPROXY_DISABLE_SHRINK_ON_LOAD)
    # output
    format_quality: tuple[tuple[str, int], ...]  # every quality format, resolved
    max_bytes: int  # 0: no limit
    strip_metadata: bool
    keep_copyright: bool
    avif_speed: int
    webp_effort: int
    jxl_effort: int
    jpeg_progressive: bool
    png_interlaced: bool
    png_colors: int  # palette size; 0: no quantisation (IMGPROXY_PNG_QUANTIZE)
    webp_preset: str
    skip_processing: tuple[str, ...]
    raw: bool
    cachebuster: str
    # limits
    max_src_resolution: float  # megapixels
    max_src_file_size: int  # bytes; 0: no limit
    max_animation_frames: int
    max_animation_frame_resolution: float  # megapixels per frame; 0: the sum is checked
    max_result_dimension: int  # pixels; 0: no cap
    max_src_dimension: int  # pixels; 0: no cap
    max_result_resolution: float  # megapixels, frames summed
    max_job_memory: int  # bytes of estimated working memory; 0: no cap
    max_svg_check_bytes: int
    # response headers only
    expires: int = _response_only()  # unix time; 0 or less: never
    filename: str | None = _response_only()  # None: from the source URL
    return_attachment: bool = _response_only()

    def quality(self, fmt: str) -> int:
        """The encoder quality for ``fmt``: ``q`` > ``fq`` > FORMAT_QUALITY > QUALITY."""
        for name, q in self.format_quality:
            if name == fmt:
                return q
        return 0  # a format without a quality setting (PNG, GIF)


def resolve(o: ProcessingOptions, s: Any) -> Effective:
    """The effective options of URL options ``o`` under settings ``s`` (a ``Settings``)."""
    def pick(value: Any, setting: Any) -> Any:
        return setting if value is None else value

    configured = dict(s.format_quality)
    asked = dict(o.format_quality)
    quality = {fmt: o.quality or asked.get(fmt) or configured.get(fmt) or s.quality
               for fmt in sorted(formats.QUALITY)}
    watermark = o.watermark
    if watermark is not None and s.watermark_opacity != 1:
        watermark = Watermark(watermark.opacity * s.watermark_opacity,
                              watermark.position, watermark.x, watermark.y, watermark.scale)
    return Effective(
        resizing_type=o.resizing_type, width=o.width, height=o.height,
        min_width=o.min_width, min_height=o.min_height, zoom=o.zoom, dpr=o.dpr,
        enlarge=o.enlarge, extend=o.extend, extend_ar=o.extend_ar, gravity=o.gravity,
        crop=o.crop, trim=o.trim, padding=o.padding, rotate=o.rotate, flip=o.flip,
        background=o.background, blur=o.blur, sharpen=o.sharpen, pixelate=o.pixelate,
        watermark=watermark,
        auto_rotate=pick(o.auto_rotate, s.auto_rotate),
        strip_color_profile=pick(o.strip_color_profile, s.strip_color_profile),
        enforce_thumbnail=pick(o.enforce_thumbnail, s.enforce_thumbnail),
        preserve_hdr=bool(o.preserve_hdr),
        linear_colorspace=s.use_linear_colorspace,
        shrink_on_load=not s.disable_shrink_on_load,
        format_quality=tuple(quality.items()), max_bytes=o.max_bytes,
        strip_metadata=pick(o.strip_metadata, s.strip_metadata),
        keep_copyright=pick(o.keep_copyright, s.keep_copyright),
        avif_speed=s.avif_speed, webp_effort=s.webp_effort, jxl_effort=s.jxl_effort,
        jpeg_progressive=s.jpeg_progressive, png_interlaced=s.png_interlaced,
        png_colors=s.png_quantization_colors if s.png_quantize else 0,
        webp_preset=s.webp_preset,
        skip_processing=o.skip_processing or s.skip_processing_formats,
        raw=o.raw, cachebuster=o.cachebuster,
        max_src_resolution=pick(o.max_src_resolution, s.max_src_resolution),
        max_src_file_size=pick(o.max_src_file_size, s.max_src_file_size),
        max_animation_frames=pick(o.max_animation_frames, s.max_animation_frames),
        max_animation_frame_resolution=pick(o.max_animation_frame_resolution,
                                            s.max_animation_frame_resolution),
        max_result_dimension=pick(o.max_result_dimension, s.max_result_dimension),
        max_src_dimension=s.max_src_dimension,
        max_result_resolution=s.max_result_resolution or
        pick(o.max_src_resolution, s.max_src_resolution),
        max_job_memory=s.max_job_memory,
        max_svg_check_bytes=s.max_svg_check_bytes,
        expires=o.expires, filename=o.filename,
        return_attachment=pick(o.return_attachment, s.return_attachment),
    )


HINTED_MEMO = 16  # client-hint variants of one URL kept resolved (more are resolved each time)


class Resolved:
    """A verified URL's effective options and checked source, with a memo per format
    class (``handler.UrlMemo``: the result key and headers a hit reuses) and, with
    client hints, the URL resolved under each hint seen (``hinted``)."""

    __slots__ = ("effective", "format", "hinted", "memos", "source")

    def __init__(self, effective: Effective, source: Any, fmt: str | None) -> None:
        self.effective = effective
        self.source = source  # a ``sources.SourceRef``: scheme enabled, allow-listed
        self.format = fmt  # the URL's explicit output format, if any
        self.memos: dict[str, Any] = {}  # by FormatPolicy.key: a handful at most
        self.hinted: dict[Hints, Resolved] = {}


class Resolver:
    """Resolves each verified URL once; ``check_source`` raises ``InvalidSource``."""

    def __init__(self, settings: Any, check_source: Callable[[str], Any]) -> None:
        self.settings = settings
        self.check_source = check_source

    def __call__(self, url: Any, hints: Hints | None = None) -> Resolved:
        """``url`` is a ``verify.VerifiedUrl``; its ``resolved`` slot keeps the result.
        ``hints``: the request's client hints (``client_hints.read``), if any."""
        resolved: Resolved | None = url.resolved
        if resolved is None:
            options, source = url.parsed.options, url.parsed.source
            resolved = url.resolved = Resolved(resolve(options, self.settings),
                                               self.check_source(source), options.format)
        if hints is None:
            return resolved
        hinted = resolved.hinted.get(hints)
        if hinted is None:
            options = client_hints.apply(url.parsed.options, url.parsed.given, hints)
            hinted = resolved if options is url.parsed.options else Resolved(
                resolve(options, self.settings), resolved.source, resolved.format)
            if len(resolved.hinted) < HINTED_MEMO:
                resolved.hinted[hints] = hinted
        return hinted
