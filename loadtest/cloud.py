"""Sources in the cloud object stores, against their emulators, measured in one run:

    python loadtest/cloud.py --json loadtest/results/cloud.json

1. **Cold fetch + render per store**: W1 (a 391 KB 1080p JPEG) and W3 (a 2.2 MB 12 MP
   JPEG) from ``local:///``, ``s3://`` (moto's server), ``gs://`` (gcp-storage-emulator)
   and ``abs://`` (Azurite). The in-process caches are off and ``--objects`` copies of
   each source are cycled, so every request downloads its source and renders it (no
   cache, no shared download). Latency with one connection, req/s with
   ``--connections``, CPU ms per request of the server alone.
2. **abs:// range size**: W3 with ``VIPSGATE_ABS_CHUNK_SIZE`` 256 KiB, 1 MiB (the
   default) and 4 MiB, i.e. 9, 3 and 1 requests per source.

The emulators run on the same CPUs as the server and the load client, so these
figures compare vipsgate's client paths with each other on equal terms; they are not
the latency of the real services. Traffic goes to 127.0.0.1 only; every loop is
bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest import emulators
from loadtest.bench import WORKLOADS, Workload, describe, fmt, machine
from loadtest.common import http_load, prepare_libvips, signer, vipsgate_server, write_sources

prepare_libvips()
BUCKET = "bench"
CHUNKS = (256 * 1024, 1024**2, 4 * 1024**2)


def paths(w: Workload, scheme: str, objects: int) -> Iterator[str]:
    """Signed paths of ``w`` on ``scheme``, each request a fresh cachebuster and the next
    of ``objects`` copies of the source."""
    sign = signer()
    for n in itertools.count():
        source = (f"local:///copies/{n % objects}-{w.source}" if scheme == "local"
                  else f"{scheme}://{BUCKET}/{n % objects}-{w.source}")
        yield sign(w.path(n).replace(f"local:///{w.source}", source))


def measure(root: Path, log: Path, w: Workload, scheme: str, env: dict[str, str],
            args: argparse.Namespace) -> dict[str, dict[str, float]]:
    env = {"VIPSGATE_SOURCE_CACHE_BYTES": "0", "VIPSGATE_RESULT_CACHE_BYTES": "0",
           "VIPSGATE_LOG_LEVEL": "warning", **env}
    with vipsgate_server(root, log, args.workers, 1, env) as server:
        assert server.proc is not None
        pid = server.proc.pid
        one = http_load(server.port, paths(w, scheme, args.objects), 1, args.latency_duration,
                        args.warmup, None, pid)
        many = http_load(server.port, paths(w, scheme, args.objects), args.connections,
                         args.duration, args.warmup, None, pid)
    for stats in (one, many):
        if stats.errors:
            raise SystemExit(f"{scheme} {w.name}: {stats.errors} non-200 answers "
                             f"{stats.statuses}; see {log}")
    return {"latency": describe(one), "throughput": describe(many)}


def line(m: dict[str, dict[str, float]]) -> str:
    lat = m["latency"]
    return f"1 conn p50 {lat['p50_ms']:6.1f} ms | {fmt(m['throughput'])}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="s3,gs,abs",
                        type=lambda v: [s for s in v.split(",") if s])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of req/s load")
    parser.add_argument("--latency-duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--objects", type=int, default=32, help="copies of each source")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the servers on the way out
    tmp = Path(tempfile.mkdtemp(prefix="vipsgate-cloud-"))
    root = tmp / "images"
    (root / "copies").mkdir(parents=True)
    sources = write_sources(root)
    chosen = [w for w in WORKLOADS if w.name in ("W1", "W3")]
    report: dict = {"machine": machine(), "settings": vars(args).copy(), "stores": {},
                    "abs_chunks": {}}
    print(f"vipsgate cloud sources bench: {', '.join(['local', *args.stores])}", flush=True)
    with contextlib.ExitStack() as stack:
        stores = {scheme: emulators.STARTERS[scheme](stack) for scheme in args.stores}
        for w in chosen:
            for n in range(args.objects):
                (root / "copies" / f"{n}-{w.source}").write_bytes(sources[w.source])
                for store in stores.values():
                    store.put(BUCKET, f"{n}-{w.source}", sources[w.source])
        for w in chosen:
            entry = report["stores"][w.name] = {"title": w.title,
                                                 "source_bytes": len(sources[w.source])}
            for scheme in ["local", *stores]:
                env = stores[scheme].env() if scheme in stores else {}
                entry[scheme] = measure(root, tmp / f"{scheme}-{w.name}.log", w, scheme, env,
                                        args)
                print(f"  {w.name} {scheme:5s} {line(entry[scheme])}", flush=True)
        if "abs" in stores:
            w3 = next(w for w in chosen if w.name == "W3")
            for chunk in CHUNKS:
                env = {**stores["abs"].env(), "VIPSGATE_ABS_CHUNK_SIZE": str(chunk)}
                m = measure(root, tmp / f"abs-{chunk}.log", w3, "abs", env, args)
                m["requests_per_source"] = math.ceil(len(sources[w3.source]) / chunk)
                report["abs_chunks"][str(chunk)] = m
                print(f"  W3 abs {chunk // 1024:5d} KiB ranges "
                      f"({m['requests_per_source']} requests) {line(m)}", flush=True)
    print("\n" + summary(report))
    print("\ncommand: " + " ".join(["python", *sys.argv]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def summary(report: dict) -> str:
    lines = ["| workload | source | 1 connection p50 / p99 ms | req/s | vs local | "
             "CPU ms/req |", "|---|---|---|---|---|---|"]
    for name, entry in report["stores"].items():
        local = entry["local"]["throughput"]["rps"]
        for scheme in [k for k in entry if k not in ("title", "source_bytes")]:
            lat, thr = entry[scheme]["latency"], entry[scheme]["throughput"]
            lines.append(f"| {name} | {scheme} | {lat['p50_ms']:.1f} / {lat['p99_ms']:.1f} | "
                         f"{thr['rps']:.1f} | **{thr['rps'] / local:.2f}** | "
                         f"{thr['cpu_ms_per_op']:.2f} |")
    if report["abs_chunks"]:
        lines += ["", "| W3 from abs://, range size | requests per source | 1 connection p50 "
                  "ms | req/s | CPU ms/req |", "|---|---|---|---|---|"]
        for chunk, m in report["abs_chunks"].items():
            lines.append(f"| {int(chunk) // 1024} KiB | {m['requests_per_source']} | "
                         f"{m['latency']['p50_ms']:.1f} | {m['throughput']['rps']:.1f} | "
                         f"{m['throughput']['cpu_ms_per_op']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
