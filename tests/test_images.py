"""Image reading, colour conversion, directory expansion, resizing, resolution policies and the
sample images (fastradio.images, fastradio.samples). CPU only, no network."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fastradio import images, samples
from fastradio.images import ImageInputError


def _rng(seed=0):
    return np.random.default_rng(seed)


def _rgb(h=20, w=30, seed=0) -> np.ndarray:
    return _rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _as_hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


def _check_tensor(t: torch.Tensor, h: int, w: int) -> None:
    assert isinstance(t, torch.Tensor)
    assert t.dtype == torch.float32
    assert tuple(t.shape) == (3, h, w)
    assert t.is_contiguous()
    assert torch.isfinite(t).all()
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


class _Model:
    """The parts of RadioModel that the resolution policies use."""

    min_resolution_step = 16
    preferred_resolution = (768, 768)

    def get_nearest_supported_resolution(self, h, w):
        return tuple(max(round(s / 16), 1) * 16 for s in (h, w))


# -- formats -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt,ext,kw", [
    ("PNG", "png", {}),
    ("BMP", "bmp", {}),
    ("TIFF", "tif", {}),
    ("TIFF", "tiff", {"compression": "tiff_lzw"}),
    ("WEBP", "webp", {"lossless": True, "quality": 100}),
    ("PPM", "ppm", {}),
])
def test_lossless_formats_are_exact(tmp_path, fmt, ext, kw):
    a = _rgb(21, 34)
    p = tmp_path / f"img.{ext}"
    Image.fromarray(a).save(p, format=fmt, **kw)
    t = images.read_image(p)
    _check_tensor(t, 21, 34)
    expected = torch.from_numpy(a).permute(2, 0, 1).float() / 255.0
    assert torch.equal(t, expected)
    assert images.probe(p) == (21, 34)


def test_jpeg_matches_pillow_decode(tmp_path):
    y, x = np.mgrid[0:40, 0:24]
    a = np.stack([y * 6, x * 10, (x + y) * 4], -1).astype(np.uint8)  # smooth: JPEG keeps it
    p = tmp_path / "img.JPG"  # upper-case extension
    Image.fromarray(a).save(p, format="JPEG", quality=90)
    t = images.read_image(p)
    _check_tensor(t, 40, 24)
    with Image.open(p) as im:
        ref = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    np.testing.assert_array_equal(_as_hwc(t), ref)
    # and it is the image we wrote, up to JPEG loss
    assert np.abs(ref * 255 - a).mean() < 4


def test_gif_first_frame(tmp_path):
    p = tmp_path / "anim.gif"
    red = Image.new("RGB", (16, 12), (255, 0, 0))
    blue = Image.new("RGB", (16, 12), (0, 0, 255))
    red.save(p, save_all=True, append_images=[blue], duration=50, loop=0)
    with Image.open(p) as im:
        assert getattr(im, "n_frames", 1) == 2
    t = images.read_image(p)
    _check_tensor(t, 12, 16)
    assert torch.allclose(t[:, 5, 5], torch.tensor([1.0, 0.0, 0.0]), atol=1 / 255)


def test_animated_webp_first_frame(tmp_path):
    p = tmp_path / "anim.webp"
    g = Image.new("RGB", (16, 16), (0, 255, 0))
    b = Image.new("RGB", (16, 16), (0, 0, 255))
    g.save(p, save_all=True, append_images=[b], lossless=True, duration=50)
    t = images.read_image(p)
    assert torch.allclose(t[:, 8, 8], torch.tensor([0.0, 1.0, 0.0]), atol=2 / 255)


# -- modes -------------------------------------------------------------------------------------------

def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((2, 3, 4), dtype=np.uint8)
    a[0, 0] = (255, 0, 0, 0)      # fully transparent red → background
    a[0, 1] = (0, 0, 255, 255)    # opaque blue
    a[0, 2] = (0, 0, 0, 128)      # half-transparent black
    a[1, :] = (10, 20, 30, 255)
    p = tmp_path / "rgba.png"
    Image.fromarray(a, "RGBA").save(p)
    t = images.read_image(p)
    _check_tensor(t, 2, 3)
    assert torch.equal(t[:, 0, 0], torch.ones(3))
    assert torch.equal(t[:, 0, 1], torch.tensor([0.0, 0.0, 1.0]))
    half = (255 * (1 - 128 / 255)) / 255
    assert torch.allclose(t[:, 0, 2], torch.full((3,), half), atol=1e-6)
    assert torch.allclose(t[:, 1, 0], torch.tensor([10, 20, 30]) / 255.0, atol=1e-6)


def test_rgba_custom_background(tmp_path):
    a = np.zeros((1, 2, 4), dtype=np.uint8)
    a[0, 0] = (255, 255, 255, 0)
    a[0, 1] = (255, 255, 255, 255)
    p = tmp_path / "rgba.webp"
    Image.fromarray(a, "RGBA").save(p, lossless=True)
    t = images.read_image(p, background=(0, 0, 0))
    assert torch.equal(t[:, 0, 0], torch.zeros(3))
    assert torch.equal(t[:, 0, 1], torch.ones(3))
    t2 = images.read_image(p, background=images.parse_background("#ff8000"))
    assert torch.allclose(t2[:, 0, 0], torch.tensor([1.0, 128 / 255, 0.0]), atol=1e-6)


def test_la_mode(tmp_path):
    a = np.array([[[100, 255], [200, 0]]], dtype=np.uint8)  # (1, 2, 2): L, A
    p = tmp_path / "la.png"
    Image.fromarray(a, "LA").save(p)
    with Image.open(p) as im:
        assert im.mode == "LA"
    t = images.read_image(p)
    _check_tensor(t, 1, 2)
    assert torch.allclose(t[:, 0, 0], torch.full((3,), 100 / 255))
    assert torch.equal(t[:, 0, 1], torch.ones(3))


def test_grayscale_l_and_1(tmp_path):
    g = _rng(1).integers(0, 256, size=(9, 7), dtype=np.uint8)
    p = tmp_path / "l.png"
    Image.fromarray(g, "L").save(p)
    t = images.read_image(p)
    _check_tensor(t, 9, 7)
    for c in range(3):
        assert torch.equal(t[c], torch.from_numpy(g).float() / 255)
    p1 = tmp_path / "bw.bmp"
    Image.fromarray(g > 127).convert("1").save(p1)
    t1 = images.read_image(p1)
    _check_tensor(t1, 9, 7)
    assert set(t1.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(t1[0], torch.from_numpy(g > 127).float())


def test_palette_and_palette_transparency(tmp_path):
    idx = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    p = tmp_path / "p.png"
    im.save(p)
    t = images.read_image(p)
    _check_tensor(t, 2, 2)
    assert torch.equal(t[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(t[:, 1, 0], torch.tensor([0.0, 0.0, 1.0]))
    # index 1 transparent (PNG tRNS and GIF)
    for name in ("pt.png", "pt.gif"):
        q = tmp_path / name
        im.save(q, transparency=1)
        with Image.open(q) as chk:
            assert chk.mode == "P" and "transparency" in chk.info
        t = images.read_image(q)
        _check_tensor(t, 2, 2)
        assert torch.equal(t[:, 0, 1], torch.ones(3)), name   # transparent → white
        assert torch.equal(t[:, 0, 0], torch.tensor([1.0, 0.0, 0.0])), name


def test_cmyk(tmp_path):
    c = np.zeros((2, 2, 4), dtype=np.uint8)
    c[0, 1] = (255, 0, 0, 0)    # cyan
    c[1, 0] = (0, 0, 0, 255)    # black
    c[1, 1] = (0, 255, 255, 0)  # red
    im = Image.fromarray(c, "CMYK")
    p = tmp_path / "cmyk.tif"
    im.save(p)
    with Image.open(p) as chk:
        assert chk.mode == "CMYK"
    t = images.read_image(p)
    _check_tensor(t, 2, 2)
    assert torch.equal(t[:, 0, 0], torch.ones(3))
    assert torch.equal(t[:, 0, 1], torch.tensor([0.0, 1.0, 1.0]))
    assert torch.equal(t[:, 1, 0], torch.zeros(3))
    assert torch.equal(t[:, 1, 1], torch.tensor([1.0, 0.0, 0.0]))
    # CMYK JPEG (Adobe marker): same as Pillow's own conversion
    big = Image.fromarray(np.repeat(np.repeat(c, 8, 0), 8, 1), "CMYK")
    pj = tmp_path / "cmyk.jpg"
    big.save(pj, quality=95)
    with Image.open(pj) as chk:
        assert chk.mode == "CMYK"
        ref = np.asarray(chk.convert("RGB"), dtype=np.float32) / 255
    tj = images.read_image(pj)
    _check_tensor(tj, 16, 16)
    np.testing.assert_array_equal(_as_hwc(tj), ref)
    assert np.allclose(ref[12, 12], [1, 0, 0], atol=0.1)


def test_16bit_grayscale_png_not_truncated(tmp_path):
    g = np.array([[0, 1, 257, 32768], [65535, 1000, 65280, 12345]], dtype=np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(g).save(p)
    with Image.open(p) as chk:
        assert chk.mode.startswith("I;16")
    t = images.read_image(p)
    _check_tensor(t, 2, 4)
    expected = torch.from_numpy(g.astype(np.float64) / 65535).float()
    for c in range(3):
        assert torch.equal(t[c], expected)
    assert 0 < float(t[0, 0, 1]) < 1 / 255  # 1/65535 survives: no 8-bit truncation, no clip to 255


def _write_png16_rgb(path: Path, a: np.ndarray) -> None:
    """Minimal 16-bit RGB PNG encoder (Pillow cannot write this mode)."""
    h, w, _ = a.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def test_16bit_rgb_png(tmp_path):
    a = _rng(2).integers(0, 65536, size=(5, 6, 3), dtype=np.uint16)
    a[0, 0] = (65535, 0, 32768)
    p = tmp_path / "rgb16.png"
    _write_png16_rgb(p, a)
    t = images.read_image(p)
    _check_tensor(t, 5, 6)
    truth = torch.from_numpy(a.astype(np.float32) / 65535).permute(2, 0, 1)
    assert (t - truth).abs().max() <= 1 / 255 + 1e-6
    assert torch.allclose(t[:, 0, 0], torch.tensor([1.0, 0.0, 0.5]), atol=1 / 255)


def test_float_and_int32_modes(tmp_path):
    f = np.array([[0.0, 0.25], [1.5, -1.0]], dtype=np.float32)
    t = images.pil_to_tensor(Image.fromarray(f, "F"))
    _check_tensor(t, 2, 2)
    assert torch.equal(t[0], torch.tensor([[0.0, 0.25], [1.0, 0.0]]))
    i = Image.fromarray(np.array([[0, 65535], [32768, 70000]], dtype=np.int32), "I")
    ti = images.pil_to_tensor(i)
    _check_tensor(ti, 2, 2)
    assert torch.allclose(ti[1], torch.tensor([[0.0, 1.0], [32768 / 65535, 1.0]]))


def test_exif_orientation(tmp_path):
    a = np.zeros((20, 40, 3), dtype=np.uint8)   # stored 20 high, 40 wide
    a[:, :20] = (255, 0, 0)                     # left half red
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6                            # display rotated 90° clockwise
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif, quality=95)
    assert images.probe(p) == (40, 20)
    t = images.read_image(p)
    _check_tensor(t, 40, 20)
    assert t[0, 5, 10] > 0.8 and t[0, 35, 10] < 0.2   # red on top after rotation
    assert images.probe(p, exif_transpose=False) == (20, 40)
    _check_tensor(images.read_image(p, exif_transpose=False), 20, 40)


# -- errors ------------------------------------------------------------------------------------------

def test_not_an_image(tmp_path):
    p = tmp_path / "fake.png"
    p.write_text("hello")
    with pytest.raises(ImageInputError, match="fake.png.*not an image"):
        images.read_image(p)
    with pytest.raises(ImageInputError, match="fake.png"):
        images.probe(p)


def test_truncated_image(tmp_path):
    p = tmp_path / "cut.png"
    Image.fromarray(_rgb(64, 64)).save(p)
    p.write_bytes(p.read_bytes()[:200])
    assert images.probe(p) == (64, 64)   # the header is intact
    with pytest.raises(ImageInputError, match="cut.png"):
        images.read_image(p)


def test_missing_file(tmp_path):
    with pytest.raises(ImageInputError, match="no such file"):
        images.expand_inputs([tmp_path / "nope.png"])
    with pytest.raises(ImageInputError, match="nope.png"):
        images.read_image(tmp_path / "nope.png")


def test_parse_background():
    assert images.parse_background("white") == (255, 255, 255)
    assert images.parse_background("0,128,255") == (0, 128, 255)
    assert images.parse_background("#102030") == (16, 32, 48)
    for bad in ("nocolour", "1,2", "0,0,300"):
        with pytest.raises(ImageInputError):
            images.parse_background(bad)


# -- directories -------------------------------------------------------------------------------------

def _tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    for rel in ("b.png", "a.JPG", "c.webp", "sub/x.png", "sub/deeper/y.gif", ".hidden.png"):
        Image.new("RGB", (16, 16)).save(root / rel, format={"png": "PNG", "jpg": "JPEG", "webp": "WEBP",
                                                           "gif": "GIF"}[rel.rsplit(".", 1)[1].lower()])
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "data.json").write_text("{}")


def test_expand_directory_flat(tmp_path):
    _tree(tmp_path)
    skipped = []
    out = images.expand_inputs([tmp_path], on_skip=lambda p, why: skipped.append((p.name, why)))
    assert [p.name for p in out] == ["a.JPG", "b.png", "c.webp"]
    names = {n for n, _ in skipped}
    assert {"notes.txt", "sub", ".hidden.png"} <= names
    assert any("--recursive" in why for n, why in skipped if n == "sub")


def test_expand_directory_recursive_sorted(tmp_path):
    _tree(tmp_path)
    skipped = []
    out = images.expand_inputs([tmp_path], recursive=True, on_skip=lambda p, why: skipped.append(p.name))
    assert [p.relative_to(tmp_path).as_posix() for p in out] == \
        ["a.JPG", "b.png", "c.webp", "sub/deeper/y.gif", "sub/x.png"]
    assert {"notes.txt", "data.json", ".hidden.png"} <= set(skipped)


def test_expand_keeps_explicit_order(tmp_path):
    _tree(tmp_path)
    out = images.expand_inputs([tmp_path / "c.webp", tmp_path / "sub", tmp_path / "a.JPG"])
    assert [p.name for p in out] == ["c.webp", "x.png", "a.JPG"]


# -- resize and resolution policies ------------------------------------------------------------------

def test_resize():
    x = torch.rand(3, 33, 50, generator=torch.Generator().manual_seed(0))
    assert images.resize(x, (33, 50)) is x
    y = images.resize(x, (32, 48))
    assert y.shape == (3, 32, 48)
    ref = F.interpolate(x[None], size=(32, 48), mode="bicubic", align_corners=False, antialias=True)[0]
    assert torch.allclose(y, ref.clamp(0, 1))
    # bicubic overshoot at hard edges is clamped back to [0, 1]
    edge = torch.zeros(3, 16, 16)
    edge[:, :, 8:] = 1
    z = images.resize(edge, (40, 40))
    assert float(z.min()) >= 0 and float(z.max()) <= 1


def test_parse_resolution():
    assert images.parse_resolution("native") == "native"
    assert images.parse_resolution("Nearest") == "nearest"
    assert images.parse_resolution("preferred") == "preferred"
    assert images.parse_resolution("512x768") == (512, 768)
    assert images.parse_resolution("512") == (512, 512)
    assert images.parse_resolution("64,32") == (64, 32)
    for bad in ("big", "0x16", "16x", "1x2x3", "-16x16"):
        with pytest.raises(ImageInputError, match="resolution"):
            images.parse_resolution(bad)


def test_target_size_policies():
    m = _Model()
    assert images.target_size("native", (224, 480), m) == (224, 480)
    with pytest.raises(ImageInputError) as e:
        images.target_size("native", (500, 333), m, what="photo.jpg")
    msg = str(e.value)
    assert "photo.jpg" in msg and "500x333" in msg and "--resolution nearest" in msg and "496x336" in msg
    assert "\n" not in msg
    assert images.target_size("nearest", (500, 333), m) == (496, 336)
    assert images.target_size("nearest", (5, 5), m) == (16, 16)
    assert images.target_size("nearest", (224, 224), m) == (224, 224)
    assert images.target_size("preferred", (500, 333), m) == (768, 768)
    assert images.target_size((64, 128), (500, 333), m) == (64, 128)
    with pytest.raises(ImageInputError, match="multiple of 16.*64x128"):
        images.target_size((65, 130), (500, 333), m)


# -- samples -----------------------------------------------------------------------------------------

def test_samples_generated_deterministically(tmp_path):
    paths = samples.sample_images(tmp_path)
    assert len(paths) >= 3
    arrays = samples.sample_arrays()
    sizes = set()
    for p in paths:
        assert p.is_file() and p.suffix == ".png"
        h, w = images.probe(p)
        sizes.add((h, w))
        assert p.stem.endswith(f"_{h}x{w}")
        with Image.open(p) as im:
            assert im.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(im), arrays[p.name])
        a = arrays[p.name].astype(np.int64)
        assert a.std() > 20, f"{p.name} has no visible structure"
        _check_tensor(images.read_image(p), h, w)
    assert len(sizes) == len(paths)
    assert any(h % 16 or w % 16 for h, w in sizes), "one sample must need resizing"
    assert len({round(w / h, 2) for h, w in sizes}) >= 3, "different aspect ratios"
    assert sum(p.stat().st_size for p in paths) < 1_000_000
    # a second generation gives identical pixels; existing files are reused, not rewritten
    for k, v in samples.sample_arrays().items():
        np.testing.assert_array_equal(v, arrays[k])
    mtimes = [p.stat().st_mtime_ns for p in paths]
    assert samples.sample_images(tmp_path) == paths
    assert [p.stat().st_mtime_ns for p in paths] == mtimes
    assert not list(tmp_path.glob(".*.tmp"))
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in paths)


def test_samples_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTRADIO_CACHE", str(tmp_path / "cache"))
    assert samples.cache_dir() == tmp_path / "cache" / "samples-v1"
    paths = samples.sample_images()
    assert all(p.parent == tmp_path / "cache" / "samples-v1" for p in paths)
    monkeypatch.delenv("FASTRADIO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert samples.cache_dir() == tmp_path / "xdg" / "fastradio" / "samples-v1"
