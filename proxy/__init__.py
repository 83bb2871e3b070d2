"""vipsgate: a fast, imgproxy-compatible image proxy (aiohttp + libvips)."""

__version__ = "0.1.0"
