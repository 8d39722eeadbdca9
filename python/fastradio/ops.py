"""The ops of the forward pass: one name per op in every layer (DESIGN.md §2).

``ops.<op>`` → ``backends/{reference,cuda,triton}.<op>`` → ``kernels/<op>.py`` and
``_C.<op>_fwd`` → ``csrc/<op>/``. Every backend implements an op with exactly the signature
documented here; the reference backend is the executable definition.

The model resolves a :class:`Plan` once per (device, dtype) and calls its members; the free
functions below resolve on every call and are meant for tests, benchmarks and users.

Ops (shapes: B images, N packed tokens, D width, P prefix tokens, G position grid side):

- ``pos_embed(table, h, w, out_dtype, align_corners=True) -> (h*w, D)``: bilinear resize of the
  (G, G, D) fp32 table to (m, m), m = max(h, w), fp32 math, top-left h x w crop, cast;
  align_corners=True for C-RADIOv2, False for C-RADIOv4 (radio-family spec §3).
- ``patch_embed(x, weight, pos, prefix) -> (B, P + h*w, D)``: im2patch of (B, 3, H, W), times
  ``weight`` (D, 3*16*16)ᵀ, plus ``pos`` (h*w, D), behind the ``prefix`` (P, D) tokens.
- ``add_layer_norm(x, delta, weight, bias, eps) -> (x + delta, LN(x + delta))``: the residual add
  fused with the LayerNorm after it; x (N, D) in the residual dtype, delta (N, D) in the compute
  dtype or None (no add; a backend may then return x itself as the first output), the
  normalised output in the dtype of ``weight``; fp32 statistics.
- ``linear(x, weight, bias, activation, residual) -> (N, M)``: act(x·Wᵀ + b) + residual with
  activation "none" or "gelu" (exact erf).
- ``attention(qkv, cu_seqlens, max_seqlen, num_heads, head_dim) -> (N, num_heads*head_dim)``:
  non-causal softmax attention within each packed image, scale head_dim^-0.5; qkv is (N, 3·D)
  with q, k, v thirds and heads contiguous inside each third.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from . import backends

__all__ = ["OPS", "Plan", "plan", "pos_embed", "patch_embed", "add_layer_norm", "linear", "attention"]

OPS: tuple[str, ...] = ("pos_embed", "patch_embed", "add_layer_norm", "linear", "attention")


@dataclass
class Plan:
    """Which backend runs each op on one (device, dtype); ``names`` is for reports."""

    device: torch.device
    dtype: torch.dtype
    names: dict[str, str] = field(default_factory=dict)
    fns: dict[str, Callable] = field(default_factory=dict)

    def __getattr__(self, op: str) -> Callable:
        try:
            return self.__dict__["fns"][op]
        except KeyError:
            raise AttributeError(op) from None


def plan(choice: str, device: torch.device | str, dtype: torch.dtype, **facts) -> Plan:
    """Resolve every op for ``choice`` ("auto" or a backend name) on (device, dtype).

    With an explicit backend, ops it does not implement yet fall back to the reference backend
    (so a partial backend is usable and testable); ops it refuses for any other reason raise.
    """
    device = torch.device(device)
    p = Plan(device=device, dtype=dtype)
    for op in OPS:
        name = None
        if choice not in ("auto", "reference"):
            reasons = backends.refusals(choice, op, device, dtype, **facts)
            if reasons and all("does not implement" in r for r in reasons):
                name = "reference"
        if name is None:
            name = backends.select(op, choice, device, dtype, **facts)
        p.names[op] = name
        p.fns[op] = getattr(backends.get(name), op)
    return p


def _call(op: str, backend: str, device: torch.device, dtype: torch.dtype, facts: dict, *args):
    name = backends.select(op, backend, device, dtype, **facts)
    return getattr(backends.get(name), op)(*args)


def pos_embed(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype, align_corners: bool = True, *,
              backend: str = "auto") -> torch.Tensor:
    """Resized position table for an h x w patch grid, (h*w, D) in ``out_dtype`` (see module doc)."""
    return _call("pos_embed", backend, table.device, out_dtype, {}, table, h, w, out_dtype, align_corners)


def patch_embed(x, weight, pos, prefix, *, backend: str = "auto") -> torch.Tensor:
    """Tokens (B, P + h*w, D) of images x (B, 3, H, W) (see module doc)."""
    return _call("patch_embed", backend, x.device, x.dtype, {}, x, weight, pos, prefix)


def add_layer_norm(x, delta, weight, bias, eps: float, *, backend: str = "auto"):
    """(x + delta, LayerNorm(x + delta)) over the last dim of x (N, D); delta may be None."""
    return _call("add_layer_norm", backend, x.device, weight.dtype, {}, x, delta, weight, bias, eps)


def linear(x, weight, bias=None, activation: str = "none", residual=None, *, backend: str = "auto") -> torch.Tensor:
    """act(x·Wᵀ + b) + residual for x (N, K), W (M, K), b (M,), residual (N, M)."""
    return _call("linear", backend, x.device, x.dtype, {}, x, weight, bias, activation, residual)


def attention(qkv, cu_seqlens, max_seqlen: int, num_heads: int, head_dim: int, *, backend: str = "auto") -> torch.Tensor:
    """Variable-length non-causal attention over packed images (see module doc)."""
    return _call("attention", backend, qkv.device, qkv.dtype, {"head_dim": head_dim},
                 qkv, cu_seqlens, max_seqlen, num_heads, head_dim)
