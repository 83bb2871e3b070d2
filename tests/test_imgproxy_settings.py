"""Every imgproxy setting accounted for: read by ``Settings`` or listed as unsupported
(with the reason), together exactly imgproxy's list; the README table; the warning."""

from __future__ import annotations

from conftest import ROOT
from vipsgate.config.accounting import imgproxy_table, read_names
from vipsgate.config.imgproxy_names import IMGPROXY_SETTINGS, IMGPROXY_VERSION, NAMES, SOURCE
from vipsgate.config.unsupported import UNSUPPORTED, unsupported_set


def test_imgproxy_list_is_kept_with_its_provenance():
    assert IMGPROXY_VERSION == "4.0.x" and "options.mdx" in SOURCE
    assert len(NAMES) == len(IMGPROXY_SETTINGS) == 272  # no name listed twice
    assert all(name.startswith("IMGPROXY_") for name in NAMES)


def test_every_imgproxy_setting_is_read_or_unsupported_never_both():
    read = {name for name in read_names() if name.startswith("IMGPROXY_")}
    assert set(UNSUPPORTED) <= NAMES, set(UNSUPPORTED) - NAMES
    assert not read & set(UNSUPPORTED), read & set(UNSUPPORTED)
    assert (read & NAMES) | set(UNSUPPORTED) == NAMES, NAMES - read - set(UNSUPPORTED)
    # vipsgate reads one name imgproxy 3 had and 4 removed, nothing else outside the list
    assert read - NAMES == {"IMGPROXY_MAX_SVG_CHECK_BYTES"}
    assert all(reason.strip() for reason in UNSUPPORTED.values())


def test_the_settings_the_issue_found_ignored_are_read_now():
    read = read_names()
    for name in ("IMGPROXY_URL_REPLACEMENTS", "IMGPROXY_ARGUMENTS_SEPARATOR",
                 "IMGPROXY_PRESETS_SEPARATOR", "IMGPROXY_ENABLE_CLIENT_HINTS",
                 "IMGPROXY_PREFERRED_FORMATS", "IMGPROXY_FALLBACK_IMAGE_DATA",
                 "IMGPROXY_FALLBACK_IMAGE_PATH", "IMGPROXY_FALLBACK_IMAGE_URL",
                 "IMGPROXY_FALLBACK_IMAGE_HTTP_CODE", "IMGPROXY_FALLBACK_IMAGE_TTL",
                 "IMGPROXY_ETAG_BUSTER", "IMGPROXY_LAST_MODIFIED_BUSTER",
                 "IMGPROXY_SET_CANONICAL_HEADER", "IMGPROXY_SOURCE_URL_QUERY_SEPARATOR",
                 "IMGPROXY_USE_LINEAR_COLORSPACE"):
        assert name in read, name
    for name in ("IMGPROXY_COOKIE_PASSTHROUGH", "IMGPROXY_ALWAYS_RASTERIZE_SVG",
                 "IMGPROXY_SANITIZE_SVG", "IMGPROXY_PRESERVE_HDR"):
        assert name in UNSUPPORTED, name  # deliberate, with the reason


def test_readme_has_the_table():
    """Regenerate with `vipsgate config --imgproxy` when a setting changes."""
    table = imgproxy_table()
    assert table in (ROOT / "README.md").read_text()
    assert table.count("\n") == len(IMGPROXY_SETTINGS) + 1


def test_unsupported_settings_that_are_set_are_named():
    env = {"IMGPROXY_USE_GCS": "1", "IMGPROXY_TTL": "60", "PATH": "/bin",
           "IMGPROXY_LICENSE_KEY": "x"}
    lines = unsupported_set(env)
    assert len(lines) == 2
    assert lines[0].startswith("IMGPROXY_LICENSE_KEY is not supported (an imgproxy Pro")
    assert lines[1].startswith("IMGPROXY_USE_GCS is not supported (only `local:///`")


def test_start_up_warns_about_each_unsupported_setting(serve):
    server = serve(IMGPROXY_USE_GCS="true", IMGPROXY_COOKIE_PASSTHROUGH="true")
    server.stderr.wait_for("IMGPROXY_COOKIE_PASSTHROUGH is not supported")
    server.stderr.wait_for("IMGPROXY_USE_GCS is not supported")
