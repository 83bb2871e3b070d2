"""Per-image latency of encoders and animations through ``proxy.processing.process``.

    VIPS_CONCURRENCY=1 python loadtest/bench_processing.py

One libvips thread, median of 3 runs, generated images (no files needed):
a 1600x1200 photo-like JPEG resized to 800x600 in each output format (AVIF at
several ``IMGPROXY_AVIF_SPEED`` values), and a 320x240 100-frame cartoon-like
GIF resized to 160x120 with 1 and 100 kept frames. The figures in
the README's Processing section come from this script.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import pyvips

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from imagegen import photo, solid
from vipsgate.config import Settings
from vipsgate.negotiate import FormatPolicy
from vipsgate.paths import parse_path
from vipsgate.processing import process
from vipsgate.processing.vips import init
from vipsgate.resolve import resolve


def measure(data: bytes, options: str, fmt: str, settings: Settings,
            runs: int = 3) -> tuple[float, int]:
    """(median milliseconds, output bytes)."""
    e = resolve(parse_path(f"/{options}/plain/local:///x@{fmt}").options, settings)
    times, size = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        size = len(process(data, e, FormatPolicy(fmt)).data)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, size


def cartoon_gif(frames: int = 100) -> bytes:
    pages = [solid(320, 240, (240, 240, 230))
             .draw_circle([200, 40, 40], 20 + 2 * i, 120, 30, fill=True)
             .draw_rect([30, 90, 200], 0, 200, 320, 40, fill=True) for i in range(frames)]
    strip = pyvips.Image.arrayjoin(pages, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", 240)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [40] * frames)
    return strip.gifsave_buffer()


def main() -> None:
    init()
    source = photo(1600, 1200).jpegsave_buffer(Q=90)
    cases = [("jpeg", {}), ("webp", {})] + [("avif", {"avif_speed": s}) for s in (9, 8, 6, 4)]
    print("| Output | ms | bytes |\n|---|---|---|")
    for fmt, settings in cases:
        ms, size = measure(source, "rs:fit:800:800", fmt, replace(Settings(), **settings))
        label = fmt + (f" speed {settings['avif_speed']}" if settings else "")
        print(f"| {label} | {ms:.0f} | {size} |")
    gif = cartoon_gif()
    print("\n| Animation | kept frames | ms | bytes |\n|---|---|---|---|")
    for fmt in ("gif", "webp"):
        for frames in (1, 100):
            ms, size = measure(gif, "rs:fit:160:160", fmt,
                               replace(Settings(), max_animation_frames=frames))
            print(f"| 100-frame GIF -> {fmt} | {frames} | {ms:.0f} | {size} |")


if __name__ == "__main__":
    main()
