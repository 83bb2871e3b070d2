"""Server, signing and request-side settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .values import (
    bind_address,
    boolean,
    choice,
    hex_items,
    integer,
    items,
    networks,
    number,
    setting,
    share,
    size_or_auto,
)


@dataclass(frozen=True)
class ServerSettings:
    # server
    bind: str = setting("127.0.0.1:8080", "VIPSGATE_BIND", "IMGPROXY_BIND", parse=bind_address,
                        doc="Address to listen on (`--host`/`--port` override it)")
    path_prefix: str = setting("", "IMGPROXY_PATH_PREFIX",
                               doc="URL prefix every route is mounted under, e.g. `/img`")
    workers: int = setting(0, "IMGPROXY_WORKERS", parse=integer(0, 1024),
                           doc="Images processed at once per process (threads); "
                               "0 = 2 × CPUs / processes (imgproxy's default)")
    executor: str = setting("thread", "VIPSGATE_EXECUTOR", parse=choice("thread", "process"),
                            doc="Where pixel work runs: `thread`s, or worker `process`es "
                                "(no GIL contention with the event loop)")
    worker_niceness: int = setting(
        5, "VIPSGATE_WORKER_NICENESS", parse=integer(0, 19),
        doc="How much lower the CPU priority of pixel work is than the event loop's (Linux "
            "nice, per worker thread or process): refusals, hits and probes answer at once "
            "on a saturated CPU, while the workers still get every idle cycle. 0 = equal")
    processes: int = setting(0, "VIPSGATE_PROCESSES", parse=integer(0, 256),
                             doc="Server processes sharing the port (SO_REUSEPORT), each with "
                                 "its own workers and its share of the caches, the memory "
                                 "budget and the queue; every /metrics reports all of them. "
                                 "0 = one per CPU")
    requests_queue_size: int = setting(
        64, "IMGPROXY_REQUESTS_QUEUE_SIZE", parse=integer(0),
        doc="Requests waiting for a worker before 429 (0 = unbounded; imgproxy's default)")
    max_queue_share_per_origin: float = setting(
        0.5, "VIPSGATE_MAX_QUEUE_SHARE_PER_ORIGIN", parse=share,
        doc="Share of the places (workers + queue) the requests for one origin may hold "
            "(its host; for `s3://` its bucket); past it that origin's requests get 429. "
            "1 = no per-origin limit")
    memory_budget: int | str = setting(
        "auto", "VIPSGATE_MEMORY_BUDGET", parse=size_or_auto,
        doc="Memory for work in flight: source bytes held by downloads plus images being "
            "decoded; past it new work gets 503 and decoders wait. `auto` = 3/4 of the "
            "cgroup memory limit left after the caches and 128 MiB (none without a "
            "limit); 0 = off")
    timeout: float = setting(10.0, "IMGPROXY_TIMEOUT", parse=number(0.1),
                             doc="Deadline for a whole request in seconds (503 after it)")
    max_clients: int = setting(
        2048, "IMGPROXY_MAX_CLIENTS", parse=integer(0),
        doc="Client connections open at once per process, lowered to fit the file "
            "descriptor limit (raised to its hard limit at start); past it the connection "
            "waiting longest for a request is closed, or the new one gets 503 when all have "
            "a request in flight. 0 = as many as the descriptor limit allows")
    read_request_timeout: float = setting(
        10.0, "IMGPROXY_READ_REQUEST_TIMEOUT", parse=number(0.1),
        doc="Seconds a client has to send a complete request head, from connecting (or "
            "from the first byte of a later request on the connection)")
    write_response_timeout: float = setting(
        10.0, "IMGPROXY_WRITE_RESPONSE_TIMEOUT", parse=number(0.1),
        doc="Seconds to send a response once it is ready; a client reading slower is "
            "cut off")
    keep_alive_timeout: float = setting(
        10.0, "IMGPROXY_KEEP_ALIVE_TIMEOUT", parse=number(0),
        doc="Seconds an idle client connection is kept open between requests (0 = "
            "keep-alive off); keep it above a load balancer's idle timeout")
    graceful_stop_timeout: float = setting(
        20.0, "IMGPROXY_GRACEFUL_STOP_TIMEOUT", parse=number(0),
        doc="Seconds to finish in-flight requests after SIGTERM")
    drain_delay: float = setting(
        0.0, "VIPSGATE_DRAIN_DELAY", parse=number(0),
        doc="Seconds to keep serving after SIGTERM with /ready at 503, before the listener "
            "closes (5 behind a Kubernetes Service)")
    secret: str = setting("", "IMGPROXY_SECRET",
                          doc="Require `Authorization: Bearer <secret>` (only your CDN knows it)")
    allowed_client_cidrs: tuple[Any, ...] = setting(
        (), "VIPSGATE_ALLOWED_CLIENT_CIDRS", parse=networks,
        doc="Comma list of client networks allowed to call the image route")
    allow_origin: str = setting("", "IMGPROXY_ALLOW_ORIGIN",
                                doc="Value of `Access-Control-Allow-Origin` (CORS off when empty)")
    # signing
    keys: tuple[str, ...] = setting((), "IMGPROXY_KEY", "VIPSGATE_KEY", parse=hex_items,
                                    doc="Hex signing key(s), comma-separated for rotation")
    salts: tuple[str, ...] = setting((), "IMGPROXY_SALT", "VIPSGATE_SALT", parse=hex_items,
                                     doc="Hex salt(s), one per key")
    signature_size: int = setting(
        32, "IMGPROXY_SIGNATURE_SIZE", parse=integer(8, 32),
        doc="Bytes of the HMAC kept in the signature (8..32; imgproxy allows 1, which "
            "can be forged in a few hundred requests)")
    trusted_signatures: tuple[str, ...] = setting(
        (), "IMGPROXY_TRUSTED_SIGNATURES", parse=items,
        doc="Signatures accepted without checking")
    insecure: bool = setting(False, "VIPSGATE_INSECURE", parse=boolean,
                             doc="Run without a key: any signature placeholder passes")
    # URL parsing
    presets: str = setting("", "IMGPROXY_PRESETS",
                           doc="Presets `name=opt:a/opt:b`, separated by "
                               "`IMGPROXY_PRESETS_SEPARATOR` (`,`)")
    presets_path: str = setting("", "IMGPROXY_PRESETS_PATH",
                                doc="File with one preset per line")
    only_presets: bool = setting(False, "IMGPROXY_ONLY_PRESETS", parse=boolean,
                                 doc="URLs name presets only, no other options")
    allowed_processing_options: tuple[str, ...] = setting(
        (), "IMGPROXY_ALLOWED_PROCESSING_OPTIONS", parse=items,
        doc="If set, only these option names are accepted in URLs")
    allow_security_options: bool = setting(
        False, "IMGPROXY_ALLOW_SECURITY_OPTIONS", parse=boolean,
        doc="Let URLs lower/raise the security limits (msr, msfs, maf, mafr, mrd)")
    base_url: str = setting("", "IMGPROXY_BASE_URL",
                            doc="Prefix added to every source URL that lacks it")
    base64_url_includes_filename: bool = setting(
        False, "IMGPROXY_BASE64_URL_INCLUDES_FILENAME", parse=boolean,
        doc="Ignore the last segment of a base64 source (an SEO file name)")
