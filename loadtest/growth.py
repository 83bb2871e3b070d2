"""Growth: server CPU and peak memory per image as JPEG sources grow from 1 to 48 MP.

    make bench ARGS="--growth"                       # thumbor and ipx, about 4 minutes
    python loadtest/growth.py --peers thumbor --only G24,G48 --rounds 3

Issue 23's growth target: each photo-like JPEG source (loadtest/mix.py's generator, q90,
3:2; 1, 12, 24 and 48 MP) is fitted into 300x300 as JPEG q80 by vipsgate (its defaults),
thumbor (2 processes) and ipx, each under the same closed-loop load (bench.py's client,
``--connections`` clients, a unique URL per request). Per size, fresh servers are started
(so each peak belongs to that size), a few answers of each are compared (format and
dimensions), then each server is measured in turn, in a rotated order per round.
CPU ms per image is the CPU time of the server's whole process tree over the requests it
answered; peak RSS is the sum over its processes, sampled every 50 ms. Medians over the
rounds; the ratios are vipsgate's over the peer's, with the targets: CPU ≤ 1.0x and peak
memory ≤ 1.5x thumbor's.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest.bench import Workload, cold_paths, fmt, machine, measure_server
from loadtest.common import prepare_libvips, vipsgate_server
from loadtest.mix import photo_jpeg

prepare_libvips()

#: name -> (width, height): 3:2 photos of 1, 12, 24 and 48 megapixels
GROWTH_SOURCES = {"G1": (1224, 816), "G12": (4240, 2832), "G24": (6000, 4000),
                  "G48": (8496, 5664)}
GROWTH = [Workload(name, f"{w * h / 1e6:.0f} MP JPEG -> fit 300x300 JPEG",
                   f"growth_{name[1:]}mp.jpg", "rs:fit:300:300", "jpg", 300, 300, False)
          for name, (w, h) in GROWTH_SOURCES.items()]
# vipsgate's over the peer's, at most this
TARGETS = {("cpu", "thumbor"): 1.0, ("rss", "thumbor"): 1.5}


def write_growth_sources(directory: Path, reuse: bool = True) -> dict[str, int]:
    """Generate the growth sources into ``directory`` (kept ones reused); name -> bytes."""
    sizes = {}
    for seed, w in enumerate(GROWTH, start=11):
        path = directory / w.source
        if not (reuse and path.exists()):
            path.write_bytes(photo_jpeg(*GROWTH_SOURCES[w.name], seed))
        sizes[w.source] = path.stat().st_size
    return sizes


def thumbor_growth(w: Workload, n: int) -> str:
    return f"/unsafe/fit-in/300x300/filters:quality(80):max_age({n})/{w.source}"


def ipx_growth(w: Workload, n: int) -> str:
    return f"/s_300x300&fit_inside&f_jpeg&q_80&cb_{n}/{w.source}"


def measure_size(w: Workload, root: Path, tmp: Path, args: argparse.Namespace,
                 report: dict) -> dict:
    """Fresh servers for this size: answers compared, then each measured per round."""
    from loadtest.versus import make_peers, measure_peer, sample_outputs, start_peers
    urls = {"thumbor": thumbor_growth, "ipx": ipx_growth}
    peers, skipped = make_peers(args.peers, root, tmp, args.peer_processes)
    report["skipped"].update(skipped)
    peers = [dataclasses.replace(p, url=lambda _name, n, u=urls[p.name]: u(w, n))
             for p in peers]
    env = dict(item.split("=", 1) for item in args.server_env)
    server = vipsgate_server(root, tmp / f"vipsgate-{w.name}.log", args.workers,
                             args.processes, env)
    runs: dict[str, list[dict]] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(server)
        start_peers(stack, peers, report)
        entry: dict = {"name": w.name, "title": w.title, **sample_outputs(w, server, peers)}
        names = ["vipsgate", *(p.name for p in peers)]
        for round_ in range(args.rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                start = 1 + round_ * 10**6
                if name == "vipsgate":
                    result = measure_server(server, cold_paths(w, args.urls, start), args)
                else:
                    peer = next(p for p in peers if p.name == name)
                    result = measure_peer(peer.server, peer.paths(w.name, start), args,
                                          peer.close)
                runs.setdefault(name, []).append(result)
                print(f"  {w.name:4s} round {round_ + 1} {name:9s} {fmt(result)}", flush=True)
    for name, results in runs.items():
        entry[name] = {key: round(statistics.median(r[key] for r in results), 2)
                       for key in ("rps", "cpu_ms_per_op", "peak_rss_mb")}
        entry[name]["runs"] = results
    for peer in names[1:]:
        entry.setdefault("ratios", {})[peer] = {
            "cpu": round(entry["vipsgate"]["cpu_ms_per_op"] / entry[peer]["cpu_ms_per_op"], 3),
            "rss": round(entry["vipsgate"]["peak_rss_mb"] / entry[peer]["peak_rss_mb"], 3)}
    return entry


def run_growth(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="vipsgate-growth-"))
    root = args.sources or tmp / "images"
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report: dict = {"machine": machine(), "settings": {k: str(v) for k, v in vars(args).items()},
                    "peers": {}, "skipped": {}, "workloads": {}}
    report["sources"] = write_growth_sources(root)
    print(f"growth sources in {root}: " + ", ".join(
        f"{name} {size / 1e6:.1f} MB" for name, size in report["sources"].items())
        + f" ({time.monotonic() - started:.0f} s)", flush=True)
    for w in (w for w in GROWTH if w.name in args.only):
        report["workloads"][w.name] = measure_size(w, root, tmp, args, report)
    return report


def _cell(entry: dict, peer: str, key: str) -> str:
    if peer not in entry.get("ratios", {}):
        return "–"
    ratio, target = entry["ratios"][peer][key], TARGETS.get((key, peer))
    if target is None:
        return f"{ratio:.2f}"
    return f"**{ratio:.2f}** (≤ {target:.1f}: {'met' if ratio <= target else 'missed'})"


def growth_summary(report: dict) -> str:
    """Markdown: per size, CPU ms per image and peak RSS of each server, and the ratios."""
    peers = [p for p in ("thumbor", "ipx") if p in report["peers"]]
    servers = ["vipsgate", *peers]
    each = " / ".join(servers)
    lines = [f"| source | CPU ms/image {each} | peak RSS MB {each} | req/s {each} | "
             + " | ".join(f"CPU / {p} | RSS / {p}" for p in peers) + " |",
             "|---" * (4 + 2 * len(peers)) + "|"]
    met = total = 0
    for e in report["workloads"].values():
        lines.append(f"| {e['title']} | "
                     + " / ".join(f"{e[s]['cpu_ms_per_op']:.1f}" for s in servers) + " | "
                     + " / ".join(f"{e[s]['peak_rss_mb']:.0f}" for s in servers) + " | "
                     + " / ".join(f"{e[s]['rps']:.1f}" for s in servers) + " | "
                     + " | ".join(f"{_cell(e, p, 'cpu')} | {_cell(e, p, 'rss')}"
                                  for p in peers) + " |")
        for (key, peer), target in TARGETS.items():
            if peer in e.get("ratios", {}):
                total += 1
                met += e["ratios"][peer][key] <= target
    mismatches = sum(len(e["mismatches"]) for e in report["workloads"].values())
    lines.append(f"\nTargets met: **{met} of {total}**; answers that differ: {mismatches}"
                 + "".join(f"; {p} skipped: {why}" for p, why in report["skipped"].items()))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """growth.py's own options (bench.py --growth shares the others)."""
    parser.add_argument("--rounds", type=int, default=1,
                        help="interleaved rounds per size (--growth) or per workload "
                             "(--peers): every server once per round, medians reported")
    parser.add_argument("--sources", type=Path,
                        help="keep the generated sources in this directory and reuse them")
    parser.add_argument("--urls", type=int, default=20000, help="unique URLs per measurement")


def main() -> int:
    from vipsgate.config import Settings
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", default="thumbor,ipx",
                        type=lambda v: [p for p in v.split(",") if p])
    parser.add_argument("--only", default=",".join(GROWTH_SOURCES),
                        type=lambda v: v.split(","), help="sizes: G1,G12,G24,G48")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, help="IMGPROXY_WORKERS (default: the server's)")
    parser.add_argument("--processes", type=int, help="VIPSGATE_PROCESSES (default: 1)")
    parser.add_argument("--peer-processes", type=int, default=2, help="thumbor processes")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", type=Path, help="write the figures here")
    add_arguments(parser)
    args = parser.parse_args()
    defaults = Settings()
    args.processes = args.processes or defaults.processes
    args.workers = args.workers or dataclasses.replace(
        defaults, processes=args.processes).worker_count
    return report_growth(args)


def report_growth(args: argparse.Namespace) -> int:
    report = run_growth(args)
    print("\n" + growth_summary(report))
    print("\ncommand: " + " ".join(["python", *sys.argv]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
