"""CPU per image step, libvips against Pillow, on the bench's generated sources.

    python loadtest/steps.py            # the pyvips this venv has (the wheel, normally)

One thread, ``time.process_time`` over ``--runs`` calls per step, after one
warm-up call. Needs only pyvips and Pillow (not vipsgate), so it also runs in a
venv with plain ``pyvips`` against a distribution's libvips, for example
Debian's, linked to libjpeg-turbo::

    apt-get install libvips42 && python -m venv /tmp/sysvips
    /tmp/sysvips/bin/pip install pyvips pillow && /tmp/sysvips/bin/python loadtest/steps.py

The tables in loadtest/README.md ("libvips against Pillow", round 2) come from it.
It ends with W1's floor (``loadtest/floor.py``) and, where vipsgate is installed,
``process()`` against it in the same interleaved rounds.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest import floor
from loadtest.common import no_metadata, prepare_libvips, write_sources


def cpu_ms(fn: Callable[[], object], runs: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(runs):
        fn()
    return (time.process_time() - start) / runs * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    prepare_libvips()
    import pyvips
    from PIL import Image

    sources = write_sources(Path(tempfile.mkdtemp(prefix="vipsgate-steps-")))
    photo, alpha = sources["photo_1080.jpg"], sources["alpha.png"]
    small = pyvips.Image.thumbnail_buffer(photo, 300, height=200).copy_memory()
    rgba = pyvips.Image.new_from_buffer(alpha, "").copy_memory()
    pil_small = Image.frombytes("RGB", (small.width, small.height), small.write_to_memory())

    def pil_decode() -> None:
        with Image.open(io.BytesIO(photo)) as im:
            im.draft("RGB", (300, 200))
            im.load()

    def pil_save(fmt: str, **kw: object) -> Callable[[], bytes]:
        def save() -> bytes:
            out = io.BytesIO()
            pil_small.save(out, fmt, **kw)
            return out.getvalue()
        return save

    scale = 300 / rgba.width
    bare = no_metadata()
    steps: list[tuple[str, Callable[[], object], Callable[[], object] | None]] = [
        ("W1 JPEG decode, shrink 4",
         lambda: pyvips.Image.new_from_buffer(photo, "", shrink=4,
                                              access="sequential").copy_memory(),
         pil_decode),
        ("W1 JPEG encode 300x169 q80",
         lambda: small.jpegsave_buffer(Q=80, optimize_coding=True, **bare),
         pil_save("JPEG", quality=80)),
        ("W2 WebP encode 300x169 q80",
         lambda: small.webpsave_buffer(Q=80, **bare),
         pil_save("WEBP", quality=80, method=4)),
        ("W1 thumbnail_buffer + JPEG",
         lambda: pyvips.Image.thumbnail_buffer(photo, 300, height=200)
         .jpegsave_buffer(Q=80, optimize_coding=True, **bare), None),
        ("W4 alpha resize, float premultiply",
         lambda: rgba.premultiply().resize(scale).unpremultiply().cast("uchar").copy_memory(),
         None),
        ("W4 alpha resize, uchar premultiply",
         lambda: rgba.premultiply().cast("uchar").resize(scale).unpremultiply()
         .cast("uchar").copy_memory(), None),
    ]
    version = ".".join(str(pyvips.version(i)) for i in range(3))
    mode = "API" if pyvips.API_mode else "ABI"
    print(f"libvips {version} ({mode} mode), {args.runs} runs per step, CPU ms per call\n")
    print("| step | libvips | Pillow |\n|---|---|---|")
    for name, vips_fn, pil_fn in steps:
        pil = f"{cpu_ms(pil_fn, args.runs):.2f}" if pil_fn else "–"
        print(f"| {name} | {cpu_ms(vips_fn, args.runs):.2f} | {pil} |", flush=True)
    try:
        from loadtest.bench import WORKLOADS, vipsgate_op
        process: Callable[[], object] | None = vipsgate_op(WORKLOADS[0], photo)
    except ImportError:  # plain pyvips and Pillow: the floor alone
        process = None
    print("\n" + floor.summary(floor.measure(photo, process)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
