"""The adversarial pass of issue 24, replayed: the issue's hostile requests against a
real ``vipsgate serve`` (default settings, the chart's 2 workers), each on a fresh
server; optionally against another checkout too (``--before``).

    .venv/bin/python loadtest/hostile.py [--before /work/baseline] [--only NAME,...]

For each case: the answer and its time, the server's peak resident memory growth
(the kernel's high-water mark, reset before the request), and how long a worker stayed
busy after the answer (``vipsgate_workers_busy``). Then the failure cases: 40 requests
for a 30 MB corrupt PNG, sequential and concurrent, with the resident memory after
them and 12 s later; and 20 clients hanging up 150 ms into a slow image, with the CPU
the server spent and whether the next request for it was a cache hit. Everything goes
to 127.0.0.1 and is bounded in time (a request gets at most ``--patience`` seconds).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hostilegen import (
    blank_png,
    corrupt,
    jpeg_with_scans,
    noise_png,
    svg_embedding,
    svg_with_text,
)
from loadtest.common import rss_bytes, signer
from loadtest.paired import server_for

MIB = 1 << 20
SLOW = "/rs:fit:0:0/bl:50/plain/local:///big.jpg@png"  # seconds of killable libvips work

#: name -> (file name, options, Accept)
CASES = {
    "49M x 1 16-bit PNG": ("wide16.png", "rs:fit:300:300", ""),
    "24M x 2 PNG": ("wide2.png", "rs:fit:300:300", ""),
    "SVG embedding 20000x20000 PNG": ("embed.svg", "rs:fit:300:300", ""),
    "SVG with 1M characters of text": ("text.svg", "rs:fit:300:300", ""),
    "7000x7000 JPEG, 30,000 scans": ("scans.jpg", "rs:fit:300:300", ""),
    "600x600 logo to 8192 AVIF": ("logo.png", "rs:fit:8192:8192:1", "image/avif,*/*"),
    "8x8 to 8192x8192": ("tiny.png", "rs:fit:8192:8192:1", ""),
    "past the deadline (blur 7071x7071)": ("big.jpg", "rs:fit:0:0/bl:50", ""),
}


def make_files(root: Path) -> None:
    import pyvips
    files = {
        "wide16.png": lambda: blank_png(49_000_000, 1, depth=16),
        "wide2.png": lambda: blank_png(24_000_000, 2),
        "embed.svg": lambda: svg_embedding(blank_png(20000, 20000, colour=False)),
        "text.svg": lambda: svg_with_text(1_000_000),
        "scans.jpg": lambda: jpeg_with_scans(7000, 30000),
        "logo.png": lambda: noise_png(600),
        "tiny.png": lambda: blank_png(8, 8),
        "corrupt30.png": lambda: corrupt(noise_png(3200)),
    }
    for name, make in files.items():
        (root / name).write_bytes(make())
    noise = pyvips.Image.gaussnoise(7071, 7071, sigma=40, mean=128).cast("uchar")
    noise.bandjoin([noise, noise]).copy(interpretation="srgb").jpegsave(str(root / "big.jpg"))


def get(port: int, path: str, accept: str = "", timeout: float = 60) -> tuple[int, float]:
    started = time.monotonic()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (TimeoutError, urllib.error.URLError, http.client.HTTPException):
        status = 0  # no answer in time
    return status, time.monotonic() - started


def busy(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return -1
    for line in text.splitlines():
        if line.startswith("vipsgate_workers_busy "):
            return float(line.split()[1])
    return -1


def peak_and_reset(pid: int, reset: bool = False) -> int:
    if reset:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def one_case(checkout: Path, root: Path, log: Path, name: str, patience: float) -> dict:
    file, options, accept = CASES[name]
    sign = signer()
    with server_for(checkout, root, log, 2, {"IMGPROXY_FREE_MEMORY_INTERVAL": "1"}) as server:
        assert server.proc is not None
        pid = server.proc.pid
        get(server.port, sign("/rs:fit:10:10/plain/local:///tiny.png"))  # warm up
        before = rss_bytes(pid)
        peak_and_reset(pid, reset=True)
        status, seconds = get(server.port, sign(f"/{options}/plain/local:///{file}"), accept,
                              patience)
        answered = time.monotonic()
        while busy(server.port) > 0 and time.monotonic() - answered < patience:
            time.sleep(0.05)
        held = time.monotonic() - answered
        growth = peak_and_reset(pid) - before
    return {"case": name, "status": status or f"none in {patience:g} s",
            "seconds": round(seconds, 2), "peak_growth_mib": growth // MIB,
            "worker_busy_after_s": round(held, 2)}


def failures(checkout: Path, root: Path, log: Path) -> dict:
    sign = signer()
    result: dict[str, object] = {}
    with server_for(checkout, root, log, 2, {"VIPSGATE_SOURCE_CACHE_BYTES": "0",
                                             "IMGPROXY_FREE_MEMORY_INTERVAL": "10"}) as server:
        assert server.proc is not None
        pid, port = server.proc.pid, server.port
        idle = rss_bytes(pid)

        def corrupt_request(n: int) -> int:
            return get(port, sign(f"/rs:fit:100:100/cb:{n}/plain/local:///corrupt30.png"))[0]

        statuses = [corrupt_request(n) for n in range(40)]
        after = rss_bytes(pid)
        time.sleep(12)  # a measurement interval, not synchronisation
        result["sequential"] = {"statuses": sorted(set(statuses)), "idle_mib": idle // MIB,
                                "after_mib": after // MIB,
                                "after_12s_mib": rss_bytes(pid) // MIB}
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            statuses = list(pool.map(corrupt_request, range(100, 140)))
        after = rss_bytes(pid)
        time.sleep(12)
        result["concurrent"] = {"statuses": sorted(set(statuses)), "after_mib": after // MIB,
                                "after_12s_mib": rss_bytes(pid) // MIB}
        # 20 clients hang up 150 ms into a slow image
        cpu = cpu_seconds(pid)
        for n in range(20):
            get(port, sign(SLOW.replace("/plain", f"/cb:h{n}/plain")), timeout=0.15)
        started = time.monotonic()
        while busy(port) > 0 and time.monotonic() - started < 120:
            time.sleep(0.05)
        result["hang_ups"] = {"server_cpu_s": round(cpu_seconds(pid) - cpu, 1),
                              "next_request": "hit" if get(
                                  port, sign(SLOW.replace("/plain", "/cb:h0/plain")),
                                  timeout=60)[1] < 0.2 else "miss"}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="another checkout to run first")
    parser.add_argument("--only", type=lambda v: v.split(","), help="case names (prefixes)")
    parser.add_argument("--patience", type=float, default=60.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    checkouts = ([("before", args.before)] if args.before else []) + [("after", here)]
    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        root = Path(tmp)
        make_files(root)
        for label, checkout in checkouts:
            rows = []
            for name in CASES:
                if args.only and not any(name.startswith(p) for p in args.only):
                    continue
                row = one_case(checkout, root, root / f"{label}.log", name, args.patience)
                rows.append(row)
                print(label, json.dumps(row), flush=True)
            report[label] = {"cases": rows}
            if not args.only:
                report[label]["failures"] = failures(checkout, root, root / f"{label}.log")
                print(label, json.dumps(report[label]["failures"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
