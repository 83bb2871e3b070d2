"""Headless locust run against a vipsgate server that this script starts itself, or
against an existing deployment.

    make loadtest                          # local:/// sources, 20 users, 30 s
    make loadtest ARGS="--s3 --users 40 --run-time 60s"
    IMGPROXY_KEY=... IMGPROXY_SALT=... make loadtest \
        ARGS="--host https://img.example.com --sources sources.txt --users 10"

Generates a catalogue of source images, serves them from a temp dir (or from a
moto S3 server on 127.0.0.1 with ``--s3``), starts ``python -m vipsgate serve``,
runs ``loadtest/locustfile.py`` headless for a bounded time and writes CSV and
HTML reports into loadtest/results/ (git-ignored). With ``--host`` nothing is
started: the URLs are signed with the deployment's ``IMGPROXY_KEY``/``IMGPROXY_SALT``
for the sources listed in ``--sources`` (one URL the deployment can fetch per line),
and ``IMGPROXY_SECRET``, when set, is sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest.common import (
    KEY,
    ROOT,
    SALT,
    _alpha_png,
    _photo,
    prepare_libvips,
    vipsgate_server,
)

RESULTS = ROOT / "loadtest" / "results"
BUCKET = "vipsgate-loadtest"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def catalogue(directory: Path, count: int, seed: int = 7) -> list[str]:
    """``count`` photo-like JPEGs (800x600 .. 4000x3000) and a few alpha PNGs."""
    rng = random.Random(seed)
    names = []
    for i in range(count):
        w = rng.choice([800, 1200, 1600, 1920, 2400, 3000, 4000])
        h = w * rng.choice([3, 9, 4]) // rng.choice([4, 16, 3])
        if i % 10 == 9:
            name, data = f"img_{i:03d}.png", _alpha_png(min(w, 1200), min(h, 1200))
        else:
            name, data = f"img_{i:03d}.jpg", _photo(w, h).jpegsave_buffer(Q=88, keep="none")
        (directory / name).write_bytes(data)
        names.append(name)
    return names


@contextlib.contextmanager
def s3_sources(directory: Path, names: list[str]) -> Iterator[tuple[dict[str, str], list[str]]]:
    """A moto S3 server on 127.0.0.1 holding the catalogue."""
    import boto3
    from moto.server import ThreadedMotoServer
    os.environ.update(AWS_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for name in names:
            client.put_object(Bucket=BUCKET, Key=name, Body=(directory / name).read_bytes())
        env = {**AWS_ENV, "IMGPROXY_USE_S3": "1", "IMGPROXY_S3_ENDPOINT": endpoint,
               "IMGPROXY_S3_REGION": "us-east-1"}
        yield env, [f"s3://{BUCKET}/{name}" for name in names]
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--s3", action="store_true", help="serve sources from moto S3")
    parser.add_argument("--images", type=int, default=30, help="source images to generate")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--run-time", default="30s")
    parser.add_argument("--processes", type=int, default=1, help="server processes")
    parser.add_argument("--workers", type=int, default=0, help="IMGPROXY_WORKERS (0 = auto)")
    parser.add_argument("--host", help="an existing deployment, e.g. https://img.example.com "
                                       "(signed with IMGPROXY_KEY/IMGPROXY_SALT)")
    parser.add_argument("--sources", help="with --host: file of source URLs, one per line")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="where the CSV and HTML reports go (default loadtest/results)")
    args = parser.parse_args()
    if args.host or args.sources:
        return remote(parser, args)

    prepare_libvips()
    tmp = Path(tempfile.mkdtemp(prefix="vipsgate-locust-"))
    root = tmp / "images"
    root.mkdir()
    print(f"generating {args.images} source images ...", flush=True)
    names = catalogue(root, args.images)
    args.results.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if args.s3:
            env, sources = stack.enter_context(s3_sources(root, names))
        else:
            env, sources = {}, [f"local:///{name}" for name in names]
        server = stack.enter_context(vipsgate_server(
            root, tmp / "server.log", args.workers, args.processes,
            {**env, "VIPSGATE_LOG_LEVEL": "warning"}))
        print(f"vipsgate on http://127.0.0.1:{server.port} ({'s3' if args.s3 else 'local'} "
              f"sources); locust: {args.users} users for {args.run_time}", flush=True)
        locust_env = {**os.environ, "VIPSGATE_LT_KEY": KEY, "VIPSGATE_LT_SALT": SALT,
                      "VIPSGATE_LT_SOURCES": "\n".join(sources), "PYTHONPATH": str(ROOT)}
        prefix = args.results / ("locust-s3" if args.s3 else "locust-local")
        code = run_locust(f"http://127.0.0.1:{server.port}", args, prefix, locust_env)
    return code


def run_locust(host: str, args: argparse.Namespace, prefix: Path, env: dict[str, str]) -> int:
    """locust, headless, for ``--run-time`` at most; reports under ``prefix``."""
    command = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest/locustfile.py"),
               "--headless", "--host", host,
               "-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.run_time,
               "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary",
               "--stop-timeout", "5"]
    code = subprocess.call(command, env=env, cwd=ROOT)
    print(f"reports: {prefix}_stats.csv, {prefix}.html (locust exit code {code})")
    return code


def remote(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Load an existing deployment: its key signs, ``--sources`` names the images."""
    if not args.host or not args.sources:
        parser.error("--host and --sources go together")
    if args.s3 or args.processes != 1 or args.workers:
        parser.error("--s3, --processes and --workers describe a local server, not --host")
    key, salt = os.environ.get("IMGPROXY_KEY", ""), os.environ.get("IMGPROXY_SALT", "")
    try:
        bytes.fromhex(key.split(",")[0])
        bytes.fromhex(salt.split(",")[0])
    except ValueError:
        key = ""
    if not key or not salt:
        parser.error("--host needs the deployment's IMGPROXY_KEY and IMGPROXY_SALT (hex) "
                     "in the environment")
    with open(args.sources) as fh:
        sources = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    if not sources:
        parser.error(f"{args.sources} lists no source URLs")
    args.results.mkdir(parents=True, exist_ok=True)
    print(f"locust against {args.host}: {len(sources)} sources, {args.users} users for "
          f"{args.run_time}", flush=True)
    env = {**os.environ, "VIPSGATE_LT_KEY": key.split(",")[0],
           "VIPSGATE_LT_SALT": salt.split(",")[0], "VIPSGATE_LT_SOURCES": "\n".join(sources),
           "PYTHONPATH": str(ROOT)}
    return run_locust(args.host.rstrip("/"), args, args.results / "locust-remote", env)


if __name__ == "__main__":
    sys.exit(main())
