"""Google Cloud Storage and Azure Blob Storage: ``gs://`` and ``abs://`` sources and the
shared tier's ``gcs`` and ``abs`` adapters (imgproxy's names).

Their clients are optional installs (``vipsgate[gcs]``, ``vipsgate[azure]``);
``check_cloud`` stops start-up with a ``ConfigError`` naming the extra a setting needs
when it is not installed, and checks the keys without ever printing them.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .values import boolean, items, setting, size

#: the extra, and the modules it installs, per client
EXTRAS = {"gcs": ("gcs", ("gcloud.aio.auth",)),
          "abs": ("azure", ("azure.storage.blob.aio", "azure.identity.aio"))}


@dataclass(frozen=True)
class CloudSourceSettings:
    # Google Cloud Storage and Azure Blob Storage sources
    use_gcs: bool = setting(False, "IMGPROXY_USE_GCS", parse=boolean,
                            doc="Enable `gs://bucket/key[?generation]` sources (`vipsgate[gcs]`)")
    gcs_key: str = setting("", "IMGPROXY_GCS_KEY",
                           doc="Service-account JSON key, raw or base64; empty: the pod's "
                               "identity (GKE workload identity, ADC)")
    gcs_endpoint: str = setting("", "IMGPROXY_GCS_ENDPOINT",
                                doc="GCS JSON API endpoint; `https://storage.googleapis.com` "
                                    "when empty")
    gcs_no_auth: bool = setting(False, "VIPSGATE_GCS_NO_AUTH", parse=boolean,
                                doc="Send no credentials to GCS (public buckets, emulators)")
    gcs_allowed_buckets: tuple[str, ...] = setting(
        (), "IMGPROXY_GCS_ALLOWED_BUCKETS", parse=items,
        doc="Only these GCS buckets (all if empty)")
    gcs_denied_buckets: tuple[str, ...] = setting(
        (), "IMGPROXY_GCS_DENIED_BUCKETS", parse=items, doc="Never these GCS buckets")
    use_abs: bool = setting(False, "IMGPROXY_USE_ABS", parse=boolean,
                            doc="Enable `abs://container/blob` sources (`vipsgate[azure]`)")
    abs_name: str = setting("", "IMGPROXY_ABS_NAME", doc="Azure storage account name")
    abs_key: str = setting("", "IMGPROXY_ABS_KEY",
                           doc="Azure account key; empty: the pod's identity (AKS workload "
                               "identity, managed identity, `AZURE_*` service principal)")
    abs_endpoint: str = setting("", "IMGPROXY_ABS_ENDPOINT",
                                doc="Blob endpoint; `https://NAME.blob.core.windows.net` "
                                    "when empty")
    abs_allowed_buckets: tuple[str, ...] = setting(
        (), "IMGPROXY_ABS_ALLOWED_BUCKETS", parse=items,
        doc="Only these Azure containers (all if empty)")
    abs_denied_buckets: tuple[str, ...] = setting(
        (), "IMGPROXY_ABS_DENIED_BUCKETS", parse=items, doc="Never these Azure containers")
    abs_chunk_size: int = setting(
        4 * 1024**2, "VIPSGATE_ABS_CHUNK_SIZE", parse=size,
        doc="An `abs://` blob is read in ranges of this size, one request each (the first "
            "when the source is opened)")


@dataclass(frozen=True)
class CloudTierSettings:
    # the shared tier on Google Cloud Storage or Azure Blob Storage
    cache_gcs_key: str = setting("", "IMGPROXY_CACHE_GCS_KEY",
                                 doc="`gcs`: service-account JSON key, raw or base64; empty: "
                                     "the pod's identity")
    cache_gcs_endpoint: str = setting("", "IMGPROXY_CACHE_GCS_ENDPOINT",
                                      doc="`gcs`: JSON API endpoint (Google when empty)")
    cache_gcs_no_auth: bool = setting(False, "VIPSGATE_CACHE_GCS_NO_AUTH", parse=boolean,
                                      doc="`gcs`: send no credentials (emulators)")
    cache_abs_name: str = setting("", "IMGPROXY_CACHE_ABS_NAME",
                                  doc="`abs`: the storage account")
    cache_abs_key: str = setting("", "IMGPROXY_CACHE_ABS_KEY",
                                 doc="`abs`: account key; empty: the pod's identity")
    cache_abs_endpoint: str = setting("", "IMGPROXY_CACHE_ABS_ENDPOINT",
                                      doc="`abs`: blob endpoint (Azure when empty)")


def service_account_json(text: str) -> str:
    """A Google JSON key given raw or base64-encoded, as JSON text; ``ValueError``
    (which never quotes the key) when it is neither."""
    text = text.strip()
    if not text.startswith("{"):
        try:
            text = base64.b64decode(text, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("expected a JSON key, raw or base64-encoded") from None
    try:
        key = json.loads(text)
    except ValueError:
        raise ValueError("expected a JSON key, raw or base64-encoded") from None
    if not isinstance(key, dict) or not isinstance(key.get("type"), str):
        raise ValueError('expected a Google credentials JSON with a "type"')
    return text


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_cloud(s: Any, available: Callable[[str], bool] = installed) -> None:
    """Start-up checks: the extra each enabled store needs is installed, the Azure
    account is named, the Google keys parse."""
    wanted: dict[str, list[str]] = {"gcs": [], "abs": []}
    if s.use_gcs:
        wanted["gcs"].append("IMGPROXY_USE_GCS=true")
    if s.use_abs:
        wanted["abs"].append("IMGPROXY_USE_ABS=true")
    if s.cache_use in wanted:
        wanted[s.cache_use].append(f"IMGPROXY_CACHE_USE={s.cache_use}")
    for store, reasons in wanted.items():
        if not reasons:  # find_spec imports the parent packages: only for a wanted store
            continue
        extra, modules = EXTRAS[store]
        missing = [m for m in modules if not available(m)]
        if missing:
            raise ConfigError(f"{' and '.join(reasons)} needs the optional client: "
                              f"pip install 'vipsgate[{extra}]' (missing {missing[0]})")
    if s.use_abs and not s.abs_name:
        raise ConfigError("IMGPROXY_USE_ABS=true needs IMGPROXY_ABS_NAME (the storage account)")
    if s.cache_use == "abs" and not s.cache_abs_name:
        raise ConfigError("IMGPROXY_CACHE_USE=abs needs IMGPROXY_CACHE_ABS_NAME")
    for name, value in (("IMGPROXY_GCS_KEY", s.gcs_key),
                        ("IMGPROXY_CACHE_GCS_KEY", s.cache_gcs_key)):
        if value:
            try:
                service_account_json(value)
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None
