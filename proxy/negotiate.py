"""Accept header + URL format + settings -> an output-format policy.

The policy is decided per request before the cache lookup (so the cache key
and ``Vary`` are known) and is handed down to processing, which calls
``choose`` once the image's facts (alpha, animation, size) are known.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from . import formats

PREFERRED_SOURCE_FORMATS = ("jpeg", "png", "gif")  # IMGPROXY_PREFERRED_FORMATS' default
_MODERN = ("jxl", "avif", "webp")  # preference order when several are allowed (imgproxy's)
#: a q-value: a plain decimal number (the CDN recipes in cdn/ read it the same way)
_QVALUE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def accepted_types(accept: str) -> dict[str, float]:
    """Media types in an Accept header with their q-values (``q=0`` means refused)."""
    result: dict[str, float] = {}
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if not media:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                text = value.strip()
                q = max(0.0, min(1.0, float(text))) if _QVALUE.fullmatch(text) else 0.0
        result[media] = max(q, result.get(media, 0.0)) if media in result else q
    return result


def modern_formats(accept: str, webp: bool, avif: bool, jxl: bool = False) -> tuple[str, ...]:
    """The enabled modern formats the client explicitly accepts, best first.

    Only an explicit ``image/jxl`` / ``image/avif`` / ``image/webp`` counts: ``*/*``
    and ``image/*`` do not mean the browser can decode them.
    """
    types = accepted_types(accept) if accept else {}
    enabled = {"jxl": jxl, "avif": avif, "webp": webp}
    usable = [f for f in _MODERN if enabled[f] and types.get(f"image/{f}", 0.0) > 0]
    # the client's q-values order them; equal q-values keep our order (AVIF first)
    return tuple(sorted(usable, key=lambda f: -types[f"image/{f}"]))


def edge_accept(accept: str) -> str:
    """The ``Accept`` a CDN forwards, and keys its cache on, instead of ``accept``: vipsgate
    answers both alike (with AUTO_AVIF/AUTO_WEBP on), and there are four values only:
    ``image/avif,image/webp``, ``image/avif``, ``image/webp`` and ``""`` (no header).
    The recipes in ``cdn/`` compute the same; tests/test_cdn.py holds them to it."""
    formats = modern_formats(accept, webp=True, avif=True)
    if formats[:1] == ("webp",):  # WebP first: AVIF is never chosen
        return "image/webp"
    return ",".join(f"image/{fmt}" for fmt in formats)


def _any(fmt: str) -> bool:
    return True


@dataclass(frozen=True)
class FormatPolicy:
    explicit: str | None = None  # from the URL (extension or f:)
    accepted: tuple[str, ...] = ()  # modern formats usable for this client, best first
    enforce: bool = False  # accepted formats override an explicit one
    vary: bool = False  # the answer depends on Accept
    preferred: tuple[str, ...] = PREFERRED_SOURCE_FORMATS  # IMGPROXY_PREFERRED_FORMATS

    @property
    def key(self) -> str:
        """Everything that can change the chosen format, for the cache key."""
        if self.explicit and not self.enforce:
            return self.explicit
        key = f"{self.explicit or 'auto'}>{'+'.join(self.accepted) or '-'}"
        if self.preferred != PREFERRED_SOURCE_FORMATS and not self.explicit:
            key += f">{'+'.join(self.preferred)}"
        return key

    def choose(self, source: str, alpha: bool, animated: bool, width: int, height: int,
               fits: Callable[[str], bool] = _any) -> str:
        """The output format for an image with these facts. ``fits``: whether encoding
        in a format stays within the job's memory limit; a format the URL names is
        kept regardless (the job is refused instead), others are passed over."""
        if self.explicit and not (self.enforce and self.accepted):
            return self.explicit
        for fmt in self.accepted:
            if fmt == "avif" and (animated or min(width, height) < 16):
                continue  # no animated AVIF output; AVIF needs 16px
            if fmt == "jxl" and animated:
                continue  # no animated JPEG XL output
            if fits(fmt):
                return fmt
        if self.explicit:
            return self.explicit
        if source in self.preferred and fits(source):
            return source
        holding = [fmt for fmt in self.preferred  # those that hold the image, as imgproxy
                   if (not animated or fmt in formats.ANIMATED)
                   and (not alpha or fmt in formats.ALPHA)]
        return next((fmt for fmt in holding if fits(fmt)),
                    source if source in self.preferred else
                    holding[0] if holding else self.preferred[0])


def negotiate(explicit: str | None, accept: str, *, auto_webp: bool, auto_avif: bool,
              enforce_webp: bool, enforce_avif: bool, auto_jxl: bool = False,
              enforce_jxl: bool = False,
              preferred: tuple[str, ...] = PREFERRED_SOURCE_FORMATS) -> FormatPolicy:
    """Build the policy for one request."""
    enforcing = enforce_webp or enforce_avif or enforce_jxl
    negotiating = auto_webp or auto_avif or auto_jxl or enforcing
    if explicit:
        enforced = modern_formats(accept, enforce_webp, enforce_avif, enforce_jxl)
        return FormatPolicy(explicit, enforced, bool(enforced), enforcing, preferred)
    accepted = modern_formats(accept, auto_webp or enforce_webp, auto_avif or enforce_avif,
                              auto_jxl or enforce_jxl)
    return FormatPolicy(None, accepted, False, negotiating, preferred)
