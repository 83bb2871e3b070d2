"""The ``vipsgate`` command: ``serve``, ``sign``, ``config``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError


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
    config_cmd = sub.add_parser("config", help="print the configuration table (Markdown)")
    config_cmd.add_argument("--imgproxy", action="store_true",
                            help="print every imgproxy setting: supported or not, and why")
    _add_warm_parser(sub)
    args = parser.parse_args(argv)

    from . import config
    if args.command == "warm":
        return warm_command(args)
    if args.command == "config":
        if args.imgproxy:
            from .config.accounting import imgproxy_table
            print(imgproxy_table())
        else:
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
    from .serve import serve
    try:
        return serve(settings, args.host or host, port if args.port is None else args.port)
    except ConfigError as exc:  # found at start-up (a watermark that cannot be read, ...)
        print(f"vipsgate: configuration error: {exc}", file=sys.stderr)
        return 2


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

