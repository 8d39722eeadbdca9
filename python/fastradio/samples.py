"""Sample images for trying fastradio without any data: ``fastradio embed --samples``.

The images are drawn procedurally with integer arithmetic only (so the pixels are bit-identical on
every machine and numpy version) and written as PNG files into a cache folder on first use:

- ``$FASTRADIO_CACHE/samples-v1/`` if ``FASTRADIO_CACHE`` is set, else
  ``$XDG_CACHE_HOME/fastradio/samples-v1/`` (``~/.cache/fastradio/samples-v1/``),
- or, if that cannot be written, ``<tempdir>/fastradio-<user>/samples-v1/``.

Four images of different sizes and aspect ratios, (height x width):

====================  =========  ===========================================================
file                  size       content
====================  =========  ===========================================================
checker_224x224.png   224x224    red/green gradient under a 28 px checkerboard, white frame
shapes_320x480.png    320x480    sky and ground, a red disk, a blue box, a yellow triangle
rings_333x500.png     333x500    zone-plate rings over gradients (not a multiple of 16)
bars_384x256.png      384x256    colour bars, a diagonal stripe band, a grey ramp (portrait)
====================  =========  ===========================================================

They are for exercising the pipeline (mixed sizes, a resize, batching), not for judging the
features.
"""

from __future__ import annotations

import getpass
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from fastradio._io import atomic_path

__all__ = ["SAMPLES", "sample_arrays", "sample_images", "cache_dir"]

_VERSION = "samples-v1"
_SS = 4  # supersampling per axis for anti-aliased edges


def _grid(h: int, w: int):
    """Integer sub-pixel centre coordinates in units of 1/(2*_SS) pixel, shape (h, w, SS, SS)."""
    u = 2 * _SS
    ys = (u * np.arange(h, dtype=np.int64))[:, None, None, None] + (2 * np.arange(_SS) + 1)[None, None, :, None]
    xs = (u * np.arange(w, dtype=np.int64))[None, :, None, None] + (2 * np.arange(_SS) + 1)[None, None, None, :]
    return ys, xs, u


def _coverage(h: int, w: int, inside: Callable) -> np.ndarray:
    """Per-pixel count (0..SS²) of sub-pixel samples where ``inside(Y, X, unit)`` holds."""
    ys, xs, u = _grid(h, w)
    return np.broadcast_to(inside(ys, xs, u), (h, w, _SS, _SS)).sum(axis=(2, 3)).astype(np.int64)


def _paint(img: np.ndarray, cov: np.ndarray, rgb) -> None:
    """Blend colour ``rgb`` over ``img`` (int64, h x w x 3) with integer coverage weights."""
    n = _SS * _SS
    c = cov[..., None]
    img[...] = (img * (n - c) + np.asarray(rgb, dtype=np.int64) * c + n // 2) // n


def _checker() -> np.ndarray:
    h = w = 224
    y = np.arange(h, dtype=np.int64)[:, None]
    x = np.arange(w, dtype=np.int64)[None, :]
    img = np.zeros((h, w, 3), dtype=np.int64)
    img[..., 0] = 40 + x * 215 // (w - 1)
    img[..., 1] = 40 + y * 215 // (h - 1)
    img[..., 2] = 60 + (x + y) * 120 // (h + w - 2)
    dark = ((y // 28) + (x // 28)) % 2 == 1
    img = np.where(dark[..., None], img * 2 // 5, img)
    frame = (y < 4) | (y >= h - 4) | (x < 4) | (x >= w - 4)
    img = np.where(frame[..., None], 255, img)
    return img


def _shapes() -> np.ndarray:
    h, w = 320, 480
    y = np.arange(h, dtype=np.int64)[:, None]
    x = np.arange(w, dtype=np.int64)[None, :]
    img = np.zeros((h, w, 3), dtype=np.int64)
    img[..., 0] = 110 + y * 80 // h + 0 * x
    img[..., 1] = 170 + y * 50 // h + 0 * x
    img[..., 2] = 250 - y * 30 // h + 0 * x
    horizon = 230
    ground = _coverage(h, w, lambda Y, X, u: Y * 10 >= u * (horizon * 10) + (X - u * w // 2) // 8)
    _paint(img, ground, (70, 140, 60))
    # red disk
    cy, cx, r = 130, 120, 70
    _paint(img, _coverage(h, w, lambda Y, X, u: (Y - u * cy) ** 2 + (X - u * cx) ** 2 <= (u * r) ** 2), (220, 40, 40))
    # blue box with a white window
    _paint(img, _coverage(h, w, lambda Y, X, u: (X >= u * 250) & (X < u * 400) & (Y >= u * 60) & (Y < u * 180)),
           (40, 70, 200))
    _paint(img, _coverage(h, w, lambda Y, X, u: (X >= u * 300) & (X < u * 350) & (Y >= u * 90) & (Y < u * 140)),
           (245, 245, 245))

    # yellow triangle (x0,y0)=(300,300), (x1,y1)=(400,195), (x2,y2)=(470,300): edge functions
    def tri(Y, X, u):
        pts = [(300, 300), (400, 195), (470, 300)]
        pos = np.ones(np.broadcast(Y, X).shape, dtype=bool)
        neg = pos.copy()
        for (ax, ay), (bx, by) in zip(pts, pts[1:] + pts[:1]):
            e = (bx - ax) * (Y - u * ay) - (by - ay) * (X - u * ax)
            pos &= e >= 0
            neg &= e <= 0
        return pos | neg

    _paint(img, _coverage(h, w, tri), (240, 210, 30))
    return img


def _rings() -> np.ndarray:
    h, w = 333, 500
    cy, cx = 160, 250
    ys, xs, u = _grid(h, w)
    r2 = (ys - u * cy) ** 2 + (xs - u * cx) ** 2
    band = ((r2 // (u * u * 1200)) % 2).sum(axis=(2, 3))  # 0..SS² coverage of odd rings
    y = np.arange(h, dtype=np.int64)[:, None]
    x = np.arange(w, dtype=np.int64)[None, :]
    n = _SS * _SS
    img = np.zeros((h, w, 3), dtype=np.int64)
    img[..., 0] = (band * 230 + (n - band) * (30 + x * 100 // w) + n // 2) // n
    img[..., 1] = (band * (60 + y * 150 // h) + (n - band) * 20 + n // 2) // n
    img[..., 2] = (band * 90 + (n - band) * (200 - y * 120 // h) + n // 2) // n
    return img


def _bars() -> np.ndarray:
    h, w = 384, 256
    colors = [(235, 235, 235), (235, 235, 16), (16, 235, 235), (16, 235, 16),
              (235, 16, 235), (235, 16, 16), (16, 16, 235), (16, 16, 16)]
    x = np.arange(w, dtype=np.int64)
    img = np.zeros((h, w, 3), dtype=np.int64)
    bars = np.asarray(colors, dtype=np.int64)[x * len(colors) // w]  # (w, 3)
    img[:256] = bars[None]
    # diagonal stripes between rows 256 and 320
    _paint(img, _coverage(h, w, lambda Y, X, u: (Y >= u * 256) & (Y < u * 320) & (((X + Y) // (u * 12)) % 2 == 0)),
           (250, 250, 250))
    _paint(img, _coverage(h, w, lambda Y, X, u: (Y >= u * 256) & (Y < u * 320) & (((X + Y) // (u * 12)) % 2 == 1)),
           (30, 30, 120))
    ramp = x * 255 // (w - 1)
    img[320:] = ramp[None, :, None]
    return img


#: file name → generator; sizes are in the names as HxW.
SAMPLES: dict[str, Callable[[], np.ndarray]] = {
    "checker_224x224.png": _checker,
    "shapes_320x480.png": _shapes,
    "rings_333x500.png": _rings,
    "bars_384x256.png": _bars,
}


def sample_arrays() -> dict[str, np.ndarray]:
    """The sample images as (H, W, 3) uint8 arrays, keyed by file name (no files written)."""
    out = {}
    for name, fn in SAMPLES.items():
        a = fn()
        assert a.min() >= 0 and a.max() <= 255, name
        out[name] = np.ascontiguousarray(a.astype(np.uint8))
    return out


def cache_dir() -> Path:
    """Preferred folder for the generated samples (see the module docstring)."""
    root = os.environ.get("FASTRADIO_CACHE")
    if root:
        return Path(root).expanduser() / _VERSION
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "fastradio" / _VERSION


def _fallback_dir() -> Path:
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"fastradio-{user}" / _VERSION


def _write_all(folder: Path) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    arrays = None
    for name in SAMPLES:
        p = folder / name
        if not p.is_file():
            if arrays is None:
                arrays = sample_arrays()
            # Concurrent callers never see a half-written file.
            with atomic_path(p) as tmp, open(tmp, "xb") as f:
                Image.fromarray(arrays[name]).save(f, format="PNG")
        paths.append(p)
    return paths


def sample_images(directory: str | os.PathLike | None = None) -> list[Path]:
    """Paths of the sample PNGs, generating them on first use (deterministic content).

    ``directory``: write/read them there instead of the cache folder."""
    if directory is not None:
        return _write_all(Path(directory))
    try:
        return _write_all(cache_dir())
    except OSError:
        return _write_all(_fallback_dir())
