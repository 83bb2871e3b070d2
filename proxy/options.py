"""What a URL asks for: the frozen ``ProcessingOptions`` and its parts.

Standard library only. ``grammar.py`` parses and writes these from and to URL
segments, ``paths.py`` handles whole paths, and ``resolve.py`` turns them, with the
server's settings, into the ``Effective`` options everything downstream reads.
``None`` here means "not given in the URL": the server's setting applies.
"""

from __future__ import annotations

from dataclasses import dataclass

RESIZING_TYPES = ("fit", "fill", "fill-down", "force", "auto")
GRAVITY_TYPES = ("ce", "no", "so", "ea", "we", "noea", "nowe", "soea", "sowe", "sm", "fp")
WATERMARK_POSITIONS = ("ce", "no", "so", "ea", "we", "noea", "nowe", "soea", "sowe", "re")
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Gravity:
    type: str = "ce"
    x: float = 0.0
    y: float = 0.0


@dataclass(frozen=True)
class Extend:
    enabled: bool = False
    gravity: Gravity = Gravity()


@dataclass(frozen=True)
class Crop:
    width: float = 0.0
    height: float = 0.0
    gravity: Gravity | None = None  # None: use the ``gravity`` option


@dataclass(frozen=True)
class Trim:
    threshold: float = 0.0
    color: RGB | None = None
    equal_hor: bool = False
    equal_ver: bool = False


@dataclass(frozen=True)
class Watermark:
    opacity: float = 0.0
    position: str = "ce"
    x: float = 0.0
    y: float = 0.0
    scale: float = 0.0


@dataclass(frozen=True)
class ProcessingOptions:
    """Everything a URL can ask for. ``None`` means "the server's setting"."""

    resizing_type: str = "fit"
    width: int = 0
    height: int = 0
    min_width: int = 0
    min_height: int = 0
    zoom: tuple[float, float] = (1.0, 1.0)
    dpr: float = 1.0
    enlarge: bool = False
    extend: Extend = Extend()
    extend_ar: Extend = Extend()
    gravity: Gravity = Gravity()
    crop: Crop | None = None
    trim: Trim | None = None
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    rotate: int = 0
    flip: tuple[bool, bool] = (False, False)
    background: RGB | None = None
    blur: float = 0.0
    sharpen: float = 0.0
    pixelate: int = 0
    watermark: Watermark | None = None
    quality: int = 0
    format_quality: tuple[tuple[str, int], ...] = ()
    max_bytes: int = 0
    format: str | None = None
    auto_rotate: bool | None = None
    strip_metadata: bool | None = None
    keep_copyright: bool | None = None
    strip_color_profile: bool | None = None
    enforce_thumbnail: bool | None = None
    preserve_hdr: bool | None = None
    skip_processing: tuple[str, ...] = ()
    raw: bool = False
    cachebuster: str = ""
    expires: int = 0
    filename: str | None = None
    return_attachment: bool | None = None
    max_src_resolution: float | None = None
    max_src_file_size: int | None = None
    max_animation_frames: int | None = None
    max_animation_frame_resolution: float | None = None
    max_result_dimension: int | None = None
