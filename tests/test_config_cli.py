"""Configuration from the environment and the ``vipsgate`` command line."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, TEST_KEY, TEST_SALT
from imagegen import load
from vipsgate.cli import main
from vipsgate.config import SAMPLES_DIR, Settings, available_cpus, from_env, settings_table
from vipsgate.errors import ConfigError
from vipsgate.signing import Signer


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without any vipsgate/imgproxy setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IMGPROXY_", "VIPSGATE_"))}
    env.update(extra)
    return env


BAD = [
    ({"IMGPROXY_QUALITY": "abc"}, "IMGPROXY_QUALITY"),
    ({"IMGPROXY_QUALITY": "0"}, "IMGPROXY_QUALITY"),
    ({"IMGPROXY_KEY": "zz", "IMGPROXY_SALT": "aa"}, "IMGPROXY_KEY"),
    ({"IMGPROXY_KEY": "aa", "IMGPROXY_SALT": "qq"}, "IMGPROXY_SALT"),
    ({"IMGPROXY_KEY": "aa"}, "IMGPROXY_SALT"),
    ({"IMGPROXY_KEY": "aa,bb", "IMGPROXY_SALT": "cc"}, "IMGPROXY_KEY"),
    ({"IMGPROXY_SIGNATURE_SIZE": "33"}, "IMGPROXY_SIGNATURE_SIZE"),
    ({"IMGPROXY_SIGNATURE_SIZE": "0"}, "IMGPROXY_SIGNATURE_SIZE"),
    ({"IMGPROXY_SIGNATURE_SIZE": "7"}, "IMGPROXY_SIGNATURE_SIZE"),  # forgeable: refused
    ({"IMGPROXY_WORKERS": "-1"}, "IMGPROXY_WORKERS"),
    ({"IMGPROXY_TTL": "-5"}, "IMGPROXY_TTL"),
    ({"IMGPROXY_LOCAL_FILESYSTEM_ROOT": "/nonexistent/dir"}, "IMGPROXY_LOCAL_FILESYSTEM_ROOT"),
    ({"IMGPROXY_PRESETS": "bad"}, "IMGPROXY_PRESETS"),
    ({"IMGPROXY_PRESETS": "thumb=w:abc"}, "IMGPROXY_PRESETS"),
    ({"IMGPROXY_PRESETS_PATH": "/nonexistent/presets"}, "IMGPROXY_PRESETS_PATH"),
    ({"IMGPROXY_ALLOWED_PROCESSING_OPTIONS": "w,bogus"}, "IMGPROXY_ALLOWED_PROCESSING_OPTIONS"),
    ({"IMGPROXY_AUTO_WEBP": "maybe"}, "IMGPROXY_AUTO_WEBP"),
    ({"IMGPROXY_ENFORCE_AVIF": "2"}, "IMGPROXY_ENFORCE_AVIF"),
    ({"IMGPROXY_FORMAT_QUALITY": "webp=500"}, "IMGPROXY_FORMAT_QUALITY"),
    ({"IMGPROXY_FORMAT_QUALITY": "tif=50"}, "IMGPROXY_FORMAT_QUALITY"),
    ({"VIPSGATE_BIND": "nope"}, "VIPSGATE_BIND"),
    ({"IMGPROXY_MAX_SRC_FILE_SIZE": "12XB"}, "IMGPROXY_MAX_SRC_FILE_SIZE"),
    ({"IMGPROXY_MAX_SRC_RESOLUTION": "inf"}, "IMGPROXY_MAX_SRC_RESOLUTION"),
    ({"IMGPROXY_TIMEOUT": "nan"}, "IMGPROXY_TIMEOUT"),
    ({"VIPSGATE_LOG_FORMAT": "xml"}, "VIPSGATE_LOG_FORMAT"),
]


@pytest.mark.parametrize(("env", "variable"), BAD, ids=[v for _, v in BAD])
def test_bad_values_name_the_variable_in_one_line(env, variable):
    with pytest.raises(ConfigError) as info:
        from_env(env)
    message = str(info.value)
    assert variable in message
    assert "\n" not in message


def test_imgproxy_names_are_read(tmp_path):
    s = from_env({"IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT,
                  "IMGPROXY_SIGNATURE_SIZE": "8", "IMGPROXY_LOCAL_FILESYSTEM_ROOT": str(tmp_path),
                  "IMGPROXY_TTL": "60", "IMGPROXY_QUALITY": "70",
                  "IMGPROXY_FORMAT_QUALITY": "webp=50,jpg=60", "IMGPROXY_AUTO_WEBP": "false",
                  "IMGPROXY_AUTO_AVIF": "0", "IMGPROXY_ENFORCE_WEBP": "1",
                  "IMGPROXY_ENFORCE_AVIF": "true", "IMGPROXY_WORKERS": "3",
                  "IMGPROXY_PRESETS": "thumb=rs:fill:100:100,small=w:10"})
    assert (s.keys, s.salts, s.signature_size) == ((TEST_KEY,), (TEST_SALT,), 8)
    assert (s.local_root, s.ttl, s.quality, s.worker_count) == (str(tmp_path), 60, 70, 3)
    assert s.format_quality == (("webp", 50), ("jpeg", 60))
    assert (s.auto_webp, s.auto_avif, s.enforce_webp, s.enforce_avif) == \
        (False, False, True, True)
    assert s.preset_map() == {"thumb": ("rs:fill:100:100",), "small": ("w:10",)}
    assert not s.dev_mode


def test_key_rotation_lists():
    s = from_env({"IMGPROXY_KEY": f"{TEST_KEY},aabb", "IMGPROXY_SALT": f"{TEST_SALT},ccdd"})
    assert s.keys == (TEST_KEY, "aabb")
    assert Signer.from_hex(s.keys, s.salts).enabled


def test_defaults():
    s = Settings()
    assert (s.ttl, s.quality, s.auto_webp, s.auto_avif, s.strip_metadata, s.auto_rotate) == \
        (31536000, 80, True, True, True, True)
    assert (s.max_src_file_size, s.max_result_dimension, s.max_animation_frames) == \
        (64 * 1024**2, 8192, 100)
    assert (s.requests_queue_size, s.allow_private_sources, s.bind) == \
        (64, False, "127.0.0.1:8080")


def test_presets_file(tmp_path):
    path = tmp_path / "presets.txt"
    path.write_text("# thumbnails\nthumb=rs:fill:100:100/q:70\n\nbig=w:1000\n")
    s = from_env({"IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT,
                  "IMGPROXY_PRESETS_PATH": str(path)})
    assert s.preset_map() == {"thumb": ("rs:fill:100:100", "q:70"), "big": ("w:1000",)}
    path.write_text("thumb=rs:nope:1:1\n")
    with pytest.raises(ConfigError, match="IMGPROXY_PRESETS_PATH"):
        from_env({"IMGPROXY_PRESETS_PATH": str(path)})


def test_no_key_means_development_mode_with_a_random_key():
    first, second = from_env({}), from_env({})
    assert first.dev_mode and second.dev_mode
    assert first.keys != second.keys  # never a well-known key
    assert len(bytes.fromhex(first.keys[0])) == 32
    assert Path(first.local_root) == SAMPLES_DIR


def test_insecure_mode_has_no_key():
    s = from_env({"VIPSGATE_INSECURE": "1"})
    assert not s.dev_mode and s.keys == ()
    assert not Signer.from_hex(s.keys, s.salts).enabled


def test_settings_table_lists_every_variable():
    table = settings_table()
    for name in ("IMGPROXY_KEY", "IMGPROXY_SALT", "IMGPROXY_TTL", "IMGPROXY_AUTO_AVIF",
                 "IMGPROXY_WORKERS", "VIPSGATE_INSECURE"):
        assert f"`{name}`" in table


# --- command line -----------------------------------------------------------------------

def test_sign_prints_the_signed_path(monkeypatch, capsys):
    for name in [k for k in os.environ if k.startswith(("IMGPROXY_", "VIPSGATE_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("IMGPROXY_KEY", TEST_KEY)  # spec §2.2 row 2
    monkeypatch.setenv("IMGPROXY_SALT", TEST_SALT)
    assert main(["sign", "/rs:fit:300:300/plain/http://img.example.com/pretty/image.jpg"]) == 0
    assert capsys.readouterr().out.strip() == ("/m3k5QADfcKPDj-SDI2AIogZbC3FlAXszuwhtWXYqavc"
                                               "/rs:fit:300:300/plain/http://img.example.com/"
                                               "pretty/image.jpg")
    monkeypatch.setenv("IMGPROXY_SIGNATURE_SIZE", "8")
    assert main(["sign", "rs:fit:300:300/plain/http://img.example.com/pretty/image.jpg"]) == 0
    assert capsys.readouterr().out.startswith("/m3k5QADfcKM/rs:fit:300:300/")


def test_sign_without_a_key_refuses(monkeypatch, capsys):
    for name in [k for k in os.environ if k.startswith(("IMGPROXY_", "VIPSGATE_"))]:
        monkeypatch.delenv(name)
    assert main(["sign", "/w:1/plain/local:///a.jpg"]) == 2
    assert "IMGPROXY_KEY" in capsys.readouterr().err


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], cwd=ROOT, env=clean_env(**env),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("env", "variable"), [
    ({"IMGPROXY_QUALITY": "high"}, "IMGPROXY_QUALITY"),
    ({"IMGPROXY_KEY": "xyz", "IMGPROXY_SALT": "00"}, "IMGPROXY_KEY"),
])
def test_serve_with_a_bad_setting_exits_2_with_one_line(env, variable):
    done = _run(["serve", "--port", "0"], **env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0]
    assert done.stdout == ""


def test_serve_prints_working_example_urls(serve):
    """``vipsgate serve`` with no configuration: dev key, sample images, three URLs."""
    server = serve(keys=False)
    urls = [m.group(1) for m in server.stdout.wait_for(r"^\s+(http://\S+)$", count=3)]
    assert all(url.startswith(server.base_url + "/") for url in urls)
    for url in urls:
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("image/")
            image = load(response.read())
            assert image.width > 0


def test_available_cpus_follows_affinity_and_a_cgroup_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path) == affinity  # no cpu.max: the affinity mask
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # limits.cpu: 1.5 -> 2
    assert available_cpus(tmp_path) == min(affinity, 2)
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # 0.5 CPU -> 1
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("garbage\n")
    assert available_cpus(tmp_path) == affinity
    workers = Settings(workers=0, processes=1).worker_count
    assert workers == 2 * available_cpus()  # imgproxy's default: two per CPU
