"""URLs made by imgproxy's third-party and official client libraries are served
unchanged: PyPI ``imgproxy`` (klen/imgproxy) in-process, npm ``@imgproxy/imgproxy-node``
under node (installed by ``make test`` into tests/clients; skipped without it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TEST_KEY, TEST_SALT
from imagegen import jpeg, load

CLIENTS = Path(__file__).parent / "clients"
EXPIRES = 4102444800  # 2100-01-01


async def test_pypi_imgproxy_urls_are_served(make_client, images):
    imgproxy = pytest.importorskip("imgproxy", reason="PyPI imgproxy not installed")
    (images / "cat.jpg").write_bytes(jpeg(400, 300))
    client = await make_client()
    url = imgproxy.ImgProxy("local:///cat.jpg", key=TEST_KEY, salt=TEST_SALT)
    cases = [
        (url(width=100, height=100, resizing_type="fill", gravity="sm"), (100, 100), "jpeg"),
        (imgproxy.ImgProxy("local:///cat.jpg", key=TEST_KEY, salt=TEST_SALT, width=120,
                           extension="png")(), (120, 90), "png"),
        (url("q:50", "bl:1", width=80, height=80, resizing_type="fit"), (80, 60), "jpeg"),
        (str(url), (400, 300), "jpeg"),  # rs:auto:0:0:0, g:ce
    ]
    factory = imgproxy.ImgProxy.factory("sh:0.5", key=TEST_KEY, salt=TEST_SALT, width=40)
    cases.append((factory("local:///cat.jpg")(), (40, 30), "jpeg"))
    for path, size, fmt in cases:
        response = await client.get(path)
        assert response.status == 200, path
        image = load(await response.read())
        assert (image.width, image.height) == size, path
        assert response.headers["Content-Type"] == f"image/{fmt}", path


def node_client_paths(cases: list[dict[str, object]]) -> list[str]:
    modules = CLIENTS / "node_modules"
    node = shutil.which("node")
    if node is None or not (modules / "@imgproxy" / "imgproxy-node").is_dir():
        pytest.skip("@imgproxy/imgproxy-node is not installed (make clients)")
    env = {**os.environ, "NODE_PATH": str(modules), "IMGPROXY_KEY": TEST_KEY,
           "IMGPROXY_SALT": TEST_SALT}
    done = subprocess.run([node, str(CLIENTS / "imgproxy_node.cjs")], input=json.dumps(cases),
                          capture_output=True, text=True, env=env, timeout=60, check=True)
    paths: list[str] = json.loads(done.stdout)
    return paths


async def test_imgproxy_node_urls_are_served(make_client, images):
    (images / "cat.jpg").write_bytes(jpeg(400, 300))
    cases: list[dict[str, object]] = [
        {"url": "local:///cat.jpg", "options": {
            "resize": {"resizing_type": "fill", "width": 100, "height": 100, "enlarge": 1},
            "gravity": {"type": "sm"}, "quality": 80, "format": "webp", "dpr": 2,
            "background": "ff0000", "padding": {"top": 5}, "blur": 2,
            "filename": {"name": "cat"}, "return_attachment": 1, "cachebuster": "v2",
            "expires": EXPIRES, "rotate": 90}},
        {"url": {"value": "local:///cat.jpg", "displayAs": "plain"}, "options": {
            "width": 50, "format": "png", "crop": {"width": 200, "height": 200,
                                                   "gravity": {"type": "nowe"}},
            "min_width": 10, "auto_rotate": 0, "flip": {"horizontal": 1}}},
        {"url": "local:///cat.jpg", "options": {
            "size": {"width": 64, "height": 64}, "extend": {"extend": 1},
            "strip_metadata": 1, "format_quality": [{"format": "jpg", "quality": 70}]}},
    ]
    paths = node_client_paths(cases)
    client = await make_client()
    expected = [((220, 220), "image/webp"),  # 100 x 100 at dpr 2; pd:5 is all sides, x dpr
                ((50, 50), "image/png"), ((64, 64), "image/jpeg")]
    for path, (size, content_type) in zip(paths, expected, strict=True):
        response = await client.get(path)
        assert response.status == 200, path
        image = load(await response.read())
        assert (image.width, image.height) == size, path
        assert response.headers["Content-Type"] == content_type, path
