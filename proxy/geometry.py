"""Pure geometry: from source size and options to scale, crops and target size.

No libvips here, so every resizing rule is unit-tested with plain numbers. It
follows imgproxy v4's ``processing/prepare.go``: shrink factors per axis by
resizing type, zoom, enlarge clamp, min-width/min-height, dpr (``calcScale``);
the target, crop-to-result and extend-aspect-ratio sizes (``calcSizes``); then
the result-dimension cap (``limitScale``). Sizes round like Go's ``math.Round``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from .options import Crop, Extend, Gravity


class GeometryOptions(Protocol):
    """The options geometry reads: URL options (the URL builder) or effective ones."""

    @property
    def resizing_type(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def min_width(self) -> int: ...
    @property
    def min_height(self) -> int: ...
    @property
    def zoom(self) -> tuple[float, float]: ...
    @property
    def dpr(self) -> float: ...
    @property
    def enlarge(self) -> bool: ...
    @property
    def extend(self) -> Extend: ...
    @property
    def extend_ar(self) -> Extend: ...
    @property
    def crop(self) -> Crop | None: ...
    @property
    def padding(self) -> tuple[int, int, int, int]: ...


@dataclass(frozen=True)
class Plan:
    """What the pipeline does to an image of ``src`` size (after all rotation)."""

    crop: tuple[int, int] | None  # user crop in source pixels (before scaling)
    scale: tuple[float, float]  # x and y scale applied to the (cropped) source
    target: tuple[int, int]  # crop-to-result size; 0 = no crop on that axis
    extend_to: tuple[int, int] | None  # pad to this size (extend)
    aspect_to: tuple[int, int] | None  # pad to this size (extend_aspect_ratio)
    padding: tuple[int, int, int, int]  # top, right, bottom, left in output pixels
    dpr: float  # the effective device pixel ratio (for offsets)


def go_round(value: float) -> int:
    """Go's ``math.Round``: halves away from zero (Python's ``round`` rounds to even)."""
    return math.floor(abs(value) + 0.5) * (1 if value >= 0 else -1)


def _scale(size: int, factor: float) -> int:
    """imgproxy's ``imath.Scale``."""
    return go_round(size * factor)


def crop_size(full: int, requested: float) -> int:
    """imgproxy's crop size rule: 0 = full, >= 1 pixels, < 1 a share (at least 1px)."""
    if requested == 0:
        return full
    if requested >= 1:
        return min(full, int(requested))
    return max(1, _scale(full, requested))


def resolved_type(o: GeometryOptions, src_w: int, src_h: int) -> str:
    if o.resizing_type != "auto":
        return o.resizing_type
    dst_w, dst_h = o.width or src_w, o.height or src_h
    same = (src_w >= src_h) == (dst_w >= dst_h)
    return "fill" if same else "fit"


def calc_scale(o: GeometryOptions, src_w: int, src_h: int, vector: bool = False
               ) -> tuple[float, float, float]:
    """Scale factors (output / input) and the effective dpr for ``src_w x src_h``."""
    wshrink = src_w / o.width if o.width and o.width != src_w else 1.0
    hshrink = src_h / o.height if o.height and o.height != src_h else 1.0
    if wshrink != 1 or hshrink != 1:
        kind = resolved_type(o, src_w, src_h)
        if o.width == 0 and kind != "force":
            wshrink = hshrink
        elif o.height == 0 and kind != "force":
            hshrink = wshrink
        elif kind == "fit":
            wshrink = hshrink = max(wshrink, hshrink)
        elif kind in ("fill", "fill-down"):
            wshrink = hshrink = min(wshrink, hshrink)
    wshrink /= o.zoom[0]
    hshrink /= o.zoom[1]
    dpr = o.dpr
    if not o.enlarge and not vector:
        smallest = min(wshrink, hshrink)
        if smallest < 1:
            wshrink /= smallest
            hshrink /= smallest
            if not o.extend.enabled:
                dpr /= smallest
        # the largest dpr that does not enlarge the image
        dpr = min(dpr, wshrink, hshrink)
    if o.min_width and src_w / o.min_width < wshrink:
        hshrink /= wshrink / (src_w / o.min_width)
        wshrink = src_w / o.min_width
    if o.min_height and src_h / o.min_height < hshrink:
        wshrink /= hshrink / (src_h / o.min_height)
        hshrink = src_h / o.min_height
    wshrink = min(wshrink / dpr, src_w)  # never below one pixel
    hshrink = min(hshrink / dpr, src_h)
    return 1 / wshrink, 1 / hshrink, dpr


@dataclass(frozen=True)
class _Sizes:
    target: tuple[int, int]  # requested size x dpr x zoom (extend pads to it)
    scaled: tuple[int, int]  # the source after scaling
    result_crop: tuple[int, int]  # crop-to-result size
    aspect: tuple[int, int] | None  # extend_aspect_ratio size


def _sizes(o: GeometryOptions, w: int, h: int, sx: float, sy: float, dpr: float) -> _Sizes:
    """imgproxy's ``calcSizes``."""
    target = (_scale(o.width, dpr * o.zoom[0]), _scale(o.height, dpr * o.zoom[1]))
    scaled = (_scale(w, sx), _scale(h, sy))
    result_crop = target
    if o.resizing_type == "fill-down" and not o.enlarge and scaled[0] and scaled[1]:
        diff_w, diff_h = target[0] / scaled[0], target[1] / scaled[1]
        if diff_w > diff_h and diff_w > 1:
            result_crop = (scaled[0], _scale(scaled[0], target[1] / target[0]))
        elif diff_h > diff_w and diff_h > 1:
            result_crop = (_scale(scaled[1], target[0] / target[1]), scaled[1])
    aspect = None
    if o.extend_ar.enabled and target[0] > 0 and target[1] > 0:
        out_w = _min_non_zero(scaled[0], result_crop[0])
        out_h = _min_non_zero(scaled[1], result_crop[1])
        diff_w, diff_h = target[0] / out_w, target[1] / out_h
        if diff_h > diff_w:
            aspect = (out_w, _scale(out_w, target[1] / target[0]))
        elif diff_w > diff_h:
            aspect = (_scale(out_h, target[0] / target[1]), out_h)
    return _Sizes(target, scaled, result_crop, aspect)


def _min_non_zero(a: int, b: int) -> int:
    return min(a, b) if a and b else a or b


def plan(o: GeometryOptions, src_w: int, src_h: int, max_dimension: int = 0,
         vector: bool = False) -> Plan:
    """The whole geometry for one frame of ``src_w x src_h`` (all rotation applied).

    Follows imgproxy v4 ``prepare``: calcScale, calcSizes, then limitScale for
    the result-dimension cap.
    """
    crop = None
    if o.crop is not None:
        crop = (crop_size(src_w, o.crop.width), crop_size(src_h, o.crop.height))
        src_w, src_h = crop
    sx, sy, dpr = calc_scale(o, src_w, src_h, vector)
    sizes = _sizes(o, src_w, src_h, sx, sy, dpr)
    padding = tuple(round(p * dpr) for p in o.padding)  # Go's ScaleToEven rounds half to even
    result = Plan(crop, (sx, sy), sizes.result_crop, sizes.target if o.extend.enabled else None,
                  sizes.aspect, padding, dpr)  # type: ignore[arg-type]
    # imgproxy's limitScale; then re-check, because rounding the parts can overshoot by 1-2px
    for _ in range(4):
        out = max(result_size(result, src_w, src_h)) if max_dimension else 0
        if out <= max_dimension:
            break
        factor = (max_dimension - 0.5 * _) / out
        sx, sy = max(sx * factor, 1 / src_w), max(sy * factor, 1 / src_h)
        dpr *= factor
        sizes = _sizes(o, src_w, src_h, sx, sy, dpr)
        padding = tuple(round(p * dpr) for p in o.padding)
        result = Plan(crop, (sx, sy), sizes.result_crop,
                      sizes.target if o.extend.enabled else None, sizes.aspect,
                      padding, dpr)  # type: ignore[arg-type]
    return result


def gravity_offset(g: Gravity, outer: tuple[int, int], inner: tuple[int, int],
                   dpr: float = 1.0) -> tuple[int, int]:
    """Top-left of an ``inner`` box placed in ``outer`` by gravity ``g`` (clamped)."""
    ow, oh = outer
    iw, ih = inner
    if g.type == "fp":
        left = round(ow * g.x - iw / 2)
        top = round(oh * g.y - ih / 2)
    else:
        ox = g.x * dpr if abs(g.x) >= 1 else g.x * ow
        oy = g.y * dpr if abs(g.y) >= 1 else g.y * oh
        cx = (ow - iw) / 2
        cy = (oh - ih) / 2
        t = g.type
        x = ox if "we" in t else (ow - iw - ox) if "ea" in t else cx + ox
        y = oy if t.startswith("no") else (oh - ih - oy) if t.startswith("so") else cy + oy
        left, top = round(x), round(y)
    return max(0, min(left, ow - iw)), max(0, min(top, oh - ih))


def scaled_size(p: Plan, src_w: int, src_h: int) -> tuple[int, int]:
    """Size after the user crop and the scale, before cropping to the target."""
    w, h = p.crop or (src_w, src_h)
    return max(1, _scale(w, p.scale[0])), max(1, _scale(h, p.scale[1]))


def result_size(p: Plan, src_w: int, src_h: int) -> tuple[int, int]:
    """The output size the pipeline produces for ``p`` (crop, extend, aspect, padding)."""
    w, h = scaled_size(p, src_w, src_h)
    if p.target[0]:
        w = min(w, p.target[0])
    if p.target[1]:
        h = min(h, p.target[1])
    if p.extend_to:
        w, h = max(w, p.extend_to[0]), max(h, p.extend_to[1])
    if p.aspect_to:
        w, h = max(w, p.aspect_to[0]), max(h, p.aspect_to[1])
    top, right, bottom, left = p.padding
    return w + left + right, h + top + bottom

