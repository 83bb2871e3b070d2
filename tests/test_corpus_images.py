"""A pass over the real (non-hostile) images of ../shared/corpus, driven by MANIFEST.tsv.

Files libvips loads (its column says ``OK``) must answer 200 in the expected format
with an output inside the requested box; formats nothing here decodes (JPEG 2000,
SGI, 12-bit JPEG) must answer 422; the other failures 200 or 422, never 500. HEIC,
BMP, ICO and JPEG XL, which vipsgate decodes outside libvips, are ``test_formats_in``'s.
Hostile inputs (``hostile-*``, ``bomb-*``, ``fuzz-*`` and the attack SVGs) are the
security tests' business.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from conftest import CORPUS, signed
from imagegen import load

pytestmark = pytest.mark.corpus

HOSTILE_PREFIXES = ("hostile-", "bomb-", "fuzz-")
HOSTILE_SVG = ("svg-billion-laughs", "svg-xxe", "svg-xinclude", "svg-external", "svg-script",
               "svg-recursive-use", "svg-huge-dimensions")
SOURCE_FORMAT = {"JPEG": "jpeg", "PNG": "png", "APNG": "png", "GIF": "gif"}
MIME = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}
BOX = 100
#: formats nothing here decodes: always 422
UNSUPPORTED = {"JPEG 2000 (JP2)", "SGI"}
#: decoded outside libvips (processing/foreign_load.py), tested in test_formats_in.py
DECODED_ELSEWHERE = {"BMP", "ICO", "JPEG XL", "HEIF/HEIC"}


def manifest() -> list[dict[str, str]]:
    path = CORPUS / "MANIFEST.tsv"
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [r for r in rows if not r["file"].startswith(HOSTILE_PREFIXES + HOSTILE_SVG)
            and r["format"] not in DECODED_ELSEWHERE]


def libvips_column(row: dict[str, str]) -> str:
    return next(v for k, v in row.items() if k.startswith("libvips"))


def loaded_size(row: dict[str, str]) -> tuple[int, int] | None:
    """The size libvips reports for one frame, from its MANIFEST column."""
    match = re.search(r"load (\d+)x(\d+)(?:, (\d+) pages)?", libvips_column(row))
    if not match:
        return None
    w, h, pages = int(match[1]), int(match[2]), int(match[3] or 1)
    return w, h // pages


ROWS = manifest()
LOADABLE = [r for r in ROWS if libvips_column(r).startswith("OK")]
UNLOADABLE = [r for r in ROWS if not libvips_column(r).startswith("OK")]


@pytest.fixture
async def corpus_client(make_client, corpus: Path):  # type: ignore[no-untyped-def]
    return await make_client(IMGPROXY_LOCAL_FILESYSTEM_ROOT=str(corpus))


def test_manifest_was_read(corpus):
    assert len(LOADABLE) > 50 and len(UNLOADABLE) >= 3
    assert {r["format"] for r in UNLOADABLE} >= {"JPEG"}  # the 12-bit one


async def _get(client, path: str):  # type: ignore[no-untyped-def]
    response = await client.get(signed(path), headers={"Accept": "*/*"})
    return response, await response.read()


async def test_loadable_images_are_resized(corpus_client):
    problems = []
    for row in LOADABLE:
        name, fmt = row["file"], row["format"]
        response, body = await _get(corpus_client, f"/rs:fit:{BOX}:{BOX}/plain/local:///{name}")
        if response.status != 200:
            problems.append((name, response.status, body[:100]))
            continue
        source = SOURCE_FORMAT.get(fmt)
        allowed = {MIME[source]} if source else {"image/jpeg", "image/png", "image/gif"}
        if response.headers["Content-Type"] not in allowed:
            problems.append((name, response.headers["Content-Type"]))
        out = load(body)
        page_h = out.get("page-height") if out.get_typeof("page-height") else out.height
        size = loaded_size(row)
        assert size is not None, name
        w, h = size
        if not (1 <= out.width <= BOX and 1 <= page_h <= BOX):
            problems.append((name, "outside the box", out.width, page_h))
        if fmt != "SVG" and not (out.width <= max(w, h) and page_h <= max(w, h)):
            problems.append((name, "enlarged", out.width, page_h))
        # the aspect ratio survives (either way round: EXIF orientation may swap it)
        ratio = out.width / page_h
        src = w / h
        if max(w, h) > 4 * BOX and not any(abs(ratio - r) / r < 0.05 for r in (src, 1 / src)):
            problems.append((name, "aspect", ratio, src))
    assert not problems


async def test_loadable_images_convert_to_webp(corpus_client):
    problems = []
    for row in LOADABLE:
        name = row["file"]
        response, body = await _get(corpus_client, f"/rs:fill:64:64/plain/local:///{name}@webp")
        if response.status != 200 or response.headers["Content-Type"] != "image/webp":
            problems.append((name, response.status, body[:100]))
            continue
        out = load(body)
        page_h = out.get("page-height") if out.get_typeof("page-height") else out.height
        w, h = loaded_size(row) or (0, 0)
        if out.width > 64 or page_h > 64 or (min(w, h) >= 64 and (out.width, page_h) != (64, 64)):
            problems.append((name, "size", out.width, page_h))
    assert not problems


async def test_unloadable_images_are_422(corpus_client):
    problems = []
    for row in UNLOADABLE:
        name = row["file"]
        response, body = await _get(corpus_client, f"/rs:fit:{BOX}:{BOX}/plain/local:///{name}")
        strict = row["format"] in UNSUPPORTED or "decode FAIL" in libvips_column(row)
        if not strict and response.status == 200:
            # the MANIFEST opened files with n=-1 from disk; we read the bytes and the first
            # page only, which works for the AVIF sequence, the AVIF grid and the TIFF whose
            # pages differ in size
            assert load(body).width <= BOX, name
            continue
        if response.status != 422 or not response.headers["Content-Type"].startswith("text/"):
            problems.append((name, row["format"], response.status, body[:100]))
    assert not problems
