"""The realistic mix: 12 MP photos, srcset widths, aspect-changing fills, mixed formats.

Request ``n`` of a mix takes source ``n % 5``, operation ``n % 7`` and format
``n % len(formats)``. The counts are coprime, so every run of consecutive requests holds
each operation and each format in equal shares (within one request), whichever server
gets through more of them; 105 (or 70) requests cover every combination once.
The same request ``n`` is written in vipsgate's, thumbor's and ipx's URL grammar, each
with a no-op part that makes the URL unique (no cache can answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loadtest.common import no_metadata

# 12 MP each, landscape, portrait, 3:2, 16:9 and square; JPEG q90, 3-5 MB
MIX_SOURCES = {"mix_4x3.jpg": (4000, 3000), "mix_3x4.jpg": (3000, 4000),
               "mix_3x2.jpg": (4240, 2832), "mix_16x9.jpg": (4608, 2592),
               "mix_1x1.jpg": (3456, 3456)}


@dataclass(frozen=True)
class Operation:
    """``fit`` to a width (height 0: from the aspect ratio) or ``fill`` a box (centre crop)."""

    kind: str  # "fit" or "fill"
    width: int
    height: int


# srcset widths, then two aspect-changing fills (a square thumbnail, an Open Graph card)
OPERATIONS = (Operation("fit", 320, 0), Operation("fit", 640, 0), Operation("fit", 960, 0),
              Operation("fit", 1280, 0), Operation("fit", 1920, 0),
              Operation("fill", 800, 800), Operation("fill", 1200, 630))


@dataclass(frozen=True)
class MixRequest:
    source: str
    op: Operation
    fmt: str  # "jpeg", "webp" or "avif"


@dataclass(frozen=True)
class Mix:
    """A workload whose request ``n`` is ``request(n)``; ``path(n)`` is vipsgate's URL."""

    name: str
    title: str
    formats: tuple[str, ...]

    def request(self, n: int) -> MixRequest:
        sources = list(MIX_SOURCES)
        return MixRequest(sources[n % len(sources)], OPERATIONS[n % len(OPERATIONS)],
                          self.formats[n % len(self.formats)])

    def path(self, n: int | None = None) -> str:
        return vipsgate_path(self.request(n or 0), n)

    def cycle(self) -> int:
        """Requests until every (source, operation, format) has come once."""
        return len(MIX_SOURCES) * len(OPERATIONS) * len(self.formats)


MIXES = [
    Mix("MIX", "12 MP photos -> srcset fits + fills, WebP/JPEG/AVIF", ("webp", "jpeg", "avif")),
    Mix("MIX-NOAVIF", "the same mix without AVIF: WebP/JPEG", ("webp", "jpeg")),
]

_VIPSGATE_EXT = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}


def vipsgate_path(r: MixRequest, n: int | None) -> str:
    """``/rs:fit:640:0/q:80/cb:<n>/plain/local:///<source>@webp`` (unsigned)."""
    cb = f"/cb:{n}" if n is not None else ""
    return (f"/rs:{r.op.kind}:{r.op.width}:{r.op.height}/q:80{cb}"
            f"/plain/local:///{r.source}@{_VIPSGATE_EXT[r.fmt]}")


def thumbor_path(r: MixRequest, n: int) -> str:
    """``/unsafe/640x0/...`` (0: from the aspect ratio) or ``/unsafe/800x800/...`` (centre
    crop); ``max_age(n)`` only sets Cache-Control."""
    return (f"/unsafe/{r.op.width}x{r.op.height}/filters:format({r.fmt}):quality(80)"
            f":max_age({n})/{r.source}")


def ipx_path(r: MixRequest, n: int) -> str:
    """``/w_640&...`` (width only) or ``/s_800x800&fit_cover&...`` (sharp's centre crop);
    ``cb_<n>`` names no ipx modifier, so ipx ignores it."""
    size = (f"w_{r.op.width}" if r.op.kind == "fit"
            else f"s_{r.op.width}x{r.op.height}&fit_cover")
    return f"/{size}&f_{r.fmt}&q_80&cb_{n}/{r.source}"


def expected_size(r: MixRequest, source_size: tuple[int, int]) -> tuple[int, int]:
    """The output's dimensions: a fit keeps the aspect ratio (no enlargement)."""
    width, height = source_size
    if r.op.kind == "fill":
        return r.op.width, r.op.height
    if r.op.width >= width:
        return width, height
    return r.op.width, round(height * r.op.width / width)


def _photo(width: int, height: int, seed: int):  # type: ignore[no-untyped-def]
    """A photo-like 12 MP image: gradients in three colours, noise with detail in each
    channel (compresses to 3-5 MB at q90 like a camera JPEG); ``seed`` makes it unique."""
    import pyvips
    xyz = pyvips.Image.xyz(width, height)
    x, y = xyz[0], xyz[1]
    phase = seed * 0.7
    r = (x * (6.28 / width * 3) + phase).sin() * 60 + x * (120 / width) + 40
    g = (y * (6.28 / height * 2) + phase).cos() * 50 + y * (150 / height) + 40
    b = ((x + y) * (6.28 / (width + height) * (4 + seed))).sin() * 40 + 110
    noise = pyvips.Image.gaussnoise(width, height, sigma=10, mean=0, seed=seed).gaussblur(0.6)
    detail = pyvips.Image.gaussnoise(width, height, sigma=5, mean=0, seed=seed + 100)
    image = r.bandjoin([g, b]) + noise.bandjoin([noise + detail, noise - detail])
    return image.cast("uchar").copy(interpretation="srgb")


def photo_jpeg(width: int, height: int, seed: int) -> bytes:
    """A photo-like JPEG (``_photo``), q90 without metadata."""
    return bytes(_photo(width, height, seed).jpegsave_buffer(Q=90, **no_metadata()))


def mix_source(name: str) -> bytes:
    """The JPEG of source ``name`` (of ``MIX_SOURCES``), q90 without metadata."""
    width, height = MIX_SOURCES[name]
    return photo_jpeg(width, height, list(MIX_SOURCES).index(name) + 1)


def write_mix_sources(directory: Path) -> dict[str, int]:
    """Generate the mix's sources into ``directory``; returns name -> bytes on disk."""
    sizes: dict[str, int] = {}
    for name in MIX_SOURCES:
        data = mix_source(name)
        (directory / name).write_bytes(data)
        sizes[name] = len(data)
    return sizes
