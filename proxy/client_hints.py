"""Client hints (``IMGPROXY_ENABLE_CLIENT_HINTS``), as imgproxy reads them.

``DPR``/``Sec-CH-DPR`` (0 < dpr <= 8) becomes the default ``dpr``, and
``Width``/``Sec-CH-Width`` (CSS pixels times the DPR) the default ``width``, divided by
the hinted DPR. They are defaults: a ``dpr`` or ``width`` given by the URL or a preset
wins. They change the URL's options before ``resolve``, so they are part of the
effective options and hence of the result key; the responses say ``Vary`` on them
(``http_cache.cache_headers``). Standard library only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import NamedTuple

from .options import ProcessingOptions

MAX_DPR = 8.0
DPR_HEADERS = ("Sec-CH-DPR", "DPR")
WIDTH_HEADERS = ("Sec-CH-Width", "Width")


class Hints(NamedTuple):
    dpr: float  # 0: none
    width: int  # 0: none


def read(headers: Mapping[str, str]) -> Hints | None:
    """The request's usable hints (the ``Sec-CH-`` header first), or None."""
    dpr = 0.0
    for name in DPR_HEADERS:
        try:
            value = float(headers.get(name, ""))
        except ValueError:
            continue
        if 0 < value <= MAX_DPR:
            dpr = value
            break
    width = 0
    for name in WIDTH_HEADERS:
        text = headers.get(name, "").strip()
        if text.isdigit() and int(text) > 0:
            width = int(text)
            break
    return Hints(dpr, width) if dpr or width else None


def apply(options: ProcessingOptions, given: frozenset[str], hints: Hints) -> ProcessingOptions:
    """``options`` with the hints as defaults for what the URL (or a preset) left unsaid."""
    changes: dict[str, float | int] = {}
    if hints.dpr and "dpr" not in given:
        changes["dpr"] = hints.dpr
    if hints.width and "width" not in given:
        changes["width"] = math.floor(hints.width / (hints.dpr or 1.0) + 0.5)  # Go's Round
    return dataclasses.replace(options, **changes) if changes else options  # type: ignore[arg-type]
