"""Environment names vipsgate knows but does not read as server settings (data only).

``UNSUPPORTED``: imgproxy settings vipsgate does not implement, each with the reason;
setting one draws a start-up warning, so nobody relies on it unknowingly.
``READ_ELSEWHERE``: names read by other parts of vipsgate (the URL helper, the load
tests), not by the server. Any other ``IMGPROXY_*``/``VIPSGATE_*`` name that is not a
field of ``Settings`` is *unknown*, most likely a misspelling (see ``environment.py``).
"""

from __future__ import annotations

UNSUPPORTED: dict[str, str] = {
    "IMGPROXY_USE_LINEAR_COLORSPACE": "resizing is done in sRGB (imgproxy's default)",
    "IMGPROXY_ENABLE_WEBP_DETECTION": "an old imgproxy name: use IMGPROXY_AUTO_WEBP",
    "IMGPROXY_ENABLE_AVIF_DETECTION": "an old imgproxy name: use IMGPROXY_AUTO_AVIF",
    "IMGPROXY_USE_GCS": "only local:///, http(s):// and s3:// sources",
    "IMGPROXY_USE_ABS": "only local:///, http(s):// and s3:// sources",
    "IMGPROXY_USE_SWIFT": "only local:///, http(s):// and s3:// sources",
    "IMGPROXY_FALLBACK_IMAGE_URL": "errors are answered with a status, never an image",
    "IMGPROXY_FALLBACK_IMAGE_PATH": "errors are answered with a status, never an image",
    "IMGPROXY_FALLBACK_IMAGE_DATA": "errors are answered with a status, never an image",
}

READ_ELSEWHERE: dict[str, str] = {
    "VIPSGATE_BASE_URL": "the URL helper's base URL (vipsgate.urlbuilder)",
    "VIPSGATE_MEDIA_BASE_URL": "the URL helper's base for relative sources",
    "VIPSGATE_URL_ENCODING": "the URL helper's source encoding",
    "VIPSGATE_URL_INSECURE": "the URL helper's unsigned mode",
    "VIPSGATE_LT_KEY": "the load test's key (loadtest/)",
    "VIPSGATE_LT_SALT": "the load test's salt (loadtest/)",
    "VIPSGATE_LT_SOURCES": "the load test's sources (loadtest/)",
}
