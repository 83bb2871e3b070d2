"""The shared result tier, measured in one run:

    python loadtest/tier.py --json loadtest/results/tier.json

1. **A tier hit against a cold render**, per adapter (fs: a temp dir; s3: moto's server
   in this process; redis: a ``redis-server`` on a free port; gcs and abs, with
   ``--adapters``: gcp-storage-emulator and Azurite, see emulators.py), for W1 and W3. A writer
   server renders ``--urls`` distinct URLs of each workload into the tier; a reader
   server with its in-process result cache off (``VIPSGATE_RESULT_CACHE_BYTES=0``) then
   answers every request from the tier. Cold: a server without a tier, a fresh URL per
   request. Latency with one connection, req/s with ``--connections``.
2. **N pods sharing a tier** (N in ``--pods``): N servers (one process, one worker
   each), every one of ``--unique`` URLs requested by every pod, each pod walking the
   URLs in its own shuffled order (``shuffled``) or all in the same order at once
   (``same``: the worst case, no cross-pod coalescing). Counted from the pods'
   /metrics: renders, source reads, tier hits; without a tier renders are N x unique.

Traffic goes to 127.0.0.1 only; every loop is bounded in count or time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest import emulators
from loadtest.bench import MODERN_ACCEPT, WORKLOADS, Workload, describe, fmt, machine
from loadtest.common import (
    Server,
    free_port,
    http_load,
    prepare_libvips,
    signer,
    vipsgate_server,
    write_sources,
)

prepare_libvips()
ADAPTERS = ("fs", "s3", "redis", "gcs", "abs")
DEFAULT_ADAPTERS = ("fs", "s3", "redis")
ACCEPT = {"Accept": MODERN_ACCEPT}


# --- the tiers -----------------------------------------------------------------------

class Tiers(contextlib.ExitStack):
    """Every adapter's backing store, started once for the run."""

    def __init__(self, tmp: Path, adapters: list[str]) -> None:
        super().__init__()
        self.tmp, self.adapters = tmp, adapters
        self.s3_endpoint = self.redis_url = ""

    def __enter__(self) -> Tiers:
        super().__enter__()
        if "s3" in self.adapters:
            moto = emulators.moto(self)  # moto's server in a process of its own
            moto.create("tier")
            self.s3_endpoint = moto.endpoint
        if "redis" in self.adapters:
            self.redis_url = self._redis()
        self.clouds = {a: emulators.STARTERS[s](self) for a, s in (("gcs", "gs"), ("abs", "abs"))
                       if a in self.adapters}
        for store in self.clouds.values():
            store.create("tier")
        return self

    def _redis(self) -> str:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        if not binary:
            raise SystemExit("redis-server not found: apt-get install redis-server, "
                             "or --adapters fs,s3")
        port = free_port()
        emulators.spawn(self, [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                     "--appendonly", "no", "--dir", str(self.tmp), "--maxmemory", "512mb",
                     "--maxmemory-policy", "allkeys-lru"])
        import redis
        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        emulators.until_ready(lambda: client.ping(), "redis-server")
        return f"redis://127.0.0.1:{port}/0"

    def env(self, adapter: str, prefix: str) -> dict[str, str]:
        common = {"IMGPROXY_CACHE_USE": adapter, "IMGPROXY_CACHE_PATH_PREFIX": prefix}
        if adapter == "fs":
            return {**common, "IMGPROXY_CACHE_FS_ROOT": str(self.tmp / "tier")}
        if adapter == "s3":
            return {**common, "IMGPROXY_CACHE_BUCKET": "tier", "IMGPROXY_CACHE_S3_REGION":
                    "us-east-1", "IMGPROXY_CACHE_S3_ENDPOINT": self.s3_endpoint}
        if adapter == "gcs":
            return {**common, "IMGPROXY_CACHE_BUCKET": "tier", "VIPSGATE_CACHE_GCS_NO_AUTH": "1",
                    "IMGPROXY_CACHE_GCS_ENDPOINT": self.clouds["gcs"].endpoint}
        if adapter == "abs":
            return {**common, "IMGPROXY_CACHE_BUCKET": "tier", "IMGPROXY_CACHE_ABS_NAME":
                    emulators.AZURITE_NAME, "IMGPROXY_CACHE_ABS_KEY": emulators.AZURITE_KEY,
                    "IMGPROXY_CACHE_ABS_ENDPOINT": self.clouds["abs"].endpoint}
        return {**common, "VIPSGATE_CACHE_REDIS_URL": self.redis_url}


# --- helpers ---------------------------------------------------------------------------

def metric(port: int, name: str, **labels: str) -> float:
    """The sum of a server's samples named ``name`` with these labels."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


async def _fetch_all(port: int, paths: list[str], concurrency: int) -> dict[int, int]:
    """GET every path once with ``concurrency`` requests in flight; status counts."""
    import aiohttp
    statuses: dict[int, int] = {}
    todo = iter(paths)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=ACCEPT) as session:
        async def client() -> None:
            for path in todo:
                async with session.get(path) as answer:
                    await answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1
        await asyncio.gather(*(client() for _ in range(concurrency)))
    return statuses


def wait_for_writes(port: int, adapter: str, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while metric(port, "vipsgate_tier_writes_total", tier=adapter, outcome="stored") < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {adapter} tier stored fewer than {count} results")
        time.sleep(0.1)  # polling another process's counter


def server(tmp: Path, root: Path, name: str, workers: int, env: dict[str, str]) -> Server:
    return vipsgate_server(root, tmp / f"{name}.log", workers, 1,
                           {"VIPSGATE_LOG_LEVEL": "warning", **env})


def measure(port: int, paths: Iterator[str], args: argparse.Namespace, pid: int
            ) -> dict[str, dict[str, float]]:
    """Latency with one connection, then req/s with ``--connections``."""
    one = http_load(port, paths, 1, args.latency_duration, args.warmup, ACCEPT, pid)
    many = http_load(port, paths, args.connections, args.duration, args.warmup, ACCEPT, pid)
    for stats in (one, many):
        if stats.errors:
            print(f"    ! {stats.errors} non-200 answers: {stats.statuses}", file=sys.stderr)
    return {"latency": describe(one), "throughput": describe(many)}


# --- 1. a tier hit against a cold render ------------------------------------------------

def hits_vs_cold(args: argparse.Namespace, tmp: Path, root: Path, tiers: Tiers) -> dict:
    sign = signer()
    chosen = [w for w in WORKLOADS if w.name in ("W1", "W3")]
    report: dict = {}
    with server(tmp, root, "cold", args.workers, {}) as cold:
        assert cold.proc is not None
        for w in chosen:
            fresh = iter(sign(w.path(n)) for n in itertools.count(10**6))
            report[w.name] = {"title": w.title, "cold": measure(cold.port, fresh, args,
                                                                 cold.proc.pid)}
            print(f"  {w.name} cold      {_line(report[w.name]['cold'])}", flush=True)
    for adapter in args.adapters:
        env = tiers.env(adapter, f"hits-{time.time_ns()}")
        paths = {w.name: [sign(w.path(n)) for n in range(args.urls)] for w in chosen}
        with server(tmp, root, f"{adapter}-writer", args.workers, env) as writer:
            everything = [p for w in chosen for p in paths[w.name]]
            statuses = asyncio.run(_fetch_all(writer.port, everything, args.workers * 2))
            assert statuses == {200: len(everything)}, statuses
            wait_for_writes(writer.port, adapter, len(everything))
        with server(tmp, root, f"{adapter}-reader", args.workers,
                    {**env, "VIPSGATE_RESULT_CACHE_BYTES": "0"}) as reader:
            assert reader.proc is not None
            for w in chosen:
                hit = measure(reader.port, itertools.cycle(paths[w.name]), args,
                              reader.proc.pid)
                report[w.name][adapter] = hit
                print(f"  {w.name} {adapter:5s} hit {_line(hit)}", flush=True)
            rendered = metric(reader.port, "vipsgate_stage_duration_seconds_count",
                              stage="process")
            assert rendered == 0, f"the {adapter} reader rendered {rendered} images"
    return report


def _line(m: dict[str, dict[str, float]]) -> str:
    lat = m["latency"]
    return (f"1 conn p50 {lat['p50_ms']:6.2f} ms p99 {lat['p99_ms']:6.2f} ms | "
            f"{fmt(m['throughput'])}")


# --- 2. N pods sharing a tier ------------------------------------------------------------

def pods_share(args: argparse.Namespace, tmp: Path, root: Path, tiers: Tiers) -> list[dict]:
    sign = signer()
    w1: Workload = WORKLOADS[0]
    rows = []
    for n in args.pods:
        for adapter in ["none", *args.adapters]:
            env = tiers.env(adapter, f"pods-{n}-{time.time_ns()}") if adapter != "none" else {}
            with contextlib.ExitStack() as stack:
                pods = []
                for i in range(n):
                    pods.append(stack.enter_context(server(tmp, root, f"pod-{n}-{adapter}-{i}",
                                                           1, env)))
                for order in (("shuffled",) if adapter == "none" else ("shuffled", "same")):
                    urls = [sign(path) for path in _sources(root, w1, args.unique)]
                    rows.append(_share(pods, urls, order, adapter, n, args))
                    r = rows[-1]
                    print(f"  N={n} {adapter:5s} {order:8s} renders {r['renders']:4d} / "
                          f"{r['unique']} unique ({r['renders_per_unique']:.2f}x), source reads "
                          f"{r['source_reads']:4d}, tier hits {r['tier_hits']:4d}, "
                          f"{r['seconds']:.1f} s", flush=True)
    return rows


def _sources(root: Path, w: Workload, count: int) -> list[str]:
    """``count`` paths of ``w``, each on a source of its own (links to the same file, so
    every URL costs one origin read): a fresh set for every run."""
    run = f"run-{time.time_ns()}"
    (root / run).mkdir()
    for u in range(count):
        os.link(root / w.source, root / run / f"{u}.jpg")
    return [w.path().replace(f"local:///{w.source}", f"local:///{run}/{u}.jpg")
            for u in range(count)]


def _share(pods: list[Server], urls: list[str], order: str, adapter: str, n: int,
           args: argparse.Namespace) -> dict:
    def counters() -> tuple[float, float, float]:
        return (sum(metric(p.port, "vipsgate_stage_duration_seconds_count", stage="process")
                    for p in pods),
                sum(metric(p.port, "vipsgate_cache_requests_total", cache="source",
                           outcome="miss") for p in pods),
                sum(metric(p.port, "vipsgate_tier_lookups_total", outcome="hit")
                    for p in pods))

    before = counters()
    orders = [random.Random(i).sample(urls, len(urls)) if order == "shuffled" else urls
              for i in range(len(pods))]

    async def everyone() -> list[dict[int, int]]:
        return await asyncio.gather(*(_fetch_all(p.port, o, args.pod_concurrency)
                                      for p, o in zip(pods, orders, strict=True)))

    started = time.perf_counter()
    statuses = asyncio.run(everyone())
    seconds = time.perf_counter() - started
    assert all(s == {200: len(urls)} for s in statuses), statuses
    renders, reads, hits = (int(a - b) for a, b in zip(counters(), before, strict=True))
    return {"pods": n, "tier": adapter, "order": order, "unique": len(urls),
            "requests": n * len(urls), "renders": renders, "source_reads": reads,
            "tier_hits": hits, "renders_per_unique": round(renders / len(urls), 3),
            "seconds": round(seconds, 2)}


# --- report ------------------------------------------------------------------------------

def summary(report: dict) -> str:
    lines = ["| workload | served by | 1 connection p50 / p99 ms | req/s | vs cold | "
             "CPU ms/req |", "|---|---|---|---|---|---|"]
    for name, entry in report["hits"].items():
        cold_rps = entry["cold"]["throughput"]["rps"]
        for source in ["cold", *[a for a in ADAPTERS if a in entry]]:
            m = entry[source]
            lat, thr = m["latency"], m["throughput"]
            label = "cold render (no tier)" if source == "cold" else f"{source} tier hit"
            lines.append(f"| {name} | {label} | {lat['p50_ms']:.2f} / {lat['p99_ms']:.2f} | "
                         f"{thr['rps']:.0f} | **{thr['rps'] / cold_rps:.1f}x** | "
                         f"{thr['cpu_ms_per_op']:.2f} |")
    lines += ["", "| pods | tier | order | unique URLs | requests | renders | renders / unique "
              "| source reads | tier hits |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["pods"]:
        lines.append(f"| {r['pods']} | {r['tier']} | {r['order']} | {r['unique']} | "
                     f"{r['requests']} | {r['renders']} | **{r['renders_per_unique']:.2f}** | "
                     f"{r['source_reads']} | {r['tier_hits']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", default=",".join(DEFAULT_ADAPTERS),
                        type=lambda v: [a for a in v.split(",") if a])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of req/s load")
    parser.add_argument("--latency-duration", type=float, default=3.0,
                        help="seconds of one-connection load")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="IMGPROXY_WORKERS (part 1)")
    parser.add_argument("--urls", type=int, default=64, help="URLs per workload in the tier")
    parser.add_argument("--pods", default="2,4", type=lambda v: [int(n) for n in v.split(",")])
    parser.add_argument("--unique", type=int, default=100, help="URLs every pod requests")
    parser.add_argument("--pod-concurrency", type=int, default=1,
                        help="requests in flight per pod (part 2)")
    parser.add_argument("--skip-hits", action="store_true", help="only part 2")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the servers on the way out
    tmp = Path(tempfile.mkdtemp(prefix="vipsgate-tier-"))
    root = tmp / "images"
    root.mkdir()
    write_sources(root)
    report: dict = {"machine": machine(), "settings": vars(args).copy(), "hits": {}}
    print(f"vipsgate tier bench: adapters {', '.join(args.adapters)}", flush=True)
    with Tiers(tmp, args.adapters) as tiers:
        if not args.skip_hits:
            report["hits"] = hits_vs_cold(args, tmp, root, tiers)
        report["pods"] = pods_share(args, tmp, root, tiers)
    print("\n" + summary(report))
    print("\ncommand: " + " ".join(["python", *sys.argv]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
