"""W1's floor: the least CPU any decode + resize + encode of W1 can take, and vipsgate's
``process()`` against it (issue 23: "within 5 % of the floor measured in the same run");
and the mix's codec floor (``mix_floor``, at the end).

**The floor**, precisely: W1's source (``photo_1080.jpg``, 1920x1080 q90) to the
300x169 JPEG q80 vipsgate answers, in one thread, as the cheaper of two chains that
share everything but the resize:

1. decode at 1/4 by libjpeg-turbo through Pillow's ``draft("RGB", ...)`` (480x270; the
   scaled IDCT, no resampling);
2. resize to 300x169 with the fastest resampler of the same quality available here:
   Pillow's ``LANCZOS`` (``pillow``), or libvips' ``resize`` (lanczos3) on those pixels
   in memory (``vips-resize``);
3. encode by Pillow's libjpeg-turbo: q80, 4:2:0, ``optimize=True`` (vipsgate's
   ``optimize_coding``; the same settings as vipsgate's output, so the same size class).

No metadata, no colour management, no sharpening: nothing vipsgate may skip. The CPU
is ``time.process_time`` per call; the chains and ``process()`` run in interleaved
rounds (each round calls each of them ``calls`` times, in turn) and each figure is the
median over the rounds, so a machine shared with other work slows all of them alike.
``loadtest/steps.py`` prints the table; ``make bench`` prints the ratio with its target.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Mapping
from math import ceil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loadtest.mix import Mix, MixRequest

#: issue 23: W1 ``process()`` CPU within 5 % of the floor
TARGET = 1.05
SIZE = (300, 169)  # W1's result: 1920x1080 fitted into 300x200
QUALITY = 80


def chains(data: bytes) -> dict[str, Callable[[], bytes]]:
    """The floor's chains (see the module's docstring) on W1's source ``data``."""
    import pyvips
    from PIL import Image

    def decode() -> Image.Image:
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", SIZE)  # the smallest scale 1/n that is not below SIZE: 1/4
        im.load()
        return im

    def encode(im: Image.Image) -> bytes:
        out = io.BytesIO()
        im.save(out, "JPEG", quality=QUALITY, optimize=True, subsampling=2)
        return out.getvalue()

    def pillow() -> bytes:
        return encode(decode().resize(SIZE, Image.Resampling.LANCZOS))

    def vips_resize() -> bytes:
        im = decode()
        image = pyvips.Image.new_from_memory(im.tobytes(), im.width, im.height, 3, "uchar")
        image = image.resize(SIZE[0] / im.width, vscale=SIZE[1] / im.height)
        return encode(Image.frombuffer("RGB", (image.width, image.height),
                                       image.write_to_memory(), "raw", "RGB", 0, 1))

    return {"pillow": pillow, "vips-resize": vips_resize}


def cpu_medians(ops: dict[str, Callable[[], object]], rounds: int = 7, calls: int = 30
                ) -> dict[str, float]:
    """CPU ms per call of each op, one thread: ``rounds`` interleaved rounds of ``calls``
    calls each (after one warm-up call of each), the median over the rounds."""
    samples: dict[str, list[float]] = {name: [] for name in ops}
    for fn in ops.values():
        fn()
    for _ in range(rounds):
        for name, fn in ops.items():
            start = time.process_time()
            for _ in range(calls):
                fn()
            samples[name].append((time.process_time() - start) / calls * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def measure(data: bytes, process: Callable[[], object] | None, rounds: int = 7,
            calls: int = 30) -> dict:
    """The floor's chains and (when given) W1's ``process()`` in the same rounds:
    CPU ms per image, the floor (the cheaper chain) and process()/floor with its target."""
    ops: dict[str, Callable[[], object]] = dict(chains(data))
    floor_names = list(ops)
    if process is not None:
        ops["process"] = process
    ms = cpu_medians(ops, rounds, calls)
    floor_name = min(floor_names, key=lambda name: ms[name])
    report: dict = {"cpu_ms": {k: round(v, 3) for k, v in ms.items()},
                    "floor": floor_name, "floor_ms": round(ms[floor_name], 3),
                    "rounds": rounds, "calls": calls, "target": TARGET}
    if process is not None:
        ratio = ms["process"] / ms[floor_name]
        report["ratio"] = round(ratio, 3)
        report["verdict"] = "met" if ratio <= TARGET else "missed"
    return report


def summary(report: dict) -> str:
    """One Markdown line: process() and the floor, CPU ms per image, with the target."""
    ms = report["cpu_ms"]
    chains_text = ", ".join(f"{name} {ms[name]:.2f}" for name in ms if name != "process")
    line = f"W1 floor ({chains_text} ms; medians of {report['rounds']} interleaved rounds)"
    if "ratio" not in report:
        return line
    return (f"{line}: process() {ms['process']:.2f} ms, process() / floor "
            f"**{report['ratio']:.3f}** (≤ {report['target']:.2f}: {report['verdict']})")


def decoded_size(r: MixRequest, source: tuple[int, int]) -> tuple[int, int]:
    """The least size the request's resize starts from: a fill covers its box."""
    from loadtest.mix import expected_size
    out = expected_size(r, source)
    if r.op.kind != "fill":
        return out
    scale = max(out[0] / source[0], out[1] / source[1])
    return ceil(source[0] * scale), ceil(source[1] * scale)


def mix_floor(sources: Mapping[str, bytes], mix: Mix,
              process_for: Callable[[int], Callable[[], object]]) -> dict:
    """Where the CPU of a request of ``mix`` (WebP and JPEG only) must go with the codecs at
    hand, against thumbor's pixel work and vipsgate's ``process()``, per request of one
    cycle of the mix (every source, operation and format once), in one thread, each
    request's calls one after the other (so a machine that slows down slows all alike):

    - **the codec floor**: the cheaper decoder at the smallest DCT scale that is not below
      what the resize needs (Pillow's ``draft``, or libvips' ``shrink``: both
      libjpeg-turbo) plus the cheaper encoder of an image of the output's size (Pillow's,
      or libvips' with the same settings); a resize, a crop and HTTP cost nothing here;
    - **thumbor's pixel work**: Pillow's ``draft``, ``LANCZOS`` resize to the covering
      size, crop, encode (what thumbor's PIL engine calls, without its HTTP);
    - **vipsgate**: ``process_for(n)()``, the pipeline for request ``n``.

    thumbor's pixel work over the floor bounds the ratio any server using these codecs
    can reach against thumbor's pixel work."""
    from loadtest.mix import MIX_SOURCES
    totals: dict[str, float] = {}
    requests = mix.cycle()
    for n in range(requests):
        r = mix.request(n)
        costs = request_costs(r, sources[r.source], MIX_SOURCES[r.source], process_for(n))
        for name, seconds in costs.items():
            totals[name] = totals.get(name, 0.0) + seconds
    ms = {name: round(value / requests * 1000, 1) for name, value in totals.items()}
    return {"requests": requests, "cpu_ms": ms,
            "ceiling": round(totals["thumbor"] / totals["floor"], 2),
            "vipsgate_over_floor": round(totals["vipsgate"] / totals["floor"], 2),
            "thumbor_over_vipsgate": round(totals["thumbor"] / totals["vipsgate"], 2)}


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.process_time()
    result = fn()
    return time.process_time() - started, result


def request_costs(r: MixRequest, data: bytes, size: tuple[int, int],
                  process: Callable[[], object]) -> dict[str, float]:
    """CPU seconds of each stage of ``mix_floor`` for one request, and their sums."""
    import pyvips
    from PIL import Image

    from loadtest.mix import expected_size
    if r.fmt not in ("jpeg", "webp"):
        raise ValueError(f"no codec floor for {r.fmt}")
    cover, out = decoded_size(r, size), expected_size(r, size)

    def pillow_decode() -> Image.Image:
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", cover)
        im.load()
        return im

    pillow_d, decoded = _timed(pillow_decode)
    assert isinstance(decoded, Image.Image)
    shrink = round(size[0] / decoded.width)  # Pillow's DCT scale: 1, 2, 4 or 8
    vips_d, _ = _timed(lambda: pyvips.Image.new_from_buffer(
        data, "", shrink=shrink, access="sequential").copy_memory())
    resize, resized = _timed(lambda: decoded.resize(cover, Image.Resampling.LANCZOS)
                             .crop((0, 0, *out)))  # where it crops costs the same
    assert isinstance(resized, Image.Image)
    pixels = pyvips.Image.new_from_memory(resized.tobytes(), *out, 3, "uchar")

    def pillow_encode() -> bytes:
        buffer = io.BytesIO()
        if r.fmt == "webp":
            resized.save(buffer, "WEBP", quality=QUALITY, method=4)
        else:
            resized.save(buffer, "JPEG", quality=QUALITY, optimize=True, subsampling=2)
        return buffer.getvalue()

    def vips_encode() -> bytes:
        if r.fmt == "webp":
            return bytes(pixels.webpsave_buffer(Q=QUALITY, effort=4, keep="none"))
        return bytes(pixels.jpegsave_buffer(Q=QUALITY, optimize_coding=True, keep="none"))

    pillow_e, _ = _timed(pillow_encode)
    vips_e, _ = _timed(vips_encode)
    vipsgate, _ = _timed(process)
    return {"pillow_decode": pillow_d, "vips_decode": vips_d, "resize": resize,
            "pillow_encode": pillow_e, "vips_encode": vips_e, "vipsgate": vipsgate,
            "floor": min(pillow_d, vips_d) + min(pillow_e, vips_e),
            "thumbor": pillow_d + resize + pillow_e}
