"""Slowloris, measured: half-sent connections against ``vipsgate serve`` while normal
requests run, with the descriptor limit a default Linux shell gives (``ulimit -n 1024``).

    python loadtest/slowloris.py [--before /path/to/other/checkout] [--attackers 1100]

The server runs with its default settings (a key, a salt and a ``local:///`` root, no
other setting) and ``RLIMIT_NOFILE`` set to ``--nofile`` (soft and hard) before it
starts. The attacker (this process) keeps ``--attackers`` connections open, each with a
request head it never finishes; like the slowloris tool, it sends one more header line
on each every ``--every`` seconds, and re-opens a connection the server closed after
```--reopen`` seconds (in a process of its own, so that its bursts do not delay the
normal clients' event loop). Once they are open, ``--clients`` normal clients request a cached
result, each over a new connection (``Connection: close``) ``--rate`` times a second,
with a 5 s deadline each, for ``--duration`` seconds. Reported per side: the normal
requests' success rate, latency and why the others failed; the most descriptors the
server held; the attack connections open; and (this checkout) what the server closed.
With ``--before`` the other checkout runs the same scenario in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import resource
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest.common import KEY, SALT, Server, _exchange, _photo, no_metadata, signer
from loadtest.paired import LAUNCH, package_name

ROOT = Path(__file__).resolve().parent.parent
HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n"
DEADLINE = 5.0  # seconds a normal request may take


class Attack:
    """The attack's counters, shared with the process that runs it."""

    FIELDS = ("open", "opened", "closed_by_server", "failed_connects")

    def __init__(self, shared: Any) -> None:
        self.shared = shared  # multiprocessing.Array("q", 4, lock=False)

    def __getattr__(self, name: str) -> int:
        return int(self.shared[Attack.FIELDS.index(name)])

    def add(self, name: str, delta: int = 1) -> None:
        self.shared[Attack.FIELDS.index(name)] += delta  # only the attack process writes


@dataclass
class Normal:
    attempts: int = 0
    latencies: list[float] = field(default_factory=list)  # of the 200s
    failures: dict[str, int] = field(default_factory=dict)

    def fail(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1


async def pause(stop: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass


async def attacker(port: int, stop: asyncio.Event, state: Attack, every: float,
                   reopen: float) -> None:
    """One slowloris connection, re-opened when the server closes it."""
    while not stop.is_set():
        try:
            async with asyncio.timeout(DEADLINE):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except (OSError, TimeoutError):
            state.add("failed_connects")
            await pause(stop, reopen)
            continue
        state.add("open")
        state.add("opened")
        try:
            writer.write(HEAD)
            while not stop.is_set():
                try:
                    async with asyncio.timeout(every):
                        if not await reader.read(4096):  # closed (or a 503, then closed)
                            state.add("closed_by_server")
                            break
                except TimeoutError:
                    writer.write(b"X-Slow: 1\r\n")  # one more header line, never the end
        except OSError:
            state.add("closed_by_server")
        finally:
            state.add("open", -1)
            writer.close()
        await pause(stop, reopen)


def attack_process(port: int, count: int, every: float, reopen: float, shared: Any,
                   stop: Any) -> None:
    """The attack in a process of its own, until ``stop`` (a multiprocessing event)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, count + 64), hard), hard))

    async def run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=lambda: (stop.wait(), loop.call_soon_threadsafe(stopping.set)),
                         daemon=True).start()
        state = Attack(shared)
        await asyncio.gather(*(attacker(port, stopping, state, every, reopen)
                               for _ in range(count)))
        await stopping.wait()  # never exit inside stop.wait(): the event would break

    _run(run())


def _run(main: Any) -> Any:
    try:
        import uvloop
        return uvloop.run(main)
    except ImportError:  # pragma: no cover
        return asyncio.run(main)


async def client(port: int, request: bytes, rate: float, until: float, normal: Normal) -> None:
    """Normal requests at a steady pace, each on a new connection, each within DEADLINE."""
    clock = time.perf_counter
    due = clock()
    while due < until:
        await asyncio.sleep(max(0.0, due - clock()))
        due += 1 / rate
        started = clock()
        normal.attempts += 1
        writer = None
        try:
            async with asyncio.timeout(DEADLINE):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                status = await _exchange(reader, writer, request)
            if status == 200:
                normal.latencies.append(clock() - started)
            else:
                normal.fail(f"status {status}")
        except TimeoutError:
            normal.fail("no answer within 5 s")
        except (OSError, asyncio.IncompleteReadError) as exc:
            normal.fail(f"connection: {type(exc).__name__}")
        finally:
            if writer is not None:
                writer.close()


def descriptors(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


async def scenario(server: Server, args: argparse.Namespace, path: str) -> dict:
    assert server.proc is not None
    pid, port = server.proc.pid, server.port
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").encode()
    warm = Normal()
    await client(port, request, 10, time.perf_counter() + 0.3, warm)  # the result cached
    assert warm.latencies, f"the server did not answer: {warm.failures}"
    spawn = multiprocessing.get_context("spawn")
    shared = spawn.Array("q", len(Attack.FIELDS), lock=False)  # one writer: the attack
    stop = spawn.Event()
    attack = Attack(shared)
    fds: list[int] = []
    samples: list[int] = []  # attack connections open
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.25):
            fds.append(descriptors(pid))
            samples.append(attack.open)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    process = spawn.Process(target=attack_process, args=(
        port, args.attackers, args.every, args.reopen, shared, stop), daemon=True)
    process.start()
    ramp_until = time.monotonic() + args.ramp
    while attack.opened < args.attackers and time.monotonic() < ramp_until:
        await asyncio.sleep(0.05)  # polling the attack's own counter while it ramps up
    normal = Normal()
    window = len(samples)
    until = time.perf_counter() + args.duration
    await asyncio.gather(*(client(port, request, args.rate, until, normal)
                           for _ in range(args.clients)))
    during = samples[window:] or [attack.open]
    stop.set()
    await asyncio.to_thread(process.join, 30)
    sampling.set()
    sampler.join()
    ordered = sorted(normal.latencies)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1) \
            if ordered else 0.0

    return {"normal_requests": normal.attempts, "succeeded": len(ordered),
            "success_rate": round(len(ordered) / normal.attempts, 4) if normal.attempts else 0,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "failures": normal.failures, "server_fds_max": max(fds, default=0),
            "attack_open_min": min(during), "attack_open_max": max(during),
            "attack_opened": attack.opened, "attack_closed_by_server": attack.closed_by_server,
            "attack_failed_connects": attack.failed_connects,
            "server_closed": closed_by_reason(port)}


def closed_by_reason(port: int) -> dict[str, float]:
    """``vipsgate_client_connections_closed_total`` (none before the guard existed)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    found = re.findall(r'^vipsgate_client_connections_closed_total\{reason="(\w+)"\} (\S+)$',
                       text, re.MULTILINE)
    return {reason: float(value) for reason, value in found}


def server_for(checkout: Path, root: Path, log: Path, nofile: int) -> Server:
    package = checkout / "proxy"
    code = LAUNCH.format(name=package_name(checkout), init=str(package / "__init__.py"),
                         package=str(package))
    env = {"IMGPROXY_KEY": KEY, "IMGPROXY_SALT": SALT,
           "IMGPROXY_LOCAL_FILESYSTEM_ROOT": str(root)}
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("IMGPROXY_", "VIPSGATE_"))}

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    server = Server([sys.executable, "-c", code, "serve", "--host", "127.0.0.1"], env, log,
                    b"vipsgate listening on", preexec=limit)
    server.env = {**environ, **env}
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="the other checkout")
    parser.add_argument("--attackers", type=int, default=1100)
    parser.add_argument("--nofile", type=int, default=1024,
                        help="the server's descriptor limit (soft and hard)")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--ramp", type=float, default=10.0,
                        help="at most this long to open the attack connections")
    parser.add_argument("--every", type=float, default=5.0,
                        help="seconds between header lines on an attack connection")
    parser.add_argument("--reopen", type=float, default=1.0,
                        help="seconds before a closed attack connection is opened again")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=10.0, help="requests/s per client")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.attackers + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(need, soft), hard), hard))
    sides = {"after": ROOT}
    if args.before:
        sides["before"] = args.before.resolve()
    path = signer()("/rs:fit:300:300/plain/local:///photo.jpg")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="vipsgate-slowloris-") as tmp:
        root = Path(tmp)
        (root / "photo.jpg").write_bytes(_photo(1920, 1080).jpegsave_buffer(
            Q=90, **no_metadata()))
        for side, checkout in sides.items():
            log = root / f"{side}.log"
            with server_for(checkout, root, log, args.nofile) as server:
                results[side] = _run(scenario(server, args, path))
            results[side]["server_log_errors"] = log.read_text(errors="replace").count("ERROR")
            print(f"{side}: {json.dumps(results[side])}", flush=True)
    print(f"\n{args.attackers} half-sent connections, server RLIMIT_NOFILE {args.nofile}, "
          f"{args.clients} clients x {args.rate:g} req/s for {args.duration:g} s\n")
    print("| side | normal requests | succeeded | p50 / p99 / max ms | failures | server fds "
          "max | attack connections open | closed by the server |")
    print("|---|---|---|---|---|---|---|---|")
    for side, r in results.items():
        failures = ", ".join(f"{k}: {v}" for k, v in r["failures"].items()) or "none"
        closed = ", ".join(f"{k} {v:g}" for k, v in r["server_closed"].items() if v) or "–"
        print(f"| {side} | {r['normal_requests']} | {r['succeeded']} "
              f"(**{r['success_rate']:.1%}**) | {r['p50_ms']} / {r['p99_ms']} / {r['max_ms']} | "
              f"{failures} | {r['server_fds_max']} | {r['attack_open_min']}–"
              f"{r['attack_open_max']} | {closed} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
