"""The ``vipsgate`` command: ``serve``, ``sign``, ``config``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from .errors import ConfigError


def _prepare_libvips() -> None:
    """libvips settings that must be in place before pyvips loads."""
    os.environ.setdefault("VIPS_CONCURRENCY", "1")  # parallelism comes from requests
    os.environ.setdefault("VIPS_BLOCK_UNTRUSTED", "1")  # only vetted loaders
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vipsgate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the image server")
    serve_cmd.add_argument("--host", help="address to bind (default from VIPSGATE_BIND)")
    serve_cmd.add_argument("--port", type=int, help="port (default 8080)")
    sign = sub.add_parser("sign", help="print the signed path for PATH")
    sign.add_argument("path", help="e.g. /rs:fit:300:200/plain/local:///landscape.jpg")
    sub.add_parser("config", help="print the configuration table (Markdown)")
    args = parser.parse_args(argv)

    from . import config
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
    return serve(settings, args.host or host, args.port or port)


def serve(settings, host: str, port: int) -> int:  # type: ignore[no-untyped-def]
    _prepare_libvips()
    import pyvips

    from .server import create_app
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(message)s" if settings.log_format == "json"
                        else "%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
        uvloop.install() if sys.version_info < (3, 12) else None
        runner = uvloop.run if sys.version_info >= (3, 12) else asyncio.run
    except ImportError:  # pragma: no cover - uvloop missing on this platform
        runner = asyncio.run
    sys.setswitchinterval(0.001)  # hand the GIL to finished libvips threads sooner
    app = create_app(settings)
    runner(_serve(app, settings, host, port))
    return 0


async def _serve(app, settings, host: str, port: int) -> None:  # type: ignore[no-untyped-def]
    from aiohttp import web

    from .server import STATE
    runner = web.AppRunner(app, access_log=None,
                           shutdown_timeout=settings.graceful_stop_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=True, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = site._server.sockets[0].getsockname()[1] if site._server else port  # type: ignore[union-attr]
    _banner(settings, host, bound)
    await stop.wait()
    app[STATE].draining = True  # /ready answers 503 from now on
    logging.getLogger("vipsgate").info("draining: finishing in-flight requests")
    await runner.cleanup()


def _banner(settings, host: str, port: int) -> None:  # type: ignore[no-untyped-def]
    from .options import ProcessingOptions, build_path
    from .signing import Signer
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    print(f"vipsgate listening on {base} ({settings.worker_count} workers)", flush=True)
    if not settings.dev_mode:
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
