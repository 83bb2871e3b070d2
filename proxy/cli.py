"""The ``vipsgate`` command: ``serve``, ``sign``, ``config``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence

from .errors import ConfigError


def _prepare_libvips() -> None:
    """libvips settings that must be in place before pyvips loads."""
    os.environ.setdefault("VIPS_CONCURRENCY", "1")  # parallelism comes from requests
    # block libvips' untrusted loaders from the start; the pipeline then narrows the
    # loaders to formats.SAFE_LOADERS (which re-allows SVG: it is only rasterised)
    os.environ.setdefault("VIPS_BLOCK_UNTRUSTED", "1")
    from .memory import limit_arenas
    arenas = os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    limit_arenas(int(arenas) if arenas.isdigit() else 2)  # the variable alone is read too late


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vipsgate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the image server")
    serve_cmd.add_argument("--host", help="address to bind (default from VIPSGATE_BIND)")
    serve_cmd.add_argument("--port", type=int, help="port (default 8080)")
    serve_cmd.add_argument("--processes", type=int,
                           help="server processes sharing the port (default VIPSGATE_PROCESSES)")
    sign = sub.add_parser("sign", help="print the signed path for PATH")
    sign.add_argument("path", help="e.g. /rs:fit:300:200/plain/local:///landscape.jpg")
    sub.add_parser("config", help="print the configuration table (Markdown)")
    _add_warm_parser(sub)
    args = parser.parse_args(argv)

    from . import config
    if args.command == "warm":
        return warm_command(args)
    if args.command == "config":
        print(config.settings_table())
        return 0
    try:
        settings = config.from_env()
    except ConfigError as exc:
        print(f"vipsgate: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "sign":
        from .signing import Signer
        if settings.dev_mode:
            print("vipsgate: set IMGPROXY_KEY and IMGPROXY_SALT to sign URLs", file=sys.stderr)
            return 2
        signer = Signer.from_hex(settings.keys, settings.salts, settings.signature_size)
        path = args.path if args.path.startswith("/") else "/" + args.path
        print(f"/{signer.sign(path)}{path}")
        return 0
    host, port = settings.host_port
    if args.processes is not None:
        if args.processes < 1:
            print("vipsgate: --processes must be at least 1", file=sys.stderr)
            return 2
        settings = dataclasses.replace(settings, processes=args.processes)
    return serve(settings, args.host or host, port if args.port is None else args.port)


def serve(settings, host: str, port: int) -> int:  # type: ignore[no-untyped-def]
    _prepare_libvips()
    index = 0
    if settings.processes > 1:
        if port == 0:
            print("vipsgate: several processes need a fixed port", file=sys.stderr)
            return 2
        forked = _fork_servers(settings.processes)
        if isinstance(forked, ExitCode):
            return forked.code
        index = forked
        n = settings.processes  # the cache sizes are totals: each process gets its share
        settings = dataclasses.replace(settings, result_cache_bytes=settings.result_cache_bytes
                                       // n, source_cache_bytes=settings.source_cache_bytes // n)
    import pyvips

    from .server import create_app
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    from .middleware import configure_logging, flush_access_log
    configure_logging(settings.log_level, settings.log_format)
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop missing on this platform
        runner = asyncio.run
    sys.setswitchinterval(0.001)  # hand the GIL to finished libvips threads sooner
    app = create_app(settings)
    runner(_serve(app, settings, host, port, full_banner=index == 0))
    from .server import STATE
    pool = app[STATE].pool
    if pool is not None and pool.busy:
        # a libvips call cannot be interrupted, and Python would wait for its thread at
        # exit, past the grace period: the answers are gone, so leave now
        logging.getLogger("vipsgate").warning("exiting with %d images still in libvips",
                                              pool.busy)
        flush_access_log()
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    return 0


@dataclasses.dataclass(frozen=True)
class ExitCode:
    code: int


def _fork_servers(count: int) -> int | ExitCode:
    """Fork ``count`` server processes that share the port with SO_REUSEPORT.

    Returns the process index in a child. The parent only supervises: it forwards
    SIGTERM/SIGINT, and when one child dies unexpectedly it stops the others and
    returns a failing ``ExitCode`` (the orchestrator restarts the whole server).
    Separate processes use both cores better than threads sharing one GIL. Metrics
    go through prometheus-client's multiprocess mode (a temporary directory, unless
    ``PROMETHEUS_MULTIPROC_DIR`` names one), so every ``/metrics`` shows all processes.
    """
    from .metrics import enable_multiprocess, multiprocess_dir, process_exited
    own_dir = None
    if not multiprocess_dir():  # shared metric files, so any process's /metrics sums all
        own_dir = tempfile.mkdtemp(prefix="vipsgate-metrics-")
        enable_multiprocess(own_dir)
    children: list[int] = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            return index
        children.append(pid)
    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status, remaining = 0, set(children)
    while remaining:
        pid, raw = os.wait()
        remaining.discard(pid)
        process_exited(pid)
        code = os.waitstatus_to_exitcode(raw)
        if code != 0 and not stopping:
            status = 1
            forward(signal.SIGTERM, None)
    if own_dir:
        shutil.rmtree(own_dir, ignore_errors=True)
    return ExitCode(status)


async def _serve(app, settings, host: str, port: int,  # type: ignore[no-untyped-def]
                 full_banner: bool = True) -> None:
    """Serve until SIGTERM/SIGINT, then shut down gracefully:

    1. ``/ready`` answers 503 (and responses close their connection) while the server
       keeps serving for ``VIPSGATE_DRAIN_DELAY`` seconds, so load balancers notice;
       a second signal skips the rest of this delay.
    2. The listener closes; in-flight requests get ``IMGPROXY_GRACEFUL_STOP_TIMEOUT``
       seconds to finish, then the app's cleanup closes the worker pool and sources.
    """
    from aiohttp import web

    from .metrics import metrics_app
    from .server import STATE
    log = logging.getLogger("vipsgate")
    state = app[STATE]
    # handler_cancellation: a client that hangs up leaves the cache flight it waited on;
    # when nobody else waits for that result, its queued work is never started
    # shutdown_timeout: aiohttp waits this long for handlers, then as long again after
    # cancelling the request payload (which does not stop a handler that has read it);
    # half each makes IMGPROXY_GRACEFUL_STOP_TIMEOUT the total before handlers are cancelled
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                           shutdown_timeout=settings.graceful_stop_timeout / 2)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=True, backlog=1024)
    await site.start()
    runners = [runner]
    metrics_site = None
    if settings.prometheus_bind:  # a separate listener, stopped last
        metrics_runner = web.AppRunner(metrics_app(state.metrics), access_log=None,
                                       shutdown_timeout=1)
        await metrics_runner.setup()
        metrics_host, _, metrics_port = settings.prometheus_bind.rpartition(":")
        metrics_site = web.TCPSite(metrics_runner, metrics_host, int(metrics_port),
                                   reuse_port=True)
        await metrics_site.start()
        runners.append(metrics_runner)
    signals = asyncio.Queue[int]()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    _banner(settings, host, _bound_port(site, port), full_banner)
    if metrics_site is not None:
        print(f"vipsgate metrics on http://{metrics_host}:{_bound_port(metrics_site, 0)}"
              "/metrics", flush=True)
    received = await signals.get()
    state.draining = True
    log.info("%s received: /ready answers 503; serving %.3gs more before closing the "
             "listener", signal.Signals(received).name, settings.drain_delay)
    if settings.drain_delay > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.drain_delay):
                await signals.get()  # a second signal ends the delay early
    log.info("closing the listener; finishing %d in-flight requests (up to %.3gs)",
             state.metrics.in_flight, settings.graceful_stop_timeout)
    for each in runners:
        await each.cleanup()
    log.info("stopped")


def _say(line: str) -> None:
    """One line to stdout in one write: sibling processes share the pipe, and a line
    written in pieces could interleave with theirs."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (line + "\n").encode())


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the supervisor dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _bound_port(site, default: int) -> int:  # type: ignore[no-untyped-def]
    server = site._server  # aiohttp keeps the asyncio server here
    return server.sockets[0].getsockname()[1] if server and server.sockets else default


def _banner(settings, host: str, port: int,  # type: ignore[no-untyped-def]
            full: bool = True) -> None:
    from .options import ProcessingOptions, build_path
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


def _add_warm_parser(sub) -> None:  # type: ignore[no-untyped-def]
    warm = sub.add_parser("warm", help="request URLs ahead of traffic to fill caches")
    warm.add_argument("urls", nargs="?", default="-",
                      help="file of signed URLs or paths, one per line (default: stdin)")
    warm.add_argument("--base-url", default="", help="prefix for paths, e.g. https://cdn.example")
    warm.add_argument("--sources", help="file of source URLs to build signed URLs from")
    warm.add_argument("--options", action="append", default=[],
                      help="option set for --sources, e.g. rs:fill:300:200/g:sm (repeatable); "
                           "presets as pr:NAME")
    warm.add_argument("--format", action="append", choices=["avif", "webp", "jpeg"],
                      help="formats to warm via Accept (repeatable; default all three)")
    warm.add_argument("--concurrency", type=int, default=8)
    warm.add_argument("--rate", type=float, default=None, help="requests per second at most")
    warm.add_argument("--retries", type=int, default=4)
    warm.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    warm.add_argument("--failed", default="warm-failed.txt",
                      help="where to write URLs that finally failed")


def warm_command(args) -> int:  # type: ignore[no-untyped-def]
    from . import warm

    if args.sources:
        urls = _built_urls(args)
        if urls is None:
            return 2
    else:
        stream = sys.stdin if args.urls == "-" else open(args.urls)  # noqa: SIM115
        with stream:
            urls = warm.read_urls(stream, args.base_url)
    formats = args.format or ["avif", "webp", "jpeg"]
    jobs = warm.build_jobs(urls, formats)
    secret = os.environ.get("IMGPROXY_SECRET", "")
    headers = {"Authorization": f"Bearer {secret}"} if secret else None
    summary = asyncio.run(warm.warm(jobs, args.concurrency, args.rate, args.retries,
                                    args.timeout, warm.Progress(), headers))
    warm.report(summary, sys.stderr)
    if summary.failed:
        with open(args.failed, "w") as fh:
            fh.writelines(sorted({job.url + "\n" for job in summary.failed}))
        print(f"vipsgate: {len(summary.failed)} requests failed; URLs in {args.failed}",
              file=sys.stderr)
        return 1
    return 0


def _built_urls(args) -> list[str] | None:  # type: ignore[no-untyped-def]
    """Signed URLs for every source x option set, with the configured key."""
    from . import config
    from .options import encode_source
    from .signing import Signer

    settings = config.from_env()
    if settings.dev_mode or not args.base_url:
        print("vipsgate: --sources needs --base-url and IMGPROXY_KEY/IMGPROXY_SALT",
              file=sys.stderr)
        return None
    signer = Signer.from_hex(settings.keys, settings.salts, settings.signature_size)
    with open(args.sources) as fh:
        sources = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    urls = []
    for source in sources:
        for option_set in args.options or [""]:
            path = "/" + "/".join(p for p in (option_set.strip("/"), encode_source(source)) if p)
            urls.append(f"{args.base_url.rstrip('/')}/{signer.sign(path)}{path}")
    return urls

