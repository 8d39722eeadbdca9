"""add_layer_norm, one op test for every backend (reference, triton, cuda) on every device.

(a) the contract: x_new = x + delta in x's dtype (bit-exact torch rounding), a = LayerNorm(x_new)
    against a float64 oracle of the formula, for every residual/compute dtype combination the
    model uses (fp32; bf16; fp32 residual + fp16 compute, the fp16 mode; plus all-fp16 and fp32
    residual + bf16 compute); fp32 tight, fp16/bf16 within 2x the reference backend's own error
    (the precision floor, DESIGN §7); delta None; awkward shapes (N = 1, prime N, D = 1, 7, 80, 130);
(b) rows with a large mean against their spread (trained ViT residuals) stay accurate;
(c) NaN stays in its row; outputs poisoned first; (d) bad inputs are rejected with messages that
    name what was expected and what came; (e) opcheck, FakeTensor shapes, torch.compile;
(f) the Triton kernel compiles for sm_80/sm_90 without a GPU: no spills, 16-byte accesses.

A backend that cannot run here is skipped with the dispatcher's reason. On CPU the Triton kernel
runs only under TRITON_INTERPRET=1 (bf16 there is trustworthy: the kernel has no tl.dot and rounds
fp32 -> bf16 in software, see kernels/add_layer_norm.py); real widths and row counts run only on a
GPU. Inputs are drawn per case from a fixed seed; set FASTRADIO_TEST_SEED to draw different ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import pytest
import torch

from fastradio import backends

from kernel_testing import backend_or_skip, TRITON_COMPILE_PRELUDE

BACKENDS = ("reference", "triton", "cuda")
FAST_BACKENDS = ("triton", "cuda")
DEVICES = ("cpu", "cuda")
EPS = 1e-6
FP32_TOL = 2e-6  # relative L2 and max-abs relative to max |oracle|; fp32 rounding gives ~1e-7

f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
# (name, residual dtype of x, compute dtype of delta/weight/bias)
MODES = [
    ("fp32", f32, f32),
    ("bf16", bf16, bf16),
    ("fp16", f32, f16),  # the model's fp16 mode: fp32 residual stream (DESIGN decision 12)
    ("fp16-res16", f16, f16),
    ("bf16-res32", f32, bf16),
]
# (N, D): one row, prime row counts, widths below/around/above a power of two.
SHAPES = [(1, 1), (1, 7), (7, 80), (13, 130), (31, 7), (5, 128), (3, 768), (2, 1536), (37, 33)]
# Real widths at real token counts (C-RADIOv2-B..g at 512 px, B = 32 and smaller batches).
GPU_SHAPES = [(32 * 1032, 768), (8 * 1032, 1024), (4 * 1032, 1280), (2 * 1032 + 3, 1536), (4099, 1536)]


def _mode_id(mode):
    return mode[0]


def _shape_id(shape):
    return f"N{shape[0]}-D{shape[1]}"


def _seed(*parts) -> int:
    return zlib.crc32(repr((os.environ.get("FASTRADIO_TEST_SEED", "0"),) + parts).encode())


def _backend_or_skip(name: str, device: str, dtype: torch.dtype = f32):
    return backend_or_skip(name, "add_layer_norm", device, dtype)


def _inputs(n: int, d: int, x_dtype, c_dtype, seed: int, device: str = "cpu", with_delta: bool = True):
    """Residual-stream-like data: N(0, 1) with a few outlier channels (|x| ~ 20-60, as trained ViTs
    carry), a row-dependent offset, a delta of N(0, 0.3), and LayerNorm weights around 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    x += 0.5 * torch.randn(n, 1, generator=g)
    k = max(1, d // 64)
    cols = torch.randint(0, d, (k,), generator=g)
    x[:, cols] = x[:, cols] * 5 + 40 * torch.sign(torch.randn(k, generator=g))
    delta = 0.3 * torch.randn(n, d, generator=g) if with_delta else None
    w = 1 + 0.2 * torch.randn(d, generator=g)
    b = 0.1 * torch.randn(d, generator=g)
    cast = lambda t, dt: None if t is None else t.to(dt).to(device)  # noqa: E731
    return cast(x, x_dtype), cast(delta, c_dtype), cast(w, c_dtype), cast(b, c_dtype)


def _oracle(x_new: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LayerNorm of the stored residual in float64, written out (not F.layer_norm)."""
    v = x_new.double()
    mean = v.mean(dim=1, keepdim=True)
    var = ((v - mean) ** 2).mean(dim=1, keepdim=True)
    return (v - mean) / torch.sqrt(var + EPS) * w.double() + b.double()


def _err(got: torch.Tensor, oracle: torch.Tensor) -> tuple[float, float]:
    """(relative L2, max-abs / max|oracle|) against the float64 oracle."""
    e = got.to(oracle.device).double() - oracle
    return ((e.norm() / oracle.norm().clamp_min(1e-30)).item(),
            (e.abs().max() / oracle.abs().max().clamp_min(1e-30)).item())


def _poison_allocator(shape, dtype, device):
    # The backend API has no out=: fill a same-sized block with NaN and free it, so a caching
    # allocator (CUDA) is likely to hand it back as an output and unwritten elements show up.
    torch.full(shape, float("nan"), dtype=dtype, device=device)


# -- (a) the contract, every backend -------------------------------------------------------------

def _all_shapes():
    for s in SHAPES:
        yield pytest.param(s, id=_shape_id(s))
    for s in GPU_SHAPES:
        yield pytest.param(s, id=_shape_id(s) + "-gpuonly")


@pytest.mark.parametrize("with_delta", [True, False], ids=["delta", "no-delta"])
@pytest.mark.parametrize("mode", MODES, ids=_mode_id)
@pytest.mark.parametrize("shape", list(_all_shapes()))
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_against_oracle(backend, device, shape, mode, with_delta):
    if shape in GPU_SHAPES and device == "cpu":
        pytest.skip("real width x real token count: GPU only (interpreter and fp64 oracle time on CPU)")
    name, x_dtype, c_dtype = mode
    mod = _backend_or_skip(backend, device, c_dtype)
    n, d = shape
    x, delta, w, b = _inputs(n, d, x_dtype, c_dtype, _seed(shape, name, with_delta), device, with_delta)
    x_before = x.clone()
    _poison_allocator((n, d), x_dtype, device)
    _poison_allocator((n, d), c_dtype, device)
    x_new, a = mod.add_layer_norm(x, delta, w, b, EPS)

    assert torch.equal(x, x_before), "x must not be modified in place"
    assert x_new.shape == (n, d) and x_new.dtype == x_dtype and x_new.device == x.device
    assert a.shape == (n, d) and a.dtype == c_dtype and a.device == x.device
    if backend != "reference":  # the kernels write contiguous outputs
        assert x_new.is_contiguous() and a.is_contiguous()
        # With a delta, x_new is a fresh tensor; without one, the op contract lets a backend
        # return x itself (the reference and CUDA do; Triton copies).
        if delta is not None:
            assert x_new.data_ptr() != x.data_ptr()
    # The residual add is torch's own rounding of x + delta (delta is exact in x's dtype).
    expect = x if delta is None else x + delta.to(x_dtype)
    torch.testing.assert_close(x_new, expect, rtol=0, atol=0)
    assert torch.isfinite(a).all(), "NaN/inf in the output: unwritten or garbage elements"

    oracle = _oracle(expect, w, b)
    rel, mx = _err(a, oracle)
    if c_dtype == f32:
        assert rel <= FP32_TOL and mx <= FP32_TOL, f"fp32 error rel L2 {rel:.3g}, max {mx:.3g}"
        return
    ref_a = backends.get("reference").add_layer_norm(x.cpu(), None if delta is None else delta.cpu(),
                                                     w.cpu(), b.cpu(), EPS)[1]
    frel, fmx = _err(ref_a, oracle)
    assert rel <= 2 * frel + 1e-12 and mx <= 2 * fmx + 1e-12, (
        f"{c_dtype} error rel L2 {rel:.3g} / max {mx:.3g} vs precision floor {frel:.3g} / {fmx:.3g}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_low_precision_output_is_one_rounding_of_the_fp32_result(backend, device):
    # The kernels compute in fp32 and round once: a in fp16/bf16 equals the fp32 weights' result
    # rounded, for the same (exactly representable) inputs.
    mod = _backend_or_skip(backend, device)
    for c_dtype in (f16, bf16):
        x, delta, w, b = _inputs(11, 130, f32, c_dtype, _seed("one-rounding", str(c_dtype)), device)
        _, a = mod.add_layer_norm(x, delta, w, b, EPS)
        _, a32 = mod.add_layer_norm(x, delta.float(), w.float(), b.float(), EPS)
        torch.testing.assert_close(a, a32.to(c_dtype), rtol=0, atol=0)


# -- (b) rows with a large mean -------------------------------------------------------------------

@pytest.mark.parametrize("d", [7, 130, 768, 1536])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_large_mean_rows_keep_fp32_accuracy(backend, device, d):
    # mean 1e3 / std 1e-2 (and friends): one-pass E[x^2] - E[x]^2 has no correct digit here, and a
    # plain two-pass inherits the fp32 row sum's error (torch's own fp32 LayerNorm is ~1e-3 off).
    mod = _backend_or_skip(backend, device)
    g = torch.Generator().manual_seed(_seed("large-mean", d))
    rows = [(1e3, 1e-2), (-1e3, 1e-2), (3e4, 1.0), (1e3, 1.0), (0.0, 1.0)]
    x = torch.stack([m + s * torch.randn(d, generator=g) for m, s in rows]).to(device)
    w = (1 + 0.2 * torch.randn(d, generator=g)).to(device)
    b = (0.1 * torch.randn(d, generator=g)).to(device)
    x_new, a = mod.add_layer_norm(x, None, w, b, EPS)
    oracle = _oracle(x, w, b)
    for i in range(len(rows)):
        rel, mx = _err(a[i:i + 1], oracle[i:i + 1])
        assert rel <= 1e-5 and mx <= 1e-5, f"row {rows[i]}: rel L2 {rel:.3g}, max {mx:.3g}"
    # ... and the bound is sharp enough to catch the one-pass formula.
    v = x.float()
    naive_var = (v * v).mean(1, keepdim=True) - v.mean(1, keepdim=True) ** 2
    naive = (v - v.mean(1, keepdim=True)) / torch.sqrt(naive_var.clamp_min(0) + EPS) * w + b
    assert _err(naive[:1], oracle[:1])[0] > 1e-2


# -- (c) NaN stays in its row; poisoned outputs ---------------------------------------------------

@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy sees NaN
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_stays_in_its_row(backend, device):
    mod = _backend_or_skip(backend, device, f16)
    x, delta, w, b = _inputs(9, 80, f32, f16, _seed("nan"), device)
    clean = mod.add_layer_norm(x, delta, w, b, EPS)
    x2, delta2 = x.clone(), delta.clone()
    x2[2, 5] = float("nan")
    delta2[6, 79] = float("nan")
    x_new, a = mod.add_layer_norm(x2, delta2, w, b, EPS)
    for bad in (2, 6):
        assert torch.isnan(x_new[bad]).any() and torch.isnan(a[bad]).all()
    ok = [i for i in range(9) if i not in (2, 6)]
    torch.testing.assert_close(x_new[ok], clean[0][ok], rtol=0, atol=0)
    torch.testing.assert_close(a[ok], clean[1][ok], rtol=0, atol=0)


def _kernel_or_skip():
    device = None
    for dev in ("cuda", "cpu"):
        if dev == "cuda" and not torch.cuda.is_available():
            continue
        if not backends.refusals("triton", "add_layer_norm", torch.device(dev), f32):
            device = dev
            break
    if device is None:
        pytest.skip("triton cannot run here: " + "; ".join(
            backends.refusals("triton", "add_layer_norm", torch.device("cpu"), f32)))
    from fastradio.kernels import add_layer_norm as k  # tests may reach below the backend

    return k, device


@pytest.mark.parametrize("shape", [(1, 1), (13, 130), (37, 33), (4, 1536)], ids=_shape_id)
@pytest.mark.parametrize("mode", MODES, ids=_mode_id)
def test_launcher_writes_every_element_of_poisoned_outputs(mode, shape):
    k, device = _kernel_or_skip()
    name, x_dtype, c_dtype = mode
    n, d = shape
    for with_delta in (True, False):
        x, delta, w, b = _inputs(n, d, x_dtype, c_dtype, _seed("poison", shape, name), device, with_delta)
        x_out = torch.full((n, d), float("nan"), dtype=x_dtype, device=device)
        a_out = torch.full((n, d), float("nan"), dtype=c_dtype, device=device)
        got_x, got_a = k.add_layer_norm(x, delta, w, b, EPS, x_out=x_out, a_out=a_out)
        assert got_x.data_ptr() == x_out.data_ptr() and got_a.data_ptr() == a_out.data_ptr()
        assert torch.isfinite(x_out).all() and torch.isfinite(a_out).all()
        ref_x, ref_a = backends.get("reference").add_layer_norm(x, delta, w, b, EPS)
        torch.testing.assert_close(x_out, ref_x, rtol=0, atol=0)
        torch.testing.assert_close(a_out.float(), ref_a.float(), rtol=1e-2 if c_dtype != f32 else 1e-5,
                                   atol=1e-2 if c_dtype != f32 else 1e-5)


def test_launcher_rejects_a_wrong_out():
    k, device = _kernel_or_skip()
    x = torch.zeros(3, 8, device=device)
    w = torch.ones(8, device=device)
    for kw in ({"x_out": torch.empty(3, 9, device=device)},
               {"x_out": torch.empty(3, 8, dtype=f16, device=device)},
               {"a_out": torch.empty(8, 3, device=device).t()},
               {"a_out": torch.empty(3, 8, dtype=bf16, device=device)}):
        with pytest.raises(ValueError, match="_out must be"):
            k.add_layer_norm(x, None, w, w, EPS, **kw)


def test_launch_config_is_deterministic_and_covers_real_widths():
    k, _ = _kernel_or_skip()
    for cap in ((8, 0), (8, 6), (9, 0), None):
        for d in (768, 1024, 1280, 1536, 7, 1):
            cfg = k.launch_config(33024, d, cap)
            assert cfg == k.launch_config(33024, d, cap)
            assert cfg["BLOCK_D"] >= d and cfg["BLOCK_D"] & (cfg["BLOCK_D"] - 1) == 0
            assert 1 <= cfg["num_warps"] <= 8
    assert k.launch_config(1, 768)["BLOCK_M"] == 1


# -- (d) bad inputs -------------------------------------------------------------------------------

def _bad_inputs(device):
    x, delta, w, b = _inputs(4, 8, f32, f32, 1, device)
    h = lambda t: t.half()  # noqa: E731
    return {
        # what: (args, a fragment the message must contain: the expected or the received thing)
        "1-D x": ((x[0], delta, w, b, EPS), "(N, D)"),
        "3-D x": ((x[None], delta, w, b, EPS), "(N, D)"),
        "D == 0": ((x[:, :0], None, w[:0], b[:0], EPS), "D >= 1"),
        "weight wrong D": ((x, delta, w[:7], b, EPS), "(8,)"),
        "bias wrong D": ((x, delta, w, b[:7], EPS), "(7,)"),
        "delta wrong shape": ((x, delta[:3], w, b, EPS), "(3, 8)"),
        "delta dtype != weight dtype": ((x, h(delta), w, b, EPS), "torch.float16"),
        "bias dtype != weight dtype": ((x, delta, w, h(b), EPS), "torch.float16"),
        "fp16 residual, fp32 weights": ((h(x), delta, w, b, EPS), "residual"),
        "fp64 weights": ((x.double(), delta.double(), w.double(), b.double(), EPS), "torch.float64"),
        "int x": ((x.int(), None, w, b, EPS), "torch.int32"),
        "strided x": ((torch.cat([x, x], 1)[:, ::2], delta, w, b, EPS), "contiguous"),
        "transposed delta": ((x[:, :4], delta[:, :4].t().contiguous().t(), w[:4], b[:4], EPS), "contiguous"),
        "strided weight": ((x, delta, torch.cat([w, w])[::2], b, EPS), "contiguous"),
        "negative eps": ((x, delta, w, b, -1.0), "-1.0"),
        "nan eps": ((x, delta, w, b, float("nan")), "nan"),
        "list x": ((x.tolist(), delta, w, b, EPS), "list"),
        "too wide": ((torch.zeros(1, 8193, device=device), None, torch.ones(8193, device=device),
                      torch.zeros(8193, device=device), EPS), "8192"),
    }


@pytest.mark.parametrize("what", list(_bad_inputs("cpu")))
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_rejects_bad_input(backend, device, what):
    mod = _backend_or_skip(backend, device)
    if what == "too wide" and backend != "triton":
        pytest.skip("the row-width limit is the Triton kernel's; the CUDA kernel streams any D")
    args, fragment = _bad_inputs(device)[what]
    with pytest.raises((TypeError, ValueError)) as info:
        mod.add_layer_norm(*args)
    assert "add_layer_norm" in str(info.value) and fragment in str(info.value), str(info.value)


def test_rejects_mixed_devices():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device to mix with cpu")
    mod = _backend_or_skip("triton", "cuda")
    x, delta, w, b = _inputs(4, 8, f32, f32, 1, "cuda")
    with pytest.raises(ValueError, match="device"):
        mod.add_layer_norm(x, delta, w.cpu(), b, EPS)


# -- (e) registration, FakeTensor shapes, torch.compile -------------------------------------------

def test_registered_custom_op_passes_opcheck():
    _, device = _kernel_or_skip()
    mod = backends.get("triton")
    assert mod.OP_NAMES["add_layer_norm"] == "fastradio::triton_add_layer_norm"
    op = torch.ops.fastradio.triton_add_layer_norm.default
    for x_dtype, c_dtype, with_delta in ((f32, f32, True), (f32, f16, True), (bf16, bf16, False)):
        x, delta, w, b = _inputs(5, 24, x_dtype, c_dtype, 3, device, with_delta)
        torch.library.opcheck(op, (x, delta, w, b, EPS), test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fake_tensor_shape(backend, device):
    from torch._subclasses.fake_tensor import FakeTensorMode

    mod = _backend_or_skip(backend, device, f16)
    with FakeTensorMode():
        x = torch.empty(1031, 1280, device=device)
        delta = torch.empty(1031, 1280, dtype=f16, device=device)
        w = torch.empty(1280, dtype=f16, device=device)
        x_new, a = mod.add_layer_norm(x, delta, w, w, EPS)
        assert x_new.shape == (1031, 1280) and x_new.dtype == f32 and x_new.device.type == device
        assert a.shape == (1031, 1280) and a.dtype == f16


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_compile_fullgraph(backend, device):
    mod = _backend_or_skip(backend, device, f16)
    # On CPU Inductor spends ~20 s compiling C++; aot_eager still runs Dynamo's full-graph capture
    # and the functionalisation that custom ops must survive (Optional delta included).
    compiler = "inductor" if device == "cuda" else "aot_eager"
    x, delta, w, b = _inputs(6, 40, f32, f16, 4, device)

    def f(x, delta, w, b):
        x1, a1 = mod.add_layer_norm(x, None, w, b, EPS)
        x2, a2 = mod.add_layer_norm(x1, delta, w, b, EPS)
        return x2, a1.float() + a2.float()

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend=compiler)
    for scale in (1.0, 2.0):
        got, want = compiled(x * scale, delta, w, b), f(x * scale, delta, w, b)
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
        torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)


def test_refusals_name_the_reason():
    pytest.importorskip("triton")
    mod = backends.get("triton")
    assert any("dtype" in r for r in mod.supports("add_layer_norm", torch.device("cpu"), torch.int8))
    assert any("width" in r for r in mod.supports("add_layer_norm", torch.device("cpu"), f32, width=10000))


# -- (f) the GPU code, compiled without a GPU -----------------------------------------------------

_COMPILE_CHECK = TRITON_COMPILE_PRELUDE + r"""
import json, os, re, subprocess, sys, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from fastradio.kernels import add_layer_norm as k

ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
out = []
# (residual, compute, D): bf16 mode at the widest and a 128-multiple width, fp16 mode, fp32 mode.
cases = [(arch, *c) for arch in map(int, sys.argv[1:])
         for c in (("bf16", "bf16", 1536), ("bf16", "bf16", 1024), ("fp32", "fp16", 1280), ("fp32", "fp32", 768))]
for arch, xt, ct, d in cases:
    cfg = k.launch_config(32 * 1032, d, (arch // 10, arch % 10))
    sig = {"x_ptr": "*" + xt, "delta_ptr": "*" + ct, "w_ptr": "*" + ct, "b_ptr": "*" + ct, "x_out_ptr": "*" + xt,
           "a_out_ptr": "*" + ct, "N": "i32", "D": "i32", "eps": "fp32", "HAS_DELTA": "constexpr",
           "BLOCK_M": "constexpr", "BLOCK_D": "constexpr", "X_SOFT_BF16": "constexpr", "A_SOFT_BF16": "constexpr"}
    src = ASTSource(fn=k._add_layer_norm_kernel, signature=sig,
                    constexprs={"HAS_DELTA": True, "BLOCK_M": cfg["BLOCK_M"], "BLOCK_D": cfg["BLOCK_D"],
                                "X_SOFT_BF16": False, "A_SOFT_BF16": False},
                    attrs={(i,): [["tt.divisibility", 16]] for i in (0, 1, 2, 3, 4, 5, 7)})
    ptx = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                         options={"num_warps": cfg["num_warps"]}).asm["ptx"]
    res = {"arch": arch, "case": f"{xt}/{ct} D={d} {cfg}", "vector_loads": bool(re.search(r"ld\.global(\.\w+)*\.v4\.b32", ptx)),
           "vector_stores": bool(re.search(r"st\.global(\.\w+)*\.v4\.b32", ptx))}
    if os.path.exists(ptxas):
        target = next(l.split()[1] for l in ptx.splitlines() if l.startswith(".target"))
        with tempfile.TemporaryDirectory() as tmp:
            open(os.path.join(tmp, "k.ptx"), "w").write(ptx)
            p = subprocess.run([ptxas, f"-arch={target}", "-v", os.path.join(tmp, "k.ptx"), "-o",
                                os.path.join(tmp, "k.cubin")], capture_output=True, text=True)
        res["ptxas"] = " ".join(re.findall(r"Used \d+ registers|\d+ bytes spill (?:stores|loads)", p.stderr))
        res["no_spills"] = (p.returncode == 0 and "0 bytes spill stores" in p.stderr
                            and "0 bytes spill loads" in p.stderr)
    out.append(res)
print(json.dumps(out))
"""


def test_compiles_for_the_gpu_without_a_gpu():
    # Triton compiles for a named target with no device (in a process without the interpreter):
    # 16-byte loads and stores along D and, with the bundled ptxas, no spills at the real widths.
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
        print(f"sm_{arch} {case['case']}: {case.get('ptxas', 'no ptxas')}")
        assert case["vector_loads"] and case["vector_stores"], case
        if "no_spills" in case:
            assert case["no_spills"], case
