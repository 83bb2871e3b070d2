"""Paired before/after runs: this checkout against another one, interleaved, in one run.

    git worktree add /tmp/before <ref>      # the "before" checkout
    python loadtest/paired.py --before /tmp/before --only W5,W1 --rounds 3
    python loadtest/paired.py --before /tmp/before --only H12   # from an http:// origin

Each round starts the "after" server (this checkout) and the "before" server (the
other checkout's ``proxy/``, imported under its own package name) one after the
other on the same generated sources, with the same settings, and measures each
workload over HTTP (bench.py's load client). Medians over the rounds and the
after/before ratio are printed; the machine's noise is shared by both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest.bench import MODERN_ACCEPT, WORKLOADS, cold_paths, describe
from loadtest.common import (
    KEY,
    SALT,
    Origin,
    RssSampler,
    Server,
    http_load,
    signer,
    source_path,
    write_sources,
)
from loadtest.growth import GROWTH, write_growth_sources
from loadtest.mix import MIXES, write_mix_sources

ROOT = Path(__file__).resolve().parent.parent

LAUNCH = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location(
    {name!r}, {init!r}, submodule_search_locations=[{package!r}])
module = importlib.util.module_from_spec(spec)
sys.modules[{name!r}] = module
spec.loader.exec_module(module)
from importlib import import_module
sys.exit(import_module({name!r} + ".cli").main())
"""


def package_name(checkout: Path) -> str:
    """The import name of a checkout's ``proxy/`` directory (``vipsgate`` or ``proxy``)."""
    config = tomllib.loads((checkout / "pyproject.toml").read_text())
    mapping = config.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    return next((name for name, where in mapping.items() if where == "proxy"), "proxy")


def server_for(checkout: Path, root: Path, log: Path, workers: int,
               env: dict[str, str]) -> Server:
    package = checkout / "proxy"
    code = LAUNCH.format(name=package_name(checkout), init=str(package / "__init__.py"),
                         package=str(package))
    settings = {"IMGPROXY_KEY": KEY, "IMGPROXY_SALT": SALT, "IMGPROXY_WORKERS": str(workers),
                "IMGPROXY_LOCAL_FILESYSTEM_ROOT": str(root),
                "IMGPROXY_REQUESTS_QUEUE_SIZE": "256", "VIPSGATE_PROCESSES": "1", **env}
    return Server([sys.executable, "-c", code, "serve", "--host", "127.0.0.1"], settings, log,
                  b"vipsgate listening on")


#: an http:// workload: W3's 12 MP photo from a loopback origin at full speed (each
#: request a distinct source URL), fitted into 300x300 JPEG
HTTP_SOURCE = ("H12", "photo_12mp.jpg", "rs:fit:300:300/q:80")


def http_paths(origin: Origin, count: int, offset: int) -> Iterator[str]:
    """``count`` distinct H12 URLs (a distinct origin alias each: nothing is cached)."""
    _, name, options = HTTP_SOURCE
    return iter([source_path(origin.url(f"a{n}", name), options)
                 for n in range(offset, offset + count)])


def measure(server: Server, workload: str, args: argparse.Namespace, offset: int,
            origin: Origin | None = None) -> dict:
    assert server.proc is not None
    count = int(args.max_rps * (args.duration + args.warmup + 1))
    if workload == "W5":
        paths = itertools.repeat(signer()(WORKLOADS[0].path()))
    elif workload == HTTP_SOURCE[0]:
        assert origin is not None
        paths = http_paths(origin, count, offset)
    else:
        w = next(w for w in [*WORKLOADS, *MIXES, *GROWTH] if w.name == workload)
        paths = cold_paths(w, count, offset)
    with RssSampler(server.proc.pid) as rss:
        stats = http_load(server.port, paths, args.connections, args.duration, args.warmup,
                          {"Accept": MODERN_ACCEPT}, server.proc.pid)
    return {**describe(stats), "peak_rss_mb": round(rss.peak / 2**20, 1)}


def run_rounds(args: argparse.Namespace, sides: dict[str, Path],
               runs: dict[str, dict[str, list[dict]]], tmp: Path, env: dict[str, str],
               origin: Origin | None) -> None:
    """The interleaved rounds: each side's server in turn, every workload on each."""
    for round_ in range(args.rounds):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for side in order:
            server = server_for(sides[side], tmp / "images", tmp / f"{side}.log", args.workers,
                                env)
            with server:
                for workload in args.only:  # a fresh URL range per round: always cold
                    result = measure(server, workload, args, round_ * 10**6, origin)
                    runs[workload][side].append(result)
                    print(f"round {round_ + 1} {side:6s} {workload}: {result['rps']} req/s, "
                          f"{result['cpu_ms_per_op']} ms CPU/req, "
                          f"{result['peak_rss_mb']} MB", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--only", default="W5,W1", type=lambda v: v.split(","),
                        help="W1-W5, MIX, MIX-NOAVIF, G1, G12, G24, G48 (loadtest/growth.py), "
                             "H12 (W3's photo from an http:// origin on loopback)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-rps", type=float, default=2000.0)
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.server_env)
    tmp = Path(tempfile.mkdtemp(prefix="vipsgate-paired-"))
    (tmp / "images").mkdir()
    write_sources(tmp / "images")
    if any(m.name in args.only for m in MIXES):  # the realistic mix (loadtest/mix.py)
        write_mix_sources(tmp / "images")
    if any(g.name in args.only for g in GROWTH):  # 1-48 MP JPEGs (loadtest/growth.py)
        write_growth_sources(tmp / "images")
    origin = None
    stack = contextlib.ExitStack()
    if HTTP_SOURCE[0] in args.only:  # loadtest/throttled_origin.py, full speed
        origin = stack.enter_context(Origin(tmp / "images", tmp / "origin.log"))
        env.setdefault("IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES", "1")
    sides = {"after": ROOT, "before": args.before.resolve()}
    runs: dict[str, dict[str, list[dict]]] = {w: {s: [] for s in sides} for w in args.only}
    with stack:
        run_rounds(args, sides, runs, tmp, env, origin)
    report = {}
    print("\n| workload | before req/s | after req/s | after/before | CPU ms/req before / after "
          "| peak RSS MB before / after |\n|---|---|---|---|---|---|")
    for workload, by_side in runs.items():
        rps = {s: statistics.median(r["rps"] for r in by_side[s]) for s in sides}
        cpu = {s: statistics.median(r["cpu_ms_per_op"] for r in by_side[s]) for s in sides}
        rss = {s: statistics.median(r["peak_rss_mb"] for r in by_side[s]) for s in sides}
        ratio = rps["after"] / rps["before"] if rps["before"] else 0.0
        report[workload] = {"rps": rps, "cpu_ms_per_op": cpu, "peak_rss_mb": rss,
                            "ratio": round(ratio, 3),
                            "runs": by_side}
        print(f"| {workload} | {rps['before']:.1f} | {rps['after']:.1f} | **{ratio:.3f}** | "
              f"{cpu['before']:.3f} / {cpu['after']:.3f} | "
              f"{rss['before']:.0f} / {rss['after']:.0f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
