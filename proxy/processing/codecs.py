"""libvips loaders and savers, one per format of the registry (``formats.py``).

Every format the registry marks ``load`` has a loader here and every ``save``
format a saver (a test checks both ways). A source is always opened with the
loader of its sniffed format, never with a guessing one. Formats the libvips
wheel cannot read or write (HEIC, BMP, ICO, JPEG XL) are bound to
``foreign_load`` / ``foreign_save`` here, by format.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pyvips

from .. import formats
from ..errors import UnprocessableImage, UnsupportedFormat
from . import foreign_load, foreign_save, pillow_codecs

#: libvips loaders by format; each reads a ``pyvips.Source``: the bytes in memory (not
#: copied) or a stream as it arrives (``formats.STREAMED`` only)
LOADERS: dict[str, Callable[..., pyvips.Image]] = {
    "jpeg": pyvips.Image.jpegload_source, "png": pyvips.Image.pngload_source,
    "webp": pyvips.Image.webpload_source, "gif": pyvips.Image.gifload_source,
    "avif": pyvips.Image.heifload_source, "tiff": pyvips.Image.tiffload_source,
    "svg": pyvips.Image.svgload_source,
}


class Stream(Protocol):
    """Bytes arriving while they are decoded (``sources.stream.Reader``)."""

    @property
    def size(self) -> int | None: ...

    def read(self, size: int) -> bytes: ...

    def peek(self, size: int) -> bytes: ...

    def arrived(self) -> bytes | None: ...


#: formats whose loaders decode strip by strip as the pipeline asks (the others decode
#: the whole image first: WebP, GIF, AVIF and the ``foreign_load`` ones)
IN_STRIPS = frozenset({"jpeg", "png", "svg", "tiff"})
#: scans of a progressive JPEG (encoders write about 10): libjpeg decodes each over the
#: whole image before the first row comes out, which nothing can interrupt; a file
#: repeating one scan 30,000 times kept a worker for 85 s
MAX_JPEG_SCANS = 100
_SOS = b"\xff\xda"  # start of scan (0xFF in entropy-coded data is always stuffed)


class ScanCounter:
    """Counts a JPEG's start-of-scan markers over consecutive chunks."""

    def __init__(self) -> None:
        self.scans = 0
        self._last = b""

    def feed(self, chunk: bytes) -> None:
        self.scans += chunk.count(_SOS) + (self._last + chunk[:1] == _SOS)
        self._last = chunk[-1:] or self._last
        if self.scans > MAX_JPEG_SCANS:
            raise UnprocessableImage(f"JPEG has more than {MAX_JPEG_SCANS} scans")


class Input:
    """What a job decodes: bytes in memory, or a ``Stream`` (opened once as a libvips
    source, so the header and the shrunk decode read it from the same place). A stream
    whose body has all arrived before the job starts is read from memory: libvips then
    needs no call back into Python for every few KiB.
    ``failure`` keeps why the stream stopped, to answer with that, not libvips' error."""

    def __init__(self, data: bytes | Stream) -> None:
        if not isinstance(data, bytes):  # all there already: decoded from memory
            data = data.arrived() or data
        self.data = data
        self.failure: Exception | None = None
        self._source: pyvips.Source | None = None
        self._scans: ScanCounter | None = None

    def limit_scans(self) -> None:
        """Refuse a JPEG with more than ``MAX_JPEG_SCANS`` scans: bytes at once, a stream
        as it is read. (The pipeline counts bytes in memory only when libvips' header
        says the file has several scans: libjpeg reads a single-scan file's first scan
        and stops.)"""
        if isinstance(self.data, bytes):
            ScanCounter().feed(self.data)
        else:
            self._scans = ScanCounter()

    @property
    def size(self) -> int | None:
        return len(self.data) if isinstance(self.data, bytes) else self.data.size

    def head(self, size: int) -> bytes:
        return self.data[:size] if isinstance(self.data, bytes) else self.data.peek(size)

    def whole(self) -> bytes:
        if not isinstance(self.data, bytes):
            raise UnsupportedFormat("This source is streamed; the whole file is not kept")
        return self.data

    def source(self) -> pyvips.Source:
        """The bytes as a libvips source: memory is read in place (a ``_buffer`` loader
        would copy it at each open), a stream as it arrives."""
        if self._source is None:
            if isinstance(self.data, bytes):
                self._source = pyvips.Source.new_from_memory(self.data)
            else:
                self._source = self._stream_source(self.data)
        return self._source

    def _stream_source(self, stream: Stream) -> pyvips.Source:
        source = pyvips.SourceCustom()

        def read(buffer: Any) -> int:
            try:
                chunk = stream.read(len(buffer))
                if self._scans is not None:
                    self._scans.feed(chunk)
            except Exception as exc:  # the download failed, a limit, a cancel
                self.failure = exc
                return -1  # a read error: the loader stops at once
            buffer[:len(chunk)] = chunk
            return len(chunk)

        source.signal_connect("read", read)
        return source


def load(data: Input, fmt: str, shrink: float = 1.0, frames: int = 1,
         thumbnail: bool = False, fail_on: str = "error") -> pyvips.Image:
    """Open ``data`` with the loader for its sniffed format.

    ``fail_on="error"`` turns truncated and corrupt files into errors (422)
    instead of libvips' default grey fill.
    """
    if fmt in foreign_load.FORMATS:  # whole-file decoders: no shrink, one frame
        return foreign_load.decode(data.whole(), fmt)
    kwargs: dict[str, Any] = {"access": "sequential", "fail_on": fail_on}
    if fmt == "jpeg" and shrink >= 2:
        kwargs["shrink"] = 8 if shrink >= 8 else 4 if shrink >= 4 else 2
    elif fmt == "webp" and shrink > 1:
        kwargs["scale"] = 1 / shrink
    elif fmt == "svg":
        kwargs["scale"] = 1 / shrink
        kwargs["unlimited"] = False  # keep librsvg's limits (XML size, nesting)
        del kwargs["access"]
    elif fmt == "avif" and thumbnail:
        kwargs["thumbnail"] = True
    if fmt in formats.ANIMATED and frames > 1:
        kwargs["n"] = frames
    return LOADERS[fmt](data.source(), **kwargs)


def shrinks_on_load(fmt: str, animated: bool) -> bool:
    """Whether the loader of ``fmt`` can decode at a reduced size (JPEG, WebP, SVG)."""
    return fmt in ("jpeg", "webp", "svg") and not (animated and fmt == "jpeg")


def jpeg_suspicious(size: int, width: int, height: int) -> bool:
    """True when a JPEG has less than one bit per 8x8 block of its declared size.

    Real JPEGs never get that small; a forged header over a few bytes of data
    does, and libjpeg only warns ("premature end of data segment") while it
    fills the declared area with grey. Such files are decoded with
    ``fail_on="warning"`` so they are refused instead.
    """
    return size * 8 * 64 < width * height


Saver = Callable[[pyvips.Image, int, str, Any], bytes]


def _jpeg(image: pyvips.Image, quality: int, keep: str, e: Any) -> bytes:
    return image.jpegsave_buffer(Q=quality, interlace=e.jpeg_progressive, keep=keep,
                                 optimize_coding=True)


def _png(image: pyvips.Image, quality: int, keep: str, e: Any) -> bytes:
    if e.png_colors:  # IMGPROXY_PNG_QUANTIZE: a palette of at most that many colours
        depth = next(bits for bits in (1, 2, 4, 8) if e.png_colors <= 1 << bits)
        return image.pngsave_buffer(interlace=e.png_interlaced, keep=keep, compression=6,
                                    palette=True, bitdepth=depth, filter="none")
    return image.pngsave_buffer(interlace=e.png_interlaced, keep=keep, compression=6,
                                filter="none" if image.width * image.height > 1 else "all")


def _webp(image: pyvips.Image, quality: int, keep: str, e: Any) -> bytes:
    return image.webpsave_buffer(Q=quality, effort=e.webp_effort, keep=keep,
                                 preset=e.webp_preset)


def _avif(image: pyvips.Image, quality: int, keep: str, e: Any) -> bytes:
    return image.heifsave_buffer(Q=quality, compression="av1", bitdepth=8,
                                 effort=9 - e.avif_speed, keep=keep)


def _gif(image: pyvips.Image, quality: int, keep: str, e: Any) -> bytes:
    return image.gifsave_buffer(keep=keep)


def _tiff(image: pyvips.Image, quality: int, keep: str, e: Any) -> bytes:
    return image.tiffsave_buffer(Q=quality, keep=keep,
                                 compression="deflate" if image.hasalpha() else "jpeg")


SAVERS: dict[str, Saver] = {"jpeg": _jpeg, "png": _png, "webp": _webp, "avif": _avif,
                            "gif": _gif, "tiff": _tiff, "bmp": foreign_save.save_bmp,
                            "ico": foreign_save.save_ico, "jxl": foreign_save.save_jxl}


def save(image: pyvips.Image, fmt: str, quality: int, keep: str, e: Any) -> bytes:
    """Encode ``image`` as ``fmt`` with the encoder settings of ``e`` (``Effective``)."""
    saver = SAVERS.get(fmt)
    if saver is None:
        raise UnsupportedFormat(f"Resulting image format {fmt} is not supported")
    fast = pillow_codecs.save(image, fmt, quality, keep, e)  # the same bytes, small images
    return saver(image, quality, keep, e) if fast is None else fast
