"""The optional cloud clients: a setting that needs one which is not installed stops
start-up with a message naming the extra to install (``vipsgate[gcs]``,
``vipsgate[azure]``); the rest starts without them."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import ROOT, TEST_KEY, TEST_SALT, make_settings
from vipsgate.config.cloud import check_cloud
from vipsgate.errors import ConfigError


def settings(**values: object) -> SimpleNamespace:
    base = {"use_gcs": False, "use_abs": False, "cache_use": "", "abs_name": "acct",
            "cache_abs_name": "acct", "gcs_key": "", "cache_gcs_key": ""}
    return SimpleNamespace(**{**base, **values})


@pytest.mark.parametrize(("values", "message"), [
    ({"use_gcs": True}, "IMGPROXY_USE_GCS=true needs the optional client: "
                        "pip install 'vipsgate[gcs]' (missing gcloud.aio.auth)"),
    ({"cache_use": "gcs"}, "IMGPROXY_CACHE_USE=gcs needs the optional client: "
                           "pip install 'vipsgate[gcs]'"),
    ({"use_abs": True, "cache_use": "abs"},
     "IMGPROXY_USE_ABS=true and IMGPROXY_CACHE_USE=abs needs the optional client: "
     "pip install 'vipsgate[azure]' (missing azure.storage.blob.aio)"),
])
def test_a_missing_extra_is_named(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_cloud(settings(**values), available=lambda module: False)
    assert str(error.value).startswith(message)


def test_nothing_is_needed_when_the_stores_are_off() -> None:
    looked_up: list[str] = []
    check_cloud(settings(cache_use="s3"), available=lambda m: bool(looked_up.append(m)))
    assert make_settings().use_gcs is False
    assert looked_up == []  # finding a module imports its parents: the SDKs stay unloaded


def test_the_server_refuses_to_start_and_says_which_extra() -> None:
    """``vipsgate serve`` in a Python where the GCS client cannot be imported."""
    code = ("import sys; sys.modules['gcloud.aio.auth'] = None; "
            "from vipsgate.cli import main; sys.exit(main(['serve']))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGPROXY_", "VIPSGATE_"))}
    env.update(IMGPROXY_KEY=TEST_KEY, IMGPROXY_SALT=TEST_SALT, IMGPROXY_USE_GCS="true")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "pip install 'vipsgate[gcs]'" in done.stderr
    assert "IMGPROXY_USE_GCS=true" in done.stderr
