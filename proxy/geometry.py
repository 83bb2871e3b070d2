"""Pure geometry: from source size and options to scale, crops and target size.

No libvips here, so every resizing rule is unit-tested with plain numbers. It
follows imgproxy's ``processing/prepare.go``: shrink factors per axis by
resizing type, zoom, enlarge clamp, min-width/min-height, dpr, then the target
(crop-to-result) size and the result-dimension cap.
"""

from __future__ import annotations

from dataclasses import dataclass

from .options import Gravity, ProcessingOptions


@dataclass(frozen=True)
class Plan:
    """What the pipeline does to an image of ``src`` size (after EXIF rotation)."""

    crop: tuple[int, int] | None  # user crop in source pixels (before scaling)
    scale: tuple[float, float]  # x and y scale applied to the (cropped) source
    target: tuple[int, int]  # crop-to-result size; 0 = no crop on that axis
    extend_to: tuple[int, int] | None  # pad to this size (extend)
    aspect_to: tuple[int, int] | None  # pad to this aspect ratio (extend_aspect_ratio)
    padding: tuple[int, int, int, int]  # top, right, bottom, left in output pixels
    dpr: float  # the effective device pixel ratio (for offsets)


def crop_size(full: int, requested: float) -> int:
    """imgproxy's crop size rule: 0 = full, >= 1 pixels, < 1 a share (at least 1px)."""
    if requested == 0:
        return full
    if requested >= 1:
        return min(full, int(requested))
    return max(1, round(full * requested))


def resolved_type(o: ProcessingOptions, src_w: int, src_h: int) -> str:
    if o.resizing_type != "auto":
        return o.resizing_type
    dst_w, dst_h = o.width or src_w, o.height or src_h
    same = (src_w >= src_h) == (dst_w >= dst_h)
    return "fill" if same else "fit"


def calc_scale(o: ProcessingOptions, src_w: int, src_h: int, vector: bool = False
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


def plan(o: ProcessingOptions, src_w: int, src_h: int, max_dimension: int = 0,
         vector: bool = False) -> Plan:
    """The whole geometry for one frame of ``src_w x src_h`` (EXIF rotation applied)."""
    crop = None
    if o.crop is not None:
        crop = (crop_size(src_w, o.crop.width), crop_size(src_h, o.crop.height))
        src_w, src_h = crop
    sx, sy, dpr = calc_scale(o, src_w, src_h, vector)
    target = (round(o.width * dpr * o.zoom[0]), round(o.height * dpr * o.zoom[1]))
    if resolved_type(o, src_w, src_h) == "fill-down" and not o.enlarge:
        target = _fill_down_target(target, src_w * sx, src_h * sy)
    padding = tuple(round(p * dpr) for p in o.padding)
    extend_to = target if o.extend.enabled else None
    aspect_to = target if o.extend_ar.enabled and o.width and o.height else None
    if max_dimension:
        out_w, out_h = _result_size(src_w * sx, src_h * sy, target, extend_to, padding)
        factor = max_dimension / max(out_w, out_h, 1)
        if factor < 1:
            sx, sy = sx * factor, sy * factor
            target = (int(target[0] * factor), int(target[1] * factor))
            extend_to = target if extend_to else None
            aspect_to = target if aspect_to else None
            padding = tuple(int(p * factor) for p in padding)
            dpr *= factor
    return Plan(crop, (sx, sy), target, extend_to, aspect_to, padding, dpr)  # type: ignore[arg-type]


def _fill_down_target(target: tuple[int, int], w: float, h: float) -> tuple[int, int]:
    tw, th = target
    if not tw or not th or (w >= tw and h >= th):
        return target
    ratio = min(w / tw, h / th)
    return max(1, round(tw * ratio)), max(1, round(th * ratio))


def _result_size(w: float, h: float, target: tuple[int, int],
                 extend_to: tuple[int, int] | None,
                 padding: tuple[int, ...]) -> tuple[float, float]:
    if target[0]:
        w = min(w, target[0])
    if target[1]:
        h = min(h, target[1])
    if extend_to:
        w, h = max(w, extend_to[0]), max(h, extend_to[1])
    return w + padding[1] + padding[3], h + padding[0] + padding[2]


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
        left = ox if "we" in t else (ow - iw - ox) if "ea" in t else cx + ox
        top = oy if t.startswith("no") else (oh - ih - oy) if t.startswith("so") else cy + oy
        left, top = round(left), round(top)
    return max(0, min(left, ow - iw)), max(0, min(top, oh - ih))
