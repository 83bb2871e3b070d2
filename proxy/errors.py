"""One exception hierarchy for everything a request can fail with.

Each class carries its HTTP status and the short public message sent to the
client; ``reason`` is the detail that goes to the log (and, for URL errors,
into the body, as imgproxy does). ``middleware.error_response`` turns them into
responses in one place; nothing else chooses a status code.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is invalid; start-up stops with this one-line message."""


class BuilderConfigError(ValueError):
    """The URL helper is configured wrongly; ``option`` names the argument (``key``,
    ``salt``, ...) so a framework can name its own setting in the message."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


class ListenError(Exception):
    """The server cannot listen on its address (taken by another server, not local, no
    permission); start-up stops with this one-line message."""


class ProxyError(Exception):
    """Base of every error that becomes an HTTP response."""

    status: int = 500
    public: str = "Internal error"
    category: str = "unexpected"
    fallback: bool = False  # the source could not be had: a fallback image may stand in

    def __init__(self, reason: str = "", *, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(reason or self.public)
        self.reason = reason or self.public
        if status is not None:
            self.status = status
        self.headers = headers or {}


class InvalidURL(ProxyError):
    status, public, category = 404, "Invalid URL", "path_parsing"


class ExpiredURL(InvalidURL):
    public = "Expired URL"


class Forbidden(ProxyError):
    status, public, category = 403, "Forbidden", "security"


class InvalidSource(ProxyError):
    """The source URL is not allowed (allow-list, blocked address, unknown scheme)."""

    status, public, category = 404, "Invalid source URL", "security"


class SourceNotFound(ProxyError):
    status, public, category, fallback = 404, "Source not found", "download", True


class SourceUnreachable(ProxyError):
    """The origin failed: 5xx, connection error, or a 4xx passed through."""

    status, public, category, fallback = 502, "Source is unreachable", "download", True


class SourceTimeout(ProxyError):
    status, public, category, fallback = 504, "Source timed out", "download", True


class SourceTooLarge(ProxyError):
    status, public, category = 422, "Source file is too large", "image_data_size"
    fallback = True


class SourceIncomplete(ProxyError):
    """The origin's body ended before its declared length (cut connection)."""

    status, public, category, fallback = 422, "Source response is incomplete", "download", True


class NotModified(ProxyError):
    """Not an error: the client's validators match. Carries the 304 headers."""

    status, public, category = 304, "", "none"


class UnprocessableImage(ProxyError):
    """The bytes are not an image we can decode (broken, unsupported, hostile)."""

    status, public, category, fallback = 422, "Broken or unsupported image", "processing", True


class ImageTooLarge(UnprocessableImage):
    public, fallback = "Source image resolution is too large", False


class TooMuchMemory(UnprocessableImage):
    """Processing the image would need more than the whole memory budget."""

    public, fallback = "Image needs more memory than the server allows", False


class UnsupportedFormat(UnprocessableImage):
    public = "Unsupported image format"


class TooManyRequests(ProxyError):
    status, public, category = 429, "Too many requests", "queue"


class RequestTimeout(ProxyError):
    status, public, category = 503, "Timeout", "timeout"


class WorkerLost(ProxyError):
    """The worker process making the image died (killed, out of memory) or was killed
    past the job's deadline; the pool has been replaced: try again."""

    status, public, category = 503, "Service unavailable", "worker"


class Overloaded(ProxyError):
    """The memory budget for work in flight is used up: try again shortly."""

    status, public, category = 503, "Service overloaded", "memory"


class CacheUnavailable(ProxyError):
    """The shared result cache failed; a response only with IMGPROXY_CACHE_REPORT_ERRORS
    (otherwise the image is computed and the failure only counted)."""

    status, public, category = 503, "Result cache is unavailable", "cache"
