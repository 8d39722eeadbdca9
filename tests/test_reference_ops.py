"""Spec facts pinned by independent checks of the reference backend's ops (the test oracle)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fastradio import ops
from fastradio.backends import reference as ref


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_patch_flattening_equals_stride16_convolution():
    """f = ch*256 + dy*16 + dx: the (D, 768) weight reshaped to (D, 3, 16, 16) is a conv kernel."""
    g = _gen(0)
    b, h, w, d = 2, 3, 5, 24
    x = torch.randn(b, 3, 16 * h, 16 * w, generator=g)
    weight = torch.randn(d, 768, generator=g) / 28
    pos = torch.randn(h * w, d, generator=g)
    prefix = torch.randn(8, d, generator=g)
    tok = ref.patch_embed(x, weight, pos, prefix)
    conv = F.conv2d(x, weight.view(d, 3, 16, 16), stride=16).flatten(2).transpose(1, 2)  # (B, h*w, D)
    assert tok.shape == (b, 8 + h * w, d)
    torch.testing.assert_close(tok[:, 8:], conv + pos, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tok[:, :8], prefix.expand(b, -1, -1), rtol=0, atol=0)
    # token n = r*w + c is the patch at row r, column c: perturb one patch, only that token moves
    x2 = x.clone()
    x2[1, 2, 16 * 2 + 3, 16 * 4 + 9] += 1.0
    diff = (ref.patch_embed(x2, weight, pos, prefix) - tok).abs().sum(-1)
    assert diff[1].nonzero().flatten().tolist() == [8 + 2 * w + 4]
    assert diff[0].sum() == 0


def test_qkv_split_order_and_head_layout():
    """qkv rows [0,D) are q, [D,2D) k, [2D,3D) v; inside each third heads are contiguous."""
    g = _gen(1)
    heads, hd, t = 3, 64, 5
    d = heads * hd
    v = torch.randn(t, d, generator=g)
    # q = 0 → uniform softmax → every output row is the mean of v over the tokens
    qkv = torch.cat([torch.zeros(t, d), torch.randn(t, d, generator=g), v], dim=1)
    out = ref.attention(qkv, torch.tensor([0, t], dtype=torch.int32), t, heads, hd)
    torch.testing.assert_close(out, v.mean(0, keepdim=True).expand(t, d), rtol=1e-5, atol=1e-5)
    # sharp attention in head 1 only: q·k large for token 2 → head 1 of every row copies v[2]'s head-1 block
    q = torch.zeros(t, d)
    k = torch.zeros(t, d)
    q[:, hd:2 * hd] = 1.0
    k[2, hd:2 * hd] = 50.0
    out = ref.attention(torch.cat([q, k, v], 1), torch.tensor([0, t], dtype=torch.int32), t, heads, hd)
    torch.testing.assert_close(out[:, hd:2 * hd], v[2, hd:2 * hd].expand(t, hd), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out[:, :hd], v[:, :hd].mean(0, keepdim=True).expand(t, hd), rtol=1e-5, atol=1e-5)


def test_attention_scale_and_softmax_match_explicit_formula():
    g = _gen(2)
    heads, hd, t = 2, 80, 7
    qkv = torch.randn(t, 3 * heads * hd, generator=g, dtype=torch.float64).float()
    out = ref.attention(qkv, torch.tensor([0, t], dtype=torch.int32), t, heads, hd)
    q, k, v = qkv.double().view(t, 3, heads, hd).unbind(1)
    s = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hd)
    expect = torch.einsum("hts,shd->thd", s.softmax(-1), v).reshape(t, heads * hd)
    torch.testing.assert_close(out.double(), expect, rtol=1e-5, atol=1e-5)


def test_varlen_attention_is_block_diagonal():
    g = _gen(3)
    heads, hd = 2, 64
    lens = [5, 1, 11, 5]
    qkv = torch.randn(sum(lens), 3 * heads * hd, generator=g)
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    out = ref.attention(qkv, cu, max(lens), heads, hd)
    for a, b in zip(cu.tolist(), cu.tolist()[1:]):
        alone = ref.attention(qkv[a:b], torch.tensor([0, b - a], dtype=torch.int32), b - a, heads, hd)
        torch.testing.assert_close(out[a:b], alone, rtol=1e-6, atol=1e-6)
    # uniform lengths take the batched path and agree with per-image calls
    cu_u = torch.arange(0, 4 * 5 + 1, 5, dtype=torch.int32)
    out_u = ref.attention(qkv[:20], cu_u, 5, heads, hd)
    torch.testing.assert_close(out_u[5:10], ref.attention(qkv[5:10], cu_u[:2], 5, heads, hd), rtol=1e-6, atol=1e-6)


def test_gelu_is_exact_erf_not_tanh():
    x = torch.linspace(-4, 4, 101).view(1, -1)
    eye = torch.eye(101)
    y = ref.linear(x, eye, None, "gelu", None)
    exact = 0.5 * x.double() * (1 + torch.erf(x.double() / math.sqrt(2)))
    torch.testing.assert_close(y.double(), exact, rtol=1e-6, atol=1e-6)
    tanh = F.gelu(x, approximate="tanh")
    assert (y - tanh).abs().max() > 1e-4


def test_linear_epilogue_order():
    g = _gen(4)
    x, w, b, r = (torch.randn(4, 6, generator=g), torch.randn(5, 6, generator=g),
                  torch.randn(5, generator=g), torch.randn(4, 5, generator=g))
    torch.testing.assert_close(ref.linear(x, w, b, "none", r), x @ w.T + b + r)
    torch.testing.assert_close(ref.linear(x, w, b, "gelu", None), F.gelu(x @ w.T + b))
    with pytest.raises(ValueError, match="activation must be 'none' or 'gelu', got 'relu'"):
        ref.linear(x, w, b, "relu", None)


def test_layer_norm_eps_matters():
    """eps 1e-6 (spec §1): a near-constant row separates eps=1e-6 from timm's default 1e-5."""
    x = torch.full((1, 64), 3.0) + torch.randn(1, 64, generator=_gen(5)) * 1e-3
    w, b = torch.ones(64), torch.zeros(64)
    _, a = ref.add_layer_norm(x, None, w, b, 1e-6)
    _, c = ref.add_layer_norm(x, None, w, b, 1e-5)
    assert (a - c).abs().max() > 1e-2


def test_add_layer_norm_adds_then_normalises_in_the_residual_dtype():
    g = _gen(6)
    x = torch.randn(5, 32, generator=g, dtype=torch.float64).float() * 30
    delta = torch.randn(5, 32, generator=g).half()
    w, b = torch.randn(32, generator=g).half(), torch.randn(32, generator=g).half()
    x2, a = ref.add_layer_norm(x, delta, w, b, 1e-6)
    assert x2.dtype == torch.float32 and a.dtype == torch.float16
    torch.testing.assert_close(x2, x + delta.float())
    expect = F.layer_norm(x2.double(), (32,), w.double(), b.double(), 1e-6)
    torch.testing.assert_close(a.double(), expect, rtol=2e-3, atol=2e-3)


def test_ops_free_functions_dispatch_to_reference_on_cpu():
    table = torch.randn(16, 16, 8)
    out = ops.pos_embed(table, 3, 5, torch.float32, backend="reference")
    assert out.shape == (15, 8)
    plan = ops.plan("auto", "cpu", torch.float32, head_dim=64)
    assert set(plan.names) == set(ops.OPS)
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        ops.plan("nope", "cpu", torch.float32)


def test_ops_free_functions_match_backend_functions():
    g = _gen(7)
    x, d = torch.randn(3, 16, generator=g), torch.randn(3, 16, generator=g)
    w, b = torch.randn(16, generator=g), torch.randn(16, generator=g)
    got = ops.add_layer_norm(x, d, w, b, 1e-6, backend="reference")
    exp = ref.add_layer_norm(x, d, w, b, 1e-6)
    torch.testing.assert_close(got[0], exp[0]) and torch.testing.assert_close(got[1], exp[1])
    wl = torch.randn(5, 16, generator=g)
    torch.testing.assert_close(ops.linear(x, wl, None, "gelu", None, backend="reference"),
                               ref.linear(x, wl, None, "gelu", None))
    qkv = torch.randn(6, 3 * 128, generator=g)
    cu = torch.tensor([0, 2, 6], dtype=torch.int32)
    torch.testing.assert_close(ops.attention(qkv, cu, 4, 2, 64, backend="reference"),
                               ref.attention(qkv, cu, 4, 2, 64))
