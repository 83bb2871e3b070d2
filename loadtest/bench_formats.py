"""CPU per image for the formats decoded outside libvips, against a JPEG of the same size.

    python loadtest/bench_formats.py [--runs 10] [--size 4032x3024]

One 12 MP photo-like image (4032x3024, an iPhone's size) is written once as JPEG
(q90), HEIC (q90, x265), JPEG XL (q90) and BMP; each goes through vipsgate's
``process`` with ``rs:fit:300:300`` to WebP, as the server calls it (one thread,
``vips.init()`` done). The figure is process CPU time per image (all threads
counted), the median of ``--runs``, measured in one run of this script; the README's
Processing section quotes it.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import pillow_heif
from PIL import Image

from imagegen import photo
from vipsgate.config import Settings
from vipsgate.negotiate import FormatPolicy
from vipsgate.paths import parse_path
from vipsgate.processing import process
from vipsgate.processing.vips import init
from vipsgate.resolve import resolve

OPTIONS = "rs:fit:300:300"


def sources(width: int, height: int) -> dict[str, bytes]:
    image = photo(width, height)
    pil = Image.frombytes("RGB", (width, height), image.write_to_memory())
    heic, jxl, bmp = io.BytesIO(), io.BytesIO(), io.BytesIO()
    pillow_heif.from_pillow(pil).save(heic, quality=90)
    import pillow_jxl  # noqa: F401  (registers JPEG XL with Pillow)

    pil.save(jxl, "JXL", quality=90, effort=4)
    pil.save(bmp, "BMP")
    return {"jpeg": image.jpegsave_buffer(Q=90), "heic": heic.getvalue(),
            "jxl": jxl.getvalue(), "bmp": bmp.getvalue()}


def cpu_ms(data: bytes, runs: int) -> tuple[float, float]:
    """(median CPU ms, median wall ms) per image."""
    e = resolve(parse_path(f"/{OPTIONS}/plain/local:///x@webp").options, Settings())
    policy = FormatPolicy("webp")
    process(data, e, policy)  # warm-up
    cpu, wall = [], []
    for _ in range(runs):
        c, w = time.process_time(), time.perf_counter()
        process(data, e, policy)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu) * 1000, statistics.median(wall) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--size", default="4032x3024")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    init()
    files = sources(width, height)
    print(f"{width}x{height} -> {OPTIONS} WebP, median of {args.runs}\n")
    print("| source | bytes | CPU ms/image | wall ms/image | CPU vs JPEG |")
    print("|---|---|---|---|---|")
    base = 0.0
    for fmt, data in files.items():  # JPEG first: the others are compared with it
        cpu, wall = cpu_ms(data, args.runs)
        base = base or cpu
        print(f"| {fmt} | {len(data)} | {cpu:.0f} | {wall:.0f} | {cpu / base:.1f}x |")


if __name__ == "__main__":
    main()
