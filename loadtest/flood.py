"""The flood: 10x the saturating concurrency of the heaviest workload, for 20 s.

    python loadtest/flood.py                          # clients honour Retry-After
    python loadtest/flood.py --storm                  # clients retry at once
    python loadtest/flood.py --modes honour,storm --rounds 2 --before /work/baseline

Each run starts ``vipsgate serve`` with its default settings (plus the bench key/salt,
the generated sources as ``local:///`` and, unless ``--budget auto``, the memory budget
``auto`` gives in the Helm chart's 512 MiB pod), then:

1. **Saturation**: closed-loop clients at each of ``--levels`` (1, 2, 4, 8), each
   request a distinct cache-missing URL of ``--workload`` (W3, the heaviest: 12 MP JPEG
   -> ``rs:fill:800:600``), ``--sat-duration`` s each. The saturating concurrency is the
   smallest level within 10 % of the best throughput; that throughput is "saturation".
2. **Flood**: ``--factor`` (10) x that many clients for ``--duration`` s (after 2 s of
   ramp-up), each working through distinct URLs. A client that gets a non-200 retries
   the same URL: after ``Retry-After`` seconds (1 s without one), or at once with
   ``--storm``. Meanwhile a separate process asks for a cached W1 result 20 times a
   second (keep-alive) and ``/health`` 5 times a second (a new connection each, as a
   kubelet does), scrapes ``/metrics`` twice a second and samples the server's RSS.

After the flood, saturation is measured once more at its best level; "saturation"
is the mean of the two, so drift during the run is shared by both ends.

Reported: useful throughput (200s of the workload per second) / saturation; the same
per CPU left by other processes (a shared machine's noise: the machine's busy time
less the server's and the clients', flood against saturation) and the server's CPU
per image, saturation / flood; the shed answers (429 and 503, apart from retries sent
before their ``Retry-After``) with their latency p50/p99/max and whether each carried
``Retry-After``; hit and ``/health`` latency and failures; peak RSS and the peak of
``vipsgate_memory_in_flight_bytes`` against ``vipsgate_memory_budget_bytes``. All
traffic goes to 127.0.0.1; every phase is bounded in time. ``--before`` runs the same
against another checkout (its ``proxy/`` under its own import name), interleaved
with this one; the flood's client count is the first run's for all.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest.bench import WORKLOADS, Workload, cold_paths
from loadtest.common import KEY, SALT, Server, signer, write_sources
from loadtest.flood_clients import (
    RAMP,
    Connection,
    CpuWindow,
    closed_loop,
    flood_clients,
    ms,
    observer_process,
    percentile,
    run_loop,
)
from loadtest.paired import LAUNCH, package_name

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20
#: what VIPSGATE_MEMORY_BUDGET=auto gives in the chart's pod (512 MiB, default caches)
CHART_BUDGET = "144MiB"


# --- the server ---------------------------------------------------------------------

def start_server(checkout: Path, root: Path, log: Path, env: dict[str, str],
                 prelude: str = "") -> Server:
    """``vipsgate serve`` of ``checkout`` with its defaults, the bench key/salt and
    ``root`` as local:///; ``env`` on top. ``prelude``: code run before the CLI (an
    experiment), with the package imported."""
    package = checkout / "proxy"
    code = LAUNCH.format(name=package_name(checkout), init=str(package / "__init__.py"),
                         package=str(package))
    head, _, tail = code.rpartition("sys.exit(")
    code = f"{head}{prelude}\nsys.exit({tail}"
    settings = {"IMGPROXY_KEY": KEY, "IMGPROXY_SALT": SALT,
                "IMGPROXY_LOCAL_FILESYSTEM_ROOT": str(root), **env}
    return Server([sys.executable, "-c", code, "serve", "--host", "127.0.0.1"], settings, log,
                  b"vipsgate listening on").start()


# --- saturation -----------------------------------------------------------------------

def measure_level(server: Server, paths: Iterator[str], clients: int, duration: float
                  ) -> dict[str, float]:
    assert server.proc is not None
    with CpuWindow(server.proc.pid) as cpu:
        rate, total = run_loop(closed_loop(server.port, paths, clients, duration))
    return {"rps": round(rate, 1), "cpu_ms": round(cpu.server * 1000 / max(total, 1), 1),
            "foreign_cores": cpu.foreign_cores()}


def saturation(server: Server, w: Workload, levels: list[int], duration: float,
               offset: int) -> dict[str, Any]:
    paths = cold_paths(w, int(400 * (duration + 2) * len(levels)), offset)
    runs = {c: measure_level(server, paths, c, duration) for c in levels}
    best = max(r["rps"] for r in runs.values())
    knee = min(c for c, r in runs.items() if r["rps"] >= 0.9 * best)
    top = max(runs, key=lambda c: runs[c]["rps"])
    return {"levels": {c: r["rps"] for c, r in runs.items()}, "concurrency": knee,
            "best": top, "rps": best, "before_flood": best, "cpu_ms": runs[top]["cpu_ms"],
            "foreign_cores": runs[top]["foreign_cores"]}


# --- the flood --------------------------------------------------------------------------

def flood(server: Server, w: Workload, clients: int, duration: float, storm: bool,
          offset: int) -> dict[str, Any]:
    assert server.proc is not None
    port, pid = server.port, server.proc.pid
    hit_path = signer()(WORKLOADS[0].path())
    status, _, _ = run_loop(Connection(port).get(hit_path))  # the hit, cached
    assert status == 200, f"warming the hit: {status}"
    paths = cold_paths(w, int(clients * 50 + 400 * (duration + RAMP)), offset)
    ctx = multiprocessing.get_context("spawn")
    inbox, out = ctx.Queue(), ctx.Queue()
    side = ctx.Process(target=observer_process,
                       args=(port, pid, RAMP + duration, hit_path, inbox, out))
    side.start()
    assert out.get(timeout=60) == "ready"
    start = time.monotonic() + 0.2
    inbox.put(start)
    time.sleep(max(0.0, start - time.monotonic()))  # start together with the observer
    with CpuWindow(pid) as cpu:
        stats = run_loop(flood_clients(port, paths, clients, start, duration, storm))
    server_cpu = cpu.server
    seen = out.get(timeout=60)
    side.join(10)
    shed = stats.shed_latencies
    g = seen["gauges"]
    useful = stats.useful / duration
    return {
        "clients": clients, "storm": storm, "useful_rps": round(useful, 1),
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "shed": len(shed), "shed_without_retry_after": stats.shed_without_retry_after,
        "shed_p50_ms": ms(percentile(shed, 0.5)), "shed_p99_ms": ms(percentile(shed, 0.99)),
        "shed_max_ms": ms(max(shed, default=0.0)),
        "retries_shed": len(stats.retry_latencies),
        "retry_shed_p50_ms": ms(percentile(stats.retry_latencies, 0.5)),
        "hits": len(seen["hit"]), "hits_failed": seen["failed"]["hit"],
        "hit_p50_ms": ms(percentile(seen["hit"], 0.5)),
        "hit_p99_ms": ms(percentile(seen["hit"], 0.99)),
        "health": len(seen["health"]), "health_failed": seen["failed"]["health"],
        "health_p50_ms": ms(percentile(seen["health"], 0.5)),
        "health_p99_ms": ms(percentile(seen["health"], 0.99)),
        "peak_rss_mb": round(seen["peak_rss"] / MiB, 1),
        "peak_in_flight_mb": round(g["memory_in_flight_bytes"] / MiB, 1)
        if "memory_in_flight_bytes" in g else None,
        "budget_mb": round(g["memory_budget_bytes"] / MiB, 1)
        if "memory_budget_bytes" in g else None,
        "peak_memory_waiting": g.get("memory_waiting"), "peak_queue_depth": g.get("queue_depth"),
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_ms_per_image": round(server_cpu * 1000 / stats.completed, 1)
        if stats.completed else None,
        "client_cpu_s": round(cpu.own + seen["cpu"], 2),
        "foreign_cores": cpu.foreign_cores(also=seen["cpu"]),
    }


# --- the runs -------------------------------------------------------------------------

def one_run(checkout: Path, root: Path, log: Path, env: dict[str, str], w: Workload,
            args: argparse.Namespace, storm: bool, clients: int | None, offset: int
            ) -> dict[str, Any]:
    """A fresh server: its saturation, then the flood."""
    server = start_server(checkout, root, log, env, args.prelude)
    try:
        sat = saturation(server, w, args.levels, args.sat_duration, offset)
        clients = clients or args.factor * sat["concurrency"]
        result = flood(server, w, clients, args.duration, storm, offset + 300_000)
        # saturation again after the flood (its first second lets the flood's work
        # drain): the machine's drift during the run is shared by both ends
        paths = cold_paths(w, int(400 * (args.sat_duration + 2)), offset + 700_000)
        again = measure_level(server, paths, sat["best"], args.sat_duration)
        sat["after_flood"] = again["rps"]
        sat["rps"] = round((sat["rps"] + again["rps"]) / 2, 1)
        for key in ("foreign_cores", "cpu_ms"):
            sat[key] = round((sat[key] + again[key]) / 2, 2)
    finally:
        server.stop()
    ratio = result["useful_rps"] / sat["rps"] if sat["rps"] else 0.0
    cpu = sat["cpu_ms"] / result["server_cpu_ms_per_image"] \
        if result["server_cpu_ms_per_image"] else 0.0
    # throughput per CPU left by other tenants, flood against saturation
    cpus = len(os.sched_getaffinity(0))
    left = (cpus - result["foreign_cores"]) / max(cpus - sat["foreign_cores"], 0.1)
    return {"saturation": sat, "ratio": round(ratio, 3), "cpu_ratio": round(cpu, 3),
            "left_ratio": round(ratio / max(left, 0.1), 3), **result}


def spread(runs: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]}"
    return f"{statistics.median(values):g} ({min(values):g}–{max(values):g})"


ROWS = [("saturation req/s", None), ("flood clients", "clients"),
        ("useful req/s", "useful_rps"), ("**useful / saturation**", "ratio"),
        ("the same per CPU left by other tenants", "left_ratio"),
        ("server CPU per image, saturation / flood", "cpu_ratio"),
        ("other tenants' CPUs, saturation / flood", None),
        ("shed (429/503), not early retries", "shed"),
        ("shed without Retry-After", "shed_without_retry_after"),
        ("shed p50 ms", "shed_p50_ms"), ("shed p99 ms", "shed_p99_ms"),
        ("shed max ms", "shed_max_ms"), ("early retries shed", "retries_shed"),
        ("early retries shed, p50 ms", "retry_shed_p50_ms"), ("hits failed / sent", None),
        ("hit p50 / p99 ms", None), ("/health failed / sent", None),
        ("/health p50 / p99 ms", None), ("peak RSS MB", "peak_rss_mb"),
        ("peak in flight / budget MB", None), ("server CPU ms per image", None),
        ("client CPU s", "client_cpu_s")]


def table(report: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """Markdown: one column per side and mode, median (min–max) over the rounds."""
    columns = [(side, mode) for mode, by_side in report.items() for side in by_side]
    lines = ["| | " + " | ".join(f"{side}, {mode}" for side, mode in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for label, key in ROWS:
        cells = []
        for side, mode in columns:
            runs = report[mode][side]
            if key is not None:
                cells.append(spread(runs, key))
            elif label.startswith("saturation"):
                sat = [{"rps": r["saturation"]["rps"]} for r in runs]
                knees = sorted({r["saturation"]["concurrency"] for r in runs})
                cells.append(f"{spread(sat, 'rps')} at {'/'.join(map(str, knees))}")
            elif label.startswith("other"):
                sat = [r["saturation"] for r in runs]
                cells.append(f"{spread(sat, 'foreign_cores')} / {spread(runs, 'foreign_cores')}")
            elif label.startswith("hits"):
                cells.append(f"{sum(r['hits_failed'] for r in runs)} / "
                             f"{sum(r['hits'] for r in runs)}")
            elif label.startswith("hit p"):
                cells.append(f"{spread(runs, 'hit_p50_ms')} / {spread(runs, 'hit_p99_ms')}")
            elif label.startswith("/health failed"):
                cells.append(f"{sum(r['health_failed'] for r in runs)} / "
                             f"{sum(r['health'] for r in runs)}")
            elif label.startswith("/health p"):
                cells.append(f"{spread(runs, 'health_p50_ms')} / "
                             f"{spread(runs, 'health_p99_ms')}")
            elif label.startswith("peak in flight"):
                cells.append(f"{spread(runs, 'peak_in_flight_mb')} / "
                             f"{spread(runs, 'budget_mb')}")
            else:
                cells.append(spread(runs, "server_cpu_ms_per_image"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storm", action="store_true", help="clients retry at once "
                        "(the same as --modes storm)")
    parser.add_argument("--modes", default="honour", type=lambda v: v.split(","),
                        help="honour (Retry-After), storm, or both: honour,storm")
    parser.add_argument("--before", type=Path, help="another checkout, measured alike")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workload", default="W3", choices=[w.name for w in WORKLOADS])
    parser.add_argument("--levels", default="1,2,4,8",
                        type=lambda v: [int(x) for x in v.split(",")])
    parser.add_argument("--sat-duration", type=float, default=10.0)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--concurrency", type=int, help="flood clients (default: factor x "
                        "the saturating concurrency of the first run)")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--budget", default=CHART_BUDGET,
                        help="VIPSGATE_MEMORY_BUDGET ('auto': the server's own default)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--prelude", default="", help="an experiment: Python run in the "
                        "server before its CLI, the package imported")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    modes = ["storm"] if args.storm else args.modes
    env = dict(item.split("=", 1) for item in args.server_env)
    if args.budget != "auto":
        env.setdefault("VIPSGATE_MEMORY_BUDGET", args.budget)
    w = next(w for w in WORKLOADS if w.name == args.workload)
    tmp = Path(tempfile.mkdtemp(prefix="vipsgate-flood-"))
    (tmp / "images").mkdir()
    write_sources(tmp / "images")
    sides = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    report: dict[str, dict[str, list[dict[str, Any]]]] = {
        m: {s: [] for s in sides} for m in modes}
    clients = args.concurrency
    offsets = itertools.count(0, 10**6)
    for round_ in range(args.rounds):
        for mode in modes:
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for side in order:
                result = one_run(sides[side], tmp / "images", tmp / f"{side}.log", env, w,
                                 args, mode == "storm", clients, next(offsets))
                clients = clients or result["clients"]
                report[mode][side].append(result)
                print(f"round {round_ + 1} {mode:6s} {side:6s} {json.dumps(result)}",
                      flush=True)
    print(f"\n{w.name} ({w.title}), {args.duration:g} s flood, median (min–max) of "
          f"{args.rounds} round(s):\n")
    print(table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
