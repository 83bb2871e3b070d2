"""EXIF orientation 1-8: stored like a camera does, served upright.

The upright reference is asymmetric (a red block top-left, a blue block top-right,
a green bar along the bottom-left), so each of the eight dihedral transforms
moves the markers somewhere else. Each file stores the *inverse* transform of
the upright picture plus its orientation tag, exactly as a camera would.
"""

from __future__ import annotations

import pytest
import pyvips

from conftest import signed
from imagegen import load, solid

W, H = 160, 96  # upright size (landscape)
GRID = 4  # compare the mean colour of a 4x4 grid of cells


def upright() -> pyvips.Image:
    image = solid(W, H, (128, 128, 128))
    image = image.draw_rect([230, 20, 20], 0, 0, W // 4, H // 3, fill=True)  # red, top-left
    image = image.draw_rect([20, 20, 230], W * 3 // 4, 0, W // 4, H // 4, fill=True)  # blue
    image = image.draw_rect([20, 200, 20], 0, H * 3 // 4, W // 2, H // 4, fill=True)  # green
    return image


def transpose(image: pyvips.Image) -> pyvips.Image:
    """Mirror across the main diagonal: (x, y) -> (y, x)."""
    return image.rot90().fliphor()


def transverse(image: pyvips.Image) -> pyvips.Image:
    """Mirror across the anti-diagonal."""
    return image.rot270().fliphor()


# EXIF orientation -> how a camera stores the upright scene (the inverse of the
# transform that the tag asks the viewer to apply)
STORED = {
    1: lambda im: im,
    2: lambda im: im.fliphor(),
    3: lambda im: im.rot180(),
    4: lambda im: im.flipver(),
    5: transpose,  # self-inverse
    6: lambda im: im.rot270(),  # the viewer turns it 90 degrees clockwise
    7: transverse,  # self-inverse
    8: lambda im: im.rot90(),  # the viewer turns it 90 degrees counter-clockwise
}


def camera_jpeg(orientation: int) -> bytes:
    stored = STORED[orientation](upright()).copy()
    stored.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return stored.jpegsave_buffer(Q=95, keep="exif")


def cells(image: pyvips.Image) -> list[list[float]]:
    """Mean R, G, B of each cell of a GRID x GRID grid."""
    image = image.extract_band(0, n=3) if image.bands > 3 else image
    small = image.resize(GRID / image.width, vscale=GRID / image.height, kernel="linear")
    return [small.getpoint(x, y) for y in range(GRID) for x in range(GRID)]


def assert_same_picture(got: pyvips.Image, want: pyvips.Image) -> None:
    assert (got.width, got.height) == (want.width, want.height)
    for a, b in zip(cells(got), cells(want), strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 25, (a, b)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_fixture_is_stored_the_way_a_camera_stores_it(orientation):
    """libvips' own autorot turns each fixture upright: the fixtures are right."""
    stored = pyvips.Image.new_from_buffer(camera_jpeg(orientation), "")
    assert stored.get("orientation") == orientation
    if orientation >= 5:
        assert (stored.width, stored.height) == (H, W)
    assert_same_picture(stored.autorot(), upright())


async def test_every_orientation_is_served_upright(make_client, images):
    for orientation in range(1, 9):
        (images / f"o{orientation}.jpg").write_bytes(camera_jpeg(orientation))
    client = await make_client()
    reference = upright()
    half = reference.resize(0.5)
    for orientation in range(1, 9):
        response = await client.get(signed(f"/plain/local:///o{orientation}.jpg"))
        assert response.status == 200
        out = load(await response.read())
        assert_same_picture(out, reference)
        assert not out.get_typeof("orientation") or out.get("orientation") == 1
        # resized: the requested box applies to the upright picture
        response = await client.get(signed(f"/rs:fit:80:80/plain/local:///o{orientation}.jpg"))
        assert_same_picture(load(await response.read()), half)
        # metadata kept (sm:0): the EXIF block survives, but never the orientation tag,
        # or a viewer would turn the already upright pixels once more
        response = await client.get(signed(f"/sm:0/plain/local:///o{orientation}.jpg"))
        out = load(await response.read())
        assert_same_picture(out, reference)
        assert out.get_typeof("exif-data") and out.get("orientation") == 1, orientation
        as_webp = await client.get(signed(f"/sm:0/plain/local:///o{orientation}.jpg@webp"))
        out = load(await as_webp.read())
        assert not out.get_typeof("orientation") or out.get("orientation") == 1, orientation


async def test_crop_and_gravity_apply_to_the_upright_picture(make_client, images):
    for orientation in (1, 6, 8, 5):
        (images / f"o{orientation}.jpg").write_bytes(camera_jpeg(orientation))
    client = await make_client()
    want = upright().crop(0, 0, W // 4, H // 3)  # the red block
    for orientation in (1, 6, 8, 5):
        response = await client.get(
            signed(f"/c:{W // 4}:{H // 3}:nowe/plain/local:///o{orientation}.jpg"))
        out = load(await response.read())
        assert (out.width, out.height) == (W // 4, H // 3)
        r, g, b = (out.extract_band(i).avg() for i in range(3))
        assert r > 180 and g < 70 and b < 70, orientation
        assert_same_picture(out, want)
        # fill to a square keeping the west (left) side: red top-left, green bottom-left
        response = await client.get(
            signed(f"/rs:fill:48:48/g:we/plain/local:///o{orientation}.jpg"))
        out = load(await response.read())
        assert_same_picture(out, upright().crop(0, 0, H, H).resize(0.5))


async def test_auto_rotate_off_keeps_the_stored_pixels(make_client, images):
    (images / "o6.jpg").write_bytes(camera_jpeg(6))
    client = await make_client()
    response = await client.get(signed("/ar:0/plain/local:///o6.jpg"))
    out = load(await response.read())
    assert_same_picture(out, STORED[6](upright()))
    client = await make_client(IMGPROXY_AUTO_ROTATE="false")
    response = await client.get(signed("/plain/local:///o6.jpg"))
    assert_same_picture(load(await response.read()), STORED[6](upright()))
    response = await client.get(signed("/ar:1/plain/local:///o6.jpg"))
    assert_same_picture(load(await response.read()), upright())


async def test_user_rotation_is_applied_after_exif(make_client, images):
    (images / "o6.jpg").write_bytes(camera_jpeg(6))
    client = await make_client()
    response = await client.get(signed("/rot:90/rs:fit:48:80/plain/local:///o6.jpg"))
    out = load(await response.read())
    assert_same_picture(out, upright().rot90().resize(0.5))
