"""patch_embed in the CUDA backend (csrc/patch_embed/, backends/cuda/_patch_embed.py).

Without a GPU: the binding refuses bad arguments before touching CUDA and fails cleanly without
a driver; the wrapper validates tensors with the messages it shares with the triton backend
(backends/checks/patch_embed.py) and explains its refusals; tiers resolve per dtype (mma_sm80 is
fp16/bf16 only, mma_sm75 fp16 only); the fake implementation gives the right shapes; and the kernels' indexing and
epilogue run on the host through ``_C._patch_embed_host`` (the same patch-row, feature-offset,
token-row and prefix-ownership helpers as the kernels): one-hot weights pick exactly the pixel
the spec says, every token lands at its row, every prefix row is written exactly once for any M
tile, fp32 is within 1e-5 of a float64 oracle, fp16/bf16 within 2x the reference backend's own
error (the precision floor, DESIGN.md §7) and rounded once, and a NaN pixel reaches only its token.

With a GPU: every compiled tier forced x every dtype it takes x awkward shapes (16 px to 2048 px,
non-square, B up to 64, D = 80 and 200 that no tile divides) on NaN-poisoned outputs against a
float64 oracle; the cuda_core tier bit-exact with the host twin; unaligned x, weight, pos and
out (the scalar paths); a NaN pixel confined to its token; the binding's device refusals; the
wrapper with tier= and FASTRADIO_TIER; CUDA-graph capture; opcheck; torch.compile. Inputs are
drawn per case from a fixed seed (FASTRADIO_TEST_SEED draws others).
"""

from __future__ import annotations

import os
import zlib

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from fastradio import _C
from fastradio.backends import checks, cuda
from fastradio.backends import reference
from fastradio.backends.checks import patch_embed as pe_checks

from kernel_testing import needs_gpu, no_gpu

CODES = _C.dtype_codes()
TIERS = _C.tiers()
INFO = _C.build_info()
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
DTYPES = (F32, F16, BF16)
PATCH = 16
FP32_TOL = 1e-5  # relative L2 and max-abs relative to max |oracle|
COMPILED = INFO["tiers"].get("patch_embed", [])
#: The dtypes each tier takes (the wrapper's TIER_DTYPES; cuda_core takes all).
TIER_TAKES = {t: cuda.PATCH_EMBED_TIER_DTYPES.get(t, DTYPES) for t in COMPILED}


def _code(dtype: torch.dtype) -> int:
    return CODES[str(dtype).removeprefix("torch.")]


def _dt_id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _seed(*parts) -> int:
    return zlib.crc32(repr((os.environ.get("FASTRADIO_TEST_SEED", "0"),) + parts).encode())


def _inputs(case, dtype, seed, device="cpu"):
    """(x, weight, pos, prefix) like the real thing: normalised pixels, embedder weights at the
    scale of a trained 768-fan-in layer, a position table of N(0, 0.02) with a few outliers,
    prefix tokens of N(0, 0.5). case = (B, H, W, D, P) in pixels."""
    b, hh, ww, d, p = case
    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    x = (torch.rand(b, 3, hh, ww, generator=g) - mean) / std
    weight = torch.randn(d, 768, generator=g) * (1.0 / 768 ** 0.5)
    hw = (hh // PATCH) * (ww // PATCH)
    pos = torch.randn(hw, d, generator=g) * 0.02
    pos.view(-1)[torch.randint(0, pos.numel(), (3,), generator=g)] = 1.5
    prefix = torch.randn(p, d, generator=g) * 0.5
    return tuple(t.to(dtype).to(device) for t in (x, weight, pos, prefix))


def _oracle(x, weight, pos, prefix) -> torch.Tensor:
    """float64 tokens (on the inputs' device), written independently of the kernels: the patches
    by unfold (im2col of a stride-16 window, features in (ch, dy, dx) order), then a matmul."""
    b, _, hh, ww = x.shape
    cols = torch.nn.functional.unfold(x.double(), kernel_size=PATCH, stride=PATCH)  # (B, 768, h*w)
    tokens = cols.transpose(1, 2) @ weight.double().t() + pos.double()
    return torch.cat([prefix.double().expand(b, -1, -1), tokens], dim=1)


def _err(got: torch.Tensor, oracle: torch.Tensor) -> tuple[float, float]:
    e = got.to(oracle.device).double() - oracle
    return ((e.norm() / oracle.norm().clamp_min(1e-30)).item(),
            (e.abs().max() / oracle.abs().max().clamp_min(1e-30)).item())


def _check_tokens(out, x, weight, pos, prefix):
    """out (B, P + h*w, D): finite (poisoned outputs fail), prefix rows bit-exact, fp32 within
    FP32_TOL of the oracle, fp16/bf16 within 2x the reference backend's error in that dtype."""
    b, p = x.shape[0], prefix.shape[0]
    assert torch.isfinite(out).all(), "NaN/inf in the output: unwritten or garbage elements"
    bits = torch.int32 if out.dtype == F32 else torch.int16
    assert torch.equal(out[:, :p].view(bits), prefix.expand(b, -1, -1).view(bits)), "prefix rows not copied exactly"
    oracle = _oracle(x, weight, pos, prefix)
    rel, mx = _err(out, oracle)
    if out.dtype == F32:
        assert rel <= FP32_TOL and mx <= FP32_TOL, f"fp32 error rel L2 {rel:.3g}, max {mx:.3g}"
        return
    floor = reference.patch_embed(x, weight, pos, prefix)
    frel, fmx = _err(floor, oracle)
    assert rel <= 2 * frel + 1e-12 and mx <= 2 * fmx + 1e-12, (
        f"{out.dtype} error rel L2 {rel:.3g} / max {mx:.3g} vs precision floor {frel:.3g} / {fmx:.3g}")


def _host(x, weight, pos, prefix, tile_m=128):
    """The kernels' indexing and epilogue on CPU tensors; output NaN-poisoned first."""
    b, _, hh, ww = x.shape
    d, p = weight.shape[0], prefix.shape[0]
    out = torch.full((b, p + (hh // PATCH) * (ww // PATCH), d), float("nan"), dtype=x.dtype)
    _C._patch_embed_host(x.data_ptr(), weight.data_ptr(), pos.data_ptr(), prefix.data_ptr() if p else 0,
                         out.data_ptr(), b, hh, ww, d, p, _code(x.dtype), tile_m)
    return out


# -- the build ---------------------------------------------------------------------------------------

def test_built_tiers():
    assert "cuda_core" in COMPILED
    assert INFO["kernels"]["patch_embed"]["cuda_core"]["sass"] == INFO["archs"]
    for tier, min_arch in (("mma_sm75", 75), ("mma_sm80", 80)):
        archs = [a for a in INFO["archs"] if int(a.rstrip("a")) >= min_arch]
        assert (tier in COMPILED) == bool(archs), tier
        if archs:
            assert INFO["kernels"]["patch_embed"][tier]["sass"] == archs
            assert f"built without sm_{min_arch - 5}" in _C.check_arch("patch_embed", tier, *divmod(min_arch - 5, 10))
    assert cuda.OP_NAMES["patch_embed"] == "fastradio::cuda_patch_embed"
    assert cuda.TIER_DTYPES["patch_embed"] == {"mma_sm80": (F16, BF16), "mma_sm75": (F16,)}


# -- the binding refuses bad arguments before any CUDA call ------------------------------------------

GOOD = dict(x=0x1000, weight=0x2000, pos=0x3000, prefix=0x4000, out=0x5000, batch=3, height=48, width=96,
            dim=768, prefix_len=8, dtype=0, tier=0, stream=0)


@pytest.mark.parametrize("change,expect", [
    (dict(x=0), "x must be a non-null device pointer, got 0"),
    (dict(weight=0), "weight must be a non-null device pointer, got 0"),
    (dict(pos=0), "pos must be a non-null device pointer, got 0"),
    (dict(out=0), "out must be a non-null device pointer, got 0"),
    (dict(prefix=0), "prefix must be a non-null device pointer when prefix_len = 8, got 0"),
    (dict(prefix_len=0), "prefix must be 0 when prefix_len is 0 (no prefix rows), got 0x4000"),
    (dict(prefix_len=-1), "prefix_len must be >= 0, got -1"),
    (dict(batch=0), "batch must be >= 1, got 0"),
    (dict(dim=-2), "dim must be >= 1, got -2"),
    (dict(height=0), "height must be a positive multiple of 16 pixels, got 0"),
    (dict(height=40), "height must be a positive multiple of 16 pixels, got 40"),
    (dict(width=8), "width must be a positive multiple of 16 pixels, got 8"),
    (dict(batch=2**62, height=16), "overflows int64"),
    (dict(batch=2**20, height=2**20, width=2**20), "is over 2^60"),
    (dict(dim=2**62), "overflows int64"),
    (dict(prefix_len=2**61), "overflows int64"),
    (dict(dtype=3), "dtype must be one of 0 (float32), 1 (float16), 2 (bfloat16), got 3"),
    (dict(dtype=-1), "got -1"),
    (dict(tier=99), "tier must be one of 0 (cuda_core)"),
    (dict(tier=TIERS["wgmma_sm90a"]), "(wgmma_sm90a) is not compiled for patch_embed in this build; compiled: cuda_core"),
])
def test_binding_rejects_bad_arguments(change, expect):
    with pytest.raises(ValueError) as info:
        _C.patch_embed_fwd(**{**GOOD, **change})
    assert expect in str(info.value)
    assert str(info.value).startswith("patch_embed_fwd: ")


@pytest.mark.parametrize("tier,dtype,expect", [
    ("mma_sm80", "float32", "tier 2 (mma_sm80) takes float16, bfloat16, got float32 (float32 runs on cuda_core)"),
    ("mma_sm75", "float32", "tier 1 (mma_sm75) takes float16, got float32"),
    ("mma_sm75", "bfloat16", "tier 1 (mma_sm75) takes float16, got bfloat16"),
])
def test_binding_rejects_dtypes_a_tensor_core_tier_lacks(tier, dtype, expect):
    if tier not in COMPILED:
        pytest.skip(f"{tier} not compiled in this build")
    with pytest.raises(ValueError) as info:
        _C.patch_embed_fwd(**{**GOOD, "tier": TIERS[tier], "dtype": CODES[dtype]})
    assert expect in str(info.value)


def test_host_twin_checks_the_same_arguments():
    host = {k: v for k, v in GOOD.items() if k not in ("tier", "stream")}
    for change, expect in [(dict(x=0), "x must be a non-null"), (dict(width=17), "width must be a positive multiple"),
                           (dict(prefix_len=0), "prefix must be 0 when"), (dict(tile_m=0), "tile_m must be >= 1")]:
        with pytest.raises(ValueError, match=r"^_patch_embed_host: ") as info:
            _C._patch_embed_host(**{**host, **change})
        assert expect in str(info.value)


def test_binding_rejects_non_int_arguments():
    with pytest.raises(TypeError):
        _C.patch_embed_fwd(**{**GOOD, "x": -1})
    with pytest.raises(TypeError):
        _C.patch_embed_fwd(**{**GOOD, "dim": 7.5})
    with pytest.raises(TypeError):
        _C.patch_embed_fwd(**{**GOOD, "prefix": None})


@no_gpu
def test_binding_without_gpu_raises_runtime_error():
    if _C.device_count() != 0:
        pytest.skip("a driver and device are present (torch just cannot use them)")
    for tier in COMPILED:
        dtype = CODES["float16"]
        with pytest.raises(RuntimeError) as info:
            _C.patch_embed_fwd(**{**GOOD, "tier": TIERS[tier], "dtype": dtype})
        assert str(info.value).startswith("patch_embed_fwd: no CUDA driver/device")


# -- backends.cuda: checks shared with triton, refusals, tiers, fake implementation ------------------

def test_supports_explains_refusals():
    assert "not a CUDA device" in cuda.supports("patch_embed", torch.device("cpu"), F32)[0]
    assert any("float64" in r for r in cuda.supports("patch_embed", torch.device("cuda"), torch.float64))
    if not torch.cuda.is_available():
        assert "torch.cuda.is_available() is False" in cuda.supports("patch_embed", torch.device("cuda"), BF16)[0]


def test_wrapper_rejects_cpu_tensors():
    x, weight, pos, prefix = _inputs((1, 16, 32, 8, 8), F32, 0)
    with pytest.raises(ValueError, match="patch_embed: x must be on a CUDA device, got cpu"):
        cuda.patch_embed(x, weight, pos, prefix)


def _bad_cases():
    cu = dict(device="cuda")

    def t(*shape, dtype=F32):
        return torch.empty(*shape, dtype=dtype, **cu)

    x, w, pos, pre = (2, 3, 32, 48), (8, 768), (6, 8), (8, 8)
    return {
        "3-D x": lambda: (t(3, 32, 48), t(*w), t(*pos), t(*pre)),
        "4 channels": lambda: (t(2, 4, 32, 48), t(*w), t(*pos), t(*pre)),
        "H 31": lambda: (t(2, 3, 31, 48), t(*w), t(*pos), t(*pre)),
        "W 40": lambda: (t(2, 3, 32, 40), t(*w), t(*pos), t(*pre)),
        "H 0": lambda: (t(2, 3, 0, 48), t(*w), t(*pos), t(*pre)),
        "fp64 x": lambda: (t(*x, dtype=torch.float64), t(*w, dtype=torch.float64), t(*pos, dtype=torch.float64),
                           t(*pre, dtype=torch.float64)),
        "uint8 x": lambda: (t(*x, dtype=torch.uint8), t(*w), t(*pos), t(*pre)),
        "weight 767": lambda: (t(*x), t(8, 767), t(*pos), t(*pre)),
        "weight D 0": lambda: (t(*x), t(0, 768), t(6, 0), t(8, 0)),
        "weight 1-D": lambda: (t(*x), t(768), t(*pos), t(*pre)),
        "pos grid": lambda: (t(*x), t(*w), t(5, 8), t(*pre)),
        "pos D": lambda: (t(*x), t(*w), t(6, 7), t(*pre)),
        "prefix D": lambda: (t(*x), t(*w), t(*pos), t(8, 7)),
        "prefix 1-D": lambda: (t(*x), t(*w), t(*pos), t(8)),
        "weight dtype": lambda: (t(*x), t(*w, dtype=F16), t(*pos), t(*pre)),
        "pos dtype": lambda: (t(*x), t(*w), t(*pos, dtype=BF16), t(*pre)),
        "prefix dtype": lambda: (t(*x, dtype=F16), t(*w, dtype=F16), t(*pos, dtype=F16), t(*pre)),
        # (views of fake CUDA tensors need a CUDA build of torch: made strided directly)
        "channels_last x": lambda: (torch.empty_strided(x, (4608, 1, 144, 3), **cu), t(*w), t(*pos), t(*pre)),
        "strided x": lambda: (torch.empty_strided(x, (9216, 3072, 96, 2), **cu), t(*w), t(*pos), t(*pre)),
        "list pos": lambda: (t(*x), t(*w), [[0.0] * 8] * 6, t(*pre)),
        "pos on cuda:1": lambda: (t(*x), t(*w), torch.empty(*pos, device="cuda:1"), t(*pre)),
        "prefix on cpu": lambda: (t(*x), t(*w), t(*pos), torch.empty(*pre)),
    }


EXPECT = {
    "3-D x": (ValueError, "x must have shape (B, 3, H, W), got (3, 32, 48)"),
    "4 channels": (ValueError, "got (2, 4, 32, 48)"),
    "H 31": (ValueError, "H and W must be positive multiples of 16, got H=31, W=48"),
    "W 40": (ValueError, "got H=32, W=40"),
    "H 0": (ValueError, "got H=0, W=48"),
    "fp64 x": (TypeError, "x must be float32, float16 or bfloat16 (the compute dtype), got torch.float64"),
    "uint8 x": (TypeError, "got torch.uint8"),
    "weight 767": (ValueError, "weight must have shape (D, 768) with D >= 1 (features ch*256 + dy*16 + dx), got (8, 767)"),
    "weight D 0": (ValueError, "got (0, 768)"),
    "weight 1-D": (ValueError, "got (768,)"),
    "pos grid": (ValueError, "pos must have shape (h*w, D) = (6, 8) for a 32x48 image and D from weight, got (5, 8)"),
    "pos D": (ValueError, "got (6, 7)"),
    "prefix D": (ValueError, "prefix must have shape (P, D) = (P, 8) with D from weight, got (8, 7)"),
    "prefix 1-D": (ValueError, "got (8,)"),
    "weight dtype": (TypeError, "weight must have x's dtype torch.float32, got torch.float16"),
    "pos dtype": (TypeError, "pos must have x's dtype torch.float32, got torch.bfloat16"),
    "prefix dtype": (TypeError, "prefix must have x's dtype torch.float16, got torch.float32"),
    "channels_last x": (ValueError, "x must be contiguous"),
    "strided x": (ValueError, "x must be contiguous, got strides"),
    "list pos": (TypeError, "pos must be a torch.Tensor, got list"),
    "pos on cuda:1": (ValueError, "pos must be on x's device cuda:0, got cuda:1"),
    "prefix on cpu": (ValueError, "prefix must be on x's device cuda:0, got cpu"),
}


@pytest.mark.parametrize("what", list(EXPECT))
def test_wrapper_rejects_bad_tensors_like_the_shared_check(what):
    # Fake CUDA tensors get past the device check on machines without a GPU. The message is the
    # one the shared check (used by the triton backend too) gives for the same tensors.
    exc, msg = EXPECT[what]
    with FakeTensorMode():
        args = _bad_cases()[what]()
        with pytest.raises(exc) as info:
            cuda.patch_embed(*args)
        with pytest.raises(exc) as shared:
            checks.patch_embed.check_patch_embed(*[a.contiguous() if isinstance(a, torch.Tensor) and i else a
                                                   for i, a in enumerate(args)])
    assert msg in str(info.value), str(info.value)
    assert str(info.value).startswith("patch_embed: ")
    assert str(info.value) == str(shared.value)


def test_triton_backend_uses_the_shared_check():
    triton_backend = pytest.importorskip("fastradio.backends.triton")
    assert triton_backend._checks_patch_embed is pe_checks
    with pytest.raises(ValueError, match=r"patch_embed: H and W must be positive multiples of 16, got H=31, W=48"):
        triton_backend._check_patch_embed(torch.empty(2, 3, 31, 48), torch.empty(8, 768), torch.empty(6, 8),
                                          torch.empty(8, 8))


@pytest.mark.parametrize("dtype", DTYPES, ids=_dt_id)
def test_fake_implementation(dtype):
    with FakeTensorMode():
        out = cuda.patch_embed(torch.empty(32, 3, 512, 768, dtype=dtype, device="cuda"),
                               torch.empty(1024, 768, dtype=dtype, device="cuda"),
                               torch.empty(32 * 48, 1024, dtype=dtype, device="cuda"),
                               torch.empty(8, 1024, dtype=dtype, device="cuda"))
        assert out.shape == (32, 8 + 32 * 48, 1024) and out.dtype == dtype and out.device.type == "cuda"
        empty = cuda.patch_embed(torch.empty(0, 3, 16, 32, dtype=dtype, device="cuda"),
                                 torch.empty(80, 768, dtype=dtype, device="cuda"),
                                 torch.empty(2, 80, dtype=dtype, device="cuda"),
                                 torch.empty(0, 80, dtype=dtype, device="cuda"))
        assert empty.shape == (0, 2, 80)
    meta = lambda *s: torch.empty(*s, dtype=dtype, device="meta")  # noqa: E731
    out = torch.ops.fastradio.cuda_patch_embed(meta(3, 3, 304, 32), meta(200, 768), meta(38, 200), meta(1, 200), -1)
    assert out.shape == (3, 1 + 38, 200) and out.dtype == dtype


def test_schema_and_tier_argument():
    schema = str(torch.ops.fastradio.cuda_patch_embed.default._schema)
    assert "tier) -> Tensor" in schema
    with FakeTensorMode():
        args = (torch.empty(1, 3, 16, 16, device="cuda"), torch.empty(8, 768, device="cuda"),
                torch.empty(1, 8, device="cuda"), torch.empty(8, 8, device="cuda"))
        with pytest.raises(ValueError, match="patch_embed: tier must be None or one of cuda_core"):
            cuda.patch_embed(*args, tier="fastest")
        assert cuda.patch_embed(*args, tier="cuda_core").shape == (1, 9, 8)


@pytest.mark.skipif("mma_sm80" not in COMPILED, reason="mma_sm80 not compiled in this build")
def test_tiers_resolve_per_dtype(monkeypatch):
    # On an sm_80 device: fp16/bf16 take the tensor-core tier, fp32 stays on cuda_core (no IEEE
    # fp32 MMA); forcing mma_sm80 on fp32 is refused with the reason, by name or by code.
    monkeypatch.setattr(cuda._common, "_capability", lambda device: (8, 0))
    monkeypatch.delenv(cuda.TIER_ENV, raising=False)
    assert cuda.resolve_tier("patch_embed", "cuda:0", dtype=F16) == "mma_sm80"
    assert cuda.resolve_tier("patch_embed", "cuda:0", dtype=BF16) == "mma_sm80"
    assert cuda.resolve_tier("patch_embed", "cuda:0", dtype=F32) == "cuda_core"
    with pytest.raises(RuntimeError, match=r"patch_embed/mma_sm80 takes torch.float16, torch.bfloat16, not torch.float32"):
        cuda.resolve_tier("patch_embed", "cuda:0", "mma_sm80", dtype=F32)
    with pytest.raises(ValueError, match=r"tier 'mma_sm80' cannot run this call"):
        cuda._common._tier_code("patch_embed", torch.device("cuda:0"), TIERS["mma_sm80"], F32)
    monkeypatch.setenv(cuda.TIER_ENV, "patch_embed:cuda_core")
    assert cuda.resolve_tier("patch_embed", "cuda:0", dtype=BF16) == "cuda_core"
    if "mma_sm75" in COMPILED:
        monkeypatch.setenv(cuda.TIER_ENV, "patch_embed:mma_sm75")
        assert cuda.resolve_tier("patch_embed", "cuda:0", dtype=F16) == "mma_sm75"
        with pytest.raises(RuntimeError, match=r"patch_embed/mma_sm75 takes torch.float16, not torch.bfloat16"):
            cuda.resolve_tier("patch_embed", "cuda:0", dtype=BF16)


# -- the kernels' indexing and epilogue on the host, against a float64 oracle -----------------------

# (B, H, W, D, P) in pixels: one patch, non-square grids both ways, primes, D = 1, D not a
# multiple of any tile (80, 200), P = 8 (C-RADIOv2), 1 and 0, a batch whose M spans several tiles.
HOST_CASES = [
    (1, 16, 16, 8, 8), (3, 32, 80, 80, 8), (2, 112, 48, 200, 1), (5, 16, 16, 1, 0), (1, 48, 96, 24, 8),
    (2, 304, 32, 13, 8), (7, 80, 112, 5, 3), (4, 16, 176, 8, 2),
]


def _case_id(case) -> str:
    b, hh, ww, d, p = case
    return f"B{b}-{hh}x{ww}-D{d}-P{p}"


@pytest.mark.parametrize("dtype", DTYPES, ids=_dt_id)
@pytest.mark.parametrize("case", HOST_CASES, ids=_case_id)
def test_host_matches_oracle(case, dtype):
    x, weight, pos, prefix = _inputs(case, dtype, _seed("host", case, str(dtype)))
    out = _host(x, weight, pos, prefix)
    assert out.shape == (case[0], case[4] + (case[1] // 16) * (case[2] // 16), case[3])
    _check_tokens(out, x, weight, pos, prefix)


@pytest.mark.parametrize("tile_m", [1, 2, 5, 6, 7, 128, 1000])
def test_host_prefix_rows_are_written_once_for_any_tile(tile_m):
    # Every image's prefix has exactly one owning M tile: poisoned rows would survive otherwise.
    # The second image (b = 1) starts in the middle of a tile for most tile sizes.
    case = (7, 32, 48, 8, 3)  # hw = 6
    x, weight, pos, prefix = _inputs(case, F32, _seed("tiles"))
    out = _host(x, weight, pos, prefix, tile_m)
    assert torch.isfinite(out).all()
    assert torch.equal(out, _host(x, weight, pos, prefix, 128))
    assert torch.equal(out[:, :3], prefix.expand(7, -1, -1))


@pytest.mark.parametrize("ch,dy,dx", [(0, 0, 0), (2, 15, 15), (1, 4, 15), (0, 9, 3), (2, 0, 8)])
def test_host_im2patch_addressing(ch, dy, dx):
    # A one-hot weight row picks feature ch*256 + dy*16 + dx: the token must be exactly that pixel
    # of its own patch, for every image and patch of a non-square batch (and pos goes to its token).
    b, hh, ww = 3, 48, 80
    x = torch.randn(b, 3, hh, ww, generator=torch.Generator().manual_seed(ch * 300 + dy * 16 + dx))
    weight = torch.zeros(2, 768)
    weight[0, ch * 256 + dy * 16 + dx] = 1.0
    hw = (hh // 16) * (ww // 16)
    pos = torch.zeros(hw, 2)
    pos[:, 1] = torch.arange(hw, dtype=torch.float32)
    prefix = torch.full((2, 2), -7.0)
    out = _host(x, weight, pos, prefix)
    assert torch.equal(out[:, 2:, 0], x[:, ch, dy::16, dx::16].reshape(b, hw))
    assert torch.equal(out[:, 2:, 1], pos[:, 1].expand(b, -1))
    assert torch.equal(out[:, :2], prefix.expand(b, -1, -1))


@pytest.mark.parametrize("dtype", [F16, BF16], ids=_dt_id)
def test_host_rounds_once_at_the_end(dtype):
    """16-bit tokens are the fp32 computation on the same values, rounded (RNE) once."""
    x, weight, pos, prefix = _inputs((2, 48, 32, 80, 8), dtype, _seed("once", str(dtype)))
    low = _host(x, weight, pos, prefix)
    high = _host(x.float(), weight.float(), pos.float(), prefix.float())
    assert torch.equal(low.view(torch.int16), high.to(dtype).view(torch.int16))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES, ids=_dt_id)
def test_host_nan_stays_in_its_token(dtype):
    x, weight, pos, prefix = _inputs((3, 32, 80, 24, 8), dtype, _seed("nan", str(dtype)))
    clean = _host(x, weight, pos, prefix)
    x[1, 2, 16 + 3, 2 * 16 + 7] = float("nan")  # image 1, patch (r=1, c=2), channel 2
    out = _host(x, weight, pos, prefix)
    bad = 8 + 1 * 5 + 2
    assert torch.isnan(out[1, bad]).all()
    keep = torch.ones(3, 8 + 10, dtype=torch.bool)
    keep[1, bad] = False
    assert torch.equal(out[keep], clean[keep])


# -- with a GPU: every tier against the oracle ---------------------------------------------------------

def _launch(x, weight, pos, prefix, tier, out=None):
    """The binding on a NaN-poisoned output (unwritten elements fail the checks)."""
    b, _, hh, ww = x.shape
    d, p = weight.shape[0], prefix.shape[0]
    if out is None:
        out = torch.full((b, p + (hh // 16) * (ww // 16), d), float("nan"), dtype=x.dtype, device=x.device)
    _C.patch_embed_fwd(x.data_ptr(), weight.data_ptr(), pos.data_ptr(), prefix.data_ptr() if p else 0,
                       out.data_ptr(), b, hh, ww, d, p, _code(x.dtype), TIERS[tier],
                       torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    return out


def _tier_dtypes():
    for tier in COMPILED:
        for dtype in TIER_TAKES[tier]:
            yield pytest.param(tier, dtype, id=f"{tier}-{_dt_id(dtype)}")


# (B, H, W, D, P): 16 px, non-square both ways, 2048 px (128 patches) on one axis and both, B up
# to 64, widths 768..1536 and the awkward 80 and 200.
GPU_CASES = [
    (1, 16, 16, 768, 8), (3, 48, 96, 80, 8), (2, 304, 32, 200, 8), (1, 1024, 1024, 1024, 8),
    (1, 2048, 2048, 768, 8), (64, 32, 48, 1536, 8), (5, 16, 2048, 200, 1), (2, 2048, 16, 80, 0),
    (7, 112, 80, 1280, 8), (33, 16, 16, 8, 8),
]


@needs_gpu
@pytest.mark.parametrize("case", GPU_CASES, ids=_case_id)
@pytest.mark.parametrize("tier,dtype", list(_tier_dtypes()))
def test_gpu_every_tier_against_oracle(tier, dtype, case):
    x, weight, pos, prefix = _inputs(case, dtype, _seed("gpu", case, str(dtype)), "cuda")
    out = _launch(x, weight, pos, prefix, tier)
    _check_tokens(out, x, weight, pos, prefix)


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=_dt_id)
@pytest.mark.parametrize("case", HOST_CASES, ids=_case_id)
def test_gpu_cuda_core_is_the_host_twin_bit_for_bit(case, dtype):
    # Same indexing, same fmaf chain in ascending k, same epilogue: identical bits.
    x, weight, pos, prefix = _inputs(case, dtype, _seed("twin", case, str(dtype)))
    want = _host(x, weight, pos, prefix)
    got = _launch(*(t.cuda() for t in (x, weight, pos, prefix)), "cuda_core").cpu()
    assert torch.equal(got.view(torch.int16 if dtype != F32 else torch.int32),
                       want.view(torch.int16 if dtype != F32 else torch.int32))


def _shifted(t: torch.Tensor) -> torch.Tensor:
    """t's values in a view whose storage starts one element past an allocation (unaligned)."""
    buf = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
    view = buf[1:].view(t.shape)
    view.copy_(t)
    return view


@needs_gpu
@pytest.mark.parametrize("which", ["x", "weight", "pos-out", "all"])
@pytest.mark.parametrize("case", [(2, 48, 80, 200, 8), (3, 32, 32, 768, 8), (1, 16, 48, 80, 0)], ids=_case_id)
@pytest.mark.parametrize("tier,dtype", list(_tier_dtypes()))
def test_gpu_unaligned_pointers(tier, dtype, case, which):
    x, weight, pos, prefix = _inputs(case, dtype, _seed("unaligned", case, str(dtype)), "cuda")
    want = _launch(x, weight, pos, prefix, tier)
    if which in ("x", "all"):
        x = _shifted(x)
    if which in ("weight", "all"):
        weight = _shifted(weight)
    out = None
    if which in ("pos-out", "all"):
        pos, prefix = _shifted(pos), _shifted(prefix)
        out = _shifted(torch.full_like(want, float("nan")))
    got = _launch(x, weight, pos, prefix, tier, out)
    _check_tokens(got, x, weight, pos, prefix)
    assert torch.equal(got, want)  # the scalar paths compute the same sums in the same order


@needs_gpu
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("tier,dtype", list(_tier_dtypes()))
def test_gpu_nan_stays_in_its_token(tier, dtype):
    case = (3, 32, 80, 200, 8)
    x, weight, pos, prefix = _inputs(case, dtype, _seed("gpu-nan", str(dtype)), "cuda")
    clean = _launch(x, weight, pos, prefix, tier)
    x[1, 2, 16 + 3, 2 * 16 + 7] = float("nan")  # image 1, patch (r=1, c=2), channel 2
    out = _launch(x, weight, pos, prefix, tier)
    bad = 8 + 1 * 5 + 2
    assert torch.isnan(out[1, bad]).all()
    keep = torch.ones(3, 8 + 10, dtype=torch.bool, device="cuda")
    keep[1, bad] = False
    assert torch.equal(out[keep], clean[keep])


@needs_gpu
def test_gpu_binding_refuses_host_pointers():
    x, weight, pos, prefix = _inputs((1, 16, 16, 8, 8), F32, 1)
    out = torch.empty(1, 9, 8, device="cuda")
    with pytest.raises(ValueError, match="must point to device memory"):
        _C.patch_embed_fwd(x.data_ptr(), weight.cuda().data_ptr(), pos.cuda().data_ptr(), prefix.cuda().data_ptr(),
                           out.data_ptr(), 1, 16, 16, 8, 8, 0, 0, torch.cuda.current_stream().cuda_stream)


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=_dt_id)
def test_gpu_wrapper_tiers(dtype, monkeypatch):
    case = (2, 48, 32, 80, 8)
    x, weight, pos, prefix = _inputs(case, dtype, _seed("wrapper", str(dtype)), "cuda")
    torch.full((2, 8 + 6, 80), float("nan"), dtype=dtype, device="cuda")  # likely recycled as the output
    _check_tokens(cuda.patch_embed(x, weight, pos, prefix), x, weight, pos, prefix)
    for tier in COMPILED:
        if dtype in TIER_TAKES[tier]:
            _check_tokens(cuda.patch_embed(x, weight, pos, prefix, tier=tier), x, weight, pos, prefix)
            monkeypatch.setenv(cuda.TIER_ENV, f"attention:cuda_core,patch_embed:{tier}")
            _check_tokens(cuda.patch_embed(x, weight, pos, prefix), x, weight, pos, prefix)
            monkeypatch.delenv(cuda.TIER_ENV)
        else:
            with pytest.raises(ValueError, match=f"tier '{tier}' cannot run this call"):
                cuda.patch_embed(x, weight, pos, prefix, tier=tier)
    assert cuda.supports("patch_embed", torch.device("cuda"), dtype) == []
    empty = cuda.patch_embed(x[:0], weight, pos, prefix)
    assert empty.shape == (0, 14, 80)


@needs_gpu
def test_gpu_opcheck():
    op = torch.ops.fastradio.cuda_patch_embed.default
    for case, dtype in (((2, 16, 32, 24, 8), F32), ((1, 32, 16, 16, 0), BF16), ((1, 16, 16, 8, 1), F16)):
        args = _inputs(case, dtype, 5, "cuda")
        torch.library.opcheck(op, args + (-1,))


@needs_gpu
@pytest.mark.parametrize("dtype", [F32, BF16], ids=_dt_id)
def test_gpu_cuda_graph_capture(dtype):
    case = (2, 48, 64, 768, 8)
    x, weight, pos, prefix = _inputs(case, dtype, _seed("graph", str(dtype)), "cuda")
    cuda.patch_embed(x, weight, pos, prefix)  # warm-up outside capture (tier resolution, attributes)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = cuda.patch_embed(x, weight, pos, prefix)
    x.copy_(_inputs(case, dtype, _seed("graph-2", str(dtype)), "cuda")[0])  # replay reads the new values
    out.fill_(float("nan"))
    g.replay()
    torch.cuda.synchronize()
    _check_tokens(out, x, weight, pos, prefix)


@needs_gpu
def test_gpu_compile_fullgraph():
    x, weight, pos, prefix = _inputs((2, 32, 48, 80, 8), F16, 6, "cuda")

    def f(x, weight, pos, prefix):
        return cuda.patch_embed(x * 0.5, weight, pos, prefix).float().sum(-1)

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True)
    for scale in (1.0, 2.0):
        torch.testing.assert_close(compiled(x * scale, weight, pos, prefix), f(x * scale, weight, pos, prefix),
                                   rtol=0, atol=0)
