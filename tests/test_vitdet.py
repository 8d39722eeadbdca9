"""ViTDet windowed attention (spec/c-radiov2.md §7, DESIGN.md decision 26) against the independent
implementation (tests/independent_radio.py, which cuts the grid into window batches literally):
fp32 parity on test architectures at depths that alternate windowed and global blocks (square and
non-square, several window sizes, batches, C-RADIOv4's 10 prefix tokens, layer-scale), one
real-size C-RADIOv2-B case, packed mixed-size lists, NaN isolation, forward_intermediates, the
options' errors and the Triton backend (interpreter). The emulated CUDA device has its windowed
case in tests/test_emulated_device.py."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

import fastradio
from fastradio import synthetic, vitdet
from fastradio.model import RadioModel

import independent_radio
from helpers import rel_l2, random_images as _images


_CKPTS: dict = {}


def _deep(tmp_path_factory, name: str, depth: int):
    """A synthetic checkpoint of test architecture ``name`` at ``depth`` blocks (the test
    architectures have 2-3, too few for windowed and global blocks to alternate): (cfg, raw sd)."""
    key = (name, depth)
    if key not in _CKPTS:
        base = synthetic.model_config(name)
        cfg = base.with_(arch=dataclasses.replace(base.arch, depth=depth))
        folder = synthetic.write_checkpoint(tmp_path_factory.mktemp(f"{name}-{depth}"), cfg, seed=depth)
        _CKPTS[key] = (cfg, load_file(str(folder / "model.safetensors")))
    return _CKPTS[key]


def _model(cfg, sd, ws, num_global, backend="reference"):
    m = RadioModel(cfg.with_(window_size=ws, window_num_global=num_global), backend=backend)
    m.load_state_dict(sd, strict=True)
    return m.requires_grad_(False).eval()


def _independent(cfg, sd, x, ws, num_global):
    return independent_radio.forward(sd, x, num_heads=cfg.num_heads, align_corners=cfg.align_corners,
                                     window_size=ws, num_global=num_global)


# -- the schedule -----------------------------------------------------------------------------------

def test_schedule_follows_the_spec():
    def globals_(depth, g):
        return [i for i, win in enumerate(vitdet.schedule(depth, g)) if not win]

    assert globals_(12, 4) == [2, 5, 8, 11]                    # C-RADIOv2-B: per = 3
    assert globals_(40, 8) == [4, 9, 14, 19, 24, 29, 34, 39]   # g: per = 5
    assert globals_(27, 4) == [5, 11, 17, 23, 26]              # SO400M: per = 6, last block global
    assert globals_(2, 4) == [0, 1]                            # per = max(0, 1) = 1: no window at all
    assert globals_(6, 1) == [5]
    g = synthetic.model_config("C-RADIOv2-g").with_(window_size=8)
    assert sum(not w for w in g.window_schedule) == 8          # default G = 8 for giant
    b = synthetic.model_config("C-RADIOv2-B").with_(window_size=8)
    assert sum(not w for w in b.window_schedule) == 4          # 4 otherwise
    assert synthetic.model_config("C-RADIOv2-B").window_schedule is None


# -- parity with the independent implementation ---------------------------------------------------

# (architecture, depth, G, ws, (H, W), B): windowed and global blocks alternating, several window
# sizes (1 = every patch alone), square and non-square, 10 prefix tokens (v4), layer-scale (v3).
CASES = [
    ("test-d128", 6, 2, 2, (64, 96), 2),
    ("test-d160", 5, 2, 3, (96, 48), 1),
    ("test-d144-v4", 4, 1, 2, (32, 64), 2),
    ("test-d160-v4", 4, 2, 4, (128, 64), 1),
    ("test-d128-v3", 4, 2, 1, (48, 32), 2),
    ("test-d128", 3, 3, 2, (64, 64), 1),     # per = 1: the windowed layout with global blocks only
]


@pytest.mark.parametrize("case", CASES,
                         ids=lambda c: f"{c[0]}-depth{c[1]}-G{c[2]}-ws{c[3]}-{c[4][0]}x{c[4][1]}-B{c[5]}")
def test_fp32_parity_with_independent_windows(tmp_path_factory, case):
    name, depth, g, ws, hw, b = case
    cfg, sd = _deep(tmp_path_factory, name, depth)
    model = _model(cfg, sd, ws, g)
    x = _images(b, *hw, seed=depth * 10 + ws)
    s, f = model(x)
    rs, rf = _independent(cfg, sd, x, ws, g)
    assert rel_l2(s, rs) <= 1e-5 and rel_l2(f, rf) <= 1e-5
    # Windows change the result (the comparison is not one of global attention with itself),
    # unless no block is windowed.
    gs, gf = _independent(cfg, sd, x, None, g)
    if any(cfg.with_(window_size=ws, window_num_global=g).window_schedule):
        assert rel_l2(f, gf) > 1e-3
    assert f.std() > 0.1 and s.std() > 0.1


def test_parity_fails_when_the_window_order_is_wrong(tmp_path_factory, monkeypatch):
    """The parity test can fail: windows cut from row-major order (no window-major reorder)."""
    cfg, sd = _deep(tmp_path_factory, "test-d128", 6)
    x = _images(1, 64, 64, seed=1)
    rs, _ = _independent(cfg, sd, x, 2, 2)
    monkeypatch.setattr(vitdet, "_window_major", lambda h, w, ws: torch.arange(h * w))
    s, _ = _model(cfg, sd, 2, 2)(x)
    assert rel_l2(s, rs) > 1e-4


def test_real_size_c_radio_v2_b(tmp_path):
    """C-RADIOv2-B widths and depth through fastradio.load, G = 4 by default."""
    synthetic.write_checkpoint(tmp_path, "C-RADIOv2-B", seed=2)
    model = fastradio.load(tmp_path, device="cpu", dtype=torch.float32, vitdet_window_size=2)
    assert model.window_size == 2 and model.min_resolution_step == 32
    assert model.config.window_schedule == vitdet.schedule(12, 4)
    sd = load_file(str(tmp_path / "model.safetensors"))
    x = _images(1, 64, 96, seed=4)
    s, f = model(x)
    rs, rf = independent_radio.forward(sd, x, num_heads=12, window_size=2, num_global=4)
    assert rel_l2(s, rs) <= 1e-5 and rel_l2(f, rf) <= 1e-5


# -- packing, NaN, intermediates -------------------------------------------------------------------

def test_packed_mixed_sizes_equal_one_image_calls(tmp_path_factory):
    cfg, sd = _deep(tmp_path_factory, "test-d144-v4", 4)
    model = _model(cfg, sd, 2, 2)
    sizes = [(64, 64), (32, 96), (64, 64), (128, 32), (32, 32)]
    imgs = [_images(1, h, w, seed=i)[0] for i, (h, w) in enumerate(sizes)]
    outs = model(imgs)
    for img, out in zip(imgs, outs):
        alone = model(img[None])
        torch.testing.assert_close(out.summary, alone.summary, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.features, alone.features, rtol=1e-5, atol=1e-5)
    # and each equals the independent implementation
    rs, rf = _independent(cfg, sd, imgs[3][None], 2, 2)
    assert rel_l2(outs[3].features, rf) <= 1e-5 and rel_l2(outs[3].summary, rs) <= 1e-5


@pytest.mark.parametrize("packed", [False, True])
def test_nan_in_one_image_stays_there(tmp_path_factory, packed):
    cfg, sd = _deep(tmp_path_factory, "test-d128", 6)
    model = _model(cfg, sd, 2, 2)
    x = _images(3, 64, 64, seed=9)
    clean = model(x)
    x[1, 0, 5, 7] = float("nan")
    if packed:
        outs = model([x[0], x[1, :, :, :32], x[2]])
        assert torch.isnan(outs[1].summary).all()
        for i in (0, 2):
            assert torch.isfinite(outs[i].features).all()
            torch.testing.assert_close(outs[i].features, clean.features[i:i + 1], rtol=1e-5, atol=1e-5)
    else:
        s, f = model(x)
        assert torch.isnan(s[1]).all() and torch.isnan(f[1]).all()   # global blocks spread it in its image
        for i in (0, 2):
            torch.testing.assert_close(f[i], clean.features[i], rtol=0, atol=0)


def test_forward_intermediates_in_original_order(tmp_path_factory):
    cfg, sd = _deep(tmp_path_factory, "test-d128", 6)
    model = _model(cfg, sd, 2, 2)
    x = _images(2, 64, 96, seed=5)
    final, inter = model.forward_intermediates(x, indices=[0, 1, 2, 4], output_fmt="NLC",
                                               return_prefix_tokens=True)
    want = []
    independent_radio.forward(sd, x, num_heads=cfg.num_heads, window_size=2, num_global=2, intermediates=want)
    p = cfg.num_prefix_tokens
    for out, i in zip(inter, [0, 1, 2, 4]):
        assert rel_l2(out.features, want[i][:, p:]) <= 1e-5, i
        assert rel_l2(out.summary, torch.cat([want[i][:, j] for j in range(3)], dim=-1)) <= 1e-5, i
    rs, rf = _independent(cfg, sd, x, 2, 2)
    assert rel_l2(final.features, rf) <= 1e-5
    stop = model.forward_intermediates(x, indices=[1], stop_early=True, output_fmt="NLC")[0]
    assert rel_l2(stop.features, want[1][:, p:]) <= 1e-5


def test_torch_compile_fullgraph(tmp_path_factory):
    """The mode traces (the row layout is built inside the graph, not cached there)."""
    cfg, sd = _deep(tmp_path_factory, "test-d128", 3)
    model = _model(cfg, sd, 2, 1)
    x = _images(2, 32, 64, seed=8)
    expected = model(x)
    got = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(got.features, expected.features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.summary, expected.summary, rtol=1e-5, atol=1e-5)


# -- options and errors ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return synthetic.write_checkpoint(tmp_path_factory.mktemp("tiny"), "test-d192", seed=3)


@pytest.mark.parametrize("kw, match", [
    (dict(vitdet_window_size=0), "vitdet_window_size: expected a positive integer.*got 0"),
    (dict(vitdet_window_size=-2), "got -2"),
    (dict(vitdet_window_size=2.0), "got 2.0"),
    (dict(vitdet_window_size=True), "got True"),
    (dict(vitdet_window_size=2, vitdet_num_global=0), r"vitdet_num_global: expected an integer in 1\.\.3.*got 0"),
    (dict(vitdet_window_size=2, vitdet_num_global=4), r"1\.\.3.*got 4"),
    (dict(vitdet_num_global=2), "needs vitdet_window_size"),
])
def test_bad_options(tiny_folder, kw, match):
    with pytest.raises(ValueError, match=match):
        fastradio.load(tiny_folder, device="cpu", **kw)


def test_resolution_step_and_errors(tiny_folder):
    m = fastradio.load(tiny_folder, device="cpu", vitdet_window_size=3, vitdet_num_global=1)
    assert m.window_size == 3 and m.min_resolution_step == 48
    assert m.get_nearest_supported_resolution(100, 20) == (96, 48)
    with pytest.raises(ValueError, match=r"multiples of 48, got 64x96; the nearest supported resolution is 48x96"):
        m(_images(1, 64, 96, seed=0))
    with pytest.raises(ValueError, match=r"image 1 of the list.*multiples of 48"):
        m([_images(1, 48, 48, seed=0)[0], _images(1, 32, 48, seed=0)[0]])
    off = fastradio.load(tiny_folder, device="cpu")
    assert off.window_size is None and off.min_resolution_step == 16


def test_hooks_on_blocks_are_refused_in_the_mode(tiny_folder):
    m = fastradio.load(tiny_folder, device="cpu", vitdet_window_size=2, vitdet_num_global=1)
    m.model.blocks[0].register_forward_hook(lambda *a: None)
    with pytest.raises(NotImplementedError, match="forward hooks on blocks"):
        m(_images(1, 32, 32, seed=0))


# -- fast backends -----------------------------------------------------------------------------------

def test_triton_backend_matches_reference(tmp_path_factory, monkeypatch):
    """The Triton kernels (interpreter on CPU) run windows as segments, no change to them."""
    from fastradio import backends

    if backends.refusals("triton", "attention", torch.device("cpu"), torch.float32, head_dim=64):
        pytest.skip("triton cannot run here: " + "; ".join(
            backends.refusals("triton", "attention", torch.device("cpu"), torch.float32, head_dim=64)))
    cfg, sd = _deep(tmp_path_factory, "test-d128", 3)
    tri = _model(cfg, sd, 2, 1, backend="triton")
    assert set(tri.plan.names.values()) == {"triton"}, tri.plan.names
    imgs = [_images(1, 32, 64, seed=1)[0], _images(1, 64, 32, seed=2)[0]]
    got = tri(imgs)
    for img, out in zip(imgs, got):
        rs, rf = _independent(cfg, sd, img[None], 2, 1)
        assert rel_l2(out.summary, rs) <= 1e-5 and rel_l2(out.features, rf) <= 1e-5


# -- CLI -----------------------------------------------------------------------------------------------

def test_cli_embed_with_windows(tmp_path, capsys, monkeypatch):
    """``fastradio embed --vitdet-window-size``: sizes round to multiples of 16·ws, the stored tensors
    are the windowed model's, and --resume refuses another window size."""
    import numpy as np
    from PIL import Image

    from fastradio import cli, embed, images

    monkeypatch.setenv("FASTRADIO_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    sizes = [(50, 70), (64, 64), (40, 100)]
    for i, (h, w) in enumerate(sizes):
        a = np.random.default_rng(i).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"img{i}.png")
    out = tmp_path / "out"
    argv = ["embed", str(folder), "-m", "synthetic:test-d128", "-o", str(out), "--vitdet-window-size", "2"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    data, manifest = embed.load(out)
    model = fastradio.load("synthetic:test-d128", device="cpu", vitdet_window_size=2)
    for k in range(len(sizes)):
        x = images.read_image(folder / f"img{k}.png")
        size = tuple(model.get_nearest_supported_resolution(*x.shape[1:]))
        assert size[0] % 32 == 0 and size[1] % 32 == 0 and data["model_sizes"][k] == size
        s, f = model(images.resize(x, size)[None])
        torch.testing.assert_close(data["summary"][k], s[0], rtol=1e-5, atol=1e-5)
    capsys.readouterr()
    rc = cli.main(["embed", str(folder), "-m", "synthetic:test-d128", "-o", str(out), "--resume",
                   "--vitdet-window-size", "4"])
    assert rc != 0 and "vitdet_window_size" in capsys.readouterr().err
    rc = cli.main(["embed", str(folder), "-m", "synthetic:test-d128", "-o", str(tmp_path / "o2"),
                   "--vitdet-window-size", "0"])
    assert rc != 0 and "vitdet_window_size: expected a positive integer" in capsys.readouterr().err


# -- benchmarks ----------------------------------------------------------------------------------------

def test_bench_rows_and_flop_count(tmp_path):
    """bench_model's high-resolution rows build (they run on a GPU only), and the FLOP count of a
    windowed block is over its windows: T·(GEMMs) + T²·D attention becomes N·(GEMMs) + N·ws²·D."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_model
    import model_parity

    rows = [c for c in bench_model.configs_for("default") if c.h >= 1024]
    assert {(c.h, c.window) for c in rows} == {(1024, None), (1024, 16), (2048, None), (2048, 16)}
    assert all(c.batch == 1 for c in rows) and rows == bench_model.configs_for("full")[-4:]
    assert not any(c.window for c in bench_model.configs_for("quick"))
    c = rows[1]
    assert c.key == "C-RADIOv2-L@1024x1024 b1 ws16"
    cfg_w, cfg_g = bench_model._cfg(c), bench_model._cfg(rows[0])
    n, p, d, f = 64 * 64, 8, 1024, 4096
    t = n + p
    windowed = sum(cfg_w.window_schedule)
    assert windowed == 20                                          # L: depth 24, G = 4
    gemm = 4 * d * d + 2 * d * f
    saved = windowed * (2 * p * gemm + 4 * (t * t - n * 256) * d)
    fw, fg = (model_parity.flops_per_image(cfg, 64, 64) for cfg in (cfg_w, cfg_g))
    assert fg - fw == pytest.approx(saved, rel=1e-12) and fw < 0.7 * fg
    # The row builds: the model loads with the window, base_row carries it and its FLOPs.
    folder = synthetic.write_checkpoint(tmp_path / "d128", "test-d128", seed=0)
    tiny = bench_model.Config("test-d128", 64, 64, 1, window=2)
    m = bench_model.load_model(folder, tiny, torch.device("cpu"))
    assert m.window_size == 2 and m.dtype == torch.bfloat16
    row = bench_model.base_row(tiny, m.config, 0, "float32")
    assert row["vitdet_window_size"] == 2
    assert row["flops_per_image"] == model_parity.flops_per_image(m.config, 4, 4)
    assert bench_model._key({**row, "impl": "fastradio"}) == ("test-d128", "64x64", 1, 2)
