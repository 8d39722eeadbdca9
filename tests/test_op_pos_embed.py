"""pos_embed, one op test for every backend (reference, triton, cuda) on every device.

(a) the spec facts (c-radiov2.md §3), checked independently of F.interpolate: a float64 oracle of
    the exact formula (NumPy fp32 source coordinates, explicit gathers) equals the reference;
    align_corners=False, a centre crop and an fp64 source coordinate all give measurably
    different numbers, so the tolerances below would catch each of those bugs; the
    align_corners=False mode of C-RADIOv4 (radio-family spec §3) has its own oracle, which equals
    F.interpolate(align_corners=False) on the square-then-crop rule, m = 1 and m > 128 included;
(b) every backend against that oracle: fp32 tight, fp16/bf16 within 2x the error of the
    reference's own cast (the precision floor, DESIGN §7), on awkward shapes;
(c) wrong inputs are rejected; (d) FakeTensor shapes and torch.compile(fullgraph=True).

A backend that cannot run here is skipped with the dispatcher's reason. On CPU the Triton kernel
runs only under TRITON_INTERPRET=1; big shapes run only on a GPU. Tables are drawn per case from
a fixed seed; set FASTRADIO_TEST_SEED to draw different ones.
"""

from __future__ import annotations

import functools
import os
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastradio import backends

from kernel_testing import backend_or_skip, dtype_id

BACKENDS = ("reference", "triton", "cuda")
DEVICES = ("cpu", "cuda")
OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
FP32_TOL = 1e-6  # relative L2 and max-abs relative to max |oracle|; an fp64 src gives ~5e-6
# torch's CUDA upsample computes lam = scale*i - i0, which nvcc may contract into one fma (an
# unrounded src, the same size of error as an fp64 src). The reference is the oracle on CPU only;
# on GPU it is the benchmark peer and gets this bound. Our kernels keep FP32_TOL everywhere.
FP32_TOL_TORCH_CUDA = 2e-5

# (G, h, w, D). h or w > G up-samples; (G, G) is the identity; (1, 1) is the single patch.
CASES = [
    (16, 1, 1, 3), (16, 1, 7, 64), (16, 7, 1, 1), (16, 2, 2, 80), (16, 7, 13, 3), (16, 13, 7, 80),
    (16, 16, 16, 64), (16, 31, 31, 3), (16, 31, 2, 1030), (16, 2, 31, 768), (16, 128, 2, 1),
    (16, 13, 160, 3),
    (128, 1, 1, 80), (128, 2, 7, 1), (128, 13, 13, 64), (128, 31, 7, 3), (128, 128, 128, 3),
    (128, 131, 2, 64), (128, 160, 13, 1), (128, 7, 131, 3),
]
# Real widths at real grids: too slow for the interpreter and the fp64 oracle on 2 CPU cores.
GPU_CASES = [
    (128, 128, 128, 768), (128, 131, 131, 1030), (128, 160, 160, 768), (128, 160, 100, 1030),
    (128, 32, 48, 768), (128, 14, 14, 80), (16, 160, 131, 64),
]


def _case_id(case):
    g, h, w, d = case
    return f"G{g}-{h}x{w}-D{d}"


# -- helpers ----------------------------------------------------------------------------------------

def _backend_or_skip(name: str, device: str, dtype: torch.dtype = torch.float32):
    return backend_or_skip(name, "pos_embed", device, dtype)


def _table(g: int, d: int, seed: int) -> torch.Tensor:
    """(G, G, D) fp32 like a trained table: N(0, 0.02) plus a few large outliers of both signs."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.randn(g, g, d, generator=gen) * 0.02
    k = max(1, min(16, t.numel() // 500))
    idx = torch.randint(0, t.numel(), (k,), generator=gen)
    mag = 0.5 + 2.5 * torch.rand(k, generator=gen)
    sign = torch.where(torch.rand(k, generator=gen) < 0.5, -1.0, 1.0)
    t.view(-1)[idx] = mag * sign
    return t


def _seed(*parts) -> int:
    return zlib.crc32(repr((os.environ.get("FASTRADIO_TEST_SEED", "0"),) + parts).encode())


def _taps(g: int, m: int, n: int, src_fp64: bool = False, align_corners: bool = True):
    """One axis of spec §3 for output indices 0..n-1: (i0, i1, lam) with lam in float64.
    align_corners=False is radio-family spec §3: scale = fp32(G) / fp32(m) and
    src = max(0, (i + 0.5)·scale − 0.5) rounded once to fp32 (the double product and difference
    are exact, so one cast is the fma's single rounding); lam = min(src - i0, 1)."""
    i = np.arange(n)
    if not align_corners:
        scale = np.float32(g) / np.float32(m)
        src = np.maximum(((i + 0.5) * np.float64(scale) - 0.5).astype(np.float32), np.float32(0))
    elif m == 1:
        src = np.zeros(n, np.float32)
    elif src_fp64:
        src = (g - 1) / (m - 1) * i.astype(np.float64)
    else:
        scale = np.float32(g - 1) / np.float32(m - 1)
        src = scale * i.astype(np.float32)  # fp32 product, as the spec requires
    i0 = np.minimum(np.floor(src).astype(np.int64), g - 1)
    i1 = np.minimum(i0 + 1, g - 1)
    return i0, i1, np.minimum(src - i0, 1).astype(np.float64)  # src - floor(src) is exact in fp32


def _oracle(table: torch.Tensor, h: int, w: int, src_fp64: bool = False, align_corners: bool = True) -> torch.Tensor:
    """(h*w, D) float64 on table's device: the spec's formula, written independently of
    F.interpolate (NumPy source coordinates, explicit gathers)."""
    g = table.shape[0]
    m = max(h, w)
    t = table.double()
    (y0, y1, ly), (x0, x1, lx) = [
        [torch.as_tensor(a, device=table.device) for a in _taps(g, m, n, src_fp64, align_corners)]
        for n in (h, w)]
    ly = ly[:, None, None]
    lx = lx[None, :, None]
    top = (1 - lx) * t[y0][:, x0] + lx * t[y0][:, x1]
    bot = (1 - lx) * t[y1][:, x0] + lx * t[y1][:, x1]
    return ((1 - ly) * top + ly * bot).reshape(h * w, -1)


@functools.lru_cache(maxsize=16)
def _case_data(case, device: str = "cpu"):
    """(fp32 table, float64 oracle) on ``device``; cached because every backend and dtype reuses it."""
    g, h, w, d = case
    table = _table(g, d, _seed(case)).to(device)
    return table, _oracle(table, h, w)


def _err(x: torch.Tensor, oracle: torch.Tensor) -> tuple[float, float]:
    """(relative L2, max-abs / max|oracle|) of x against the float64 oracle."""
    e = x.to(oracle.device).double() - oracle
    return ((e.norm() / oracle.norm().clamp_min(1e-30)).item(),
            (e.abs().max() / oracle.abs().max().clamp_min(1e-30)).item())


def _poison_allocator(shape, dtype, device):
    # The backend API has no out=: fill a same-sized block with NaN and free it, so a caching
    # allocator (CUDA) is likely to hand it back as the output and unwritten elements show up.
    torch.full(shape, float("nan"), dtype=dtype, device=device)


# -- (a) spec facts, independent of any backend ---------------------------------------------------

SPEC_CASES = [(16, 7, 13, 8), (128, 131, 131, 4), (128, 96, 37, 8), (128, 160, 100, 2), (16, 1, 1, 5)]


@pytest.mark.parametrize("case", SPEC_CASES, ids=_case_id)
def test_reference_is_the_spec_formula(case):
    table, oracle = _case_data(case)
    g, h, w, d = case
    ref = backends.get("reference").pos_embed(table, h, w, torch.float32)
    assert ref.shape == (h * w, d) and ref.dtype == torch.float32
    rel, mx = _err(ref, oracle)
    assert rel <= FP32_TOL and mx <= FP32_TOL, (rel, mx)


@pytest.mark.parametrize("case", SPEC_CASES[:4], ids=_case_id)
def test_reference_is_torch_interpolate_of_nchw_then_top_left_crop(case):
    # The same resize reached another way: an NCHW-contiguous (1, D, G, G) input (the reference
    # feeds a channels-last view), crop, then flatten.
    table, _ = _case_data(case)
    g, h, w, d = case
    m = max(h, w)
    nchw = table.permute(2, 0, 1).contiguous().unsqueeze(0)
    full = F.interpolate(nchw, size=(m, m), mode="bilinear", align_corners=True)
    expect = full[0, :, :h, :w].reshape(d, h * w).t()
    ref = backends.get("reference").pos_embed(table, h, w, torch.float32)
    torch.testing.assert_close(ref, expect, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", SPEC_CASES + [(128, 200, 3, 4), (16, 1, 3, 5)], ids=_case_id)
def test_align_corners_false_formula_is_torch_interpolate(case):
    """The radio-family spec's index form (one fp32 rounding) gives exactly PyTorch's CPU weights,
    square-then-crop, for m = 1 (the centre) and m > 128 (edge clamping) too."""
    table, _ = _case_data(case)
    g, h, w, d = case
    m = max(h, w)
    oracle = _oracle(table, h, w, align_corners=False)
    nchw = table.permute(2, 0, 1).contiguous().unsqueeze(0)
    full = F.interpolate(nchw, size=(m, m), mode="bilinear", align_corners=False)
    expect = full[0, :, :h, :w].reshape(d, h * w).t()
    rel, mx = _err(expect, oracle)
    assert rel <= FP32_TOL and mx <= FP32_TOL, (rel, mx)
    ref = backends.get("reference").pos_embed(table, h, w, torch.float32, align_corners=False)
    torch.testing.assert_close(ref, expect, rtol=1e-6, atol=1e-7)  # a channels-last view: another torch kernel


def test_the_tolerance_catches_two_roundings_without_align_corners():
    """Rounding (i + 0.5)·scale and then subtracting 0.5 (two fp32 roundings) moves weights by up
    to ~2e-6 (radio-family spec §3); the exact form is what the kernels must use."""
    g, m = 128, 131
    scale = np.float32(g) / np.float32(m)
    i = np.arange(m)
    once = np.maximum(((i + 0.5) * np.float64(scale) - 0.5).astype(np.float32), 0)
    twice = np.maximum((np.float32(i + 0.5) * scale).astype(np.float32) - np.float32(0.5), 0)
    assert (once != twice).any()


def test_the_tolerance_catches_an_fp64_source_coordinate():
    case = (128, 131, 131, 4)
    table, oracle = _case_data(case)
    wrong = _oracle(table, 131, 131, src_fp64=True)
    rel, mx = _err(wrong, oracle)
    assert rel > 2 * FP32_TOL, rel  # ~5e-6: an fp64 src would fail the fp32 checks below


@pytest.mark.parametrize("case", [(16, 7, 13, 8), (128, 31, 31, 4), (128, 160, 160, 2)], ids=_case_id)
def test_align_corners_false_is_clearly_different(case):
    table, oracle = _case_data(case)
    g, h, w, d = case
    m = max(h, w)
    nchw = table.permute(2, 0, 1).unsqueeze(0)
    wrong = F.interpolate(nchw, size=(m, m), mode="bilinear", align_corners=False)
    wrong = wrong[0, :, :h, :w].reshape(d, h * w).t()
    rel, _ = _err(wrong, oracle)
    assert rel > 1e-2, rel


@pytest.mark.parametrize("case", [(16, 7, 13, 8), (128, 13, 7, 8), (128, 2, 131, 4)], ids=_case_id)
def test_top_left_crop_not_centre(case):
    table, oracle = _case_data(case)
    g, h, w, d = case
    m = max(h, w)
    full = _oracle(table, m, m).reshape(m, m, d)
    top_left = full[:h, :w].reshape(h * w, d)
    r0, c0 = (m - h) // 2, (m - w) // 2
    centre = full[r0:r0 + h, c0:c0 + w].reshape(h * w, d)
    assert torch.equal(top_left, oracle)
    assert _err(centre, oracle)[0] > 1e-2


def test_identity_and_single_patch_by_formula():
    table, _ = _case_data((16, 16, 16, 64))
    assert torch.equal(_oracle(table, 16, 16), table.double().reshape(256, 64))
    assert torch.equal(_oracle(table, 1, 1), table[0, 0].double()[None])


# -- (b) every backend against the oracle -----------------------------------------------------------

def _all_cases():
    for case in CASES:
        yield pytest.param(case, id=_case_id(case))
    for case in GPU_CASES:
        yield pytest.param(case, id=_case_id(case) + "-gpuonly")


@pytest.mark.parametrize("dtype", OUT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", list(_all_cases()))
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_against_oracle(backend, device, case, dtype):
    if case in GPU_CASES and device == "cpu":
        pytest.skip("large shape: GPU only (interpreter and fp64 oracle time on CPU)")
    mod = _backend_or_skip(backend, device, dtype)
    table, oracle = _case_data(case, device)
    g, h, w, d = case
    _poison_allocator((h * w, d), dtype, device)
    out = mod.pos_embed(table, h, w, dtype)
    assert out.shape == (h * w, d) and out.dtype == dtype and out.device == table.device
    if backend != "reference":  # the reference may return a view; the kernels write fresh rows
        assert out.is_contiguous()
    assert torch.isfinite(out).all(), "NaN/inf in the output: unwritten or garbage elements"
    if (h, w) == (g, g) or (h, w) == (1, 1):
        expect = table.reshape(g * g, d) if (h, w) == (g, g) else table[0, 0][None]
        torch.testing.assert_close(out, expect.to(dtype), rtol=0, atol=0)  # exact, any dtype
    if dtype == torch.float32:
        tol = FP32_TOL_TORCH_CUDA if (backend, device) == ("reference", "cuda") else FP32_TOL
        rel, mx = _err(out, oracle)
        assert rel <= tol and mx <= tol, f"fp32 error rel L2 {rel:.3g}, max {mx:.3g} (bound {tol:g})"
        return
    floor = backends.get("reference").pos_embed(table.cpu(), h, w, torch.float32).to(dtype)
    rel, mx = _err(out, oracle)
    frel, fmx = _err(floor, oracle)
    assert rel <= 2 * frel + 1e-12 and mx <= 2 * fmx + 1e-12, (
        f"{dtype} error rel L2 {rel:.3g} / max {mx:.3g} vs precision floor {frel:.3g} / {fmx:.3g}")
    # One rounding at the end: the low-precision output is this backend's fp32 output, cast (RNE).
    out32 = mod.pos_embed(table, h, w, torch.float32)
    torch.testing.assert_close(out, out32.to(dtype), rtol=0, atol=0)


#: align_corners=False (C-RADIOv4): down, up past G (edge clamping), m = 1 (the centre), identity.
AC_FALSE_CASES = [(16, 1, 1, 3), (16, 7, 13, 80), (16, 31, 2, 64), (16, 16, 16, 8), (128, 1, 1, 80),
                  (128, 13, 13, 64), (128, 131, 2, 64), (128, 160, 13, 1)]


@pytest.mark.parametrize("dtype", OUT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", AC_FALSE_CASES, ids=_case_id)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_against_oracle_without_align_corners(backend, device, case, dtype):
    mod = _backend_or_skip(backend, device, dtype)
    g, h, w, d = case
    table = _table(g, d, _seed(case, "ac_false")).to(device)
    oracle = _oracle(table, h, w, align_corners=False)
    _poison_allocator((h * w, d), dtype, device)
    out = mod.pos_embed(table, h, w, dtype, align_corners=False)
    assert out.shape == (h * w, d) and out.dtype == dtype and torch.isfinite(out).all()
    if (h, w) == (g, g):
        torch.testing.assert_close(out, table.reshape(g * g, d).to(dtype), rtol=0, atol=0)
    out32 = out if dtype == torch.float32 else mod.pos_embed(table, h, w, torch.float32, align_corners=False)
    tol = FP32_TOL_TORCH_CUDA if (backend, device) == ("reference", "cuda") else FP32_TOL
    rel, mx = _err(out32, oracle)
    assert rel <= tol and mx <= tol, f"fp32 error rel L2 {rel:.3g}, max {mx:.3g} (bound {tol:g})"
    torch.testing.assert_close(out, out32.to(dtype), rtol=0, atol=0)  # one rounding at the end
    # And not the align_corners=True resize (unless the two coincide: the identity).
    if (h, w) != (g, g):
        assert _err(mod.pos_embed(table, h, w, torch.float32), oracle)[0] > 1e-3


# -- (c) wrong inputs are rejected ------------------------------------------------------------------

FAST_BACKENDS = ("triton", "cuda")


def _bad_inputs(device):
    t = _table(8, 6, 1).to(device)
    f = torch.float32
    return {
        "fp16 table": (t.half(), 3, 4, f),
        "fp64 table": (t.double(), 3, 4, f),
        "2-D table": (t.reshape(64, 6), 3, 4, f),
        "4-D table": (t[None], 3, 4, f),
        "non-square table": (t[:7].contiguous(), 3, 4, f),
        "D == 0": (t[:, :, :0].contiguous(), 3, 4, f),
        "transposed table": (t.transpose(0, 1), 3, 4, f),
        "strided D": (_table(8, 12, 1).to(device)[:, :, ::2], 3, 4, f),
        "h == 0": (t, 0, 4, f),
        "w < 0": (t, 3, -1, f),
        "int32 out": (t, 3, 4, torch.int32),
        "fp64 out": (t, 3, 4, torch.float64),
    }


@pytest.mark.parametrize("what", list(_bad_inputs("cpu")))
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_rejects_bad_input(backend, device, what):
    mod = _backend_or_skip(backend, device)
    args = _bad_inputs(device)[what]
    with pytest.raises((TypeError, ValueError, RuntimeError)) as info:
        mod.pos_embed(*args)
    assert str(info.value), "the error must say what was expected and what came"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_rejects_a_device_it_refuses(backend, device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device to make a tensor on")
    reasons = backends.refusals(backend, "pos_embed", torch.device(device), torch.float32)
    if not reasons:
        pytest.skip(f"{backend} runs on {device} here; nothing to refuse")
    try:
        mod = backends.get(backend)
    except ImportError as e:
        pytest.skip(f"{backend} does not import: {e}")
    with pytest.raises((TypeError, ValueError, RuntimeError)):
        mod.pos_embed(_table(8, 6, 1).to(device), 3, 4, torch.float32)


# -- (d) FakeTensor shapes and torch.compile --------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fake_tensor_shape(backend, device):
    from torch._subclasses.fake_tensor import FakeTensorMode

    mod = _backend_or_skip(backend, device, torch.bfloat16)
    with FakeTensorMode():
        table = torch.empty(16, 16, 40, device=device)
        out = mod.pos_embed(table, 7, 131, torch.bfloat16)
        assert out.shape == (7 * 131, 40) and out.dtype == torch.bfloat16
        assert out.device.type == device


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_compile_fullgraph(backend, device):
    mod = _backend_or_skip(backend, device, torch.float16)
    # On CPU the Inductor backend spends ~20 s compiling C++ for a two-op graph; aot_eager still
    # runs Dynamo's full-graph capture and the functionalisation that custom ops must survive.
    compiler = "inductor" if device == "cuda" else "aot_eager"

    def f(table, scale):
        return mod.pos_embed(table, 13, 7, torch.float16) * scale

    table = _table(16, 24, 3).to(device)
    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend=compiler)
    got = compiled(table, 2.0)
    torch.testing.assert_close(got, f(table, 2.0), rtol=0, atol=0)
    got = compiled(table, 3.0)  # a second call reuses the graph
    torch.testing.assert_close(got, f(table, 3.0), rtol=0, atol=0)
