"""Object URLs of the cloud stores: ``gs://bucket/key[?generation]`` and
``abs://container/blob[?snapshot=...|versionid=...]``.

The key is taken raw (no percent-decoding) and the query starts at the first
``IMGPROXY_SOURCE_URL_QUERY_SEPARATOR`` (``?``; empty: none), as imgproxy splits
them. Bucket and container names are checked against the stores' own rules, so a
name can never add a path segment to the request the client builds (the endpoint is
the operator's, never the URL's).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from ..errors import InvalidSource

_GCS_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_ABS_CONTAINER = re.compile(r"\$root|\$web|[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])")


def split_object_url(url: str, separator: str = "?") -> tuple[str, str, str]:
    """``(bucket, key, query)`` of ``scheme://bucket/key?query``; ``InvalidSource`` when
    the bucket or the key is missing."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    bucket, _, key = rest.partition("/")
    key, _, query = key.partition(separator) if separator else (key, "", "")
    if not bucket or not key:
        raise InvalidSource(f"Invalid object URL (bucket and key needed): {url[:200]}")
    return bucket, key, query


def parse_gs_url(url: str, separator: str = "?") -> tuple[str, str, int | None]:
    """``(bucket, key, generation)``. The generation is the query (imgproxy's form) or
    its ``generation=`` parameter; anything that is not a positive integer is ignored,
    as imgproxy does."""
    bucket, key, query = split_object_url(url, separator)
    if not _GCS_BUCKET.fullmatch(bucket):
        raise InvalidSource(f"Invalid GCS bucket name: {bucket[:100]}")
    value = parse_qs(query).get("generation", [query])[0] if query else ""
    generation = int(value) if value.isdigit() and int(value) > 0 else None
    return bucket, key, generation


def parse_abs_url(url: str, separator: str = "?"
                  ) -> tuple[str, str, str | None, str | None]:
    """``(container, blob, version_id, snapshot)`` from the ``versionid=`` (any case) and
    ``snapshot=`` parameters; another query is ignored (imgproxy ignores it)."""
    container, blob, query = split_object_url(url, separator)
    if not _ABS_CONTAINER.fullmatch(container) or "--" in container:
        raise InvalidSource(f"Invalid Azure container name: {container[:100]}")
    params = {name.lower(): values[0] for name, values in parse_qs(query).items()}
    return container, blob, params.get("versionid"), params.get("snapshot")


def bucket_allowed(bucket: str, allowed: tuple[str, ...], denied: tuple[str, ...]) -> bool:
    """imgproxy's ``IsBucketAllowed``: in the allowed list (when there is one), not denied."""
    return (not allowed or bucket in allowed) and bucket not in denied
