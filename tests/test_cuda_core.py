"""The C++/CUDA core without a GPU: ``fastradio._C`` imports, reports its build, validates every
argument before touching CUDA and fails cleanly without a driver; ``backends.cuda`` validates
tensors, explains its refusals and has a working fake implementation. The kernel's math runs on
the host through ``_C._pos_embed_host`` and is compared with torch. (GPU value tests of the kernel:
tests/test_op_pos_embed.py; the GPU tests here check the binding's device-side refusals.)"""

from __future__ import annotations

import re

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import fastradio
from fastradio import _C, backends
from fastradio.backends import cuda
from fastradio.backends import reference

from kernel_testing import needs_gpu, no_gpu

CODES = _C.dtype_codes()
TIERS = _C.tiers()
INFO = _C.build_info()
ARCH_RE = re.compile(r"^\d+a?$")


# -- the extension and its build report -------------------------------------------------------------

def test_extension_lives_in_the_package():
    assert _C.__name__ == "fastradio._C"
    assert "fastradio" in _C.__file__
    import fastradio.kernels  # shipped in the same wheel

    assert fastradio.kernels.__name__ == "fastradio.kernels"


def test_build_info_is_consistent():
    assert INFO["version"] == fastradio.__version__
    assert INFO["toolchain"] in ("nvcc", "clang")
    assert re.match(r"^\d+\.\d+$", INFO["cuda_version"])
    assert INFO["build_type"]
    assert INFO["archs"] and all(ARCH_RE.match(a) for a in INFO["archs"])
    assert "cuda_core" in INFO["tiers"]["pos_embed"]
    for op, tiers in INFO["tiers"].items():
        assert set(tiers) == set(INFO["kernels"][op])
        for tier in tiers:
            assert tier in TIERS
            k = INFO["kernels"][op][tier]
            assert k["sass"] and set(k["sass"]) <= set(INFO["archs"])
            assert len(k["ptx"]) == 1 and k["ptx"][0] in k["sass"]
            assert set(k["sass"]) <= set(INFO["sass_archs"]) and k["ptx"][0] in INFO["ptx_archs"]
    # The cuda_core tier runs from sm_60: it is compiled for every arch of the build, except an
    # arch-specific one ("90a") whose plain arch is built too (FastradioCuda.cmake).
    assert INFO["kernels"]["pos_embed"]["cuda_core"]["sass"] == portable_archs(INFO["archs"])


def portable_archs(archs: list[str]) -> list[str]:
    """The archs a portable tier (no ONLY_ARCHS) is compiled for, out of the build's archs."""
    return [a for a in archs if not (a[-1] in "af" and a[:-1] in archs)]


def test_portable_archs_skip_arch_specific_next_to_plain():
    assert portable_archs(["80", "90", "90a", "100a", "120"]) == ["80", "90", "100a", "120"]


def test_codes_come_from_the_extension():
    assert CODES == {"float32": 0, "float16": 1, "bfloat16": 2}
    assert TIERS["cuda_core"] == 0 and len(set(TIERS.values())) == len(TIERS)
    assert cuda._DTYPE_CODES == {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def test_device_count_never_raises_without_a_driver():
    n = _C.device_count()
    assert isinstance(n, int) and n >= 0


def test_check_arch():
    sass = INFO["kernels"]["pos_embed"]["cuda_core"]["sass"]
    plain = [a for a in sass if not a.endswith("a")]
    a = int(plain[0])
    assert _C.check_arch("pos_embed", "cuda_core", a // 10, a % 10) == ""
    why = _C.check_arch("pos_embed", "cuda_core", 5, 0)  # sm_50: below every build
    assert "built without sm_50" in why and "FASTRADIO_CUDA_ARCHS=50" in why
    assert "not compiled" in _C.check_arch("pos_embed", "tcgen05_sm100a", 10, 0)
    assert "not compiled" in _C.check_arch("no_such_op", "cuda_core", 9, 0)


# -- the binding refuses bad arguments before any CUDA call ------------------------------------------

GOOD = dict(table=0x1000, out=0x2000, grid=16, dim=64, h=8, w=12, out_dtype=0, tier=0, stream=0)


@pytest.mark.parametrize("field,value,expect", [
    ("table", 0, "table must be a non-null device pointer, got 0"),
    ("out", 0, "out must be a non-null device pointer, got 0"),
    ("grid", 0, "grid must be >= 1, got 0"),
    ("dim", 0, "dim must be >= 1, got 0"),
    ("h", 0, "h must be >= 1, got 0"),
    ("w", -3, "w must be >= 1, got -3"),
    ("dim", 2**62, "overflows int64"),
    ("out_dtype", 3, "out_dtype must be one of 0 (float32), 1 (float16), 2 (bfloat16), got 3"),
    ("out_dtype", -1, "got -1"),
    ("tier", 99, "tier must be one of 0 (cuda_core)"),
    ("tier", TIERS["tcgen05_sm100a"], "(tcgen05_sm100a) is not compiled for pos_embed in this build; compiled: cuda_core"),
])
def test_binding_rejects_bad_arguments(field, value, expect):
    with pytest.raises(ValueError) as info:
        _C.pos_embed_fwd(**{**GOOD, field: value})
    assert expect in str(info.value)
    assert str(info.value).startswith("pos_embed_fwd: ")


def test_binding_rejects_non_int_arguments():
    with pytest.raises(TypeError):
        _C.pos_embed_fwd(**{**GOOD, "table": -1})
    with pytest.raises(TypeError):
        _C.pos_embed_fwd(**{**GOOD, "h": 2.5})


@no_gpu
def test_binding_without_gpu_raises_runtime_error():
    if _C.device_count() != 0:
        pytest.skip("a driver and device are present (torch just cannot use them)")
    with pytest.raises(RuntimeError) as info:
        _C.pos_embed_fwd(**GOOD)
    assert "no CUDA driver/device" in str(info.value)


# -- backends.cuda: tensor checks, refusals, fake implementation -------------------------------------

def test_supports_explains_refusals():
    reasons = cuda.supports("pos_embed", torch.device("cpu"), torch.float32)
    assert reasons and "not a CUDA device" in reasons[0]
    reasons = cuda.supports("pos_embed", torch.device("cuda"), torch.float64)
    assert any("float64" in r for r in reasons)
    assert "does not implement" in cuda.supports("no_such_op", torch.device("cuda"), torch.float16)[0]
    if not torch.cuda.is_available():
        reasons = cuda.supports("pos_embed", torch.device("cuda"), torch.bfloat16)
        assert reasons and "torch.cuda.is_available() is False" in reasons[0]
    assert backends.refusals("cuda", "pos_embed", torch.device("cpu"), torch.float32)


def test_wrapper_rejects_cpu_tensors():
    with pytest.raises(ValueError, match="table must be on a CUDA device, got cpu"):
        cuda.pos_embed(torch.zeros(4, 4, 8), 3, 5, torch.float32)


@pytest.mark.parametrize("make,h,w,dtype,exc,msg", [
    (lambda: torch.empty(4, 4, 8, dtype=torch.float16, device="cuda"), 3, 5, torch.float32, TypeError,
     "table must be torch.float32, got torch.float16"),
    (lambda: torch.empty(16, 8, device="cuda"), 3, 5, torch.float32, ValueError, "table must have 3 dims, got shape (16, 8)"),
    (lambda: torch.empty(4, 5, 8, device="cuda"), 3, 5, torch.float32, ValueError, "shape (G, G, D)"),
    (lambda: torch.empty(4, 4, 0, device="cuda"), 3, 5, torch.float32, ValueError, "G, D >= 1"),
    (lambda: torch.empty(4, 4, 8, device="cuda").transpose(0, 1), 3, 5, torch.float32, ValueError,
     "table must be contiguous"),
    (lambda: torch.empty_strided((4, 4, 8), (64, 16, 2), device="cuda"), 3, 5, torch.float32, ValueError,
     "contiguous"),
    (lambda: torch.empty(4, 4, 8, device="cuda"), 0, 5, torch.float32, ValueError, "h must be an int >= 1, got 0"),
    (lambda: torch.empty(4, 4, 8, device="cuda"), 3, True, torch.float32, ValueError, "w must be an int >= 1"),
    (lambda: torch.empty(4, 4, 8, device="cuda"), 3, 5, torch.float64, TypeError, "out_dtype must be one of"),
    (lambda: [[0.0]], 3, 5, torch.float32, TypeError, "table must be a torch.Tensor, got list"),
])
def test_wrapper_rejects_bad_tensors(make, h, w, dtype, exc, msg):
    # Fake CUDA tensors get past the device check on machines without a GPU.
    with FakeTensorMode():
        table = make()
        with pytest.raises(exc) as info:
            cuda.pos_embed(table, h, w, dtype)
    assert msg in str(info.value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fake_implementation(dtype):
    with FakeTensorMode():
        out = cuda.pos_embed(torch.empty(16, 16, 40, device="cuda"), 7, 131, dtype)
        assert out.shape == (7 * 131, 40) and out.dtype == dtype and out.device.type == "cuda"
    meta = torch.ops.fastradio.cuda_pos_embed(torch.empty(8, 8, 24, device="meta"), 3, 2, dtype, True, -1)
    assert meta.shape == (6, 24) and meta.dtype == dtype


def test_tier_argument_and_environment(monkeypatch):
    with FakeTensorMode():
        with pytest.raises(ValueError, match="tier must be None or one of cuda_core"):
            cuda.pos_embed(torch.empty(4, 4, 8, device="cuda"), 3, 5, torch.float32, tier="fastest")
        out = cuda.pos_embed(torch.empty(4, 4, 8, device="cuda"), 3, 5, torch.float32, tier="cuda_core")
        assert out.shape == (15, 8)
    monkeypatch.setenv(cuda.TIER_ENV, "cuda_core")
    assert cuda._forced_tier("pos_embed") == "cuda_core"
    monkeypatch.setenv(cuda.TIER_ENV, "attention:mma_sm80, pos_embed:cuda_core")
    assert cuda._forced_tier("pos_embed") == "cuda_core"
    assert cuda._forced_tier("attention") == "mma_sm80"
    assert cuda._forced_tier("add_layer_norm") is None


def test_resolve_tier(monkeypatch):
    sass = [a for a in INFO["kernels"]["pos_embed"]["cuda_core"]["sass"] if not a.endswith("a")]
    a = int(sass[-1])
    monkeypatch.setattr(cuda._common, "_capability", lambda device: (a // 10, a % 10))
    monkeypatch.delenv(cuda.TIER_ENV, raising=False)
    assert cuda.resolve_tier("pos_embed", "cuda:0") == "cuda_core"
    monkeypatch.setenv(cuda.TIER_ENV, "tcgen05_sm100a")
    with pytest.raises(RuntimeError, match=r"tier 'tcgen05_sm100a' \(from FASTRADIO_TIER\) cannot run .* not compiled"):
        cuda.resolve_tier("pos_embed", "cuda:0")
    monkeypatch.setenv(cuda.TIER_ENV, "warp_speed")
    with pytest.raises(RuntimeError, match="unknown tier 'warp_speed'"):
        cuda.resolve_tier("pos_embed", "cuda:0")
    monkeypatch.delenv(cuda.TIER_ENV)
    monkeypatch.setattr(cuda._common, "_capability", lambda device: (5, 0))
    with pytest.raises(RuntimeError, match="built without sm_50"):
        cuda.resolve_tier("pos_embed", "cuda:0")


# -- the kernel's math on the host, against torch ------------------------------------------------------

def _host_pos_embed(table: torch.Tensor, h: int, w: int, dtype: torch.dtype, align_corners: bool = True
                    ) -> torch.Tensor:
    g, _, d = table.shape
    out = torch.empty(h * w, d, dtype=dtype)
    _C._pos_embed_host(table.data_ptr(), out.data_ptr(), g, d, h, w, CODES[str(dtype).removeprefix("torch.")],
                       align_corners=align_corners)
    return out


@pytest.mark.parametrize("g,d,h,w", [
    (16, 24, 16, 16),   # identity
    (16, 24, 9, 13),    # down, non-square (m = 13, top-left crop)
    (8, 20, 37, 23),    # up-sampling past G
    (12, 7, 1, 1),      # m == 1: scale 0
    (12, 5, 1, 6),      # one row
    (1, 3, 4, 5),       # a 1x1 table
    (128, 4, 64, 32),   # the real grid side, a 1024x512 image
])
def test_host_math_matches_torch(g, d, h, w):
    gen = torch.Generator().manual_seed(g * 1000 + h * 10 + w)
    table = torch.randn(g, g, d, generator=gen) * 0.02
    ref = reference.pos_embed(table, h, w, torch.float32)
    got = _host_pos_embed(table, h, w, torch.float32)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-7)
    if (h, w) == (g, g):
        assert torch.equal(got, table.reshape(g * g, d))
    for dtype in (torch.float16, torch.bfloat16):
        assert torch.equal(_host_pos_embed(table, h, w, dtype), got.to(dtype)), dtype


@pytest.mark.parametrize("g,d,h,w", [
    (16, 24, 16, 16),   # identity
    (16, 24, 9, 13),    # down, non-square
    (8, 20, 37, 23),    # up-sampling past G: the last source row repeats (clamped)
    (12, 7, 1, 1),      # m == 1: the centre, not row 0
    (128, 4, 131, 3),   # m > 128
])
def test_host_math_matches_torch_without_align_corners(g, d, h, w):
    """align_corners=False (C-RADIOv4): the kernel's taps equal torch's own CPU interpolation
    bit for bit in fp32 (radio-family spec §3: one rounding of (i + 0.5)·scale − 0.5)."""
    gen = torch.Generator().manual_seed(g * 1000 + h * 10 + w)
    table = torch.randn(g, g, d, generator=gen) * 0.02
    ref = reference.pos_embed(table, h, w, torch.float32, align_corners=False)
    got = _host_pos_embed(table, h, w, torch.float32, align_corners=False)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-7)
    assert _host_pos_embed(table, h, w, torch.float32).sub(got).abs().max() > 0 or (h, w) == (g, g)


def test_host_conversions_round_like_torch():
    specials = torch.tensor([0.0, -0.0, 1.0, -1.0, 65504.0, 65519.996, 65520.0, 1e6, -1e6, 3.4e38,
                             float("inf"), float("-inf"), 2.0**-14, 2.0**-24, 2.0**-25, 1.5 * 2.0**-25,
                             2.0**-26, 1e-45, 1.00048828125, 1.00146484375, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8])
    gen = torch.Generator().manual_seed(7)
    randoms = torch.cat([torch.randn(4000, generator=gen) * s for s in (1e-6, 1e-3, 1.0, 1e3, 6e4)])
    bits = torch.randint(0, 2**31 - 1, (4000,), generator=gen, dtype=torch.int32).view(torch.float32)
    vals = torch.cat([specials, randoms, bits[torch.isfinite(bits)]])
    n = vals.numel()
    table = vals.reshape(1, 1, n)
    for dtype in (torch.float16, torch.bfloat16):
        got = _host_pos_embed(table, 1, 1, dtype)[0]
        want = vals.to(dtype)
        same = (got.view(torch.int16) == want.view(torch.int16)) | (torch.isnan(got) & torch.isnan(want))
        assert bool(same.all()), (dtype, vals[~same][:5], got[~same][:5], want[~same][:5])
    nan = _host_pos_embed(torch.full((1, 1, 2), float("nan")), 1, 1, torch.bfloat16)
    assert torch.isnan(nan.float()).all()


# -- with a GPU: the binding's device-side checks ---------------------------------------------------

@needs_gpu
def test_gpu_binding_refuses_host_pointers():
    table = torch.randn(8, 8, 16)
    out = torch.empty(64, 16, device="cuda")
    with pytest.raises(ValueError, match="must point to device memory"):
        _C.pos_embed_fwd(table.data_ptr(), out.data_ptr(), 8, 16, 8, 8, 0, 0, torch.cuda.current_stream().cuda_stream)


@needs_gpu
def test_gpu_supports_and_opcheck():
    assert cuda.supports("pos_embed", torch.device("cuda"), torch.bfloat16) == []
    table = torch.randn(16, 16, 40, device="cuda")
    torch.library.opcheck(torch.ops.fastradio.cuda_pos_embed.default, (table, 7, 13, torch.bfloat16, False, -1))


@needs_gpu
def test_gpu_cuda_graph_capture():
    table = torch.randn(16, 16, 64, device="cuda")
    cuda.pos_embed(table, 9, 11, torch.float16)  # warm-up outside capture
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = cuda.pos_embed(table, 9, 11, torch.float16)
    g.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, reference.pos_embed(table, 9, 11, torch.float16), rtol=0, atol=1e-3)


def test_device_source_coordinate_is_rounded_before_use():
    """spec §3: src = scale*i rounded to fp32, then lambda = src - i0. Left alone, the compiler
    fuses the two into one fma on the unrounded product (~5e-6 off torch), so the kernel must
    keep an explicitly rounded multiply in its PTX."""
    import pathlib
    import shutil
    import subprocess
    nvcc = shutil.which("nvcc") or "/usr/local/cuda-13.0/bin/nvcc"
    if not pathlib.Path(nvcc).exists():
        pytest.skip("nvcc not found")
    root = pathlib.Path(__file__).resolve().parents[1]
    out = subprocess.run([nvcc, "-std=c++17", f"-I{root / 'csrc'}", "-arch=sm_90", "-ptx",
                          str(root / "csrc/pos_embed/pos_embed.cu"), "-o", "-"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"mul\.rn\.f32", out.stdout), "no rounded fp32 multiply for the source coordinate"
