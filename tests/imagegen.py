"""Real images generated with libvips for tests (no binary fixtures in the repo)."""

from __future__ import annotations

import pyvips


def photo(width: int = 640, height: int = 480, seed: int = 0) -> pyvips.Image:
    """A photo-like sRGB image: gradients, a few shapes and noise."""
    xyz = pyvips.Image.xyz(width, height)
    x, y = xyz[0], xyz[1]
    r = x * (200 / width) + 30 + seed % 20
    g = y * (180 / height) + 40
    b = (x + y) * (120 / (width + height)) + 60
    image = r.bandjoin([g, b])
    radius = max(4, min(width, height) // 6)
    image = image.draw_circle([250, 40, 40], width // 3, height // 2, radius, fill=True)
    image = image.draw_rect([20, 200, 60], width * 2 // 3, height // 4, width // 6, height // 3,
                            fill=True)
    noise = pyvips.Image.gaussnoise(width, height, sigma=4, mean=0)
    image = image + noise.bandjoin([noise, noise])
    return image.cast("uchar").copy(interpretation="srgb")


def solid(width: int, height: int, rgb: tuple[int, int, int] = (200, 100, 50),
          alpha: int | None = None) -> pyvips.Image:
    image = pyvips.Image.black(width, height).new_from_image(list(rgb))
    if alpha is not None:
        image = image.bandjoin(alpha)
    return image.cast("uchar").copy(interpretation="srgb")


def jpeg(width: int = 640, height: int = 480, orientation: int | None = None, q: int = 90,
         image: pyvips.Image | None = None) -> bytes:
    image = (image if image is not None else photo(width, height)).copy()
    if orientation is not None:
        image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return image.jpegsave_buffer(Q=q, keep="exif" if orientation else "none")


def png_alpha(width: int = 400, height: int = 300) -> bytes:
    """An RGBA PNG: opaque disc on a fully transparent background."""
    xyz = pyvips.Image.xyz(width, height)
    cx, cy = xyz[0] - width / 2, xyz[1] - height / 2
    inside = (cx * cx + cy * cy) < (min(width, height) / 3) ** 2
    alpha = inside.ifthenelse(255, 0)
    return solid(width, height, (20, 120, 220)).bandjoin(alpha).cast("uchar").copy(
        interpretation="srgb").pngsave_buffer()


def animated(fmt: str = "gif", frames: int = 5, width: int = 120, height: int = 80,
             delay: int = 100) -> bytes:
    """An animation whose frame ``i`` has a dot at a different x."""
    pages = [solid(width, height, (250, 250, 250)).draw_circle(
        [200, 20, 20], 10 + i * (width - 20) // max(1, frames - 1), height // 2, 8, fill=True)
        for i in range(frames)]
    strip = pyvips.Image.arrayjoin(pages, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", height)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [delay] * frames)
    strip.set_type(pyvips.GValue.gint_type, "loop", 0)
    return strip.write_to_buffer(f".{fmt}")


def load(data: bytes, **kwargs) -> pyvips.Image:  # type: ignore[no-untyped-def]
    return pyvips.Image.new_from_buffer(data, "", **kwargs)
