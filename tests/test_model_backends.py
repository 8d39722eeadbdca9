"""The whole forward pass on each fast backend against the reference backend, with the numerics
rules of DESIGN.md §7: triton (on CPU under TRITON_INTERPRET=1) and cuda (GPU only; every tier
forced in turn through FASTRADIO_TIER). With the input normalisation folded into the patch
embedding, as the fast backends run it."""

from __future__ import annotations

import pytest
import torch

import fastradio
from fastradio import backends, ops, synthetic

from kernel_testing import require_gpu
from helpers import rel_l2

CPU = torch.device("cpu")


def _device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else CPU


#: (backend, FASTRADIO_TIER): the cuda backend once per tier family (the dtype-aware automatic
#: choice for "auto"; every op forced to cuda_core; fp16/bf16 GEMM-heavy ops on mma_sm75/mma_sm80).
RUNS = [("triton", None), ("cuda", None), ("cuda", "cuda_core"), ("cuda", "mma_sm80"), ("cuda", "mma_sm75")]
RUN_IDS = [b if t is None else f"{b}-{t}" for b, t in RUNS]


@pytest.fixture(params=RUNS, ids=RUN_IDS)
def run(request, monkeypatch):
    """(backend name) with FASTRADIO_TIER set for the run; ops a forced tier lacks keep auto."""
    backend, tier = request.param
    if tier is not None:
        from fastradio.backends import cuda
        compiled = cuda.build_info()["tiers"]
        spec = ",".join(f"{op}:{tier}" for op, tiers in compiled.items() if tier in tiers)
        if not spec:
            pytest.skip(f"no op has tier {tier} in this build")
        monkeypatch.setenv(cuda.TIER_ENV, spec)
    return backend


def _skip_unless_runs(backend, device, dtype):
    if backend == "cuda" and device.type == "cuda":
        require_gpu()  # a GPU that torch sees and fastradio._C cannot use fails, never skips
    for op in ops.OPS:
        reasons = backends.refusals(backend, op, device, dtype, head_dim=64)
        if reasons:
            pytest.skip(f"{backend} cannot run {op} on {device}: " + "; ".join(reasons))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for name in ("test-d128", "test-d160"):
        f = tmp_path_factory.mktemp(name)
        synthetic.write_checkpoint(f, name, seed=11)
        out[name] = f
    return out


def _images(sizes, seed, device):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=g).to(device) for h, w in sizes]


@pytest.mark.parametrize("name", ["test-d128", "test-d160"])
def test_fp32_forward_matches_reference(folders, name, run):
    dev = _device()
    _skip_unless_runs(run, dev, torch.float32)
    tri = fastradio.load(folders[name], device=dev, dtype=torch.float32, backend=run)
    ref = fastradio.load(folders[name], device=dev, dtype=torch.float32, backend="reference")
    assert set(tri.plan.names.values()) == {run}, tri.plan.names
    assert tri.folds_input_norm and not ref.folds_input_norm
    x = torch.stack(_images([(32, 48)] * 2, seed=1, device=dev))
    a, b = tri(x), ref(x)
    assert rel_l2(a.summary, b.summary) <= 1e-5
    assert rel_l2(a.features, b.features) <= 1e-5


@pytest.mark.parametrize("name", ["test-d128", "test-d160"])
def test_packed_mixed_sizes_match_one_at_a_time(folders, name, run):
    dev = _device()
    _skip_unless_runs(run, dev, torch.float32)
    tri = fastradio.load(folders[name], device=dev, dtype=torch.float32, backend=run)
    imgs = _images([(16, 16), (48, 32), (16, 80), (48, 32)], seed=2, device=dev)
    imgs[1][0, 3, 3] = float("nan")
    outs = tri(imgs)
    assert torch.isnan(outs[1].summary).all()
    for i in (0, 2, 3):
        alone = tri(imgs[i][None])
        assert torch.isfinite(outs[i].features).all()
        torch.testing.assert_close(outs[i].summary, alone.summary, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(outs[i].features, alone.features, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["test-d128", "test-d160"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_half_within_precision_floor(folders, name, run, dtype):
    """fp16/bf16 model vs the fp32 oracle: at most 1.5x as far as the reference run in the same
    dtype, and per-image summary cosine >= 0.999 (DESIGN.md §7). bf16 only on a GPU: the Triton
    interpreter's bf16 is not trustworthy (DESIGN.md §8)."""
    dev = _device()
    if dtype == torch.bfloat16 and dev.type == "cpu":
        pytest.skip("bf16 model runs are checked on a GPU only")
    _skip_unless_runs(run, dev, dtype)
    oracle = fastradio.load(folders[name], device=dev, dtype=torch.float32, backend="reference")
    ref16 = fastradio.load(folders[name], device=dev, dtype=dtype, backend="reference")
    tri16 = fastradio.load(folders[name], device=dev, dtype=dtype, backend=run)
    x = torch.stack(_images([(48, 48)] * 2, seed=3, device=dev))
    o, r, t = oracle(x), ref16(x), tri16(x)
    for field in ("summary", "features"):
        floor = rel_l2(getattr(r, field).float(), getattr(o, field))
        err = rel_l2(getattr(t, field).float(), getattr(o, field))
        assert err <= 1.5 * floor + 1e-4, (field, err, floor)
    cos = torch.nn.functional.cosine_similarity(t.summary.float(), o.summary, dim=-1)
    assert (cos >= 0.999).all(), cos


def test_external_preprocessor_is_not_folded(folders, run):
    """After make_preprocessor_external the caller normalises: nothing is folded and the outputs
    equal the reference fed the same normalised input."""
    dev = _device()
    _skip_unless_runs(run, dev, torch.float32)
    fast = fastradio.load(folders["test-d128"], device=dev, dtype=torch.float32, backend=run)
    ref = fastradio.load(folders["test-d128"], device=dev, dtype=torch.float32, backend="reference")
    cond = fast.make_preprocessor_external()
    ref.make_preprocessor_external()
    assert not fast.folds_input_norm
    x = cond(torch.stack(_images([(32, 32)], seed=4, device=dev)))
    a, b = fast(x), ref(x)
    assert rel_l2(a.features, b.features) <= 1e-5


def test_cuda_graph_runner_refuses_cpu(folders):
    model = fastradio.load(folders["test-d128"], device="cpu", dtype=torch.float32, backend="reference")
    with pytest.raises(ValueError, match="need the model and the example on a CUDA device, got model on cpu"):
        fastradio.CudaGraphRunner(model, torch.rand(1, 3, 32, 32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_gpu_cuda_graph_replay_equals_eager(folders, run, dtype):
    """The whole forward captured once and replayed on new inputs equals eager calls (bitwise: the
    same kernels run), for every backend/tier run; wrong shapes and dtypes are refused."""
    dev = torch.device("cuda")
    _skip_unless_runs(run, dev, dtype)
    model = fastradio.load(folders["test-d160"], device=dev, dtype=dtype, backend=run)
    x0, x1 = (torch.stack(_images([(48, 32)] * 2, seed=s, device=dev)) for s in (5, 6))
    runner = fastradio.CudaGraphRunner(model, x0)
    for x in (x1, x0):
        got, want = runner(x), model(x)
        assert torch.equal(got.summary, want.summary) and torch.equal(got.features, want.features)
    keep = runner(x1)
    runner(x0)
    assert torch.equal(keep.summary, model(x1).summary), "copy_outputs=True must not alias the static outputs"
    with pytest.raises(ValueError, match=r"captured for input shape \(2, 3, 48, 32\), got \(1, 3, 48, 32\)"):
        runner(x0[:1])
    with pytest.raises(TypeError, match="expected torch.float32 input"):
        runner(x0.half())
