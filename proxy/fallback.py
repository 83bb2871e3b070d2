"""The fallback image (``IMGPROXY_FALLBACK_IMAGE_DATA``/``_PATH``/``_URL``), as imgproxy
serves it: when the source cannot be had (not found, unreachable, timed out, cut
short, too large, not a decodable image), the fallback image stands in, processed with
the request's options, answered with ``IMGPROXY_FALLBACK_IMAGE_HTTP_CODE`` (200; 0: the
error's own status) and ``IMGPROXY_FALLBACK_IMAGE_TTL``.

Never for a bad signature, a bad option, a refused source URL or an overload: those
fail before the source is asked for, or are not the source's fault (``errors.ProxyError
.fallback``). The image is read once at start-up (an ``assets.Asset``); each rendering
is cached in the result cache under the request's key with the source replaced by a
marker, so every failing source asked for with the same options shares one. A failing
source itself is never cached: the next request asks the origin again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .assets import Asset
from .errors import ProxyError
from .negotiate import FormatPolicy
from .options import ProcessingOptions
from .processing.pipeline import process
from .resolve import resolve
from .results import ResultKey
from .sources import Fetched, SourceMeta

SOURCE = "fallback:"  # the source part of a fallback rendering's result key


class Fallback:
    def __init__(self, settings: Any) -> None:
        s = self.settings = settings
        self.asset = Asset("IMGPROXY_FALLBACK_IMAGE", s.fallback_image_data,
                           s.fallback_image_path, s.fallback_image_url)

    def serves(self, exc: ProxyError) -> bool:
        """Whether the fallback image answers for ``exc``."""
        return exc.fallback and self.asset.data is not None

    def status(self, exc: ProxyError) -> int:
        return self.settings.fallback_image_http_code or exc.status

    def source(self) -> Fetched:
        assert self.asset.data is not None
        return Fetched(self.asset.data, SourceMeta(etag=f'"{self.asset.fingerprint}"'))

    @staticmethod
    def key(key: ResultKey) -> ResultKey:
        """The result key of the fallback rendered for a request with result key ``key``."""
        return ResultKey(key.options, SOURCE, key.format)


def checker(settings: Any) -> Callable[[bytes], None]:
    """A check for the fallback image: ``ValueError`` unless the pipeline can render it
    (a small thumbnail, so every decoder a request could need is tried once)."""
    effective = resolve(ProcessingOptions(width=16, height=16), settings)

    def check(data: bytes) -> None:
        try:
            process(data, effective, FormatPolicy())
        except ProxyError as exc:
            raise ValueError(f"not an image vipsgate can render: {exc.reason}") from None
    return check
