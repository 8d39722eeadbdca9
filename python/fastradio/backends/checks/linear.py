"""Argument checks of ``linear`` shared by the triton and cuda backends (see the package docstring).

``check_linear`` validates everything the kernels' raw pointers rely on that does not depend on
the backend: types, shapes (x (N, K), weight (M, K), bias (M,), residual (N, M)), the activation,
one dtype for every tensor, contiguity and one device. Each backend then checks the device kind
it runs on."""

from __future__ import annotations

import torch

__all__ = ["ACTIVATIONS", "DTYPES", "check_linear"]

#: "none", or the exact erf GELU.
ACTIVATIONS: tuple[str, ...] = ("none", "gelu")
#: The storage dtypes of every tensor of the op (all equal).
DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)


def check_linear(x, weight, bias, activation, residual) -> None:
    """Raise ``TypeError``/``ValueError`` naming what was expected and what came."""
    op = "linear"
    named = [("x", x), ("weight", weight), ("bias", bias), ("residual", residual)]
    for name, t in named:
        optional = name in ("bias", "residual")
        if not isinstance(t, torch.Tensor) and not (optional and t is None):
            raise TypeError(f"{op}: {name} must be a torch.Tensor{' or None' if optional else ''}, "
                            f"got {type(t).__name__}")
    named = [(name, t) for name, t in named if t is not None]
    if x.dim() != 2 or x.shape[1] < 1:
        raise ValueError(f"{op}: x must have shape (N, K) with K >= 1, got {tuple(x.shape)}")
    n, k = x.shape
    if weight.dim() != 2 or weight.shape[0] < 1:
        raise ValueError(f"{op}: weight must have shape (M, K) with M >= 1 (nn.Linear layout), "
                         f"got {tuple(weight.shape)}")
    m = weight.shape[0]
    if weight.shape[1] != k:
        raise ValueError(f"{op}: weight must have shape (M, K) = (M, {k}) with K from x {tuple(x.shape)}, "
                         f"got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (m,):
        raise ValueError(f"{op}: bias must have shape (M,) = ({m},) with M from weight, got {tuple(bias.shape)}")
    if residual is not None and tuple(residual.shape) != (n, m):
        raise ValueError(f"{op}: residual must have shape (N, M) = ({n}, {m}), got {tuple(residual.shape)}")
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"{op}: activation must be 'none' or 'gelu' (exact erf), got {activation!r}")
    if x.dtype not in DTYPES:
        raise TypeError(f"{op}: x must be float32, float16 or bfloat16, got {x.dtype}")
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
