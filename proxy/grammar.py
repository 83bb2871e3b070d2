"""imgproxy's processing options: one table row per option, parsing and writing.

Each ``Option`` row names the option (long name first, then aliases), how its
arguments set ``ProcessingOptions`` fields (``apply``) and, for the rows that own
fields, how those fields are written back (``write``, with the row's short name).
The URL parser and the URL builder therefore share one grammar: a field that has
no writer fails ``tests/test_options.py``, and ``parse(write(o)) == o`` is a
property test. Standard library only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from .arguments import (
    SEP,
    flag,
    format_name,
    gravity_args,
    max_args,
    num,
    parse_bool,
    parse_color,
    parse_extend,
    parse_float,
    parse_gravity,
    parse_int,
    parse_positive,
    rgb_hex,
)
from .errors import InvalidURL
from .options import (
    RESIZING_TYPES,
    WATERMARK_POSITIONS,
    Crop,
    Extend,
    ProcessingOptions,
    Trim,
    Watermark,
)

Fields = dict[str, Any]
Apply = Callable[[Fields, list[str]], None]
Write = Callable[[ProcessingOptions], "list[str] | None"]
DEFAULTS = ProcessingOptions()
DEFAULT_FIELDS: Fields = {f.name: getattr(DEFAULTS, f.name) for f in fields(ProcessingOptions)}


@dataclass(frozen=True)
class Option:
    names: tuple[str, ...]  # long name first; ``short`` is written
    apply: Apply
    write: Write | None = None  # None: a parse-only spelling of fields another row writes
    owns: tuple[str, ...] = ()  # the fields ``write`` writes
    short: str = ""


# --- rows --------------------------------------------------------------------------------

def scalar(names: tuple[str, ...], key: str, convert: Callable[[str, str], Any],
           show: Callable[[Any], str] = str) -> Option:
    """An option with one argument setting one field, written when not the default."""
    default = DEFAULT_FIELDS[key]

    def apply(f: Fields, args: list[str]) -> None:
        max_args(key, args, 1)
        f[key] = convert(key, args[0])

    def write(o: ProcessingOptions) -> list[str] | None:
        value = getattr(o, key)
        return None if value == default else [show(value)]

    return Option(names, apply, write, (key,), names[-1])


def boolean(names: tuple[str, ...], key: str) -> Option:
    """A boolean option (``None`` default: the server's setting decides)."""
    return scalar(names, key, lambda _n, v: parse_bool(v), flag)


def alias(names: tuple[str, ...], apply: Apply) -> Option:
    """A spelling whose fields another row writes (``size``, ``width``, ...)."""
    return Option(names, apply)


def _apply_size(f: Fields, args: list[str], name: str = "size") -> None:
    max_args(name, args, 7)
    if args and args[0]:
        f["width"] = parse_int("width", args[0])
    if len(args) > 1 and args[1]:
        f["height"] = parse_int("height", args[1])
    if len(args) > 2 and args[2]:
        f["enlarge"] = parse_bool(args[2])
    if len(args) > 3 and args[3]:
        f["extend"] = parse_extend("extend", args[3:])


def _apply_resizing_type(f: Fields, args: list[str]) -> None:
    max_args("resizing type", args, 1)
    if args[0] not in RESIZING_TYPES:
        raise InvalidURL(f"Invalid resizing type: {args[0]}")
    f["resizing_type"] = args[0]


def _apply_resize(f: Fields, args: list[str]) -> None:
    max_args("resize", args, 8)
    if args and args[0]:
        _apply_resizing_type(f, args[:1])
    _apply_size(f, args[1:], "resize")


def _write_resize(o: ProcessingOptions) -> list[str] | None:
    d = DEFAULTS
    if (o.resizing_type, o.width, o.height) == (d.resizing_type, d.width, d.height):
        return None
    return [o.resizing_type, str(o.width), str(o.height)]


def _apply_zoom(f: Fields, args: list[str]) -> None:
    max_args("zoom", args, 2)
    zx = parse_float("zoom", args[0], strict=True)
    zy = parse_float("zoom", args[1], strict=True) if len(args) > 1 else zx
    f["zoom"] = (zx, zy)


def _extend_row(names: tuple[str, ...], key: str, label: str) -> Option:
    def apply(f: Fields, args: list[str]) -> None:
        f[key] = parse_extend(label, args)

    def write(o: ProcessingOptions) -> list[str] | None:
        ext: Extend = getattr(o, key)
        return None if ext == Extend() else [flag(ext.enabled), *gravity_args(ext.gravity)]

    return Option(names, apply, write, (key,), names[-1])


def _apply_gravity(f: Fields, args: list[str]) -> None:
    f["gravity"] = parse_gravity("gravity", args)


def _apply_crop(f: Fields, args: list[str]) -> None:
    max_args("crop", args, 5)
    width = parse_float("crop width", args[0])
    height = parse_float("crop height", args[1]) if len(args) > 1 and args[1] else 0.0
    gravity = parse_gravity("crop gravity", args[2:]) if len(args) > 2 and args[2] else None
    f["crop"] = Crop(width, height, gravity)


def _write_crop(o: ProcessingOptions) -> list[str] | None:
    if o.crop is None:
        return None
    c = o.crop
    return [num(c.width), num(c.height), *(gravity_args(c.gravity) if c.gravity else [])]


def _apply_trim(f: Fields, args: list[str]) -> None:
    max_args("trim", args, 4)
    if not args[0]:
        f["trim"] = None
        return
    color = parse_color("trim color", args[1:2]) if len(args) > 1 and args[1] else None
    f["trim"] = Trim(parse_float("trim threshold", args[0]), color,
                     len(args) > 2 and parse_bool(args[2]), len(args) > 3 and parse_bool(args[3]))


def _write_trim(o: ProcessingOptions) -> list[str] | None:
    t = o.trim
    if t is None:
        return None
    return [num(t.threshold), rgb_hex(t.color) if t.color else "", flag(t.equal_hor),
            flag(t.equal_ver)]


def _apply_padding(f: Fields, args: list[str]) -> None:
    max_args("padding", args, 4)
    values = [parse_int("padding", a) if a else None for a in args]
    top = values[0] or 0
    right = values[1] if len(values) > 1 and values[1] is not None else top
    bottom = values[2] if len(values) > 2 and values[2] is not None else top
    left = values[3] if len(values) > 3 and values[3] is not None else right
    f["padding"] = (top, right, bottom, left)


def _apply_rotate(f: Fields, args: list[str]) -> None:
    max_args("rotate", args, 1)
    angle = parse_int("rotate", args[0], minimum=-(10**9), maximum=10**9)
    if angle % 90:
        raise InvalidURL(f"Invalid rotation angle: {angle}")
    f["rotate"] = angle % 360


def _apply_flip(f: Fields, args: list[str]) -> None:
    max_args("flip", args, 2)
    f["flip"] = (parse_bool(args[0]), len(args) > 1 and parse_bool(args[1]))


def _apply_background(f: Fields, args: list[str]) -> None:
    f["background"] = None if args == [""] else parse_color("background", args)


def _apply_watermark(f: Fields, args: list[str]) -> None:
    max_args("watermark", args, 7)
    opacity = parse_float("watermark opacity", args[0])
    if opacity > 1:
        raise InvalidURL(f"Invalid watermark opacity: {args[0]}")
    position = args[1] if len(args) > 1 and args[1] else "ce"
    if position not in WATERMARK_POSITIONS:
        raise InvalidURL(f"Invalid watermark position: {position}")
    x = parse_float("watermark x", args[2], float("-inf")) if len(args) > 2 and args[2] else 0.0
    y = parse_float("watermark y", args[3], float("-inf")) if len(args) > 3 and args[3] else 0.0
    scale = parse_float("watermark scale", args[4]) if len(args) > 4 and args[4] else 0.0
    f["watermark"] = Watermark(opacity, position, x, y, scale) if opacity > 0 else None


def _write_watermark(o: ProcessingOptions) -> list[str] | None:
    w = o.watermark
    if w is None:
        return None
    return [num(w.opacity), w.position, num(w.x), num(w.y), num(w.scale)]


def _apply_quality(f: Fields, args: list[str]) -> None:
    max_args("quality", args, 1)
    q = parse_int("quality", args[0])
    if q > 100:
        raise InvalidURL(f"Invalid quality: {q}")
    f["quality"] = q


def _apply_format_quality(f: Fields, args: list[str]) -> None:
    if len(args) % 2:
        raise InvalidURL("Missing quality for format in format_quality")
    pairs = dict(f["format_quality"])
    for fmt, q in zip(args[::2], args[1::2], strict=True):
        name = format_name("format_quality", fmt)
        pairs[name] = parse_int("format quality", q)
        if pairs[name] > 100:
            raise InvalidURL(f"Invalid format quality: {q}")
    f["format_quality"] = tuple(sorted(pairs.items()))


def _apply_filename(f: Fields, args: list[str]) -> None:
    max_args("filename", args, 2)
    name = args[0]
    if len(args) > 1 and parse_bool(args[1]):
        try:
            name = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidURL(f"Invalid filename encoding: {name}") from None
    f["filename"] = name or None


def _write_filename(o: ProcessingOptions) -> list[str] | None:
    if o.filename is None:
        return None
    return [base64.urlsafe_b64encode(o.filename.encode()).rstrip(b"=").decode(), "1"]


def _apply_skip(f: Fields, args: list[str]) -> None:
    f["skip_processing"] = tuple(format_name("skip_processing", a) for a in args)


def _apply_expires(f: Fields, args: list[str]) -> None:
    max_args("expires", args, 1)
    f["expires"] = parse_int("expires", args[0], minimum=-(2**63), maximum=2**63 - 1)


def _set(key: str, parse: Callable[[str, list[str]], Any]) -> Apply:
    def apply(f: Fields, args: list[str]) -> None:
        f[key] = parse(key, args)
    return apply


def _row(names: tuple[str, ...], apply: Apply, owns: tuple[str, ...],
         write: Callable[[ProcessingOptions], list[str] | None]) -> Option:
    return Option(names, apply, write, owns, names[-1])


def _when(key: str, show: Callable[[Any], list[str]]) -> Write:
    """A writer for ``key`` that writes ``show(value)`` unless the value is the default."""
    default = DEFAULT_FIELDS[key]

    def write(o: ProcessingOptions) -> list[str] | None:
        value = getattr(o, key)
        return None if value == default else show(value)
    return write


#: the option table, in the canonical order the writer uses
OPTIONS: tuple[Option, ...] = (
    _row(("resize", "rs"), _apply_resize, ("resizing_type", "width", "height"), _write_resize),
    alias(("size", "s"), _apply_size),
    alias(("resizing_type", "rt"), _apply_resizing_type),
    alias(("width", "w"), _set("width", lambda n, a: parse_int(n, a[0]))),
    alias(("height", "h"), _set("height", lambda n, a: parse_int(n, a[0]))),
    scalar(("min-width", "min_width", "mw"), "min_width", parse_int),
    scalar(("min-height", "min_height", "mh"), "min_height", parse_int),
    _row(("zoom", "z"), _apply_zoom, ("zoom",), _when("zoom", lambda z: [num(v) for v in z])),
    scalar(("dpr",), "dpr", parse_positive, num),
    boolean(("enlarge", "el"), "enlarge"),
    _extend_row(("extend", "ex"), "extend", "extend"),
    _extend_row(("extend_aspect_ratio", "extend_ar", "exar"), "extend_ar",
                "extend_aspect_ratio"),
    _row(("gravity", "g"), _apply_gravity, ("gravity",), _when("gravity", gravity_args)),
    _row(("crop", "c"), _apply_crop, ("crop",), _write_crop),
    _row(("trim", "t"), _apply_trim, ("trim",), _write_trim),
    _row(("padding", "pd"), _apply_padding, ("padding",),
         _when("padding", lambda p: [str(v) for v in p])),
    boolean(("auto_rotate", "ar"), "auto_rotate"),
    _row(("rotate", "rot"), _apply_rotate, ("rotate",), _when("rotate", lambda r: [str(r)])),
    _row(("flip", "fl"), _apply_flip, ("flip",), _when("flip", lambda f: [flag(v) for v in f])),
    _row(("background", "bg"), _apply_background, ("background",),
         _when("background", lambda c: [rgb_hex(c)])),
    scalar(("blur", "bl"), "blur", parse_float, num),
    scalar(("sharpen", "sh"), "sharpen", parse_float, num),
    scalar(("pixelate", "pix"), "pixelate", parse_int),
    _row(("watermark", "wm"), _apply_watermark, ("watermark",), _write_watermark),
    _row(("quality", "q"), _apply_quality, ("quality",), _when("quality", lambda q: [str(q)])),
    _row(("format_quality", "fq"), _apply_format_quality, ("format_quality",),
         _when("format_quality", lambda pairs: [x for f, q in pairs for x in (f, str(q))])),
    scalar(("max_bytes", "mb"), "max_bytes", parse_int),
    boolean(("strip_metadata", "sm"), "strip_metadata"),
    boolean(("keep_copyright", "kcr"), "keep_copyright"),
    boolean(("strip_color_profile", "scp"), "strip_color_profile"),
    boolean(("enforce_thumbnail", "eth"), "enforce_thumbnail"),
    boolean(("preserve_hdr", "ph"), "preserve_hdr"),
    _row(("skip_processing", "skp"), _apply_skip, ("skip_processing",),
         _when("skip_processing", list)),
    boolean(("raw",), "raw"),
    scalar(("cachebuster", "cb"), "cachebuster", lambda _n, v: v),
    scalar(("max_src_resolution", "msr"), "max_src_resolution", parse_positive, num),
    scalar(("max_src_file_size", "msfs"), "max_src_file_size", parse_int),
    scalar(("max_animation_frames", "maf"), "max_animation_frames",
           lambda n, v: parse_int(n, v, minimum=1)),
    scalar(("max_animation_frame_resolution", "mafr"), "max_animation_frame_resolution",
           parse_float, num),
    scalar(("max_result_dimension", "mrd"), "max_result_dimension", parse_int),
    _row(("expires", "exp"), _apply_expires, ("expires",), _when("expires", lambda e: [str(e)])),
    _row(("filename", "fn"), _apply_filename, ("filename",), _write_filename),
    boolean(("return_attachment", "att"), "return_attachment"),
    scalar(("format", "ext", "f"), "format", format_name),
)
BY_NAME: dict[str, Option] = {name: row for row in OPTIONS for name in row.names}
#: every accepted option name, long and short
OPTION_NAMES = frozenset(BY_NAME) | {"preset", "pr"}
SECURITY_OPTIONS = frozenset({"max_src_resolution", "msr", "max_src_file_size", "msfs",
                              "max_animation_frames", "maf", "max_animation_frame_resolution",
                              "mafr", "max_result_dimension", "mrd"})


def option_segments(o: ProcessingOptions) -> list[str]:
    """Canonical option segments for ``o``: defaults omitted, table order, short names."""
    out = []
    for row in OPTIONS:
        if row.write is not None:
            args = row.write(o)
            if args is not None:
                out.append(SEP.join((row.short, *args)))
    return out
