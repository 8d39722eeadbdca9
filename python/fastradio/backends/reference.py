"""Reference backend: plain PyTorch, the executable spec and the test oracle (DESIGN.md §4).

Obviously correct rather than fast. It computes in the dtype it is given: fp32 inputs give the
fp32 oracle; bf16/fp16 inputs give "the reference run the way the Hugging Face model runs"
(eager, SDPA), which is both the precision floor of DESIGN.md §7 and the benchmark peer.
The position-table resize is always fp32 (spec §3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["supports", "pos_embed", "patch_embed", "add_layer_norm", "linear", "attention"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def supports(op: str, device: torch.device, dtype: torch.dtype, **facts) -> list[str]:
    if dtype not in _DTYPES:
        return [f"dtype {dtype} is not one of float32, float16, bfloat16"]
    return []


def pos_embed(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype, align_corners: bool = True) -> torch.Tensor:
    """table (G, G, D) fp32 → (h*w, D) ``out_dtype``; spec §3 (align_corners=True, C-RADIOv2) and
    radio-family §3 (False, C-RADIOv4), via torch's own bilinear."""
    g = table.shape[0]
    if (h, w) == (g, g):  # the identity resize, in both modes
        grid = table.float()
    else:
        m = max(h, w)
        # (1, D, G, G) → (1, D, m, m) in fp32; then the top-left h x w window.
        src = table.float().permute(2, 0, 1).unsqueeze(0)
        grid = F.interpolate(src, size=(m, m), mode="bilinear", align_corners=align_corners, antialias=False)
        grid = grid[0, :, :h, :w].permute(1, 2, 0)
    return grid.reshape(h * w, table.shape[-1]).to(out_dtype)


def patch_embed(x: torch.Tensor, weight: torch.Tensor, pos: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """x (B, 3, H, W) → tokens (B, P + h*w, D); feature f = ch*p*p + dy*p + dx (spec §3)."""
    b, c, hh, ww = x.shape
    p = int(round((weight.shape[1] // c) ** 0.5))
    h, w = hh // p, ww // p
    patches = x.reshape(b, c, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, c * p * p)
    tokens = F.linear(patches, weight) + pos
    return torch.cat([prefix.unsqueeze(0).expand(b, -1, -1).to(tokens.dtype), tokens], dim=1)


def add_layer_norm(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, D) residual dtype, delta (N, D) or None → (x + delta, LN(x + delta) in weight's dtype)."""
    if delta is not None:
        x = x + delta.to(x.dtype)
    a = F.layer_norm(x, (x.shape[-1],), weight.to(x.dtype), bias.to(x.dtype), eps)
    return x, a.to(weight.dtype)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           activation: str = "none", residual: torch.Tensor | None = None) -> torch.Tensor:
    y = F.linear(x, weight, bias)
    if activation == "gelu":
        y = F.gelu(y, approximate="none")
    elif activation != "none":
        raise ValueError(f"activation must be 'none' or 'gelu', got {activation!r}")
    if residual is not None:
        y = residual + y
    return y


def attention(qkv: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, num_heads: int,
              head_dim: int) -> torch.Tensor:
    """qkv (N, 3*H*Dh) packed over images delimited by cu_seqlens (S+1,) → (N, H*Dh)."""
    n = qkv.shape[0]
    d = num_heads * head_dim
    s = cu_seqlens.shape[0] - 1
    if n != s * max_seqlen:
        # Mixed lengths (no segment is longer than max_seqlen, so n == s*max_seqlen iff all are
        # equal): one image at a time, so nothing can cross between images.
        bounds = cu_seqlens.tolist()
        return torch.cat([attention(qkv[a:b], cu_seqlens.new_tensor([0, b - a]), b - a, num_heads, head_dim)
                          for a, b in zip(bounds, bounds[1:])], dim=0)
    # Uniform lengths: an (S, T) batch, decided from shapes alone (no sync, compile-friendly).
    t = max_seqlen
    q, k, v = qkv.reshape(s, t, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    o = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
    return o.transpose(1, 2).reshape(n, d)
