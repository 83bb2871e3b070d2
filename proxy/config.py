"""Settings from the environment, parsed and validated once at start-up.

Each field names its environment variables (vipsgate's own ``VIPSGATE_*`` name
and, where imgproxy has the same setting, its ``IMGPROXY_*`` name), a parser
and a one-line description. ``vipsgate config`` prints the table the README
shows, so the documentation cannot drift from the code. A bad value raises
``ConfigError`` with a one-line message naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from . import formats
from .errors import ConfigError
from .grammar import OPTION_NAMES
from .paths import parse_preset_definitions

SAMPLES_DIR = Path(__file__).parent / "samples"
Parser = Callable[[str], Any]


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota
    (``cpu.max``, what a Kubernetes CPU limit sets), rounded up; at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota here
    return max(1, cpus)


# --- value parsers: each raises ValueError with a short explanation -------------------

def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "t", "true", "yes", "on"):
        return True
    if lowered in ("0", "f", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _int(minimum: int | None = None, maximum: int | None = None) -> Parser:
    def parse(text: str) -> int:
        value = int(text.strip())
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(f"expected an integer in {minimum}..{maximum if maximum else ''}")
        return value
    return parse


def _float(minimum: float = 0.0) -> Parser:
    def parse(text: str) -> float:
        value = float(text)
        if not (value >= minimum and value != float("inf")):
            raise ValueError(f"expected a finite number >= {minimum}")
        return value
    return parse


_UNITS = {"": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
          "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def _bytes(text: str) -> int:
    """``134217728``, ``128MiB``, ``64M``, ``1G``."""
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError("expected a size such as 134217728, 128MiB or 1G")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _hex_list(text: str) -> tuple[str, ...]:
    items = _list(text)
    for item in items:
        bytes.fromhex(item)  # ValueError names the problem
    return items


def _format_list(text: str) -> tuple[str, ...]:
    names = _list(text)
    unknown = [name for name in names if formats.canonical(name) is None]
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}")
    return tuple(formats.canonical(name) or name for name in names)


def _format_map(text: str) -> tuple[tuple[str, int], ...]:
    result: dict[str, int] = {}
    for item in _list(text):
        given, eq, value = item.partition("=")
        name = formats.canonical(given.strip())
        if not eq or name is None:
            raise ValueError(f"expected format=quality pairs, got {item!r}")
        quality = int(value)
        if not 1 <= quality <= 100:
            raise ValueError(f"quality for {name} must be 1..100")
        result[name] = quality
    return tuple(result.items())


def _cidrs(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in _list(text))


def _choice(*choices: str) -> Parser:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text
    return parse


def _bind(text: str) -> str:
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT or :PORT")
    return f"{host or '0.0.0.0'}:{port}"


def _str(text: str) -> str:
    return text


def setting(default: Any, *env: str, parse: Parser = _str, doc: str = "") -> Any:
    """A settings field: default, environment names (first is primary), parser, doc."""
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    # server
    bind: str = setting("127.0.0.1:8080", "VIPSGATE_BIND", "IMGPROXY_BIND", parse=_bind,
                        doc="Address to listen on (`--host`/`--port` override it)")
    path_prefix: str = setting("", "IMGPROXY_PATH_PREFIX",
                               doc="URL prefix every route is mounted under, e.g. `/img`")
    workers: int = setting(0, "IMGPROXY_WORKERS", parse=_int(0, 1024),
                           doc="Images processed at once per process (threads); "
                               "0 = 2 × CPUs / processes (imgproxy's default)")
    executor: str = setting("thread", "VIPSGATE_EXECUTOR", parse=_choice("thread", "process"),
                            doc="Where pixel work runs: `thread`s, or worker `process`es "
                                "(no GIL contention with the event loop)")
    processes: int = setting(1, "VIPSGATE_PROCESSES", parse=_int(1, 256),
                             doc="Server processes sharing the port (SO_REUSEPORT), each with "
                                 "its own workers and caches (the cache sizes are split); "
                                 "every /metrics reports all of them")
    requests_queue_size: int = setting(
        64, "IMGPROXY_REQUESTS_QUEUE_SIZE", parse=_int(0),
        doc="Requests waiting for a worker before 429 (0 = unbounded; imgproxy's default)")
    timeout: float = setting(10.0, "IMGPROXY_TIMEOUT", parse=_float(0.1),
                             doc="Deadline for a whole request in seconds (503 after it)")
    graceful_stop_timeout: float = setting(
        20.0, "IMGPROXY_GRACEFUL_STOP_TIMEOUT", parse=_float(0),
        doc="Seconds to finish in-flight requests after SIGTERM")
    drain_delay: float = setting(
        0.0, "VIPSGATE_DRAIN_DELAY", parse=_float(0),
        doc="Seconds to keep serving after SIGTERM with /ready at 503, before the listener "
            "closes (5 behind a Kubernetes Service)")
    secret: str = setting("", "IMGPROXY_SECRET",
                          doc="Require `Authorization: Bearer <secret>` (only your CDN knows it)")
    allowed_client_cidrs: tuple[Any, ...] = setting(
        (), "VIPSGATE_ALLOWED_CLIENT_CIDRS", parse=_cidrs,
        doc="Comma list of client networks allowed to call the image route")
    allow_origin: str = setting("", "IMGPROXY_ALLOW_ORIGIN",
                                doc="Value of `Access-Control-Allow-Origin` (CORS off when empty)")
    # signing
    keys: tuple[str, ...] = setting((), "IMGPROXY_KEY", "VIPSGATE_KEY", parse=_hex_list,
                                    doc="Hex signing key(s), comma-separated for rotation")
    salts: tuple[str, ...] = setting((), "IMGPROXY_SALT", "VIPSGATE_SALT", parse=_hex_list,
                                     doc="Hex salt(s), one per key")
    signature_size: int = setting(32, "IMGPROXY_SIGNATURE_SIZE", parse=_int(1, 32),
                                  doc="Bytes of the HMAC kept in the signature (1..32)")
    trusted_signatures: tuple[str, ...] = setting(
        (), "IMGPROXY_TRUSTED_SIGNATURES", parse=_list,
        doc="Signatures accepted without checking")
    insecure: bool = setting(False, "VIPSGATE_INSECURE", parse=_bool,
                             doc="Run without a key: any signature placeholder passes")
    # URL parsing
    presets: tuple[str, ...] = setting((), "IMGPROXY_PRESETS", parse=_list,
                                       doc="Presets `name=opt:a/opt:b`, comma-separated")
    presets_path: str = setting("", "IMGPROXY_PRESETS_PATH",
                                doc="File with one preset per line")
    only_presets: bool = setting(False, "IMGPROXY_ONLY_PRESETS", parse=_bool,
                                 doc="URLs name presets only, no other options")
    allowed_processing_options: tuple[str, ...] = setting(
        (), "IMGPROXY_ALLOWED_PROCESSING_OPTIONS", parse=_list,
        doc="If set, only these option names are accepted in URLs")
    allow_security_options: bool = setting(
        False, "IMGPROXY_ALLOW_SECURITY_OPTIONS", parse=_bool,
        doc="Let URLs lower/raise the security limits (msr, msfs, maf, mafr, mrd)")
    base_url: str = setting("", "IMGPROXY_BASE_URL",
                            doc="Prefix added to every source URL that lacks it")
    base64_url_includes_filename: bool = setting(
        False, "IMGPROXY_BASE64_URL_INCLUDES_FILENAME", parse=_bool,
        doc="Ignore the last segment of a base64 source (an SEO file name)")
    # sources
    local_root: str = setting("", "IMGPROXY_LOCAL_FILESYSTEM_ROOT",
                              doc="Root of `local:///` sources (off when empty)")
    use_s3: bool = setting(False, "IMGPROXY_USE_S3", parse=_bool, doc="Enable `s3://` sources")
    s3_region: str = setting("", "IMGPROXY_S3_REGION", "AWS_REGION", doc="S3 region")
    s3_endpoint: str = setting("", "IMGPROXY_S3_ENDPOINT",
                               doc="S3 endpoint URL (MinIO, R2, ...); AWS when empty")
    s3_allowed_buckets: tuple[str, ...] = setting(
        (), "IMGPROXY_S3_ALLOWED_BUCKETS", parse=_list, doc="Only these buckets (all if empty)")
    download_timeout: float = setting(5.0, "IMGPROXY_DOWNLOAD_TIMEOUT", parse=_float(0.1),
                                      doc="Seconds to download a source (504 after it)")
    max_redirects: int = setting(10, "IMGPROXY_MAX_REDIRECTS", parse=_int(0, 100),
                                 doc="Redirects followed for HTTP sources")
    user_agent: str = setting("vipsgate/0.1", "IMGPROXY_USER_AGENT",
                              doc="User-Agent sent to HTTP origins")
    allowed_sources: tuple[str, ...] = setting(
        (), "IMGPROXY_ALLOWED_SOURCES", parse=_list,
        doc="Source URL prefixes allowed (`*` matches within a segment); all if empty")
    allow_loopback_sources: bool = setting(
        False, "IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES", parse=_bool,
        doc="Allow HTTP sources on 127.0.0.0/8, ::1")
    allow_private_sources: bool = setting(
        False, "IMGPROXY_ALLOW_PRIVATE_SOURCE_ADDRESSES", parse=_bool,
        doc="Allow RFC 1918, CGNAT and ULA sources (imgproxy allows them by default)")
    allow_link_local_sources: bool = setting(
        False, "IMGPROXY_ALLOW_LINK_LOCAL_SOURCE_ADDRESSES", parse=_bool,
        doc="Allow 169.254.0.0/16 and fe80::/10 (cloud metadata lives there)")
    # limits
    max_src_file_size: int = setting(64 * 1024**2, "IMGPROXY_MAX_SRC_FILE_SIZE", parse=_bytes,
                                     doc="Largest source in bytes, enforced while streaming")
    max_src_resolution: float = setting(50.0, "IMGPROXY_MAX_SRC_RESOLUTION", parse=_float(0.001),
                                        doc="Largest source in megapixels (kept frames summed)")
    max_animation_frames: int = setting(100, "IMGPROXY_MAX_ANIMATION_FRAMES", parse=_int(1),
                                        doc="Frames of an animation kept (1 = first frame only)")
    max_animation_frame_resolution: float = setting(
        0.0, "IMGPROXY_MAX_ANIMATION_FRAME_RESOLUTION", parse=_float(0),
        doc="If > 0, check each frame against this many megapixels instead of the sum")
    max_result_dimension: int = setting(8192, "IMGPROXY_MAX_RESULT_DIMENSION", parse=_int(0),
                                        doc="Largest output side in pixels (0 = no cap)")
    max_svg_check_bytes: int = setting(32 * 1024, "IMGPROXY_MAX_SVG_CHECK_BYTES", parse=_bytes,
                                       doc="Bytes read to recognise an SVG")
    free_memory_interval: float = setting(
        10.0, "IMGPROXY_FREE_MEMORY_INTERVAL", parse=_float(0),
        doc="Seconds between returning freed memory to the OS when idle (glibc; 0 = off)")
    # processing defaults
    quality: int = setting(80, "IMGPROXY_QUALITY", parse=_int(1, 100), doc="Default quality")
    format_quality: tuple[tuple[str, int], ...] = setting(
        (("webp", 79), ("avif", 63), ("jxl", 77)), "IMGPROXY_FORMAT_QUALITY", parse=_format_map,
        doc="Per-format default quality, e.g. `webp=79,avif=63`")
    auto_webp: bool = setting(True, "IMGPROXY_AUTO_WEBP", parse=_bool,
                              doc="Answer WebP when `Accept` allows it and no format is given")
    auto_avif: bool = setting(True, "IMGPROXY_AUTO_AVIF", parse=_bool,
                              doc="Answer AVIF when `Accept` allows it and no format is given")
    enforce_webp: bool = setting(False, "IMGPROXY_ENFORCE_WEBP", parse=_bool,
                                 doc="Like AUTO_WEBP, and overrides an explicit format too")
    enforce_avif: bool = setting(False, "IMGPROXY_ENFORCE_AVIF", parse=_bool,
                                 doc="Like AUTO_AVIF, and overrides an explicit format too")
    strip_metadata: bool = setting(True, "IMGPROXY_STRIP_METADATA", parse=_bool,
                                   doc="Strip EXIF/XMP/IPTC by default")
    keep_copyright: bool = setting(True, "IMGPROXY_KEEP_COPYRIGHT", parse=_bool,
                                   doc="Keep copyright metadata when stripping")
    strip_color_profile: bool = setting(True, "IMGPROXY_STRIP_COLOR_PROFILE", parse=_bool,
                                        doc="Convert to sRGB and drop the ICC profile")
    auto_rotate: bool = setting(True, "IMGPROXY_AUTO_ROTATE", parse=_bool,
                                doc="Apply EXIF orientation by default")
    enforce_thumbnail: bool = setting(False, "IMGPROXY_ENFORCE_THUMBNAIL", parse=_bool,
                                      doc="Use the thumbnail embedded in HEIC/AVIF")
    return_attachment: bool = setting(False, "IMGPROXY_RETURN_ATTACHMENT", parse=_bool,
                                      doc="`Content-Disposition: attachment` by default")
    avif_speed: int = setting(8, "IMGPROXY_AVIF_SPEED", parse=_int(0, 9),
                              doc="AVIF encoder speed 0 (slow, small) .. 9 (fast)")
    webp_effort: int = setting(4, "IMGPROXY_WEBP_EFFORT", parse=_int(0, 6),
                               doc="WebP encoder effort 0 (fast) .. 6 (small)")
    jpeg_progressive: bool = setting(False, "IMGPROXY_JPEG_PROGRESSIVE", parse=_bool,
                                     doc="Write progressive JPEG")
    png_interlaced: bool = setting(False, "IMGPROXY_PNG_INTERLACED", parse=_bool,
                                   doc="Write interlaced PNG")
    skip_processing_formats: tuple[str, ...] = setting(
        (), "IMGPROXY_SKIP_PROCESSING_FORMATS", parse=_format_list,
        doc="Source formats returned unprocessed when no other output format is asked")
    watermark_path: str = setting("", "IMGPROXY_WATERMARK_PATH", doc="Watermark image file")
    watermark_url: str = setting("", "IMGPROXY_WATERMARK_URL",
                                 doc="Watermark image fetched once at start-up (any source)")
    watermark_data: str = setting("", "IMGPROXY_WATERMARK_DATA",
                                  doc="Watermark image, base64-encoded")
    watermark_opacity: float = setting(1.0, "IMGPROXY_WATERMARK_OPACITY", parse=_float(0),
                                       doc="Multiplier for the `wm` opacity")
    # HTTP caching
    ttl: int = setting(31536000, "IMGPROXY_TTL", parse=_int(0),
                       doc="`Cache-Control: max-age` of results in seconds")
    cache_control_immutable: bool = setting(
        False, "VIPSGATE_CACHE_CONTROL_IMMUTABLE", parse=_bool,
        doc="Add `immutable` to Cache-Control")
    stale_while_revalidate: int = setting(
        0, "VIPSGATE_STALE_WHILE_REVALIDATE", parse=_int(0),
        doc="Add `stale-while-revalidate=N` to Cache-Control when > 0")
    cache_control_passthrough: bool = setting(
        False, "IMGPROXY_CACHE_CONTROL_PASSTHROUGH", parse=_bool,
        doc="Copy the source's Cache-Control / Expires")
    error_ttl: int = setting(0, "VIPSGATE_ERROR_TTL", parse=_int(0),
                             doc="max-age on 4xx answers except 429 (no Cache-Control when 0)")
    use_etag: bool = setting(True, "IMGPROXY_USE_ETAG", parse=_bool, doc="Send ETag, answer 304")
    use_last_modified: bool = setting(True, "IMGPROXY_USE_LAST_MODIFIED", parse=_bool,
                                      doc="Pass Last-Modified through, answer 304")
    # in-process caches
    result_cache_bytes: int = setting(128 * 1024**2, "VIPSGATE_RESULT_CACHE_BYTES", parse=_bytes,
                                      doc="Memory for finished images (LRU); 0 turns it off")
    source_cache_bytes: int = setting(64 * 1024**2, "VIPSGATE_SOURCE_CACHE_BYTES", parse=_bytes,
                                      doc="Memory for source bytes (LRU); 0 turns it off")
    cache_max_entry_ratio: float = setting(
        0.125, "VIPSGATE_CACHE_MAX_ENTRY_RATIO", parse=_float(0),
        doc="Entries larger than this share of a cache are not cached")
    # observability
    debug_headers: bool = setting(False, "VIPSGATE_DEBUG_HEADERS",
                                  "IMGPROXY_ENABLE_DEBUG_HEADERS", parse=_bool,
                                  doc="Add X-Cache and X-Origin-*/X-Result-* headers")
    prometheus_bind: str = setting("", "IMGPROXY_PROMETHEUS_BIND",
                                   doc="Serve /metrics on a separate HOST:PORT")
    log_format: str = setting("text", "VIPSGATE_LOG_FORMAT", parse=_choice("text", "json"),
                              doc="`json` for one structured line per request")
    log_level: str = setting("info", "VIPSGATE_LOG_LEVEL",
                             parse=_choice("debug", "info", "warning", "error"), doc="Log level")
    playground: bool = setting(False, "VIPSGATE_PLAYGROUND", parse=_bool,
                               doc="Serve the development playground at /playground")
    otel: bool = setting(False, "VIPSGATE_OTEL", parse=_bool,
                         doc="OpenTelemetry spans per stage (needs `opentelemetry-api`)")
    # derived at start-up, not read from the environment
    dev_mode: bool = False

    @property
    def worker_count(self) -> int:
        """``IMGPROXY_WORKERS``, or imgproxy's default: two per CPU (shared by the processes).
        Two per CPU keep the cores busy while a worker holds the GIL for pyvips' Python."""
        return self.workers or max(1, 2 * available_cpus() // self.processes)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.bind.rpartition(":")
        return host, int(port)

    def preset_map(self) -> dict[str, tuple[str, ...]]:
        """Presets from IMGPROXY_PRESETS and IMGPROXY_PRESETS_PATH, validated."""
        lines = list(self.presets)
        if self.presets_path:
            lines += Path(self.presets_path).read_text().splitlines()
        return parse_preset_definitions(lines)


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ``ConfigError`` naming the variable."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(Settings):
        for name in f.metadata.get("env", ()):
            if name in env:
                try:
                    values[f.name] = f.metadata["parse"](env[name])
                except (ValueError, TypeError) as exc:
                    raise ConfigError(f"{name}={env[name]!r}: {exc}") from None
                break
    settings = Settings(**values)
    return _validate(settings, env)


def _validate(s: Settings, env: Mapping[str, str]) -> Settings:
    if len(s.keys) != len(s.salts):
        raise ConfigError("IMGPROXY_KEY and IMGPROXY_SALT must list the same number of values")
    if not s.keys and not s.insecure:
        # No key configured: development defaults (a fresh random key each start,
        # the bundled sample images). Never a well-known key.
        s = replace(s, keys=(secrets.token_hex(32),), salts=(secrets.token_hex(32),),
                    dev_mode=True, local_root=s.local_root or str(SAMPLES_DIR))
    if s.local_root and not Path(s.local_root).is_dir():
        raise ConfigError(f"IMGPROXY_LOCAL_FILESYSTEM_ROOT={s.local_root!r}: not a directory")
    if s.allowed_processing_options:
        unknown = set(s.allowed_processing_options) - OPTION_NAMES
        if unknown:
            raise ConfigError(f"IMGPROXY_ALLOWED_PROCESSING_OPTIONS: unknown {sorted(unknown)}")
    try:
        s.preset_map()
    except OSError as exc:
        raise ConfigError(f"IMGPROXY_PRESETS_PATH={s.presets_path!r}: {exc.strerror}") from None
    except ValueError as exc:
        names = "IMGPROXY_PRESETS" + (" / IMGPROXY_PRESETS_PATH" if s.presets_path else "")
        raise ConfigError(f"{names}: {exc}") from None
    return s


def settings_table() -> str:
    """The README's configuration table, generated from the fields above."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for f in fields(Settings):
        env = f.metadata.get("env")
        if not env:
            continue
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(x if isinstance(x, str) else f"{x[0]}={x[1]}" for x in default)
        elif isinstance(default, bool):
            default = str(default).lower()
        names = " ".join(f"`{n}`" for n in env)
        shown = f"`{default}`" if default not in ("", None) else ""
        rows.append(f"| {names} | {shown} | {f.metadata['doc']} |")
    return "\n".join(rows)
