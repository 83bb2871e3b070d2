"""Processing defaults: what an image becomes when the URL does not say."""

from __future__ import annotations

from dataclasses import dataclass

from .values import boolean, format_names, format_qualities, integer, number, setting


@dataclass(frozen=True)
class ProcessingSettings:
    # processing defaults
    quality: int = setting(80, "IMGPROXY_QUALITY", parse=integer(1, 100), doc="Default quality")
    format_quality: tuple[tuple[str, int], ...] = setting(
        (("webp", 79), ("avif", 63), ("jxl", 77)), "IMGPROXY_FORMAT_QUALITY",
        parse=format_qualities,
        doc="Per-format default quality, e.g. `webp=79,avif=63`")
    auto_webp: bool = setting(True, "IMGPROXY_AUTO_WEBP", "IMGPROXY_ENABLE_WEBP_DETECTION",
                              parse=boolean,
                              doc="Answer WebP when `Accept` allows it and no format is given")
    auto_avif: bool = setting(True, "IMGPROXY_AUTO_AVIF", "IMGPROXY_ENABLE_AVIF_DETECTION",
                              parse=boolean,
                              doc="Answer AVIF when `Accept` allows it and no format is given")
    enforce_webp: bool = setting(False, "IMGPROXY_ENFORCE_WEBP", parse=boolean,
                                 doc="Like AUTO_WEBP, and overrides an explicit format too")
    enforce_avif: bool = setting(False, "IMGPROXY_ENFORCE_AVIF", parse=boolean,
                                 doc="Like AUTO_AVIF, and overrides an explicit format too")
    auto_jxl: bool = setting(False, "IMGPROXY_AUTO_JXL", parse=boolean,
                             doc="Answer JPEG XL when `Accept` allows it and no format is given")
    enforce_jxl: bool = setting(False, "IMGPROXY_ENFORCE_JXL", parse=boolean,
                                doc="Like AUTO_JXL, and overrides an explicit format too")
    strip_metadata: bool = setting(True, "IMGPROXY_STRIP_METADATA", parse=boolean,
                                   doc="Strip EXIF/XMP/IPTC by default")
    keep_copyright: bool = setting(True, "IMGPROXY_KEEP_COPYRIGHT", parse=boolean,
                                   doc="Keep copyright metadata when stripping")
    strip_color_profile: bool = setting(True, "IMGPROXY_STRIP_COLOR_PROFILE", parse=boolean,
                                        doc="Convert to sRGB and drop the ICC profile")
    auto_rotate: bool = setting(True, "IMGPROXY_AUTO_ROTATE", parse=boolean,
                                doc="Apply EXIF orientation by default")
    enforce_thumbnail: bool = setting(False, "IMGPROXY_ENFORCE_THUMBNAIL", parse=boolean,
                                      doc="Use the thumbnail embedded in AVIF (not HEIC)")
    return_attachment: bool = setting(False, "IMGPROXY_RETURN_ATTACHMENT", parse=boolean,
                                      doc="`Content-Disposition: attachment` by default")
    avif_speed: int = setting(8, "IMGPROXY_AVIF_SPEED", parse=integer(0, 9),
                              doc="AVIF encoder speed 0 (slow, small) .. 9 (fast)")
    webp_effort: int = setting(4, "IMGPROXY_WEBP_EFFORT", parse=integer(0, 6),
                               doc="WebP encoder effort 0 (fast) .. 6 (small)")
    jxl_effort: int = setting(4, "IMGPROXY_JXL_EFFORT", parse=integer(1, 9),
                              doc="JPEG XL encoder effort 1 (fast) .. 9 (small)")
    jpeg_progressive: bool = setting(False, "IMGPROXY_JPEG_PROGRESSIVE", parse=boolean,
                                     doc="Write progressive JPEG")
    png_interlaced: bool = setting(False, "IMGPROXY_PNG_INTERLACED", parse=boolean,
                                   doc="Write interlaced PNG")
    skip_processing_formats: tuple[str, ...] = setting(
        (), "IMGPROXY_SKIP_PROCESSING_FORMATS", parse=format_names,
        doc="Source formats returned unprocessed when no other output format is asked")
    watermark_path: str = setting("", "IMGPROXY_WATERMARK_PATH", doc="Watermark image file")
    watermark_url: str = setting("", "IMGPROXY_WATERMARK_URL",
                                 doc="Watermark image fetched once at start-up (any source)")
    watermark_data: str = setting("", "IMGPROXY_WATERMARK_DATA",
                                  doc="Watermark image, base64-encoded")
    watermark_opacity: float = setting(1.0, "IMGPROXY_WATERMARK_OPACITY", parse=number(0),
                                       doc="Multiplier for the `wm` opacity")
