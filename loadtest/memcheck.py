"""Does RSS come back down after a burst? (``make memcheck``)

Starts ``vipsgate serve`` as a subprocess, measures its idle RSS, sends a burst
of large images (issue 3's W3: 12 MP JPEG -> fill 800x600, each request a new
cache-buster so every one is decoded), samples the peak, then reports RSS
every few seconds for ``--settle`` seconds after the burst and whether it is
back under 1.5x idle. ``--compare`` repeats the run with the periodic
``malloc_trim`` off (IMGPROXY_FREE_MEMORY_INTERVAL=0) to show its effect.
Traffic goes to 127.0.0.1 only. Not a unit test: figures depend on the machine.

    .venv/bin/python loadtest/memcheck.py [--connections 32] [--burst 20] [--settle 30]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (
    RssSampler,
    http_load,
    prepare_libvips,
    rss_bytes,
    signer,
    vipsgate_server,
    write_sources,
)

from vipsgate.config import available_cpus

MiB = 1024 * 1024


def run(root: Path, args: argparse.Namespace, free_interval: float) -> dict[str, object]:
    env = {"IMGPROXY_FREE_MEMORY_INTERVAL": str(free_interval),
           "VIPSGATE_RESULT_CACHE_BYTES": str(args.result_cache), "VIPSGATE_LOG_LEVEL": "warning"}
    sign = signer()
    counter = itertools.count()
    paths = (sign(f"/rs:fill:800:600/q:80/cb:{next(counter)}/plain/local:///photo_12mp.jpg@jpg")
             for _ in itertools.count())
    with vipsgate_server(root, root / f"server-{free_interval}.log", args.workers,
                         extra_env=env) as server:
        assert server.proc is not None
        pid = server.proc.pid
        cold = rss_bytes(pid)
        warm = http_load(server.port, paths, 1, duration=2, warmup=0)  # codecs loaded once
        time.sleep(max(2.0, free_interval + 1))  # let an idle trim pass, as in production
        idle = rss_bytes(pid)
        with RssSampler(pid) as sampler:
            stats = http_load(server.port, paths, args.connections, duration=args.burst,
                              warmup=0)
        after: list[tuple[int, int]] = []
        started = time.monotonic()
        for second in range(0, args.settle + 1, 5):
            time.sleep(max(0.0, started + second - time.monotonic()))
            after.append((second, rss_bytes(pid)))
    final = after[-1][1]
    return {
        "free_memory_interval_s": free_interval, "workers": args.workers or 2 * available_cpus(),
        "connections": args.connections, "burst_s": args.burst,
        "requests": stats.count, "errors": stats.errors, "warmup_requests": warm.count,
        "rss_cold_mib": round(cold / MiB, 1), "rss_idle_mib": round(idle / MiB, 1),
        "rss_peak_mib": round(sampler.peak / MiB, 1),
        "rss_after_mib": {s: round(v / MiB, 1) for s, v in after},
        "rss_final_mib": round(final / MiB, 1), "final_over_idle": round(final / idle, 2),
        "under_1_5x_idle": final < 1.5 * idle,
    }


def report(result: dict[str, object]) -> None:
    after = "  ".join(f"+{s}s {v}" for s, v in result["rss_after_mib"].items())  # type: ignore[union-attr]
    print(f"\nIMGPROXY_FREE_MEMORY_INTERVAL={result['free_memory_interval_s']}  "
          f"workers={result['workers']}  connections={result['connections']}  "
          f"burst={result['burst_s']}s: {result['requests']} requests, "
          f"{result['errors']} errors")
    print(f"  RSS cold {result['rss_cold_mib']} MiB, idle (after warm-up) "
          f"{result['rss_idle_mib']} MiB, peak {result['rss_peak_mib']} MiB")
    print(f"  after the burst (MiB): {after}")
    verdict = "yes" if result["under_1_5x_idle"] else "NO"
    print(f"  {result['rss_final_mib']} MiB = {result['final_over_idle']}x idle; "
          f"under 1.5x idle: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--burst", type=int, default=20, help="seconds of load")
    parser.add_argument("--settle", type=int, default=30, help="seconds watched afterwards")
    parser.add_argument("--workers", type=int, default=0,
                        help="IMGPROXY_WORKERS (0 = the server's default, 2 x CPUs)")
    parser.add_argument("--free-interval", type=float, default=10.0,
                        help="IMGPROXY_FREE_MEMORY_INTERVAL for the main run")
    parser.add_argument("--result-cache", default="0",
                        help="VIPSGATE_RESULT_CACHE_BYTES (off by default: only the allocator "
                             "is measured, not the cache filling up)")
    parser.add_argument("--compare", action="store_true",
                        help="also run with the periodic trim off")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    prepare_libvips()
    results = []
    with tempfile.TemporaryDirectory(prefix="vipsgate-memcheck-") as tmp:
        root = Path(tmp)
        write_sources(root)
        for interval in [args.free_interval] + ([0.0] if args.compare else []):
            results.append(run(root, args, interval))
            report(results[-1])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if results[0]["under_1_5x_idle"] else 1


if __name__ == "__main__":
    sys.exit(main())
