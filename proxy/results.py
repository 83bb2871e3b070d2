"""Stage 4, cache: what the result cache holds, and its key.

The key is derived from the ``Effective`` options, so it cannot drift.

Every field of ``Effective`` is part of the key unless its metadata marks it as
shaping the response headers only (``expires``, ``filename``, ``return_attachment``),
so an option added later is keyed without anyone remembering to. Two URLs that mean
the same thing (option order, aliases, a restated default, base64 or plain source,
another signature or key) share one key; the negotiated format class is part of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from typing import NamedTuple

from .metrics import JobReport
from .processing.pipeline import Result
from .resolve import Effective
from .sources import SourceMeta

KEY_FIELDS = tuple(f.name for f in fields(Effective) if f.metadata.get("key", True))


class ResultKey(NamedTuple):
    options: str  # the keyed fields of the effective options, as text
    source: str  # the decoded source URL
    format: str  # the negotiated format class (``FormatPolicy.key``)

    def digest(self) -> str:
        """A fixed-length hex digest of the whole key (for keys outside this process)."""
        return hashlib.sha256("\n".join(self).encode()).hexdigest()


def options_text(e: Effective) -> str:
    """The keyed fields of ``e`` as one string (their reprs, in field order)."""
    return repr(tuple(getattr(e, name) for name in KEY_FIELDS))


def result_key(e: Effective, source: str, format_key: str) -> ResultKey:
    return ResultKey(options_text(e), source, format_key)


@dataclass(frozen=True)
class CachedResult:
    """A finished image with what its response headers need."""

    result: Result
    meta: SourceMeta  # the source's validators and caching headers
    etag: str
    report: JobReport = field(default_factory=JobReport, compare=False)  # the job's timings

    @property
    def size(self) -> int:
        return len(self.result.data) + 512
