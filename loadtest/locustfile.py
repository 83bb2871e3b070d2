"""Realistic traffic for vipsgate (run by ``loadtest/run_locust.py``, or by hand).

A visitor opens pages; each page shows a few images picked by popularity (Zipf),
each at one of a few layout sizes, at 1x or 2x, asked by a modern or an old
browser (Accept decides AVIF/WebP/JPEG). A small share of requests carries a
bad signature (403 expected) or names a missing source (404 expected).

Environment (set by run_locust.py): VIPSGATE_LT_KEY, VIPSGATE_LT_SALT (hex),
VIPSGATE_LT_SOURCES (source URLs, one per line, e.g. ``local:///img_000.jpg``), and
IMGPROXY_SECRET, sent as ``Authorization: Bearer`` when set (a deployment behind a CDN).
"""

from __future__ import annotations

import bisect
import itertools
import os
import random

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

from vipsgate.paths import encode_source
from vipsgate.signing import Signer

SIZES = [(160, 120, "fill"), (320, 240, "fill"), (640, 480, "fit"), (1200, 800, "fit")]
ACCEPT = [  # (share, header)
    (0.55, "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"),  # Chrome
    (0.25, "image/webp,*/*"),  # older Safari / Firefox
    (0.20, "image/png,image/*;q=0.8,*/*;q=0.5"),  # old browsers, bots: JPEG answers
]
BAD_SIGNATURE_SHARE = 0.02
MISSING_SOURCE_SHARE = 0.02
ZIPF_S = 1.1


def _zipf_weights(n: int, s: float = ZIPF_S) -> list[float]:
    """Cumulative Zipf weights: the k-th most popular source has weight 1/k^s."""
    return list(itertools.accumulate(1 / (k ** s) for k in range(1, n + 1)))


SOURCES = [s for s in os.environ.get("VIPSGATE_LT_SOURCES", "").splitlines() if s]
CUMULATIVE = _zipf_weights(len(SOURCES)) if SOURCES else []
SIGNER = Signer.from_hex([os.environ.get("VIPSGATE_LT_KEY", "00")],
                         [os.environ.get("VIPSGATE_LT_SALT", "00")])
ACCEPT_CUMULATIVE = list(itertools.accumulate(share for share, _ in ACCEPT))
SECRET = os.environ.get("IMGPROXY_SECRET", "")
AUTHORIZATION = {"Authorization": f"Bearer {SECRET}"} if SECRET else {}


def pick_source(rng: random.Random) -> str:
    return SOURCES[bisect.bisect(CUMULATIVE, rng.random() * CUMULATIVE[-1])]


def pick_accept(rng: random.Random) -> str:
    index = bisect.bisect(ACCEPT_CUMULATIVE, rng.random() * ACCEPT_CUMULATIVE[-1])
    return ACCEPT[min(index, len(ACCEPT) - 1)][1]


def image_path(source: str, width: int, height: int, kind: str, dpr: int) -> str:
    options = f"/rs:{kind}:{width}:{height}" + (f"/dpr:{dpr}" if dpr > 1 else "")
    if source.startswith("local:///") and "?" not in source:
        return f"{options}/plain/{source}"  # readable in the report
    return f"{options}/{encode_source(source)}"  # any URL: ?, @ and % included


class Visitor(FastHttpUser):
    """One browser: a page view = 4-8 images, then a pause."""

    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.accept = pick_accept(self.rng)
        self.dpr = 2 if self.rng.random() < 0.5 else 1

    @task
    def page(self) -> None:
        if not SOURCES:
            raise RuntimeError("VIPSGATE_LT_SOURCES is empty (start with run_locust.py)")
        for _ in range(self.rng.randint(4, 8)):
            width, height, kind = self.rng.choice(SIZES)
            self.get_image(pick_source(self.rng), width, height, kind)

    def get_image(self, source: str, width: int, height: int, kind: str) -> None:
        roll = self.rng.random()
        expected, name = 200, f"{kind} {width}x{height}"
        if roll < MISSING_SOURCE_SHARE:
            source, expected, name = source + ".missing", 404, "missing source"
        path = image_path(source, width, height, kind, self.dpr)
        signature = SIGNER.sign(path)
        if MISSING_SOURCE_SHARE <= roll < MISSING_SOURCE_SHARE + BAD_SIGNATURE_SHARE:
            signature, expected, name = "bad" + signature[3:], 403, "bad signature"
        with self.client.get(f"/{signature}{path}",
                             headers={"Accept": self.accept, **AUTHORIZATION},
                             name=name, catch_response=True) as response:
            if response.status_code != expected:
                response.failure(f"expected {expected}, got {response.status_code}")
            else:
                response.success()
