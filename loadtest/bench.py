"""Throughput of the vipsgate server against its peers, or against the in-process limit.

    make bench                   # --peers thumbor,ipx: issue 23's ratios (loadtest/versus.py)
    make bench PEERS= ARGS="--json loadtest/results/bench.json --chart docs/bench.png"

Without ``--peers`` (``make bench PEERS=``):

For each workload the server (``python -m proxy serve`` in a subprocess, local:///
sources in a temp dir) gets a fixed number of keep-alive connections for a fixed
time; then the same operations run in-process in a thread pool of the same size,
without HTTP: vipsgate's ``proxy.processing.process``, plain
``pyvips.Image.thumbnail_buffer`` and Pillow's draft()+thumbnail (the yardstick).
W5 (cache hits) is compared with a bare aiohttp handler returning the same bytes.

``--peers thumbor,ipx`` instead compares the server with thumbor 7.8 and ipx 3 on cold
W1-W4, the realistic mixes (loadtest/mix.py) and W5, side by side in one run, and prints
issue 23's targets next to the ratios (loadtest/versus.py). ``--vs-thumbor`` is
``--peers thumbor``.

Either way, ``FLOOR`` (in the default ``--only``) ends the run with W1's ``process()``
CPU per image against the floor measured in the same rounds (loadtest/floor.py).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest import floor
from loadtest.common import (
    RssSampler,
    Server,
    Stats,
    http_load,
    prepare_libvips,
    signer,
    thread_load,
    vipsgate_server,
    write_sources,
)
from loadtest.mix import Mix
from vipsgate.config import Settings

prepare_libvips()
MODERN_ACCEPT = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    source: str
    options: str  # imgproxy options, without cb/format
    fmt: str  # output format (URL extension)
    width: int
    height: int
    crop: bool  # fill (crop to the box) instead of fit

    def path(self, n: int | None = None) -> str:
        cb = f"/cb:{n}" if n is not None else ""
        return f"/{self.options}/q:80{cb}/plain/local:///{self.source}@{self.fmt}"


WORKLOADS = [
    Workload("W1", "1080p JPEG -> fit 300x200 JPEG", "photo_1080.jpg", "rs:fit:300:200", "jpg",
             300, 200, False),
    Workload("W2", "1080p JPEG -> fit 300x200 WebP", "photo_1080.jpg", "rs:fit:300:200", "webp",
             300, 200, False),
    Workload("W3", "12 MP JPEG -> fill 800x600 JPEG", "photo_12mp.jpg", "rs:fill:800:600", "jpg",
             800, 600, True),
    Workload("W4", "1200x800 PNG+alpha -> fit 300x300 WebP", "alpha.png", "rs:fit:300:300",
             "webp", 300, 300, False),
]


# --- in-process operations ------------------------------------------------------------

def vipsgate_op(w: Workload, data: bytes) -> Callable[[], object]:
    """The project's own pipeline, exactly as the server calls it."""
    return path_op(w.path(), data)


def path_op(path: str, data: bytes, accept: str = MODERN_ACCEPT) -> Callable[[], object]:
    """``process()`` of ``data`` for the URL path ``path`` and the request's ``Accept``
    (a modern browser's), exactly as the server calls it."""
    from vipsgate.config import Settings
    from vipsgate.negotiate import negotiate
    from vipsgate.paths import parse_path
    from vipsgate.processing import process
    from vipsgate.processing.vips import init
    from vipsgate.resolve import resolve
    init()
    parsed = parse_path(path)
    policy = negotiate(parsed.options.format, accept, auto_webp=True, auto_avif=True,
                       enforce_webp=False, enforce_avif=False)
    effective = resolve(parsed.options, Settings())
    return lambda: process(data, effective, policy)


def thumbnail_op(w: Workload, data: bytes) -> Callable[[], object]:
    """Plain ``thumbnail_buffer`` + the encoder call the pipeline makes."""
    import pyvips
    kwargs = {"height": w.height, "crop": "centre"} if w.crop else {"height": w.height}

    def run() -> bytes:
        image = pyvips.Image.thumbnail_buffer(data, w.width, **kwargs)
        if w.fmt == "jpg":
            return image.jpegsave_buffer(Q=80, keep="none", optimize_coding=True)
        return image.webpsave_buffer(Q=80, effort=4, keep="none")
    return run


def pillow_op(w: Workload, data: bytes) -> Callable[[], object]:
    """Pillow: draft() (JPEG shrink-on-load) + thumbnail/fit, default encoder settings."""
    from PIL import Image, ImageOps

    def run() -> bytes:
        im = Image.open(BytesIO(data))
        im.draft("RGB", (w.width, w.height))
        if w.crop:
            im = ImageOps.fit(im, (w.width, w.height), Image.Resampling.BICUBIC)
        else:
            im.thumbnail((w.width, w.height))
        out = BytesIO()
        im.save(out, "JPEG" if w.fmt == "jpg" else "WEBP", quality=80)
        return out.getvalue()
    return run


MAKERS = {"vipsgate_process": vipsgate_op, "thumbnail_buffer": thumbnail_op,
          "pillow": pillow_op}


# --- measurements -------------------------------------------------------------------

def _limit_child(label: str, name: str, source: Path, threads: int, duration: float,
                 warmup: float, switchinterval: float, out) -> None:  # type: ignore[no-untyped-def]
    """One process of a multi-process limit (spawned: a fresh libvips, no fork hazards)."""
    sys.setswitchinterval(switchinterval)
    w = next(w for w in WORKLOADS if w.name == name)
    op = MAKERS[label](w, source.read_bytes())
    op()
    stats = thread_load(op, threads, duration, warmup)
    out.put((stats.count, stats.latencies, stats.total, stats.cpu))


def limit_load(label: str, w: Workload, source: Path, args: argparse.Namespace) -> Stats:
    """The in-process limit with the server's shape: processes x workers threads."""
    if args.processes == 1:
        op = MAKERS[label](w, source.read_bytes())
        op()  # warm the code path once
        return thread_load(op, args.workers, args.duration, args.warmup)
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    children = [ctx.Process(target=_limit_child, args=(
        label, w.name, source, args.workers, args.duration, args.warmup + 1.0,
        sys.getswitchinterval(), out)) for _ in range(args.processes)]
    for child in children:
        child.start()
    parts = [out.get() for _ in children]
    for child in children:
        child.join()
    return Stats(sum(p[0] for p in parts), args.duration, [x for p in parts for x in p[1]],
                 total=sum(p[2] for p in parts), cpu=sum(p[3] for p in parts))


def describe(stats: Stats) -> dict[str, float]:
    return {"rps": round(stats.rate, 1), "p50_ms": round(stats.percentile(0.5) * 1000, 1),
            "p99_ms": round(stats.percentile(0.99) * 1000, 1), "errors": stats.errors,
            "cpu_ms_per_op": round(stats.cpu_per_op * 1000, 3)}


def cold_paths(w: Workload | Mix, count: int, start: int = 0) -> Iterator[str]:
    """``count`` distinct URLs (cachebusters start, start + 1, ...): no cache can answer."""
    sign = signer()
    return iter([sign(w.path(n)) for n in range(start, start + count)])


def measure_server(server: Server, paths: Iterator[str], args: argparse.Namespace,
                   close: bool = False) -> dict[str, float]:
    assert server.proc is not None
    with RssSampler(server.proc.pid) as rss:
        stats = http_load(server.port, paths, args.connections, args.duration, args.warmup,
                          {"Accept": MODERN_ACCEPT}, server.proc.pid, close)
    if stats.errors:
        print(f"    ! {stats.errors} non-200 answers: {stats.statuses}", file=sys.stderr)
    return {**describe(stats), "peak_rss_mb": round(rss.peak / 2**20, 1)}


def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="vipsgate-bench-"))
    root = tmp / "images"
    root.mkdir()
    write_sources(root)
    selected = [w for w in WORKLOADS if w.name in args.only]
    report: dict = {"machine": machine(), "settings": vars(args).copy(), "workloads": {}}
    env = dict(item.split("=", 1) for item in args.server_env)
    prelude = ""
    if args.switchinterval is not None:  # experiment: override cli.py's setswitchinterval
        prelude = (f"import sys; sys.setswitchinterval({args.switchinterval}); "
                   "sys.setswitchinterval = lambda value: None")
    print(f"vipsgate bench: {len(selected)} workloads, {args.duration:g}s each, "
          f"{args.connections} connections; server and in-process limits: "
          f"{args.processes} process(es) x {args.workers} worker thread(s)", flush=True)
    sys.setswitchinterval(args.switchinterval or 0.001)  # the server's value (cli.py)
    server = vipsgate_server(root, tmp / "server.log", args.workers, args.processes, env,
                             prelude)
    with server:  # each workload's figures are taken back to back: the noise is shared
        for w in selected:
            entry = report["workloads"].setdefault(w.name, {"title": w.title})
            paths = cold_paths(w, int(args.max_rps * (args.duration + args.warmup + 1)))
            entry["server"] = measure_server(server, paths, args)
            print(f"  {w.name} server           {fmt(entry['server'])}", flush=True)
            if args.server_only:
                continue
            for label in MAKERS:
                entry[label] = describe(limit_load(label, w, root / w.source, args))
                print(f"  {w.name} {label:17s}{fmt(entry[label])}", flush=True)
            entry["ratio"] = round(entry["server"]["rps"] / entry["vipsgate_process"]["rps"], 3)
            entry["ratio_vs_thumbnail"] = round(
                entry["server"]["rps"] / entry["thumbnail_buffer"]["rps"], 3)
        if "W5" in args.only:
            entry = report["workloads"].setdefault(
                "W5", {"title": "cache hit of W1 (same URL repeated)"})
            entry.update(cache_hits(server, tmp, args, bare=not args.server_only))
            if not args.server_only:
                entry["ratio"] = round(entry["server"]["rps"] / entry["bare_aiohttp"]["rps"], 3)
    return report


def cache_hits(server: Server, tmp: Path, args: argparse.Namespace, bare: bool = True) -> dict:
    """W5: W1's URL repeated on ``server``; then (``bare``) a bare aiohttp server that
    returns the same bytes, with the same process count: the ceiling."""
    path = signer()(WORKLOADS[0].path())
    body = fetch(server.port, path)
    result = {"server": measure_server(server, itertools.repeat(path), args)}
    print(f"  W5 server           {fmt(result['server'])}", flush=True)
    if bare:
        (tmp / "w5.jpg").write_bytes(body)
        ceiling = Server([sys.executable, str(Path(__file__).with_name("bare_server.py")),
                          str(tmp / "w5.jpg"), "--processes", str(args.processes)], {},
                         tmp / "bare.log", processes=args.processes)
        with ceiling:
            result["bare_aiohttp"] = measure_server(ceiling, itertools.repeat("/x"), args)
        print(f"  W5 bare aiohttp     {fmt(result['bare_aiohttp'])}", flush=True)
    return result


def fetch(port: int, path: str, timeout: float = 10.0) -> bytes:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
        return answer.read()


def fmt(d: dict) -> str:
    rss = f"  RSS {d['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in d else ""
    return (f"{d['rps']:8.1f}/s  p50 {d['p50_ms']:7.1f} ms  p99 {d['p99_ms']:7.1f} ms  "
            f"CPU {d['cpu_ms_per_op']:7.3f} ms/op{rss}")


def machine() -> dict:
    import PIL
    import pyvips
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "pyvips": pyvips.__version__,
            "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
            "pillow": PIL.__version__, "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M")}


def summary(report: dict) -> str:
    """A Markdown table: one line per workload, server against its limit."""
    lines = ["| workload | server req/s | limit req/s | ratio | thumbnail_buffer/s | Pillow/s "
             "| server p50 / p99 ms | CPU ms/req server / limit | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, e in report["workloads"].items():
        s = e["server"]
        if name == "W5":
            limit, others = e["bare_aiohttp"], "| – | – "
            label = "W5 cache hit (limit: bare aiohttp)"
        else:
            limit = e["vipsgate_process"]
            others = f"| {e['thumbnail_buffer']['rps']:.1f} | {e['pillow']['rps']:.1f} "
            label = f"{name} cold (limit: `process()`)"
        lines.append(f"| {label} | {s['rps']:.1f} | {limit['rps']:.1f} | **{e['ratio']:.2f}** "
                     f"{others}| {s['p50_ms']:.1f} / {s['p99_ms']:.1f} "
                     f"| {s['cpu_ms_per_op']:.3f} / {limit['cpu_ms_per_op']:.3f} "
                     f"| {s['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def chart(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cold = [n for n in report["workloads"] if n != "W5"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [4, 1.3]})
    series = [("server", "vipsgate server (HTTP)"),
              ("vipsgate_process", "process() in-process"),
              ("thumbnail_buffer", "thumbnail_buffer in-process"), ("pillow", "Pillow in-process")]
    width = 0.2
    for i, (key, label) in enumerate(series):
        values = [report["workloads"][n][key]["rps"] for n in cold]
        axes[0].bar([x + (i - 1.5) * width for x in range(len(cold))], values, width,
                    label=label)
    axes[0].set_xticks(range(len(cold)), [f"{n}\n{report['workloads'][n]['title']}"
                                          .replace(" -> ", "\n-> ") for n in cold], fontsize=7)
    axes[0].set_ylabel("images / s")
    axes[0].legend(fontsize=7)
    axes[0].set_title("Cold (unique URLs)", fontsize=9)
    if "W5" in report["workloads"]:
        e = report["workloads"]["W5"]
        axes[1].bar(["vipsgate\ncache hit", "bare\naiohttp"],
                    [e["server"]["rps"], e["bare_aiohttp"]["rps"]], color=["C0", "C4"])
        axes[1].set_title("W5: cache hits", fontsize=9)
        axes[1].set_ylabel("requests / s")
    s = report["settings"]
    m = report["machine"]
    fig.suptitle(f"{m['cpus']} CPUs, {s['processes']} process x {s['workers']} workers, "
                 f"{s['connections']} connections, libvips {m['libvips']}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--mix-duration", type=float, default=12.0,
                        help="seconds per measurement of a mix (--peers)")
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before measuring")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int,
                        help="IMGPROXY_WORKERS per process (default: the server's, "
                             "2 x CPUs / processes)")
    parser.add_argument("--processes", type=int,
                        help="server processes (default: the server's, VIPSGATE_PROCESSES)")
    parser.add_argument("--only", type=lambda v: v.split(","),
                        help="workloads (default: W1,W2,W3,W4,W5,FLOOR; with --peers "
                             "also MIX,MIX-NOAVIF)")
    parser.add_argument("--max-rps", type=int, default=1500,
                        help="unique URLs prepared per second of a cold run")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the server (repeatable)")
    parser.add_argument("--switchinterval", type=float,
                        help="experiment: the server's sys.setswitchinterval")
    parser.add_argument("--server-only", action="store_true",
                        help="tuning: measure only the server (no limits, no table)")
    parser.add_argument("--peers", default="", type=lambda v: [p for p in v.split(",") if p],
                        help="compare with these instead of the in-process limits: thumbor "
                             "(7.8, installed once into loadtest/.peers/), ipx (3, installed "
                             "by `make bench` with npm); one that cannot run is skipped")
    parser.add_argument("--vs-thumbor", action="store_true", help="the same as --peers thumbor")
    parser.add_argument("--peer-processes", type=int, default=2, help="thumbor processes")
    parser.add_argument("--peer-keepalive-check", action="store_true",
                        help="also measure thumbor with keep-alive on W1 (the balancing issue)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--chart", type=Path, help="write a PNG chart here")
    parser.add_argument("--growth", action="store_true",
                        help="instead: 1-48 MP JPEG sources, CPU and peak memory per image "
                             "against the peers (loadtest/growth.py; --only G1,G12,G24,G48)")
    from loadtest.growth import GROWTH_SOURCES, add_arguments, report_growth
    add_arguments(parser)
    args = parser.parse_args()
    defaults = Settings()  # the server's own defaults, unless told otherwise
    args.processes = args.processes or defaults.process_count
    args.workers = args.workers or replace(defaults, processes=args.processes).worker_count
    if args.vs_thumbor:
        args.peers = args.peers or ["thumbor"]
    if args.growth:
        args.only = args.only or list(GROWTH_SOURCES)
        return report_growth(args)
    if args.only is None:
        args.only = ["W1", "W2", "W3", "W4", *(["MIX", "MIX-NOAVIF"] if args.peers else []),
                     "W5", "FLOOR"]
    if args.only == ["FLOOR"]:  # the floor alone: no server, no table
        report: dict = {"machine": machine(), "workloads": {}}
    elif args.peers:
        from loadtest.versus import run_vs_peers, vs_chart, vs_summary
        report = run_vs_peers(args)
        print("\n" + vs_summary(report))
    else:
        report = run(args)
        if args.server_only:
            return 0
        print("\n" + summary(report))
    if "FLOOR" in args.only:  # one thread, after the servers have stopped
        data = write_sources(Path(tempfile.mkdtemp(prefix="vipsgate-floor-")))[WORKLOADS[0].source]
        report["floor"] = floor.measure(data, vipsgate_op(WORKLOADS[0], data))
        print("\n" + floor.summary(report["floor"]))
    print("\ncommand: " + " ".join(["python", *sys.argv]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    if args.chart and args.peers and report["workloads"]:
        vs_chart(report, args.chart)
    elif args.chart and "W1" in report["workloads"]:
        chart(report, args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
