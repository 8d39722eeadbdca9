"""The whole forward pass on the Triton backend (on CPU: under TRITON_INTERPRET=1), against the
reference backend, with the numerics rules of DESIGN.md §7."""

from __future__ import annotations

import pytest
import torch

import fastradio
from fastradio import backends, ops, synthetic

CPU = torch.device("cpu")


def _device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else CPU


def _skip_unless_triton_runs(device, dtype):
    for op in ops.OPS:
        reasons = backends.refusals("triton", op, device, dtype, head_dim=64)
        if reasons:
            pytest.skip(f"triton cannot run {op} on {device}: " + "; ".join(reasons))


def rel_l2(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


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
def test_fp32_forward_matches_reference(folders, name):
    dev = _device()
    _skip_unless_triton_runs(dev, torch.float32)
    tri = fastradio.load(folders[name], device=dev, dtype=torch.float32, backend="triton")
    ref = fastradio.load(folders[name], device=dev, dtype=torch.float32, backend="reference")
    assert set(tri.plan.names.values()) == {"triton"}, tri.plan.names
    x = torch.stack(_images([(32, 48)] * 2, seed=1, device=dev))
    a, b = tri(x), ref(x)
    assert rel_l2(a.summary, b.summary) <= 1e-5
    assert rel_l2(a.features, b.features) <= 1e-5


@pytest.mark.parametrize("name", ["test-d128", "test-d160"])
def test_packed_mixed_sizes_match_one_at_a_time(folders, name):
    dev = _device()
    _skip_unless_triton_runs(dev, torch.float32)
    tri = fastradio.load(folders[name], device=dev, dtype=torch.float32, backend="triton")
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
def test_fp16_within_precision_floor(folders, name):
    """fp16 model vs the fp32 oracle: at most 1.5x as far as the reference run in fp16, and
    per-image summary cosine >= 0.999 (DESIGN.md §7)."""
    dev = _device()
    _skip_unless_triton_runs(dev, torch.float16)
    oracle = fastradio.load(folders[name], device=dev, dtype=torch.float32, backend="reference")
    ref16 = fastradio.load(folders[name], device=dev, dtype=torch.float16, backend="reference")
    tri16 = fastradio.load(folders[name], device=dev, dtype=torch.float16, backend="triton")
    x = torch.stack(_images([(48, 48)] * 2, seed=3, device=dev))
    o, r, t = oracle(x), ref16(x), tri16(x)
    for field in ("summary", "features"):
        floor = rel_l2(getattr(r, field).float(), getattr(o, field))
        err = rel_l2(getattr(t, field).float(), getattr(o, field))
        assert err <= 1.5 * floor + 1e-4, (field, err, floor)
    cos = torch.nn.functional.cosine_similarity(t.summary.float(), o.summary, dim=-1)
    assert (cos >= 0.999).all(), cos
