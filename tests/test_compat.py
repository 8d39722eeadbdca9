"""fastradio as a drop-in for code written against the reference model (fastradio.compat,
DESIGN.md decision 23): a reference user's script run unchanged except for its import and load
lines (tests/examples/from_reference.py), and one test per piece of the reference's surface. Numbers
are checked against the independent implementation (tests/independent_radio.py) or against the
model's own fused path, never just "it does not raise"."""

from __future__ import annotations

import json
import re
import runpy
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import fastradio
from fastradio import compat
from fastradio.compat import CompatibilityNote, Resolution
from fastradio.model import FeatureNormalizer, RadioOutput

import independent_radio
from helpers import P, make_checkpoint, read_tensors
from helpers import rel_l2

EXAMPLE = Path(__file__).resolve().parent / "examples" / "from_reference.py"


def _images(b, h, w, seed):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _oracle(folder: Path, x: torch.Tensor, *, blocks: int | None = None, normalise: bool = True):
    """The independent implementation on the checkpoint's tensors: (summary, features) after the
    last block, or with ``blocks`` after block blocks-1 (it reads its depth from the keys);
    ``normalise=False`` leaves out the feature normaliser. The position resize is the one the
    folder's bundled file states; heads come from the registry (shapes cannot show them)."""
    sd = read_tensors(folder)
    if blocks is not None:
        sd = {k: v for k, v in sd.items() if not k.startswith(P + "model.blocks.") or int(k.split(".")[3]) < blocks}
    if not normalise:
        sd = {k: v for k, v in sd.items() if not k.startswith(P + "feature_normalizer.")}
    arch = json.loads((folder / "config.json").read_text())["args"]["model"]
    heads = next(m.num_heads for m in fastradio.list_models(include_test=True) if m.arch == arch)
    ac = re.search(r"align_corners=(True|False)", (folder / "vit_patch_generator.py").read_text()).group(1) == "True"
    return independent_radio.forward(sd, x, num_heads=heads, align_corners=ac)


@pytest.fixture(scope="module")
def d192(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("d192"), "test-d192", seed=5)


@pytest.fixture(scope="module")
def d192_fnorm(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("d192f"), "test-d192", seed=6, feature_normalizer=True)


@pytest.fixture(scope="module")
def v4(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("v4"), "test-d144-v4", seed=3)


@pytest.fixture(scope="module")
def v3(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("v3"), "test-d128-v3", seed=4)


@pytest.fixture
def model(d192):
    return fastradio.load(d192, device="cpu", dtype=torch.float32, backend="reference")


@pytest.fixture
def fresh_notes(monkeypatch):
    monkeypatch.setattr(compat, "_NOTED", set())


def _aot_eager_compile(monkeypatch):
    """torch.compile as written (fullgraph=True, default backend) but on aot_eager: the same
    Dynamo capture and graph, without Inductor's C++ build (~50 s on a small CPU)."""
    real = torch.compile

    def compile_(model=None, **kw):
        kw.setdefault("backend", "aot_eager")
        return real(model, **kw) if model is not None else real(**kw)

    monkeypatch.setattr(torch, "compile", compile_)
    torch._dynamo.reset()


# -- the acceptance test: a reference user's script ---------------------------------------------------

def test_reference_script_runs_with_only_the_load_lines_changed(tmp_path, monkeypatch, fresh_notes):
    """tests/examples/from_reference.py, run as a script (``__main__``): its numbers match the
    independent implementation (final, the block-1 hook, intermediates), compiled matches eager,
    and only its import and load lines differ from reference code."""
    monkeypatch.setenv("FASTRADIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "synthetic:test-d192@2"])
    _aot_eager_compile(monkeypatch)
    with pytest.warns(CompatibilityNote, match="trust_remote_code=True is ignored"):
        r = runpy.run_path(str(EXAMPLE), run_name="__main__")["r"]
    folder = r["model"].source.folder
    x = r["x"]
    summary, features = _oracle(folder, x)
    assert r["summary"].shape == summary.shape and r["features"].shape == features.shape
    assert rel_l2(r["summary"], summary) <= 1e-5 and rel_l2(r["features"], features) <= 1e-5
    _, block1 = _oracle(folder, x, blocks=2)
    assert rel_l2(r["block1_patches"], block1) <= 1e-5
    assert torch.equal(r["inter"][0].features, r["block1_patches"])         # NLC, as asked
    assert torch.equal(r["final"].features, r["features"])                  # final follows output_fmt
    b, n, d = features.shape
    assert torch.equal(r["spatial"][0], r["block1_patches"].reshape(b, 4, 4, d).permute(0, 3, 1, 2))
    torch.testing.assert_close(r["summary_compiled"], r["summary"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r["features_compiled"], r["features"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(r["features_np"], r["features"].numpy())
    assert (r["num_skip"], r["patch_size"], r["embed_dim"]) == (8, 16, 192)
    # Only the two marked lines name fastradio.
    code = [ln for ln in EXAMPLE.read_text().splitlines() if "fastradio" in ln and not ln.lstrip().startswith(("#", '"'))]
    assert all("# reference:" in ln for ln in code if "import fastradio" in ln)
    assert sum("fastradio." in ln for ln in code) == 1, code


# -- load(): torch_dtype, trust_remote_code, dtype="reference"/"auto", from_pretrained ----------------

def test_torch_dtype_is_dtype(d192):
    x = _images(1, 32, 48, seed=1)
    a = fastradio.load(d192, device="cpu", torch_dtype=torch.bfloat16)
    b = fastradio.load(d192, device="cpu", dtype=torch.bfloat16)
    c = fastradio.load(d192, device="cpu", dtype="bfloat16", torch_dtype=torch.bfloat16)  # agreeing: fine
    assert a.dtype == b.dtype == c.dtype == torch.bfloat16
    assert torch.equal(a(x).features, b(x).features) and torch.equal(a(x).summary, c(x).summary)
    assert a.dtype_source == "torch_dtype=torch.bfloat16"
    with pytest.raises(ValueError, match=r"dtype=torch.float32 and torch_dtype=torch.bfloat16 disagree: give one"):
        fastradio.load(d192, device="cpu", dtype=torch.float32, torch_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"torch_dtype: expected a torch dtype .* got 'float64'"):
        fastradio.load(d192, device="cpu", torch_dtype="float64")
    with pytest.raises(TypeError, match=r"dtype: expected torch.float32, torch.float16 or torch.bfloat16 .*torch.float64"):
        fastradio.load(d192, device="cpu", dtype=torch.float64)


def test_dtype_reference_is_fp32_whatever_the_default(d192, monkeypatch):
    """On a GPU the default is bf16/fp16; dtype="reference" is fp32 there too (the default is
    simulated: this suite runs on CPU)."""
    from fastradio import api

    monkeypatch.setattr(api, "default_dtype", lambda device: torch.bfloat16)
    assert fastradio.load(d192, device="cpu").dtype == torch.bfloat16
    m = fastradio.load(d192, device="cpu", dtype="reference")
    assert m.dtype == torch.float32 and "reference" in m.dtype_source and "float32" in m.dtype_source
    x = _images(2, 32, 32, seed=2)
    summary, features = _oracle(d192, x)
    assert rel_l2(m(x).summary, summary) <= 1e-5 and rel_l2(m(x).features, features) <= 1e-5
    assert fastradio.load(d192, device="cpu", torch_dtype="reference").dtype == torch.float32


def test_dtype_auto_is_the_stored_dtype(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d128", dtype=torch.float16)
    m = fastradio.load(folder, device="cpu", torch_dtype="auto")
    assert m.dtype == torch.float16 and "stores (float16)" in m.dtype_source
    assert fastradio.load(folder, device="cpu").dtype == torch.float32       # our default, not the stored one


def test_trust_remote_code_is_accepted_ignored_and_said_once(d192, fresh_notes):
    with pytest.warns(CompatibilityNote, match="no code from the model repository is executed") as rec:
        fastradio.load(d192, device="cpu", trust_remote_code=True)
    assert len(rec) == 1 and rec[0].filename == __file__                    # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastradio.load(d192, device="cpu", trust_remote_code=True)            # once per process
        fastradio.load(d192, device="cpu", trust_remote_code=False)
    with pytest.raises(TypeError, match="trust_remote_code: expected True, False or None, got str 'yes'"):
        fastradio.load(d192, device="cpu", trust_remote_code="yes")


def test_from_pretrained_is_load(d192, fresh_notes):
    x = _images(2, 32, 32, seed=3)
    with pytest.warns(CompatibilityNote):
        a = fastradio.RadioModel.from_pretrained(str(d192), trust_remote_code=True, torch_dtype=torch.float32)
    b = fastradio.load(d192, device="cpu")
    assert isinstance(a, fastradio.RadioModel) and a.dtype == torch.float32
    assert torch.equal(a(x).summary, b(x).summary) and torch.equal(a(x).features, b(x).features)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) device_map; .* write device='cuda'"):
        fastradio.RadioModel.from_pretrained(str(d192), device_map="cuda")


# -- outputs --------------------------------------------------------------------------------------------

def test_radio_output_to_and_float(d192):
    m = fastradio.load(d192, device="cpu", dtype=torch.bfloat16)
    x = _images(2, 32, 32, seed=4)
    out = m(x)
    with pytest.raises(TypeError):          # what reference users hit with bf16 outputs
        out.features.numpy()
    f = out.float()
    assert isinstance(f, RadioOutput) and f.summary.dtype == f.features.dtype == torch.float32
    assert torch.equal(f.features, out.features.float()) and torch.equal(f.summary, out.summary.float())
    g = out.to("cpu", torch.float64, non_blocking=False)
    assert isinstance(g, RadioOutput) and g.features.dtype == torch.float64
    assert torch.equal(g.summary, out.summary.double())
    summary, features = out.to(torch.float32)                                   # still unpacks
    np.testing.assert_array_equal(features.numpy(), f.features.numpy())
    assert [o.features.dtype for o in (r.float() for r in m([x[0], x[1, :, :16]]))] == [torch.float32] * 2


# -- the reference's attributes ---------------------------------------------------------------------------

def test_reference_attributes(model, d192):
    assert model.radio_model is model
    assert model.blocks is model.model.blocks and len(model.blocks) == 3
    assert model.model.embed_dim == 192 and model.model.num_cls_tokens == 4
    pg = model.model.patch_generator
    assert (pg.patch_size, pg.num_skip, pg.num_cls_tokens, pg.num_registers) == (16, 8, 4, 4)
    assert isinstance(model.adaptors, torch.nn.ModuleDict) and len(model.adaptors) == 0
    assert isinstance(model.feature_normalizer, torch.nn.Identity)
    assert model.inter_feature_normalizer is None
    # state_dict names unchanged: exactly the checkpoint's names without the prefix
    assert set(model.state_dict()) == {k[len(P):] for k in read_tensors(d192)}
    x = _images(1, 32, 32, seed=5)
    before = model(x)
    assert model.switch_to_deploy() is None
    after = model(x)
    assert torch.equal(before.features, after.features)
    # model.radio_model.forward_intermediates is the model's
    final, _ = model.radio_model.forward_intermediates(x, indices=[0])
    assert torch.equal(final.summary, before.summary)


def test_reference_attributes_follow_the_family(v4, d192_fnorm):
    m = fastradio.load(v4, device="cpu")
    pg = m.model.patch_generator
    assert (pg.num_skip, pg.num_cls_tokens, m.model.num_cls_tokens, m.model.embed_dim) == (10, 3, 3, 144)
    x = _images(1, 32, 48, seed=6)
    assert torch.equal(m(x).features, m.forward_intermediates(x, indices=[-1], output_fmt="NLC")[1][0])
    f = fastradio.load(d192_fnorm, device="cpu")
    assert isinstance(f.feature_normalizer, FeatureNormalizer)


def test_preferred_resolution_equals_the_reference_list(model):
    r = model.preferred_resolution
    assert isinstance(r, Resolution) and isinstance(r, tuple)
    assert r == [64, 64] and [64, 64] == r and r == (64, 64) and r == Resolution(64, 64)
    assert r != [64, 48] and r != [64, 64, 1] and r != (64,) and not (r != [64, 64]) and r != "64x64"
    assert hash(r) == hash((64, 64)) and {(64, 64): "a"}[r] == "a" and {r: "b"}[(64, 64)] == "b"
    assert model.config.preferred_resolution == [64, 64] and isinstance(model.config.preferred_resolution, Resolution)
    assert Resolution(512, 768) < Resolution(768, 512) and (r.height, r.width) == (64, 64)
    from fastradio.configs import resolve_known_model

    assert resolve_known_model("C-RADIOv2-B").config.preferred_resolution == [768, 768]
    assert resolve_known_model("C-RADIOv4-H").config.preferred_resolution == [512, 512]


def test_config_to_dict_and_args(model, d192):
    on_disk = json.loads((d192 / "config.json").read_text())
    d = model.config.to_dict()
    assert d == on_disk and model.config.args == on_disk["args"]
    assert model.config.args["model"] == "fastradio_test_d192_patch16" and model.config.version == on_disk["version"]
    d["args"]["model"] = "changed"                                   # a copy: the model's config is untouched
    assert model.config.args["model"] == "fastradio_test_d192_patch16"
    # A registry config (not read from a file) gives the config.json a synthetic checkpoint carries,
    # which parses back to the same config.
    from fastradio import checkpoint
    from fastradio.configs import resolve_known_model

    cfg = resolve_known_model("C-RADIOv4-SO400M").config
    back = checkpoint.parse_config(cfg.to_dict())
    assert back.with_(summary_idxs=cfg.summary_idxs, align_corners=cfg.align_corners,
                      align_corners_source=cfg.align_corners_source) == cfg
    assert cfg.args["model"] == "vit_so400m_patch16_224"


# -- forward_intermediates ---------------------------------------------------------------------------------

def test_forward_intermediates_final_follows_output_fmt(d192_fnorm):
    m = fastradio.load(d192_fnorm, device="cpu")
    x = _images(2, 32, 48, seed=7)
    nchw = m(x, feature_fmt="NCHW")
    final, inter = m.forward_intermediates(x, indices=[-1])
    assert final.features.shape == (2, 192, 2, 3)                                  # NCHW by default
    assert torch.equal(final.features, nchw.features) and torch.equal(final.summary, nchw.summary)
    final, inter = m.forward_intermediates(x, indices=[-1], output_fmt="NLC")
    summary, features = _oracle(d192_fnorm, x)                                     # normalised
    assert rel_l2(final.features, features) <= 1e-5 and rel_l2(final.summary, summary) <= 1e-5
    # the intermediate of the same block is not normalised (decision 7)
    _, raw = _oracle(d192_fnorm, x, normalise=False)
    assert rel_l2(inter[0], raw) <= 1e-5 and rel_l2(inter[0], features) > 1e-2


def test_stop_early_final_is_the_last_selected_block(model, d192):
    x = _images(2, 32, 32, seed=8)
    calls = []
    model.model.blocks[2].register_forward_hook(lambda *a: calls.append(2))
    final, inter = model.forward_intermediates(x, indices=[0, 1], stop_early=True, output_fmt="NLC")
    assert calls == []                                                              # block 2 never ran
    summary, features = _oracle(d192, x, blocks=2)
    assert rel_l2(final.features, features) <= 1e-5 and rel_l2(final.summary, summary) <= 1e-5
    assert torch.equal(inter[1], final.features)
    final, _ = model.forward_intermediates(x, indices=[0, 1], output_fmt="NLC")      # without: every block
    assert calls == [2] and rel_l2(final.features, _oracle(d192, x)[1]) <= 1e-5
    only = model.forward_intermediates(x, indices=[0], stop_early=True, intermediates_only=True)
    assert calls == [2] and only[0].shape == (2, 192, 2, 2)


def test_norm_alpha_scheme(model):
    x = _images(1, 32, 32, seed=9)
    outs = [model.forward_intermediates(x, indices=[0], norm_alpha_scheme=s, intermediates_only=True)[0]
            for s in ("post-alpha", "pre-alpha", "none")]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    with pytest.raises(ValueError, match="norm_alpha_scheme: expected 'post-alpha', 'pre-alpha' or 'none', got 'post'"):
        model.forward_intermediates(x, norm_alpha_scheme="post")


# -- state dicts -----------------------------------------------------------------------------------------

def test_load_state_dict_takes_hub_and_our_names(d192, tmp_path):
    src = fastradio.load(d192, device="cpu")
    other = fastradio.load(make_checkpoint(tmp_path, "test-d192", seed=11), device="cpu")
    x = _images(2, 32, 32, seed=10)
    want = src(x)
    assert not torch.allclose(other(x).summary, want.summary)
    hub = src.state_dict(prefix="radio_model.")
    assert set(hub) == set(read_tensors(d192))                        # the Hub's names, as saved there
    other.load_state_dict(hub)
    assert torch.equal(other(x).summary, want.summary) and torch.equal(other(x).features, want.features)
    other.load_state_dict({k: v * 0.5 if v.is_floating_point() else v for k, v in src.state_dict().items()})
    assert not torch.allclose(other(x).summary, want.summary)          # our names work too (and did load)
    other.load_state_dict(read_tensors(d192))                          # the Hub file's dict itself
    assert torch.equal(other(x).features, want.features)


def test_load_state_dict_errors_name_the_keys(model):
    sd = model.state_dict(prefix="radio_model.")
    mixed = dict(sd)
    mixed["model.blocks.0.norm1.weight"] = mixed.pop("radio_model.model.blocks.0.norm1.weight")
    with pytest.raises(KeyError, match=r"every key with the Hub's 'radio_model.' prefix or none, got a mix: .* "
                                       r"without \(e.g. 'model.blocks.0.norm1.weight'\)"):
        model.load_state_dict(mixed)
    del sd["radio_model.model.blocks.1.mlp.fc2.bias"]
    sd["radio_model.model.norm.weight"] = torch.ones(192)
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in state_dict: \"model.blocks.1.mlp.fc2.bias\"") as e:
        model.load_state_dict(sd)
    assert 'Unexpected key(s) in state_dict: "model.norm.weight"' in str(e.value)
    res = model.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["model.blocks.1.mlp.fc2.bias"] and res.unexpected_keys == ["model.norm.weight"]


@pytest.mark.parametrize("prefix", ["", "radio_model."], ids=["our-names", "hub-names"])
def test_half_state_dict_saved_with_safetensors_loads_back(v3, tmp_path, prefix):
    """A .half() model's state_dict (fp16 weights, the fp32 position table and conditioner kept)
    saved with safetensors.torch.save_file next to the config.json loads through fastradio.load."""
    half = fastradio.load(v3, device="cpu").half()
    sd = half.state_dict(prefix=prefix)
    assert sd[prefix + "model.patch_generator.pos_embed"].dtype == torch.float32
    assert sd[prefix + "model.blocks.0.ls1.grandma"].dtype == torch.float16
    folder = tmp_path / "saved"
    folder.mkdir()
    save_file(sd, str(folder / "model.safetensors"))
    shutil.copy(v3 / "config.json", folder)
    shutil.copy(v3 / "vit_patch_generator.py", folder)        # says its position resize (align_corners)
    back = fastradio.load(folder, device="cpu", dtype=torch.float16)
    x = _images(2, 32, 48, seed=12)
    assert torch.equal(back(x).features, half(x).features) and torch.equal(back(x).summary, half(x).summary)
    assert fastradio.load(folder, device="cpu", dtype="auto").dtype == torch.float16
    full = fastradio.load(folder, device="cpu")                        # fp32 from the fp16 file
    assert rel_l2(full(x).features, _oracle(v3, x)[1]) < 5e-3


# -- forward hooks ----------------------------------------------------------------------------------------

def test_block_hooks_fire_with_the_reference_tensors(model, d192):
    x = _images(2, 32, 48, seed=13)
    plain = model(x)
    seen = {}
    handles = [model.model.blocks[i].register_forward_hook(lambda m, inp, out, i=i: seen.update({i: (inp[0].clone(), out)}))
               for i in (0, 1)]
    pre = model.model.blocks[2].register_forward_pre_hook(lambda m, inp: seen.update(pre=inp[0].clone()))
    hooked = model(x)
    assert torch.equal(hooked.features, plain.features) and torch.equal(hooked.summary, plain.summary)
    for i in (0, 1):
        inp, out = seen[i]
        assert out.shape == inp.shape == (2, 8 + 6, 192)
        assert rel_l2(out[:, 8:], _oracle(d192, x, blocks=i + 1)[1]) <= 1e-5
    assert torch.equal(seen["pre"], seen[1][1])                 # block 2's input is block 1's output
    assert torch.equal(seen[1][0], seen[0][1])
    for h in (*handles, pre):
        h.remove()
    seen.clear()
    model(x)
    assert seen == {}


def test_hooks_can_replace_inputs_and_outputs(model):
    x = _images(2, 32, 32, seed=14)
    last = model.model.blocks[2]
    h = last.register_forward_hook(lambda m, inp, out: torch.zeros_like(out))
    out = model(x)
    assert not out.features.any() and not out.summary.any()
    h.remove()
    # a pre-hook that feeds block 1 zeros: the final output is blocks 1-2 run on zeros, which
    # calling the blocks themselves gives too
    h = model.model.blocks[1].register_forward_pre_hook(lambda m, inp: (torch.zeros_like(inp[0]),))
    out = model(x)
    h.remove()
    y = model.model.blocks[2](model.model.blocks[1](torch.zeros(2, 12, 192)))
    torch.testing.assert_close(out.features, y[:, 8:], rtol=1e-6, atol=1e-6)
    h = last.register_forward_hook(lambda m, inp, out: out[:, :3])
    with pytest.raises(ValueError, match=r"a forward hook on block 2 returned \(2, 3, 192\); expected .*\(2, 12, 192\)"):
        model(x)
    h.remove()


def test_hooks_on_packed_lists_and_global_hooks(model):
    imgs = [_images(1, 32, 48, seed=15)[0], _images(1, 16, 32, seed=16)[0]]
    plain = model(imgs)
    seen = []
    h = model.model.blocks[0].register_forward_hook(lambda m, inp, out: seen.append((len(inp), out.shape)))
    outs = model(imgs)
    h.remove()
    assert seen == [(1, torch.Size([1, (8 + 6) + (8 + 2), 192]))]      # args == (x,); packed: (1, N, D)
    assert all(torch.equal(a.features, b.features) for a, b in zip(outs, plain))
    # a pre-hook replacing the tokens keeps the packing: the images stay apart
    h = model.model.blocks[1].register_forward_pre_hook(lambda m, inp: (inp[0] * 1.0,))
    outs = model(imgs)
    h.remove()
    assert all(torch.equal(a.features, b.features) for a, b in zip(outs, plain))
    from torch.nn.modules.module import register_module_forward_hook

    names = []
    g = register_module_forward_hook(lambda m, inp, out: names.append(type(m).__name__))
    try:
        out = model(imgs[0][None])
    finally:
        g.remove()
    assert names.count("Block") == 3 and "RadioModel" in names and "InputConditioner" in names
    assert torch.equal(out.features, plain[0].features)


def test_hooks_on_modules_the_forward_never_calls_are_refused(model):
    blk = model.model.blocks[0]
    for mod in (blk.attn, blk.attn.qkv, blk.mlp.fc1, blk.norm1, model.model, model.model.patch_generator,
                model.model.patch_generator.embedder):
        with pytest.raises(RuntimeError, match=r"would never fire: .* Hooks on a block do fire: "
                                               r"model.model.blocks\[i\].register_forward_hook"):
            mod.register_forward_hook(lambda *a: None)
        with pytest.raises(RuntimeError, match="register_forward_pre_hook .* would never fire"):
            mod.register_forward_pre_hook(lambda *a: None)


def test_conditioner_hook_fires_even_where_the_normalisation_is_folded(d192):
    """With a fast patch_embed the normalisation is folded into the weights and the conditioner
    is not called; a hook on it turns the fold off so that it fires."""
    m = fastradio.load(d192, device="cpu", backend="triton" if _triton_runs() else "reference")
    h = m.input_conditioner.register_forward_hook(lambda *a: None)
    assert not m.folds_input_norm
    h.remove()
    assert m.folds_input_norm == (m.plan.names["patch_embed"] != "reference")


def _triton_runs() -> bool:
    from fastradio import backends

    return not backends.refusals("triton", "linear", torch.device("cpu"), torch.float32)


@pytest.mark.skipif(not _triton_runs(), reason="the Triton backend cannot run on CPU here (TRITON_INTERPRET=1 unset)")
def test_hooked_block_runs_the_same_fast_ops(v3):
    """Triton backend (interpreter), layer-scale folded: a hooked block runs the same kernels on
    the same folded weights as the fused path."""
    m = fastradio.load(v3, device="cpu", backend="triton")
    assert m.folds_layer_scale and m.plan.names["linear"] == "triton"
    x = _images(1, 32, 32, seed=17)
    plain = m(x)
    seen = []
    h = m.model.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(out))
    hooked = m(x)
    h.remove()
    torch.testing.assert_close(hooked.features, plain.features, rtol=1e-6, atol=1e-6)
    assert seen[0].shape == (1, 12, 128)


def test_hooks_and_torch_compile(model):
    """Hooks registered before compiling fire in the compiled model; one registered after is
    seen only when Dynamo guards on hooks (torch._dynamo.config.skip_nnmodule_hook_guards=False,
    PyTorch's rule for every module, the reference's included)."""
    torch._dynamo.reset()
    x = _images(2, 32, 32, seed=18)
    eager = model(x)
    seen = []
    h = model.model.blocks[1].register_forward_hook(lambda m, inp, out: seen.append(out.clone()))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    assert len(seen) == 1 and seen[0].shape == (2, 12, 192)
    torch.testing.assert_close(out.features, eager.features, rtol=1e-5, atol=1e-5)
    h.remove()
    with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False):
        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        compiled(x)
        seen.clear()
        h = model.model.blocks[0].register_forward_hook(lambda m, inp, out: seen.append(out.clone()))
        compiled(x)
        h.remove()
    assert len(seen) == 1
    torch._dynamo.reset()


# -- torch.compile on a fresh model, torch.export --------------------------------------------------------------

@pytest.mark.parametrize("cast", [None, "half", "bfloat16"])
def test_torch_compile_fullgraph_on_a_fresh_model(d192, cast):
    """No eager call first: the plan is resolved at load and on every .to()/.half()."""
    torch._dynamo.reset()
    m = fastradio.load(d192, device="cpu", backend="reference")
    if cast == "half":
        m = m.half()
    elif cast == "bfloat16":
        m = m.to(torch.bfloat16)
    assert m._plan is not None and m._plan.dtype == m.dtype
    x = _images(2, 32, 48, seed=19)
    got = torch.compile(m, fullgraph=True, backend="aot_eager")(x)
    want = m(x)
    tol = 1e-5 if cast is None else 2e-2
    torch.testing.assert_close(got.summary, want.summary, rtol=tol, atol=tol)
    torch.testing.assert_close(got.features, want.features, rtol=tol, atol=tol)
    if cast is None:
        assert rel_l2(got.features, _oracle(d192, x)[1]) <= 1e-5
    torch._dynamo.reset()


@pytest.mark.skipif(not _triton_runs(), reason="the Triton backend cannot run on CPU here (TRITON_INTERPRET=1 unset)")
def test_torch_compile_fullgraph_on_a_fresh_triton_model(v3):
    torch._dynamo.reset()
    m = fastradio.load(v3, device="cpu", backend="triton")
    x = _images(1, 32, 32, seed=20)
    got = torch.compile(m, fullgraph=True, backend="aot_eager")(x)
    assert rel_l2(got.features, _oracle(v3, x)[1]) <= 1e-5
    torch._dynamo.reset()


@pytest.mark.parametrize("cast", [None, "half"])
def test_torch_export_reference_backend(d192, cast):
    m = fastradio.load(d192, device="cpu", backend="reference")
    if cast:
        m = m.half()
    x = _images(2, 32, 48, seed=21)
    ep = torch.export.export(m, (x,))
    got = ep.module()(x)
    want = m(x)
    assert isinstance(got, RadioOutput) or len(got) == 2
    torch.testing.assert_close(got[0], want.summary, rtol=1e-3 if cast else 1e-6, atol=1e-3 if cast else 1e-6)
    torch.testing.assert_close(got[1], want.features, rtol=1e-3 if cast else 1e-6, atol=1e-3 if cast else 1e-6)
    if not cast:
        assert rel_l2(got[1], _oracle(d192, x)[1]) <= 1e-5


@pytest.mark.skipif(not _triton_runs(), reason="the Triton backend cannot run on CPU here (TRITON_INTERPRET=1 unset)")
def test_torch_export_triton_backend(v3):
    """The Triton ops are custom ops with fake implementations: export traces them into the graph."""
    m = fastradio.load(v3, device="cpu", backend="triton")
    x = _images(1, 32, 32, seed=22)
    ep = torch.export.export(m, (x,))
    ops_in_graph = {str(n.target) for n in ep.graph.nodes if n.op == "call_function" and "fastradio" in str(n.target)}
    assert {f"fastradio.triton_{op}.default" for op in ("patch_embed", "add_layer_norm", "linear", "attention")} <= ops_in_graph
    got = ep.module()(x)
    torch.testing.assert_close(got[1], m(x).features, rtol=1e-6, atol=1e-6)


def test_cuda_custom_ops_have_fake_implementations():
    """Without a GPU the CUDA backend cannot run, but its ops must trace (torch.compile, export):
    each one's fake implementation gives the reference op's shape and dtype on fake CUDA tensors."""
    try:
        from fastradio.backends import cuda as cb
    except ImportError as e:
        pytest.skip(f"fastradio._C is not importable: {e}")
    if cb.DEVICE_TYPE != "cuda":
        pytest.skip("an emulated build: its ops take CPU tensors (tests/test_emulated_device.py)")
    from torch._subclasses.fake_tensor import FakeTensorMode

    from fastradio.backends import reference as rb

    n, d, heads, hd, dt = 2 * 14, 128, 2, 64, torch.bfloat16

    def args(dev):
        g = torch.Generator().manual_seed(0)

        def r(*s, dtype=dt):
            t = torch.randn(*s, generator=g, dtype=torch.float32).to(dtype)
            return t if dev == "cpu" else torch.empty(s, dtype=dtype, device=dev)
        cu = torch.tensor([0, 14, 28], dtype=torch.int32)
        return {
            "pos_embed": (r(16, 16, d, dtype=torch.float32), 2, 3, dt, True),
            "patch_embed": (r(2, 3, 32, 48), r(d, 768), r(6, d), r(8, d)),
            "add_layer_norm": (r(n, d), r(n, d), r(d), r(d), 1e-6),
            "linear": (r(n, d), r(4 * d, d), r(4 * d), "gelu", None),
            "attention": (r(n, 3 * d), cu if dev == "cpu" else torch.empty(3, dtype=torch.int32, device=dev),
                          14, heads, hd),
        }

    want = {op: getattr(rb, op)(*a) for op, a in args("cpu").items()}
    with FakeTensorMode():
        got = {op: getattr(cb, op)(*a) for op, a in args("cuda").items()}
    for op in want:
        w = want[op] if isinstance(want[op], tuple) else (want[op],)
        g = got[op] if isinstance(got[op], tuple) else (got[op],)
        assert [(t.shape, t.dtype) for t in g] == [(t.shape, t.dtype) for t in w], op
        assert all(t.device.type == "cuda" for t in g), op
