"""The CDN recipes in cdn/ normalise ``Accept`` exactly as vipsgate negotiates.

``negotiate.edge_accept`` is the table: for each ``Accept`` a browser may send, the one
of four values that vipsgate answers in the same way. The recipes (CloudFront Function,
Cloudflare Worker, Fastly Compute) run under node with their platform's request API
stubbed (tests/cdn_harness.mjs) and must forward that value for every input; node is
installed by ``make test`` where it can be (root, apt), and these tests skip without it.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import shutil
import subprocess
from functools import cache

import pytest

from conftest import ROOT
from vipsgate.negotiate import edge_accept, negotiate

CDN = ROOT / "cdn"
RECIPES = ("cloudfront-function.js", "cloudflare-worker.js", "fastly-compute.js")
EDGE_VALUES = {"image/avif,image/webp", "image/avif", "image/webp", ""}

BROWSERS = [
    "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",  # Chrome
    "image/avif,image/webp,*/*",  # Firefox
    "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,"
    "image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",  # Safari 17
    "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5",  # Safari 14
    "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5",  # Safari 13
    "*/*", "image/*", "", "text/html",
]
EDGE_CASES = [
    "image/avif;q=0,image/webp",  # the chart README's old recipe sent this to AVIF
    "image/avif;q=0.0,image/webp;q=0.000", "image/webp;q=0", "image/avif;q=0",
    "IMAGE/AVIF;Q=0.5, Image/WebP;q=0.9", " image/avif ; q = 1 ,image/webp",
    "image/avif;q=abc,image/webp", "image/avif;q=,image/webp;q", "image/avif;q=7",
    "image/avif;q=1e-3", "image/avif;q=-1,image/webp;q=+0.5", "image/avif;q=.5,image/webp;q=.5",
    "image/avif;q=0,image/avif;q=0.2", "image/webp;q=0.2,image/webp;q=0",
    "image/avif;level=1;q=0.3,image/webp;q=0.4", "image/avif;q=0.4;q=0",
    "image/avif;q=inf", "image/avif;q=nan,image/webp", "image/avif;q=1_0",
    'image/avif;q="0.5"', "image/avif;q=0x1", "image/avifx,image/webpx", ",,,;;;",
    "image/avif;q=1e400,image/webp;q=1",
]
TOKENS = ["image/avif", "image/webp", "image/*", "*/*", "image/png", "IMAGE/AVIF",
          " image/webp "]
PARAMS = ["", ";q=0", ";q=0.5", ";q=1", ";q=0.01", ";Q=0.9", "; q = 0 ", ";q=abc", ";q=1.000",
          ";q=0.50;x=y", ";x=y"]


def generated(count: int = 400, seed: int = 22) -> list[str]:
    """Accept headers built from the tokens and parameters above (reproducibly)."""
    rng = random.Random(seed)
    return [",".join(rng.choice(TOKENS) + rng.choice(PARAMS) for _ in range(rng.randint(1, 4)))
            for _ in range(count)]


ACCEPTS = BROWSERS + EDGE_CASES + generated()


@cache
def run_recipes() -> dict[str, list[str]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not available: install Debian's nodejs package (make test does, "
                    "as root)")
    payload = json.dumps({"cdn": str(CDN), "accepts": [*ACCEPTS, None]})
    done = subprocess.run([node, str(ROOT / "tests" / "cdn_harness.mjs")], input=payload,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    results: dict[str, list[str]] = json.loads(done.stdout)
    return results


def test_the_edge_values_answer_as_the_browsers_accept_does():
    """Forwarding ``edge_accept(accept)`` instead of ``accept`` changes no answer, for
    every kind of image (animated and tiny images cannot be AVIF; alpha; source format)."""
    facts = list(itertools.product(("jpeg", "png", "gif", "webp"), (False, True),
                                   (False, True), (8, 300)))
    for accept in ACCEPTS:
        edge = edge_accept(accept)
        assert edge in EDGE_VALUES
        for explicit in (None, "png"):
            raw = negotiate(explicit, accept, auto_webp=True, auto_avif=True,
                            enforce_webp=False, enforce_avif=False)
            forwarded = negotiate(explicit, edge, auto_webp=True, auto_avif=True,
                                  enforce_webp=False, enforce_avif=False)
            assert forwarded.vary == raw.vary
            for source, alpha, animated, side in facts:
                assert forwarded.choose(source, alpha, animated, side, side) == \
                    raw.choose(source, alpha, animated, side, side), (accept, edge)
    assert edge_accept("image/avif;q=0,image/webp") == "image/webp"
    assert {edge_accept(a) for a in ACCEPTS} == EDGE_VALUES  # every value is exercised


@pytest.mark.parametrize("recipe", ["cloudfront", "cloudflare", "fastly"])
def test_recipe_forwards_vipsgates_value(recipe: str):
    forwarded = run_recipes()[recipe]
    expected = [edge_accept(accept) for accept in ACCEPTS] + [""]  # the last: no header
    wrong = [(accept, got, want) for accept, got, want
             in zip([*ACCEPTS, None], forwarded, expected, strict=True) if got != want]
    assert wrong == []


def test_cloudflare_keys_its_cache_on_the_class():
    keys = run_recipes()["cloudflare_key"]
    classes = {"image/avif,image/webp": "avif-webp", "image/avif": "avif",
               "image/webp": "webp", "": "none"}
    expected = [f"?vipsgate-accept={classes[edge_accept(a)]}" for a in ACCEPTS]
    assert keys == [*expected, "?vipsgate-accept=none"]  # the request's own query is dropped


def test_the_recipes_share_one_normaliser():
    """The function is repeated in each file (each is pasted alone into its platform):
    the copies must not drift apart."""
    bodies = {re.search(r"function vipsgateAccept\(accept\) \{.*?\n\}\n",
                        (CDN / name).read_text(), re.S).group(0)  # type: ignore[union-attr]
              for name in RECIPES}
    assert len(bodies) == 1


def test_the_harness_catches_a_wrong_recipe(tmp_path):
    """The old chart README recipe (substring match, q=0 ignored) fails the comparison."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not available")
    (tmp_path / "cloudfront-function.js").write_text(
        'function handler(event) { var r = event.request;'
        ' var a = r.headers.accept ? r.headers.accept.value : "";'
        ' if (a.indexOf("image/avif") !== -1)'
        ' { r.headers.accept = {value: "image/avif,image/webp"}; }'
        ' else if (a.indexOf("image/webp") !== -1) { r.headers.accept = {value: "image/webp"}; }'
        ' else { delete r.headers.accept; } return r; }')
    for name in RECIPES[1:]:
        shutil.copy(CDN / name, tmp_path / name)
    accepts = ["image/avif;q=0,image/webp"]
    done = subprocess.run([node, str(ROOT / "tests" / "cdn_harness.mjs")],
                          input=json.dumps({"cdn": str(tmp_path), "accepts": accepts}),
                          capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout)["cloudfront"] == ["image/avif,image/webp"]
    assert edge_accept(accepts[0]) == "image/webp"
