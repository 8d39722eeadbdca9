"""attention in the CUDA backend (csrc/attention/, backends/cuda/_attention.py).

Without a GPU: the binding refuses bad arguments before touching CUDA and fails cleanly without a
driver; the wrapper validates tensors (the checks shared with the Triton backend) and explains its
refusals; the fake implementation gives the right shapes; and every tier's arithmetic runs on the
host through ``_C._attention_host`` against a float64 oracle: cuda_core as the kernel's per-row
operations, the tensor-core tiers as a warp emulation of the kernels' own lane layouts (ldmatrix
addresses, fragment positions, P packing) over NaN-filled shared memory, so an index error in the
kernels' layout code shows up as a wrong or NaN output here. fp32 within 2e-6 relative L2 (the
kernels' own floor on these inputs is ~5e-7), fp16/bf16 within 2x the reference backend's error
in the same dtype (the precision floor, DESIGN.md §7), on awkward packings, both schedules
(uniform = dense, anything else = packed search), both block sizes of the tensor-core tiers, a NaN
confined to its image, and malformed cu_seqlens that must not make the kernels leave their images.

With a GPU: every tier forced x dtype x head dim on awkward lengths with NaN-poisoned outputs
against the float64 oracle, images of 16392 tokens, 64 images, 600k rows (64-bit offsets), a NaN
confined to its image, an unaligned qkv view, CUDA-graph capture, opcheck and torch.compile.
Inputs are drawn per case from a fixed seed (FASTRADIO_TEST_SEED draws others) with trained-like
magnitudes (q, k std 1.5 with outlier channels: softmax rows from flat to peaked). The exactness
checks (one-key rows return v bit for bit; fp32 within 2e-6) loop over several draws inside the
test (kernel_testing.seed_runs: FASTRADIO_TEST_SEED and the 5 after it), since a rounding slip
that shows in some draws only (the softmax weight of a row's top key off by an ulp) must fail a
plain run.
"""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from fastradio import _C
from fastradio import backends
from fastradio.backends import cuda
from fastradio.backends.checks import attention as checks

from kernel_testing import case_seed, needs_gpu, no_gpu, require_gpu, seed_runs

CODES = _C.dtype_codes()
TIERS = _C.tiers()
INFO = _C.build_info()
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
HEAD_DIMS = (64, 72, 80)
FP32_TOL = 2e-6  # relative L2 against the fp64 oracle (as tests/test_op_attention.py)
FP32_MAX_TOL = 1e-5  # max-abs error / max |oracle|
FP32_TOL_CAP = 1e-5  # DESIGN.md §7; used only where torch's own fp32 error exceeds FP32_TOL / 2
SLACK = 1e-5  # absolute slack of the precision-floor rule (relative-L2 units)

#: (tier, dtype) pairs the kernels are instantiated for.
TIER_DTYPES = [("cuda_core", F32), ("cuda_core", F16), ("cuda_core", BF16), ("mma_sm75", F16),
               ("mma_sm80", F16), ("mma_sm80", BF16), ("wgmma_sm90a", F16), ("wgmma_sm90a", BF16)]
#: Host-twin configurations: the tensor-core tiers with both block sizes (the sm_75 kernels use 8 warps).
HOST_CONFIGS = [(t, d, 4) for t, d in TIER_DTYPES if t == "cuda_core"] + [
    ("mma_sm75", F16, 8), ("mma_sm80", F16, 4), ("mma_sm80", F16, 8), ("mma_sm80", BF16, 4), ("mma_sm80", BF16, 8)]

# name -> (lengths, max_seqlen or None for max(lengths), heads). Block sizes are 64 (cuda_core, 4
# warps) and 128 (8 warps), key steps 32 (cuda_core) and 64: lengths one short of, at and one past
# them, primes, images starting inside a block.
HOST_CASES = {
    "one-token": ([1], None, 2),
    "seven": ([7], None, 2),
    "primes": ([3, 67, 131], None, 2),
    "tile-edges": ([31, 32, 33, 63, 64, 65, 127, 128, 129], None, 1),
    "uniform": ([96, 96, 96], None, 2),  # dense schedule
    "max-far-above": ([5, 9, 3, 1, 2], 300, 2),  # packed schedule, max_seqlen unrelated to the lengths
    "mixed-8": ([1, 200, 17, 64, 3, 130, 9, 41], None, 2),
    "one-image-long": ([300], None, 1),
}


def _code(dtype: torch.dtype) -> int:
    return CODES[str(dtype).removeprefix("torch.")]


def _id(x) -> str:
    return str(x).removeprefix("torch.")


def _seed(*parts, run=None) -> int:
    """The seed of one case in draw ``run`` (default: FASTRADIO_TEST_SEED's)."""
    return case_seed(*parts, run=run)


def _cu(lengths, device="cpu") -> torch.Tensor:
    return torch.tensor([0, *lengths], dtype=torch.int64).cumsum(0).to(torch.int32).to(device)


def _qkv(n: int, heads: int, head_dim: int, seed: int) -> torch.Tensor:
    """(n, 3*H*Dh) fp32 like a trained qkv projection: q, k std 1.5 with two outlier channels per
    head (std 6: peaked rows), v std 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, heads, head_dim, generator=g)
    x[:, :2] *= 1.5
    ch = torch.randint(0, head_dim, (heads, 2), generator=g)
    for h in range(heads):
        x[:, :2, h, ch[h]] *= 4.0
    return x.reshape(n, 3 * heads * head_dim)


def _oracle(qkv: torch.Tensor, lengths, heads: int, head_dim: int, rows=None) -> torch.Tensor:
    """(N, H*Dh) float64 explicit softmax per image and head (query rows in chunks: long images)."""
    x = qkv.double()
    n = x.shape[0]
    q, k, v = x.view(n, 3, heads, head_dim).unbind(1)
    out = torch.full((n, heads, head_dim), float("nan"), dtype=torch.float64, device=qkv.device)
    a = 0
    for length in lengths:
        b = a + length
        if rows is None or (a < rows[1] and b > rows[0]):
            for h in range(heads):
                for r in range(a, b, 2048):
                    e = min(r + 2048, b)
                    s = q[r:e, h] @ k[a:b, h].T * head_dim ** -0.5
                    p = (s - s.amax(-1, keepdim=True)).exp()
                    out[r:e, h] = (p / p.sum(-1, keepdim=True)) @ v[a:b, h]
        a = b
    return out.reshape(n, heads * head_dim)


def _err(x: torch.Tensor, oracle: torch.Tensor) -> tuple[float, float]:
    """(relative L2, max-abs / max|oracle|) of x against the float64 oracle."""
    e = x.double() - oracle
    return ((e.norm() / oracle.norm().clamp_min(1e-30)).item(),
            (e.abs().max() / oracle.abs().max().clamp_min(1e-30)).item())


def _check(out, qkv, cu, max_seqlen, heads, head_dim, oracle, what: str) -> None:
    """out against the oracle: fp32 within 2e-6 (or 2x torch's own fp32 error, at most 1e-5),
    fp16/bf16 within 2x the precision floor (the reference backend in the same dtype on the same
    device)."""
    assert out.shape == oracle.shape and out.dtype == qkv.dtype
    assert torch.isfinite(out).all(), f"{what}: NaN/inf in the output: unwritten or garbage rows"
    rel, mx = _err(out, oracle)
    if qkv.dtype == F32 and rel <= FP32_TOL and mx <= FP32_MAX_TOL:
        return
    floor = backends.get("reference").attention(qkv, cu, max_seqlen, heads, head_dim)
    frel, fmx = _err(floor, oracle)
    if qkv.dtype == F32:
        # Beyond 2e-6 only where fp32 itself is (long images: the rounding of large scores, which
        # torch's fp32 SDPA shares): 2x its error, never beyond DESIGN.md's 1e-5.
        assert rel <= min(FP32_TOL_CAP, 2 * frel) and mx <= min(10 * FP32_TOL_CAP, 2 * fmx), (
            f"{what}: fp32 error rel L2 {rel:.3g}, max {mx:.3g}; torch fp32 {frel:.3g} / {fmx:.3g}")
        return
    assert rel <= 2 * frel + SLACK and mx <= 2 * fmx + 10 * SLACK, (
        f"{what}: error rel L2 {rel:.3g} / max {mx:.3g} vs precision floor {frel:.3g} / {fmx:.3g}")


def _host(qkv, cu, max_seqlen, heads, head_dim, tier, warps=8):
    """A tier's kernel run on the host (NaN-poisoned output)."""
    n = qkv.shape[0]
    out = torch.full((n, heads * head_dim), float("nan"), dtype=qkv.dtype)
    _C._attention_host(qkv.data_ptr(), cu.data_ptr(), out.data_ptr(), n, cu.numel() - 1, max_seqlen, heads, head_dim,
                       _code(qkv.dtype), TIERS[tier], warps)
    return out


# -- the build ---------------------------------------------------------------------------------------

def test_built_for_the_archs_of_each_tier():
    assert cuda.OP_NAMES["attention"] == "fastradio::cuda_attention"
    assert INFO["tiers"]["attention"][0] == "cuda_core"
    assert INFO["kernels"]["attention"]["cuda_core"]["sass"] == INFO["archs"]
    for tier, lowest in (("mma_sm75", 75), ("mma_sm80", 80)):
        wanted = [a for a in INFO["archs"] if int(a.rstrip("af")) >= lowest]
        if wanted:
            assert INFO["kernels"]["attention"][tier]["sass"] == wanted
        else:
            assert tier not in INFO["tiers"]["attention"]
    assert "built without sm_50" in _C.check_arch("attention", "cuda_core", 5, 0)
    if "mma_sm80" in INFO["tiers"]["attention"]:
        assert "built without sm_75" in _C.check_arch("attention", "mma_sm80", 7, 5)


# -- the binding refuses bad arguments before any CUDA call ------------------------------------------

GOOD = dict(qkv=0x1000, cu_seqlens=0x2004, out=0x3000, rows=13, num_seqs=2, max_seqlen=7, num_heads=16, head_dim=80,
            dtype=1, tier=0, stream=0)
BAD_ARGS = [
    (dict(qkv=0), "qkv must be a non-null device pointer, got 0"),
    (dict(cu_seqlens=0), "cu_seqlens must be a non-null device pointer, got 0"),
    (dict(out=0), "out must be a non-null device pointer, got 0"),
    (dict(rows=0), "rows must be >= 1, got 0"),
    (dict(num_seqs=-1), "num_seqs must be >= 1, got -1"),
    (dict(max_seqlen=0), "max_seqlen must be >= 1, got 0"),
    (dict(num_heads=0), "num_heads must be >= 1, got 0"),
    (dict(num_heads=65536), "num_heads must be <= 65535 (the grid's y size), got 65536"),
    (dict(head_dim=96), "head_dim must be 64, 72 or 80 (the head dims the kernels are built for), got 96"),
    (dict(head_dim=128), "got 128"),
    (dict(rows=2**60), "qkv size rows*3*num_heads*head_dim = 1152921504606846976 * 48 * 80 elements overflows int64"),
    (dict(rows=2**40), "rows / 64 + num_seqs must be < 2^31 (query tiles of one head), got 17179869186"),
    (dict(qkv=0x1008), "qkv must be 16-byte aligned (the kernels use 16-byte accesses), got 0x1008"),
    (dict(out=0x3002), "out must be 16-byte aligned"),
    (dict(dtype=3), "dtype must be one of 0 (float32), 1 (float16), 2 (bfloat16), got 3"),
]


@pytest.mark.parametrize("change,expect", BAD_ARGS + [
    (dict(tier=99), "tier must be one of 0 (cuda_core)"),
    (dict(tier=TIERS["wgmma_sm90a"]), "tier 3 (wgmma_sm90a) is not compiled for attention in this build; compiled: "),
])
def test_binding_rejects_bad_arguments(change, expect):
    with pytest.raises(ValueError) as info:
        _C.attention_fwd(**{**GOOD, **change})
    assert expect in str(info.value)
    assert str(info.value).startswith("attention_fwd: ")


@pytest.mark.parametrize("tier,dtype,expect", [
    ("mma_sm75", BF16, "tier 1 (mma_sm75) takes float16, got dtype 2 (bfloat16)"),
    ("mma_sm75", F32, "tier 1 (mma_sm75) takes float16, got dtype 0 (float32)"),
    ("mma_sm80", F32, "tier 2 (mma_sm80) takes float16 or bfloat16, got dtype 0 (float32)"),
])
def test_binding_rejects_a_dtype_the_tier_lacks(tier, dtype, expect):
    if tier not in INFO["tiers"]["attention"]:
        pytest.skip(f"{tier} is not compiled in this build")
    for fn in (_C.attention_fwd, _C._attention_host):
        args = {**GOOD, "tier": TIERS[tier], "dtype": _code(dtype)}
        if fn is _C._attention_host:
            del args["stream"]
        with pytest.raises(ValueError) as info:
            fn(**args)
        assert expect in str(info.value)


def test_host_twin_checks_the_same_arguments():
    host = {k: v for k, v in GOOD.items() if k != "stream"}
    for change, expect in BAD_ARGS + [(dict(tier=3), "tier must be 0 (cuda_core), 1 (mma_sm75) or 2 (mma_sm80), got 3"),
                                      (dict(warps=6), "warps must be 4 or 8, got 6")]:
        with pytest.raises(ValueError, match=r"^_attention_host: ") as info:
            _C._attention_host(**{**host, **change})
        assert expect in str(info.value)


def test_binding_rejects_non_int_arguments():
    for change in (dict(qkv=-1), dict(head_dim=64.0), dict(out=None)):
        with pytest.raises(TypeError):
            _C.attention_fwd(**{**GOOD, **change})


@no_gpu
def test_binding_without_gpu_raises_runtime_error():
    if _C.device_count() != 0:
        pytest.skip("a driver and device are present (torch just cannot use them)")
    for tier in INFO["tiers"]["attention"]:
        dtype = 0 if tier == "cuda_core" else 1
        with pytest.raises(RuntimeError) as info:
            _C.attention_fwd(**{**GOOD, "tier": TIERS[tier], "dtype": dtype})
        assert str(info.value).startswith("attention_fwd: no CUDA driver/device")


# -- backends.cuda: tensor checks, refusals, fake implementation -------------------------------------

def test_supports_explains_refusals():
    cpu = torch.device("cpu")
    assert "not a CUDA device" in cuda.supports("attention", cpu, F16, head_dim=64)[0]
    for hd in (32, 96, 128):
        reasons = cuda.supports("attention", torch.device("cuda"), F16, head_dim=hd)
        assert any(f"head_dim {hd} is not 64, 72 or 80" in r for r in reasons), reasons
    for hd in HEAD_DIMS:
        assert not any("head_dim" in r for r in cuda.supports("attention", cpu, BF16, head_dim=hd))
    assert any("float64" in r for r in cuda.supports("attention", torch.device("cuda"), torch.float64, head_dim=64))
    # Every tier's dtypes are declared (the dispatcher resolves float32 to cuda_core).
    assert cuda.TIER_DTYPES["attention"] == {"mma_sm75": (F16,), "mma_sm80": (F16, BF16),
                                             "wgmma_sm90a": (F16, BF16)}


def test_wrapper_rejects_cpu_tensors():
    qkv = _qkv(10, 2, 64, 0)
    with pytest.raises(ValueError, match=r"^attention: qkv must be on a CUDA device, got cpu$"):
        cuda.attention(qkv, _cu([3, 7]), 7, 2, 64)


def _fake(*shape, dtype=F16, device="cuda"):
    return torch.empty(*shape, dtype=dtype, device=device)


@pytest.mark.parametrize("make,exc,msg", [
    (lambda: ([[0.0] * 384] * 10, _fake(3, dtype=torch.int32), 7, 2, 64), TypeError,
     "qkv must be a torch.Tensor, got list"),
    (lambda: (_fake(10, 384, dtype=torch.float64), _fake(3, dtype=torch.int32), 7, 2, 64), TypeError,
     "qkv must be float32, float16 or bfloat16, got torch.float64"),
    (lambda: (_fake(10, 380), _fake(3, dtype=torch.int32), 7, 2, 64), ValueError,
     "qkv must have shape (N, 3*num_heads*head_dim) = (N, 384) for 2 heads of 64, got (10, 380)"),
    (lambda: (_fake(10, 3 * 96), _fake(3, dtype=torch.int32), 7, 1, 96), ValueError,
     "head_dim must be 64, 72 or 80 (the head dims the kernel is built for), got 96"),
    (lambda: (_fake(10, 384), _fake(3, dtype=torch.int32), 7, 0, 64), ValueError,
     "num_heads must be an int >= 1, got 0"),
    (lambda: (_fake(10, 384), _fake(3, dtype=torch.int32), 0, 2, 64), ValueError,
     "max_seqlen must be an int >= 1, got 0"),
    (lambda: (torch.empty_strided((10, 384), (768, 2), dtype=F16, device="cuda"), _fake(3, dtype=torch.int32), 7, 2,
              64), ValueError, "qkv must be contiguous"),
    (lambda: (_fake(10, 384), _fake(3, dtype=torch.int64), 7, 2, 64), TypeError,
     "cu_seqlens must be int32, got torch.int64"),
    (lambda: (_fake(10, 384), _fake(1, 3, dtype=torch.int32), 7, 2, 64), ValueError,
     "cu_seqlens must have shape (S+1,) with S >= 0 images, got (1, 3)"),
    (lambda: (_fake(10, 384), _fake(3, dtype=torch.int32, device="cuda:1"), 7, 2, 64), ValueError,
     "cu_seqlens must be on qkv's device cuda:0, got cuda:1"),
])
def test_wrapper_rejects_bad_tensors(make, exc, msg):
    # Fake CUDA tensors get past the device check on machines without a GPU; the messages are the
    # shared ones (backends/checks/attention.py), word for word those of the Triton backend.
    with FakeTensorMode():
        args = make()
        with pytest.raises(exc) as info:
            cuda.attention(*args)
    assert msg in str(info.value), str(info.value)
    assert str(info.value).startswith("attention: ")


def test_wrapper_rejects_an_unknown_tier():
    with FakeTensorMode():
        with pytest.raises(ValueError, match="tier must be None or one of cuda_core"):
            cuda.attention(_fake(10, 384), _fake(3, dtype=torch.int32), 7, 2, 64, tier="fastest")


@pytest.mark.parametrize("dtype", (F32, F16, BF16), ids=_id)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_fake_implementation(head_dim, dtype):
    with FakeTensorMode():
        out = cuda.attention(_fake(4104, 3 * 16 * head_dim, dtype=dtype), _fake(3, dtype=torch.int32), 4104, 16,
                             head_dim, tier="cuda_core")
        assert out.shape == (4104, 16 * head_dim) and out.dtype == dtype and out.device.type == "cuda"
        empty = cuda.attention(_fake(0, 3 * 2 * head_dim, dtype=dtype), _fake(1, dtype=torch.int32), 1, 2, head_dim)
        assert empty.shape == (0, 2 * head_dim)
    meta = torch.ops.fastradio.cuda_attention(torch.empty(13, 3 * 2 * head_dim, dtype=dtype, device="meta"),
                                              torch.empty(3, dtype=torch.int32, device="meta"), 9, 2, head_dim, -1)
    assert meta.shape == (13, 2 * head_dim) and meta.dtype == dtype


def test_schema():
    schema = str(torch.ops.fastradio.cuda_attention.default._schema)
    assert schema == ("fastradio::cuda_attention(Tensor qkv, Tensor cu_seqlens, SymInt max_seqlen, SymInt num_heads, "
                      "SymInt head_dim, SymInt tier) -> Tensor"), schema


# -- every tier's arithmetic on the host, against a float64 oracle -----------------------------------

@pytest.mark.parametrize("case", list(HOST_CASES))
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("tier,dtype,warps", HOST_CONFIGS, ids=lambda x: _id(x))
def test_host_matches_oracle(tier, dtype, warps, head_dim, case):
    lengths, max_seqlen, heads = HOST_CASES[case]
    max_seqlen = max_seqlen or max(lengths)
    cu = _cu(lengths)
    exact = dtype == F32 or lengths == [1]  # the exactness checks run every draw, the rest one
    for run in seed_runs() if exact else seed_runs(1):
        qkv = _qkv(sum(lengths), heads, head_dim, _seed("host", case, head_dim, run=run)).to(dtype)
        out = _host(qkv, cu, max_seqlen, heads, head_dim, tier, warps)
        _check(out, qkv, cu, max_seqlen, heads, head_dim, _oracle(qkv, lengths, heads, head_dim),
               f"{tier}/{warps} warps, draw {run}")
        if lengths == [1]:  # softmax over one key is exactly 1: the output is v, in any dtype
            _assert_one_key_rows_are_v(out, qkv, lengths, heads, head_dim, f"{tier}/{warps} warps, draw {run}")


def _assert_one_key_rows_are_v(out, qkv, lengths, heads, head_dim, what: str) -> None:
    """Rows of one-token images are their own v, bit for bit (p = 2^0 = 1 exactly, l = 1)."""
    starts = _cu(lengths)[:-1]
    rows = starts[torch.tensor(lengths) == 1].long()
    got, want = out[rows], qkv[rows, 2 * heads * head_dim:]
    bad = got.view(torch.uint8) != want.view(torch.uint8)
    assert not bad.any(), (f"{what}: {int((got != want).sum())} of {got.numel()} elements of one-key rows differ "
                           f"from v (max |diff| {(got.double() - want.double()).abs().max().item():.3g})")


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("tier,dtype,warps", HOST_CONFIGS, ids=lambda x: _id(x))
def test_host_one_key_rows_are_v_exactly(tier, dtype, warps, head_dim):
    """A one-token image attends to its one key with weight exactly 1: its output is v, in every
    dtype and draw, alone (dense schedule) and packed between longer images (packed schedule,
    partial key tiles). The top key's p must be 2^0, not 2^(the rounding error of s*c)."""
    heads = 2
    for lengths in ([1], [1, 9, 1, 70, 1, 33, 1]):
        cu = _cu(lengths)
        for run in seed_runs():
            qkv = _qkv(sum(lengths), heads, head_dim, _seed("one-key", len(lengths), head_dim, run=run)).to(dtype)
            out = _host(qkv, cu, max(lengths), heads, head_dim, tier, warps)
            _assert_one_key_rows_are_v(out, qkv, lengths, heads, head_dim,
                                       f"{tier}/{warps} warps, lengths {lengths}, draw {run}")


@pytest.mark.parametrize("tier,dtype,warps", HOST_CONFIGS, ids=lambda x: _id(x))
def test_host_schedules_agree(tier, dtype, warps):
    """A uniform batch runs the dense schedule (no search); the same images with a larger
    max_seqlen the packed one: the same blocks, bit for bit the same numbers."""
    lengths, heads, hd = [70, 70, 70], 2, 80
    qkv = _qkv(sum(lengths), heads, hd, _seed("schedules")).to(dtype)
    cu = _cu(lengths)
    dense = _host(qkv, cu, 70, heads, hd, tier, warps)
    packed = _host(qkv, cu, 500, heads, hd, tier, warps)
    assert torch.isfinite(dense).all()
    assert torch.equal(dense.view(torch.uint8), packed.view(torch.uint8))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("tier,dtype,warps", HOST_CONFIGS, ids=lambda x: _id(x))
def test_host_nan_stays_in_its_image_and_head(tier, dtype, warps):
    lengths, heads, hd = [7, 70, 31], 2, 64
    clean = _qkv(sum(lengths), heads, hd, _seed("iso")).to(dtype)
    cu = _cu(lengths)
    ref = _host(clean, cu, 70, heads, hd, tier, warps)
    bad = clean.clone()
    a, b = lengths[0], lengths[0] + lengths[1]
    bad[a] = float("nan")  # the rows right next to images 0 and 2: what a sloppy mask would pull in
    bad[b - 1] = float("nan")
    bad[a + 3, :5] = float("inf")
    k_head1 = (heads + 1) * hd
    bad[b + 4, k_head1 + 7] = float("nan")  # one key of image 2, head 1: all of image 2's head 1
    out = _host(bad, cu, 70, heads, hd, tier, warps)
    assert torch.isnan(out[a:b]).all()
    assert torch.isnan(out[b:, hd:]).all()
    assert torch.equal(out[:a], ref[:a]) and torch.isfinite(out[:a]).all()
    assert torch.equal(out[b:, :hd], ref[b:, :hd]) and torch.isfinite(out[b:, :hd]).all()


@pytest.mark.parametrize("tier,dtype,warps", HOST_CONFIGS, ids=lambda x: _id(x))
def test_host_malformed_cu_seqlens_stay_in_bounds(tier, dtype, warps):
    """Unchecked cu_seqlens (as under graph capture) may give wrong numbers, but every bound is
    clamped to [0, N]: nothing outside qkv is read and nothing outside out is written. qkv is a
    view into a NaN-filled buffer, so a read past it would turn the written rows into NaN."""
    heads, hd, n = 2, 64, 40
    buf = torch.full((3 * n, 3 * heads * hd), float("nan"), dtype=dtype)
    qkv = buf[n:2 * n]
    qkv.copy_(_qkv(n, heads, hd, _seed("malformed")).to(dtype))
    for cu_list in ([0, 50, 20, 40], [-30, 10, 40], [0, 40, 70, 100], [5, 3, 1, 0], [0, 20, 10, 40, 45]):
        cu = torch.tensor(cu_list, dtype=torch.int32)
        out_buf = torch.full((3 * n, heads * hd), float("nan"), dtype=dtype)
        out = out_buf[n:2 * n]
        _C._attention_host(qkv.data_ptr(), cu.data_ptr(), out.data_ptr(), n, cu.numel() - 1, 64, heads, hd,
                           _code(dtype), TIERS[tier], warps)
        assert torch.isnan(out_buf[:n]).all() and torch.isnan(out_buf[2 * n:]).all(), cu_list
        written = ~torch.isnan(out).all(dim=1)
        assert torch.isfinite(out[written]).all(), cu_list


def test_host_fp32_long_image():
    """cuda_core in fp32 over 1032 tokens (a 512 px image): the two-level accumulation keeps the
    error at the fp32 floor of the scores, far inside DESIGN.md's 1e-5 (every draw)."""
    lengths, heads, hd = [1032], 1, 80
    cu = _cu(lengths)
    for run in seed_runs():
        qkv = _qkv(sum(lengths), heads, hd, _seed("long", run=run))
        out = _host(qkv, cu, 1032, heads, hd, "cuda_core")
        _check(out, qkv, cu, 1032, heads, hd, _oracle(qkv, lengths, heads, hd), f"cuda_core fp32 1032, draw {run}")


@pytest.mark.parametrize("dtype", (F16, BF16), ids=_id)
def test_host_tensor_core_tiers_round_p(dtype):
    """The tensor-core tiers round P to the 16-bit dtype before P·V (as SDPA's flash kernels do);
    cuda_core keeps it in fp32. Both within the floor, but not the same numbers: the emulation
    really runs the tier's own path."""
    lengths, heads, hd = [3, 67, 131], 2, 64
    qkv = _qkv(sum(lengths), heads, hd, _seed("p", dtype)).to(dtype)
    cu = _cu(lengths)
    core = _host(qkv, cu, 131, heads, hd, "cuda_core")
    mma = _host(qkv, cu, 131, heads, hd, "mma_sm80")
    assert not torch.equal(core, mma)
    oracle = _oracle(qkv, lengths, heads, hd)
    assert _err(core, oracle)[0] < _err(mma, oracle)[0]


# -- with a GPU: the kernels against the oracle ----------------------------------------------------

GPU_CASES = {
    "one-token": ([1], None, 2),
    "seven": ([7], None, 2),
    "primes": ([3, 67, 131], None, 2),
    "512px-x4": ([1032] * 4, None, 16),
    "1024px": ([4104], None, 16),
    "mixed-8": ([4104, 1, 197, 1032, 67, 2056, 9, 577], None, 12),
    "max-far-above": ([197] * 40 + [1, 2, 3], 4104, 4),
    "64-images": ([5 + 3 * i for i in range(64)], None, 2),
}


def _compiled_tier_dtypes():
    for tier, dtype in TIER_DTYPES:
        yield pytest.param(tier, dtype, id=f"{tier}-{_id(dtype)}")


def _gpu_tier_or_skip(tier: str, dtype: torch.dtype) -> None:
    require_gpu()
    try:
        cuda.resolve_tier("attention", torch.device("cuda"), tier, dtype)
    except RuntimeError as e:
        pytest.skip(str(e))


def _launch(qkv, cu, max_seqlen, heads, head_dim, tier, poison=True):
    """The binding on a NaN-poisoned output (unwritten rows fail the checks)."""
    n = qkv.shape[0]
    out = torch.full((n, heads * head_dim), float("nan") if poison else 0.0, dtype=qkv.dtype, device=qkv.device)
    _C.attention_fwd(qkv.data_ptr(), cu.data_ptr(), out.data_ptr(), n, cu.numel() - 1, max_seqlen, heads, head_dim,
                     _code(qkv.dtype), TIERS[tier], torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    return out


def _gpu_case(case, head_dim, dtype, run=None):
    lengths, max_seqlen, heads = GPU_CASES[case]
    qkv = _qkv(sum(lengths), heads, head_dim, _seed("gpu", case, head_dim, run=run)).to(dtype).cuda()
    return qkv, _cu(lengths, "cuda"), max_seqlen or max(lengths), heads, lengths


@pytest.mark.parametrize("case", list(GPU_CASES))
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("tier,dtype", list(_compiled_tier_dtypes()))
def test_gpu_every_tier_against_oracle(tier, dtype, head_dim, case):
    _gpu_tier_or_skip(tier, dtype)
    small = sum(GPU_CASES[case][0]) <= 256  # the small cases run every draw; the large ones one
    for run in seed_runs() if small else seed_runs(1):
        qkv, cu, max_seqlen, heads, lengths = _gpu_case(case, head_dim, dtype, run)
        out = _launch(qkv, cu, max_seqlen, heads, head_dim, tier)
        what = f"{tier} {case}, draw {run}"
        _check(out, qkv, cu, max_seqlen, heads, head_dim, _oracle(qkv, lengths, heads, head_dim), what)
        if lengths == [1]:
            _assert_one_key_rows_are_v(out, qkv, lengths, heads, head_dim, what)
        # The public wrapper with the tier forced gives the same bits.
        assert torch.equal(cuda.attention(qkv, cu, max_seqlen, heads, head_dim, tier=tier), out)


@pytest.mark.parametrize("tier,dtype", list(_compiled_tier_dtypes()))
def test_gpu_long_image(tier, dtype):
    """16392 tokens (2048 px + 8 prefix tokens), one head pair."""
    _gpu_tier_or_skip(tier, dtype)
    lengths, heads, hd = [16392], 2, 80
    qkv = _qkv(sum(lengths), heads, hd, _seed("gpu-long")).to(dtype).cuda()
    cu = _cu(lengths, "cuda")
    out = _launch(qkv, cu, 16392, heads, hd, tier)
    _check(out, qkv, cu, 16392, heads, hd, _oracle(qkv, lengths, heads, hd), f"{tier} 16392")


@pytest.mark.parametrize("tier,dtype", [p for p in _compiled_tier_dtypes() if p.values[1] != F32])
def test_gpu_600k_rows(tier, dtype):
    """N = 600k rows of 16 heads x 80: qkv row offsets pass 2^31 elements (64-bit index math), and
    120k images of 5 tokens make the packed schedule's search 17 steps deep. Checked on the last
    images (the far end of the buffer) and on every row's finiteness."""
    _gpu_tier_or_skip(tier, dtype)
    heads, hd, per = 16, 80, 5
    lengths = [per] * 120_000
    n = sum(lengths)
    qkv = torch.randn(n, 3 * heads * hd, dtype=dtype, device="cuda")
    cu = _cu(lengths, "cuda")
    out = _launch(qkv, cu, per, heads, hd, tier)
    assert torch.isfinite(out).all()
    tail = slice(n - 7 * per, n)
    want = _oracle(qkv[tail], [per] * 7, heads, hd)
    _check(out[tail], qkv[tail], _cu([per] * 7, "cuda"), per, heads, hd, want, f"{tier} 600k")
    out2 = _launch(qkv, cu, per + 1, heads, hd, tier)  # max_seqlen above the lengths: packed schedule
    assert torch.equal(out2, out)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("tier,dtype", list(_compiled_tier_dtypes()))
def test_gpu_nan_stays_in_its_image(tier, dtype):
    _gpu_tier_or_skip(tier, dtype)
    lengths, heads, hd = [130, 1032, 67], 2, 80
    clean = _qkv(sum(lengths), heads, hd, _seed("gpu-iso")).to(dtype).cuda()
    cu = _cu(lengths, "cuda")
    ref = _launch(clean, cu, 1032, heads, hd, tier)
    bad = clean.clone()
    a, b = lengths[0], lengths[0] + lengths[1]
    bad[a] = float("nan")
    bad[b - 1] = float("nan")
    out = _launch(bad, cu, 1032, heads, hd, tier)
    assert torch.isnan(out[a:b]).all()
    assert torch.equal(out[:a], ref[:a]) and torch.equal(out[b:], ref[b:])
    assert torch.isfinite(out[:a]).all() and torch.isfinite(out[b:]).all()


@needs_gpu
def test_gpu_unaligned_qkv_view_is_copied():
    heads, hd, lengths = 2, 64, [7, 13]
    qkv = _qkv(sum(lengths), heads, hd, _seed("unaligned")).half().cuda()
    buf = torch.empty(qkv.numel() + 1, dtype=qkv.dtype, device="cuda")
    view = buf[1:].view(qkv.shape)
    view.copy_(qkv)
    cu = _cu(lengths, "cuda")
    assert view.data_ptr() % 16 != 0
    torch.testing.assert_close(cuda.attention(view, cu, 13, heads, hd), cuda.attention(qkv, cu, 13, heads, hd),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match="qkv must be 16-byte aligned"):
        _C.attention_fwd(view.data_ptr(), cu.data_ptr(), qkv.data_ptr(), 20, 2, 13, heads, hd, _code(F16), 0,
                         torch.cuda.current_stream().cuda_stream)


@needs_gpu
def test_gpu_binding_refuses_host_pointers():
    qkv = _qkv(10, 2, 64, 1)
    cu = _cu([3, 7], "cuda")
    out = torch.empty(10, 128, device="cuda")
    with pytest.raises(ValueError, match="must point to device memory"):
        _C.attention_fwd(qkv.data_ptr(), cu.data_ptr(), out.data_ptr(), 10, 2, 7, 2, 64, 0, 0,
                         torch.cuda.current_stream().cuda_stream)


@needs_gpu
def test_gpu_automatic_tier_per_dtype():
    cap = torch.cuda.get_device_capability()
    assert cuda.resolve_tier("attention", torch.device("cuda"), dtype=F32) == "cuda_core"
    hopper = cap == (9, 0) and "wgmma_sm90a" in INFO["tiers"]["attention"] and \
        not _C.check_arch("attention", "wgmma_sm90a", *cap)
    if hopper:  # a build with sm_90a SASS prefers the Hopper tier there
        assert cuda.resolve_tier("attention", torch.device("cuda"), dtype=BF16) == "wgmma_sm90a"
        assert cuda.resolve_tier("attention", torch.device("cuda"), dtype=F16) == "wgmma_sm90a"
    elif cap >= (8, 0) and "mma_sm80" in INFO["tiers"]["attention"]:
        assert cuda.resolve_tier("attention", torch.device("cuda"), dtype=BF16) == "mma_sm80"
        assert cuda.resolve_tier("attention", torch.device("cuda"), dtype=F16) == "mma_sm80"
    with pytest.raises(ValueError, match="takes torch.float16, not torch.bfloat16"):
        qkv, cu, m, h, _ = _gpu_case("seven", 64, BF16)
        cuda.attention(qkv, cu, m, h, 64, tier="mma_sm75")


@needs_gpu
def test_gpu_values_checked_and_cached():
    qkv, cu, m, h, _ = _gpu_case("primes", 64, F16)
    cuda.attention(qkv, cu, m, h, 64)
    assert checks.CHECKED[0][0]() is cu
    bad = cu.clone()
    bad[1] = 500
    with pytest.raises(ValueError, match="non-decreasing"):
        cuda.attention(qkv, bad, m, h, 64)


@needs_gpu
@pytest.mark.parametrize("tier,dtype", [("cuda_core", F32), ("mma_sm80", BF16)])
def test_gpu_cuda_graph_capture(tier, dtype):
    _gpu_tier_or_skip(tier, dtype)
    qkv, cu, m, h, lengths = _gpu_case("mixed-8", 80, dtype)
    cuda.attention(qkv, cu, m, h, 80, tier=tier)  # warm-up and value check outside the capture
    cu2 = cu.clone()  # a new tensor: its values cannot be checked during capture, and are not
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = cuda.attention(qkv, cu2, m, h, 80, tier=tier)
    qkv2, *_ = _gpu_case("mixed-8", 80, dtype)
    qkv.copy_(qkv2.flip(0))  # replay reads the new values
    g.replay()
    torch.cuda.synchronize()
    _check(out, qkv, cu, m, h, 80, _oracle(qkv, lengths, h, 80), f"{tier} graph replay")


@needs_gpu
def test_gpu_opcheck():
    op = torch.ops.fastradio.cuda_attention.default
    for lengths, hd, dt in (([3, 7], 64, F32), ([5], 80, F16), ([1, 130], 80, BF16)):
        qkv = _qkv(sum(lengths), 2, hd, 1).to(dt).cuda()
        torch.library.opcheck(op, (qkv, _cu(lengths, "cuda"), max(lengths), 2, hd, -1))


@needs_gpu
def test_gpu_compile_fullgraph():
    qkv, cu, m, h, _ = _gpu_case("primes", 80, BF16)

    def f(qkv, cu, scale):
        return cuda.attention(qkv, cu, m, h, 80) * scale

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True)
    torch.testing.assert_close(compiled(qkv, cu, 2.0), f(qkv, cu, 2.0), rtol=0, atol=0)
