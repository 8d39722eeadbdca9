"""The model object on CPU: parity with an independent implementation, packing, NaN isolation,
the bad-input table (spec §9), the public surface (spec §8) and torch.compile."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import fastradio
from fastradio import synthetic

import independent_radio
from helpers import rel_l2, random_images as _images

MODELS = {
    # name → (registry name, extra writer options, heads)
    "d128": ("test-d128", {}, 2),
    "d160": ("test-d160", {}, 2),                     # head dim 80
    "d192-scaled-ln-fnorm": ("test-d192", {"scaled_ln": True, "feature_normalizer": True}, 3),
}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    out = {}
    for key, (name, opts, heads) in MODELS.items():
        folder = tmp_path_factory.mktemp(key)
        synthetic.write_checkpoint(folder, name, seed=7, **opts)
        out[key] = (folder, load_file(str(folder / "model.safetensors")), heads, opts)
    return out


# -- parity with the independent implementation ---------------------------------------------------

RESOLUTIONS = [(64, 64), (48, 96), (16, 16), (16, 256), (304, 32), (320, 320)]  # 320 > grid: up-sampled


@pytest.mark.parametrize("key", list(MODELS))
@pytest.mark.parametrize("hw", RESOLUTIONS, ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_fp32_parity_with_independent_implementation(ckpts, key, hw):
    folder, sd, heads, opts = ckpts[key]
    model = fastradio.load(folder, device="cpu", dtype=torch.float32)
    x = _images(2, *hw, seed=hw[0] * 1000 + hw[1])
    summary, feats = model(x)
    ref_summary, ref_feats = independent_radio.forward(sd, x, num_heads=heads,
                                                      scaled_ln=opts.get("scaled_ln", False))
    assert summary.shape == ref_summary.shape == (2, 3 * model.embed_dim)
    assert feats.shape == ref_feats.shape == (2, (hw[0] // 16) * (hw[1] // 16), model.embed_dim)
    assert rel_l2(summary, ref_summary) <= 1e-5
    assert rel_l2(feats, ref_feats) <= 1e-5
    # The outputs carry signal (not a constant), so the comparison above means something.
    assert feats.std() > 0.1 and summary.std() > 0.1


def test_fp32_parity_base_model(tmp_path):
    """A real-size architecture (C-RADIOv2-B widths, full 128x128 position grid)."""
    synthetic.write_checkpoint(tmp_path, "C-RADIOv2-B", seed=1)
    model = fastradio.load(tmp_path, device="cpu", dtype=torch.float32)
    sd = load_file(str(tmp_path / "model.safetensors"))
    for hw in [(32, 48), (16, 16)]:
        x = _images(1, *hw, seed=5)
        s, f = model(x)
        rs, rf = independent_radio.forward(sd, x, num_heads=12)
        assert rel_l2(s, rs) <= 1e-5 and rel_l2(f, rf) <= 1e-5


def test_parity_fails_with_wrong_position_resize(ckpts, monkeypatch):
    """The parity test can fail: align_corners=False (the classic porting bug) is caught."""
    folder, sd, heads, _ = ckpts["d128"]
    model = fastradio.load(folder, device="cpu", dtype=torch.float32, backend="reference")
    x = _images(1, 48, 96, seed=3)
    real = torch.nn.functional.interpolate

    def wrong(*a, **k):
        k["align_corners"] = False
        return real(*a, **k)

    monkeypatch.setattr(torch.nn.functional, "interpolate", wrong)
    s, _ = model(x)
    monkeypatch.setattr(torch.nn.functional, "interpolate", real)
    rs, _ = independent_radio.forward(sd, x, num_heads=heads)
    assert rel_l2(s, rs) > 1e-4


# -- packing, lists, NaN ----------------------------------------------------------------------------

def test_list_of_mixed_sizes_equals_one_at_a_time(ckpts):
    folder, *_ = ckpts["d160"]
    model = fastradio.load(folder, device="cpu", dtype=torch.float32)
    sizes = [(64, 64), (16, 48), (64, 64), (112, 32), (16, 16)]
    imgs = [_images(1, h, w, seed=i)[0] for i, (h, w) in enumerate(sizes)]
    outs = model(imgs)
    assert isinstance(outs, list) and len(outs) == len(imgs)
    for img, out in zip(imgs, outs):
        alone = model(img[None])
        assert isinstance(out, fastradio.RadioOutput)
        torch.testing.assert_close(out.summary, alone.summary, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.features, alone.features, rtol=1e-5, atol=1e-5)
    nchw = model(imgs, feature_fmt="NCHW")
    assert nchw[3].features.shape == (1, model.embed_dim, 7, 2)
    assert model([]) == []


@pytest.mark.parametrize("packed", [False, True])
def test_nan_in_one_image_stays_there(ckpts, packed):
    folder, *_ = ckpts["d128"]
    model = fastradio.load(folder, device="cpu", dtype=torch.float32)
    x = _images(3, 32, 32, seed=9)
    clean = model(x)
    x[1, 0, 5, 7] = float("nan")
    if packed:
        outs = model([x[0], x[1, :, :, :16], x[2]])  # different sizes: a packed, non-uniform batch
        assert torch.isnan(outs[1].summary).all()
        for i in (0, 2):
            assert torch.isfinite(outs[i].features).all()
            torch.testing.assert_close(outs[i].summary, clean.summary[i:i + 1], rtol=1e-5, atol=1e-5)
    else:
        s, f = model(x)
        assert torch.isnan(s[1]).all() and torch.isnan(f[1]).all()
        for i in (0, 2):
            torch.testing.assert_close(s[i], clean.summary[i], rtol=0, atol=0)
            torch.testing.assert_close(f[i], clean.features[i], rtol=0, atol=0)


def test_feature_formats(ckpts):
    folder, *_ = ckpts["d128"]
    model = fastradio.load(folder, device="cpu", dtype=torch.float32)
    x = _images(2, 48, 80, seed=2)
    nlc = model(x).features
    nchw = model(x, feature_fmt="NCHW").features
    assert nchw.shape == (2, model.embed_dim, 3, 5)
    torch.testing.assert_close(nchw.permute(0, 2, 3, 1).reshape(2, 15, -1), nlc)
    with pytest.raises(ValueError, match="feature_fmt.*'NLC' or 'NCHW'.*'NHWC'"):
        model(x, feature_fmt="NHWC")


# -- bad input (spec §9) -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(ckpts):
    return fastradio.load(ckpts["d128"][0], device="cpu", dtype=torch.float32)


@pytest.mark.parametrize("shape,match", [
    ((1, 3, 50, 64), r"multiples of 16, got 50x64; the nearest supported resolution is 48x64"),
    ((1, 3, 64, 8), r"multiples of 16, got 64x8; the nearest supported resolution is 64x16"),
    ((1, 1, 64, 64), r"expected 3 \(RGB\) channels, got 1 \(grayscale"),
    ((1, 4, 64, 64), r"expected 3 \(RGB\) channels, got 4 \(RGBA"),
    ((3, 64, 64), r"expected a 4-D tensor \(B, 3, H, W\), got shape \(3, 64, 64\); a single image"),
    ((2, 1, 3, 64, 64), r"expected a 4-D tensor"),
])
def test_bad_shapes(tiny, shape, match):
    with pytest.raises(ValueError, match=match):
        tiny(torch.rand(shape))


def test_bad_dtypes_and_values(tiny):
    with pytest.raises(TypeError, match=r"got dtype torch.uint8 \(8-bit image data: convert with x.float\(\) / 255\)"):
        tiny(torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8))
    with pytest.raises(TypeError, match="got dtype torch.int64"):
        tiny(torch.zeros(1, 3, 32, 32, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"expected RGB values in \[0, 1\], got values in \[[0-9.]+, 2[0-9.]+\] \(this looks like 0-255 data: divide by 255\)"):
        tiny(torch.rand(1, 3, 32, 32) * 255)
    with pytest.raises(TypeError, match="got ndarray"):
        tiny(torch.rand(1, 3, 32, 32).numpy())
    with pytest.raises(ValueError, match="image 1 of the list: expected 3 \\(RGB\\) channels, got 4"):
        tiny([torch.rand(3, 32, 32), torch.rand(4, 32, 32)])
    with pytest.raises(ValueError, match="image 0 of the list: height and width must be positive multiples of 16, got 20x32"):
        tiny([torch.rand(3, 20, 32)])
    with pytest.raises(ValueError, match="expected a tensor on meta"):
        with torch.device("meta"):
            m = fastradio.RadioModel(tiny.config)
        m(torch.rand(1, 3, 32, 32))
    # float64 and slight resampling overshoot are accepted
    assert tiny(torch.rand(1, 3, 32, 32, dtype=torch.float64) * 1.2 - 0.1).summary.dtype == torch.float32
    tiny.check_input_range = False
    try:
        tiny(torch.rand(1, 3, 32, 32) * 255)
    finally:
        tiny.check_input_range = True


def test_larger_than_grid_runs(tiny):
    """Inputs beyond the stored grid (here 16x16 → 256 px) up-sample the table (spec §9)."""
    s, f = tiny(_images(1, 16, 400, seed=1))
    assert f.shape == (1, 25, tiny.embed_dim) and torch.isfinite(s).all()


# -- public surface (spec §8) -------------------------------------------------------------------------

def test_properties(tiny):
    assert tiny.patch_size == 16 and tiny.min_resolution_step == 16
    assert tiny.num_summary_tokens == 8 and tiny.num_cls_tokens == 4
    assert tiny.embed_dim == 128 and tiny.summary_dim == 384
    assert tiny.window_size is None and tiny.adaptor_names == []
    assert tuple(tiny.preferred_resolution) == (tiny.preferred_resolution.height, tiny.preferred_resolution.width)
    assert tiny.get_nearest_supported_resolution(500, 333) == (496, 336)
    assert tiny.get_nearest_supported_resolution(5, 5) == (16, 16)
    assert tiny.get_nearest_supported_resolution(24, 40) == (32, 32)  # banker's rounding of 1.5, 2.5


def test_make_preprocessor_external(ckpts):
    folder, *_ = ckpts["d128"]
    model = fastradio.load(folder, device="cpu", dtype=torch.float32)
    x = _images(1, 32, 48, seed=4)
    expected = model(x)
    pre = model.make_preprocessor_external()
    got = model(pre(x))
    torch.testing.assert_close(got.summary, expected.summary)
    # normalised input lies outside [0, 1]: no range error once the preprocessor is external
    assert (pre(x) < 0).any()


def test_forward_intermediates(ckpts):
    folder, sd, heads, _ = ckpts["d192-scaled-ln-fnorm"]
    model = fastradio.load(folder, device="cpu", dtype=torch.float32)
    x = _images(2, 32, 48, seed=6)
    final, inter = model.forward_intermediates(x, indices=[0, -1], return_prefix_tokens=True)
    assert len(inter) == 2
    torch.testing.assert_close(final.summary, model(x).summary)
    assert inter[1].features.shape == (2, model.embed_dim, 2, 3)
    # the last intermediate is the last block before the feature normaliser
    torch.testing.assert_close(inter[1].summary, final.summary)
    only = model.forward_intermediates(x, indices=1, intermediates_only=True, output_fmt="NLC")
    assert len(only) == 1 and only[0].shape == (2, 6, model.embed_dim)
    dense = model.forward_intermediates(x, indices=[1, 2], aggregation="dense", intermediates_only=True)
    sparse = model.forward_intermediates(x, indices=[0, 1, 2], intermediates_only=True)
    torch.testing.assert_close(dense[0], (sparse[0] + sparse[1]) / 2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dense[1], sparse[2])
    with pytest.raises(ValueError, match="multiples of 16"):
        model.forward_intermediates(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"expected block indices in \[-3, 3\), got 5"):
        model.forward_intermediates(x, indices=[5])


def test_dtype_cast_keeps_position_table_fp32(tiny):
    m = fastradio.load(tiny.source.folder, device="cpu", dtype=torch.bfloat16)
    assert m.dtype == torch.bfloat16
    assert m.model.patch_generator.pos_embed.dtype == torch.float32
    assert m.input_conditioner.norm_mean.dtype == m.input_conditioner.norm_std.dtype == torch.float32
    torch.testing.assert_close(m.model.patch_generator.pos_embed, tiny.model.patch_generator.pos_embed, rtol=0, atol=0)
    s, f = m(_images(1, 32, 32, seed=1))
    assert s.dtype == torch.bfloat16
    ref = tiny(_images(1, 32, 32, seed=1))
    assert rel_l2(s.float(), ref.summary) < 0.05


def test_torch_compile_fullgraph(tiny):
    x = _images(2, 32, 48, seed=8)
    expected = tiny(x)
    compiled = torch.compile(tiny, fullgraph=True, backend="aot_eager")
    got = compiled(x)
    torch.testing.assert_close(got.summary, expected.summary, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.features, expected.features, rtol=1e-5, atol=1e-5)


def test_list_models():
    names = {m.name: m for m in fastradio.list_models()}
    assert set(names) == {"C-RADIOv2-B", "C-RADIOv2-L", "C-RADIOv2-H", "C-RADIOv2-g", "C-RADIOv3-B", "C-RADIOv3-L",
                          "C-RADIOv3-H", "C-RADIOv3-g", "C-RADIOv4-SO400M", "C-RADIOv4-H"}
    assert names["C-RADIOv2-g"].hub_repo == "nvidia/C-RADIOv2-g"
    assert names["C-RADIOv2-B"].params == 98_233_344
    assert names["C-RADIOv2-H"].head_dim == 80
    assert any(m.test_only for m in fastradio.list_models(include_test=True))


def test_empty_batch_gives_empty_outputs(tiny):
    s, f = tiny(torch.rand(0, 3, 32, 48))
    assert s.shape == (0, tiny.summary_dim) and f.shape == (0, 6, tiny.embed_dim)


def test_residual_stream_dtype(tiny):
    """fp16 mode keeps the residual stream in fp32 (outlier activations exceed fp16's range)."""
    assert tiny.residual_dtype == torch.float32
    with torch.device("meta"):
        m = fastradio.RadioModel(tiny.config)
    assert m.to(torch.float16).residual_dtype == torch.float32
    assert m.to(torch.bfloat16).residual_dtype == torch.bfloat16


def test_channels_last_input(tiny):
    x = _images(2, 32, 48, seed=12)
    torch.testing.assert_close(tiny(x.to(memory_format=torch.channels_last)).summary, tiny(x).summary)


def test_folded_input_normalisation_is_exact_in_fp32(ckpts):
    """The fold the fast backends run (DESIGN.md decision 15): raw pixels through W' = W / std plus
    the shift on the position table equal the spec's normalise-then-embed, to fp32 rounding."""
    from fastradio.backends import reference

    model = fastradio.load(ckpts["d128"][0], dtype=torch.float32, backend="reference")
    x = _images(2, 48, 32, seed=5)
    h, w = 48 // 16, 32 // 16
    pg = model.model.patch_generator
    wf, shift = model._folded_embedder()
    folded = reference.patch_embed(x, wf, model._pos_table(h, w, shift), pg.cls_token.token)
    plain = reference.patch_embed(model.input_conditioner(x), pg.embedder.weight, model._pos_table(h, w),
                                  pg.cls_token.token)
    assert ((folded - plain).norm() / plain.norm()).item() <= 1e-6
    # The shift is a real constant (CLIP means are ~0.45): dropping it would be far off.
    assert shift.abs().max() > 1e-2


def test_folded_weight_is_rounded_once_after_a_cast(ckpts):
    """Loaded in fp32 and cast to bf16, the folded weight comes from the fp32 weight (one rounding),
    and a change of the weight afterwards is picked up (no stale cache)."""
    model = fastradio.load(ckpts["d128"][0], dtype=torch.float32, backend="reference")
    w32 = model.model.patch_generator.embedder.weight.detach().clone()
    inv_std = (1.0 / model.input_conditioner.norm_std.float().view(3)).repeat_interleave(256)
    model = model.to(torch.bfloat16)
    wf, _ = model._folded_embedder()
    assert wf.dtype == torch.bfloat16
    assert torch.equal(wf, (w32 * inv_std).to(torch.bfloat16))
    with torch.no_grad():
        model.model.patch_generator.embedder.weight.mul_(2)
    wf2, _ = model._folded_embedder()
    assert torch.equal(wf2, (model.model.patch_generator.embedder.weight.float() * inv_std).to(torch.bfloat16))
