"""Argument checks of ``patch_embed`` shared by the triton and cuda backends (ops.patch_embed).

Everything the kernels' raw pointers rely on: types, shapes, dtypes, contiguity and one device,
with messages naming what was expected and what came. Where the tensors may live (cuda, or cpu
under the Triton interpreter) is each backend's own check.
"""

from __future__ import annotations

import torch

__all__ = ["PATCH", "K", "DTYPES", "check_patch_embed", "output_shape"]

PATCH = 16  # pixels per patch side
K = 3 * PATCH * PATCH  # features per patch: ch*256 + dy*16 + dx
DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # compute dtypes


def check_patch_embed(x, weight, pos, prefix) -> None:
    """Raise TypeError/ValueError unless x (B, 3, H, W) with H, W positive multiples of 16,
    weight (D, 768), pos (h*w, D) and prefix (P, D) are contiguous tensors of one dtype
    (float32, float16 or bfloat16) on one device."""
    op = "patch_embed"
    named = [("x", x), ("weight", weight), ("pos", pos), ("prefix", prefix)]
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{op}: x must have shape (B, 3, H, W), got {tuple(x.shape)}")
    hh, ww = x.shape[2], x.shape[3]
    if hh < PATCH or ww < PATCH or hh % PATCH or ww % PATCH:
        raise ValueError(f"{op}: H and W must be positive multiples of {PATCH}, got H={hh}, W={ww}")
    h, w = hh // PATCH, ww // PATCH
    if x.dtype not in DTYPES:
        raise TypeError(f"{op}: x must be float32, float16 or bfloat16 (the compute dtype), got {x.dtype}")
    if weight.dim() != 2 or weight.shape[1] != K or weight.shape[0] < 1:
        raise ValueError(f"{op}: weight must have shape (D, {K}) with D >= 1 (features "
                         f"ch*256 + dy*16 + dx), got {tuple(weight.shape)}")
    d = weight.shape[0]
    if tuple(pos.shape) != (h * w, d):
        raise ValueError(f"{op}: pos must have shape (h*w, D) = ({h * w}, {d}) for a {hh}x{ww} image "
                         f"and D from weight, got {tuple(pos.shape)}")
    if prefix.dim() != 2 or prefix.shape[1] != d:
        raise ValueError(f"{op}: prefix must have shape (P, D) = (P, {d}) with D from weight, "
                         f"got {tuple(prefix.shape)}")
    for name, t in named[1:]:
        if t.dtype != x.dtype:
            raise TypeError(f"{op}: {name} must have x's dtype {x.dtype}, got {t.dtype}")
    for name, t in named:
        if not t.is_contiguous():
            raise ValueError(f"{op}: {name} must be contiguous, got strides {t.stride()} for shape "
                             f"{tuple(t.shape)} (call .contiguous())")
    for name, t in named[1:]:
        if t.device != x.device:
            raise ValueError(f"{op}: {name} must be on x's device {x.device}, got {t.device}")


def output_shape(x: torch.Tensor, weight: torch.Tensor, prefix: torch.Tensor) -> tuple[int, int, int]:
    """(B, P + h*w, D) of checked arguments."""
    return (x.shape[0], prefix.shape[0] + (x.shape[2] // PATCH) * (x.shape[3] // PATCH), weight.shape[0])
