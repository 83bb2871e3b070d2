"""Small URLs that would make big intermediates: refused or kept small.

A crop that is enlarged, an enlarged animation and an enlarged fill each ask
libvips for far more pixels than the source has; the source-resolution check
alone does not see that.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, signed
from imagegen import animated, jpeg, load, solid

PROBE = """
import json, sys
sys.path.insert(0, "tests")
from conftest import process_url
from imagegen import jpeg
from vipsgate.metrics import VipsMemory
out = process_url(jpeg(640, 480), sys.argv[1], "png")
print(json.dumps({"size": [out.width, out.height], **VipsMemory().read()}))
"""


def _probe(options: str) -> dict:
    """Run one ``process`` call in a fresh interpreter: libvips' high-water mark is
    process-wide and only grows, so it is read where nothing else ran before."""
    run = subprocess.run([sys.executable, "-c", PROBE, options], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(run.stdout)


def test_small_crop_enlarged_never_scales_the_whole_image():
    baseline = _probe("rs:fit:1024:768:1")
    cropped = _probe("c:8:6/rs:fit:1024:768:1")
    assert cropped["size"] == [1024, 768] == baseline["size"]
    # scaling the whole 640x480 frame by 128x first would need gigabytes
    assert cropped["highwater"] < 2 * baseline["highwater"] + 16 * 2**20


async def test_crop_picks_the_right_region_before_enlarging(make_client, images):
    picture = solid(200, 100, (250, 250, 250)).draw_rect([10, 200, 30], 150, 50, 50, 50,
                                                         fill=True)
    (images / "p.jpg").write_bytes(jpeg(image=picture))
    client = await make_client()
    response = await client.get(signed("/c:50:50:soea/rs:fit:400:400:1/plain/local:///p.jpg@png"))
    out = load(await response.read())
    assert (out.width, out.height) == (400, 400)
    mean = [out.crop(100, 100, 200, 200).extract_band(i).avg() for i in range(3)]
    assert mean[1] > 150 and mean[0] < 60  # the green square, not the white background


async def test_enlarged_animation_beyond_the_pixel_budget_is_422(make_client, images):
    (images / "a.gif").write_bytes(animated("gif", frames=20, width=40, height=30))
    client = await make_client(IMGPROXY_MAX_SRC_RESOLUTION="5")
    small = await client.get(signed("/rs:fit:200:150:1/plain/local:///a.gif"))
    assert small.status == 200
    assert load(await small.read(), n=-1).get("n-pages") == 20
    big = await client.get(signed("/rs:fit:1000:750:1/plain/local:///a.gif"))
    assert big.status == 422  # 20 x 1000x750 = 15 MP of output frames > 5 MP
    assert "Animation result" not in await big.text()  # the reason is logged, not sent


async def test_fill_that_enlarges_far_past_the_box_is_422(make_client, images):
    (images / "sq.jpg").write_bytes(jpeg(100, 100))
    client = await make_client(IMGPROXY_MAX_SRC_RESOLUTION="4")
    ok = await client.get(signed("/rs:fill:1500:100:1/plain/local:///sq.jpg"))
    assert ok.status == 200  # 1500x1500 scaled (2.25 MP) then cropped
    refused = await client.get(signed("/rs:fill:3000:100:1/plain/local:///sq.jpg"))
    assert refused.status == 422  # 3000x3000 = 9 MP in memory before the crop


async def test_blur_sigma_is_capped(make_client, images):
    (images / "b.jpg").write_bytes(jpeg(120, 90))
    client = await make_client()
    capped = await client.get(signed("/bl:50/rs:fit:60:60/plain/local:///b.jpg@png"))
    huge = await client.get(signed("/bl:5000/rs:fit:60:60/plain/local:///b.jpg@png"))
    assert capped.status == huge.status == 200
    assert await capped.read() == await huge.read()


async def test_raw_requests_take_a_queue_place(make_client, images):
    """raw buffers the whole source, so it is bounded by the queue like any request."""
    from vipsgate.probes import ADMISSION
    (images / "r.jpg").write_bytes(jpeg(64, 48))
    client = await make_client(IMGPROXY_WORKERS="1", IMGPROXY_REQUESTS_QUEUE_SIZE="1")
    admission = client.app[ADMISSION]
    admission.admitted = admission.capacity  # the queue is full (held by others)
    try:
        response = await client.get(signed("/raw:1/plain/local:///r.jpg"))
        assert response.status == 429
    finally:
        admission.admitted = 0
    response = await client.get(signed("/raw:1/plain/local:///r.jpg"))
    assert response.status == 200
