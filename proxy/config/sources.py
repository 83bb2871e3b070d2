"""Where sources come from, and the limits on them."""

from __future__ import annotations

from dataclasses import dataclass

from .values import boolean, integer, items, number, setting, size


@dataclass(frozen=True)
class SourceSettings:
    # sources
    local_root: str = setting("", "IMGPROXY_LOCAL_FILESYSTEM_ROOT",
                              doc="Root of `local:///` sources (off when empty)")
    use_s3: bool = setting(False, "IMGPROXY_USE_S3", parse=boolean, doc="Enable `s3://` sources")
    s3_region: str = setting("", "IMGPROXY_S3_REGION", "AWS_REGION", doc="S3 region")
    s3_endpoint: str = setting("", "IMGPROXY_S3_ENDPOINT",
                               doc="S3 endpoint URL (MinIO, R2, ...); AWS when empty")
    s3_allowed_buckets: tuple[str, ...] = setting(
        (), "IMGPROXY_S3_ALLOWED_BUCKETS", parse=items, doc="Only these buckets (all if empty)")
    download_timeout: float = setting(5.0, "IMGPROXY_DOWNLOAD_TIMEOUT", parse=number(0.1),
                                      doc="Seconds to download a source (504 after it)")
    max_origin_connections: int = setting(
        0, "VIPSGATE_MAX_ORIGIN_CONNECTIONS", parse=integer(0),
        doc="Connections open at once to one origin host (0 = 2 × workers, at least 10; "
            "the pool holds as many as the queue admits, plus 16)")
    client_keep_alive_timeout: float = setting(
        15.0, "IMGPROXY_CLIENT_KEEP_ALIVE_TIMEOUT", parse=number(0),
        doc="Seconds an idle origin connection is kept for reuse (imgproxy: 90)")
    max_redirects: int = setting(10, "IMGPROXY_MAX_REDIRECTS", parse=integer(0, 100),
                                 doc="Redirects followed for HTTP sources")
    user_agent: str = setting("vipsgate/0.1", "IMGPROXY_USER_AGENT",
                              doc="User-Agent sent to HTTP origins")
    allowed_sources: tuple[str, ...] = setting(
        (), "IMGPROXY_ALLOWED_SOURCES", parse=items,
        doc="Source URL prefixes allowed (`*` matches within a segment); all if empty")
    allow_loopback_sources: bool = setting(
        False, "IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES", parse=boolean,
        doc="Allow HTTP sources on 127.0.0.0/8, ::1")
    allow_private_sources: bool = setting(
        False, "IMGPROXY_ALLOW_PRIVATE_SOURCE_ADDRESSES", parse=boolean,
        doc="Allow RFC 1918, CGNAT and ULA sources (imgproxy allows them by default)")
    allow_link_local_sources: bool = setting(
        False, "IMGPROXY_ALLOW_LINK_LOCAL_SOURCE_ADDRESSES", parse=boolean,
        doc="Allow 169.254.0.0/16 and fe80::/10 (cloud metadata lives there)")
    # limits
    max_src_file_size: int = setting(64 * 1024**2, "IMGPROXY_MAX_SRC_FILE_SIZE", parse=size,
                                     doc="Largest source in bytes, enforced while streaming")
    max_src_resolution: float = setting(50.0, "IMGPROXY_MAX_SRC_RESOLUTION", parse=number(0.001),
                                        doc="Largest source in megapixels (kept frames summed)")
    max_animation_frames: int = setting(100, "IMGPROXY_MAX_ANIMATION_FRAMES", parse=integer(1),
                                        doc="Frames of an animation kept (1 = first frame only)")
    max_animation_frame_resolution: float = setting(
        0.0, "IMGPROXY_MAX_ANIMATION_FRAME_RESOLUTION", parse=number(0),
        doc="If > 0, check each frame against this many megapixels instead of the sum")
    max_result_dimension: int = setting(8192, "IMGPROXY_MAX_RESULT_DIMENSION", parse=integer(0),
                                        doc="Largest output side in pixels (0 = no cap)")
    max_src_dimension: int = setting(
        65535, "VIPSGATE_MAX_SRC_DIMENSION", parse=integer(0),
        doc="Longest side of a raster source in pixels (0 = no cap): decoding holds rows")
    max_result_resolution: float = setting(
        0.0, "VIPSGATE_MAX_RESULT_RESOLUTION", parse=number(0),
        doc="Largest result in megapixels, frames summed (0 = IMGPROXY_MAX_SRC_RESOLUTION)")
    max_job_memory: int = setting(
        512 * 1024**2, "VIPSGATE_MAX_JOB_MEMORY", parse=size,
        doc="Largest estimated working memory of one image (0 = no cap): more is 422, "
            "and a negotiated format falls back to a cheaper one")
    max_svg_check_bytes: int = setting(32 * 1024, "IMGPROXY_MAX_SVG_CHECK_BYTES", parse=size,
                                       doc="Bytes read to recognise an SVG")
    free_memory_interval: float = setting(
        10.0, "IMGPROXY_FREE_MEMORY_INTERVAL", parse=number(0),
        doc="Seconds between returning freed memory to the OS when idle (glibc; 0 = off)")
