"""Animations: every kept frame through the same steps; delays and loop kept.

Smart gravity falls back to centre (as imgproxy does): a per-frame smartcrop would
make the crop window jump between frames. ``trim`` is not applied to animations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pyvips

from ..options import Gravity
from .steps import Context

DEFAULT_DELAY = 40  # ms, when the source has none


def without_smart_gravity(ctx: Context) -> Context:
    e = ctx.options
    crop = e.crop
    if crop is not None and crop.gravity is not None and crop.gravity.type == "sm":
        crop = replace(crop, gravity=None)
    gravity = Gravity() if e.gravity.type == "sm" else e.gravity
    if (crop, gravity) == (e.crop, e.gravity):
        return ctx
    return replace(ctx, options=replace(e, gravity=gravity, crop=crop))


def run_frames(image: pyvips.Image, frames: int, ctx: Context,
               per_frame: Callable[[pyvips.Image, Context], pyvips.Image]) -> pyvips.Image:
    """``image`` is the loaded strip of ``frames`` pages; ``per_frame`` runs the steps."""
    ctx = without_smart_gravity(ctx)
    page_h = image.get("page-height") if image.get_typeof("page-height") else image.height
    page_h = min(page_h, image.height // frames)
    done = [per_frame(image.crop(0, i * page_h, image.width, page_h), ctx)
            for i in range(frames)]
    out = pyvips.Image.arrayjoin(done, across=1).copy()
    out.set_type(pyvips.GValue.gint_type, "page-height", done[0].height)
    out.set_type(pyvips.GValue.gint_type, "n-pages", frames)
    delay = list(image.get("delay")) if image.get_typeof("delay") else []
    delay = (delay + [DEFAULT_DELAY] * frames)[:frames]
    out.set_type(pyvips.GValue.array_int_type, "delay", delay)
    loop = image.get("loop") if image.get_typeof("loop") else 0
    out.set_type(pyvips.GValue.gint_type, "loop", loop)
    return out
