"""Throughput of the vipsgate server against the in-process libvips limit, in one run.

    make bench ARGS="--json loadtest/results/bench.json --chart docs/bench.png"

For each workload the server (``python -m proxy serve`` in a subprocess, local:///
sources in a temp dir) gets a fixed number of keep-alive connections for a fixed
time; then the same operations run in-process in a thread pool of the same size,
without HTTP: vipsgate's ``proxy.processing.process``, plain
``pyvips.Image.thumbnail_buffer`` and Pillow's draft()+thumbnail (the yardstick).
W5 (cache hits) is compared with a bare aiohttp handler returning the same bytes.

``--vs-thumbor`` instead compares the server with thumbor 7.8 (loadtest/peers.py) on cold
W1-W4, side by side in one run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest.common import (
    RssSampler,
    Server,
    Stats,
    cpu_seconds,
    http_load,
    prepare_libvips,
    process_tree,
    signer,
    thread_load,
    vipsgate_server,
    write_sources,
)
from vipsgate.config import available_cpus

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
    from vipsgate.config import Settings
    from vipsgate.negotiate import negotiate
    from vipsgate.paths import parse_path
    from vipsgate.processing import process
    from vipsgate.processing.vips import init
    from vipsgate.resolve import resolve
    init()
    parsed = parse_path(w.path())
    policy = negotiate(parsed.options.format, MODERN_ACCEPT, auto_webp=True, auto_avif=True,
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


def cold_paths(w: Workload, count: int, start: int = 0) -> Iterator[str]:
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
            path = signer()(WORKLOADS[0].path())
            body = fetch(server.port, path)
            entry = report["workloads"].setdefault(
                "W5", {"title": "cache hit of W1 (same URL repeated)"})
            entry["server"] = measure_server(server, itertools.repeat(path), args)
            print(f"  W5 server           {fmt(entry['server'])}", flush=True)
    if "W5" in args.only and not args.server_only:
        (tmp / "w5.jpg").write_bytes(body)
        bare = Server([sys.executable, str(Path(__file__).with_name("bare_server.py")),
                       str(tmp / "w5.jpg"), "--processes", str(args.processes)], {},
                      tmp / "bare.log", processes=args.processes)
        with bare:
            entry["bare_aiohttp"] = measure_server(bare, itertools.repeat("/x"), args)
        entry["ratio"] = round(entry["server"]["rps"] / entry["bare_aiohttp"]["rps"], 3)
        print(f"  W5 bare aiohttp     {fmt(entry['bare_aiohttp'])}", flush=True)
    return report


def run_vs_thumbor(args: argparse.Namespace) -> dict:
    """vipsgate against thumbor 7.8 (2 processes, Pillow), cold W1-W4, back to back.

    vipsgate gets its usual keep-alive connections. thumbor gets the same number of
    concurrent clients with ``Connection: close``: its processes share one listening
    socket, and a keep-alive connection stays with whichever process accepted it, so
    with keep-alive one process does most of the work while the other idles.
    vipsgate is also measured with ``Connection: close``, to show what that costs.
    """
    from loadtest.peers import THUMBOR_URLS, thumbor_paths, thumbor_server
    tmp = Path(tempfile.mkdtemp(prefix="vipsgate-bench-thumbor-"))
    root = tmp / "images"
    root.mkdir()
    write_sources(root)
    selected = [w for w in WORKLOADS if w.name in args.only and w.name in THUMBOR_URLS]
    thumbor, versions = thumbor_server(root, tmp, processes=args.peer_processes)
    report: dict = {"machine": {**machine(), **versions}, "settings": vars(args).copy(),
                    "workloads": {}}
    print(f"vipsgate vs thumbor {versions['thumbor']} (Pillow {versions['thumbor_pillow']}, "
          f"{args.peer_processes} processes): {len(selected)} cold workloads, "
          f"{args.duration:g}s each, {args.connections} connections (thumbor: "
          "Connection: close); vipsgate: "
          f"{args.processes} process(es) x {args.workers} worker thread(s)", flush=True)
    sys.setswitchinterval(0.001)
    server = vipsgate_server(root, tmp / "server.log", args.workers, args.processes)
    with server, thumbor:
        for w in selected:
            entry = report["workloads"].setdefault(w.name, {"title": w.title})
            count = int(args.max_rps * (args.duration + args.warmup + 1))
            entry["output_bytes"] = {
                "vipsgate": len(fetch(server.port, signer()(w.path(10**9)))),
                "thumbor": len(fetch(thumbor.port, THUMBOR_URLS[w.name].format(n=10**9)))}
            entry["server"] = measure_server(server, cold_paths(w, count), args)
            print(f"  {w.name} vipsgate           {fmt(entry['server'])}", flush=True)
            entry["server_close"] = measure_server(server, cold_paths(w, count, count),
                                                   args, close=True)
            print(f"  {w.name} vipsgate (close)   {fmt(entry['server_close'])}", flush=True)
            entry["thumbor"] = measure_peer(thumbor, thumbor_paths(w.name), args, True)
            print(f"  {w.name} thumbor (close)    {fmt(entry['thumbor'])}", flush=True)
            if w is selected[0]:  # the balancing issue, shown once
                entry["thumbor_keepalive"] = measure_peer(
                    thumbor, thumbor_paths(w.name, 10**6), args, False)
                print(f"  {w.name} thumbor (keep-alive) {fmt(entry['thumbor_keepalive'])}",
                      flush=True)
            entry["ratio_vs_thumbor"] = round(entry["server"]["rps"]
                                              / max(entry["thumbor"]["rps"], 1e-9), 3)
    ratios = [e["ratio_vs_thumbor"] for e in report["workloads"].values()]
    report["geomean_ratio_vs_thumbor"] = round(math.prod(ratios) ** (1 / len(ratios)), 3)
    return report


def measure_peer(server: Server, paths: Iterator[str], args: argparse.Namespace,
                 close: bool) -> dict:
    """``measure_server`` plus each server process's share of the CPU time."""
    assert server.proc is not None
    children = process_tree(server.proc.pid)[1:]
    before = [cpu_seconds(pid) for pid in children]
    result = measure_server(server, paths, args, close)
    spent = [cpu_seconds(pid) - b for pid, b in zip(children, before, strict=True)]
    result["process_cpu_share"] = [round(x / max(sum(spent), 1e-9), 2) for x in spent]
    return result


def vs_summary(report: dict) -> str:
    """A Markdown table: vipsgate against thumbor per workload, and the geometric mean."""
    lines = ["| workload | vipsgate req/s | thumbor req/s | ratio | vipsgate req/s, "
             "`Connection: close` | CPU ms/req vipsgate / thumbor | output bytes "
             "vipsgate / thumbor | peak RSS MB vipsgate / thumbor |",
             "|---|---|---|---|---|---|---|---|"]
    for name, e in report["workloads"].items():
        s, t, c, b = e["server"], e["thumbor"], e["server_close"], e["output_bytes"]
        lines.append(f"| {name} {e['title']} | {s['rps']:.1f} | {t['rps']:.1f} "
                     f"| **{e['ratio_vs_thumbor']:.2f}** | {c['rps']:.1f} "
                     f"| {s['cpu_ms_per_op']:.1f} / {t['cpu_ms_per_op']:.1f} "
                     f"| {b['vipsgate']} / {b['thumbor']} "
                     f"| {s['peak_rss_mb']:.0f} / {t['peak_rss_mb']:.0f} |")
    lines.append(f"\nGeometric mean of the ratios: **{report['geomean_ratio_vs_thumbor']:.2f}**")
    return "\n".join(lines)


def vs_chart(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(report["workloads"])
    fig, ax = plt.subplots(figsize=(8, 4))
    series = [("server", "vipsgate (keep-alive)", "C0"),
              ("server_close", "vipsgate (Connection: close)", "C9"),
              ("thumbor", "thumbor 7.8 (Connection: close)", "C3")]
    width = 0.27
    for i, (key, label, color) in enumerate(series):
        values = [report["workloads"][n][key]["rps"] for n in names]
        ax.bar([x + (i - 1) * width for x in range(len(names))], values, width, label=label,
               color=color)
    for x, n in enumerate(names):
        e = report["workloads"][n]
        top = max(e["server"]["rps"], e["server_close"]["rps"], e["thumbor"]["rps"])
        ax.annotate(f"vipsgate / thumbor {e['ratio_vs_thumbor']:.2f}x", (x, top),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 3),
                    textcoords="offset points")
    ax.set_xticks(range(len(names)), [f"{n}\n{report['workloads'][n]['title']}"
                                      .replace(" -> ", "\n-> ") for n in names], fontsize=7)
    ax.set_ylabel("requests / s (cold, unique URLs)")
    ax.margins(y=0.12)
    ax.legend(fontsize=7)
    s, m = report["settings"], report["machine"]
    ax.set_title(f"vipsgate vs thumbor {m['thumbor']} (Pillow engine, {s['peer_processes']} "
                 f"processes); geometric mean {report['geomean_ratio_vs_thumbor']:.2f}x\n"
                 f"{m['cpus']} CPUs, vipsgate {s['processes']} process x {s['workers']} "
                 f"workers, {s['connections']} connections, libvips {m['libvips']}",
                 fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def fetch(port: int, path: str) -> bytes:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
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
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before measuring")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int,
                        help="IMGPROXY_WORKERS per process (default: the server's, "
                             "2 x CPUs / processes)")
    parser.add_argument("--processes", type=int, default=1, help="server processes")
    parser.add_argument("--only", default="W1,W2,W3,W4,W5", type=lambda v: v.split(","))
    parser.add_argument("--max-rps", type=int, default=1500,
                        help="unique URLs prepared per second of a cold run")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the server (repeatable)")
    parser.add_argument("--switchinterval", type=float,
                        help="experiment: the server's sys.setswitchinterval")
    parser.add_argument("--server-only", action="store_true",
                        help="tuning: measure only the server (no limits, no table)")
    parser.add_argument("--vs-thumbor", action="store_true",
                        help="compare with thumbor 7.8 instead (installed once into "
                             "loadtest/.peers/): cold W1-W4, no in-process limits")
    parser.add_argument("--peer-processes", type=int, default=2,
                        help="thumbor processes (--vs-thumbor)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--chart", type=Path, help="write a PNG chart here")
    args = parser.parse_args()
    args.workers = args.workers or max(1, 2 * available_cpus() // args.processes)
    if args.vs_thumbor:
        report = run_vs_thumbor(args)
        print("\n" + vs_summary(report))
    else:
        report = run(args)
        if args.server_only:
            return 0
        print("\n" + summary(report))
    print("\ncommand: " + " ".join(["python", *sys.argv]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    if args.chart and args.vs_thumbor and report["workloads"]:
        vs_chart(report, args.chart)
    elif args.chart and "W1" in report["workloads"]:
        chart(report, args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
