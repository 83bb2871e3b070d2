"""prometheus-client's multiprocess mode, switched on before ``VIPSGATE_PROCESSES`` > 1
servers are forked: this module imports nothing heavy, so the process that forks them
stays small (the servers import aiohttp, libvips and the rest themselves)."""

from __future__ import annotations

import os
import sys

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory of prometheus-client's multiprocess mode, when it is on."""
    return os.environ.get(MULTIPROCESS_ENV) or None


def enable_multiprocess(directory: str) -> None:
    """Keep every metric in files under ``directory`` that each process's ``/metrics``
    reads and sums (prometheus-client's multiprocess mode). Call before any metric
    exists and before forking: ``vipsgate serve --processes N`` does."""
    os.environ[MULTIPROCESS_ENV] = directory
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # already imported: it chose its value class at import
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]

