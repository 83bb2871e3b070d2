"""The memory model against real peaks: for each case (a generated source, options, an
output format), the job's estimate (``processing/memory_model.py``) and the peak
resident memory the same job really added, each in a fresh process set up as the
server sets up libvips (one thread per image, no operation cache, MALLOC_ARENA_MAX=2).

    .venv/bin/python loadtest/memcost.py [--quick] [--json FILE]

A case the limits refuse shows the refusal (and ~0 growth). The model is meant to be
at or above the peak: ``ratio`` (peak / estimate) above 1.0 is an under-estimate.
Cases cover what the issue found: extreme widths, 16-bit samples, interlaced PNG,
progressive JPEG, whole-image decoders, SVG, and every encoder on a large result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (kind, width, height, bands, bits, interlaced), options, output format
CASES: list[tuple[tuple[str, int, int, int, int, bool], str, str]] = [
    (("png", 65535, 760, 3, 8, False), "rs:fit:300:300", ""),
    (("png", 65535, 760, 3, 8, False), "rs:fit:2000:2000", ""),
    (("png", 65535, 40, 4, 16, False), "rs:fit:300:300", ""),
    (("png", 65535, 4, 4, 16, False), "rs:fit:300:300", ""),
    (("png", 30000, 1666, 4, 16, False), "rs:fit:300:300", ""),
    (("png", 30000, 1666, 4, 16, False), "rs:fit:2000:2000", ""),
    (("png", 760, 65535, 4, 16, False), "rs:fit:300:300", ""),
    (("png", 7071, 7071, 3, 8, False), "rs:fit:300:300", ""),
    (("png", 7071, 7071, 4, 16, False), "rs:fit:300:300", ""),
    (("png", 7071, 7071, 4, 16, True), "rs:fit:300:300", ""),
    (("jpg", 7071, 7071, 3, 8, True), "rs:fit:300:300", ""),
    (("jpg", 7071, 7071, 3, 8, True), "rs:fit:2000:2000", ""),
    (("jpg", 7071, 7071, 3, 8, False), "rs:fit:300:300", ""),
    (("webp", 7071, 7071, 3, 8, False), "rs:fit:2000:2000", ""),
    (("jpg", 7071, 7071, 3, 8, False), "rs:fit:0:0", "jpeg"),
    (("jpg", 7071, 7071, 3, 8, False), "rs:fit:0:0", "png"),
    (("jpg", 7071, 7071, 3, 8, False), "rs:fit:0:0", "webp"),
    (("jpg", 4000, 4000, 3, 8, False), "rs:fit:0:0", "avif"),
] + [((("png", 64, 64, bands, 8, False)), "rs:fit:4000:4000:1", fmt)
     for fmt in ("jpeg", "png", "webp", "avif", "gif", "tiff", "jxl", "bmp") for bands in (3, 4)]
# Pillow's codecs at their largest: 1 MP decoded from 16 MP, 1 MP encoded (pillow_codecs.py)
CASES.append((("jpg", 4000, 4000, 3, 8, False), "rs:fit:1000:1000", "jpeg"))
QUICK = {0, 2, 4, 9, 10, 14, 16, 17}

GENERATE = """
import sys, pyvips
kind, w, h, bands, bits, inter, out = sys.argv[1:]
w, h, bands, bits, inter = int(w), int(h), int(bands), int(bits), inter == "1"
image = (pyvips.Image.black(w, h, bands=bands) + 100).cast("ushort" if bits == 16 else "uchar")
if bits == 16:
    image = (image * 200).cast("ushort").copy(interpretation="rgb16")
else:
    image = image.copy(interpretation="srgb")
if kind == "png":
    image.pngsave(out, interlace=inter, compression=9)
elif kind == "jpg":
    image.jpegsave(out, interlace=inter)
else:
    image.webpsave(out, lossless=True)
"""

MEASURE = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[4])
from conftest import effective
from vipsgate.negotiate import FormatPolicy
from vipsgate.processing import prepare, vips
from vipsgate.processing.pipeline import process
vips.init()
path, options, fmt = sys.argv[1], sys.argv[2], sys.argv[3] or None
data = open(path, "rb").read()
e = effective(options, fmt)
seen = {}
estimate = prepare.working_memory
def spy(*args, **kwargs):
    seen["estimate"] = value = estimate(*args, **kwargs)
    return value
prepare.working_memory = spy
def resident():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
open("/proc/self/clear_refs", "w").write("5")
before = resident()
started = time.perf_counter()
try:
    result = process(data, e, FormatPolicy(fmt))
    outcome = f"{result.width}x{result.height} {result.format}"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {exc}"[:70]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        peak = int(line.split()[1]) * 1024
print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - started,
                  "peak": peak - before, "estimate": seen.get("estimate", 0)}))
"""


def generate(spec: tuple[str, int, int, int, int, bool], directory: Path) -> Path:
    kind, w, h, bands, bits, inter = spec
    path = directory / f"{kind}_{w}x{h}_{bands}b{bits}{'i' if inter else ''}.{kind}"
    if not path.exists():
        subprocess.run([sys.executable, "-c", GENERATE, kind, str(w), str(h), str(bands),
                        str(bits), "1" if inter else "0", str(path)], check=True)
    return path


def measure(path: Path, options: str, fmt: str) -> dict[str, object]:
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "VIPS_CONCURRENCY": "1"}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path), options, fmt,
                           str(ROOT / "tests")], capture_output=True, text=True, env=env,
                          timeout=600, cwd=ROOT)
    if done.returncode:
        return {"outcome": f"failed: {done.stderr.strip().splitlines()[-1:]}", "peak": 0,
                "estimate": 0, "seconds": 0}
    row: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few representative cases")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="memcost-") as tmp:
        print(f"{'source':30} {'options':20} {'out':5} {'peak MiB':>9} {'est MiB':>8} "
              f"{'ratio':>6}  outcome")
        for index, (spec, options, fmt) in enumerate(CASES):
            if args.quick and index not in QUICK:
                continue
            path = generate(spec, Path(tmp))
            row = measure(path, options, fmt)
            peak, estimate = int(row["peak"]), int(row["estimate"])  # type: ignore[call-overload]
            refused = not str(row["outcome"])[0].isdigit()
            ratio = peak / estimate if estimate and not refused else 0.0
            rows.append({"source": path.name, "options": options, "format": fmt, **row,
                         "ratio": ratio})
            print(f"{path.name:30} {options:20} {fmt or '-':5} {peak >> 20:9} "
                  f"{estimate >> 20:8} {ratio:6.2f}  {row['outcome']}", flush=True)
    done = [r for r in rows if r["ratio"]]
    if done:
        worst = max(done, key=lambda r: float(r["ratio"]))  # type: ignore[arg-type]
        print(f"\n{len(done)} jobs measured; highest peak/estimate {worst['ratio']:.2f} "
              f"({worst['source']} {worst['options']} {worst['format'] or ''})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
