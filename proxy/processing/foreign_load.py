"""Decoders for the formats the libvips wheel cannot load: HEIC, BMP, ICO, JPEG XL.

Each format is read in two steps, as libvips formats are: ``probe`` reads the
header only (size, alpha) so that the limits are checked before any pixel is
decoded, then ``decode`` hands the pixels to libvips (``new_from_memory``) and
the rest of the pipeline runs unchanged. The decoders are well-kept libraries:
pillow-heif (libheif with libde265) for HEIC/HEIF, Pillow for BMP and ICO (the
largest entry, as imgproxy), pillow-jxl-plugin (libjxl) for JPEG XL.

The pixels arrive already oriented (HEIF ``irot``/``imir``, the JPEG XL header's
orientation), so the orientation to apply is always 1. ICC profiles, EXIF and
XMP travel as libvips metadata; 16-bit samples stay 16-bit until ``color``
converts them. These formats need the whole file (random access): their
sources are always buffered. Libraries are imported and set up on first use;
``init`` (called by ``vips.init`` in each worker process) turns Pillow's own bomb
check off.
"""

from __future__ import annotations

import functools
import importlib.util
import io
from collections.abc import Callable
from typing import Any

import pyvips

from ..errors import ImageTooLarge, ProxyError, UnprocessableImage, UnsupportedFormat
from . import foreign_headers
from .foreign_headers import Declared, HeaderError

FORMATS = ("heic", "bmp", "ico", "jxl")
#: Pillow/pillow-heif mode -> (bands, libvips band format, interpretation)
_MODES = {
    "L": (1, "uchar", "b-w"), "LA": (2, "uchar", "b-w"),
    "RGB": (3, "uchar", "srgb"), "RGBA": (4, "uchar", "srgb"),
    "I;16": (1, "ushort", "grey16"), "I;16L": (1, "ushort", "grey16"),
    "RGB;16": (3, "ushort", "rgb16"), "RGBA;16": (4, "ushort", "rgb16"),
}


def init() -> None:
    """Process setup: vipsgate checks every size itself from the header, before Pillow
    decodes, so Pillow's own bomb check is off (one limit, one answer). pillow-heif is
    only looked for here (a missing install stops the worker's start, as its import
    did); it is imported with the first HEIC."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    if importlib.util.find_spec("pillow_heif") is None:
        raise ImportError("pillow-heif is not installed (vipsgate needs it for HEIC)")


@functools.cache
def _pillow_heif() -> Any:
    """pillow-heif, loaded with the first HEIC (libheif and x265 cost every process a few
    MB): libheif uses one thread per image, as libvips does (parallelism comes from
    requests), and reads no thumbnails, depth or auxiliary images."""
    import pillow_heif

    pillow_heif.options.DECODE_THREADS = 1
    pillow_heif.options.THUMBNAILS = False
    pillow_heif.options.DEPTH_IMAGES = False
    pillow_heif.options.AUX_IMAGES = False
    return pillow_heif


def probe(data: bytes, fmt: str) -> Declared:
    """The header's facts; ``UnprocessableImage`` when there is no readable header."""
    try:
        return _PROBES[fmt](data)
    except Exception as exc:
        raise _error(fmt, exc) from None


def decode(data: bytes, fmt: str) -> pyvips.Image:
    """The pixels as a libvips image, after ``probe`` and the limit checks."""
    declared = probe(data, fmt)
    try:
        image = _DECODERS[fmt](data)
    except Exception as exc:
        raise _error(fmt, exc) from None
    if (image.width, image.height) != (declared.width, declared.height):
        raise UnprocessableImage(f"{fmt}: decoded {image.width}x{image.height}, header "
                                 f"declared {declared.width}x{declared.height}")
    return image


def _error(fmt: str, exc: Exception) -> ProxyError:
    """Whatever a decoding library raised, as a typed error (never a 500 for bad input)."""
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, HeaderError):
        return UnprocessableImage(str(exc))
    reason = f"{fmt}: " + (str(exc) or type(exc).__name__).splitlines()[0][:200]
    if isinstance(exc, MemoryError) or type(exc).__name__ == "DecompressionBombError":
        return ImageTooLarge(reason)  # Pillow's own bomb check, should it be on
    if isinstance(exc, pyvips.Error):
        return UnprocessableImage(f"{fmt}: {exc.message}")
    return UnprocessableImage(reason)


def from_pixels(pixels: bytes | memoryview, width: int, height: int, mode: str,
                stride: int = 0) -> pyvips.Image:
    """A libvips image over packed pixels of a Pillow/pillow-heif ``mode``."""
    if mode not in _MODES:
        raise UnsupportedFormat(f"Pixel mode {mode} is not supported")
    bands, band_format, interpretation = _MODES[mode]
    row = width * bands * (2 if band_format == "ushort" else 1)
    if stride and stride != row:  # rows padded for alignment: pack them
        view = memoryview(pixels)
        pixels = b"".join(view[y * stride:y * stride + row] for y in range(height))
    image = pyvips.Image.new_from_memory(pixels, width, height, bands, band_format)
    return image.copy(interpretation=interpretation)


def with_metadata(image: pyvips.Image, info: dict[str, Any]) -> pyvips.Image:
    """Attach the ICC profile, EXIF and XMP blobs a library read (none is applied)."""
    found = {"icc-profile-data": info.get("icc_profile"), "exif-data": info.get("exif"),
             "xmp-data": info.get("xmp")}
    blobs = {name: value.encode() if isinstance(value, str) else bytes(value)
             for name, value in found.items() if value}
    if not blobs:
        return image
    image = image.copy()
    for name, blob in blobs.items():
        if name == "exif-data" and not blob.startswith(b"Exif"):
            blob = b"Exif\x00\x00" + blob
        image.set_type(pyvips.GValue.blob_type, name, blob)
    return image


def _pillow(im: Any) -> pyvips.Image:
    """A decoded Pillow image as libvips pixels (palette and 1-bit modes expanded)."""
    if im.mode == "1":
        im = im.convert("L")
    elif im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode not in _MODES:
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    return with_metadata(from_pixels(im.tobytes(), im.width, im.height, im.mode), im.info)


# --- HEIC / HEIF ------------------------------------------------------------------------

def _open_heif(data: bytes) -> Any:
    heif = _pillow_heif().open_heif(data, convert_hdr_to_8bit=False)
    return heif[heif.primary_index]  # a multi-image file: its primary image


def _probe_heic(data: bytes) -> Declared:
    primary = _open_heif(data)
    width, height = primary.size
    return Declared(width, height, alpha=primary.has_alpha)


def _decode_heic(data: bytes) -> pyvips.Image:
    primary = _open_heif(data)
    width, height = primary.size
    image = from_pixels(primary.data, width, height, primary.mode, primary.stride)
    return with_metadata(image, primary.info)


# --- BMP --------------------------------------------------------------------------------

def _open_bmp(data: bytes) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(data), formats=["BMP"])  # reads the header only


def _probe_bmp(data: bytes) -> Declared:
    im = _open_bmp(data)
    return Declared(im.width, im.height, alpha=im.mode in ("RGBA", "LA"))


def _decode_bmp(data: bytes) -> pyvips.Image:
    im = _open_bmp(data)
    im.load()
    return _pillow(im)


# --- ICO --------------------------------------------------------------------------------

def _largest_ico_entry(data: bytes) -> tuple[Any, Declared]:
    """Pillow's ICO directory (largest entry first) and what that entry declares."""
    from PIL import IcoImagePlugin

    ico = IcoImagePlugin.IcoFile(io.BytesIO(data))  # reads the directory only
    if not ico.entry:
        raise HeaderError("ICO file has no images")
    return ico, foreign_headers.ico_entry(data, ico.entry[0].offset)


def _probe_ico(data: bytes) -> Declared:
    return _largest_ico_entry(data)[1]


def _decode_ico(data: bytes) -> pyvips.Image:
    ico, _ = _largest_ico_entry(data)
    im = ico.frame(0)
    im.load()
    return _pillow(im)


# --- JPEG XL ----------------------------------------------------------------------------

def _probe_jxl(data: bytes) -> Declared:
    declared = foreign_headers.jxl(data)
    if declared.animated:  # frames are not counted in the header: no limit could apply
        raise UnsupportedFormat("Animated JPEG XL is not supported")
    return declared


def _decode_jxl(data: bytes) -> pyvips.Image:
    import pillow_jxl

    decoder: Any = pillow_jxl.Decoder(num_threads=0)  # its bundled type stubs are stale
    is_jpeg, info, pixels, icc, boxes = decoder(data)
    if is_jpeg:  # a recompressed JPEG, reconstructed bit for bit
        return pyvips.Image.jpegload_buffer(bytes(pixels), fail_on="error").autorot()
    bands = info.num_channels + int(info.has_alpha_channel)
    depth = len(pixels) // max(1, info.width * info.height * bands)
    image = pyvips.Image.new_from_memory(
        bytes(pixels), info.width, info.height, bands,
        {1: "uchar", 2: "ushort", 4: "float"}.get(depth, "uchar"))
    if depth == 4:  # float samples (grey only): 0..1
        image = (image * 255).cast("uchar")
    grey = info.num_channels == 1
    interpretation = ("grey16" if grey else "rgb16") if depth == 2 else \
        ("b-w" if grey else "srgb")
    meta: dict[str, Any] = {"icc_profile": bytes(icc)}
    for box in boxes:
        if box.box_type == b"Exif" and len(box.data) > 4:
            meta["exif"] = bytes(box.data)[4:]  # after the TIFF header offset
        elif box.box_type == b"xml ":
            meta["xmp"] = bytes(box.data)
    return with_metadata(image.copy(interpretation=interpretation), meta)


_PROBES: dict[str, Callable[[bytes], Declared]] = {
    "heic": _probe_heic, "bmp": _probe_bmp, "ico": _probe_ico, "jxl": _probe_jxl}
_DECODERS: dict[str, Callable[[bytes], pyvips.Image]] = {
    "heic": _decode_heic, "bmp": _decode_bmp, "ico": _decode_ico, "jxl": _decode_jxl}
