"""Pixel work in worker processes (VIPSGATE_EXECUTOR=process) behaves like threads."""

from __future__ import annotations

import os

from conftest import signed
from imagegen import jpeg, load, png_alpha
from vipsgate.app import POOL


async def test_images_are_processed_in_worker_processes(make_client, images):
    (images / "a.jpg").write_bytes(jpeg(640, 480))
    (images / "b.png").write_bytes(png_alpha(300, 200))
    client = await make_client(VIPSGATE_EXECUTOR="process", IMGPROXY_WORKERS="2")
    pool = client.app[POOL]
    assert pool.kind == "process"
    pids = {pool.executor.submit(os.getpid).result() for _ in range(4)}
    assert os.getpid() not in pids  # the work really leaves this process

    response = await client.get(signed("/rs:fill:200:100/plain/local:///a.jpg"))
    assert response.status == 200
    out = load(await response.read())
    assert (out.width, out.height) == (200, 100)

    response = await client.get(signed("/rs:fit:90:90/plain/local:///b.png"),
                                headers={"Accept": "image/webp"})
    assert response.headers["Content-Type"] == "image/webp"
    assert load(await response.read()).hasalpha()


async def test_errors_cross_the_process_boundary_with_their_status(make_client, images):
    (images / "broken.jpg").write_bytes(jpeg(64, 64)[:300])
    (images / "text.jpg").write_bytes(b"not an image at all")
    client = await make_client(VIPSGATE_EXECUTOR="process", IMGPROXY_WORKERS="1")
    for name in ("broken.jpg", "text.jpg"):
        response = await client.get(signed(f"/rs:fit:10:10/plain/local:///{name}"))
        assert response.status == 422, name
    good = await client.get(signed("/rs:fit:10:10/plain/local:///missing.jpg"))
    assert good.status == 404
