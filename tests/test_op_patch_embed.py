"""patch_embed, one op test for every backend (reference, triton, cuda) on every device.

(a) the spec (c-radiov2.md §3), independently of any backend: the embedder weight (D, 768)
    reshaped to (D, 3, 16, 16) is a stride-16 convolution, so F.conv2d in float64 plus pos, behind
    the prefix tokens, is the oracle, and the reference backend equals it;
(b) every backend against that oracle: fp32 within 1e-5 (IEEE fp32 accumulation, no TF32),
    fp16/bf16 within 2x the reference backend's own error (the precision floor, DESIGN §7), prefix
    rows copied exactly, on B = 1/3, non-square grids with h, w in {1, 2, 5}, D in {8, 80, 130};
    the CUDA backend also once per compiled tier and dtype it takes (FASTRADIO_TIER);
(c) NaN in one image stays in its token; outputs poisoned first; the GPU tile shapes run in the
    interpreter too; (d) bad inputs are rejected with messages that name what was expected and what
    came; (e) opcheck, FakeTensor shapes, torch.compile; (f) the Triton kernel compiles for
    sm_80/sm_90 without a GPU: tensor-core MMA for 16-bit, FMA only for fp32, no spills.

A backend that cannot run here is skipped with the dispatcher's reason. On CPU the Triton kernel
runs only under TRITON_INTERPRET=1, where bf16 is checked with the dot's operands widened to fp32
(the interpreter's bf16 tl.dot is wrong in Triton 3.7) and a software round-to-nearest-even store:
addressing, masking, epilogue and rounding are the GPU code's, the bf16 MMA itself is GPU-only.
Real widths at real resolutions run only on a GPU. Inputs are drawn per case from a fixed seed;
set FASTRADIO_TEST_SEED to draw different ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import pytest
import torch
import torch.nn.functional as F

from fastradio import backends

from kernel_testing import backend_or_skip, dtype_id, TRITON_COMPILE_PRELUDE

BACKENDS = ("reference", "triton", "cuda")
FAST_BACKENDS = ("triton", "cuda")
DEVICES = ("cpu", "cuda")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
FP32_TOL = 1e-5  # relative L2 and max-abs relative to max |oracle| (DESIGN §7's fp32 rule)
PATCH = 16

# (B, h, w, D, P): one image and three, non-square grids, h = w = 1, widths below and not a
# multiple of the tile, P = 8 (C-RADIOv2), 1 and 0.
CASES = [
    (1, 1, 1, 8, 8), (3, 2, 5, 80, 8), (1, 5, 2, 130, 8), (3, 1, 2, 8, 1), (1, 2, 1, 130, 0),
    (3, 5, 5, 80, 8), (1, 1, 5, 8, 8), (3, 2, 2, 130, 8),
]
# Real widths at real resolutions: B = 32 at 512 px for C-RADIOv2-B/L, larger grids, odd grids.
GPU_CASES = [
    (32, 32, 32, 768, 8), (32, 32, 32, 1024, 8), (8, 32, 48, 1280, 8), (4, 64, 64, 1536, 8),
    (3, 13, 7, 768, 8), (1, 1, 1, 1536, 8), (5, 31, 2, 1024, 8),
]


def _case_id(case):
    b, h, w, d, p = case
    return f"B{b}-{h}x{w}-D{d}-P{p}"


def _seed(*parts) -> int:
    return zlib.crc32(repr((os.environ.get("FASTRADIO_TEST_SEED", "0"),) + parts).encode())


def _backend_or_skip(name: str, device: str, dtype: torch.dtype = torch.float32):
    return backend_or_skip(name, "patch_embed", device, dtype)


def _inputs(case, dtype, seed, device="cpu"):
    """fp32 data shaped like the real thing: normalised pixels (per-channel mean/std of [0, 1]
    images), embedder weights at the scale of a trained 768-fan-in layer, a position table of
    N(0, 0.02) plus a few outliers, and prefix tokens of N(0, 0.5)."""
    b, h, w, d, p = case
    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    x = (torch.rand(b, 3, h * PATCH, w * PATCH, generator=g) - mean) / std
    weight = torch.randn(d, 3 * PATCH * PATCH, generator=g) * (1.0 / 768 ** 0.5)
    pos = torch.randn(h * w, d, generator=g) * 0.02
    pos.view(-1)[torch.randint(0, pos.numel(), (3,), generator=g)] = 1.5
    prefix = torch.randn(p, d, generator=g) * 0.5
    return tuple(t.to(dtype).to(device) for t in (x, weight, pos, prefix))


def _oracle(x, weight, pos, prefix) -> torch.Tensor:
    """float64 tokens from the spec's convolution view, independent of any backend."""
    b = x.shape[0]
    d = weight.shape[0]
    conv = F.conv2d(x.double(), weight.double().reshape(d, 3, PATCH, PATCH), stride=PATCH)  # (B, D, h, w)
    tokens = conv.flatten(2).transpose(1, 2) + pos.double()
    return torch.cat([prefix.double().expand(b, -1, -1), tokens], dim=1)


def _err(got: torch.Tensor, oracle: torch.Tensor) -> tuple[float, float]:
    e = got.to(oracle.device).double() - oracle
    return ((e.norm() / oracle.norm().clamp_min(1e-30)).item(),
            (e.abs().max() / oracle.abs().max().clamp_min(1e-30)).item())


def _poison_allocator(shape, dtype, device):
    # The backend API has no out=: fill a same-sized block with NaN and free it, so a caching
    # allocator (CUDA) is likely to hand it back as the output and unwritten elements show up.
    torch.full(shape, float("nan"), dtype=dtype, device=device)


# -- (a) the spec, independent of any backend -----------------------------------------------------

@pytest.mark.parametrize("case", CASES[:4], ids=_case_id)
def test_reference_is_the_strided_convolution(case):
    x, weight, pos, prefix = _inputs(case, torch.float64, _seed("spec", case))
    ref = backends.get("reference").patch_embed(x, weight, pos, prefix)
    torch.testing.assert_close(ref, _oracle(x, weight, pos, prefix), rtol=1e-12, atol=1e-12)


def test_feature_order_is_channel_then_row_then_column():
    # One weight entry per (ch, dy, dx) picks one pixel: f = ch*256 + dy*16 + dx (spec §3).
    x = torch.randn(1, 3, 32, 48, dtype=torch.float64)
    for ch, dy, dx in ((0, 0, 0), (2, 15, 3), (1, 4, 15)):
        weight = torch.zeros(1, 768, dtype=torch.float64)
        weight[0, ch * 256 + dy * 16 + dx] = 1.0
        got = backends.get("reference").patch_embed(x, weight, torch.zeros(6, 1, dtype=torch.float64),
                                                    torch.zeros(0, 1, dtype=torch.float64))
        expect = x[0, ch, dy::16, dx::16].reshape(6)
        torch.testing.assert_close(got[0, :, 0], expect, rtol=0, atol=0)


# -- (b) every backend against the oracle ---------------------------------------------------------

def _all_cases():
    for case in CASES:
        yield pytest.param(case, id=_case_id(case))
    for case in GPU_CASES:
        yield pytest.param(case, id=_case_id(case) + "-gpuonly")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", list(_all_cases()))
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_against_oracle(backend, device, case, dtype):
    if case in GPU_CASES and device == "cpu":
        pytest.skip("large shape: GPU only (interpreter and fp64 oracle time on CPU)")
    mod = _backend_or_skip(backend, device, dtype)
    b, h, w, d, p = case
    x, weight, pos, prefix = _inputs(case, dtype, _seed(case, str(dtype)), device)
    _poison_allocator((b, p + h * w, d), dtype, device)
    out = mod.patch_embed(x, weight, pos, prefix)
    assert out.shape == (b, p + h * w, d) and out.dtype == dtype and out.device == x.device
    if backend != "reference":
        assert out.is_contiguous()
    assert torch.isfinite(out).all(), "NaN/inf in the output: unwritten or garbage elements"
    torch.testing.assert_close(out[:, :p], prefix.expand(b, -1, -1), rtol=0, atol=0)  # copied exactly
    oracle = _oracle(x.cpu(), weight.cpu(), pos.cpu(), prefix.cpu())
    rel, mx = _err(out, oracle)
    if dtype == torch.float32:
        assert rel <= FP32_TOL and mx <= FP32_TOL, f"fp32 error rel L2 {rel:.3g}, max {mx:.3g}"
        return
    floor = backends.get("reference").patch_embed(x.cpu(), weight.cpu(), pos.cpu(), prefix.cpu())
    frel, fmx = _err(floor, oracle)
    assert rel <= 2 * frel + 1e-12 and mx <= 2 * fmx + 1e-12, (
        f"{dtype} error rel L2 {rel:.3g} / max {mx:.3g} vs precision floor {frel:.3g} / {fmx:.3g}")


def _cuda_tiers():
    # Every tier of the CUDA backend compiled into this build (the default run above takes only the
    # automatic one per dtype); an absent extension yields none and the test is skipped below.
    try:
        from fastradio.backends import cuda
    except ImportError:
        return [pytest.param(None, None, id="no-extension")]
    tiers = cuda.build_info()["tiers"].get("patch_embed", [])
    return [pytest.param(t, dt, id=f"{t}-{dtype_id(dt)}") for t in tiers for dt in DTYPES
            if dt in cuda.TIER_DTYPES.get("patch_embed", {}).get(t, DTYPES)] or [pytest.param(None, None, id="none")]


@pytest.mark.parametrize("case", CASES + GPU_CASES[4:], ids=_case_id)
@pytest.mark.parametrize("tier,dtype", _cuda_tiers())
def test_cuda_every_tier_against_oracle(tier, dtype, case, monkeypatch):
    if tier is None:
        pytest.skip("the cuda backend has no patch_embed tier in this build")
    mod = _backend_or_skip("cuda", "cuda", dtype)
    monkeypatch.setenv(mod.TIER_ENV, f"patch_embed:{tier}")
    b, h, w, d, p = case
    x, weight, pos, prefix = _inputs(case, dtype, _seed("tier", tier, case, str(dtype)), "cuda")
    _poison_allocator((b, p + h * w, d), dtype, "cuda")
    out = mod.patch_embed(x, weight, pos, prefix)
    assert torch.isfinite(out).all(), "NaN/inf in the output: unwritten or garbage elements"
    torch.testing.assert_close(out[:, :p], prefix.expand(b, -1, -1), rtol=0, atol=0)
    oracle = _oracle(x.cpu(), weight.cpu(), pos.cpu(), prefix.cpu())
    rel, mx = _err(out, oracle)
    if dtype == torch.float32:
        assert rel <= FP32_TOL and mx <= FP32_TOL, f"{tier}: fp32 error rel L2 {rel:.3g}, max {mx:.3g}"
        return
    floor = _err(backends.get("reference").patch_embed(x.cpu(), weight.cpu(), pos.cpu(), prefix.cpu()), oracle)
    assert rel <= 2 * floor[0] + 1e-12 and mx <= 2 * floor[1] + 1e-12, (tier, rel, mx, floor)


@pytest.mark.parametrize("device", DEVICES)
def test_low_precision_output_is_one_rounding_of_the_fp32_result(device):
    # The kernel accumulates in fp32 and rounds once at the store. In the interpreter the 16-bit
    # and the fp32 dots sum in the same order, so the identity is exact there; on a GPU the MMA's
    # order differs from the fp32 FMA tiles', so this check is for the interpreter only.
    if device == "cuda":
        pytest.skip("bit-exact only where both dots sum in the same order (the interpreter)")
    mod = _backend_or_skip("triton", device)
    case = (3, 2, 5, 80, 8)
    for dtype in (torch.float16, torch.bfloat16):
        x, weight, pos, prefix = _inputs(case, dtype, _seed("one-rounding", str(dtype)), device)
        out = mod.patch_embed(x, weight, pos, prefix)
        out32 = mod.patch_embed(x.float(), weight.float(), pos.float(), prefix.float())
        torch.testing.assert_close(out, out32.to(dtype), rtol=0, atol=0)


# -- (c) NaN isolation, poisoned outputs, GPU tiles in the interpreter ----------------------------

@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy sees NaN
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_stays_in_its_token(backend, device):
    mod = _backend_or_skip(backend, device)
    case = (3, 2, 5, 24, 8)
    x, weight, pos, prefix = _inputs(case, torch.float32, _seed("nan"), device)
    clean = mod.patch_embed(x, weight, pos, prefix)
    x[1, 2, 16 + 3, 2 * 16 + 7] = float("nan")  # image 1, patch (r=1, c=2), channel 2
    out = mod.patch_embed(x, weight, pos, prefix)
    bad = 8 + 1 * 5 + 2
    assert torch.isnan(out[1, bad]).all()
    keep = torch.ones(3, 8 + 10, dtype=torch.bool)
    keep[1, bad] = False
    torch.testing.assert_close(out[keep], clean[keep], rtol=0, atol=0)


def _kernel_or_skip():
    for dev in ("cuda", "cpu"):
        if dev == "cuda" and not torch.cuda.is_available():
            continue
        if not backends.refusals("triton", "patch_embed", torch.device(dev), torch.float32):
            from fastradio.kernels import patch_embed as k  # tests may reach below the backend

            return k, dev
    pytest.skip("triton cannot run here: " + "; ".join(
        backends.refusals("triton", "patch_embed", torch.device("cpu"), torch.float32)))


@pytest.mark.parametrize("case", [(1, 1, 1, 8, 8), (3, 5, 2, 130, 8), (2, 2, 5, 80, 0)], ids=_case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_launcher_writes_every_element_of_a_poisoned_out(case, dtype):
    k, device = _kernel_or_skip()
    b, h, w, d, p = case
    x, weight, pos, prefix = _inputs(case, dtype, _seed("poison", case, str(dtype)), device)
    out = torch.full((b, p + h * w, d), float("nan"), dtype=dtype, device=device)
    got = k.patch_embed(x, weight, pos, prefix, out=out)
    assert got.data_ptr() == out.data_ptr()
    assert torch.isfinite(out).all()
    rel, _ = _err(out, _oracle(x.cpu(), weight.cpu(), pos.cpu(), prefix.cpu()))
    assert rel <= (FP32_TOL if dtype == torch.float32 else 1e-2), rel


@pytest.mark.parametrize("arch", [(8, 0), (9, 0)], ids=["sm80", "sm90"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=dtype_id)
def test_gpu_tiles_in_the_interpreter(arch, dtype):
    # The tiles the GPU runs (BLOCK_K = 64 or 32: several patch rows per K step, 128-row M tiles
    # straddling images) on a case with masked rows and columns, poisoned.
    k, device = _kernel_or_skip()
    if device != "cpu":
        pytest.skip("the GPU runs these tiles in test_against_oracle")
    case = (3, 5, 3, 80, 8)
    b, h, w, d, p = case
    x, weight, pos, prefix = _inputs(case, dtype, _seed("gpu-tiles", str(dtype)), device)
    cfg = k.launch_config(b * h * w, d, dtype, arch)
    out = torch.full((b, p + h * w, d), float("nan"), dtype=dtype, device=device)
    k.patch_embed(x, weight, pos, prefix, out=out, config=cfg)
    assert torch.isfinite(out).all()
    oracle = _oracle(x, weight, pos, prefix)
    rel, mx = _err(out, oracle)
    floor = _err(backends.get("reference").patch_embed(x, weight, pos, prefix), oracle)
    bound = (FP32_TOL, FP32_TOL) if dtype == torch.float32 else (2 * floor[0], 2 * floor[1])
    assert rel <= bound[0] and mx <= bound[1], (rel, mx, bound)


def test_launch_config_is_deterministic_and_legal():
    k, _ = _kernel_or_skip()
    for cap in ((8, 0), (8, 6), (9, 0), None):
        for dtype in DTYPES:
            for d in (8, 80, 768, 1536):
                cfg = k.launch_config(32 * 1024, d, dtype, cap)
                assert cfg == k.launch_config(32 * 1024, d, dtype, cap)
                assert cfg["BLOCK_K"] % 16 == 0 and 256 % cfg["BLOCK_K"] == 0  # a K step stays in one channel
                assert min(cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]) >= 16  # tl.dot's minimum
                if d >= 128 and cap is not None:
                    assert d % cfg["BLOCK_N"] == 0  # real widths: no masked columns


# -- (d) bad inputs -------------------------------------------------------------------------------

def _bad_inputs(device):
    x, weight, pos, prefix = _inputs((2, 2, 3, 8, 8), torch.float32, 1, device)
    h = lambda t: t.half()  # noqa: E731
    return {
        # what: (args, a fragment the message must contain: the expected or the received thing)
        "3-D x": ((x[0], weight, pos, prefix), "(B, 3, H, W)"),
        "4 channels": ((torch.cat([x, x[:, :1]], 1), weight, pos, prefix), "(2, 4, 32, 48)"),
        "1 channel": ((x[:, :1].contiguous(), weight, pos, prefix), "(2, 1, 32, 48)"),
        "H not a multiple of 16": ((x[:, :, :31].contiguous(), weight, pos, prefix), "H=31"),
        "W not a multiple of 16": ((x[:, :, :, :40].contiguous(), weight, pos, prefix), "W=40"),
        "weight not 768 wide": ((x, weight[:, :767], pos, prefix), "(8, 767)"),
        "weight 1-D": ((x, weight[0], pos, prefix), "(D, 768)"),
        "pos wrong grid": ((x, weight, pos[:5], prefix), "(6, 8)"),
        "pos wrong D": ((x, weight, pos[:, :7].contiguous(), prefix), "(6, 7)"),
        "prefix wrong D": ((x, weight, pos, prefix[:, :7].contiguous()), "(8, 7)"),
        "weight dtype": ((x, h(weight), pos, prefix), "torch.float16"),
        "pos dtype": ((x, weight, h(pos), prefix), "torch.float16"),
        "prefix dtype": ((x, weight, pos, prefix.double()), "torch.float64"),
        "fp64 x": ((x.double(), weight.double(), pos.double(), prefix.double()), "torch.float64"),
        "uint8 x": (((x * 50).clamp(0, 255).to(torch.uint8), weight, pos, prefix), "torch.uint8"),
        "channels_last x": ((x.contiguous(memory_format=torch.channels_last), weight, pos, prefix), "contiguous"),
        "strided x": ((torch.cat([x, x], 3)[..., ::2], weight, pos, prefix), "contiguous"),
        "list pos": ((x, weight, pos.tolist(), prefix), "list"),
    }


@pytest.mark.parametrize("what", list(_bad_inputs("cpu")))
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_rejects_bad_input(backend, device, what):
    mod = _backend_or_skip(backend, device)
    args, fragment = _bad_inputs(device)[what]
    with pytest.raises((TypeError, ValueError)) as info:
        mod.patch_embed(*args)
    assert "patch_embed" in str(info.value) and fragment in str(info.value), str(info.value)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_weight_pos_prefix_are_accepted(backend, device):
    # The model may pass the reference pos_embed's transposed view; the op itself (below) still
    # requires contiguous tensors, so the backend copies these small ones first.
    mod = _backend_or_skip(backend, device)
    case = (2, 2, 3, 24, 8)
    x, weight, pos, prefix = _inputs(case, torch.float32, _seed("strided"), device)
    views = (weight.t().contiguous().t(), pos.t().contiguous().t(),
             torch.stack([prefix, prefix], 2).reshape(8, 48)[:, ::2])
    assert not any(v.is_contiguous() for v in views)
    exact = backend != "reference"  # BLAS may take another path for a transposed weight
    torch.testing.assert_close(mod.patch_embed(x, *views), mod.patch_embed(x, weight, pos, prefix),
                               rtol=0 if exact else 1e-5, atol=0 if exact else 1e-6)
    if backend == "triton":
        with pytest.raises(ValueError, match="pos must be contiguous"):
            torch.ops.fastradio.triton_patch_embed(x, weight, views[1], prefix)


def test_rejects_mixed_devices():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device to mix with cpu")
    mod = _backend_or_skip("triton", "cuda")
    x, weight, pos, prefix = _inputs((1, 1, 2, 8, 8), torch.float32, 1, "cuda")
    with pytest.raises(ValueError, match="device"):
        mod.patch_embed(x, weight, pos.cpu(), prefix)


# -- (e) registration, FakeTensor shapes, torch.compile -------------------------------------------

def test_registered_custom_op_passes_opcheck():
    _, device = _kernel_or_skip()
    mod = backends.get("triton")
    assert mod.OP_NAMES["patch_embed"] == "fastradio::triton_patch_embed"
    op = torch.ops.fastradio.triton_patch_embed.default
    for case, dtype in (((2, 1, 2, 24, 8), torch.float32), ((1, 2, 1, 16, 0), torch.bfloat16),
                        ((1, 1, 1, 8, 1), torch.float16)):
        args = _inputs(case, dtype, 5, device)
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fake_tensor_shape(backend, device):
    from torch._subclasses.fake_tensor import FakeTensorMode

    mod = _backend_or_skip(backend, device, torch.bfloat16)
    with FakeTensorMode():
        bf = dict(dtype=torch.bfloat16, device=device)
        x = torch.empty(32, 3, 512, 768, **bf)
        out = mod.patch_embed(x, torch.empty(1024, 768, **bf), torch.empty(32 * 48, 1024, **bf),
                              torch.empty(8, 1024, **bf))
        assert out.shape == (32, 8 + 32 * 48, 1024) and out.dtype == torch.bfloat16
        assert out.device.type == device


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_compile_fullgraph(backend, device):
    mod = _backend_or_skip(backend, device, torch.float16)
    # On CPU Inductor spends ~20 s compiling C++; aot_eager still runs Dynamo's full-graph capture
    # and the functionalisation that custom ops must survive.
    compiler = "inductor" if device == "cuda" else "aot_eager"
    x, weight, pos, prefix = _inputs((2, 1, 2, 16, 8), torch.float16, 6, device)

    def f(x, weight, pos, prefix):
        return mod.patch_embed(x * 0.5, weight, pos, prefix).float().sum(-1)

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend=compiler)
    for scale in (1.0, 2.0):
        torch.testing.assert_close(compiled(x * scale, weight, pos, prefix), f(x * scale, weight, pos, prefix),
                                   rtol=0, atol=0)


def test_refusals_name_the_reason():
    pytest.importorskip("triton")
    mod = backends.get("triton")
    assert any("dtype" in r for r in mod.supports("patch_embed", torch.device("cpu"), torch.int8))
    assert any("device type" in r for r in mod.supports("patch_embed", torch.device("meta"), torch.float32))


# -- (f) the GPU code, compiled without a GPU -----------------------------------------------------

_COMPILE_CHECK = TRITON_COMPILE_PRELUDE + r"""
import json, os, re, subprocess, sys, tempfile
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from fastradio.kernels import patch_embed as k

ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
names = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}
out = []
cases = [(arch, *c) for arch in map(int, sys.argv[1:])
         for c in ((torch.bfloat16, 1024), (torch.float16, 768), (torch.float32, 1536))]
for arch, dtype, d in cases:
    t = names[dtype]
    cfg = k.launch_config(32 * 1024, d, dtype, (arch // 10, arch % 10))
    sig = {"x_ptr": "*" + t, "w_ptr": "*" + t, "pos_ptr": "*" + t, "prefix_ptr": "*" + t, "out_ptr": "*" + t,
           "M": "i32", "hw": "i32", "w": "i32", "P": "i32", "BP": "i32", "D": "i32", "H_IMG": "i32", "W_IMG": "i32",
           "BLOCK_M": "constexpr", "BLOCK_N": "constexpr", "BLOCK_K": "constexpr", "SOFT_BF16": "constexpr"}
    src = ASTSource(fn=k._patch_embed_kernel, signature=sig,
                    constexprs={"BLOCK_M": cfg["BLOCK_M"], "BLOCK_N": cfg["BLOCK_N"], "BLOCK_K": cfg["BLOCK_K"],
                                "SOFT_BF16": False},
                    attrs={(i,): [["tt.divisibility", 16]] for i in (0, 1, 2, 3, 4, 10, 11, 12)})
    kern = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]})
    ptx = kern.asm["ptx"]
    res = {"arch": arch, "case": f"{t} D={d} {cfg}", "dtype": t, "smem": kern.metadata.shared,
           "mma": bool(re.search(r"\bmma\.sync|wgmma\.mma_async", ptx)),
           "wgmma": bool(re.search(r"wgmma\.mma_async", ptx)),
           "async_16B_loads": bool(re.search(r"cp\.async\.cg\.shared\.global[^;]*, 0x10[,;]", ptx))}
    if os.path.exists(ptxas):
        target = next(l.split()[1] for l in ptx.splitlines() if l.startswith(".target"))
        with tempfile.TemporaryDirectory() as tmp:
            open(os.path.join(tmp, "k.ptx"), "w").write(ptx)
            p = subprocess.run([ptxas, f"-arch={target}", "-v", os.path.join(tmp, "k.ptx"), "-o",
                                os.path.join(tmp, "k.cubin")], capture_output=True, text=True)
        res["ptxas"] = " ".join(re.findall(r"Used \d+ registers|\d+ bytes spill (?:stores|loads)", p.stderr))
        res["no_spills"] = (p.returncode == 0 and "0 bytes spill stores" in p.stderr
                            and "0 bytes spill loads" in p.stderr)
        res["regs_per_program"] = int(re.search(r"Used (\d+) registers", p.stderr).group(1)) * 32 * cfg["num_warps"]
    out.append(res)
print(json.dumps(out))
"""


def test_compiles_for_the_gpu_without_a_gpu():
    # Triton compiles for a named target with no device (in a process without the interpreter):
    # 16-bit tiles use tensor cores (mma.sync on sm_80, wgmma on sm_90), fp32 uses IEEE FMA only
    # (no TF32); the image is gathered with 16-byte cp.async copies (im2patch in the addressing);
    # shared memory fits (on sm_90, with the registers, two programs per SM); with the bundled
    # ptxas, no spills.
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", _COMPILE_CHECK, "80", "90"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if isinstance(out, dict) and "skip" in out:
        pytest.skip(f"cannot compile for sm_80/sm_90 here: {out['skip']}")
    assert {case["arch"] for case in out} == {80, 90}
    for case in out:
        arch = case["arch"]
        print(f"sm_{arch} {case['case']}: smem {case['smem']} B, {case.get('ptxas', 'no ptxas')}, "
              f"registers/program {case.get('regs_per_program')}")
        assert case["mma"] == (case["dtype"] != "fp32"), case
        if case["dtype"] != "fp32":
            assert case["wgmma"] == (arch == 90), case
        assert case["async_16B_loads"], case
        assert case["smem"] * (2 if arch == 90 else 1) <= {80: 163, 90: 227}[arch] * 1024, case
        if "no_spills" in case:
            assert case["no_spills"], case
            if arch == 90 and case["dtype"] != "fp32":
                assert 2 * case["regs_per_program"] <= 65536, case  # two programs per SM
