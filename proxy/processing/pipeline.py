"""The libvips pipeline: sniff -> header -> decide -> decode -> steps -> encode.

Runs in a worker (thread or process), never on the event loop. ``process`` is
the only entry point. ``STEPS`` is the pipeline as data, in imgproxy's order;
user options never reorder it, and the deadline is checked between steps.
Before any decoding, ``skip_processing`` may return the source bytes; ``trim``
decodes the whole image (no shrink-on-load) and plans the geometry on what is left.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import pyvips

from .. import formats
from ..errors import (
    ImageTooLarge,
    ProxyError,
    RequestTimeout,
    TooMuchMemory,
    UnprocessableImage,
    UnsupportedFormat,
)
from ..geometry import Plan
from ..resolve import Effective
from . import animation, codecs, format_limits, metadata, pillow_codecs, prepare, steps, vips
from .cancel import DEADLINES, KillSwitch
from .color import to_standard
from .steps import Context, Step
from .trim import trim

#: the pipeline, in imgproxy's order (crop before scale; filters after the crop to result)
STEPS: tuple[Step, ...] = (
    steps.colour, steps.crop_source, steps.scale, steps.rotate_and_flip,
    steps.crop_to_result, steps.filters, steps.extend, steps.extend_aspect_ratio,
    steps.pad, steps.flatten, steps.apply_watermark,
)


class FormatChooser(Protocol):
    """Decides the output format once the image's facts are known (see negotiate.py)."""

    @property
    def explicit(self) -> str | None: ...

    def choose(self, source: str, alpha: bool, animated: bool, width: int, height: int,
               fits: Callable[[str], bool] = ...) -> str: ...


@dataclass(frozen=True)
class Result:
    data: bytes
    format: str
    width: int
    height: int
    source_format: str
    source_width: int
    source_height: int


class Reserve(Protocol):
    """Holds memory for the block: ``memory_budget.MemoryBudget.reserve`` bound to the
    job's deadline and its worker slot (may wait, or raise ``ProxyError``)."""

    def __call__(self, nbytes: int) -> AbstractContextManager[None]: ...


def _unlimited(nbytes: int) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


def process(data: bytes | codecs.Stream, e: Effective, chooser: FormatChooser,
            watermark: bytes | None = None, deadline: float | None = None,
            reserve: Reserve = _unlimited, switch: KillSwitch | None = None) -> Result:
    """Turn the source (bytes, or a stream still arriving) into the encoded result.
    Raises ``ProxyError`` subclasses; a stream that failed raises its own error.

    ``deadline`` (``time.monotonic()``) is checked between steps: past it, the work
    stops with ``RequestTimeout``. ``reserve`` holds the estimated working memory of
    the decode from the memory budget (``prepare.working_memory``). ``switch`` stops the
    libvips work in flight when killed (by the caller, or at ``deadline``).
    """
    source = codecs.Input(data)
    switch = switch or KillSwitch()
    if deadline is not None:
        DEADLINES.arm(switch, deadline)
    try:
        return _process(source, e, chooser, watermark, deadline, reserve, switch)
    except ProxyError:
        raise
    except (OverflowError, ZeroDivisionError) as exc:  # sizes past what libvips can hold
        raise ImageTooLarge(f"Result would be too large: {exc}") from None
    except pyvips.Error as exc:
        if switch.reason == "deadline":
            raise RequestTimeout("Processing stopped at the request's deadline") from None
        if switch.killed:
            raise RequestTimeout("Processing stopped: nobody waits for it") from None
        if isinstance(source.failure, ProxyError):
            raise source.failure from None
        if source.failure is not None:
            raise RequestTimeout(f"Processing stopped: {source.failure}") from None
        raise UnprocessableImage(vips.message(exc)) from None
    finally:
        switch.release()


def _process(data: codecs.Input, e: Effective, chooser: FormatChooser,
             watermark: bytes | None, deadline: float | None, reserve: Reserve,
             switch: KillSwitch) -> Result:
    head = data.head(max(e.max_svg_check_bytes, 64))
    src_format = formats.sniff(head, e.max_svg_check_bytes)
    if src_format is None:
        raise UnsupportedFormat("Failed to detect source image type")
    if src_format in e.skip_processing and chooser.explicit in (None, src_format) \
            and src_format != "svg":
        return skip(data.whole(), src_format, e)
    if src_format not in formats.LOADABLE:
        raise UnsupportedFormat(f"Source format {src_format} is not supported")
    in_memory = isinstance(data.data, bytes)
    if src_format == "jpeg" and not in_memory:  # counted as the stream is read
        data.limit_scans()
    header = prepare.inspect(data, src_format, e)
    if src_format == "jpeg" and in_memory and header.held:  # only a multiscan JPEG (it
        data.limit_scans()  # holds coefficients) is decoded scan by scan: count them
    p, out_w, out_h = prepare.geometry(e, *header.shown, header.vector)
    alpha = header.has_alpha or prepare.needs_alpha(e, p)

    def cost(fmt: str) -> tuple[int, float, int]:
        """Frames kept, decoder shrink and estimated working memory when writing ``fmt``."""
        frames = header.frames if fmt in formats.ANIMATED else 1
        trimming = e.trim is not None and frames == 1  # trim needs the whole image
        shrink = 1.0 if trimming or not e.shrink_on_load else \
            prepare.load_shrink(src_format, p, frames > 1)
        whole = trimming or src_format not in codecs.IN_STRIPS
        return frames, shrink, prepare.working_memory(header, e, p, shrink, frames,
                                                      (out_w, out_h), whole, fmt, alpha)

    limit = e.max_job_memory or float("inf")
    out_format = chooser.choose(src_format, alpha, header.frames > 1, out_w, out_h,
                                fits=lambda fmt: fmt in formats.SAVEABLE and cost(fmt)[2] <= limit)
    if out_format not in formats.SAVEABLE:
        raise UnsupportedFormat(f"Resulting image format {out_format} is not supported")
    frames, shrink, needed = cost(out_format)
    if not header.vector:  # frames beyond the maximum were dropped: only the kept ones count
        prepare.check_resolution(header.width, header.height, frames, e)
    prepare.check_result(out_w, out_h, frames, e)
    if needed > limit:
        raise TooMuchMemory(f"The image needs about {needed >> 20} MiB to process as "
                            f"{out_format}; the limit is {e.max_job_memory >> 20} MiB")
    size = data.size  # a stream's size when declared; unknown: not suspicious
    strict = src_format == "jpeg" and size is not None and \
        codecs.jpeg_suspicious(size, header.width, header.height)
    fail_on = "warning" if strict else "error"
    check(deadline)
    with reserve(needed):
        return _decode(data, e, chooser, watermark, deadline, header, p, out_format, frames,
                       shrink, fail_on, switch)


def _decode(data: codecs.Input, e: Effective, chooser: FormatChooser,
            watermark: bytes | None, deadline: float | None, header: prepare.Header,
            p: Plan, out_format: str, frames: int, shrink: float, fail_on: str,
            switch: KillSwitch) -> Result:
    """Decode (shrunk on load), run the steps, encode: the memory-heavy part."""
    src_format = header.format
    if e.trim is not None and frames == 1:  # trim needs the whole image: no shrink-on-load
        image = switch.watch(codecs.load(data, src_format, thumbnail=e.enforce_thumbnail,
                                         fail_on=fail_on))
        image = trim(to_standard(image, not e.strip_color_profile), e.trim)
        raw_size = (image.width, image.height)
        shown = prepare.oriented(*raw_size, header.orientation)
        p, out_w, out_h = prepare.geometry(e, *shown, header.vector)
        out_format = chooser.choose(src_format, header.has_alpha or prepare.needs_alpha(e, p),
                                    False, out_w, out_h)
    else:
        image = fast_decode(data, header, shrink, e) if fail_on == "error" else None
        image = switch.watch(image or codecs.load(data, src_format, shrink=shrink,
                                                  frames=frames, thumbnail=e.enforce_thumbnail,
                                                  fail_on=fail_on))
        raw_size = (header.width, header.height)
    ctx = Context(e, p, header.orientation, out_format, raw_size, watermark, switch.watch)
    if frames > 1:
        image = animation.run_frames(image, frames, ctx,
                                     lambda frame, c: run(frame, c, STEPS, deadline))
    else:
        image = run(image, ctx, STEPS, deadline)
    image, out_format = format_limits.settle(steps.finalize(image, ctx), out_format)
    encoded = encode(image, out_format, e)
    height = image.get("page-height") if frames > 1 else image.height
    return Result(encoded, out_format, image.width, height, src_format, *header.shown)


def fast_decode(data: codecs.Input, header: prepare.Header, shrink: float, e: Effective
                ) -> pyvips.Image | None:
    """A JPEG in memory shrunk on load, by Pillow's decoder (the same pixels for less
    CPU: ``pillow_codecs``); None for anything else."""
    if header.format != "jpeg" or header.image is None or not isinstance(data.data, bytes):
        return None
    return pillow_codecs.decode_jpeg(data.data, header.image, shrink, e.strip_metadata)


def run(image: pyvips.Image, ctx: Context, pipeline: Sequence[Step],
        deadline: float | None = None) -> pyvips.Image:
    """Apply ``pipeline`` to one frame, checking the deadline between steps."""
    for step in pipeline:
        image = step(image, ctx)
        check(deadline)
    return image


def check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise RequestTimeout("Processing stopped at the request's deadline")


def encode(image: pyvips.Image, fmt: str, e: Effective) -> bytes:
    """Save with the metadata asked for; ``max_bytes`` lowers quality as imgproxy does."""
    quality = e.quality(fmt)
    image, keep = metadata.prepare(image, e.strip_metadata, e.keep_copyright,
                                   not e.strip_color_profile)
    degrade = bool(e.max_bytes) and fmt in formats.QUALITY
    if degrade:
        image = image.copy_memory()  # saved several times: decode once
    data = codecs.save(image, fmt, quality, keep, e)
    while degrade and len(data) > e.max_bytes and quality > 10:
        ratio = len(data) / e.max_bytes
        factor = 0.25 if ratio > 3 else 0.5 if ratio > 1.5 else 0.75
        quality = max(1, min(quality - 1, int(quality * factor)))
        data = codecs.save(image, fmt, quality, keep, e)
    return data


def skip(data: bytes, fmt: str, e: Effective) -> Result:
    """``skip_processing``: the source bytes unchanged, after the resolution check.

    Never for SVG: SVGs are only ever rasterised, so scripts in them cannot reach
    a browser as ``image/svg+xml``.
    """
    width = height = 0
    if fmt in formats.LOADABLE:
        width, height = prepare.stored_size(data, fmt)
        prepare.check_resolution(width, height, 1, e)
    return Result(data, fmt, width, height, fmt, width, height)

