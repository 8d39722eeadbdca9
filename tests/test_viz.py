"""Feature pictures (fastradio.viz) and ``fastradio embed --pca``: PCA → RGB on the bundled sample
images through a small random-weight model (synthetic:test-d128), joint bases, sign handling,
outlier robustness, token-norm heat maps, upscaling, error cases, and the PNGs the CLI writes.
CPU only, no network."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fastradio
from fastradio import cli, images, samples, viz
from fastradio.embed.pictures import picture_stems
from fastradio.embed.sources import Item

MODEL = "synthetic:test-d128"
PATCH = 16


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FASTRADIO_CACHE", str(tmp_path_factory.getbasetemp() / "fastradio-cache"))


@pytest.fixture(scope="module")
def sample_feats(tmp_path_factory):
    """name → (image (3, H, W) in [0, 1], features (h·w, 128) float32, h, w), the model's own
    output on each bundled sample (resized to the nearest supported size)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FASTRADIO_CACHE", str(tmp_path_factory.getbasetemp() / "fastradio-cache"))
    try:
        model = fastradio.load(MODEL, device="cpu", dtype=torch.float32, backend="reference")
        out = {}
        for p in samples.sample_images():
            x = images.read_image(p)
            size = images.target_size("nearest", tuple(x.shape[1:]), model)
            with torch.inference_mode():
                f = model(images.resize(x, size)[None]).features[0].clone()
            out[p.stem] = (x, f, size[0] // PATCH, size[1] // PATCH)
        return out
    finally:
        mp.undo()


def _png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


# -- pca_rgb ----------------------------------------------------------------------------------------

def test_pca_rgb_shapes_dtype_range_on_samples(sample_feats):
    assert len(sample_feats) == 4
    for name, (_, f, h, w) in sample_feats.items():
        assert f.shape == (h * w, 128)
        pic = viz.pca_rgb(f, h, w)
        assert pic.shape == (h, w, 3) and pic.dtype == np.uint8, name
        # the 1st-99th percentile range spans 0..255 in every channel, and the picture is not flat
        assert (pic.reshape(-1, 3).min(0) == 0).all() and (pic.reshape(-1, 3).max(0) == 255).all(), name
        assert pic.reshape(-1, 3).std(0).min() > 20, name
        # the NCHW layout of the same features gives the same picture; numpy input too
        chw = f.T.reshape(128, h, w)
        assert np.array_equal(viz.pca_rgb(chw), pic)
        assert np.array_equal(viz.pca_rgb(chw, h, w, layout="CHW"), pic)
        assert np.array_equal(viz.pca_rgb(f.reshape(h, w, 128), layout="HWC"), pic)
        assert np.array_equal(viz.pca_rgb(f.numpy(), h, w), pic)


def test_pca_rgb_is_deterministic(sample_feats):
    _, f, h, w = sample_feats["shapes_320x480"]
    a, b = viz.pca_rgb(f, h, w), viz.pca_rgb(f.clone(), h, w)
    assert _png_bytes(a) == _png_bytes(b)
    # a different storage dtype (bf16 → f32 of the same values) and a non-contiguous view: same picture
    g = f.to(torch.bfloat16)
    assert np.array_equal(viz.pca_rgb(g, h, w), viz.pca_rgb(g.float(), h, w))
    wide = torch.zeros(h * w, 256)
    wide[:, ::2] = f
    assert np.array_equal(viz.pca_rgb(wide[:, ::2], h, w), a)


def test_sign_convention_and_flip_invariance(sample_feats):
    _, f, h, w = sample_feats["rings_333x500"]
    basis = viz.fit_pca_basis([f], [(h, w)])
    assert basis.components.shape == (3, 128)
    assert torch.allclose(basis.components @ basis.components.T, torch.eye(3, dtype=torch.float64), atol=1e-9)
    for row in basis.components:   # the largest-|loading| entry of each component is positive
        assert row[row.abs().argmax()] > 0
    ref = viz.pca_rgb(f, h, w, basis=basis)
    assert np.array_equal(ref, viz.pca_rgb(f, h, w))   # fitting alone = fitting via fit_pca_basis
    for flips in ([1, -1, 1], [-1, -1, -1], [-1, 1, -1]):
        s = torch.tensor(flips, dtype=torch.float64)
        # a fully flipped basis: components and their ranges mirrored
        flipped = viz.PCABasis(basis.mean, basis.components * s[:, None],
                               torch.where(s > 0, basis.lo, -basis.hi), torch.where(s > 0, basis.hi, -basis.lo))
        assert np.array_equal(viz.pca_rgb(f, h, w, basis=flipped), ref), flips
        # a basis without ranges (each picture scales itself): the flip still does not show
        bare = viz.PCABasis(basis.mean, basis.components)
        bare_flipped = viz.PCABasis(basis.mean, basis.components * s[:, None])
        assert np.array_equal(viz.pca_rgb(f, h, w, basis=bare_flipped), viz.pca_rgb(f, h, w, basis=bare)), flips
    # not trivially equal: a real change of the basis (swapped components) changes the picture
    swapped = viz.PCABasis(basis.mean, basis.components[[1, 0, 2]], basis.lo[[1, 0, 2]], basis.hi[[1, 0, 2]])
    assert not np.array_equal(viz.pca_rgb(f, h, w, basis=swapped), ref)


def test_joint_basis_identical_images_get_identical_colours(sample_feats):
    _, a, ha, wa = sample_feats["checker_224x224"]
    _, b, hb, wb = sample_feats["bars_384x256"]
    p1, p2, p3 = viz.pca_rgb_batch([a, b, a.clone()], [(ha, wa), (hb, wb), (ha, wa)], joint=True)
    assert np.array_equal(p1, p3)
    assert p2.shape == (hb, wb, 3)
    # one basis for the set: the colours of image a depend on what else is in the set
    assert not np.array_equal(p1, viz.pca_rgb(a, ha, wa))
    # ... and a token shared by both images gets the same colour in both pictures
    b2 = b.clone()
    b2[5] = a[7]
    q1, q2 = viz.pca_rgb_batch([a, b2], [(ha, wa), (hb, wb)], joint=True)
    assert np.array_equal(q1.reshape(-1, 3)[7], q2.reshape(-1, 3)[5])
    s1, s2 = viz.pca_rgb_batch([a, b2], [(ha, wa), (hb, wb)], joint=False)   # separately: no such promise
    assert not np.array_equal(s1.reshape(-1, 3)[7], s2.reshape(-1, 3)[5])
    # a set of one image twice is the image alone (same basis and signs; the percentiles of the doubled
    # token set interpolate at other positions, so a level or two may differ)
    d1, d2 = viz.pca_rgb_batch([a, a], [(ha, wa), (ha, wa)])
    assert np.array_equal(d1, d2)
    assert np.abs(d1.astype(int) - viz.pca_rgb(a, ha, wa).astype(int)).max() <= 3


def test_one_outlier_token_does_not_wash_out_the_picture(sample_feats):
    _, f, h, w = sample_feats["shapes_320x480"]
    clean = viz.pca_rgb(f, h, w).reshape(-1, 3).astype(int)
    g = f.clone()
    k = 137
    g[k] = g[k] * 60.0   # a "register"-like token: its norm ~60x the others (trained ViTs: 10-100x)
    rest = np.arange(h * w) != k
    robust = viz.pca_rgb(g, h, w).reshape(-1, 3).astype(int)
    assert np.abs(robust[rest] - clean[rest]).mean() < 6
    assert robust[rest].std(0).min() > 20
    # without the defences (fit on every token, min..max range) the same token flattens the rest
    naive = viz.pca_rgb(g, h, w, outlier_mad=None, percentiles=(0, 100)).reshape(-1, 3).astype(int)
    assert naive[rest].std(0).min() < 10
    # the norm map shows exactly that token as the brightest patch
    nm = viz.token_norm_map(g, h, w).reshape(-1, 3).astype(int)
    lum = nm @ np.array([30, 59, 11])
    assert lum.argmax() == k and (lum[rest] < lum[k]).all()


# -- degenerate and bad inputs ------------------------------------------------------------------------

@pytest.mark.parametrize("poison", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_features_are_refused(sample_feats, poison):
    _, f, h, w = sample_feats["checker_224x224"]
    g = f.clone()
    g[31, 77] = poison
    for fn in (lambda: viz.pca_rgb(g, h, w), lambda: viz.token_norm_map(g, h, w),
               lambda: viz.fit_pca_basis([f, g], [(h, w), (h, w)])):
        with pytest.raises(ValueError, match=r"expected finite values, got 1 NaN/inf .*index \(31, 77\)"):
            fn()


def test_shape_errors_name_expected_and_got():
    f = torch.randn(12, 8)
    with pytest.raises(ValueError, match=r"expected 3x5 = 15 tokens \(h·w, C\), got \(12, 8\)"):
        viz.pca_rgb(f, 3, 5)
    with pytest.raises(ValueError, match="need the patch grid: pass h and w"):
        viz.pca_rgb(f)
    with pytest.raises(ValueError, match=r"expected one image's features \(h·w, C\), got shape \(1, 12, 8\) "
                                         r"\(one image at a time: .*out.features\[i\]"):
        viz.pca_rgb(f[None], 3, 4, layout="NLC")
    with pytest.raises(ValueError, match=r"a batch of one \(1, h·w, C\)\? pass out.features\[0\]"):
        viz.pca_rgb(f[None], 3, 4)
    with pytest.raises(ValueError, match=r"a CHW array of shape \(8, 3, 4\) has a 3x4 grid, but h, w = 4, 3"):
        viz.pca_rgb(f.T.reshape(8, 3, 4), 4, 3)
    with pytest.raises(ValueError, match="got shape"):
        viz.pca_rgb(torch.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match="layout: expected one of"):
        viz.pca_rgb(f, 3, 4, layout="NHWC")
    with pytest.raises(TypeError, match="expected a torch.Tensor or numpy array, got list"):
        viz.pca_rgb([[1.0, 2.0]], 1, 1)
    with pytest.raises(TypeError, match="expected real numbers"):
        viz.pca_rgb(torch.randn(12, 8, dtype=torch.complex64), 3, 4)
    with pytest.raises(ValueError, match="percentiles: expected 0 <= low < high <= 100"):
        viz.pca_rgb(f, 3, 4, percentiles=(99, 1))
    with pytest.raises(ValueError, match=r"basis: expected mean \(8,\) and components"):
        viz.pca_rgb(f, 3, 4, basis=viz.fit_pca_basis([torch.randn(12, 9)], [(3, 4)]))
    with pytest.raises(ValueError, match="same channel count"):
        viz.fit_pca_basis([torch.randn(12, 8), torch.randn(12, 9)], [(3, 4), (3, 4)])
    with pytest.raises(ValueError, match="empty list"):
        viz.fit_pca_basis([])


def test_few_channels_and_few_tokens():
    g = torch.Generator().manual_seed(3)
    # C = 1: one component → grey (R = G = B), still spanning the range
    p = viz.pca_rgb(torch.randn(35, 1, generator=g), 5, 7)
    assert p.shape == (5, 7, 3) and (p[..., 0] == p[..., 1]).all() and (p[..., 1] == p[..., 2]).all()
    assert p.min() == 0 and p.max() == 255
    # C = 2: two components in R and G, blue stays mid-grey
    p = viz.pca_rgb(torch.randn(35, 2, generator=g), 5, 7)
    assert (p[..., 2] == 128).all() and p[..., 0].std() > 20 and p[..., 1].std() > 20
    # one token: nothing varies → mid-grey; two tokens: one direction → grey, the two ends of the range
    assert (viz.pca_rgb(torch.randn(1, 64, generator=g), 1, 1) == 128).all()
    p = viz.pca_rgb(torch.randn(2, 64, generator=g), 1, 2)
    assert sorted(p[0, :, 0].tolist()) == [0, 255] and (p[..., 0] == p[..., 2]).all()
    # identical tokens (a blank image's features): mid-grey, and a flat norm map in the middle colour
    same = torch.randn(1, 64, generator=g).repeat(12, 1) * 7
    assert (viz.pca_rgb(same, 3, 4) == 128).all()
    assert (viz.token_norm_map(same, 3, 4) == viz.heat_colors(0.5)).all()
    # three tokens and many channels (N < C: the Gram-matrix path): two usable components at most
    p = viz.pca_rgb(torch.randn(3, 500, generator=g), 1, 3)
    assert (p[..., 2] == 128).all()


def test_gram_and_covariance_paths_agree():
    g = torch.Generator().manual_seed(11)
    x = torch.randn(40, 3, generator=g) @ torch.randn(3, 60, generator=g) * 4 + torch.randn(40, 60, generator=g) * 0.1
    # N = 40 < C = 60 takes the Gram path; padding with copies (N ≥ C) takes the covariance path
    b1 = viz.fit_pca_basis([x], [(5, 8)])
    b2 = viz.fit_pca_basis([x.repeat(2, 1)], [(10, 8)])
    assert torch.allclose(b1.components, b2.components, atol=1e-8)
    assert torch.allclose(b1.mean, b2.mean, atol=1e-12)


def test_subspace_iteration_matches_full_eigh():
    """Above 64 channels the top components come from subspace iteration: on features with a
    decaying spectrum (like a trained ViT's) they match a full eigh to ~1e-8 (far below one colour level)."""
    g = torch.Generator().manual_seed(5)
    n, c = 700, 300
    scales = 6.0 * 0.95 ** torch.arange(60.0)   # 60 directions, slowly decaying: several iterations needed
    x = torch.randn(n, 60, generator=g) * scales @ torch.linalg.qr(torch.randn(c, 60, generator=g)).Q.T
    x = (x + torch.randn(n, c, generator=g) * 0.05).double()
    basis = viz.fit_pca_basis([x], [(n // 20, 20)], outlier_mad=None)
    xc = x - x.mean(0)
    vecs = torch.linalg.eigh(xc.T @ xc)[1][:, -3:].flip(1).T
    vecs = vecs * torch.sign(vecs.gather(1, vecs.abs().argmax(1, keepdim=True)))
    assert torch.allclose(basis.components, vecs, atol=1e-6)
    # the Gram side (fewer tokens than channels) takes the same path
    few = x[:280]
    b2 = viz.fit_pca_basis([few], [(14, 20)], outlier_mad=None)
    fc = few - few.mean(0)
    ref = torch.linalg.eigh(fc.T @ fc)[1][:, -3:].flip(1).T
    ref = ref * torch.sign(ref.gather(1, ref.abs().argmax(1, keepdim=True)))
    assert torch.allclose(b2.components, ref, atol=1e-6)


# -- norm map, colours, composition ------------------------------------------------------------------

def test_heat_colors_monotone_and_token_norms(sample_feats):
    ramp = viz.heat_colors(np.linspace(0, 1, 256)).astype(int)
    lum = ramp @ np.array([30, 59, 11])
    assert ramp.shape == (256, 3) and (np.diff(lum) >= 0).all() and lum[-1] - lum[0] > 20000
    assert np.array_equal(viz.heat_colors([-3.0, 7.0]), viz.heat_colors([0.0, 1.0]))   # clamped
    _, f, h, w = sample_feats["bars_384x256"]
    n = viz.token_norms(f, h, w)
    assert n.shape == (h, w) and np.allclose(n.reshape(-1), f.double().norm(dim=1).numpy())
    m = viz.token_norm_map(f, h, w)
    assert m.shape == (h, w, 3) and m.dtype == np.uint8
    assert np.array_equal(m.reshape(-1, 3)[n.argmax()], viz.heat_colors(1.0))
    assert np.array_equal(m.reshape(-1, 3)[n.argmin()], viz.heat_colors(0.0))
    with pytest.raises(ValueError, match="vmin <= vmax"):
        viz.token_norm_map(f, h, w, vmin=5, vmax=1)


def test_upscale_and_side_by_side(sample_feats):
    x, f, h, w = sample_feats["rings_333x500"]
    pic = viz.pca_rgb(f, h, w)
    up = viz.upscale(pic, (h * 16, w * 16))
    assert up.shape == (h * 16, w * 16, 3)
    assert np.array_equal(up[::16, ::16], pic) and np.array_equal(up[15::16, 15::16], pic)   # exact blocks
    odd = viz.upscale(pic, (333, 500))
    assert odd.shape == (333, 500, 3) and set(map(tuple, odd.reshape(-1, 3))) <= set(map(tuple, pic.reshape(-1, 3)))
    smooth = viz.upscale(pic, (333, 500), mode="bilinear")
    n_colours = [len(np.unique(a.reshape(-1, 3), axis=0)) for a in (smooth, pic)]
    assert smooth.shape == (333, 500, 3) and n_colours[0] > n_colours[1]
    with pytest.raises(ValueError, match="mode must be"):
        viz.upscale(pic, (10, 10), mode="cubic")
    row = viz.side_by_side(x, pic, viz.token_norm_map(f, h, w), gap=6)
    assert row.shape == (333, 3 * 500 + 2 * 6, 3) and row.dtype == np.uint8
    assert np.array_equal(row[:, :500], viz.to_rgb_uint8(x))
    assert (row[:, 500:506] == 255).all()
    assert np.array_equal(row[:, 506:1006], odd)
    with pytest.raises(ValueError, match="at least one picture"):
        viz.side_by_side(x)
    with pytest.raises(ValueError, match=r"image: expected .* got shape \(4, 5\)"):
        viz.side_by_side(np.zeros((4, 5)), pic)


def test_picture_stems_disambiguate_same_file_names():
    items = [Item("a/cat.png", 0, None), Item("b/cat.jpg", 0, None), Item("dog.png", 0, None)]
    stems = picture_stems(items)
    assert stems["dog.png"] == "dog"
    assert stems["a/cat.png"].startswith("cat-") and stems["b/cat.jpg"].startswith("cat-")
    assert len(set(stems.values())) == 3
    assert picture_stems(list(reversed(items))) == stems   # independent of the order


# -- the command line --------------------------------------------------------------------------------

def _run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _sizes(folder: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in sorted(folder.iterdir()):
        with Image.open(p) as im:
            im.load()
            assert im.mode == "RGB"
            out[p.name] = (im.height, im.width)
    return out


SAMPLE_SIZES = {"checker_224x224": (224, 224), "shapes_320x480": (320, 480), "rings_333x500": (333, 500),
                "bars_384x256": (384, 256)}


def test_cli_pca_writes_pictures(tmp_path, capsys, sample_feats):
    pics = tmp_path / "pics"
    rc, _, se = _run(capsys, "embed", "--samples", "-m", MODEL, "--device", "cpu", "-o", tmp_path / "emb", "-j", "0",
                     "--pca", pics)
    assert rc == 0, se
    assert f"wrote 8 picture(s) of 4 image(s) to {pics}" in se
    sizes = _sizes(pics)
    assert sizes == {f"{s}_{k}.png": hw for s, hw in SAMPLE_SIZES.items() for k in ("pca", "norm")}
    # the file is the library's picture, upscaled to the image size
    _, f, h, w = sample_feats["shapes_320x480"]
    got = np.asarray(Image.open(pics / "shapes_320x480_pca.png"))
    assert np.array_equal(got, viz.upscale(viz.pca_rgb(f, h, w), (320, 480)))
    # --side-by-side --pca-joint, single-file output, NCHW features: input | picture
    pics2 = tmp_path / "pics2"
    rc, _, se = _run(capsys, "embed", "--samples", "-m", MODEL, "--device", "cpu", "-o", tmp_path / "e.safetensors",
                     "-j", "0", "-b", "2", "--feature-fmt", "NCHW", "--pca", pics2, "--pca-joint", "--side-by-side")
    assert rc == 0, se
    sizes = _sizes(pics2)
    assert sizes == {f"{s}_{k}.png": (hw[0], 2 * hw[1] + 4) for s, hw in SAMPLE_SIZES.items() for k in ("pca", "norm")}
    row = np.asarray(Image.open(pics2 / "bars_384x256_pca.png"))
    assert np.array_equal(row[:, :256], viz.to_rgb_uint8(sample_feats["bars_384x256"][0]))
    # joint per --batch 2 group, in input order: the first two sample images share one basis
    names = [Path(p).stem for p in samples.sample_images()]
    fa, fb = (sample_feats[n] for n in names[:2])
    pa, _ = viz.pca_rgb_batch([fa[1], fb[1]], [fa[2:], fb[2:]])
    row = np.asarray(Image.open(pics2 / f"{names[0]}_pca.png"))
    W = SAMPLE_SIZES[names[0]][1]
    assert np.array_equal(row[:, W + 4:], viz.upscale(pa, SAMPLE_SIZES[names[0]]))


def test_cli_pca_option_errors(tmp_path, capsys):
    base = ("embed", "--samples", "-m", MODEL, "--device", "cpu", "-o", tmp_path / "e")
    for extra, msg in ((("--pca-joint",), "--pca-joint needs --pca DIR"),
                       (("--side-by-side",), "--side-by-side needs --pca DIR"),
                       (("--pca", tmp_path / "p", "--features", "pooled"),
                        "--pca needs the patch features, but --features is pooled"),
                       (("--pca", tmp_path / "p", "--no-features"),
                        "--pca needs the patch features, but --features is none")):
        rc, _, se = _run(capsys, *base, *extra)
        assert rc == 2 and msg in se, (extra, se)
    (tmp_path / "file").write_text("x")
    rc, _, se = _run(capsys, *base, "--pca", tmp_path / "file")
    assert rc == 2 and "is a file; give a folder for the pictures" in se
    assert not (tmp_path / "e").exists()   # refused before anything ran


def test_cli_pca_with_resume_draws_only_this_runs_images(tmp_path, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    paths = samples.sample_images(src)
    extra = paths[2:]
    for p in extra:
        p.rename(tmp_path / p.name)
    out, pics = tmp_path / "emb", tmp_path / "pics"
    assert _run(capsys, "embed", src, "-m", MODEL, "--device", "cpu", "-o", out, "-j", "0", "--pca", pics)[0] == 0
    assert len(list(pics.iterdir())) == 4
    shutil.rmtree(pics)
    for p in extra:
        (tmp_path / p.name).rename(p)
    rc, _, se = _run(capsys, "embed", src, "-m", MODEL, "--device", "cpu", "-o", out, "-j", "0", "--resume",
                     "--pca", pics)
    assert rc == 0, se
    assert sorted(x.name for x in pics.iterdir()) == sorted(f"{p.stem}_{k}.png" for p in extra for k in ("pca", "norm"))


@pytest.mark.parametrize("single", [False, True], ids=["folder", "file"])
def test_cli_pca_failure_keeps_embeddings(tmp_path, capsys, monkeypatch, single):
    """A NaN in one image's features: its pictures fail (warned, exit 1 at the end), the others
    are drawn, and every image's embeddings are stored."""
    real = fastradio.load

    def load(name, **kw):
        m = real(name, **kw)
        fwd = m.forward

        def forward(x, feature_fmt="NLC"):
            out = fwd(x, feature_fmt=feature_fmt)
            if not isinstance(x, (list, tuple)) and x.shape[-2:] == (224, 224):
                out.features[0, 3, 5] = float("nan")
            return out

        m.forward = forward
        return m

    monkeypatch.setattr(fastradio, "load", load)
    pics = tmp_path / "pics"
    out = tmp_path / ("emb.safetensors" if single else "emb")
    rc, _, se = _run(capsys, "embed", "--samples", "-m", MODEL, "--device", "cpu", "-o", out, "-j", "0",
                     "-b", "1", "--pca", pics)
    assert rc == 1
    assert "warning: --pca: no pictures for" in se and "checker_224x224.png" in se and "NaN/inf" in se
    assert "--pca: no pictures for 1 image(s) (their embeddings are stored)" in se
    assert len(list(pics.iterdir())) == 6 and not list(pics.glob("checker*"))
    if single:
        tensors, meta = cli.read_embeddings(out)
        assert meta["count"] == 4 and torch.isnan(tensors["features/0"]).any()
    else:
        from fastradio import embed
        data, manifest = embed.load(out)
        assert len(data["ids"]) == 4


def test_figure_script_renders_a_grid(tmp_path):
    """benchmarks/make_pca_figure.py on the small test model (the README figure uses C-RADIOv2-B)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "make_pca_figure.py"
    spec = importlib.util.spec_from_file_location("make_pca_figure", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "fig.png"
    assert mod.main(["--model", MODEL, "--out", str(out), "--row-height", "48"]) == 0
    with Image.open(out) as im:
        fig = np.asarray(im.convert("RGB"))
    cw = round(500 * 48 / 333)   # the widest sample at 48 px high: rings_333x500
    assert fig.shape == (18 + 4 * (48 + 4), 3 * cw + 2 * 4, 3)
    # every row holds a picture in each column (not the white background)
    for r in range(4):
        y = 18 + r * 52 + 24
        for c in range(3):
            assert (fig[y, c * (cw + 4):(c + 1) * (cw + 4) - 4] != 255).any(), (r, c)
