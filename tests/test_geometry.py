"""Resize geometry: imgproxy's own processing tables, as pure maths and end to end.

The tables are imgproxy's ``processing/processing_test.go`` (a 200x100 source):
(width, height, expected output width, expected output height).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import signed
from imagegen import jpeg, load, photo, solid
from vipsgate.geometry import calc_scale, crop_size, gravity_offset, plan, result_size
from vipsgate.options import Crop, Extend, Gravity, ProcessingOptions

SRC = (200, 100)
FIT = [(50, 50, 50, 25), (50, 20, 40, 20), (20, 50, 20, 10), (300, 300, 200, 100),
       (300, 50, 100, 50), (100, 300, 100, 50), (0, 50, 100, 50), (50, 0, 50, 25),
       (0, 200, 200, 100), (300, 0, 200, 100)]
FIT_ENLARGE = [(50, 50, 50, 25), (50, 20, 40, 20), (20, 50, 20, 10), (300, 300, 300, 150),
               (300, 125, 250, 125), (250, 300, 250, 125), (0, 50, 100, 50), (50, 0, 50, 25),
               (0, 200, 400, 200), (300, 0, 300, 150)]
FIT_EXTEND = [(50, 50, 50, 50), (50, 20, 50, 20), (20, 50, 20, 50), (300, 300, 300, 300),
              (300, 125, 300, 125), (250, 300, 250, 300), (0, 50, 100, 50), (50, 0, 50, 25),
              (0, 200, 200, 200), (300, 0, 300, 100)]
FIT_EXTEND_AR = [(50, 50, 50, 50), (50, 20, 50, 20), (20, 50, 20, 50), (300, 300, 200, 200),
                 (300, 125, 240, 100), (250, 500, 200, 400), (0, 50, 100, 50), (50, 0, 50, 25),
                 (0, 200, 200, 100), (300, 0, 200, 100)]
FILL = [(50, 50, 50, 50), (50, 20, 50, 20), (20, 50, 20, 50), (300, 300, 200, 100),
        (300, 50, 200, 50), (100, 300, 100, 100), (0, 50, 100, 50), (50, 0, 50, 25),
        (0, 200, 200, 100), (300, 0, 200, 100)]
FILL_ENLARGE = [(50, 50, 50, 50), (50, 20, 50, 20), (20, 50, 20, 50), (300, 300, 300, 300),
                (300, 125, 300, 125), (250, 300, 250, 300), (0, 50, 100, 50), (50, 0, 50, 25),
                (0, 200, 400, 200), (300, 0, 300, 150)]
FILL_EXTEND = [(50, 50, 50, 50), (50, 20, 50, 20), (20, 50, 20, 50), (300, 300, 300, 300),
               (300, 125, 300, 125), (250, 300, 250, 300), (300, 50, 300, 50),
               (100, 300, 100, 300), (0, 50, 100, 50), (50, 0, 50, 25), (0, 200, 200, 200),
               (300, 0, 300, 100)]
FILL_EXTEND_AR = [(50, 50, 50, 50), (50, 20, 50, 20), (20, 50, 20, 50), (300, 300, 200, 200),
                  (300, 125, 240, 100), (250, 500, 200, 400), (300, 50, 300, 50),
                  (100, 300, 100, 300), (0, 50, 100, 50), (50, 0, 50, 25), (0, 200, 200, 100),
                  (300, 0, 200, 100)]
FILL_DOWN = [(50, 50, 50, 50), (50, 20, 50, 20), (20, 50, 20, 50), (300, 300, 100, 100),
             (300, 125, 200, 83), (250, 300, 83, 100), (0, 50, 100, 50), (50, 0, 50, 25),
             (0, 200, 200, 100), (300, 0, 200, 100)]
EXT, EXAR = Extend(True), Extend(True)
TABLES = {  # name: (resizing type, extra options, table)
    "fit": ("fit", {}, FIT), "fit-enlarge": ("fit", {"enlarge": True}, FIT_ENLARGE),
    "fit-extend": ("fit", {"extend": EXT}, FIT_EXTEND),
    "fit-extend-ar": ("fit", {"extend_ar": EXAR}, FIT_EXTEND_AR),
    "fill": ("fill", {}, FILL), "fill-enlarge": ("fill", {"enlarge": True}, FILL_ENLARGE),
    "fill-extend": ("fill", {"extend": EXT}, FILL_EXTEND),
    "fill-extend-ar": ("fill", {"extend_ar": EXAR}, FILL_EXTEND_AR),
    "fill-down": ("fill-down", {}, FILL_DOWN),
    "fill-down-enlarge": ("fill-down", {"enlarge": True}, FILL_ENLARGE),
    "fill-down-extend": ("fill-down", {"extend": EXT}, FILL_EXTEND),
}
URL_EXTRA = {"enlarge": "el:1", "extend": "ex:1", "extend_ar": "exar:1"}

PAD = (100, 200, 300, 400)
F, L, D = "fit", "fill", "fill-down"
# imgproxy's TestResultSizeLimit: (limit, w, h, type, extra, rotate, out w, out h)
LIMITS = [
    (1000, 100, 100, F, {}, 0, 100, 50), (50, 100, 100, F, {}, 0, 50, 25),
    (50, 0, 0, F, {}, 0, 50, 25), (100, 0, 100, F, {}, 0, 100, 50), (50, 150, 0, F, {}, 0, 50, 25),
    (100, 1000, 1000, F, {}, 0, 100, 50), (100, 1000, 1000, F, {"enlarge": True}, 0, 100, 50),
    (100, 1000, 2000, F, {"extend": EXT}, 0, 50, 100),
    (100, 1000, 2000, F, {"extend_ar": EXAR}, 0, 50, 100),
    (100, 100, 150, F, {}, 90, 50, 100), (100, 0, 0, F, {}, 90, 50, 100),
    (200, 100, 100, F, {"padding": PAD}, 0, 200, 129),
    (1000, 100, 100, L, {}, 0, 100, 100), (50, 100, 100, L, {}, 0, 50, 50),
    (50, 1000, 50, L, {}, 0, 50, 13), (50, 100, 1000, L, {}, 0, 50, 50),
    (50, 0, 0, L, {}, 0, 50, 25), (100, 0, 100, L, {}, 0, 100, 50), (50, 150, 0, L, {}, 0, 50, 25),
    (100, 1000, 1000, L, {}, 0, 100, 50), (100, 1000, 1000, L, {"enlarge": True}, 0, 100, 100),
    (100, 1000, 2000, L, {"extend": EXT}, 0, 50, 100),
    (100, 1000, 2000, L, {"extend_ar": EXAR}, 0, 50, 100),
    (100, 100, 150, L, {}, 90, 67, 100), (100, 0, 0, L, {}, 90, 50, 100),
    (200, 100, 100, L, {"padding": PAD}, 0, 200, 144),
    (1000, 100, 100, D, {}, 0, 100, 100), (50, 100, 100, D, {}, 0, 50, 50),
    (50, 1000, 50, D, {}, 0, 50, 3), (50, 100, 1000, D, {}, 0, 5, 50),
    (50, 0, 0, D, {}, 0, 50, 25), (100, 0, 100, D, {}, 0, 100, 50), (50, 150, 0, D, {}, 0, 50, 25),
    (100, 1000, 1000, D, {}, 0, 100, 100), (100, 1000, 1000, D, {"enlarge": True}, 0, 100, 100),
    (100, 1000, 2000, D, {"extend": EXT}, 0, 50, 100),
    (100, 1000, 2000, D, {"extend_ar": EXAR}, 0, 50, 100),
    (100, 1000, 1500, D, {}, 90, 67, 100), (100, 0, 0, D, {}, 90, 50, 100),
    (200, 100, 100, D, {"padding": PAD}, 0, 200, 144),
    (200, 1000, 1000, D, {"padding": PAD}, 0, 200, 144),
]

# Our own cases on the 200x100 source: (URL options, ProcessingOptions kwargs, out w, out h)
OTHERS = [
    ("rs:force:50:50", {"resizing_type": "force", "width": 50, "height": 50}, 50, 50),
    ("rs:force:300:50", {"resizing_type": "force", "width": 300, "height": 50}, 200, 33),
    ("rs:force:0:50", {"resizing_type": "force", "height": 50}, 200, 50),
    ("rs:force:100:400:1", {"resizing_type": "force", "width": 100, "height": 400,
                            "enlarge": True}, 100, 400),
    ("rs:auto:50:100", {"resizing_type": "auto", "width": 50, "height": 100}, 50, 25),  # -> fit
    ("rs:auto:100:50", {"resizing_type": "auto", "width": 100, "height": 50}, 100, 50),  # -> fill
    ("rs:auto:80:80", {"resizing_type": "auto", "width": 80, "height": 80}, 80, 80),  # square: fill
    ("rs:fit:50:50/dpr:2", {"width": 50, "height": 50, "dpr": 2}, 100, 50),
    ("rs:fit:100:100/dpr:3", {"width": 100, "height": 100, "dpr": 3}, 200, 100),  # capped
    ("rs:fit:100:100/dpr:3/el:1", {"width": 100, "height": 100, "dpr": 3, "enlarge": True},
     300, 150),
    ("rs:fill:40:40/dpr:2", {"resizing_type": "fill", "width": 40, "height": 40, "dpr": 2},
     80, 80),
    ("rs:fit:50:50/dpr:2/ex:1", {"width": 50, "height": 50, "dpr": 2, "extend": EXT}, 100, 100),
    ("z:0.5", {"zoom": (0.5, 0.5)}, 100, 50),
    ("z:0.5:0.25", {"zoom": (0.5, 0.25)}, 100, 25),
    ("z:2", {"zoom": (2.0, 2.0)}, 200, 100),  # no enlarge
    ("z:2/el:1", {"zoom": (2.0, 2.0), "enlarge": True}, 400, 200),
    ("rs:fill:100:100/z:0.5", {"resizing_type": "fill", "width": 100, "height": 100,
                               "zoom": (0.5, 0.5)}, 50, 50),
    ("rs:fit:50:50/mw:100", {"width": 50, "height": 50, "min_width": 100}, 50, 50),
    ("h:25/mw:100", {"height": 25, "min_width": 100}, 100, 25),
    ("mw:300", {"min_width": 300}, 300, 150),  # min-width enlarges even without el
    ("w:100/mh:80", {"width": 100, "min_height": 80}, 100, 80),  # 160x80 cropped to w
    ("mh:150", {"min_height": 150}, 300, 150),
    ("c:100:50", {"crop": Crop(100, 50)}, 100, 50),
    ("c:0.5:0.5", {"crop": Crop(0.5, 0.5)}, 100, 50),
    ("c:300:300", {"crop": Crop(300, 300)}, 200, 100),
    ("c:100:100/rs:fit:50:50", {"crop": Crop(100, 100), "width": 50, "height": 50}, 50, 50),
    ("c:100/rs:fill:30:60", {"crop": Crop(100, 0), "resizing_type": "fill", "width": 30,
                             "height": 60}, 30, 60),
    ("c:0.25:0.5:sowe/w:25", {"crop": Crop(0.25, 0.5, Gravity("sowe")), "width": 25}, 25, 25),
    ("rs:fit:60:60/pd:10:20", {"width": 60, "height": 60, "padding": (10, 20, 10, 20)}, 100, 50),
    ("rs:fit:60:60/pd:5/dpr:2",  # 120x60 plus 2 x 10 padding
     {"width": 60, "height": 60, "padding": (5, 5, 5, 5), "dpr": 2}, 140, 80),
    ("rs:fill:90:90/g:sm", {"resizing_type": "fill", "width": 90, "height": 90,
                            "gravity": Gravity("sm")}, 90, 90),
    ("rs:fill:90:90/g:fp:0.1:0.9", {"resizing_type": "fill", "width": 90, "height": 90,
                                    "gravity": Gravity("fp", 0.1, 0.9)}, 90, 90),
    ("rs:fit:40:100/rot:90", {"width": 40, "height": 100, "rotate": 90}, 40, 80),
]


def _out(o: ProcessingOptions, limit: int = 0) -> tuple[int, int]:
    w, h = (SRC[1], SRC[0]) if o.rotate % 180 else SRC
    return result_size(plan(o, w, h, limit), w, h)


def _cases():
    for name, (kind, extra, table) in TABLES.items():
        for w, h, ow, oh in table:
            yield pytest.param(kind, extra, w, h, ow, oh, id=f"{name}-{w}x{h}")


# --- pure --------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "extra", "w", "h", "ow", "oh"), list(_cases()))
def test_imgproxy_resize_tables(kind, extra, w, h, ow, oh):
    o = ProcessingOptions(resizing_type=kind, width=w, height=h, **extra)
    assert _out(o) == (ow, oh)


@pytest.mark.parametrize(("limit", "w", "h", "kind", "extra", "rot", "ow", "oh"), LIMITS)
def test_imgproxy_result_size_limit_table(limit, w, h, kind, extra, rot, ow, oh):
    o = ProcessingOptions(resizing_type=kind, width=w, height=h, rotate=rot, **extra)
    assert _out(o, limit) == (ow, oh)


@pytest.mark.parametrize(("url", "kwargs", "ow", "oh"), OTHERS, ids=[c[0] for c in OTHERS])
def test_other_resizing_cases(url, kwargs, ow, oh):
    assert _out(ProcessingOptions(**kwargs)) == (ow, oh)


def test_dpr_is_capped_so_the_image_is_not_enlarged():
    sx, sy, dpr = calc_scale(ProcessingOptions(width=100, height=100, dpr=3), 200, 100)
    assert (sx, sy, dpr) == (1.0, 1.0, 2.0)
    _, _, dpr = calc_scale(ProcessingOptions(width=100, height=100, dpr=3, enlarge=True), 200, 100)
    assert dpr == 3.0


def test_result_is_never_below_one_pixel():
    o = ProcessingOptions(resizing_type="force", width=1, height=1, zoom=(0.01, 0.01))
    assert _out(o) == (1, 1)
    assert result_size(plan(ProcessingOptions(width=1), 10000, 1), 10000, 1) == (1, 1)


def test_crop_size_rule():
    assert crop_size(200, 0) == 200
    assert crop_size(200, 50) == 50
    assert crop_size(200, 500) == 200
    assert crop_size(200, 0.25) == 50
    assert crop_size(3, 0.1) == 1  # at least one pixel
    assert crop_size(5, 0.5) == 3  # Go rounds halves away from zero


def test_gravity_offsets():
    outer, inner = (200, 100), (100, 100)
    assert gravity_offset(Gravity("ce"), outer, inner) == (50, 0)
    assert gravity_offset(Gravity("we"), outer, inner) == (0, 0)
    assert gravity_offset(Gravity("ea"), outer, inner) == (100, 0)
    assert gravity_offset(Gravity("noea", 10, 0), outer, inner) == (90, 0)
    assert gravity_offset(Gravity("nowe", 10, 0), outer, inner) == (10, 0)
    assert gravity_offset(Gravity("ce", 0.1, 0), outer, inner) == (70, 0)  # relative offset
    assert gravity_offset(Gravity("ce", 10, 0), outer, inner, dpr=2) == (70, 0)  # px x dpr
    assert gravity_offset(Gravity("fp", 0.25, 0.5), outer, inner) == (0, 0)  # clamped
    assert gravity_offset(Gravity("fp", 0.75, 0.5), outer, inner) == (100, 0)
    assert gravity_offset(Gravity("fp", 0.5, 0.5), (200, 200), (50, 50)) == (75, 75)
    assert gravity_offset(Gravity("so"), (100, 200), (100, 50)) == (0, 150)
    assert gravity_offset(Gravity("no"), (100, 200), (100, 50)) == (0, 0)
    assert gravity_offset(Gravity("soea", 500, 500), (100, 200), (10, 10)) == (0, 0)  # clamped


# --- end to end: the same sizes through HTTP --------------------------------------------

def _url(kind: str, extra: dict, w: int, h: int) -> str:
    parts = [f"rs:{kind}:{w}:{h}"]
    for key, value in extra.items():
        if key == "padding":
            parts.append("pd:" + ":".join(map(str, value)))
        elif value:
            parts.append(URL_EXTRA[key])
    return "/".join(parts)


async def _sizes(client, urls: list[str]) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    out = []
    for options in urls:
        response = await client.get(signed(f"/{options}/plain/local:///src.jpg@png"))
        assert response.status == 200, (options, await response.text())
        image = load(await response.read())
        out.append((image.width, image.height))
    return out


async def test_tables_end_to_end(make_client, images):
    (images / "src.jpg").write_bytes(jpeg(*SRC))
    client = await make_client()
    cases = [(_url(kind, extra, w, h), (ow, oh))
             for kind, extra, table in TABLES.values() for w, h, ow, oh in table]
    cases += [(url, (ow, oh)) for url, _, ow, oh in OTHERS]
    got = await _sizes(client, [url for url, _ in cases])
    wrong = [(url, want, size) for (url, want), size in zip(cases, got, strict=True)
             if size != want]
    assert not wrong


async def test_result_dimension_limit_end_to_end(make_client, images):
    (images / "src.jpg").write_bytes(jpeg(*SRC))
    client = await make_client(IMGPROXY_ALLOW_SECURITY_OPTIONS="1")
    cases = [(f"{_url(kind, extra, w, h)}/mrd:{limit}" + (f"/rot:{rot}" if rot else ""),
              (ow, oh)) for limit, w, h, kind, extra, rot, ow, oh in LIMITS]
    got = await _sizes(client, [url for url, _ in cases])
    wrong = [(url, want, size) for (url, want), size in zip(cases, got, strict=True)
             if size != want]
    assert not wrong


async def test_server_result_dimension_cap(make_client, images):
    (images / "src.jpg").write_bytes(jpeg(*SRC))
    client = await make_client(IMGPROXY_MAX_RESULT_DIMENSION="64")
    assert await _sizes(client, ["rs:fit:1000:1000:1"]) == [(64, 32)]


def _halves(left: tuple[int, int, int], right: tuple[int, int, int], w: int = 200,
            h: int = 100) -> bytes:
    image = solid(w // 2, h, left).join(solid(w - w // 2, h, right), "horizontal")
    return image.pngsave_buffer()


def _mean_rgb(data: bytes) -> tuple[float, ...]:
    image = load(data)
    return tuple(image.extract_band(i).avg() for i in range(3))


@pytest.mark.parametrize(("gravity", "expect_red"), [
    ("g:we", True), ("g:ea", False), ("g:nowe", True), ("g:soea", False),
    ("g:fp:0.1:0.5", True), ("g:fp:0.9:0.5", False), ("g:we:120", False), ("g:ea:0.6", True),
])
async def test_gravity_chooses_the_part_that_is_kept(make_client, images, gravity, expect_red):
    (images / "halves.png").write_bytes(_halves((255, 0, 0), (0, 0, 255)))
    client = await make_client()
    response = await client.get(signed(f"/rs:fill:80:100/{gravity}/plain/local:///halves.png"))
    assert response.status == 200
    data = await response.read()
    assert (load(data).width, load(data).height) == (80, 100)
    r, _, b = _mean_rgb(data)
    assert (r > 200 and b < 50) if expect_red else (b > 200 and r < 50)


async def test_crop_gravity_and_default_gravity(make_client, images):
    (images / "halves.png").write_bytes(_halves((255, 0, 0), (0, 0, 255)))
    client = await make_client()
    for options, red in (("c:50:100:we", True), ("c:50:100:ea", False),
                         ("g:ea/c:50:100", False), ("g:ea/c:50:100:we", True)):
        response = await client.get(signed(f"/{options}/plain/local:///halves.png"))
        data = await response.read()
        assert (load(data).width, load(data).height) == (50, 100)
        r, _, b = _mean_rgb(data)
        assert (r > 200) == red and (b > 200) != red, options


async def test_smart_gravity_finds_the_interesting_part(make_client, images):
    # a flat grey image with one busy, saturated square on the right
    image = solid(300, 100, (128, 128, 128))
    busy = photo(80, 80)
    (images / "busy.png").write_bytes(image.insert(busy, 210, 10).pngsave_buffer())
    client = await make_client()
    response = await client.get(signed("/rs:fill:100:100/g:sm/plain/local:///busy.png"))
    smart = load(await response.read())
    centre = load(await (await client.get(
        signed("/rs:fill:100:100/plain/local:///busy.png"))).read())
    assert smart.deviate() > 3 * centre.deviate()  # the busy part was kept, not the grey middle


async def test_extend_pads_with_background_in_the_gravity_position(make_client, images):
    (images / "red.png").write_bytes(solid(50, 50, (255, 0, 0)).pngsave_buffer())
    client = await make_client()
    response = await client.get(
        signed("/rs:fit:100:100/ex:1:we/bg:0:0:255/plain/local:///red.png"))
    image = load(await response.read())
    assert (image.width, image.height) == (100, 100)
    assert image.getpoint(10, 50)[:3] == [255, 0, 0]  # image at the west edge
    assert image.getpoint(90, 50)[:3] == [0, 0, 255]  # background on the east


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["fit", "fill", "fill-down", "force", "auto"]),
       width=st.integers(0, 6000), height=st.integers(0, 6000), dpr=st.sampled_from([1, 2, 3]),
       enlarge=st.booleans(), extend=st.booleans(),
       padding=st.tuples(*[st.sampled_from([0, 1, 7, 333, 3000])] * 4),
       src=st.tuples(st.integers(1, 9000), st.integers(1, 9000)), cap=st.integers(16, 2000))
def test_result_dimension_cap_is_never_exceeded(kind, width, height, dpr, enlarge, extend,
                                                 padding, src, cap):
    o = ProcessingOptions(resizing_type=kind, width=width, height=height, dpr=dpr,
                          enlarge=enlarge, extend=Extend(extend), padding=padding)
    p = plan(o, *src, max_dimension=cap)
    assert max(result_size(p, *src)) <= cap
