"""Large JPEG sources (issue 23's growth): a single-scan JPEG's bytes are not searched for
scans, and jobs for one source too large for the originals cache share one copy."""

from __future__ import annotations

import pytest
import pyvips

from conftest import process_url, signed
from hostilegen import jpeg_with_scans
from imagegen import photo
from vipsgate.app import FETCHER, ORIGINALS, SOURCES
from vipsgate.cache import Outcome
from vipsgate.errors import UnprocessableImage
from vipsgate.metrics import JobReport
from vipsgate.processing import codecs


def multiscan(data: bytes) -> bool:
    """libjpeg's own answer (``jpeg_has_multiple_scans``), as libvips reports it."""
    return bool(pyvips.Image.jpegload_buffer(data).get("jpeg-multiscan"))


def repeated_baseline_scan(side: int, repeats: int) -> bytes:
    """A baseline JPEG whose one scan is repeated: libjpeg stops after the first."""
    data: bytes = photo(side, side).jpegsave_buffer(Q=50)
    scan, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:end] + data[scan:end] * repeats + data[end:]


def test_a_repeated_baseline_scan_is_decoded_once():
    """The pipeline counts scans only in files libjpeg decodes scan by scan: one whose
    baseline scan is repeated past the limit is not searched, nor refused."""
    data = repeated_baseline_scan(64, codecs.MAX_JPEG_SCANS * 2)
    assert not multiscan(data)
    with pytest.raises(UnprocessableImage):  # what counting it would have said
        codecs.Input(data).limit_scans()
    result = process_url(data, "rs:fit:32:32", "png")
    assert (result.width, result.height) == (32, 32)


def test_scans_are_still_counted_where_libjpeg_decodes_them_all():
    hostile = jpeg_with_scans(64, codecs.MAX_JPEG_SCANS)  # progressive
    assert multiscan(hostile)
    with pytest.raises(UnprocessableImage):
        process_url(hostile, "rs:fit:32:32", "png")


async def test_jobs_share_a_finished_source_too_large_for_the_cache(make_client, images):
    data = photo(600, 400).jpegsave_buffer(Q=95)
    (images / "large.jpg").write_bytes(data)
    client = await make_client(VIPSGATE_SOURCE_CACHE_BYTES=str(len(data) * 2))
    fetcher, ref = client.app[FETCHER], client.app[SOURCES].check("local:///large.jpg")
    first, second, third = JobReport(), JobReport(), JobReport()
    async with fetcher.incoming(ref, 0, first) as one:
        held = (await one.complete()).data
        async with fetcher.incoming(ref, 0, second) as two:  # while the first job works
            assert (await two.complete()).data is held
    async with fetcher.incoming(ref, 0, third) as three:  # nobody held it: read again
        assert (await three.complete()).data == held
    assert [r.source_cache for r in (first, second, third)] == [
        Outcome.MISS.value, Outcome.COALESCED.value, Outcome.MISS.value]
    assert client.app[ORIGINALS].get(ref.url) is None and not fetcher.downloads
    assert (await client.get(signed("/rs:fit:60:60/plain/local:///large.jpg"))).status == 200
