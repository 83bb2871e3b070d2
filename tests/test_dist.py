"""The wheel as a user installs it: built from this checkout, installed with ``[django]``
into a fresh virtual environment, and the README's Django example rendered there into
URLs that the wheel's own ``vipsgate serve`` answers (sources on a media site on
127.0.0.1 and in S3 via moto, both in one template).

uv (installed into .venv by ``make install``) builds the wheel and installs it from its
cache, offline: these tests download nothing, and skip when uv or its cache is missing.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from s3_fixtures import AWS_ENV, s3  # noqa: F401  (the fixture)

from conftest import ROOT, TEST_KEY, TEST_SALT
from imagegen import jpeg, load, png_alpha

pytestmark = pytest.mark.timeout(300)
README = (ROOT / "README.md").read_text()


def uv(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "uv", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding ``vipsgate[django]`` from a wheel of this
    checkout (and Pillow, which Django's ImageField needs)."""
    if uv("--version").returncode != 0:
        pytest.skip("uv is not installed in this environment (make install installs it)")
    work = tmp_path_factory.mktemp("dist")
    built = uv("build", "--offline", "--wheel", "--out-dir", str(work / "dist"), str(ROOT))
    if built.returncode != 0 and "offline" in built.stderr.lower():
        pytest.skip("the build requirement is not in uv's cache (run make install)")
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("vipsgate-*-py3-none-any.whl")
    created = uv("venv", "--quiet", "--python", sys.executable, str(work / "venv"))
    assert created.returncode == 0, created.stderr
    python = work / "venv" / "bin" / "python"
    installed = uv("pip", "install", "--quiet", "--offline", "--python", str(python),
                   f"{wheel}[django]", "pillow")
    if installed.returncode != 0:
        pytest.skip("the wheel's dependencies are not in uv's cache (run make install): "
                    + installed.stderr.strip().splitlines()[-1])
    return work / "venv"


def test_the_wheel_installs_the_package_and_the_command(venv: Path) -> None:
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import vipsgate, vipsgate.contrib.django.checks, django; print(vipsgate.__file__)"],
        capture_output=True, text=True, timeout=60, check=True, cwd=venv)
    assert found.stdout.strip().startswith(str(venv))  # not this checkout's proxy/
    version = subprocess.run([str(venv / "bin" / "vipsgate"), "--version"],
                             capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout.startswith("vipsgate 0.1.0 (libvips ")


def readme_django_example() -> tuple[str, str]:
    """The settings and the template of the README's Django section, as printed there."""
    section = README.split("### Django\n", 1)[1].split("\n### ", 1)[0]
    settings = re.search(r"```python\n(.*?)```", section, re.S)
    template = re.search(r"```django\n(.*?)```", section, re.S)
    assert settings and template
    return settings.group(1), template.group(1)


RENDER = textwrap.dedent('''
    import json, os, sys
    import django
    from django.conf import settings

    readme = {"env": lambda name: os.environ[name]}
    exec(sys.argv[1], readme)  # the README's settings block
    vipsgate = {**readme["VIPSGATE"], "BASE_URL": os.environ["BASE"],
                "MEDIA_BASE_URL": os.environ["MEDIA"]}
    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "vipsgate.contrib.django"],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
        DATABASES={}, MEDIA_ROOT=os.environ["MEDIA_ROOT"], MEDIA_URL="/media/",
        VIPSGATE=vipsgate)
    django.setup()
    from django.core import checks
    from django.db import models
    from django.template import engines

    class Article(models.Model):
        title = models.CharField(max_length=100)
        photo = models.ImageField(upload_to="photos", blank=True)

        class Meta:
            app_label = "vipsgate"

    problems = [m.id for m in checks.run_checks() if m.id.startswith("vipsgate.")]
    template = engines["django"].from_string(sys.argv[2])
    print(json.dumps({
        "problems": problems,
        "with_photo": template.render({"article": Article(title="A cat",
                                                          photo="photos/cat.jpg")}),
        "without_photo": template.render({"article": Article(title="No photo")}),
    }))
''')


@pytest.fixture
def media_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The backend's own site serving MEDIA_ROOT under /media/ on 127.0.0.1."""
    root = tmp_path / "site"
    (root / "media" / "photos").mkdir(parents=True)
    (root / "media" / "photos" / "cat.jpg").write_bytes(jpeg(1600, 1200))
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root / "media"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def wheel_server(venv: Path, s3) -> Iterator[str]:  # type: ignore[no-untyped-def]  # noqa: F811
    """The wheel's own ``vipsgate serve``, with S3 (moto) and loopback origins allowed."""
    s3.client.create_bucket(Bucket="photos")
    s3.client.put_object(Bucket="photos", Key="logo.png", Body=png_alpha(256, 128))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGPROXY_", "VIPSGATE_"))}
    env.update(AWS_ENV)
    env.update(s3.env(IMGPROXY_KEY=TEST_KEY, IMGPROXY_SALT=TEST_SALT,
                      IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES="true",
                      VIPSGATE_LOG_LEVEL="warning"))
    process = subprocess.Popen([str(venv / "bin" / "vipsgate"), "serve", "--host", "127.0.0.1",
                                "--port", "0"], env=env, cwd=venv, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    try:
        line = process.stdout.readline()
        assert "listening on" in line, process.stderr.read()
        yield line.split(" on ", 1)[1].split()[0]
    finally:
        process.terminate()
        process.wait(60)
        process.stdout.close()
        process.stderr.close()


def test_readme_django_example_renders_working_urls(venv: Path, media_site: tuple[str, Path],
                                                    wheel_server: str) -> None:
    import urllib.request

    media, media_root = media_site
    settings, template = readme_django_example()
    env = {**os.environ, "IMGPROXY_KEY": TEST_KEY, "IMGPROXY_SALT": TEST_SALT,
           "BASE": wheel_server, "MEDIA": media, "MEDIA_ROOT": str(media_root)}
    done = subprocess.run([str(venv / "bin" / "python"), "-c", RENDER, settings, template],
                          capture_output=True, text=True, timeout=120, cwd=venv, env=env,
                          check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["problems"] == []  # the README's settings pass the system checks

    page = html.unescape(result["with_photo"])
    urls = set(re.findall(r'src="([^"]+)"', page))
    for srcset in re.findall(r'srcset="([^"]+)"', page):
        urls.update(part.strip().split(" ")[0] for part in srcset.split(","))
    assert len(urls) >= 8  # the img and its 2x/3x, the logo, <picture>'s formats x densities
    sizes = set()
    for url in sorted(urls):
        assert url.startswith(wheel_server + "/"), url
        with urllib.request.urlopen(url, timeout=60) as response:
            assert response.status == 200, url
            image = load(response.read())
            sizes.add((image.width, image.height))
    assert (600, 400) in sizes and (128, 64) in sizes

    empty = result["without_photo"]
    assert 'src=""' not in empty and 'srcset=" ' not in empty and "<picture>" not in empty
    assert '<span class="no-photo">No photo</span>' in empty
    assert empty.count("<img ") == 1  # the logo only
