"""linear in the CUDA backend (csrc/linear/, backends/cuda/_linear.py): every tier.

Without a GPU: the binding refuses every bad argument before touching CUDA (and a tier that cannot
take the dtype) and fails cleanly without a driver; the wrapper validates tensors with the shared
checks (backends/checks/linear.py) and explains its refusals; tiers resolve per dtype (mma_sm80
for 16-bit, cuda_core for float32); the fake implementation gives the right shapes; and the
cuda_core kernel's block walk, epilogue and rounding run on the host through ``_C._linear_host``
(the same helpers as the kernels) against a float64 oracle: fp32 within 1e-5, fp16/bf16 within 2x
the reference backend's own error (the precision floor, DESIGN.md §7), one rounding at the end,
every output of every tile written, a NaN confined to its row. The tensor-core tiers' index math
(swizzled stages, ldmatrix addresses, fragments, output mapping: their own helpers) runs on the
host through ``_C._linear_mma_host`` with ldmatrix and mma emulated from the PTX ISA, and the
layout is checked free of shared-memory bank conflicts.

With a GPU: every tier forced x its dtypes x epilogues on awkward shapes (1, 7, 67, 131, 257,
8191 rows; M, K including 1, 80, 150, 768, K % 8 != 0, storage offsets: the predicated paths),
NaN-poisoned outputs, against float64; cuda_core bit-exact with the host twin; a NaN in one row
stays there; the model's GEMMs at moderate N; > 2**31-element offsets; CUDA-graph capture;
opcheck; torch.compile(fullgraph=True); FASTRADIO_TIER. Inputs are drawn per case from a fixed
seed (FASTRADIO_TEST_SEED draws others).
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
from fastradio.backends.cuda import _common

from kernel_testing import needs_gpu, no_gpu

CODES = _C.dtype_codes()
TIERS = _C.tiers()
INFO = _C.build_info()
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
ACT = {"none": 0, "gelu": 1}
FP32_TOL = 1e-5  # relative L2, and max-abs relative to max |oracle|
SLACK = 1e-6  # on top of 2x the precision floor (same relative units)
#: (tier, dtype) pairs the kernels are instantiated for.
TIER_DTYPES = [("cuda_core", F32), ("cuda_core", F16), ("cuda_core", BF16), ("mma_sm75", F16),
               ("mma_sm80", F16), ("mma_sm80", BF16), ("wgmma_sm90a", F16), ("wgmma_sm90a", BF16)]
#: name -> (bias, activation, residual). The model uses bias, bias_gelu; the rest are the contract.
EPILOGUES = {"bias": (True, "none", False), "bias_gelu": (True, "gelu", False), "none": (False, "none", False),
             "bias_residual": (True, "none", True), "gelu_residual": (False, "gelu", True),
             "bias_gelu_residual": (True, "gelu", True)}


def _code(dtype: torch.dtype) -> int:
    return CODES[str(dtype).removeprefix("torch.")]


def _id(v) -> str:
    return str(v).removeprefix("torch.") if isinstance(v, torch.dtype) else str(v)


def _seed(*parts) -> int:
    return zlib.crc32(repr((os.environ.get("FASTRADIO_TEST_SEED", "0"),) + parts).encode())


def _inputs(n: int, m: int, k: int, dtype: torch.dtype, seed: int, device: str = "cpu"):
    """(x, weight, bias, residual) with trained-ViT magnitudes: x like a LayerNorm output (N(0, 1)
    with a few outliers of 8..20), weight ~ N(0, 1/K), bias ~ N(0, 0.1), residual N(0, 1) with a few
    outliers of 20..60."""
    gen = torch.Generator().manual_seed(seed)

    def outliers(t, lo, hi):  # a few per tensor of >= 64 elements
        count = min(8, t.numel() // 64)
        idx = torch.randint(0, t.numel(), (count,), generator=gen)
        sign = torch.where(torch.rand(count, generator=gen) < 0.5, -1.0, 1.0)
        t.view(-1)[idx] = sign * (lo + (hi - lo) * torch.rand(count, generator=gen))
        return t

    x = outliers(torch.randn(n, k, generator=gen), 8.0, 20.0)
    w = torch.randn(m, k, generator=gen) / math.sqrt(k)
    b = 0.1 * torch.randn(m, generator=gen)
    r = outliers(torch.randn(n, m, generator=gen), 20.0, 60.0)
    return tuple(t.to(dtype).to(device) for t in (x, w, b, r))


def _args(n, m, k, dtype, epilogue, seed, device="cpu"):
    has_b, act, has_r = EPILOGUES[epilogue]
    x, w, b, r = _inputs(n, m, k, dtype, seed, device)
    return x, w, (b if has_b else None), act, (r if has_r else None)


def _oracle(x, w, b, act, r, tanh: bool = False) -> torch.Tensor:
    """float64 act(x·Wᵀ + b) + r of the given (already rounded) tensors."""
    y = x.double() @ w.double().t()
    if b is not None:
        y = y + b.double()
    if act == "gelu":
        y = F.gelu(y, approximate="tanh" if tanh else "none")
    if r is not None:
        y = y + r.double()
    return y


def _err(out: torch.Tensor, oracle: torch.Tensor) -> tuple[float, float]:
    """(relative L2, max-abs / max|oracle|) of out against the float64 oracle."""
    e = out.to(oracle.device).double() - oracle
    return ((e.norm() / oracle.norm().clamp_min(1e-30)).item(),
            (e.abs().max() / oracle.abs().max().clamp_min(1e-30)).item())


def _check(out, args, what=""):
    """fp32: within FP32_TOL of the float64 oracle; fp16/bf16: within 2x the error of the reference
    backend in the same dtype on the same device (the precision floor). Every element finite."""
    x, w, b, act, r = args
    assert out.shape == (x.shape[0], w.shape[0]) and out.dtype == x.dtype, what
    assert torch.isfinite(out).all(), f"{what}: NaN/inf in the output: unwritten or garbage elements"
    oracle = _oracle(*args)
    rel, mx = _err(out, oracle)
    frel, fmx = _err(reference.linear(*args), oracle)
    if x.dtype == F32:
        # Also fp32's own floor: outputs all in GELU's far negative tail (one output, y ~ -5) lose
        # digits in 1 + erf(y/√2) in any fp32 implementation, torch's included.
        tol = max(FP32_TOL, 2 * max(frel, fmx) + SLACK)
        assert rel <= tol and mx <= tol, f"{what}: fp32 error rel L2 {rel:.3g}, max {mx:.3g} (bound {tol:.3g})"
        return
    assert rel <= 2 * frel + SLACK and mx <= 2 * fmx + SLACK, (
        f"{what}: {x.dtype} error rel L2 {rel:.3g} / max {mx:.3g} vs precision floor {frel:.3g} / {fmx:.3g}")


def _ptrs(x, w, b, r, out):
    return (x.data_ptr(), w.data_ptr(), 0 if b is None else b.data_ptr(), 0 if r is None else r.data_ptr(),
            out.data_ptr())


def _host(x, w, b, act, r, out=None):
    """The cuda_core kernel's walk and math on CPU tensors; the output NaN-poisoned first."""
    n, k = x.shape
    m = w.shape[0]
    if out is None:
        out = torch.full((n, m), float("nan"), dtype=x.dtype)
    _C._linear_host(*_ptrs(x, w, b, r, out), n, m, k, ACT[act], _code(x.dtype))
    return out


# -- the build -----------------------------------------------------------------------------------------

def test_built_with_every_tier():
    tiers = INFO["tiers"]["linear"]
    assert "cuda_core" in tiers
    assert INFO["kernels"]["linear"]["cuda_core"]["sass"] == INFO["archs"]
    plain = [int(a) for a in INFO["archs"] if not a.endswith("a")]
    if any(a >= 80 for a in plain):
        assert {"mma_sm75", "mma_sm80"} <= set(tiers)
        assert _C.check_arch("linear", "mma_sm80", 9, 0) == ""  # PTX for newer GPUs
        assert "built without sm_75" in _C.check_arch("linear", "mma_sm80", 7, 5)
    assert cuda.OP_NAMES["linear"] == "fastradio::cuda_linear"
    assert "linear" in cuda.__all__


# -- the binding refuses bad arguments before any CUDA call --------------------------------------------

GOOD = dict(x=0x1000, weight=0x2000, bias=0x3000, residual=0x4000, out=0x5000, n=13, m=768, k=1024, activation=1,
            dtype=0, tier=0, stream=0)


@pytest.mark.parametrize("change,expect", [
    (dict(x=0), "x must be a non-null device pointer, got 0"),
    (dict(weight=0), "weight must be a non-null device pointer, got 0"),
    (dict(out=0), "out must be a non-null device pointer, got 0"),
    (dict(out=0x1000), "out must not be x, weight or bias (out may only alias residual), got out = 0x1000 equal to x"),
    (dict(out=0x2000), "equal to weight"),
    (dict(out=0x3000), "equal to bias"),
    (dict(n=0), "n must be >= 1, got 0"),
    (dict(m=-3), "m must be >= 1, got -3"),
    (dict(k=0), "k must be >= 1, got 0"),
    (dict(n=2**40, k=2**30), "size n*k = 1099511627776 * 1073741824 * 1 elements overflows int64"),
    (dict(m=2**40, k=2**30), "size m*k"),
    (dict(n=2**40, m=2**30, k=1), "size n*m"),
    (dict(n=2**31), "n must be < 2^31, got 2147483648"),
    (dict(m=2**31), "m must be < 2^31"),
    (dict(k=2**31), "k must be < 2^31"),
    (dict(activation=2), "activation must be 0 (none) or 1 (gelu), got 2"),
    (dict(activation=-1), "got -1"),
    (dict(dtype=3), "dtype must be one of 0 (float32), 1 (float16), 2 (bfloat16), got 3"),
    (dict(tier=99), "tier must be one of 0 (cuda_core)"),
    (dict(tier=TIERS["tcgen05_sm100a"]), "(tcgen05_sm100a) is not compiled for linear in this build; compiled: cuda_core"),
    (dict(tier=TIERS["mma_sm80"], dtype=0), "tier 2 (mma_sm80) does not take float32: it takes float16 and bfloat16"),
    (dict(tier=TIERS["mma_sm75"], dtype=2), "tier 1 (mma_sm75) does not take bfloat16: it takes float16 only"),
    (dict(tier=TIERS["mma_sm75"], dtype=0), "(mma_sm75) does not take float32"),
])
def test_binding_rejects_bad_arguments(change, expect):
    if change.get("tier") in (TIERS["mma_sm75"], TIERS["mma_sm80"]) and "mma_sm80" not in INFO["tiers"]["linear"]:
        pytest.skip("this build has no tensor-core tier of linear")
    with pytest.raises(ValueError) as info:
        _C.linear_fwd(**{**GOOD, **change})
    assert expect in str(info.value), str(info.value)
    assert str(info.value).startswith("linear_fwd: ")


def test_host_twin_checks_the_same_arguments():
    host = {k: v for k, v in GOOD.items() if k not in ("tier", "stream")}
    for change, expect in [(dict(x=0), "x must be a non-null"), (dict(out=0x2000), "equal to weight"),
                           (dict(k=0), "k must be >= 1"), (dict(activation=5), "activation must be 0 (none)"),
                           (dict(dtype=-1), "dtype must be one of")]:
        with pytest.raises(ValueError, match=r"^_linear_host: ") as info:
            _C._linear_host(**{**host, **change})
        assert expect in str(info.value)


def test_binding_rejects_non_int_arguments():
    for change in (dict(x=-1), dict(n=7.5), dict(bias=None), dict(activation="gelu")):
        with pytest.raises(TypeError):
            _C.linear_fwd(**{**GOOD, **change})


@no_gpu
def test_binding_without_gpu_raises_runtime_error():
    if _C.device_count() != 0:
        pytest.skip("a driver and device are present (torch just cannot use them)")
    for bias, residual in ((0x3000, 0x4000), (0, 0)):
        with pytest.raises(RuntimeError) as info:
            _C.linear_fwd(**{**GOOD, "bias": bias, "residual": residual})
        assert str(info.value).startswith("linear_fwd: no CUDA driver/device")


# -- backends.cuda: refusals, tiers per dtype, tensor checks, fake implementation ---------------------

def test_supports_explains_refusals():
    assert "not a CUDA device" in cuda.supports("linear", torch.device("cpu"), F32)[0]
    assert any("float64" in r for r in cuda.supports("linear", torch.device("cuda"), torch.float64))
    if not torch.cuda.is_available():
        assert "torch.cuda.is_available() is False" in cuda.supports("linear", torch.device("cuda"), BF16)[0]
    assert cuda.LINEAR_TIER_DTYPES == {"mma_sm75": (F16,), "mma_sm80": (F16, BF16), "wgmma_sm90a": (F16, BF16)}


@pytest.mark.parametrize("cap,dtype,tier", [((9, 0), BF16, "mma_sm80"), ((9, 0), F16, "mma_sm80"),
                                            ((9, 0), F32, "cuda_core"), ((8, 0), BF16, "mma_sm80"),
                                            ((8, 6), F32, "cuda_core")])
def test_tier_resolves_per_dtype(monkeypatch, cap, dtype, tier):
    if "mma_sm80" not in INFO["tiers"]["linear"]:
        pytest.skip("this build has no mma_sm80 tier of linear")
    monkeypatch.setitem(_common._CAPABILITY, 0, cap)
    monkeypatch.delenv(cuda.TIER_ENV, raising=False)
    if (cap == (9, 0) and dtype != F32 and "wgmma_sm90a" in INFO["tiers"]["linear"]
            and not _C.check_arch("linear", "wgmma_sm90a", *cap)):
        tier = "wgmma_sm90a"  # a build with sm_90a SASS prefers the Hopper tier there
    assert cuda.resolve_tier("linear", torch.device("cuda:0"), dtype=dtype) == tier
    monkeypatch.setenv(cuda.TIER_ENV, "linear:mma_sm75")
    if dtype == F16:
        assert cuda.resolve_tier("linear", torch.device("cuda:0"), dtype=dtype) == "mma_sm75"
    else:
        with pytest.raises(RuntimeError, match=r"tier 'mma_sm75' \(from FASTRADIO_TIER\) cannot run .* "
                                               r"linear/mma_sm75 takes torch.float16, not"):
            cuda.resolve_tier("linear", torch.device("cuda:0"), dtype=dtype)


def test_forced_tier_is_checked_against_the_dtype():
    for tier, dtype in (("mma_sm75", BF16), ("mma_sm75", F32), ("mma_sm80", F32)):
        with pytest.raises(ValueError, match=f"linear: tier '{tier}' cannot run this call: linear/{tier} takes"):
            _common._tier_code("linear", torch.device("cuda:0"), TIERS[tier], dtype)
    assert _common._tier_code("linear", torch.device("cuda:0"), TIERS["mma_sm80"], BF16) == TIERS["mma_sm80"]
    assert _common._tier_code("linear", torch.device("cuda:0"), TIERS["cuda_core"], F32) == TIERS["cuda_core"]


def test_wrapper_rejects_cpu_tensors():
    x, w, b, r = _inputs(3, 5, 8, F32, 0)
    with pytest.raises(ValueError, match="linear: x must be on a CUDA device, got cpu"):
        cuda.linear(x, w, b, "gelu", r)


def _cu(*shape, dtype=F32, **kw):
    return torch.empty(*shape, dtype=dtype, device="cuda", **kw)


@pytest.mark.parametrize("make,exc,msg", [
    (lambda: (_cu(6, 8), _cu(5, 7), None, "none", None), ValueError,
     "weight must have shape (M, K) = (M, 8) with K from x (6, 8), got (5, 7)"),
    (lambda: (_cu(8), _cu(5, 8), None, "none", None), ValueError, "x must have shape (N, K) with K >= 1, got (8,)"),
    (lambda: (_cu(6, 0), _cu(5, 0), None, "none", None), ValueError, "K >= 1, got (6, 0)"),
    (lambda: (_cu(6, 8), _cu(0, 8), None, "none", None), ValueError, "M >= 1 (nn.Linear layout), got (0, 8)"),
    (lambda: (_cu(6, 8), _cu(5, 8), _cu(6), "none", None), ValueError, "bias must have shape (M,) = (5,)"),
    (lambda: (_cu(6, 8), _cu(5, 8), None, "none", _cu(5, 6)), ValueError,
     "residual must have shape (N, M) = (6, 5), got (5, 6)"),
    (lambda: (_cu(6, 8), _cu(5, 8), None, "tanh", None), ValueError,
     "activation must be 'none' or 'gelu' (exact erf), got 'tanh'"),
    (lambda: (_cu(6, 8), _cu(5, 8), None, None, None), ValueError, "got None"),
    (lambda: (_cu(6, 8, dtype=torch.float64), _cu(5, 8, dtype=torch.float64), None, "none", None), TypeError,
     "x must be float32, float16 or bfloat16, got torch.float64"),
    (lambda: (_cu(6, 8, dtype=BF16), _cu(5, 8, dtype=F16), None, "none", None), TypeError,
     "weight must have x's dtype torch.bfloat16, got torch.float16"),
    (lambda: (_cu(6, 8), _cu(5, 8), _cu(5, dtype=BF16), "none", None), TypeError, "bias must have x's dtype"),
    (lambda: (_cu(6, 8), _cu(5, 8), None, "none", _cu(6, 5, dtype=F16)), TypeError, "residual must have x's dtype"),
    (lambda: (_cu(8, 6).t(), _cu(5, 8), None, "none", None), ValueError, "x must be contiguous"),
    (lambda: (_cu(6, 8), _cu(8, 5).t(), None, "none", None), ValueError, "weight must be contiguous"),
    (lambda: (_cu(6, 8), _cu(5, 8), torch.empty_strided((5,), (2,), device="cuda"), "none", None), ValueError,
     "bias must be contiguous"),
    (lambda: (_cu(6, 8), _cu(5, 8), None, "none", _cu(5, 6).t()), ValueError, "residual must be contiguous"),
    (lambda: (_cu(6, 8), [[0.0] * 8] * 5, None, "none", None), TypeError, "weight must be a torch.Tensor, got list"),
    (lambda: (_cu(6, 8), _cu(5, 8), 0.5, "none", None), TypeError, "bias must be a torch.Tensor or None, got float"),
    (lambda: (_cu(6, 8), torch.empty(5, 8), None, "none", None), ValueError,
     "weight must be on x's device cuda:0, got cpu"),
    (lambda: (_cu(6, 8), _cu(5, 8), None, "none", torch.empty(6, 5, device="cuda:1")), ValueError,
     "residual must be on x's device cuda:0, got cuda:1"),
])
def test_wrapper_rejects_bad_tensors(make, exc, msg):
    # Fake CUDA tensors get past the device check on machines without a GPU.
    with FakeTensorMode():
        args = make()
        with pytest.raises(exc) as info:
            cuda.linear(*args)
    assert msg in str(info.value), str(info.value)
    assert str(info.value).startswith("linear: ")


def test_wrapper_rejects_dims_past_int32():
    with FakeTensorMode():
        x = torch.empty(2**31, 2, device="cuda", dtype=BF16)
        with pytest.raises(ValueError, match=r"linear: N must be < 2\*\*31, got 2147483648"):
            cuda.linear(x, _cu(3, 2, dtype=BF16))


def test_fake_implementation_and_schema():
    schema = str(torch.ops.fastradio.cuda_linear.default._schema)
    assert "Tensor? bias" in schema and "Tensor? residual" in schema and "str activation" in schema
    with FakeTensorMode():
        for dtype in (F32, F16, BF16):
            x, w, b = _cu(1031, 1280, dtype=dtype), _cu(5120, 1280, dtype=dtype), _cu(5120, dtype=dtype)
            out = cuda.linear(x, w, b, "gelu", None)
            assert out.shape == (1031, 5120) and out.dtype == dtype and out.device.type == "cuda"
            out = cuda.linear(out, _cu(1280, 5120, dtype=dtype), None, "none", x, tier="cuda_core")
            assert out.shape == (1031, 1280)
            assert cuda.linear(_cu(0, 16, dtype=dtype), _cu(3, 16, dtype=dtype)).shape == (0, 3)
        with pytest.raises(ValueError, match="tier must be None or one of cuda_core"):
            cuda.linear(_cu(4, 8), _cu(3, 8), tier="fastest")
    meta = lambda *s: torch.empty(*s, dtype=BF16, device="meta")  # noqa: E731
    out = torch.ops.fastradio.cuda_linear(meta(13, 80), meta(7, 80), meta(7), "gelu", meta(13, 7), -1)
    assert out.shape == (13, 7) and out.dtype == BF16


# -- the cuda_core kernel's walk and math on the host, against a float64 oracle -------------------------

HOST_ROWS = [1, 7, 67, 131, 257]
HOST_MK = [(1, 1), (80, 150), (150, 80), (1, 768), (768, 1), (129, 7)]


@pytest.mark.parametrize("dtype", [F32, F16, BF16], ids=_id)
@pytest.mark.parametrize("n", HOST_ROWS)
def test_host_math_matches_oracle(n, dtype):
    for i, (m, k) in enumerate(HOST_MK):
        for epilogue in (("bias", "bias_gelu_residual") if i % 2 else ("bias_gelu", "none", "gelu_residual")):
            args = _args(n, m, k, dtype, epilogue, _seed("host", n, m, k, dtype, epilogue))
            _check(_host(*args), args, f"{n}x{m}x{k} {epilogue}")


def test_host_model_shape():
    # ViT-B's proj (M = K = 768) on 67 tokens: many k-steps, 6 column tiles.
    for dtype in (F32, BF16):
        args = _args(67, 768, 768, dtype, "bias_residual", _seed("host-model", dtype))
        _check(_host(*args), args, "67x768x768")


@pytest.mark.parametrize("config", [None, 0, 1], ids=["cuda_core", "mma-128x128", "mma-64x128"])
def test_host_so400m_mlp_shapes(config):
    """C-RADIOv4-SO400M's MLP hidden width 4304 (= 33·128 + 80 = 134·32 + 16, not 4·D): fc1's ragged
    N (a last column tile of 80) and fc2's ragged K (a last stage half filled), no padding."""
    for m, k, epilogue in ((4304, 48, "bias_gelu"), (72, 4304, "bias_residual")):
        for dtype in ((F32, BF16) if config is None else (F16, BF16)):
            args = _args(9, m, k, dtype, epilogue, _seed("so400m", m, k, dtype, config))
            got = _host(*args) if config is None else _mma_host(*args, config)
            _check(got, args, f"9x{m}x{k} {epilogue} {config}")


@pytest.mark.parametrize("dtype", [F16, BF16], ids=_id)
def test_host_rounds_once_at_the_end(dtype):
    """The 16-bit output is the fp32 computation on the widened inputs, rounded (RNE) once."""
    args = _args(67, 150, 80, dtype, "bias_gelu_residual", _seed("once", dtype))
    out = _host(*args)
    out32 = _host(*(t.float() if isinstance(t, torch.Tensor) else t for t in args))
    assert torch.equal(out.view(torch.int16), out32.to(dtype).view(torch.int16))


def test_host_walks_every_tile():
    """1153 rows = 9 full row tiles + 1 (a full group of 8 and a partial group of 2), 259 columns =
    2 full column tiles + 3: every output of every tile is written (NaN-poisoned first)."""
    args = _args(1153, 259, 3, F32, "bias_gelu_residual", _seed("walk"))
    _check(_host(*args), args, "1153x259x3")


def test_host_gelu_is_erf_not_tanh():
    # Pre-activations spread over [-6, 6], where the two GELUs differ by up to ~5e-4 absolute.
    x, w, b, _, _ = _args(70, 96, 160, F32, "bias", _seed("erf"))
    x = x * 3
    out = _host(x, w, b, "gelu", None)
    to_erf = _err(out, _oracle(x, w, b, "gelu", None))[1]
    to_tanh = _err(out, _oracle(x, w, b, "gelu", None, tanh=True))[1]
    assert to_erf <= FP32_TOL and to_erf * 20 < to_tanh, (to_erf, to_tanh)


def test_host_nan_stays_in_its_row_and_column():
    x, w, b, act, r = _args(37, 21, 80, F32, "bias_gelu_residual", _seed("nan"))
    clean = _host(x, w, b, act, r)
    xb = x.clone()
    xb[20, 41] = float("nan")
    out = _host(xb, w, b, act, r)
    rows = torch.arange(37) != 20
    assert torch.isnan(out[20]).all() and torch.equal(out[rows], clean[rows])
    wb = w.clone()
    wb[5, 3] = float("inf")  # inf * (+-x) + ... : column 5 becomes inf/NaN, nothing else changes
    out = _host(x, wb, b, act, r)
    cols = torch.arange(21) != 5
    assert not torch.isfinite(out[:, 5]).all() and torch.equal(out[:, cols], clean[:, cols])


def test_host_in_place_residual():
    """out may be the residual itself: each element is read before it is written."""
    x, w, b, act, r = _args(13, 7, 67, F32, "bias_gelu_residual", _seed("inplace"))
    expect = _host(x, w, b, act, r)
    r2 = r.clone()
    got = _host(x, w, b, act, r2, out=r2)
    assert got.data_ptr() == r2.data_ptr() and torch.equal(r2, expect)


def test_host_conversions_are_exact():
    """Every fp16/bf16 pattern goes through the shared conversions unchanged: x = 0 gives
    out = 0·W + bias = the bias (NaNs stay NaN; -0 + 0 = +0)."""
    for dtype in (F16, BF16):
        b = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
        m = b.numel()
        out = _host(torch.zeros(1, 1, dtype=dtype), torch.ones(m, 1, dtype=dtype), b, "none", None)
        same = (out[0].view(torch.int16) == b.view(torch.int16)) | (torch.isnan(out[0]) & torch.isnan(b))
        same |= (out[0] == 0) & (b == 0)
        assert bool(same.all()), (dtype, b[~same][:5], out[0][~same][:5])


# -- the tensor-core tiers' index math on the host (ldmatrix and mma emulated) --------------------------

def _mma_host(x, w, b, act, r, config):
    n, k = x.shape
    m = w.shape[0]
    out = torch.full((n, m), float("nan"), dtype=x.dtype)
    _C._linear_mma_host(*_ptrs(x, w, b, r, out), n, m, k, ACT[act], _code(x.dtype), config)
    return out


@pytest.mark.parametrize("config", [0, 1], ids=["128x128", "64x128"])
@pytest.mark.parametrize("dtype", [F16, BF16], ids=_id)
def test_mma_host_math_matches_oracle(dtype, config):
    """The swizzled stage layout, the ldmatrix addresses, the fragments and the accumulator-to-output
    mapping of linear_mma.cuh (the kernels' own helpers) compose into x·Wᵀ: ragged row/column
    tiles, K tails inside a 16-wide mma step and inside a 32-wide stage, NaN-poisoned outputs."""
    for n, m, k in ((1, 1, 1), (7, 13, 67), (67, 150, 80), (131, 257, 40), (257, 130, 768)):
        for epilogue in ("bias_gelu", "bias_gelu_residual"):
            args = _args(n, m, k, dtype, epilogue, _seed("mma-host", n, m, k, dtype, epilogue))
            _check(_mma_host(*args, config), args, f"config {config} {n}x{m}x{k} {epilogue}")


@pytest.mark.parametrize("config", [0, 1], ids=["128x128", "64x128"])
def test_mma_host_walks_every_tile(config):
    """1153 rows: 10 row tiles of 128 (groups of 8 + 2) or 19 of 64 (8 + 8 + 3); 259 columns: 3
    column tiles, the last with 3; K = 40: a full stage and a stage with one 8-wide chunk live."""
    args = _args(1153, 259, 40, BF16, "bias_residual", _seed("mma-walk"))
    _check(_mma_host(*args, config), args, f"config {config} 1153x259x40")


def test_mma_host_refusals():
    host = {k: v for k, v in GOOD.items() if k not in ("tier", "stream")}
    with pytest.raises(ValueError, match=r"^_linear_mma_host: dtype must be 1 \(float16\) or 2 \(bfloat16\), got 0"):
        _C._linear_mma_host(**host, config=0)
    with pytest.raises(ValueError, match=r"^_linear_mma_host: config must be 0 \(128 x 128 tiles\) or 1"):
        _C._linear_mma_host(**{**host, "dtype": 2}, config=2)
    with pytest.raises(ValueError, match=r"^_linear_mma_host: x must be a non-null"):
        _C._linear_mma_host(**{**host, "dtype": 2, "x": 0}, config=0)


def test_mma_layout_is_bank_conflict_free():
    """Every phase of the 16-byte stage stores, of every ldmatrix (XOR-swizzled stages: unswizzled
    64-byte rows would be 4-way) and of the staged epilogue's 8-byte accumulator stores and
    16-byte reads (rows padded by 8 floats) hits distinct banks."""
    assert _C._linear_mma_conflicts(0) == 1
    assert _C._linear_mma_conflicts(1) == 1


# -- with a GPU: every tier against the oracle -----------------------------------------------------------

def _launch(x, w, b, act, r, tier, out=None):
    """The binding on a NaN-poisoned output (unwritten elements fail the checks)."""
    n, k = x.shape
    m = w.shape[0]
    if out is None:
        out = torch.full((n, m), float("nan"), dtype=x.dtype, device=x.device)
    _C.linear_fwd(*_ptrs(x, w, b, r, out), n, m, k, ACT[act], _code(x.dtype), TIERS[tier],
                  torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    return out


def _runnable(tier, dtype):
    if tier not in INFO["tiers"]["linear"]:
        pytest.skip(f"linear/{tier} is not compiled in this build")
    cap = torch.cuda.get_device_capability()
    why = _C.check_arch("linear", tier, *cap)
    if why:
        pytest.skip(why)


def _shifted(t):
    """A copy of t whose storage starts one element past an aligned address (scalar paths)."""
    buf = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
    view = buf[1:].view(t.shape)
    view.copy_(t)
    return view


GPU_ROWS = [1, 7, 67, 131, 257]
GPU_MK = [(1, 1), (80, 150), (150, 80), (768, 768), (1, 768), (768, 1), (130, 7), (96, 40)]


@needs_gpu
@pytest.mark.parametrize("n", GPU_ROWS)
@pytest.mark.parametrize("tier,dtype", TIER_DTYPES, ids=lambda v: _id(v))
def test_gpu_every_tier_against_oracle(tier, dtype, n):
    _runnable(tier, dtype)
    for i, (m, k) in enumerate(GPU_MK):
        for epilogue in (("bias", "bias_gelu_residual") if i % 2 else ("bias_gelu", "none", "gelu_residual")):
            args = _args(n, m, k, dtype, epilogue, _seed("gpu", n, m, k, dtype, epilogue), "cuda")
            _check(_launch(*args, tier), args, f"{tier} {n}x{m}x{k} {epilogue}")


@needs_gpu
@pytest.mark.parametrize("tier,dtype", TIER_DTYPES, ids=lambda v: _id(v))
def test_gpu_unaligned_and_odd_k(tier, dtype):
    """The predicated paths: K % 8 != 0 (odd row pitch) and operands/outputs at storage offsets of
    one element; and the many-tile launch (8191 rows: the big mma_sm80 tile) with aligned and odd K."""
    _runnable(tier, dtype)
    for n, m, k in ((67, 80, 150), (131, 257, 1003), (8191, 1030, 1024), (8191, 1030, 1003)):
        args = _args(n, m, k, dtype, "bias_gelu_residual", _seed("unaligned", n, m, k, dtype), "cuda")
        _check(_launch(*args, tier), args, f"{tier} {n}x{m}x{k}")
        if n < 1000:
            x, w, b, act, r = args
            shifted = (_shifted(x), _shifted(w), _shifted(b), act, _shifted(r))
            out = _shifted(torch.full((n, m), float("nan"), dtype=dtype, device="cuda"))
            _check(_launch(*shifted, tier, out=out), shifted, f"{tier} {n}x{m}x{k} shifted")


@needs_gpu
@pytest.mark.parametrize("dtype", [F32, F16, BF16], ids=_id)
def test_gpu_cuda_core_is_the_host_twin(dtype):
    """Same block walk, same fmaf order: bit for bit (GELU within an ulp: erff differs by libm)."""
    for n, m, k in ((67, 150, 80), (131, 257, 1003), (257, 130, 768)):
        args = _args(n, m, k, dtype, "bias_residual", _seed("twin", n, m, k, dtype), "cuda")
        gpu = _launch(*args, "cuda_core")
        host = _host(*(t.cpu() if isinstance(t, torch.Tensor) else t for t in args))
        assert torch.equal(gpu.cpu(), host), (gpu.cpu().double() - host.double()).abs().max()
        args = args[:3] + ("gelu",) + args[4:]
        host = _host(*(t.cpu() if isinstance(t, torch.Tensor) else t for t in args))
        torch.testing.assert_close(_launch(*args, "cuda_core").cpu(), host, rtol=2 * torch.finfo(dtype).eps,
                                   atol=1e-6)


@needs_gpu
@pytest.mark.parametrize("tier,dtype", TIER_DTYPES, ids=lambda v: _id(v))
def test_gpu_nan_stays_in_its_row(tier, dtype):
    _runnable(tier, dtype)
    x, w, b, act, r = _args(300, 200, 256, dtype, "bias_gelu_residual", _seed("gpu-nan", dtype), "cuda")
    clean = _launch(x, w, b, act, r, tier)
    xb = x.clone()
    xb[150, 100] = float("nan")  # row 150: second 128-row tile, mid K
    out = _launch(xb, w, b, act, r, tier)
    keep = torch.arange(300, device="cuda") != 150
    assert torch.isnan(out[150]).all() and torch.equal(out[keep], clean[keep])


@needs_gpu
@pytest.mark.parametrize("tier,dtype", TIER_DTYPES, ids=lambda v: _id(v))
def test_gpu_model_shapes(tier, dtype):
    """qkv, proj, fc1 (+GELU), fc2 of ViT-L (D 1024) on one 512 px image (1032 tokens) and on four
    images plus 3 tokens; proj with the residual epilogue."""
    _runnable(tier, dtype)
    d = 1024
    for n in (1032, 4 * 1032 + 3):
        for m, k, epilogue in ((3 * d, d, "bias"), (d, d, "bias_residual"), (4 * d, d, "bias_gelu"), (d, 4 * d, "bias")):
            args = _args(n, m, k, dtype, epilogue, _seed("model", n, m, k, dtype), "cuda")
            _check(_launch(*args, tier), args, f"{tier} {n}x{m}x{k} {epilogue}")


@needs_gpu
@pytest.mark.parametrize("tier", ["cuda_core", "mma_sm80"])
def test_gpu_offsets_past_2_to_the_31(tier):
    """N*K and N*M above 2**31 elements: rows at the end land where they belong (64-bit offsets)."""
    _runnable(tier, BF16)
    n, m, k = 2**21 + 17, 1024, 1024
    if torch.cuda.get_device_properties(0).total_memory < 24 * 2**30:
        pytest.skip("needs ~9 GiB free on the GPU")
    gen = torch.Generator(device="cuda").manual_seed(_seed("big"))
    x = torch.randn(n, k, device="cuda", dtype=BF16, generator=gen)
    w = (torch.randn(m, k, device="cuda", generator=gen) / 32).to(BF16)
    out = _launch(x, w, None, "none", None, tier, out=torch.empty(n, m, dtype=BF16, device="cuda"))
    for rows in (slice(0, 64), slice(n // 2, n // 2 + 64), slice(n - 64, n)):
        _check(out[rows], (x[rows], w, None, "none", None), f"rows {rows}")
    del x, out


@needs_gpu
@pytest.mark.parametrize("tier,dtype", TIER_DTYPES, ids=lambda v: _id(v))
def test_gpu_wrapper_and_forced_tiers(tier, dtype, monkeypatch):
    _runnable(tier, dtype)
    args = _args(67, 80, 150, dtype, "bias_gelu_residual", _seed("wrapper", dtype), "cuda")
    torch.full((67, 80), float("nan"), dtype=dtype, device="cuda")  # likely recycled as the output
    _check(cuda.linear(*args, tier=tier), args, f"tier={tier}")
    monkeypatch.setenv(cuda.TIER_ENV, f"linear:{tier}")
    _check(cuda.linear(*args), args, f"FASTRADIO_TIER={tier}")
    assert cuda.linear(args[0][:0], *args[1:3], args[3], None).shape == (0, 80)
    for other in ("mma_sm75", "mma_sm80", "wgmma_sm90a"):
        if dtype not in cuda.LINEAR_TIER_DTYPES[other]:
            with pytest.raises(ValueError, match=f"tier '{other}' cannot run this call"):
                cuda.linear(*args, tier=other)


@pytest.fixture
def auto_tier(monkeypatch):
    """The automatic tier choice, whatever FASTRADIO_TIER the run forces (benchmarks/gpu_check.py
    re-runs the CUDA tests with each tier forced; the tests below pick tiers themselves)."""
    monkeypatch.delenv(cuda.TIER_ENV, raising=False)


@needs_gpu
def test_gpu_auto_tier(auto_tier):
    cap = torch.cuda.get_device_capability()
    assert cuda.resolve_tier("linear", torch.device("cuda"), dtype=F32) == "cuda_core"
    hopper = cap == (9, 0) and "wgmma_sm90a" in INFO["tiers"]["linear"] and \
        not _C.check_arch("linear", "wgmma_sm90a", *cap)
    if hopper:
        assert cuda.resolve_tier("linear", torch.device("cuda"), dtype=BF16) == "wgmma_sm90a"
    elif cap >= (8, 0) and "mma_sm80" in INFO["tiers"]["linear"]:
        assert cuda.resolve_tier("linear", torch.device("cuda"), dtype=BF16) == "mma_sm80"
    assert cuda.supports("linear", torch.device("cuda"), BF16) == [] or cap < (8, 0)


@needs_gpu
def test_gpu_binding_refuses_host_pointers():
    x, w, b, r = _inputs(4, 3, 16, F32, 1)
    out = torch.empty(4, 3, device="cuda")
    with pytest.raises(ValueError, match="must point to device memory"):
        _C.linear_fwd(*_ptrs(x, w, b, r, out), 4, 3, 16, 0, 0, 0, torch.cuda.current_stream().cuda_stream)


@needs_gpu
def test_gpu_opcheck(auto_tier):
    op = torch.ops.fastradio.cuda_linear.default
    for dtype in (F32, BF16):
        x, w, b, act, r = _args(13, 40, 24, dtype, "bias_gelu_residual", _seed("opcheck", dtype), "cuda")
        torch.library.opcheck(op, (x, w, b, act, r, -1))
        torch.library.opcheck(op, (x, w, None, "none", None, -1))


@needs_gpu
@pytest.mark.parametrize("n", [131, 8191])  # mma_sm80: the 64 x 128 tile, and the 128 x 128 one (smem opt-in)
def test_gpu_cuda_graph_capture(n, auto_tier):
    args = _args(n, 768, 768, BF16, "bias_gelu", _seed("graph", n), "cuda")
    x, w, b, act, r = args
    cuda.linear(*args)  # warm-up outside capture
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = cuda.linear(*args)
    x.copy_(_inputs(n, 768, 768, BF16, _seed("graph2", n), "cuda")[0])  # replay reads the new values
    g.replay()
    torch.cuda.synchronize()
    _check(out, args, "graph replay")


@needs_gpu
def test_gpu_compile_fullgraph(auto_tier):
    x, w, b, act, r = _args(67, 80, 150, BF16, "bias_gelu", _seed("compile"), "cuda")
    w2 = _inputs(67, 150, 80, BF16, _seed("compile2"), "cuda")[1]

    def f(x, scale):
        hid = cuda.linear(x, w, b, "gelu", None)
        return cuda.linear(hid, w2, None, "none", x) * scale

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True)
    torch.testing.assert_close(compiled(x, 2.0), f(x, 2.0), rtol=0, atol=0)
