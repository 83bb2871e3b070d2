"""The W5 yardstick: a bare aiohttp + uvloop handler answering fixed bytes from memory.

``python loadtest/bare_server.py BODY_FILE --port N [--processes P] [--type image/jpeg]``
P processes share the port with SO_REUSEPORT, like ``vipsgate serve --processes``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path


async def serve(body: bytes, content_type: str, port: int) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True, backlog=1024).start()
    print(f"bare server listening on {port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("body")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")  # accepted for symmetry; always loopback
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--type", default="image/jpeg")
    args = parser.parse_args()
    body = Path(args.body).read_bytes()
    children = []
    for _ in range(args.processes - 1):
        pid = os.fork()
        if pid == 0:
            children = []
            break
        children.append(pid)
    import uvloop
    uvloop.run(serve(body, args.type, args.port))
    for pid in children:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
