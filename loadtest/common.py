"""Shared helpers for the benchmarks: source images, a server subprocess, a raw HTTP
load client, RSS sampling. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
SALT = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
SOURCES = {"photo_1080.jpg": (1920, 1080), "photo_12mp.jpg": (4000, 3000),
           "alpha.png": (1200, 800)}


def prepare_libvips() -> None:
    """The server's libvips settings (see proxy/processing/vips.py), before pyvips loads."""
    os.environ.setdefault("VIPS_CONCURRENCY", "1")
    os.environ.setdefault("VIPS_BLOCK_UNTRUSTED", "1")


# --- source images ----------------------------------------------------------------

def _photo(width: int, height: int):  # type: ignore[no-untyped-def]
    """Photo-like sRGB: smooth gradients, shapes, fine noise (compresses like a photo)."""
    import pyvips
    xyz = pyvips.Image.xyz(width, height)
    x, y = xyz[0], xyz[1]
    r = (x * (6.28 / width * 3)).sin() * 60 + x * (120 / width) + 40
    g = (y * (6.28 / height * 2)).cos() * 50 + y * (150 / height) + 40
    b = ((x + y) * (6.28 / (width + height) * 5)).sin() * 40 + 110
    image = r.bandjoin([g, b])
    image = image.draw_circle([240, 60, 40], width // 3, height // 2, min(width, height) // 5,
                              fill=True)
    image = image.draw_rect([30, 160, 70], width * 2 // 3, height // 5, width // 6, height // 3,
                            fill=True)
    noise = pyvips.Image.gaussnoise(width, height, sigma=7, mean=0).gaussblur(0.6)
    image = image + noise.bandjoin([noise, noise])
    return image.cast("uchar").copy(interpretation="srgb")


def _alpha_png(width: int, height: int) -> bytes:
    import pyvips
    xyz = pyvips.Image.xyz(width, height)
    cx, cy = xyz[0] - width / 2, xyz[1] - height / 2
    alpha = ((cx * cx + cy * cy) ** 0.5 < min(width, height) / 2.2).ifthenelse(255, 0)
    alpha = alpha.gaussblur(2)
    rgb = _photo(width, height)
    return rgb.bandjoin(alpha.cast("uchar")).copy(interpretation="srgb").pngsave_buffer()


def no_metadata() -> dict[str, object]:
    """Save options that drop metadata, for libvips before and after 8.15's ``keep``."""
    import pyvips
    return {"keep": "none"} if pyvips.at_least_libvips(8, 15) else {"strip": True}


def write_sources(directory: Path) -> dict[str, bytes]:
    """Generate the benchmark sources into ``directory``; returns name -> bytes."""
    out: dict[str, bytes] = {}
    for name, (w, h) in SOURCES.items():
        data = (_alpha_png(w, h) if name.endswith(".png")
                else _photo(w, h).jpegsave_buffer(Q=90, **no_metadata()))
        (directory / name).write_bytes(data)
        out[name] = data
    return out


# --- URLs ---------------------------------------------------------------------------

def signed_path(path: str) -> str:
    from vipsgate.signing import Signer
    return f"/{Signer.from_hex([KEY], [SALT]).sign(path)}{path}"


def signer() -> Callable[[str], str]:
    from vipsgate.signing import Signer
    s = Signer.from_hex([KEY], [SALT])
    return lambda path: f"/{s.sign(path)}{path}"


# --- the server under test ----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_listening(port: int, proc: subprocess.Popen, log: Path, marker: bytes,
                         count: int, timeout: float = 30.0) -> None:
    """Wait until the log shows ``count`` listeners and 127.0.0.1:port accepts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        if log.read_bytes().count(marker) >= count:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                pass
        time.sleep(0.05)  # polling a subprocess's start-up; there is nothing to wait on
    raise RuntimeError("server did not start")


@dataclass
class Server:
    """A subprocess serving on 127.0.0.1:port; ``stop()`` sends SIGTERM."""

    argv: Sequence[str]
    env: dict[str, str]
    log_path: Path
    marker: bytes = b"listening"  # printed once per process when it is ready
    processes: int = 1
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    preexec: Callable[[], None] | None = None  # run in the child before it starts

    def start(self) -> Server:
        env = {**os.environ, **self.env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([*self.argv, "--port", str(self.port)], env=env,
                                     stdout=log, stderr=log, cwd=ROOT,
                                     preexec_fn=self.preexec)
        log.close()
        wait_until_listening(self.port, self.proc, self.log_path, self.marker, self.processes)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def vipsgate_server(root: Path, log_path: Path, workers: int, processes: int = 1,
                    extra_env: dict[str, str] | None = None,
                    python_prelude: str = "") -> Server:
    """``python -m proxy serve`` with the bench key/salt and ``root`` as local:///."""
    env = {"IMGPROXY_KEY": KEY, "IMGPROXY_SALT": SALT, "IMGPROXY_WORKERS": str(workers),
           "IMGPROXY_LOCAL_FILESYSTEM_ROOT": str(root), "IMGPROXY_REQUESTS_QUEUE_SIZE": "256",
           "VIPSGATE_PROCESSES": str(processes), **(extra_env or {})}
    if python_prelude:  # an experiment: code run before the CLI (see bench --prelude)
        code = f"{python_prelude}\nimport sys\nfrom vipsgate.cli import main\nsys.exit(main())"
        argv = [sys.executable, "-c", code, "serve", "--host", "127.0.0.1"]
    else:
        argv = [sys.executable, "-m", "vipsgate", "serve", "--host", "127.0.0.1"]
    return Server(argv, env, log_path, b"vipsgate listening on", processes)


# --- RSS ----------------------------------------------------------------------------

def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                text = Path(f"/proc/{p}/task/{task}/children").read_text()
                todo.extend(int(c) for c in text.split())
        except OSError:
            continue
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants (that are still alive)."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


class RssSampler:
    """Samples the process tree's RSS every 50 ms in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self._stop.wait(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


# --- load ---------------------------------------------------------------------------

@dataclass
class Stats:
    count: int
    seconds: float
    latencies: list[float]
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    total: int = 0  # completions including the warm-up, for CPU time per request
    cpu: float = 0.0  # CPU seconds spent by the measured side over the whole run

    @property
    def cpu_per_op(self) -> float:
        return self.cpu / self.total if self.total else 0.0

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> int:
    """Send one GET, read the whole answer; returns the status."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = None
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    await (reader.read() if length is None else reader.readexactly(length))
    return int(head[9:12])


def _record(stats: Stats, started: float, done: float, status: int, measure_from: float,
            until: float) -> None:
    stats.total += 1
    if measure_from <= done <= until:  # completions inside the window
        stats.count += 1
        stats.latencies.append(done - started)
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
        if status != 200:
            stats.errors += 1


async def _connection(port: int, paths: Iterator[str], headers: bytes, until: float,
                      measure_from: float, stats: Stats) -> None:
    """One keep-alive connection, one request after another until ``until``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = time.perf_counter  # uvloop's loop.time() has only millisecond resolution
    try:
        while True:
            started = clock()
            if started >= until:
                return
            request = (b"GET " + next(paths).encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       + headers + b"\r\n")
            status = await _exchange(reader, writer, request)
            _record(stats, started, clock(), status, measure_from, until)
    finally:
        writer.close()


async def _closing_client(port: int, paths: Iterator[str], headers: bytes, until: float,
                          measure_from: float, stats: Stats) -> None:
    """A new connection per request with ``Connection: close`` (latency includes connect).

    A failed connection or a cut-off answer counts as status 0.
    """
    clock = time.perf_counter
    while True:
        started = clock()
        if started >= until:
            return
        request = (b"GET " + next(paths).encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Connection: close\r\n" + headers + b"\r\n")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            _record(stats, started, clock(), 0, measure_from, until)
            continue
        try:
            status = await _exchange(reader, writer, request)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            status = 0
        finally:
            writer.close()
        _record(stats, started, clock(), status, measure_from, until)


async def _load(port: int, paths: Iterator[str], connections: int, duration: float,
                warmup: float, headers: dict[str, str], close: bool = False) -> Stats:
    start = time.perf_counter()
    measure_from, until = start + warmup, start + warmup + duration
    stats = Stats(0, duration, [])
    raw = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
    client = _closing_client if close else _connection
    await asyncio.gather(*(client(port, paths, raw, until, measure_from, stats)
                           for _ in range(connections)))
    return stats


def http_load(port: int, paths: Iterator[str], connections: int, duration: float,
              warmup: float = 1.0, headers: dict[str, str] | None = None,
              server_pid: int | None = None, close: bool = False) -> Stats:
    """Keep-alive GETs over ``connections`` connections; counts responses in the window.

    ``close``: ``connections`` concurrent clients that each open a new connection per
    request and send ``Connection: close`` instead.

    A small raw HTTP/1.1 client on uvloop (much cheaper per request than aiohttp's
    client, so the client steals less CPU from the server on a small machine).
    """
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    cpu_start = cpu_seconds(server_pid) if server_pid else 0.0
    stats = runner(_load(port, paths, connections, duration, warmup, headers or {},
                         close))
    stats.cpu = cpu_seconds(server_pid) - cpu_start if server_pid else 0.0
    return stats


def thread_load(fn: Callable[[], object], threads: int, duration: float,
                warmup: float = 1.0) -> Stats:
    """Call ``fn`` in a loop from ``threads`` threads; the main thread only waits."""
    start = time.perf_counter()
    measure_from, until = start + warmup, start + warmup + duration
    stats = Stats(0, duration, [])
    lock = threading.Lock()
    cpu_start = time.process_time()

    def worker() -> None:
        mine: list[float] = []
        total = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= until:
                break
            fn()
            t1 = time.perf_counter()
            if measure_from <= t1 <= until:
                mine.append(t1 - t0)
            total += 1
        with lock:
            stats.latencies.extend(mine)
            stats.count += len(mine)
            stats.total += total

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    stats.cpu = time.process_time() - cpu_start
    return stats


# --- an HTTP origin ------------------------------------------------------------------

class Origin(Server):
    """The throttled origin, in its own process."""

    def __init__(self, root: Path, log: Path) -> None:
        super().__init__([sys.executable, str(ROOT / "loadtest" / "throttled_origin.py"),
                          str(root)], {}, log, b"origin listening")

    def url(self, alias: str, name: str, rate: int = 0) -> str:
        query = f"?rate={rate}" if rate else ""
        return f"http://127.0.0.1:{self.port}/{alias}/{name}{query}"


def source_path(url: str, options: str = "rs:fit:300:300") -> str:
    from vipsgate.paths import encode_source
    return signer()(f"/{options}/{encode_source(url)}")
