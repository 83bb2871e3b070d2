"""The ``vipsgate`` command line: serve, sign, config, warm, health."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError, ListenError

DESCRIPTION = """\
vipsgate: an imgproxy-compatible image proxy (aiohttp + libvips).

Settings come from IMGPROXY_* / VIPSGATE_* environment variables: `vipsgate config`
lists them, `vipsgate config --check` checks the environment. `vipsgate COMMAND --help`
describes each command.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vipsgate", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve_cmd = sub.add_parser("serve", help="run the image server")
    serve_cmd.add_argument("--host", help="address to bind (default from VIPSGATE_BIND)")
    serve_cmd.add_argument("--port", type=int, help="port (default 8080)")
    serve_cmd.add_argument("--processes", type=int,
                           help="server processes sharing the port (default VIPSGATE_PROCESSES)")
    sign = sub.add_parser("sign", help="print the signed path for PATH")
    sign.add_argument("path", help="e.g. /rs:fit:300:200/plain/local:///landscape.jpg")
    config_cmd = sub.add_parser("config", help="print the configuration table (Markdown), "
                                "or check the environment (--check)")
    config_cmd.add_argument("--check", action="store_true",
                            help="check the environment: one line per problem, exit 1 if any")
    config_cmd.add_argument("--imgproxy", action="store_true",
                            help="print every imgproxy setting: supported or not, and why")
    _add_warm_parser(sub)
    health = sub.add_parser("health", help="exit 0 if the local server answers /health "
                            "(a container health check)")
    health.add_argument("--url", help="probe this URL instead of the one the settings give")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    if args.version:
        from .commands import version
        return _print(version())
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return _run(args)


def _print(text: str) -> int:
    """Print to stdout; a reader that went away (``vipsgate config | head``) is no error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # the rest would fail again at exit: send it nowhere (Python's documented way)
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _fail(message: str, code: int = 2) -> int:
    print(f"vipsgate: {message}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    from . import commands, config
    if args.command == "warm":
        return warm_command(args)
    if args.command == "config":
        if args.imgproxy:
            from .config.accounting import imgproxy_table
            return _print(imgproxy_table())
        if not args.check:
            return _print(config.settings_table())
        errors, warnings = commands.check_environment(os.environ)
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
        for line in errors:
            print(f"error: {line}", file=sys.stderr)
        return 1 if errors else _print("configuration ok")
    try:
        settings = config.from_env()
    except ConfigError as exc:
        return _fail(f"configuration error: {exc}")
    if args.command == "health":
        try:
            return _print(commands.health(args.url or commands.health_url(settings),
                                          args.timeout))
        except ValueError as exc:
            return _fail(f"unhealthy: {exc}", 1)
    if args.command == "sign":
        if settings.dev_mode:
            return _fail("set IMGPROXY_KEY and IMGPROXY_SALT to sign URLs")
        try:
            return _print(commands.sign(args.path, settings))
        except ValueError as exc:
            return _fail(f"cannot sign {args.path}: {exc}")
    host, port = settings.host_port
    if args.processes is not None:
        if args.processes < 1:
            return _fail("--processes must be at least 1")
        settings = dataclasses.replace(settings, processes=args.processes)
    from .serve import serve
    try:
        return serve(settings, args.host or host, port if args.port is None else args.port)
    except ConfigError as exc:  # found at start-up (a watermark that cannot be read, ...)
        return _fail(f"configuration error: {exc}")
    except ListenError as exc:  # a busy port, an address not on this host
        return _fail(str(exc))


def _add_warm_parser(sub: Any) -> None:
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


def warm_command(args: argparse.Namespace) -> int:
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


def _built_urls(args: argparse.Namespace) -> list[str] | None:
    """Signed URLs for every source x option set, with the configured key."""
    from . import config
    from .paths import encode_source
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

