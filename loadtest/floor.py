"""W1's floor: the least CPU any decode + resize + encode of W1 can take, and vipsgate's
``process()`` against it (issue 23: "within 5 % of the floor measured in the same run").

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
from collections.abc import Callable

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
