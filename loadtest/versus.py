"""vipsgate against its peers in one run, with issue 23's targets: ``bench.py --peers``.

    make bench                                         # thumbor and ipx, every workload
    make bench PEERS=thumbor ARGS="--only W1,MIX"      # fewer peers, fewer workloads

Peers: thumbor 7.8 (Pillow, 2 processes; loadtest/peers.py) and ipx 3 (sharp on libvips,
one Node process; loadtest/peer_ipx.py); one that cannot be installed here is skipped
with the reason. Each workload is measured on every server back to back, so they share
the machine's noise: vipsgate with keep-alive connections (W1-W4 also with
``Connection: close``), thumbor with ``Connection: close`` (its processes share one
listening socket, and a keep-alive connection stays with the process that accepted it),
ipx with keep-alive. Every request is a full render (a unique URL, no cache answers).
A few requests of each workload are fetched first from every server, to check that
they answer the same dimensions and format and to record the output sizes. W5 (cache
hits) is compared with a bare aiohttp server returning the same bytes. ``--rounds N``
repeats each workload's servers N times, interleaved, and reports medians. After the
servers, MIX-NOAVIF's codec floor (``floor.mix_floor``) bounds what any server using
these codecs can do against thumbor's pixel work.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from loadtest import floor
from loadtest.bench import (
    WORKLOADS,
    Workload,
    cache_hits,
    cold_paths,
    fetch,
    fmt,
    machine,
    measure_server,
    path_op,
)
from loadtest.common import (
    Server,
    cpu_seconds,
    process_tree,
    signer,
    vipsgate_server,
    write_sources,
)
from loadtest.mix import MIX_SOURCES, MIXES, Mix, expected_size, write_mix_sources
from loadtest.peer_ipx import ipx_server, ipx_url, started_versions
from loadtest.peers import PeerUnavailable, thumbor_server, thumbor_url

# issue 23's targets: vipsgate's req/s over the peer's, at least this
TARGETS: dict[tuple[str, str], float] = {
    ("W1", "thumbor"): 1.0, ("W2", "thumbor"): 1.0,
    ("W3", "thumbor"): 1.3, ("W4", "thumbor"): 1.3,
    ("MIX", "thumbor"): 2.0, ("MIX", "ipx"): 1.0,
    ("MIX-NOAVIF", "thumbor"): 2.0, ("MIX-NOAVIF", "ipx"): 1.0,
    ("W5", "bare_aiohttp"): 0.6,
}
PEER_ORDER = ("thumbor", "ipx")
SAMPLE = 7  # requests fetched from each server first: every mix operation once
SAMPLE_TIMEOUT = 120.0  # seconds for one of them (ipx takes 10 s for a 1280 px AVIF here)


@dataclass
class Peer:
    name: str
    server: Server
    versions: dict[str, str]
    url: Callable[[str, int], str]  # (workload, n) -> request n in the peer's grammar
    close: bool  # its clients send Connection: close

    def paths(self, workload: str, start: int) -> Iterator[str]:
        return (self.url(workload, n) for n in itertools.count(start))


def make_peers(names: list[str], root: Path, workdir: Path, thumbor_processes: int
               ) -> tuple[list[Peer], dict[str, str]]:
    """The peers that can run here, and why the others cannot."""
    peers, skipped = [], {}
    for name in names:
        try:
            if name == "thumbor":
                server, versions = thumbor_server(root, workdir, thumbor_processes)
                peers.append(Peer(name, server, versions, thumbor_url, close=True))
            elif name == "ipx":
                server, versions = ipx_server(root, workdir)
                peers.append(Peer(name, server, versions, ipx_url, close=False))
            else:
                raise PeerUnavailable(f"unknown peer {name!r} (known: {', '.join(PEER_ORDER)})")
        except PeerUnavailable as error:
            print(f"  ! {error}", file=sys.stderr, flush=True)
            skipped[name] = str(error)
    return peers, skipped


def sniff(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:12] in (b"ftypavif", b"ftypavis"):
        return "avif"
    return "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "other"


def describe_output(data: bytes) -> dict:
    import pyvips
    image = pyvips.Image.new_from_buffer(data, "")
    return {"format": sniff(data), "width": image.width, "height": image.height,
            "bytes": len(data)}


def same_output(a: dict, b: dict) -> bool:
    """The same format and dimensions, give or take a pixel of rounding."""
    return (a["format"] == b["format"] and abs(a["width"] - b["width"]) <= 1
            and abs(a["height"] - b["height"]) <= 1)


def sample_outputs(w: Workload | Mix, vipsgate: Server, peers: list[Peer]) -> dict:
    """Requests 10**9 .. +SAMPLE from every server: what each answers, and mismatches."""
    sign = signer()
    ns = range(10**9, 10**9 + SAMPLE)
    outputs = {"vipsgate": [describe_output(fetch(vipsgate.port, sign(w.path(n)),
                                                  SAMPLE_TIMEOUT)) for n in ns]}
    for peer in peers:
        outputs[peer.name] = [describe_output(fetch(peer.server.port, peer.url(w.name, n),
                                                    SAMPLE_TIMEOUT)) for n in ns]
    mismatches = [f"{name} request {i}: {got} where vipsgate gave {want}"
                  for name, answers in outputs.items() if name != "vipsgate"
                  for i, (got, want) in enumerate(zip(answers, outputs["vipsgate"],
                                                      strict=True))
                  if not same_output(got, want)]
    if isinstance(w, Mix):  # vipsgate itself against what the request asks for
        for n, got in zip(ns, outputs["vipsgate"], strict=True):
            r = w.request(n)
            width, height = expected_size(r, MIX_SOURCES[r.source])
            want = {"format": r.fmt, "width": width, "height": height}
            if not same_output(got, want):
                mismatches.append(f"vipsgate request {n}: {got} where {r} asks for {want}")
    for line in mismatches:
        print(f"  ! {w.name} {line}", file=sys.stderr, flush=True)
    return {"outputs": outputs, "output_bytes": {k: sum(o["bytes"] for o in v)
                                                 for k, v in outputs.items()},
            "mismatches": mismatches}


def measure_peer(server: Server, paths: Iterator[str], args: argparse.Namespace,
                 close: bool) -> dict:
    """``measure_server`` plus each server process's share of the CPU time."""
    assert server.proc is not None
    pids = process_tree(server.proc.pid)[1:] or [server.proc.pid]
    before = [cpu_seconds(pid) for pid in pids]
    result = measure_server(server, paths, args, close)
    spent = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
    result["process_cpu_share"] = [round(x / max(sum(spent), 1e-9), 2) for x in spent]
    return result


def verdict(ratio: float, target: float | None) -> str | None:
    return None if target is None else ("met" if ratio >= target else "missed")


def rate(entry: dict, against: str) -> None:
    """vipsgate's req/s over ``against``'s, with the target and whether it is met."""
    ratio = round(entry["vipsgate"]["rps"] / max(entry[against]["rps"], 1e-9), 3)
    target = TARGETS.get((entry["name"], against))
    entry.setdefault("ratios", {})[against] = ratio
    entry.setdefault("targets", {})[against] = {"target": target,
                                                "verdict": verdict(ratio, target)}


def measure_cold(w: Workload | Mix, server: Server, peers: list[Peer],
                 args: argparse.Namespace) -> dict:
    """Every server on ``w``, once per round (``--rounds``, interleaved: vipsgate, then
    each peer, then again), each with fresh cold URLs; each figure is the median over
    the rounds (peak RSS the highest), so a machine that slows down for a while
    weighs on every server alike."""
    entry: dict = {"name": w.name, "title": w.title, **sample_outputs(w, server, peers)}
    if isinstance(w, Mix):  # a few requests a second: a longer window
        args = argparse.Namespace(**{**vars(args), "duration": args.mix_duration})
    count = int(args.max_rps * (args.duration + args.warmup + 1))
    rounds = max(1, args.rounds)
    runs: dict[str, list[dict]] = {}
    for round_ in range(rounds):
        label = f" [{round_ + 1}/{rounds}]" if rounds > 1 else ""
        start = 2 * count * round_
        runs.setdefault("vipsgate", []).append(
            measure_server(server, cold_paths(w, count, start), args))
        print(f"  {w.name:10s} vipsgate         {fmt(runs['vipsgate'][-1])}{label}", flush=True)
        if isinstance(w, Workload):  # what Connection: close costs vipsgate (thumbor's clients)
            runs.setdefault("vipsgate_close", []).append(
                measure_server(server, cold_paths(w, count, start + count), args, close=True))
            print(f"  {w.name:10s} vipsgate (close) {fmt(runs['vipsgate_close'][-1])}{label}",
                  flush=True)
        for peer in peers:
            runs.setdefault(peer.name, []).append(measure_peer(
                peer.server, peer.paths(w.name, 1 + 10**7 * round_), args, peer.close))
            mode = " (close)" if peer.close else ""
            print(f"  {w.name:10s} {peer.name + mode:16s} {fmt(runs[peer.name][-1])}{label}",
                  flush=True)
    for name, results in runs.items():
        entry[name] = combine(results)
    for peer in peers:
        rate(entry, peer.name)
    if args.peer_keepalive_check and peers and peers[0].close and w.name == "W1":
        key = peers[0].name + "_keepalive"
        entry[key] = measure_peer(peers[0].server, peers[0].paths(w.name, 10**6), args, False)
        print(f"  {w.name:10s} {key:16s} {fmt(entry[key])}", flush=True)
    return entry


def combine(results: list[dict]) -> dict:
    """One server's rounds as one result: the median of each figure, the highest peak
    RSS, the errors summed, and each round's req/s under ``rounds_rps``."""
    if len(results) == 1:
        return results[0]
    out = dict(results[len(results) // 2])  # the other keys (CPU shares) from one round
    for key in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_op"):
        out[key] = round(statistics.median(r[key] for r in results), 3)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in results)
    out["errors"] = sum(r["errors"] for r in results)
    out["rounds_rps"] = [r["rps"] for r in results]
    return out


def start_peers(stack: contextlib.ExitStack, peers: list[Peer], report: dict) -> None:
    """Start each peer inside ``stack``; one that does not start is removed from ``peers``
    and recorded under ``report["skipped"]``, the others' versions under ``peers``."""
    for peer in list(peers):
        try:
            stack.enter_context(peer.server)
        except RuntimeError as error:  # it did not start: skipped, with its log
            peer.server.stop()
            print(f"  ! {peer.name} did not start: {error}", file=sys.stderr)
            report["skipped"][peer.name] = f"did not start: {error}"
            peers.remove(peer)
            continue
        if peer.name == "ipx":
            peer.versions.update(started_versions(peer.server.log_path))
        report["peers"][peer.name] = peer.versions


def run_vs_peers(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="vipsgate-bench-peers-"))
    root = tmp / "images"
    root.mkdir()
    write_sources(root)
    cold = [w for w in [*WORKLOADS, *MIXES] if w.name in args.only]
    report: dict = {"machine": machine(), "settings": vars(args).copy(), "peers": {},
                    "workloads": {}}
    if any(isinstance(w, Mix) for w in cold):
        started = time.monotonic()
        report["mix_sources"] = write_mix_sources(root)
        print(f"mix sources: {len(report['mix_sources'])} photos, "
              f"{min(report['mix_sources'].values()) / 1e6:.1f}-"
              f"{max(report['mix_sources'].values()) / 1e6:.1f} MB, generated in "
              f"{time.monotonic() - started:.0f} s", flush=True)
    peers, report["skipped"] = make_peers(args.peers, root, tmp, args.peer_processes)
    sys.setswitchinterval(0.001)  # the server's value (cli.py)
    env = dict(item.split("=", 1) for item in args.server_env)
    server = vipsgate_server(root, tmp / "server.log", args.workers, args.processes, env)
    with contextlib.ExitStack() as stack:
        stack.enter_context(server)
        start_peers(stack, peers, report)
        print(f"vipsgate ({args.processes} process(es) x {args.workers} workers) vs "
              + (", ".join(f"{p.name} {p.versions.get(p.name, '')}" for p in peers) or "no peer")
              + f": {len(cold)} cold workloads, {args.duration:g} s each (mixes "
              f"{args.mix_duration:g} s), {args.connections} connections", flush=True)
        for w in cold:
            report["workloads"][w.name] = measure_cold(w, server, peers, args)
        if "W5" in args.only:
            hits = [cache_hits(server, tmp, args) for _ in range(max(1, args.rounds))]
            entry = {"name": "W5", "title": "cache hit of W1 (same URL repeated)",
                     "vipsgate": combine([h["server"] for h in hits]),
                     "bare_aiohttp": combine([h["bare_aiohttp"] for h in hits])}
            rate(entry, "bare_aiohttp")
            report["workloads"]["W5"] = entry
    codec_floor(report, root)  # one thread, after the servers have stopped
    return report


def codec_floor(report: dict, root: Path) -> None:
    """``MIX-NOAVIF``'s codec floor (``floor.mix_floor``), when the mix was measured."""
    if "MIX-NOAVIF" not in report["workloads"]:
        return
    mix = next(m for m in MIXES if m.name == "MIX-NOAVIF")
    sources = {name: (root / name).read_bytes() for name in MIX_SOURCES}
    report["workloads"]["MIX-NOAVIF"]["codec_floor"] = floor.mix_floor(
        sources, mix, lambda n: path_op(mix.path(n), sources[mix.request(n).source]))


def codec_floor_summary(entry: dict) -> str:
    c = entry["codec_floor"]
    ms = c["cpu_ms"]
    return (f"MIX-NOAVIF codec floor (CPU ms per request, one thread, {c['requests']} "
            f"requests, `loadtest/floor.py`): the cheaper decoder at the DCT scale + the "
            f"cheaper encoder, nothing else, {ms['floor']:.1f} (decode Pillow "
            f"{ms['pillow_decode']:.1f} / libvips {ms['vips_decode']:.1f}, encode Pillow "
            f"{ms['pillow_encode']:.1f} / libvips {ms['vips_encode']:.1f}); thumbor's pixel "
            f"work (draft, LANCZOS {ms['resize']:.1f}, encode) {ms['thumbor']:.1f}; vipsgate's "
            f"`process()` {ms['vipsgate']:.1f}. A server whose resize and HTTP cost nothing "
            f"would do **{c['ceiling']:.2f}x** thumbor's pixel work; vipsgate's `process()` "
            f"does {c['thumbor_over_vipsgate']:.2f}x, at {c['vipsgate_over_floor']:.2f}x "
            "the floor")


def _ratio_cell(entry: dict, peer: str) -> str:
    if peer not in entry.get("ratios", {}):
        return "–"
    ratio, target = entry["ratios"][peer], entry["targets"][peer]
    if target["target"] is None:
        return f"**{ratio:.2f}**"
    # two decimals, unless rounding them would read as the other verdict (0.598: "0.60")
    digits = 2 if verdict(round(ratio, 2), target["target"]) == target["verdict"] else 3
    return f"**{ratio:.{digits}f}** (≥ {target['target']:.1f}: {target['verdict']})"


def vs_summary(report: dict) -> str:
    """Markdown: req/s per server, vipsgate's ratio to each peer with the target, CPU per
    request, peak RSS and output bytes of the sampled requests."""
    peers = [p for p in PEER_ORDER if p in report["peers"]]
    servers = ["vipsgate", *peers]
    each = " / ".join(servers)
    lines = ["| workload | " + " | ".join(f"{s} req/s" for s in servers)
             + "".join(f" | vipsgate / {p}" for p in peers)
             + f" | CPU ms/req {each} | peak RSS MB {each} | output bytes ({SAMPLE} requests) "
             f"{each} |", "|---" * (5 + 2 * len(peers)) + "|"]
    for name, e in report["workloads"].items():
        if name == "W5":
            continue
        lines.append(f"| {name} {e['title']} | "
                     + " | ".join(f"{e[s]['rps']:.1f}" for s in servers)
                     + "".join(f" | {_ratio_cell(e, p)}" for p in peers)
                     + " | " + " / ".join(f"{e[s]['cpu_ms_per_op']:.1f}" for s in servers)
                     + " | " + " / ".join(f"{e[s]['peak_rss_mb']:.0f}" for s in servers)
                     + " | " + " / ".join(str(e["output_bytes"][s]) for s in servers) + " |")
    if "W5" in report["workloads"]:
        e = report["workloads"]["W5"]
        lines.append(f"\nW5 cache hits: vipsgate {e['vipsgate']['rps']:.0f} req/s, bare aiohttp "
                     f"{e['bare_aiohttp']['rps']:.0f} req/s: {_ratio_cell(e, 'bare_aiohttp')}")
    if "codec_floor" in report["workloads"].get("MIX-NOAVIF", {}):
        lines.append("\n" + codec_floor_summary(report["workloads"]["MIX-NOAVIF"]))
    verdicts = [t["verdict"] for e in report["workloads"].values()
                for t in e.get("targets", {}).values() if t["verdict"]]
    lines.append(f"\nTargets met: **{verdicts.count('met')} of {len(verdicts)}**"
                 + "".join(f"; {p} skipped: {why}" for p, why in report["skipped"].items()))
    return "\n".join(lines)


def vs_chart(report: dict, path: Path) -> None:
    """Bars per workload and server, W1-W4 and the mixes on separate scales."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    servers = ["vipsgate", *(p for p in PEER_ORDER if p in report["peers"])]
    colors = {"vipsgate": "C0", "thumbor": "C3", "ipx": "C2"}
    groups = [[n for n in report["workloads"] if n.startswith("W") and n != "W5"],
              [n for n in report["workloads"] if n.startswith("MIX")]]
    groups = [g for g in groups if g]
    fig, axes = plt.subplots(1, len(groups), figsize=(10, 4), squeeze=False,
                             gridspec_kw={"width_ratios": [len(g) for g in groups]})
    width = 0.8 / len(servers)
    for ax, names in zip(axes[0], groups, strict=True):
        for i, s in enumerate(servers):
            values = [report["workloads"][n][s]["rps"] for n in names]
            ax.bar([x + (i - (len(servers) - 1) / 2) * width for x in range(len(names))],
                   values, width, label=s, color=colors[s])
        for x, n in enumerate(names):
            e = report["workloads"][n]
            top = max(e[s]["rps"] for s in servers)
            text = "\n".join(f"/ {p} {r:.2f}x" for p, r in e.get("ratios", {}).items())
            ax.annotate(text, (x, top), ha="center", va="bottom", fontsize=7, xytext=(0, 3),
                        textcoords="offset points")
        ax.set_xticks(range(len(names)), [f"{n}\n{report['workloads'][n]['title']}"
                                          .replace(" -> ", "\n-> ").replace(", ", ",\n")
                                          for n in names], fontsize=6)
        ax.set_ylabel("requests / s (cold, unique URLs)")
        ax.margins(y=0.25)
    axes[0][0].legend(fontsize=7)
    m, s = report["machine"], report["settings"]
    peers = ", ".join(f"{p} {v.get(p, '')}" for p, v in report["peers"].items())
    fig.suptitle(f"vipsgate ({s['processes']} process x {s['workers']} workers) vs {peers}; "
                 f"{m['cpus']} CPUs, {s['connections']} connections", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
