"""add_layer_norm in the CUDA backend (csrc/add_layer_norm/, backends/cuda/_add_layer_norm.py).

Without a GPU: the binding refuses bad arguments before touching CUDA and fails cleanly without
a driver; the wrapper validates tensors and explains its refusals; the fake implementation gives
the right shapes; and the kernel's arithmetic runs on the host through ``_C._add_layer_norm_host``
(the same per-element and per-row helpers as the kernel) against a float64 oracle: the residual
rounding is bit-exact with the reference, fp32 outputs are within 1e-5, fp16/bf16 outputs within
2x the reference backend's own error (the precision floor, DESIGN.md §7), and a row with mean 1e3
and standard deviation 1e-2 is right.

With a GPU: the kernel against the oracle and the reference for every dtype pair, awkward widths
and token counts, with NaN-poisoned outputs, unaligned storage (scalar path), rows too wide for
registers (streaming path), a NaN confined to its row, CUDA-graph capture, opcheck and
torch.compile. Inputs are drawn per case from a fixed seed (FASTRADIO_TEST_SEED draws others).
"""

from __future__ import annotations

import math
import os
import zlib

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from fastradio import _C
from fastradio.backends import cuda
from fastradio.backends import reference

from kernel_testing import needs_gpu, no_gpu

CODES = _C.dtype_codes()
TIERS = _C.tiers()
INFO = _C.build_info()
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
#: (residual dtype, compute dtype): the pairs the op takes.
PAIRS = [(F32, F32), (BF16, BF16), (F16, F16), (F32, F16), (F32, BF16)]
EPS = 1e-6  # C-RADIOv2's LayerNorm eps
FP32_TOL = 1e-5  # relative L2 and max-abs relative to max |oracle|


def _code(dtype: torch.dtype) -> int:
    return CODES[str(dtype).removeprefix("torch.")]


def _pair_id(pair) -> str:
    return "-".join(str(d).removeprefix("torch.") for d in pair)


def _seed(*parts) -> int:
    return zlib.crc32(repr((os.environ.get("FASTRADIO_TEST_SEED", "0"),) + parts).encode())


def _inputs(n: int, d: int, pair, seed: int, device: str = "cpu", large_mean: bool = False):
    """(x, delta, weight, bias) like a trained ViT's: a residual stream with a few outlier channels,
    LayerNorm weights around 1 and small biases. ``large_mean``: x = 1e3 + 1e-2 N(0, 1)."""
    xdt, wdt = pair
    gen = torch.Generator().manual_seed(seed)
    if large_mean:
        x = 1e3 + 1e-2 * torch.randn(n, d, generator=gen, dtype=torch.float64)
        delta = 1e-3 * torch.randn(n, d, generator=gen)
    else:
        x = torch.randn(n, d, generator=gen)
        if d >= 8:
            ch = torch.randperm(d, generator=gen)[:max(1, d // 256)]
            x[:, ch] *= 80.0
        delta = 0.5 * torch.randn(n, d, generator=gen)
    w = 1.0 + 0.3 * torch.randn(d, generator=gen)
    b = 0.1 * torch.randn(d, generator=gen)
    return (x.to(xdt).to(device), delta.to(wdt).to(device), w.to(wdt).to(device), b.to(wdt).to(device))


def _oracle(x_new: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """LayerNorm of the (already rounded) residual in float64."""
    return F.layer_norm(x_new.double(), (x_new.shape[-1],), w.double(), b.double(), eps)


def _err(a: torch.Tensor, oracle: torch.Tensor) -> tuple[float, float]:
    """(relative L2, max-abs / max|oracle|) of a against the float64 oracle."""
    e = a.to(oracle.device).double() - oracle
    return ((e.norm() / oracle.norm().clamp_min(1e-30)).item(),
            (e.abs().max() / oracle.abs().max().clamp_min(1e-30)).item())


def _host(x, delta, w, b, eps=EPS):
    """The kernel's math on CPU tensors; outputs NaN-poisoned first."""
    n, d = x.shape
    x_new = None if delta is None else torch.full_like(x, float("nan"))
    a = torch.full((n, d), float("nan"), dtype=w.dtype)
    _C._add_layer_norm_host(x.data_ptr(), 0 if delta is None else delta.data_ptr(), w.data_ptr(), b.data_ptr(),
                            0 if x_new is None else x_new.data_ptr(), a.data_ptr(), n, d, eps,
                            _code(x.dtype), _code(w.dtype))
    return (x if delta is None else x_new), a


def _check_against_oracle(x_new, a, x, delta, w, b, eps=EPS, *, vs_reference: bool = True):
    """x_new bit-exact with the reference; a within FP32_TOL (fp32) or 2x the reference's own
    error (fp16/bf16) of the float64 oracle."""
    ref_x, ref_a = reference.add_layer_norm(x, delta, w, b, eps)
    assert x_new.dtype == x.dtype and a.dtype == w.dtype and a.shape == x.shape
    assert torch.equal(x_new.view(torch.int8), ref_x.view(torch.int8)), "x + delta differs from the reference"
    assert torch.isfinite(a).all(), "NaN/inf in the output: unwritten or garbage elements"
    oracle = _oracle(ref_x, w, b, eps)
    rel, mx = _err(a, oracle)
    if w.dtype == F32:
        assert rel <= FP32_TOL and mx <= FP32_TOL, f"fp32 error rel L2 {rel:.3g}, max {mx:.3g} (bound {FP32_TOL:g})"
        if vs_reference:
            rrel, rmx = _err(a, ref_a.double())
            assert rrel <= FP32_TOL and rmx <= FP32_TOL, f"vs reference: rel L2 {rrel:.3g}, max {rmx:.3g}"
        return
    frel, fmx = _err(ref_a, oracle)
    assert rel <= 2 * frel + 1e-12 and mx <= 2 * fmx + 1e-12, (
        f"{w.dtype} error rel L2 {rel:.3g} / max {mx:.3g} vs precision floor {frel:.3g} / {fmx:.3g}")


# -- the build ---------------------------------------------------------------------------------------

def test_built_for_every_arch_of_the_build():
    assert "cuda_core" in INFO["tiers"]["add_layer_norm"]
    portable = [a for a in INFO["archs"] if not (a[-1] in "af" and a[:-1] in INFO["archs"])]  # no 90a next to 90
    assert INFO["kernels"]["add_layer_norm"]["cuda_core"]["sass"] == portable
    assert cuda.OP_NAMES["add_layer_norm"] == "fastradio::cuda_add_layer_norm"
    a = int([s for s in INFO["archs"] if not s.endswith("a")][0])
    assert _C.check_arch("add_layer_norm", "cuda_core", a // 10, a % 10) == ""
    assert "built without sm_50" in _C.check_arch("add_layer_norm", "cuda_core", 5, 0)


# -- the binding refuses bad arguments before any CUDA call ------------------------------------------

GOOD = dict(x=0x1000, delta=0x2000, weight=0x3000, bias=0x4000, x_new=0x5000, out=0x6000, rows=13, dim=768,
            eps=1e-6, x_dtype=0, w_dtype=0, tier=0, stream=0)


@pytest.mark.parametrize("change,expect", [
    (dict(x=0), "x must be a non-null device pointer, got 0"),
    (dict(weight=0), "weight must be a non-null device pointer, got 0"),
    (dict(bias=0), "bias must be a non-null device pointer, got 0"),
    (dict(out=0), "out must be a non-null device pointer, got 0"),
    (dict(x_new=0), "x_new must be a non-null device pointer when delta is given, got 0"),
    (dict(delta=0), "x_new must be 0 when delta is 0 (no add: nothing to write), got 0x5000"),
    (dict(rows=0), "rows must be >= 1, got 0"),
    (dict(dim=-2), "dim must be >= 1, got -2"),
    (dict(rows=2**40, dim=2**30), "overflows int64"),
    (dict(eps=float("nan")), "eps must be >= 0 and finite in float32, got nan"),
    (dict(eps=-1e-6), "eps must be >= 0 and finite in float32, got -1e-06"),
    (dict(eps=float("inf")), "got inf"),
    (dict(eps=1e39), "got 1e+39"),
    (dict(x_dtype=3), "x_dtype must be one of 0 (float32), 1 (float16), 2 (bfloat16), got 3"),
    (dict(w_dtype=-1), "w_dtype must be one of 0 (float32), 1 (float16), 2 (bfloat16), got -1"),
    (dict(x_dtype=2, w_dtype=1), "(x_dtype, w_dtype) must be (float32, float32), (float16, float16), "
                                 "(bfloat16, bfloat16), (float32, float16) or (float32, bfloat16), got (bfloat16, float16)"),
    (dict(x_dtype=1, w_dtype=2), "got (float16, bfloat16)"),
    (dict(x_dtype=2, w_dtype=0), "got (bfloat16, float32)"),
    (dict(x_dtype=1, w_dtype=0), "got (float16, float32)"),
    (dict(tier=99), "tier must be one of 0 (cuda_core)"),
    (dict(tier=TIERS["mma_sm80"]), "(mma_sm80) is not compiled for add_layer_norm in this build; compiled: cuda_core"),
])
def test_binding_rejects_bad_arguments(change, expect):
    with pytest.raises(ValueError) as info:
        _C.add_layer_norm_fwd(**{**GOOD, **change})
    assert expect in str(info.value)
    assert str(info.value).startswith("add_layer_norm_fwd: ")


def test_host_twin_checks_the_same_arguments():
    host = {k: v for k, v in GOOD.items() if k not in ("tier", "stream")}
    for change, expect in [(dict(x=0), "x must be a non-null"), (dict(x_dtype=2, w_dtype=1), "got (bfloat16, float16)"),
                           (dict(eps=-1.0), "eps must be >= 0")]:
        with pytest.raises(ValueError, match=r"^_add_layer_norm_host: ") as info:
            _C._add_layer_norm_host(**{**host, **change})
        assert expect in str(info.value)


def test_binding_rejects_non_int_arguments():
    with pytest.raises(TypeError):
        _C.add_layer_norm_fwd(**{**GOOD, "x": -1})
    with pytest.raises(TypeError):
        _C.add_layer_norm_fwd(**{**GOOD, "dim": 7.5})
    with pytest.raises(TypeError):
        _C.add_layer_norm_fwd(**{**GOOD, "delta": None})


@no_gpu
def test_binding_without_gpu_raises_runtime_error():
    if _C.device_count() != 0:
        pytest.skip("a driver and device are present (torch just cannot use them)")
    for delta, x_new in ((0x2000, 0x5000), (0, 0)):
        with pytest.raises(RuntimeError) as info:
            _C.add_layer_norm_fwd(**{**GOOD, "delta": delta, "x_new": x_new})
        assert str(info.value).startswith("add_layer_norm_fwd: no CUDA driver/device")


# -- backends.cuda: tensor checks, refusals, fake implementation -------------------------------------

def test_supports_explains_refusals():
    assert "not a CUDA device" in cuda.supports("add_layer_norm", torch.device("cpu"), F32)[0]
    assert any("float64" in r for r in cuda.supports("add_layer_norm", torch.device("cuda"), torch.float64))
    reasons = cuda.supports("add_layer_norm", torch.device("cuda"), F16, residual_dtype=BF16)
    assert any("(residual, compute) dtypes" in r and "got (torch.bfloat16, torch.float16)" in r for r in reasons)
    for x, w in PAIRS:
        assert not any("(residual, compute)" in r
                       for r in cuda.supports("add_layer_norm", torch.device("cuda"), w, residual_dtype=x))
    if not torch.cuda.is_available():
        assert "torch.cuda.is_available() is False" in cuda.supports("add_layer_norm", torch.device("cuda"), BF16)[0]


def test_wrapper_rejects_cpu_tensors():
    x, delta, w, b = _inputs(3, 8, (F32, F32), 0)
    with pytest.raises(ValueError, match="x must be on a CUDA device, got cpu"):
        cuda.add_layer_norm(x, delta, w, b, EPS)


def _cu(*shape, dtype=F32, **kw):
    return torch.empty(*shape, dtype=dtype, device="cuda", **kw)


@pytest.mark.parametrize("make,exc,msg", [
    (lambda: (_cu(4, 8, dtype=torch.float64), None, _cu(8), _cu(8), EPS), TypeError,
     "(x.dtype, weight.dtype) = (residual, compute) dtypes must be one of (torch.float32, torch.float32), "
     "(torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16), (torch.float32, torch.float16), "
     "(torch.float32, torch.bfloat16), got (torch.float64, torch.float32)"),
    (lambda: (_cu(4, 8, dtype=BF16), None, _cu(8, dtype=F16), _cu(8, dtype=F16), EPS), TypeError,
     "got (torch.bfloat16, torch.float16)"),
    (lambda: (_cu(4, 8, dtype=F16), None, _cu(8), _cu(8), EPS), TypeError, "got (torch.float16, torch.float32)"),
    (lambda: (_cu(4, 8, dtype=torch.int32), None, _cu(8), _cu(8), EPS), TypeError, "got (torch.int32, torch.float32)"),
    (lambda: (_cu(32), None, _cu(8), _cu(8), EPS), ValueError, "x must have shape (N, D), got shape (32,)"),
    (lambda: (_cu(2, 4, 8), None, _cu(8), _cu(8), EPS), ValueError, "x must have shape (N, D), got shape (2, 4, 8)"),
    (lambda: (_cu(4, 0), None, _cu(0), _cu(0), EPS), ValueError, "x must have shape (N, D) with D >= 1, got (4, 0)"),
    (lambda: (_cu(8, 4).t(), None, _cu(8), _cu(8), EPS), ValueError, "x must be contiguous"),
    (lambda: (_cu(4, 8), None, _cu(7), _cu(8), EPS), ValueError, "weight must have shape (8,) to match x (4, 8), got (7,)"),
    (lambda: (_cu(4, 8), None, _cu(8), _cu(1, 8), EPS), ValueError, "bias must have 1 dims, got shape (1, 8)"),
    (lambda: (_cu(4, 8), None, torch.empty_strided((8,), (2,), device="cuda"), _cu(8), EPS), ValueError, "weight must be contiguous"),
    (lambda: (_cu(4, 8), None, _cu(8), _cu(8, dtype=BF16), EPS), TypeError, "bias must be torch.float32, got torch.bfloat16"),
    (lambda: (_cu(4, 8), _cu(4, 8, dtype=BF16), _cu(8, dtype=F16), _cu(8, dtype=F16), EPS), TypeError,
     "delta must be torch.float16, got torch.bfloat16"),
    (lambda: (_cu(4, 8), _cu(8, 4), _cu(8), _cu(8), EPS), ValueError, "delta must have x's shape (4, 8), got (8, 4)"),
    (lambda: (_cu(4, 8), _cu(8, 4).t(), _cu(8), _cu(8), EPS), ValueError, "delta must be contiguous"),
    (lambda: (_cu(4, 8), [[0.0]], _cu(8), _cu(8), EPS), TypeError, "delta must be a torch.Tensor or None, got list"),
    (lambda: (_cu(4, 8), None, [1.0] * 8, _cu(8), EPS), TypeError, "weight must be a torch.Tensor, got list"),
    (lambda: (_cu(4, 8), None, _cu(8), _cu(8), float("nan")), ValueError, "eps must be a finite number >= 0, got nan"),
    (lambda: (_cu(4, 8), None, _cu(8), _cu(8), -1.0), ValueError, "got -1.0"),
    (lambda: (_cu(4, 8), None, _cu(8), _cu(8), True), ValueError, "got True"),
    (lambda: (_cu(4, 8), None, _cu(8), _cu(8), "1e-6"), ValueError, "got '1e-6'"),
])
def test_wrapper_rejects_bad_tensors(make, exc, msg):
    # Fake CUDA tensors get past the device check on machines without a GPU.
    with FakeTensorMode():
        args = make()
        with pytest.raises(exc) as info:
            cuda.add_layer_norm(*args)
    assert msg in str(info.value), str(info.value)
    assert str(info.value).startswith("add_layer_norm: ")


def test_wrapper_rejects_mixed_devices():
    with FakeTensorMode():
        x = torch.empty(4, 8, device="cuda:0")
        with pytest.raises(ValueError, match="weight must be on a CUDA device, got cpu"):
            cuda.add_layer_norm(x, None, torch.empty(8), torch.empty(8, device="cuda:0"), EPS)
        with pytest.raises(ValueError, match=r"bias must be on x's device cuda:0, got cuda:1"):
            cuda.add_layer_norm(x, None, torch.empty(8, device="cuda:0"), torch.empty(8, device="cuda:1"), EPS)


@pytest.mark.parametrize("pair", PAIRS, ids=_pair_id)
def test_fake_implementation(pair):
    xdt, wdt = pair
    with FakeTensorMode():
        x, delta, w = _cu(4104, 1030, dtype=xdt), _cu(4104, 1030, dtype=wdt), _cu(1030, dtype=wdt)
        x_new, a = cuda.add_layer_norm(x, delta, w, w, EPS)
        assert x_new.shape == (4104, 1030) and x_new.dtype == xdt and x_new.device.type == "cuda"
        assert a.shape == (4104, 1030) and a.dtype == wdt and a.device.type == "cuda"
        x_same, a = cuda.add_layer_norm(x, None, w, w, EPS)
        assert x_same is x and a.shape == (4104, 1030) and a.dtype == wdt
        x_new, a = cuda.add_layer_norm(_cu(0, 16, dtype=xdt), _cu(0, 16, dtype=wdt), _cu(16, dtype=wdt),
                                       _cu(16, dtype=wdt), EPS)
        assert x_new.shape == a.shape == (0, 16)
    meta = lambda *s, dtype: torch.empty(*s, dtype=dtype, device="meta")  # noqa: E731
    x_new, a = torch.ops.fastradio.cuda_add_layer_norm(meta(13, 80, dtype=xdt), meta(13, 80, dtype=wdt),
                                                       meta(80, dtype=wdt), meta(80, dtype=wdt), EPS, -1)
    assert x_new.shape == (13, 80) and x_new.dtype == xdt and a.shape == (13, 80) and a.dtype == wdt
    placeholder, a = torch.ops.fastradio.cuda_add_layer_norm(meta(13, 80, dtype=xdt), None, meta(80, dtype=wdt),
                                                             meta(80, dtype=wdt), EPS, -1)
    assert placeholder.shape == (0, 80) and a.shape == (13, 80)


def test_schema_and_tier_argument():
    schema = str(torch.ops.fastradio.cuda_add_layer_norm.default._schema)
    assert "Tensor? delta" in schema and "-> (Tensor, Tensor)" in schema
    with FakeTensorMode():
        with pytest.raises(ValueError, match="tier must be None or one of cuda_core"):
            cuda.add_layer_norm(_cu(4, 8), None, _cu(8), _cu(8), EPS, tier="fastest")
        _, a = cuda.add_layer_norm(_cu(4, 8), None, _cu(8), _cu(8), EPS, tier="cuda_core")
        assert a.shape == (4, 8)


# -- the kernel's math on the host, against a float64 oracle -------------------------------------------

HOST_DIMS = [1, 2, 3, 7, 8, 80, 768, 1030, 1536]


@pytest.mark.parametrize("with_delta", [True, False], ids=["delta", "no-delta"])
@pytest.mark.parametrize("d", HOST_DIMS)
@pytest.mark.parametrize("pair", PAIRS, ids=_pair_id)
def test_host_math_matches_oracle(pair, d, with_delta):
    x, delta, w, b = _inputs(13, d, pair, _seed("host", pair, d))
    delta = delta if with_delta else None
    x_new, a = _host(x, delta, w, b)
    if delta is None:
        assert x_new is x
    _check_against_oracle(x_new, a, x, delta, w, b)
    if d == 1:  # x - mean == 0 exactly: the output is the bias
        assert torch.equal(a, b.expand(13, 1))


@pytest.mark.parametrize("pair", [(BF16, BF16), (F16, F16), (F32, F16), (F32, BF16)], ids=_pair_id)
def test_host_rounds_once_at_the_end(pair):
    """The fp16/bf16 output is the fp32 computation on the same values, rounded (RNE) once."""
    x, delta, w, b = _inputs(13, 1030, pair, _seed("once", pair))
    x_new, a = _host(x, delta, w, b)
    _, a32 = _host(x_new.float(), None, w.float(), b.float())
    assert torch.equal(a.view(torch.int16), a32.to(w.dtype).view(torch.int16))


@pytest.mark.parametrize("pair", [(F32, F32), (F32, F16), (F32, BF16)], ids=_pair_id)
@pytest.mark.parametrize("d", [7, 768, 1536])
def test_host_large_mean_small_spread(pair, d):
    """mean 1e3, std 1e-2: one fp32 mean is off by up to half an ulp of 1e3 (3e-3 of a standard
    deviation; torch's own fp32 LayerNorm is ~4e-3 off here), E[x^2] - E[x]^2 is useless. The shift
    plus correction keeps fp32 within 1e-5 of the oracle."""
    x, delta, w, b = _inputs(13, d, pair, _seed("large", pair, d), large_mean=True)
    for dl in (delta, None):
        x_new, a = _host(x, dl, w, b)
        _check_against_oracle(x_new, a, x, dl, w, b, vs_reference=False)
    # The bound would catch the naive one-pass formula by far.
    x_new = x_new.double()
    m = x_new.float().mean(-1, keepdim=True)
    var = (x_new.float() ** 2).mean(-1, keepdim=True) - m * m
    naive = (x_new.float() - m) / torch.sqrt(var.clamp_min(0) + EPS) * w.float() + b.float()
    assert _err(naive, _oracle(x_new, w, b))[0] > 100 * FP32_TOL


def test_host_constant_row_and_specials():
    d = 768
    w = 1.0 + 0.3 * torch.randn(d, generator=torch.Generator().manual_seed(3))
    b = 0.1 * torch.randn(d, generator=torch.Generator().manual_seed(4))
    x = torch.full((3, d), 1234.5678)
    x[1] = -3.0e-3
    x[2] = 0.0
    _, a = _host(x, None, w, b)
    torch.testing.assert_close(a, b.expand(3, d), rtol=0, atol=1e-6)  # zero variance: the bias
    # A NaN or inf in one row makes that row's output NaN and leaves the others untouched.
    x, delta, w, b = _inputs(6, 80, (F32, F32), 5)
    _, clean = _host(x, delta, w, b)
    for bad in (float("nan"), float("inf")):
        xb = x.clone()
        xb[2, 17] = bad
        x_new, a = _host(xb, delta, w, b)
        assert torch.isnan(a[2]).all()
        keep = torch.arange(6) != 2
        assert torch.equal(a[keep], clean[keep])
        assert (x_new[2, 17] == bad) or (math.isnan(bad) and torch.isnan(x_new[2, 17]))


def test_host_eps_is_used():
    x, delta, w, b = _inputs(5, 64, (F32, F32), 9)
    x = x * 1e-3
    for eps in (0.0, 1e-6, 1e-2):
        x_new, a = _host(x, delta, w, b, eps)
        _check_against_oracle(x_new, a, x, delta, w, b, eps)


def test_host_conversions_are_exact():
    """The shared fp16/bf16 <-> fp32 helpers: every 16-bit pattern decodes and re-encodes exactly
    (through the bias: a constant row with weight 0 outputs the bias), and x + delta rounds like torch."""
    for dtype in (F16, BF16):
        b = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
        d = b.numel()
        _, a = _host(torch.zeros(1, d, dtype=dtype), None, torch.zeros(d, dtype=dtype), b)
        same = (a[0].view(torch.int16) == b.view(torch.int16)) | (torch.isnan(a[0]) & torch.isnan(b))
        same |= (a[0] == 0) & (b == 0)  # 0 * w + (-0) is +0
        assert bool(same.all()), (dtype, b[~same][:5], a[0][~same][:5])
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(64, 96, generator=gen) * torch.logspace(-6, 4, 96)
    for dtype in (F16, BF16):
        delta = (torch.randn(64, 96, generator=gen) * 100).to(dtype)
        x_new, _ = _host(x, delta, torch.ones(96, dtype=dtype), torch.zeros(96, dtype=dtype))
        assert torch.equal(x_new, x + delta.float())
        xl = x.to(dtype)
        x_new, _ = _host(xl, delta, torch.ones(96, dtype=dtype), torch.zeros(96, dtype=dtype))
        assert torch.equal(x_new.view(torch.int16), (xl + delta).view(torch.int16))


# -- with a GPU: the kernel against the oracle and the reference -------------------------------------

GPU_DIMS = [1, 7, 80, 768, 1030, 1536]
GPU_ROWS = [1, 13, 4104]


def _launch(x, delta, w, b, eps=EPS, tier="cuda_core"):
    """The binding on NaN-poisoned outputs (unwritten elements fail the checks)."""
    n, d = x.shape
    x_new = None if delta is None else torch.full_like(x, float("nan"))
    a = torch.full((n, d), float("nan"), dtype=w.dtype, device=x.device)
    _C.add_layer_norm_fwd(x.data_ptr(), 0 if delta is None else delta.data_ptr(), w.data_ptr(), b.data_ptr(),
                          0 if x_new is None else x_new.data_ptr(), a.data_ptr(), n, d, eps, _code(x.dtype),
                          _code(w.dtype), TIERS[tier], torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    return (x if delta is None else x_new), a


@needs_gpu
@pytest.mark.parametrize("n", GPU_ROWS)
@pytest.mark.parametrize("d", GPU_DIMS)
@pytest.mark.parametrize("pair", PAIRS, ids=_pair_id)
def test_gpu_kernel_against_oracle(pair, d, n):
    x, delta, w, b = _inputs(n, d, pair, _seed("gpu", pair, d, n), device="cuda")
    x_new, a = _launch(x, delta, w, b)
    _check_against_oracle(x_new, a, x, delta, w, b)
    _, a = _launch(x, None, w, b)
    _check_against_oracle(x, a, x, None, w, b)


@needs_gpu
@pytest.mark.parametrize("pair", PAIRS, ids=_pair_id)
@pytest.mark.parametrize("d", [768, 1000, 1025, 4096, 4104, 20000])
def test_gpu_wide_and_unaligned_rows(pair, d):
    """The launcher's three paths: registers with 16-byte accesses (D % (16 / x's element size) == 0
    and aligned pointers, D <= 4096), registers with scalar accesses (D <= 1024, e.g. storage
    offset by one element), and the streaming kernel for the rest (here 1025, 4104, 20000, and
    every unaligned D > 1024)."""
    x, delta, w, b = _inputs(5, d, pair, _seed("wide", pair, d), device="cuda")
    x_new, a = _launch(x, delta, w, b)
    _check_against_oracle(x_new, a, x, delta, w, b)

    def shifted(t):
        buf = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
        view = buf[1:].view(t.shape)
        view.copy_(t)
        return view

    xs, ds, ws, bs = map(shifted, (x, delta, w, b))
    x_new, a = _launch(xs, ds, ws, bs)
    _check_against_oracle(x_new, a, xs, ds, ws, bs)


@needs_gpu
@pytest.mark.parametrize("pair", [(F32, F32), (F32, F16), (F32, BF16)], ids=_pair_id)
@pytest.mark.parametrize("d", [7, 768, 1536, 20000])
def test_gpu_large_mean_small_spread(pair, d):
    x, delta, w, b = _inputs(13, d, pair, _seed("gpu-large", pair, d), device="cuda", large_mean=True)
    for dl in (delta, None):
        x_new, a = _launch(x, dl, w, b)
        _check_against_oracle(x_new, a, x, dl, w, b, vs_reference=False)


@needs_gpu
@pytest.mark.parametrize("pair", PAIRS, ids=_pair_id)
@pytest.mark.parametrize("d", [7, 768, 1030, 20000])
def test_gpu_nan_stays_in_its_row(pair, d):
    x, delta, w, b = _inputs(37, d, pair, _seed("nan", pair, d), device="cuda")
    _, clean = _launch(x, delta, w, b)
    xb = x.clone()
    xb[20, d // 2] = float("nan")
    x_new, a = _launch(xb, delta, w, b)
    assert torch.isnan(a[20]).all()
    assert torch.isnan(x_new[20]).sum() == 1
    keep = torch.arange(37, device="cuda") != 20
    assert torch.equal(a[keep], clean[keep]) and torch.isfinite(x_new[keep]).all()


@needs_gpu
@pytest.mark.parametrize("pair", PAIRS, ids=_pair_id)
def test_gpu_wrapper(pair):
    x, delta, w, b = _inputs(13, 768, pair, _seed("wrapper", pair), device="cuda")
    torch.full((13, 768), float("nan"), dtype=w.dtype, device="cuda")  # likely recycled as the output
    x_new, a = cuda.add_layer_norm(x, delta, w, b, EPS)
    _check_against_oracle(x_new, a, x, delta, w, b)
    x_same, a = cuda.add_layer_norm(x, None, w, b, EPS)
    assert x_same is x
    _check_against_oracle(x, a, x, None, w, b)
    x_new, a = cuda.add_layer_norm(x[:0], delta[:0], w, b, EPS)
    assert x_new.shape == a.shape == (0, 768)
    assert cuda.supports("add_layer_norm", torch.device("cuda"), pair[1], residual_dtype=pair[0]) == []


@needs_gpu
def test_gpu_binding_refuses_host_pointers():
    x, delta, w, b = _inputs(4, 16, (F32, F32), 1)
    out = torch.empty(4, 16, device="cuda")
    with pytest.raises(ValueError, match="must point to device memory"):
        _C.add_layer_norm_fwd(x.data_ptr(), 0, w.data_ptr(), b.data_ptr(), 0, out.data_ptr(), 4, 16, EPS, 0, 0, 0,
                              torch.cuda.current_stream().cuda_stream)


@needs_gpu
def test_gpu_opcheck():
    x, delta, w, b = _inputs(13, 80, (F32, BF16), 2, device="cuda")
    op = torch.ops.fastradio.cuda_add_layer_norm.default
    torch.library.opcheck(op, (x, delta, w, b, EPS, -1))
    torch.library.opcheck(op, (x, None, w, b, EPS, -1))


@needs_gpu
def test_gpu_cuda_graph_capture():
    x, delta, w, b = _inputs(13, 768, (BF16, BF16), 3, device="cuda")
    cuda.add_layer_norm(x, delta, w, b, EPS)  # warm-up outside capture
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        x_new, a = cuda.add_layer_norm(x, delta, w, b, EPS)
    x.copy_(_inputs(13, 768, (BF16, BF16), 4, device="cuda")[0])  # replay reads the new values
    g.replay()
    torch.cuda.synchronize()
    _check_against_oracle(x_new, a, x, delta, w, b)


@needs_gpu
def test_gpu_compile_fullgraph():
    x, delta, w, b = _inputs(13, 768, (F32, F16), 5, device="cuda")

    def f(x, delta, w, b):
        x, a = cuda.add_layer_norm(x, delta, w, b, EPS)
        x2, a2 = cuda.add_layer_norm(x, None, w, b, EPS)
        return x2 * 2, a + a2

    torch._dynamo.reset()
    got = torch.compile(f, fullgraph=True)(x, delta, w, b)
    want = f(x, delta, w, b)
    for g_, w_ in zip(got, want):
        torch.testing.assert_close(g_, w_, rtol=0, atol=0)
