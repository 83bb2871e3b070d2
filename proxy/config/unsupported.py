"""imgproxy settings vipsgate does not read, each with the reason (data only).

``UNSUPPORTED`` maps every name on imgproxy's configuration page
(``imgproxy_names.IMGPROXY_SETTINGS``) that no field of ``Settings`` reads to why; a
start-up warning names each one that is set (``unsupported_set``), so nobody relies on
one unknowingly. ``tests/test_imgproxy_settings.py`` checks that the two together cover
imgproxy's list exactly, and the README's "Every imgproxy setting" table
(``imgproxy_table``) is made from them.
"""

from __future__ import annotations

from collections.abc import Mapping

from .imgproxy_names import IMGPROXY_SETTINGS

PRO = "an imgproxy Pro feature, not in imgproxy's open-source server"
SOURCES = "only `local:///`, `http(s)://`, `s3://`, `gs://` and `abs://` sources"
METRICS = "metrics are Prometheus' (`/metrics`, `IMGPROXY_PROMETHEUS_BIND`)"
TRACES = ("traces through OpenTelemetry's own `OTEL_*` variables with `VIPSGATE_OTEL=1`; "
          "origins get the trace context")
REPORTS = "errors go to the log (one line per request, `VIPSGATE_LOG_FORMAT=json`)"
SYSLOG = "logs go to stdout and stderr (collect them there)"
INFO = "the `/info` endpoint is an imgproxy Pro feature"
COOKIES = ("results are cached and shared between clients: an image one client's cookies "
           "unlocked must not be served to others")
CLOUD_CREDENTIALS = "AWS credentials come from the standard chain (environment, IRSA, profile)"

#: imgproxy's open-source settings vipsgate does not read
OPEN_SOURCE: dict[str, str] = {
    "IMGPROXY_NETWORK": "TCP only (`VIPSGATE_BIND`), no Unix sockets",
    "IMGPROXY_SO_REUSEPORT": "on whenever `VIPSGATE_PROCESSES` > 1",
    "IMGPROXY_ALLOWED_INFO_OPTIONS": INFO,
    "IMGPROXY_INFO_ONLY_PRESETS": INFO,
    "IMGPROXY_MAX_CHAINED_PIPELINES": "chained pipelines are an imgproxy Pro feature",
    "IMGPROXY_SOURCE_URL_ENCRYPTION_KEY": "`enc/` source URLs are an imgproxy Pro feature",
    "IMGPROXY_PNG_UNLIMITED": "libvips' limits on PNG chunks always apply (hostile files)",
    "IMGPROXY_SVG_UNLIMITED": "librsvg's limits always apply (hostile files)",
    "IMGPROXY_SANITIZE_SVG": "SVG is never served as SVG (always rasterised), so there is "
                             "nothing to sanitise",
    "IMGPROXY_ALWAYS_RASTERIZE_SVG": "SVG sources are always rasterised (as with `true`): "
                                     "SVG output, even sanitised, can carry active content",
    "IMGPROXY_IGNORE_SSL_VERIFICATION": "TLS certificates are always verified (add a CA with "
                                        "`SSL_CERT_FILE`)",
    "IMGPROXY_COOKIE_PASSTHROUGH": COOKIES,
    "IMGPROXY_COOKIE_BASE_URL": COOKIES,
    "IMGPROXY_COOKIE_PASSTHROUGH_ALL": COOKIES,
    "IMGPROXY_PRESERVE_HDR": "every result is written at 8 bits per channel (16-bit sources "
                             "are converted, as with `false`); `ph:1` is accepted, no effect",
    "IMGPROXY_S3_ENDPOINT_USE_PATH_STYLE": "path-style with `IMGPROXY_S3_ENDPOINT` (imgproxy's "
                                           "default), virtual-hosted on AWS",
    "IMGPROXY_S3_USE_DECRYPTION_CLIENT": "S3 client-side encryption is not read",
    "IMGPROXY_S3_ASSUME_ROLE_ARN": CLOUD_CREDENTIALS,
    "IMGPROXY_S3_ASSUME_ROLE_EXTERNAL_ID": CLOUD_CREDENTIALS,
    "IMGPROXY_S3_DENIED_BUCKETS": "not implemented: list the allowed ones "
                                  "(`IMGPROXY_S3_ALLOWED_BUCKETS`)",
    **{name: SOURCES for name in (
        "IMGPROXY_USE_SWIFT",
        "IMGPROXY_SWIFT_USERNAME", "IMGPROXY_SWIFT_API_KEY", "IMGPROXY_SWIFT_AUTH_URL",
        "IMGPROXY_SWIFT_AUTH_VERSION", "IMGPROXY_SWIFT_TENANT", "IMGPROXY_SWIFT_DOMAIN",
        "IMGPROXY_SWIFT_ALLOWED_BUCKETS", "IMGPROXY_SWIFT_DENIED_BUCKETS")},
    **{name: METRICS for name in (
        "IMGPROXY_NEW_RELIC_KEY", "IMGPROXY_NEW_RELIC_APP_NAME", "IMGPROXY_NEW_RELIC_LABELS",
        "IMGPROXY_DATADOG_ENABLE", "IMGPROXY_DATADOG_ENABLE_ADDITIONAL_METRICS",
        "IMGPROXY_OPEN_TELEMETRY_ENABLE_METRICS", "IMGPROXY_CLOUD_WATCH_SERVICE_NAME",
        "IMGPROXY_CLOUD_WATCH_NAMESPACE", "IMGPROXY_CLOUD_WATCH_REGION")},
    "IMGPROXY_PROMETHEUS_NAMESPACE": "metric names are fixed (`vipsgate_*`, see Metrics)",
    **{name: TRACES for name in (
        "IMGPROXY_NEW_RELIC_PROPAGATE_EXTERNAL", "IMGPROXY_DATADOG_PROPAGATE_EXTERNAL",
        "IMGPROXY_OPEN_TELEMETRY_ENABLE", "IMGPROXY_OPEN_TELEMETRY_SERVER_CERT",
        "IMGPROXY_OPEN_TELEMETRY_CLIENT_CERT", "IMGPROXY_OPEN_TELEMETRY_CLIENT_KEY",
        "IMGPROXY_OPEN_TELEMETRY_TRACE_ID_GENERATOR",
        "IMGPROXY_OPEN_TELEMETRY_PROPAGATE_EXTERNAL")},
    "IMGPROXY_OPEN_TELEMETRY_ENABLE_LOGS": REPORTS,
    **{name: REPORTS for name in (
        "IMGPROXY_REPORT_DOWNLOADING_ERRORS", "IMGPROXY_BUGSNAG_KEY", "IMGPROXY_BUGSNAG_STAGE",
        "IMGPROXY_HONEYBADGER_KEY", "IMGPROXY_HONEYBADGER_ENV", "IMGPROXY_SENTRY_DSN",
        "IMGPROXY_SENTRY_ENVIRONMENT", "IMGPROXY_SENTRY_RELEASE",
        "IMGPROXY_AIRBRAKE_PROJECT_ID", "IMGPROXY_AIRBRAKE_PROJECT_KEY",
        "IMGPROXY_AIRBRAKE_ENVIRONMENT")},
    "IMGPROXY_DEVELOPMENT_ERRORS_MODE": "error bodies are one line; a 404 says why, the log "
                                        "has the rest",
    "IMGPROXY_LOG_FORMAT": "vipsgate's formats differ: `VIPSGATE_LOG_FORMAT=text|json`",
    **{name: SYSLOG for name in (
        "IMGPROXY_SYSLOG_ENABLE", "IMGPROXY_SYSLOG_LEVEL", "IMGPROXY_SYSLOG_NETWORK",
        "IMGPROXY_SYSLOG_ADDRESS", "IMGPROXY_SYSLOG_TAG")},
    "IMGPROXY_DOWNLOAD_BUFFER_SIZE": "imgproxy 3's buffer pool (gone in 4); sources stream",
    "IMGPROXY_BUFFER_POOL_CALIBRATION_THRESHOLD": "imgproxy 3's buffer pool (gone in 4); "
                                                  "sources stream",
    "IMGPROXY_MALLOC": "a setting of imgproxy's Docker image (glibc malloc, trimmed: "
                       "`IMGPROXY_FREE_MEMORY_INTERVAL`)",
    "IMGPROXY_FAIL_ON_DEPRECATION": "the deprecated names vipsgate reads "
                                    "(`IMGPROXY_ENABLE_*_DETECTION`) never fail start-up",
}

#: imgproxy Pro settings vipsgate reads (the shared result cache's names)
READ_PRO = frozenset({
    "IMGPROXY_CACHE_USE", "IMGPROXY_CACHE_PATH_PREFIX", "IMGPROXY_CACHE_BUCKET",
    "IMGPROXY_CACHE_KEY_HEADERS", "IMGPROXY_CACHE_REPORT_ERRORS", "IMGPROXY_CACHE_FS_ROOT",
    "IMGPROXY_CACHE_S3_REGION", "IMGPROXY_CACHE_S3_ENDPOINT", "IMGPROXY_CACHE_GCS_KEY",
    "IMGPROXY_CACHE_GCS_ENDPOINT", "IMGPROXY_CACHE_ABS_NAME", "IMGPROXY_CACHE_ABS_KEY",
    "IMGPROXY_CACHE_ABS_ENDPOINT"})

#: the shared result cache (``IMGPROXY_CACHE_USE``) is vipsgate's own, under Pro's names
CACHE: dict[str, str] = {
    "IMGPROXY_CACHE_KEY_COOKIES": COOKIES,
    "IMGPROXY_CACHE_S3_ENDPOINT_USE_PATH_STYLE": "path-style with `IMGPROXY_CACHE_S3_ENDPOINT`",
    "IMGPROXY_CACHE_S3_USE_DECRYPTION_CLIENT": "entries carry their own checksum; S3 "
                                               "client-side encryption is not read",
    "IMGPROXY_CACHE_S3_ASSUME_ROLE_ARN": CLOUD_CREDENTIALS,
    "IMGPROXY_CACHE_S3_ASSUME_ROLE_EXTERNAL_ID": CLOUD_CREDENTIALS,
    **{s.name: "the shared cache lives in `fs`, `s3`, `gcs`, `abs` or `redis` "
               "(`IMGPROXY_CACHE_USE`)"
       for s in IMGPROXY_SETTINGS
       if s.name.startswith(("IMGPROXY_CACHE_GCS_", "IMGPROXY_CACHE_ABS_",
                             "IMGPROXY_CACHE_SWIFT_")) and s.name not in READ_PRO},
}

UNSUPPORTED: dict[str, str] = {
    **{s.name: PRO for s in IMGPROXY_SETTINGS if s.pro and s.name not in READ_PRO},
    **CACHE,
    **OPEN_SOURCE,
}


def unsupported_set(env: Mapping[str, str]) -> list[str]:
    """One line per imgproxy setting in ``env`` that vipsgate does not support, sorted
    (for the start-up warning and ``vipsgate config --check``)."""
    return [f"{name} is not supported ({UNSUPPORTED[name]}); it is ignored"
            for name in sorted(env) if name in UNSUPPORTED]


#: names read by other parts of vipsgate (the URL helper, the load tests), not by the
#: server: never reported as unknown
READ_ELSEWHERE: dict[str, str] = {
    "VIPSGATE_BASE_URL": "the URL helper's base URL (vipsgate.urlbuilder)",
    "VIPSGATE_MEDIA_BASE_URL": "the URL helper's base for relative sources",
    "VIPSGATE_URL_ENCODING": "the URL helper's source encoding",
    "VIPSGATE_URL_INSECURE": "the URL helper's unsigned mode",
    "VIPSGATE_LT_KEY": "the load test's key (loadtest/)",
    "VIPSGATE_LT_SALT": "the load test's salt (loadtest/)",
    "VIPSGATE_LT_SOURCES": "the load test's sources (loadtest/)",
}
