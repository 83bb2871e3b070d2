"""``make bench``'s peers and mix (loadtest/): the URLs each server gets, the generated
photos, the targets and the table. No server, no network, no timing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT))
from loadtest.common import SOURCES
from loadtest.mix import (
    MIX_SOURCES,
    MIXES,
    OPERATIONS,
    expected_size,
    ipx_path,
    mix_source,
    thumbor_path,
)
from loadtest.peer_ipx import IPX_DIR, IPX_URLS, ipx_url
from loadtest.peers import THUMBOR_URLS, thumbor_url

MIX, NOAVIF = MIXES


@pytest.fixture(scope="module")
def versus():  # type: ignore[no-untyped-def]
    """loadtest.versus; importing the bench sets libvips variables, undone here."""
    saved = dict(os.environ)
    try:
        import loadtest.versus as module
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return module


def ipx_modifiers(url: str) -> dict[str, str]:
    """ipx 3's parse of the first path segment: ``&`` or ``,`` between modifiers, the
    first ``_``, ``:`` or ``=`` between name and value."""
    segment = url.split("/")[1]
    return dict(re.split("[:=_]", part, maxsplit=1) for part in re.split("[&,]", segment))


def test_the_mix_requests_in_every_grammar():
    r = MIX.request(0)
    assert (r.source, r.op.kind, r.op.width, r.op.height, r.fmt) == (
        "mix_4x3.jpg", "fit", 320, 0, "webp")
    assert MIX.path(0) == "/rs:fit:320:0/q:80/cb:0/plain/local:///mix_4x3.jpg@webp"
    assert thumbor_path(r, 0) == (
        "/unsafe/320x0/filters:format(webp):quality(80):max_age(0)/mix_4x3.jpg")
    assert ipx_path(r, 0) == "/w_320&f_webp&q_80&cb_0/mix_4x3.jpg"
    fill = MIX.request(5)  # source 0, operation 5, format 2
    assert (fill.op.kind, fill.op.width, fill.op.height, fill.fmt) == ("fill", 800, 800, "avif")
    assert MIX.path(5) == "/rs:fill:800:800/q:80/cb:5/plain/local:///mix_4x3.jpg@avif"
    assert thumbor_url("MIX", 5) == (
        "/unsafe/800x800/filters:format(avif):quality(80):max_age(5)/mix_4x3.jpg")
    assert ipx_url("MIX", 5) == "/s_800x800&fit_cover&f_avif&q_80&cb_5/mix_4x3.jpg"
    assert NOAVIF.path(2).endswith("/plain/local:///mix_3x2.jpg@webp")
    assert "format(jpeg)" in thumbor_url("MIX-NOAVIF", 1)


def test_w1_to_w4_in_every_grammar(versus):  # type: ignore[no-untyped-def]
    names = [w.name for w in versus.WORKLOADS]
    assert list(THUMBOR_URLS) == list(IPX_URLS) == names
    assert thumbor_url("W3", 7) == "/unsafe/800x600/filters:quality(80):max_age(7)/photo_12mp.jpg"
    assert ipx_url("W1", 3) == "/s_300x200&fit_inside&f_jpeg&q_80&cb_3/photo_1080.jpg"
    for w in versus.WORKLOADS:  # the same box, format and fit or fill as vipsgate's
        modifiers = ipx_modifiers(ipx_url(w.name, 1))
        assert modifiers["s"] == f"{w.width}x{w.height}"
        assert modifiers["fit"] == ("cover" if w.crop else "inside")
        assert modifiers["f"] == {"jpg": "jpeg"}.get(w.fmt, w.fmt)
        assert w.source in SOURCES and ipx_url(w.name, 1).endswith("/" + w.source)


@pytest.mark.parametrize("name", ["W1", "W2", "W3", "W4", "MIX", "MIX-NOAVIF"])
def test_every_peer_url_is_a_new_render(name):
    """Distinct per request, and for ipx only modifiers it knows plus ``cb`` (ignored): one
    resize (``w_`` and ``h_`` together would be two, and only the last counts)."""
    for url_of in (thumbor_url, ipx_url):
        assert len({url_of(name, n) for n in range(300)}) == 300
    known = {"s", "w", "fit", "f", "q", "cb"}
    for n in range(105):
        modifiers = ipx_modifiers(ipx_url(name, n))
        assert set(modifiers) <= known and modifiers["cb"] == str(n)
        assert ("s" in modifiers) != ("w" in modifiers) and "h" not in modifiers


@pytest.mark.parametrize("mix", MIXES, ids=lambda m: m.name)
def test_any_run_of_mix_requests_is_balanced(mix):
    """Whatever number of requests a server gets through, each operation and format
    has its share (within one); one cycle holds every combination once."""
    for length in (10, 21, 33, 64):
        for start in range(0, 200, 7):
            requests = [mix.request(n) for n in range(start, start + length)]
            for counts in (Counter(r.op for r in requests), Counter(r.fmt for r in requests)):
                assert max(counts.values()) - min(counts.values()) <= 1
    cycle = {mix.request(n) for n in range(mix.cycle())}
    assert len(cycle) == mix.cycle() == len(MIX_SOURCES) * len(OPERATIONS) * len(mix.formats)
    assert "avif" not in {r.fmt for r in (NOAVIF.request(n) for n in range(70))}


def test_the_expected_output_sizes():
    assert expected_size(MIX.request(1), MIX_SOURCES["mix_3x4.jpg"]) == (640, 853)
    r = MIX.request(0)
    assert expected_size(r, (4000, 3000)) == (320, 240)
    assert expected_size(r, (300, 200)) == (300, 200)  # no enlargement
    assert expected_size(MIX.request(6), (3000, 4000)) == (1200, 630)


def test_a_mix_photo_is_a_12_mp_jpeg_of_3_to_5_mb():
    import pyvips
    assert all(11.5e6 < w * h < 12.5e6 for w, h in MIX_SOURCES.values())
    data = mix_source("mix_16x9.jpg")
    image = pyvips.Image.new_from_buffer(data, "")
    assert (image.width, image.height, image.get("vips-loader")) == (4608, 2592, "jpegload_buffer")
    assert 3e6 <= len(data) <= 5e6, len(data)


def test_targets_and_the_table(versus):  # type: ignore[no-untyped-def]
    """The issue's targets; each ratio is marked met or missed beside its target."""
    assert versus.TARGETS == {
        ("W1", "thumbor"): 1.0, ("W2", "thumbor"): 1.0, ("W3", "thumbor"): 1.3,
        ("W4", "thumbor"): 1.3, ("MIX", "thumbor"): 2.0, ("MIX", "ipx"): 1.0,
        ("MIX-NOAVIF", "thumbor"): 2.0, ("MIX-NOAVIF", "ipx"): 1.0, ("W5", "bare_aiohttp"): 0.6}
    figures = {"rps": 0.0, "cpu_ms_per_op": 5.0, "peak_rss_mb": 100.0}
    w1 = {"name": "W1", "title": "t1", "output_bytes": {"vipsgate": 1, "thumbor": 2, "ipx": 3},
          "vipsgate": {**figures, "rps": 90.0}, "thumbor": {**figures, "rps": 100.0},
          "ipx": {**figures, "rps": 45.0}}
    mix = {**w1, "name": "MIX", "vipsgate": {**figures, "rps": 20.0},
           "thumbor": {**figures, "rps": 8.0}, "ipx": {**figures, "rps": 25.0}}
    for entry in (w1, mix):
        versus.rate(entry, "thumbor")
        versus.rate(entry, "ipx")
    assert w1["ratios"] == {"thumbor": 0.9, "ipx": 2.0}
    assert w1["targets"]["ipx"] == {"target": None, "verdict": None}
    table = versus.vs_summary({"peers": {"thumbor": {}, "ipx": {}}, "skipped": {},
                               "workloads": {"W1": w1, "MIX": mix}})
    rows = table.splitlines()
    assert len({row.count("|") for row in rows[:4]}) == 1  # header, rule, rows: same columns
    assert "| **0.90** (≥ 1.0: missed) | **2.00** |" in rows[2]
    assert "| **2.50** (≥ 2.0: met) | **0.80** (≥ 1.0: missed) |" in rows[3]
    assert "Targets met: **1 of 3**" in table
    close = {k: v for k, v in w1.items() if k not in ("ratios", "targets")}
    close["vipsgate"] = {**figures, "rps": 99.6}  # 0.996 would print as 1.00
    versus.rate(close, "thumbor")
    assert "**0.996** (≥ 1.0: missed)" in versus.vs_summary(
        {"peers": {"thumbor": {}}, "skipped": {}, "workloads": {"W1": close}})
    w1_alone = {**w1, "ratios": {"thumbor": 0.9},
                "targets": {"thumbor": w1["targets"]["thumbor"]}}
    only_thumbor = versus.vs_summary({"peers": {"thumbor": {}}, "skipped": {"ipx": "no npm"},
                                      "workloads": {"W1": w1_alone}})
    assert "ipx req/s" not in only_thumbor and "ipx skipped: no npm" in only_thumbor


def test_outputs_compare_by_format_and_size(versus):  # type: ignore[no-untyped-def]
    import pyvips
    image = pyvips.Image.black(30, 20, bands=3)
    for data, fmt in ((image.jpegsave_buffer(), "jpeg"), (image.webpsave_buffer(), "webp"),
                      (image.pngsave_buffer(), "png")):
        assert versus.describe_output(data) == {"format": fmt, "width": 30, "height": 20,
                                                "bytes": len(data)}
    a = {"format": "jpeg", "width": 300, "height": 169}
    assert versus.same_output(a, {**a, "height": 168})
    assert not versus.same_output(a, {**a, "height": 200})
    assert not versus.same_output(a, {**a, "format": "webp"})


def test_make_bench_runs_the_peers_and_installs_ipx():
    def dry_run(*args: str) -> str:
        return subprocess.run(["make", "-n", "bench", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=True).stdout
    assert "loadtest/bench.py --peers thumbor,ipx" in dry_run()
    assert "npm ci --prefix loadtest/ipx" in dry_run() or (
        IPX_DIR / "node_modules" / "ipx" / "package.json").exists()
    limits = dry_run("PEERS=")
    assert "--peers" not in limits and "npm" not in limits
    lock = json.loads((IPX_DIR / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/ipx"]["version"] == "3.1.1"


def test_a_peer_that_cannot_run_is_skipped_with_the_reason(versus, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    import loadtest.peer_ipx
    monkeypatch.setattr(loadtest.peer_ipx, "IPX_DIR", tmp_path)  # no node_modules here
    peers, skipped = versus.make_peers(["ipx", "nginx"], tmp_path, tmp_path, 2)
    assert peers == [] and set(skipped) == {"ipx", "nginx"}
    assert "skipping ipx" in skipped["ipx"] and "unknown peer 'nginx'" in skipped["nginx"]


def test_a_fill_is_decoded_at_least_at_its_covering_size():
    from loadtest.floor import decoded_size
    from loadtest.mix import MixRequest, Operation
    assert decoded_size(MixRequest("s", Operation("fill", 800, 800), "jpeg"),
                        (4000, 3000)) == (1067, 800)
    assert decoded_size(MixRequest("s", Operation("fill", 1200, 630), "webp"),
                        (3000, 4000)) == (1200, 1600)
    assert decoded_size(MixRequest("s", Operation("fit", 640, 0), "jpeg"),
                        (4000, 3000)) == (640, 480)


def test_the_codec_floor_takes_the_cheaper_codec_of_each_stage():
    """``floor.request_costs`` on a small photo: each stage is timed, the floor is the
    cheaper decoder plus the cheaper encoder, thumbor's work adds the resize, and the
    pipeline is called once; AVIF (another encoder than thumbor's) is refused."""
    import pyvips

    from loadtest.floor import request_costs
    from loadtest.mix import MixRequest, Operation
    data = bytes(pyvips.Image.gaussnoise(1600, 1200, sigma=30, mean=128).cast("uchar")
                 .bandjoin([128, 64]).copy(interpretation="srgb").jpegsave_buffer(Q=90))
    calls = []
    for fmt in ("jpeg", "webp"):
        costs = request_costs(MixRequest("s", Operation("fill", 300, 300), fmt), data,
                              (1600, 1200), lambda: calls.append(1))
        stages = ("pillow_decode", "vips_decode", "resize", "pillow_encode", "vips_encode")
        assert all(costs[name] > 0 for name in stages), costs
        assert costs["floor"] == min(costs["pillow_decode"], costs["vips_decode"]) + \
            min(costs["pillow_encode"], costs["vips_encode"])
        assert costs["thumbor"] == costs["pillow_decode"] + costs["resize"] + \
            costs["pillow_encode"]
    assert len(calls) == 2
    with pytest.raises(ValueError, match="avif"):
        request_costs(MixRequest("s", Operation("fit", 320, 0), "avif"), data, (1600, 1200),
                      lambda: None)


def test_the_codec_floor_line(versus):  # type: ignore[no-untyped-def]
    figures = {"rps": 10.0, "cpu_ms_per_op": 150.0, "peak_rss_mb": 100.0}
    entry = {"name": "MIX-NOAVIF", "title": "t", "output_bytes": {"vipsgate": 1, "thumbor": 2},
             "vipsgate": figures, "thumbor": {**figures, "rps": 8.0},
             "codec_floor": {"requests": 70, "ceiling": 1.55, "vipsgate_over_floor": 1.28,
                             "thumbor_over_vipsgate": 1.2,
                             "cpu_ms": {"floor": 114.5, "pillow_decode": 71.6,
                                        "vips_decode": 82.1, "pillow_encode": 49.0,
                                        "vips_encode": 60.7, "resize": 56.4,
                                        "thumbor": 177.0, "vipsgate": 147.1}}}
    versus.rate(entry, "thumbor")
    table = versus.vs_summary({"peers": {"thumbor": {}}, "skipped": {},
                               "workloads": {"MIX-NOAVIF": entry}})
    line = next(row for row in table.splitlines() if row.startswith("MIX-NOAVIF codec floor"))
    assert "nothing else, 114.5" in line and "**1.55x** thumbor's pixel work" in line
    assert "`process()` does 1.20x, at 1.28x the floor" in line


def test_rounds_combine_into_medians(versus):  # type: ignore[no-untyped-def]
    """``--rounds``: each figure the median over the rounds, peak RSS the highest."""
    rounds = [{"rps": rps, "p50_ms": 10.0 * rps, "p99_ms": 20.0, "cpu_ms_per_op": cpu,
               "peak_rss_mb": rss, "errors": errors}
              for rps, cpu, rss, errors in ((100.0, 5.0, 90.0, 0), (80.0, 7.0, 120.0, 1),
                                            (120.0, 6.0, 100.0, 2))]
    combined = versus.combine(rounds)
    assert (combined["rps"], combined["p50_ms"], combined["cpu_ms_per_op"]) == (100.0, 1000.0, 6.0)
    assert (combined["peak_rss_mb"], combined["errors"]) == (120.0, 3)
    assert combined["rounds_rps"] == [100.0, 80.0, 120.0]
    assert versus.combine(rounds[:1]) == rounds[0]
