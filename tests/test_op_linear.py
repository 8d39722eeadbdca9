"""linear (the block GEMMs with fused epilogues), one op test for every backend on every device.

out = act(x·Wᵀ + b) + residual, x (N, K), weight (M, K) in nn.Linear's layout, act "none" or the
exact erf GELU. Checked against a float64 oracle computed from the very same (rounded) inputs:
(a) fp32 tight (relative L2 and max-abs/max|oracle| <= 1e-5: IEEE fp32 products, no TF32), and
    the tolerance provably catches a tanh GELU;
(b) fp16 and bf16 within 2x the error of the reference backend run in that dtype (the precision
    floor, DESIGN §7) plus a tiny slack, and one rounding at the end (the low-precision output is
    the fp32 kernel on the widened inputs, rounded once: bit-exact under the interpreter);
(c) every epilogue the model uses (bias; bias+gelu; bias+residual; none) and the rest, on awkward
    shapes (N = 1, primes, K not a multiple of BLOCK_K, several tile configs incl. the grouped
    order's partial last group), with realistic magnitudes: weights ~ N(0, 1/K), activations
    ~ N(0, 1) with a few large outliers, outputs NaN-poisoned first;
(d) bad inputs rejected with messages naming what was expected and what came; opcheck,
    FakeTensor shapes, torch.compile(fullgraph=True);
(e) the kernel compiles for sm_80 and sm_90 without a GPU (bundled ptxas): no spills, tensor
    cores for 16-bit, IEEE FMAs for fp32.

On CPU the Triton kernel runs only under TRITON_INTERPRET=1 (its bf16 is made exact in software,
see kernels/linear.py); real model shapes, the autotuner and > 2**31-element offsets run only on
a GPU. Inputs are drawn per case from a fixed seed; set FASTRADIO_TEST_SEED to draw others.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import zlib

import pytest
import torch

from fastradio import backends

from kernel_testing import backend_or_skip, dtype_id, TRITON_COMPILE_PRELUDE

BACKENDS = ("reference", "triton", "cuda")
DEVICES = ("cpu", "cuda")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
FP32_TOL = 1e-5  # relative L2, and max-abs relative to max |oracle|
SLACK = 1e-6  # absolute slack (in the same relative units) on top of 2x the precision floor
# TF32 would give ~1e-4..1e-3 here and the tanh GELU ~1e-4: both fail FP32_TOL (checked below).

# Epilogues: name -> (bias, activation, residual). The model uses the first four (qkv/proj/fc2:
# bias; fc1: bias + gelu; a residual epilogue exists for callers; "none" is a bias-free linear).
EPILOGUES = {
    "bias": (True, "none", False),
    "bias_gelu": (True, "gelu", False),
    "bias_residual": (True, "none", True),
    "none": (False, "none", False),
    "gelu": (False, "gelu", False),
    "residual": (False, "none", True),
    "gelu_residual": (False, "gelu", True),
    "bias_gelu_residual": (True, "gelu", True),
}
MODEL_EPILOGUES = ("bias", "bias_gelu", "bias_residual", "none")

# (N, M, K) for the interpreter: tiny and prime sizes, K not a multiple of BLOCK_K (16..64 under
# the interpreter), sizes straddling the tile sizes. Each runs every model epilogue in fp32 and a
# rotation of epilogues in fp16/bf16 (the interpreter is slow on 2 cores).
CASES = [(1, 1, 1), (1, 67, 13), (7, 13, 67), (13, 7, 1), (67, 160, 96), (70, 96, 160), (64, 128, 64),
         (33, 17, 150),
         (5, 4304, 24), (5, 40, 4304)]  # C-RADIOv4-SO400M's MLP width 4304: fc1's ragged N, fc2's ragged K
# Real model GEMMs (qkv, proj, fc1, fc2) at each width, on awkward token counts: GPU only.
GPU_CASES = [
    (n, m, k, ep)
    for d in (768, 1024, 1280, 1536)
    for n in ((1032, 4 * 1032 + 3) if d in (1024, 1280) else (1032,))
    for m, k, ep in ((3 * d, d, "bias"), (d, d, "bias"), (4 * d, d, "bias_gelu"), (d, 4 * d, "bias"))
]


# -- helpers ----------------------------------------------------------------------------------------

def _backend_or_skip(name: str, device: str, dtype: torch.dtype = torch.float32):
    return backend_or_skip(name, "linear", device, dtype)


def _seed(*parts) -> int:
    return zlib.crc32(repr((os.environ.get("FASTRADIO_TEST_SEED", "0"),) + parts).encode())


def _with_outliers(t: torch.Tensor, gen: torch.Generator, count: int, lo: float, hi: float) -> torch.Tensor:
    k = max(1, min(count, t.numel() // 64))
    idx = torch.randint(0, t.numel(), (k,), generator=gen)
    mag = lo + (hi - lo) * torch.rand(k, generator=gen, dtype=torch.float64)
    sign = torch.where(torch.rand(k, generator=gen) < 0.5, -1.0, 1.0).double()
    t.view(-1)[idx] = mag * sign
    return t


def _inputs(n: int, m: int, k: int, seed: int):
    """float64 (x, weight, bias, residual) with trained-ViT magnitudes: x like a LayerNorm output
    (N(0, 1), a few outliers of 8..20), weight ~ N(0, 1/K) (unit-variance outputs), bias ~ N(0, 0.1),
    residual like a residual stream (N(0, 1), a few outliers of 20..60)."""
    gen = torch.Generator().manual_seed(seed)
    x = _with_outliers(torch.randn(n, k, generator=gen, dtype=torch.float64), gen, 8, 8.0, 20.0)
    w = torch.randn(m, k, generator=gen, dtype=torch.float64) / math.sqrt(k)
    b = 0.1 * torch.randn(m, generator=gen, dtype=torch.float64)
    r = _with_outliers(torch.randn(n, m, generator=gen, dtype=torch.float64), gen, 8, 20.0, 60.0)
    return x, w, b, r


def _gelu64(y: torch.Tensor, tanh: bool = False) -> torch.Tensor:
    if tanh:  # the approximation a wrong kernel might use
        return 0.5 * y * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (y + 0.044715 * y ** 3)))
    return 0.5 * y * (1.0 + torch.special.erf(y / math.sqrt(2.0)))


def _oracle(x, w, b, act, r, tanh: bool = False) -> torch.Tensor:
    """float64 act(x·Wᵀ + b) + r of the given (already rounded) tensors, written out by hand."""
    y = x.double() @ w.double().t()
    if b is not None:
        y = y + b.double()
    if act == "gelu":
        y = _gelu64(y, tanh)
    if r is not None:
        y = y + r.double()
    return y


@functools.lru_cache(maxsize=16)
def _case_data(n: int, m: int, k: int, epilogue: str, dtype: torch.dtype, device: str):
    """(x, weight, bias, activation, residual) in ``dtype`` on ``device``, and the float64 oracle
    of exactly those values (on ``device``)."""
    has_b, act, has_r = EPILOGUES[epilogue]
    x, w, b, r = (t.to(device=device, dtype=dtype) for t in _inputs(n, m, k, _seed(n, m, k)))
    args = (x, w, b if has_b else None, act, r if has_r else None)
    return args, _oracle(*args)


def _err(out: torch.Tensor, oracle: torch.Tensor) -> tuple[float, float]:
    """(relative L2, max-abs / max|oracle|) of out against the float64 oracle."""
    e = out.to(oracle.device).double() - oracle
    scale = oracle.abs().max().clamp_min(1e-30)
    return ((e.norm() / oracle.norm().clamp_min(1e-30)).item(), (e.abs().max() / scale).item())


def _poison_allocator(shape, dtype, device):
    # The backend API has no out=: fill a same-sized block with NaN and free it, so a caching
    # allocator (CUDA) is likely to hand it back as the output and unwritten elements show up.
    torch.full(shape, float("nan"), dtype=dtype, device=device)


def _check_against_oracle(mod, args, oracle, dtype, device):
    x, w, b, act, r = args
    n, m = x.shape[0], w.shape[0]
    _poison_allocator((n, m), dtype, device)
    out = mod.linear(*args)
    assert out.shape == (n, m) and out.dtype == dtype and out.device == x.device and out.is_contiguous()
    assert torch.isfinite(out).all(), "NaN/inf in the output: unwritten or garbage elements"
    rel, mx = _err(out, oracle)
    if dtype == torch.float32:
        assert rel <= FP32_TOL and mx <= FP32_TOL, f"fp32 error rel L2 {rel:.3g}, max {mx:.3g} (bound {FP32_TOL:g})"
        ref = backends.get("reference").linear(*args)  # and the reference backend itself
        assert _err(out, ref.double())[1] <= 2 * FP32_TOL
        return out
    # The precision floor: the reference backend in the same dtype, on the same device, same inputs.
    floor = backends.get("reference").linear(*args)
    frel, fmx = _err(floor, oracle)
    assert rel <= 2 * frel + SLACK and mx <= 2 * fmx + SLACK, (
        f"{dtype} error rel L2 {rel:.3g} / max {mx:.3g} vs precision floor {frel:.3g} / {fmx:.3g}")
    return out


# -- (a) the oracle and what the fp32 tolerance catches --------------------------------------------

def test_oracle_is_the_reference_in_float64():
    (x, w, b, act, r), oracle = _case_data(67, 160, 96, "bias_gelu_residual", torch.float32, "cpu")
    ref = backends.get("reference").linear(x.double(), w.double(), b.double(), act, r.double())
    torch.testing.assert_close(ref, oracle, rtol=1e-12, atol=1e-12)


def test_the_fp32_tolerance_catches_a_tanh_gelu():
    # Pre-activations over [-6, 6] (where the two GELUs differ by up to ~5e-4 absolute).
    args, oracle = _case_data(70, 96, 160, "bias_gelu", torch.float32, "cpu")
    x, w, b, act, r = args
    wrong = _oracle(x, w, b, act, r, tanh=True)
    rel, mx = _err(wrong, oracle)
    assert rel > 5 * FP32_TOL and mx > 5 * FP32_TOL, (rel, mx)  # ~2e-4 and ~9e-5


def test_the_fp32_tolerance_catches_tf32_products():
    args, oracle = _case_data(70, 96, 160, "bias", torch.float32, "cpu")
    x, w, b, act, r = args

    def tf32(t):  # keep 10 mantissa bits (round to nearest), as TF32 tensor cores do
        return (t.view(torch.int32) + 0x1000).bitwise_and(~0x1FFF).view(torch.float32)

    wrong = _oracle(tf32(x), tf32(w), b, act, r)
    assert _err(wrong, oracle)[0] > 10 * FP32_TOL


# -- (b, c) every backend against the oracle --------------------------------------------------------

def _op_cases():
    for i, (n, m, k) in enumerate(CASES):
        for dtype in DTYPES:
            if dtype == torch.float32:
                eps = MODEL_EPILOGUES
            else:  # a rotation: each dtype meets every epilogue across the 8 shapes
                names = list(EPILOGUES)
                eps = (names[(i + 4 * (dtype == torch.bfloat16)) % len(names)],)
            for ep in eps:
                yield pytest.param(n, m, k, ep, dtype, id=f"{n}x{m}x{k}-{ep}-{dtype_id(dtype)}")
    for n, m, k, ep in GPU_CASES:
        for dtype in DTYPES:
            yield pytest.param(n, m, k, ep, dtype, id=f"{n}x{m}x{k}-{ep}-{dtype_id(dtype)}-gpuonly")


@pytest.mark.parametrize("n,m,k,epilogue,dtype", list(_op_cases()))
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_against_oracle(backend, device, n, m, k, epilogue, dtype):
    if device == "cpu" and (n, m, k, epilogue) in GPU_CASES:
        pytest.skip("real model shape: GPU only (interpreter and fp64 oracle time on CPU)")
    mod = _backend_or_skip(backend, device, dtype)
    args, oracle = _case_data(n, m, k, epilogue, dtype, device)
    out = _check_against_oracle(mod, args, oracle, dtype, device)
    if dtype == torch.float32 or backend == "reference":
        return
    # One rounding at the end: the fp32 kernel on the widened inputs, rounded once. Exact under the
    # interpreter (same tiles, same fp32 sums); on a GPU the tensor-core and FMA sums differ in order.
    x, w, b, act, r = args
    out32 = mod.linear(*(t.float() if isinstance(t, torch.Tensor) else t for t in args)).to(dtype)
    if device == "cpu":
        assert torch.equal(out, out32), (out.float() - out32.float()).abs().max()
    else:
        torch.testing.assert_close(out, out32, rtol=2 * torch.finfo(dtype).eps, atol=1e-5)


@pytest.mark.parametrize("epilogue", list(EPILOGUES))
def test_every_epilogue_in_fp32(epilogue):
    mod = _backend_or_skip("triton", "cpu")
    args, oracle = _case_data(33, 17, 150, epilogue, torch.float32, "cpu")
    _check_against_oracle(mod, args, oracle, torch.float32, "cpu")


def test_gelu_is_erf_not_tanh():
    # The kernel's fp32 GELU output is ~100x closer to the erf oracle than to the tanh one.
    mod = _backend_or_skip("triton", "cpu")
    args, oracle = _case_data(70, 96, 160, "bias_gelu", torch.float32, "cpu")
    out = mod.linear(*args)
    x, w, b, act, r = args
    to_erf = _err(out, oracle)[1]
    to_tanh = _err(out, _oracle(x, w, b, act, r, tanh=True))[1]
    assert to_erf * 100 < to_tanh, (to_erf, to_tanh)


def test_empty_batch():
    mod = _backend_or_skip("triton", "cpu")
    x = torch.empty(0, 24)
    w = torch.randn(40, 24)
    out = mod.linear(x, w, torch.zeros(40), "gelu", None)
    assert out.shape == (0, 40) and out.dtype == torch.float32


# -- the launcher below the backend: out=, tile configs ----------------------------------------------

@pytest.fixture(scope="module")
def kernel():
    reasons = backends.refusals("triton", "linear", torch.device("cpu"), torch.float32)
    if reasons and not torch.cuda.is_available():
        pytest.skip("triton cannot run here: " + "; ".join(reasons))
    from fastradio.kernels import linear as k  # tests may reach below the backend

    return k


def _device() -> str:
    return "cpu" if not backends.refusals("triton", "linear", torch.device("cpu"), torch.float32) else "cuda"


def _cfg(bn, bm, bk, group):
    return {"BLOCK_N": bn, "BLOCK_M": bm, "BLOCK_K": bk, "GROUP_N": group, "num_warps": 4, "num_stages": 1}


# Small tiles so that one problem has many tiles: N = 67 -> 5 row tiles of 16, GROUP_N = 2 leaves a
# partial last group of 1; K = 150 -> 9 full 16-steps and a tail of 6 (or 2 x 64 + 22); M = 40 ->
# a partial last column tile (and a partial half-tile in the split epilogue).
@pytest.mark.parametrize("cfg", [_cfg(16, 32, 16, 2), _cfg(32, 16, 64, 1), _cfg(16, 64, 32, 3)],
                         ids=lambda c: "x".join(str(c[k]) for k in ("BLOCK_N", "BLOCK_M", "BLOCK_K", "GROUP_N")))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
def test_launcher_writes_every_element_of_a_poisoned_out(kernel, cfg, dtype):
    device = _device()
    args, oracle = _case_data(67, 40, 150, "bias_gelu_residual", dtype, device)
    x, w, b, act, r = args
    out = torch.full((67, 40), float("nan"), dtype=dtype, device=device)
    if device == "cuda":
        cfg = dict(cfg, num_stages=2)
    got = kernel.linear(x, w, b, act, r, out=out, config=cfg)
    assert got.data_ptr() == out.data_ptr()
    assert torch.isfinite(out).all()
    rel, mx = _err(out, oracle)
    bound = FP32_TOL if dtype == torch.float32 else 2 * _err(backends.get("reference").linear(*args), oracle)[1] + SLACK
    assert mx <= bound, (rel, mx, bound)


@pytest.mark.parametrize("k", [16, 64, 150])
def test_unmasked_and_masked_k_loops_agree(kernel, k):
    # BLOCK_K = 16 divides K = 16 and 64 (unmasked loads, EVEN_K); BLOCK_K = 64 leaves a masked tail
    # for K = 16 and 150. Both must give the oracle's numbers.
    device = _device()
    args, oracle = _case_data(20, 24, k, "bias", torch.float32, device)
    for cfg in (_cfg(16, 16, 16, 1), _cfg(16, 32, 64, 2)):
        assert _err(kernel.linear(*args, config=cfg), oracle)[1] <= FP32_TOL, cfg


def test_launcher_rejects_a_wrong_out_and_config(kernel):
    x = torch.zeros(3, 8)
    w = torch.zeros(5, 8)
    for bad in (torch.empty(3, 6), torch.empty(3, 5, dtype=torch.float16), torch.empty(5, 3).t()):
        with pytest.raises(ValueError, match="out must be"):
            kernel.linear(x, w, out=bad)
    for cfg in ({"BLOCK_N": 16}, dict(_cfg(16, 16, 16, 1), BLOCK_M=24), dict(_cfg(16, 16, 16, 1), BLOCK_K=128),
                "BLOCK_N=16"):
        with pytest.raises(ValueError, match="config|FASTRADIO_LINEAR_CONFIG"):
            kernel.linear(x, w, config=cfg)


def test_in_place_residual_add_and_overlap_rejected(kernel):
    device = _device()
    args, oracle = _case_data(13, 7, 67, "bias_gelu_residual", torch.float32, device)
    x, w, b, act, r = args
    r = r.clone()
    got = kernel.linear(x, w, b, act, r, out=r, config=_cfg(16, 16, 16, 1))  # out is the residual
    assert got.data_ptr() == r.data_ptr() and _err(r, oracle)[1] <= FP32_TOL
    square = torch.randn(67, 67, device=device)  # (M, K) = (67, 67): the output has x's shape
    with pytest.raises(ValueError, match="out must not overlap x"):
        kernel.linear(x, square, None, "none", None, out=x)
    big = torch.zeros(13 * 7 + 1, device=device)
    with pytest.raises(ValueError, match="out must not overlap residual"):
        kernel.linear(x, w, None, "none", big[:91].view(13, 7), out=big[1:].view(13, 7))


def test_config_from_the_environment(kernel, monkeypatch):
    device = _device()
    args, oracle = _case_data(13, 7, 67, "bias_gelu", torch.float32, device)
    monkeypatch.setenv(kernel.CONFIG_ENV, "BLOCK_N=16,BLOCK_M=16,BLOCK_K=16,GROUP_N=1,num_warps=4,num_stages=2")
    assert _err(kernel.linear(*args), oracle)[1] <= FP32_TOL
    monkeypatch.setenv(kernel.CONFIG_ENV, "heuristic")
    assert _err(kernel.linear(*args), oracle)[1] <= FP32_TOL
    monkeypatch.setenv(kernel.CONFIG_ENV, "BLOCK_N=16,oops")
    with pytest.raises(ValueError, match=kernel.CONFIG_ENV):
        kernel.linear(*args)


def test_launch_config_is_deterministic_and_tiles_real_shapes(kernel):
    for cap in ((8, 0), (8, 6), (9, 0)):
        for dtype in DTYPES:
            for d in (768, 1024, 1280, 1536):
                for n in (8, 1032, 32 * 1032, 540_000):
                    for m, k in ((3 * d, d), (d, d), (4 * d, d), (d, 4 * d)):
                        cfg = kernel.launch_config(n, m, k, dtype, cap)
                        assert cfg == kernel.launch_config(n, m, k, dtype, cap)
                        assert cfg in kernel.autotune_configs(cap, dtype)  # the autotuner's list holds it
                        assert m % cfg["BLOCK_M"] == 0 and k % cfg["BLOCK_K"] == 0  # no masked K, no idle columns
    # Large batches get the big tile; batch 1 a smaller one (the big tile's grid of 9 x 4 programs
    # would leave 96 of an H100's 132 SMs idle).
    for m, k in ((3072, 1024), (1024, 1024), (4096, 1024), (1024, 4096)):
        big = kernel.launch_config(32 * 1032, m, k, torch.bfloat16, (9, 0), num_sms=132)
        assert (big["BLOCK_N"], big["BLOCK_M"]) == (128, 256)
    small = kernel.launch_config(1032, 1024, 1024, torch.bfloat16, (9, 0), num_sms=132)
    assert small["BLOCK_N"] * small["BLOCK_M"] < 128 * 256
    # sm_86/89 have 99 KiB of shared memory: their list is the part of sm_80's that fits.
    assert len(kernel.autotune_configs((8, 6), torch.bfloat16)) <= len(kernel.autotune_configs((8, 0), torch.bfloat16))
    assert kernel.launch_config(1, 1, 1, torch.float32)["BLOCK_N"] == 16  # interpreter


# -- (d) wrong inputs are rejected ------------------------------------------------------------------

FAST_BACKENDS = ("triton", "cuda")


def _bad_inputs(device):
    f = torch.float32
    x = torch.randn(6, 8, device=device)
    w = torch.randn(5, 8, device=device)
    b = torch.randn(5, device=device)
    r = torch.randn(6, 5, device=device)
    # name -> (args, words the message must contain: what was expected and what came)
    return {
        "K mismatch": ((x, torch.randn(5, 7, device=device), b, "none", None), ["(M, 8)", "(5, 7)"]),
        "1-D x": ((x[0], w, b, "none", None), ["(N, K)", "(8,)"]),
        "3-D x": ((x[None], w, b, "none", None), ["(N, K)", "(1, 6, 8)"]),
        "K == 0": ((x[:, :0].contiguous(), w[:, :0].contiguous(), b, "none", None), ["K >= 1", "(6, 0)"]),
        "3-D weight": ((x, w[None], b, "none", None), ["(M, K)", "(1, 5, 8)"]),
        "bias shape": ((x, w, torch.randn(6, device=device), "none", None), ["(5,)", "(6,)"]),
        "2-D bias": ((x, w, b[None], "none", None), ["(5,)", "(1, 5)"]),
        "residual shape": ((x, w, b, "none", r.t().contiguous()), ["(6, 5)", "(5, 6)"]),
        "tanh activation": ((x, w, b, "tanh", None), ["'gelu'", "'tanh'"]),
        "GELU spelling": ((x, w, b, "GELU", None), ["'gelu'", "'GELU'"]),
        "None activation": ((x, w, b, None, None), ["'none'", "None"]),
        "fp64 x": ((x.double(), w.double(), b.double(), "none", None), ["float32", "float64"]),
        "int x": ((x.int(), w.int(), b.int(), "none", None), ["float32", "int32"]),
        "fp16 weight": ((x, w.half(), b, "none", None), ["weight", "float32", "float16"]),
        "bf16 bias": ((x, w, b.bfloat16(), "none", None), ["bias", "float32", "bfloat16"]),
        "fp16 residual": ((x, w, b, "none", r.half()), ["residual", "float32", "float16"]),
        "transposed weight": ((x, torch.randn(8, 5, device=device).t(), b, "none", None), ["weight", "contiguous"]),
        "strided x": ((torch.randn(6, 16, device=device)[:, ::2], w, b, "none", None), ["x", "contiguous"]),
        "strided bias": ((x, w, torch.randn(10, device=device)[::2], "none", None), ["bias", "contiguous"]),
        "transposed residual": ((x, w, b, "none", torch.randn(5, 6, device=device).t()), ["residual", "contiguous"]),
        "weight not a tensor": ((x, w.tolist(), b, "none", None), ["weight", "Tensor", "list"]),
        "bias not a tensor": ((x, w, 0.5, "none", None), ["bias", "Tensor or None", "float"]),
        "meta weight": ((x, w.to("meta"), b, "none", None), ["weight", "meta"]),
    }


@pytest.mark.parametrize("what", list(_bad_inputs("cpu")))
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_rejects_bad_input(backend, device, what):
    mod = _backend_or_skip(backend, device)
    args, words = _bad_inputs(device)[what]
    with pytest.raises((TypeError, ValueError, RuntimeError)) as info:
        mod.linear(*args)
    msg = str(info.value)
    for word in words:
        assert word in msg, f"{word!r} missing from the error: {msg}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_rejects_a_device_it_refuses(backend, device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device to make a tensor on")
    reasons = backends.refusals(backend, "linear", torch.device(device), torch.float32)
    if not reasons:
        pytest.skip(f"{backend} runs on {device} here; nothing to refuse")
    try:
        mod = backends.get(backend)
    except ImportError as e:
        pytest.skip(f"{backend} does not import: {e}")
    if not hasattr(mod, "linear"):
        pytest.skip(f"{backend} does not implement linear")
    with pytest.raises((TypeError, ValueError, RuntimeError)):
        mod.linear(torch.randn(3, 4, device=device), torch.randn(2, 4, device=device), None, "none", None)


def test_refusals_name_the_reason():
    pytest.importorskip("triton")
    mod = backends.get("triton")
    assert any("dtype" in r for r in mod.supports("linear", torch.device("cpu"), torch.int8))
    assert any("device type" in r for r in mod.supports("linear", torch.device("meta"), torch.float32))


# -- (d) custom op, FakeTensor shapes, torch.compile -------------------------------------------------

def test_registered_custom_op_passes_opcheck():
    _backend_or_skip("triton", _device())
    device = _device()
    mod = backends.get("triton")
    assert mod.OP_NAMES["linear"] == "fastradio::triton_linear"
    assert "linear" in mod.__all__
    op = torch.ops.fastradio.triton_linear.default
    x = torch.randn(7, 24, device=device)
    w = torch.randn(40, 24, device=device) / 5
    b = torch.randn(40, device=device)
    r = torch.randn(7, 40, device=device)
    for args in ((x, w, b, "gelu", None), (x, w, None, "none", r), (x.half(), w.half(), b.half(), "none", r.half()),
                 (x[:1], w, None, "gelu", None)):
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fake_tensor_shape(backend, device):
    from torch._subclasses.fake_tensor import FakeTensorMode

    mod = _backend_or_skip(backend, device, torch.bfloat16)
    with FakeTensorMode():
        x = torch.empty(1031, 1280, device=device, dtype=torch.bfloat16)
        w = torch.empty(5120, 1280, device=device, dtype=torch.bfloat16)
        b = torch.empty(5120, device=device, dtype=torch.bfloat16)
        out = mod.linear(x, w, b, "gelu", None)
        assert out.shape == (1031, 5120) and out.dtype == torch.bfloat16 and out.device.type == device
        r = torch.empty(1031, 1280, device=device, dtype=torch.bfloat16)
        out = mod.linear(out, torch.empty(1280, 5120, device=device, dtype=torch.bfloat16), None, "none", r)
        assert out.shape == (1031, 1280)


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph(device):
    mod = _backend_or_skip("triton", device, torch.float32)
    # On CPU, aot_eager still runs Dynamo's full-graph capture and the functionalisation that
    # custom ops must survive (Inductor would spend ~20 s compiling C++ for a tiny graph).
    compiler = "inductor" if device == "cuda" else "aot_eager"
    (x, w, b, act, r), _ = _case_data(13, 7, 67, "bias_gelu", torch.float32, device)

    def f(x, scale):
        hid = mod.linear(x, w, b, "gelu", None)
        return mod.linear(hid, w.t().contiguous()[:, :7].contiguous(), None, "none", x[:, :67]) * scale

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend=compiler)
    torch.testing.assert_close(compiled(x, 2.0), f(x, 2.0), rtol=0, atol=0)
    torch.testing.assert_close(compiled(x, 3.0), f(x, 3.0), rtol=0, atol=0)


# -- GPU only: autotuner, every config, > 2**31-element offsets -------------------------------------

def _cuda_kernel_or_skip():
    _backend_or_skip("triton", "cuda")
    from fastradio.kernels import linear as k

    return k


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)  # fp16: same code as bf16
def test_every_config_of_this_gpu(dtype):
    # Each config the autotuner may pick, on an awkward shape with every masked edge and a K tail.
    k = _cuda_kernel_or_skip()
    cap = torch.cuda.get_device_capability()
    args, oracle = _case_data(1031, 760, 1000, "bias_gelu_residual", dtype, "cuda")
    floor = None if dtype == torch.float32 else _err(backends.get("reference").linear(*args), oracle)
    for cfg in k.autotune_configs(cap, dtype):
        out = torch.full((1031, 760), float("nan"), dtype=dtype, device="cuda")
        k.linear(*args, out=out, config=cfg)
        rel, mx = _err(out, oracle)
        if floor is None:
            assert rel <= FP32_TOL and mx <= FP32_TOL, (cfg, rel, mx)
        else:
            assert rel <= 2 * floor[0] + SLACK and mx <= 2 * floor[1] + SLACK, (cfg, rel, mx, floor)


def test_autotuned_launch_on_a_model_shape(monkeypatch):
    # The opt-in GPU path: Triton's autotuner over the arch's list, keyed on (M, K, N bucket).
    k = _cuda_kernel_or_skip()
    monkeypatch.setenv(k.CONFIG_ENV, "autotune")
    args, oracle = _case_data(4 * 1032 + 3, 4096, 1024, "bias_gelu", torch.bfloat16, "cuda")
    out = torch.full((4 * 1032 + 3, 4096), float("nan"), dtype=torch.bfloat16, device="cuda")
    k.linear(*args, out=out)
    floor = _err(backends.get("reference").linear(*args), oracle)
    rel, mx = _err(out, oracle)
    assert rel <= 2 * floor[0] + SLACK and mx <= 2 * floor[1] + SLACK, (rel, mx, floor)


def test_offsets_past_2_to_the_31():
    # N*K and N*M above 2**31 elements: rows at the end must land where they belong (int64 offsets).
    k = _cuda_kernel_or_skip()
    n, m, kk = 2**21 + 17, 1024, 1024
    if torch.cuda.get_device_properties(0).total_memory < 24 * 2**30:
        pytest.skip("needs ~9 GiB free on the GPU")
    gen = torch.Generator(device="cuda").manual_seed(_seed("big"))
    x = torch.randn(n, kk, device="cuda", dtype=torch.bfloat16, generator=gen)
    w = (torch.randn(m, kk, device="cuda", generator=gen) / 32).to(torch.bfloat16)
    out = k.linear(x, w, None, "none", None, config="heuristic")
    for rows in (slice(0, 64), slice(n // 2, n // 2 + 64), slice(n - 64, n)):
        expect = _oracle(x[rows], w, None, "none", None)
        floor = _err(backends.get("reference").linear(x[rows], w), expect)
        rel, mx = _err(out[rows], expect)
        assert rel <= 2 * floor[0] + SLACK and mx <= 2 * floor[1] + SLACK, (rows, rel, mx, floor)
    del x, out


# -- (e) compiles for sm_80 and sm_90 without a GPU -------------------------------------------------

_COMPILE_CHECK = TRITON_COMPILE_PRELUDE + r"""
import json, os, re, subprocess, sys, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from fastradio.kernels import linear as k

arch = int(sys.argv[1])
cap = (arch // 10, arch % 10)
ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
big16, mid16, small16 = k._HEURISTIC[(k._family(cap), "16bit")]
big32 = k._HEURISTIC[(k._family(cap), "fp32")][0]
# (dtype, config, epilogue): the heaviest epilogue (bias + GELU, fc1) on the big and mid tiles
# (the small one has half their registers), the residual epilogue on the big tile, and fp32.
jobs = [("bf16", big16, "gelu"), ("bf16", big16, "residual"), ("fp16", mid16, "gelu"), ("fp32", big32, "gelu")]
results = []
for dt, cfg, ep in jobs:
    ty = "*" + dt
    sig = {"x_ptr": ty, "w_ptr": ty, "b_ptr": ty, "r_ptr": ty, "out_ptr": ty,
           "N": "i32", "M": "i32", "K": "i32", "N_BUCKET": "i32"}
    consts = dict(HAS_BIAS=True, GELU=ep == "gelu", HAS_RESIDUAL=ep == "residual", EVEN_K=True,
                  DOT_PRECISION="ieee" if dt == "fp32" else "tf32", INTERPRETED=False,
                  BLOCK_N=cfg["BLOCK_N"], BLOCK_M=cfg["BLOCK_M"], BLOCK_K=cfg["BLOCK_K"], GROUP_N=cfg["GROUP_N"])
    sig.update({c: "constexpr" for c in consts})
    names = list(sig)
    aligned = ("x_ptr", "w_ptr", "b_ptr", "r_ptr", "out_ptr", "M", "K")  # as the launcher specialises them
    attrs = {(names.index(p),): [["tt.divisibility", 16]] for p in aligned}
    src = ASTSource(fn=k._linear_kernel, signature=sig, constexprs=consts, attrs=attrs)
    c = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                       options={"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]})
    ptx = c.asm["ptx"]
    tile = f"{cfg['BLOCK_N']}x{cfg['BLOCK_M']}x{cfg['BLOCK_K']} w{cfg['num_warps']} s{cfg['num_stages']}"
    res = {"job": f"{dt} {tile} {ep}",
           "smem": c.metadata.shared, "wgmma": "wgmma" in ptx, "mma": "mma.sync" in ptx, "fp32": dt == "fp32"}
    if os.path.exists(ptxas):
        target = next(l.split()[1] for l in ptx.splitlines() if l.startswith(".target"))
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "k.ptx"), "w").write(ptx)
            p = subprocess.run([ptxas, f"-arch={target}", "-v", os.path.join(d, "k.ptx"), "-o",
                                os.path.join(d, "k.cubin")], capture_output=True, text=True)
        res["ptxas_rc"] = p.returncode
        res["ptxas"] = p.stderr[-600:]
        m = re.search(r"Used (\d+) registers", p.stderr)
        res["regs"] = int(m.group(1)) if m else None
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", p.stderr)
        res["spill"] = [int(m.group(1)), int(m.group(2))] if m else None
    results.append(res)
print(json.dumps({"results": results}))
"""

_SMEM_LIMIT = {80: 163 * 1024, 90: 227 * 1024}


@pytest.fixture(scope="module")
def compiled_for_gpus():
    # Both archs compile concurrently (two processes, two cores), without the interpreter.
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    procs = {arch: subprocess.Popen([sys.executable, "-c", _COMPILE_CHECK, str(arch)], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for arch in (80, 90)}
    out = {}
    for arch, p in procs.items():
        stdout, stderr = p.communicate(timeout=600)
        out[arch] = (p.returncode, stdout, stderr)
    return out


@pytest.mark.parametrize("arch", [80, 90])
def test_compiles_for_the_gpu_without_a_gpu(compiled_for_gpus, arch):
    # sm_80: mma.sync for fp16/bf16; sm_90: wgmma; fp32: IEEE FMAs (no tensor cores, no TF32).
    # With the bundled ptxas: no spills (the split epilogue keeps the erf GELU within 255
    # registers) and shared memory within the arch's limit.
    rc, stdout, stderr = compiled_for_gpus[arch]
    assert rc == 0, stderr[-3000:]
    out = json.loads(stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(f"cannot compile for sm_{arch} here: {out['skip']}")
    for res in out["results"]:
        assert res["smem"] <= _SMEM_LIMIT[arch], res
        if res["fp32"]:
            assert not res["wgmma"] and not res["mma"], res
        else:
            assert res["wgmma"] if arch == 90 else res["mma"], res
        if "ptxas_rc" in res:
            assert res["ptxas_rc"] == 0 and res["spill"] == [0, 0], res
