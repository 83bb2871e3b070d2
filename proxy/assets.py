"""Server-wide images read once at start-up: the watermark.

``IMGPROXY_WATERMARK_DATA`` (base64), else ``_PATH``, else ``_URL`` (fetched through
the normal sources, so ``local:///``, ``s3://`` and the SSRF rules apply). An image
that cannot be read or decoded stops start-up with a ``ConfigError`` naming the
setting. ``fingerprint`` (library versions and the image's digest) is part of every
ETag, so changing the watermark changes the ETags.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Awaitable, Callable

from . import __version__
from .errors import ConfigError, ProxyError

Check = Callable[[bytes], None]  # raises ValueError when the bytes are not a usable image


class Asset:
    def __init__(self, name: str, data: str = "", path: str = "", url: str = "") -> None:
        self.name = name  # the settings' prefix, e.g. IMGPROXY_WATERMARK
        self.encoded, self.path, self.url = data, path, url
        self.data: bytes | None = None
        self.fingerprint = fingerprint(None)

    @property
    def configured(self) -> bool:
        return bool(self.encoded or self.path or self.url)

    async def load(self, fetch: Callable[[str], Awaitable[bytes]], check: Check) -> None:
        """Read the image (``fetch`` downloads a URL) and check it; ConfigError if not."""
        if self.encoded:
            setting, value = f"{self.name}_DATA", "<base64>"
        elif self.path:
            setting, value = f"{self.name}_PATH", self.path
        elif self.url:
            setting, value = f"{self.name}_URL", self.url
        else:
            return
        try:
            if self.encoded:
                data = base64.b64decode(self.encoded, validate=False)
            elif self.path:
                with open(self.path, "rb") as fh:
                    data = fh.read()
            else:
                data = await fetch(self.url)
            check(data)
        except OSError as exc:
            raise ConfigError(f"{setting}={value!r}: {exc.strerror or exc}") from None
        except (ProxyError, ValueError, binascii.Error) as exc:
            raise ConfigError(f"{setting}={value!r}: {exc}") from None
        self.data = data
        self.fingerprint = fingerprint(data)


def fingerprint(data: bytes | None) -> str:
    """What changes the output bytes besides the result key: the vipsgate and libvips
    versions, and the watermark image."""
    import pyvips  # the front process has it loaded already (health checks)

    versions = (__version__, *(pyvips.version(i) for i in range(3)))
    digest = hashlib.blake2b(data, digest_size=8).hexdigest() if data else ""
    return hashlib.blake2b(repr((versions, digest)).encode(), digest_size=8).hexdigest()
