"""Settings from the environment, parsed and validated once at start-up.

``Settings`` is the one table of defaults. Its fields are declared by section, one
module each (``server``, ``sources``, ``processing``, ``caching``, ``observability``,
``tier``, ``compat``);
each field names its environment variables (vipsgate's own ``VIPSGATE_*`` name and,
where imgproxy has the same setting, its ``IMGPROXY_*`` name), a parser and a
one-line description. ``vipsgate config`` prints the table the README shows, so the
documentation cannot drift from the code. A bad value raises ``ConfigError`` with a
one-line message naming the variable.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..grammar import OPTION_NAMES
from ..paths import parse_preset_definitions
from .caching import CachingSettings
from .cloud import CloudSourceSettings, CloudTierSettings, check_cloud
from .compat import CompatSettings
from .observability import ObservabilitySettings
from .processing import ProcessingSettings
from .server import ServerSettings
from .sources import SourceSettings
from .tier import TierSettings, check_tier

SAMPLES_DIR = Path(__file__).parent.parent / "samples"


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


@dataclass(frozen=True)
class Settings(CompatSettings, ObservabilitySettings, CloudTierSettings, TierSettings,
               CachingSettings, ProcessingSettings, CloudSourceSettings, SourceSettings,
               ServerSettings):
    """Every setting (fields in the order of the README table: the last base's first)."""

    # derived at start-up, not read from the environment
    dev_mode: bool = False

    @property
    def worker_count(self) -> int:
        """``IMGPROXY_WORKERS``, or imgproxy's default: two per CPU (shared by the processes;
        ``serve`` sets ``processes`` to the count it starts). Two per CPU keep the cores
        busy while a worker holds the GIL for pyvips' Python."""
        return self.workers or max(1, 2 * available_cpus() // max(1, self.processes))

    @property
    def process_count(self) -> int:
        """``VIPSGATE_PROCESSES``, 0 resolved to one per CPU."""
        return self.processes or available_cpus()

    @property
    def queue_capacity(self) -> int:
        """Requests admitted at once: workers + ``IMGPROXY_REQUESTS_QUEUE_SIZE`` (0 =
        unbounded)."""
        return self.worker_count + self.requests_queue_size if self.requests_queue_size else 0

    @property
    def origin_places(self) -> int:
        """Places of the queue the requests for one origin may hold (0 = no limit)."""
        capacity = self.queue_capacity
        if not capacity or self.max_queue_share_per_origin >= 1:
            return 0
        return max(1, math.ceil(capacity * self.max_queue_share_per_origin))

    @property
    def origin_connections(self) -> tuple[int, int]:
        """The origins' connection pool: ``(total, per host)``. Every admitted request may
        be downloading at once, so the total is the queue's capacity and a few more (256
        for an unbounded queue): one host cannot keep others waiting. Per host, unless
        ``VIPSGATE_MAX_ORIGIN_CONNECTIONS`` says: twice the workers, at least 10. More
        downloads from one origin than the workers can decode gain nothing, and streamed
        ones each take a worker slot back whenever bytes arrive: 32 slow streams cut the
        throughput of other requests to a quarter, 10 to two thirds
        (``loadtest/streaming.py --only starve``)."""
        total = self.queue_capacity + 16 if self.queue_capacity else 256
        per_host = self.max_origin_connections or max(10, 2 * self.worker_count)
        return total, max(1, min(per_host, total))

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.bind.rpartition(":")
        return host, int(port)

    def preset_map(self) -> dict[str, tuple[str, ...]]:
        """Presets from IMGPROXY_PRESETS and IMGPROXY_PRESETS_PATH, validated."""
        lines = [p for p in self.presets.split(self.presets_separator) if p.strip()]
        if self.presets_path:
            lines += Path(self.presets_path).read_text().splitlines()
        return parse_preset_definitions(lines, self.arguments_separator)



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
    check_tier(s)
    check_cloud(s)
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
