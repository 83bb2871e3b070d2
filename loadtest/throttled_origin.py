"""A throttled HTTP origin for the streaming benchmarks (run as its own process).

    python loadtest/throttled_origin.py DIR --port PORT

``GET /<alias>/<file>?rate=BYTES_PER_SECOND`` sends ``DIR/<file>`` (any alias: the
proxy sees a distinct source URL per alias) at that rate, in 20 slices a second;
without ``rate`` at full speed. ``GET /_last`` answers, as JSON, the monotonic time
(``time.monotonic()``: one clock for every process on the machine) at which each
path's last byte was written.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from aiohttp import web

SLICES = 20  # writes per second at a given rate


def make_app(root: Path) -> web.Application:
    files: dict[str, bytes] = {}
    last: dict[str, float] = {}

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        data = files.get(name)
        if data is None:
            data = files[name] = (root / name).read_bytes()
        rate = int(request.query.get("rate", "0"))
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = len(data)
        await response.prepare(request)
        step = max(1, rate // SLICES) if rate else len(data)
        started = time.monotonic()
        for n, start in enumerate(range(0, len(data), step)):
            if rate:  # keep to the rate (sleep until this slice's time)
                await asyncio.sleep(max(0.0, started + n / SLICES - time.monotonic()))
            await response.write(data[start:start + step])
        last[request.path] = time.monotonic()
        await response.write_eof()
        return response

    async def report(request: web.Request) -> web.Response:
        return web.json_response(last)

    app = web.Application()
    app.router.add_get("/_last", report)
    app.router.add_get("/{alias}/{file}", serve)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    print("origin listening", flush=True)
    web.run_app(make_app(args.root), host="127.0.0.1", port=args.port, print=None,
                access_log=None)


if __name__ == "__main__":
    main()
