"""``vipsgate serve``: run the server (optionally several processes on one port) until
SIGTERM, then drain and stop gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .config import Settings
from .listen import BACKLOG

if TYPE_CHECKING:
    from aiohttp import web


def _limit_arenas() -> None:
    """glibc malloc arenas capped before any thread exists (``MALLOC_ARENA_MAX``, default
    2: the variable alone is read by glibc too early to be set from here)."""
    from .memory import limit_arenas
    arenas = os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    limit_arenas(int(arenas) if arenas.isdigit() else 2)


def serve(settings: Settings, host: str, port: int) -> int:
    """Serve until SIGTERM; with ``VIPSGATE_PROCESSES`` > 1, fork that many servers first
    (before libvips is loaded: its threads do not survive a fork). The ports are bound
    before anything starts, and a busy one stops start-up (``ListenError``)."""
    _limit_arenas()
    from .listen import close, listen, raise_descriptor_limit
    descriptors = raise_descriptor_limit()  # before forking: every process inherits it
    n = settings.process_count
    settings = dataclasses.replace(settings, processes=n)
    sockets = listen(host, port, n)
    metrics_sockets = None
    if settings.prometheus_bind:
        metrics_host, _, metrics_port = settings.prometheus_bind.rpartition(":")
        try:
            metrics_sockets = listen(metrics_host, int(metrics_port), n)
        except BaseException:
            close(sockets)
            raise
    index = 0
    if n > 1:
        index = _fork_servers(n, lambda: close([*sockets, *(metrics_sockets or [])]))
        settings = share(settings, n)  # each process gets its share; and its own sockets
        for others in (sockets, metrics_sockets or []):
            close([s for i, s in enumerate(others) if i != index])
    from .app import POOL, create_app
    from .logs import configure_logging, flush_access_log
    configure_logging(settings.log_level, settings.log_format)
    if index == 0:
        from .config.environment import warnings
        for line in warnings(os.environ):
            logging.getLogger("vipsgate").warning("%s", line)
    sys.setswitchinterval(0.001)  # hand the GIL to finished libvips threads sooner
    app = create_app(settings)
    main = _serve(app, settings, host, sockets[index],
                  metrics_sockets[index] if metrics_sockets else [], descriptors,
                  full_banner=index == 0)
    try:
        import uvloop
        uvloop.run(main)
    except ImportError:  # pragma: no cover - uvloop missing on this platform
        asyncio.run(main)
    pool = app[POOL]
    if pool.busy:
        # a libvips call cannot be interrupted, and Python would wait for its thread at
        # exit, past the grace period: the answers are gone, so leave now
        logging.getLogger("vipsgate").warning("exiting with %d images still in libvips",
                                              pool.busy)
        flush_access_log()
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    return 0


def share(settings: Settings, n: int, cgroup: str = "/sys/fs/cgroup/memory.max"
          ) -> Settings:
    """The settings of one of ``n`` processes: the caches, the memory budget (``auto``
    fitted to the cgroup limit now, for all of them) and the request queue are totals
    for the server, so each process gets its ``1/n``."""
    from .memory_budget import auto_limit
    budget = settings.memory_budget
    if budget == "auto":
        budget = auto_limit(settings.result_cache_bytes + settings.source_cache_bytes,
                            cgroup, runtime=n * 128 * 2**20)
    queue = settings.requests_queue_size
    return dataclasses.replace(
        settings, result_cache_bytes=settings.result_cache_bytes // n,
        source_cache_bytes=settings.source_cache_bytes // n,
        memory_budget=int(budget) // n,  # 0 (no budget) stays 0
        requests_queue_size=max(1, -(-queue // n)) if queue else 0)


def _fork_servers(count: int, release: Callable[[], None]) -> int:
    """Fork ``count`` server processes, each with its own SO_REUSEPORT socket on the port.

    Returns the process index in a child. The parent closes its copies of the sockets
    (they would keep the listeners open after the children close them: connections
    queued with nobody to answer) and becomes the supervisor (``supervise.py``): it
    never returns. Separate processes use both cores better than threads sharing one
    GIL. Metrics go through prometheus-client's multiprocess mode (a temporary
    directory, unless ``PROMETHEUS_MULTIPROC_DIR`` names one), so every ``/metrics``
    shows all processes.
    """
    from .multiprocess import enable_multiprocess, multiprocess_dir
    from .supervise import STOPS, command, supervise
    own_dir = None
    if not multiprocess_dir():  # shared metric files, so any process's /metrics sums all
        own_dir = tempfile.mkdtemp(prefix="vipsgate-metrics-")
        enable_multiprocess(own_dir)
    sys.stdout.flush()  # or each child would write what is still buffered again
    sys.stderr.flush()
    # SIGTERM/SIGINT wait (blocked) until someone handles them: each child once it
    # will die with the supervisor, the supervisor once its handlers are in place (the
    # mask survives exec). A stop in between is neither lost nor orphans a server.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    supervisor = os.getpid()
    children: list[int] = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            _die_with_parent(supervisor)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
            return index
        children.append(pid)
    release()
    argv = command(children, own_dir)
    try:
        os.execv(argv[0], argv)  # a child that exits meanwhile waits, a zombie, for it
    except OSError:  # no interpreter to exec (a frozen build): supervise from here
        sys.exit(supervise(children, own_dir))


async def _serve(app: web.Application, settings: Settings, host: str,
                 sockets: list[socket.socket], metrics_sockets: list[socket.socket],
                 descriptors: tuple[int, int], full_banner: bool = True) -> None:
    """Serve on ``sockets`` until SIGTERM/SIGINT, then shut down gracefully:

    1. ``/ready`` answers 503 (and responses close their connection) while the server
       keeps serving for ``VIPSGATE_DRAIN_DELAY`` seconds, so load balancers notice;
       a second signal skips the rest of this delay.
    2. The listener closes; in-flight requests get ``IMGPROXY_GRACEFUL_STOP_TIMEOUT``
       seconds to finish, then the app's cleanup closes the worker pool and sources.
    """
    from aiohttp import web

    from .app import FRONT
    from .connections import ConnectionGuard, client_cap, describe, listen_guarded
    from .metrics import metrics_app
    from .middleware import LIFECYCLE, METRICS
    log = logging.getLogger("vipsgate")
    metrics, lifecycle = app[METRICS], app[LIFECYCLE]
    cap, reserved = client_cap(settings, descriptors[0])
    guard = ConnectionGuard(cap, settings.read_request_timeout,
                            settings.write_response_timeout, metrics.registry,
                            front=app[FRONT].route)
    handler_args: dict[str, Any] = {"access_log": None,
                                    "keepalive_timeout": settings.keep_alive_timeout}
    # handler_cancellation: a client that hangs up leaves the cache flight it waited on;
    # when nobody else waits for that result, its queued work is never started
    # shutdown_timeout: aiohttp waits this long for handlers, then as long again after
    # cancelling the request payload (which does not stop a handler that has read it);
    # half each makes IMGPROXY_GRACEFUL_STOP_TIMEOUT the total before handlers are cancelled
    # the connections are guarded (connections.py: head deadline, cap); aiohttp's
    # keepalive_timeout closes idle ones
    runner = web.AppRunner(app, handler_cancellation=True,
                           shutdown_timeout=settings.graceful_stop_timeout / 2, **handler_args)
    listeners: list[asyncio.AbstractServer] = []
    try:
        await runner.setup()  # starts the app's cleanup contexts
        listeners = await listen_guarded(runner, sockets, guard, BACKLOG, **handler_args)
    except BaseException:
        for listener in listeners:
            listener.close()
        await runner.cleanup()  # closes the resources that did start
        raise
    runners = [runner]
    if metrics_sockets:  # a separate listener, stopped last
        metrics_runner = web.AppRunner(metrics_app(metrics), shutdown_timeout=1,
                                       **handler_args)
        await metrics_runner.setup()
        for sock in metrics_sockets:
            await web.SockSite(metrics_runner, sock).start()
        runners.append(metrics_runner)
    signals = asyncio.Queue[int]()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    if full_banner:
        log.info("%s", describe(guard, settings, descriptors, reserved))
    _banner(settings, host, sockets[0].getsockname()[1], full_banner)
    if metrics_sockets:
        metrics_host, metrics_port = metrics_sockets[0].getsockname()[:2]
        shown = f"[{metrics_host}]" if ":" in metrics_host else metrics_host
        print(f"vipsgate metrics on http://{shown}:{metrics_port}/metrics", flush=True)
    received = await signals.get()
    lifecycle.draining = True
    log.info("%s received: /ready answers 503; serving %.3gs more before closing the "
             "listener", signal.Signals(received).name, settings.drain_delay)
    if settings.drain_delay > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.drain_delay):
                await signals.get()  # a second signal ends the delay early
    log.info("closing the listener; finishing %d in-flight requests (up to %.3gs)",
             metrics.in_flight, settings.graceful_stop_timeout)
    for listener in listeners:
        listener.close()
    for each in runners:
        await each.cleanup()
    guard.close()
    log.info("stopped")


def _say(line: str) -> None:
    """One line to stdout in one write: sibling processes share the pipe, and a line
    written in pieces could interleave with theirs."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (line + "\n").encode())


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this process when the supervisor dies, even by SIGKILL; exit now
    if it died before this was set (this process was handed to another parent)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


def _banner(settings: Settings, host: str, port: int, full: bool = True) -> None:
    from .options import ProcessingOptions
    from .paths import build_path
    from .signing import Signer
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    where = f", process {os.getpid()}" if settings.processes > 1 else ""
    _say(f"vipsgate listening on {base} ({settings.worker_count} workers{where})")
    if not settings.dev_mode or not full:
        return
    signer = Signer.from_hex(settings.keys, settings.salts, settings.signature_size)
    print("\nDevelopment mode: no IMGPROXY_KEY/IMGPROXY_SALT set, so this run uses a random key.")
    print(f"  IMGPROXY_KEY={settings.keys[0]}\n  IMGPROXY_SALT={settings.salts[0]}")
    print(f"  serving sample images from {settings.local_root}\n\nTry:")
    examples = [
        (ProcessingOptions(resizing_type="fill", width=300, height=200),
         "local:///landscape.jpg", "plain"),
        (ProcessingOptions(resizing_type="fit", width=400, height=400, format="webp"),
         "local:///portrait-exif6.jpg", "plain"),
        (ProcessingOptions(resizing_type="fill", width=200, height=200, background=(30, 30, 30),
                           format="png"), "local:///logo.png", "base64"),
    ]
    for options, source, encoding in examples:
        path = build_path(options, source, encoding)
        print(f"  {base}/{signer.sign(path)}{path}")
    if settings.playground:
        print(f"\nPlayground: {base}/playground")
    print(flush=True)


