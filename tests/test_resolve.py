"""Effective options: a URL value replaces the setting, 0 means what it means there."""

from __future__ import annotations

import pytest

from conftest import effective


@pytest.mark.parametrize(("option", "field", "env", "setting"), [
    ("msfs", "max_src_file_size", "IMGPROXY_MAX_SRC_FILE_SIZE", "1000"),
    ("mafr", "max_animation_frame_resolution", "IMGPROXY_MAX_ANIMATION_FRAME_RESOLUTION", "2"),
    ("mrd", "max_result_dimension", "IMGPROXY_MAX_RESULT_DIMENSION", "500"),
])
def test_zero_in_the_url_replaces_the_setting(option, field, env, setting):
    assert getattr(effective(f"{option}:0", **{env: setting}), field) == 0
    assert float(getattr(effective("", **{env: setting}), field)) == float(setting)
    assert float(getattr(effective(f"{option}:7", **{env: setting}), field)) == 7


@pytest.mark.parametrize(("option", "field", "env"), [
    ("ar", "auto_rotate", "IMGPROXY_AUTO_ROTATE"),
    ("sm", "strip_metadata", "IMGPROXY_STRIP_METADATA"),
    ("kcr", "keep_copyright", "IMGPROXY_KEEP_COPYRIGHT"),
    ("scp", "strip_color_profile", "IMGPROXY_STRIP_COLOR_PROFILE"),
    ("eth", "enforce_thumbnail", "IMGPROXY_ENFORCE_THUMBNAIL"),
    ("att", "return_attachment", "IMGPROXY_RETURN_ATTACHMENT"),
])
def test_switches_fall_back_to_the_setting(option, field, env):
    for setting in (True, False):
        value = "true" if setting else "false"
        assert getattr(effective("", **{env: value}), field) is setting
        assert getattr(effective(f"{option}:{int(not setting)}", **{env: value}), field) \
            is (not setting)


def test_presets_count_as_the_url():
    e = effective("pr:small", IMGPROXY_PRESETS="small=msfs:0/sm:0",
                  IMGPROXY_MAX_SRC_FILE_SIZE="1000")
    assert (e.max_src_file_size, e.strip_metadata) == (0, False)
    e = effective("pr:small/msfs:5", IMGPROXY_PRESETS="small=msfs:0/sm:0")
    assert e.max_src_file_size == 5  # later in the URL wins


def test_watermark_opacity_is_multiplied_and_skip_formats_come_from_settings():
    e = effective("wm:0.5", IMGPROXY_WATERMARK_OPACITY="0.5")
    assert e.watermark is not None and e.watermark.opacity == 0.25
    assert effective("", IMGPROXY_SKIP_PROCESSING_FORMATS="jpg,png").skip_processing == \
        ("jpeg", "png")
    assert effective("skp:gif", IMGPROXY_SKIP_PROCESSING_FORMATS="jpg").skip_processing == \
        ("gif",)
