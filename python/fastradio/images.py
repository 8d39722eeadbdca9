"""Image files → model input: reading, colour conversion, resizing, and resolution policies.

Used by ``fastradio embed``; usable on its own::

    from fastradio import images
    x = images.read_image("cat.jpg")                  # (3, H, W) float32 RGB in [0, 1]
    x = images.resize(x, model.get_nearest_supported_resolution(*x.shape[1:]))

Reading (Pillow): PNG, JPEG, WebP, BMP, TIFF, GIF (first frame; the same for animated WebP/PNG),
and whatever else Pillow opens when a file is named explicitly. Conversion to RGB, per mode:

- ``RGB``: as is. ``L``, ``1``, ``P`` (palette), ``CMYK``, ``YCbCr``, ...: Pillow's conversion to
  RGB (for CMYK the plain formula, no colour management: ICC profiles are ignored).
- Alpha (``RGBA``, ``LA``, ``PA``, ``P``/``L``/``RGB`` with a ``transparency`` key): composited
  over an opaque **white** background by default (``background=`` changes the colour), computed in
  float: ``rgb * a + background * (1 - a)``. White is what the Hugging Face image processors'
  ``convert_to_rgb`` uses, and what a viewer shows for transparent documents and logos; simply
  dropping alpha would expose whatever colour transparent pixels happen to store (often black).
- 16-bit grayscale (``I;16*``): scaled by 1/65535 (no 8-bit truncation). ``I`` (32-bit integer, how
  some readers return 16-bit data) is also scaled by 1/65535 and clipped. ``F`` (32-bit float) is
  taken as already in [0, 1] and clipped. 16-bit RGB PNGs are delivered by Pillow as 8-bit RGB.
- EXIF orientation is applied by default (``exif_transpose=True``), so images are embedded the
  way viewers show them; sizes reported by :func:`probe` follow the same rule.

Values: float32, ``uint8 / 255`` (so exactly what the reference pipeline feeds), in [0, 1].

Resizing (:func:`resize`): bicubic with antialiasing (torch ``interpolate``, the same filter as
Pillow's bicubic), on the float image, clamped back to [0, 1] (bicubic overshoots at edges).

Sizes are always (height, width) and printed ``HxW``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMAGE_EXTENSIONS",
    "RESOLUTION_MODES",
    "ImageInputError",
    "Background",
    "parse_background",
    "expand_inputs",
    "probe",
    "read_image",
    "pil_to_tensor",
    "resize",
    "parse_resolution",
    "target_size",
    "fmt_size",
]

#: Extensions picked up when a directory is expanded (case-insensitive). Files named explicitly
#: are opened whatever their extension.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({
    ".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".dib",
    ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm", ".pnm",
})

#: Named resolution policies; any other value is an explicit ``HxW``.
RESOLUTION_MODES: tuple[str, ...] = ("native", "nearest", "preferred")

Background = tuple[int, int, int]
WHITE: Background = (255, 255, 255)

_EXIF_ORIENTATION = 0x0112


class ImageInputError(ValueError):
    """A problem with the user's images or image options; the message is one line and names the
    file and what was expected. The CLI turns it into exit code 2."""


def fmt_size(size: Sequence[int]) -> str:
    """(h, w) → ``"HxW"``."""
    return f"{int(size[0])}x{int(size[1])}"


def parse_background(text: str) -> Background:
    """A colour name (``white``), ``#rrggbb`` or ``R,G,B`` (0-255) → (r, g, b)."""
    from PIL import ImageColor

    t = text.strip()
    parts = t.split(",")
    try:
        if len(parts) == 3:
            rgb = tuple(int(p) for p in parts)
            if not all(0 <= v <= 255 for v in rgb):
                raise ValueError
            return rgb  # type: ignore[return-value]
        c = ImageColor.getrgb(t)
        return (int(c[0]), int(c[1]), int(c[2]))
    except ValueError:
        raise ImageInputError(
            f"background: expected a colour name, #rrggbb or R,G,B with values 0-255, got {text!r}") from None


# -- finding files ---------------------------------------------------------------------------------

def _is_image_name(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


def expand_inputs(inputs: Iterable[str | os.PathLike], *, recursive: bool = False,
                  on_skip: Callable[[Path, str], None] | None = None) -> list[Path]:
    """Files and directories → the image files to embed, in a deterministic order.

    Files named explicitly are kept in the order given (whatever their extension; they are
    checked when opened). A directory contributes its files whose extension is in
    :data:`IMAGE_EXTENSIONS`, sorted by path; with ``recursive`` its subdirectories too (the whole
    tree sorted by relative path). Everything skipped (other files, subdirectories without
    ``recursive``, hidden files) is reported through ``on_skip(path, reason)``.
    Raises :class:`ImageInputError` for a path that does not exist.
    """
    skip = on_skip or (lambda p, r: None)
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            if recursive:
                entries = sorted((q for q in p.rglob("*") if q.is_file()),
                                 key=lambda q: q.relative_to(p).parts)
            else:
                entries = []
                for q in sorted(p.iterdir()):
                    if q.is_dir():
                        skip(q, "subdirectory (use --recursive to include it)")
                    elif q.is_file():
                        entries.append(q)
            for q in entries:
                rel = q.relative_to(p).parts
                if any(part.startswith(".") for part in rel):
                    skip(q, "hidden file")
                elif _is_image_name(q):
                    out.append(q)
                else:
                    skip(q, "not an image file (by extension)")
        elif p.exists():
            if not p.is_file():
                raise ImageInputError(f"{p}: not a regular file or directory")
            out.append(p)
        else:
            raise ImageInputError(f"{p}: no such file or directory")
    return out


# -- reading -----------------------------------------------------------------------------------------

def _open(path: Path):
    """Open lazily with Pillow; every failure becomes a one-line ImageInputError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except UnidentifiedImageError:
        raise ImageInputError(f"{path}: not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageInputError(f"{path}: refused, too many pixels ({e})") from None
    except OSError as e:
        raise ImageInputError(f"{path}: cannot open ({e.strerror or e})") from None


def _orientation_swaps(im) -> bool:
    try:
        return im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    except Exception:  # malformed EXIF: Pillow's exif_transpose ignores it too
        return False


def probe(path: str | os.PathLike, *, exif_transpose: bool = True) -> tuple[int, int]:
    """(height, width) of an image as :func:`read_image` will return it, reading only the
    header. Raises :class:`ImageInputError` for anything Pillow cannot open."""
    path = Path(path)
    im = _open(path)
    with im:
        w, h = im.size
        if exif_transpose and _orientation_swaps(im):
            w, h = h, w
    if w < 1 or h < 1:
        raise ImageInputError(f"{path}: empty image ({h}x{w})")
    return h, w


def _has_alpha(im) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def pil_to_tensor(im, *, background: Background = WHITE) -> torch.Tensor:
    """A Pillow image (any mode, see the module docstring) → (3, H, W) float32 RGB in [0, 1]."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(im)
        if mode == "F":
            g = np.clip(a.astype(np.float32), 0.0, 1.0)
        else:
            g = np.clip(a.astype(np.float64) / 65535.0, 0.0, 1.0).astype(np.float32)
        g = np.nan_to_num(g, nan=0.0)
        t = torch.from_numpy(np.ascontiguousarray(g))
        return t.unsqueeze(0).expand(3, -1, -1).contiguous()
    if _has_alpha(im):
        rgba = torch.from_numpy(np.asarray(im.convert("RGBA"), dtype=np.uint8).copy())
        rgba = rgba.permute(2, 0, 1).float()
        alpha = rgba[3:] / 255.0
        bg = torch.tensor(background, dtype=torch.float32).view(3, 1, 1)
        out = (rgba[:3] * alpha + bg * (1.0 - alpha)) / 255.0
        return out.clamp_(0.0, 1.0).contiguous()
    if mode != "RGB":
        try:
            im = im.convert("RGB")
        except (ValueError, OSError) as e:
            raise ImageInputError(f"cannot convert an image of mode {mode} to RGB ({e})") from None
    a = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous().float().div_(255.0)


def read_image(path: str | os.PathLike, *, background: Background = WHITE,
               exif_transpose: bool = True) -> torch.Tensor:
    """Read one image file → (3, H, W) float32 RGB in [0, 1] (first frame of animations).

    Raises :class:`ImageInputError` (one line, naming the file) when it cannot be read."""
    from PIL import ImageOps

    path = Path(path)
    im = _open(path)
    with im:
        try:
            im.seek(0)
            im.load()
            if exif_transpose:
                im2 = ImageOps.exif_transpose(im)
                if im2 is not None:
                    # exif_transpose drops "transparency" from info on some paths; keep it.
                    if "transparency" in im.info and "transparency" not in im2.info and im2.mode == im.mode:
                        im2.info["transparency"] = im.info["transparency"]
                    im = im2
            t = pil_to_tensor(im, background=background)
        except ImageInputError as e:
            raise ImageInputError(f"{path}: {e}") from None
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise ImageInputError(f"{path}: cannot decode ({e})") from None
    if t.shape[1] < 1 or t.shape[2] < 1:
        raise ImageInputError(f"{path}: empty image ({fmt_size(t.shape[1:])})")
    return t


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(3, H, W) float in [0, 1] → (3, h, w): bicubic, antialiased, clamped to [0, 1].
    Returns ``x`` itself when the size already matches."""
    h, w = int(size[0]), int(size[1])
    if tuple(x.shape[-2:]) == (h, w):
        return x
    y = F.interpolate(x.unsqueeze(0).float(), size=(h, w), mode="bicubic",
                      align_corners=False, antialias=True)[0]
    return y.clamp_(0.0, 1.0)


# -- resolution policies ------------------------------------------------------------------------------

def parse_resolution(text: str) -> str | tuple[int, int]:
    """``native`` | ``nearest`` | ``preferred`` | ``HxW`` (height x width; ``N`` means ``NxN``).

    Returns the mode name or (h, w). Raises :class:`ImageInputError` on anything else."""
    t = text.strip().lower()
    if t in RESOLUTION_MODES:
        return t
    parts = t.replace("×", "x").replace(",", "x").split("x")
    if len(parts) == 1:
        parts = parts * 2
    try:
        if len(parts) != 2:
            raise ValueError
        h, w = (int(p) for p in parts)
    except ValueError:
        raise ImageInputError(f"resolution: expected one of {', '.join(RESOLUTION_MODES)} or HxW "
                              f"(height x width, e.g. 512x768), got {text!r}") from None
    if h < 1 or w < 1:
        raise ImageInputError(f"resolution: height and width must be positive, got {text!r}")
    return h, w


def _nearest(h: int, w: int, step: int) -> tuple[int, int]:
    return tuple(max(round(s / step), 1) * step for s in (h, w))  # type: ignore[return-value]


def target_size(policy: str | tuple[int, int], size: Sequence[int], model, *, what: str = "image") -> tuple[int, int]:
    """The (h, w) an image of ``size`` is fed at under ``policy`` for ``model`` (which provides
    ``min_resolution_step``, ``get_nearest_supported_resolution`` and ``preferred_resolution``).

    ``native`` keeps the size and raises :class:`ImageInputError` when it is not a multiple of
    the step (suggesting ``--resolution nearest``); ``nearest`` rounds each side to the nearest
    multiple; ``preferred`` uses the model's preferred resolution; (h, w) is used as given and
    must itself be a multiple of the step."""
    step = int(model.min_resolution_step)
    h, w = int(size[0]), int(size[1])
    if policy == "native":
        if h % step or w % step:
            nh, nw = (int(v) for v in model.get_nearest_supported_resolution(h, w))
            raise ImageInputError(
                f"{what}: size {h}x{w} (HxW) is not a multiple of {step}, which the model needs; "
                f"use --resolution nearest to resize to {nh}x{nw}, or --resolution preferred / HxW")
        return h, w
    if policy == "nearest":
        nh, nw = model.get_nearest_supported_resolution(h, w)
        return int(nh), int(nw)
    if policy == "preferred":
        pr = model.preferred_resolution
        return int(pr[0]), int(pr[1])
    if isinstance(policy, tuple) and len(policy) == 2:
        th, tw = int(policy[0]), int(policy[1])
        if th % step or tw % step:
            nh, nw = _nearest(th, tw, step)
            raise ImageInputError(f"resolution: {th}x{tw} is not a multiple of {step}; "
                                  f"the nearest supported resolution is {nh}x{nw}")
        return th, tw
    raise ImageInputError(f"resolution: unknown policy {policy!r}")
