"""add_layer_norm in the CUDA backend: tensor checks, the custom op and its fake (package docstring)."""

from __future__ import annotations

import math

import torch

from ._common import (_C, _DTYPE_CODES, DEVICE_TYPE, _expect_tensor, _tier_arg, _tier_code, current_stream, device_guard,
                      register_op)

# --- add_layer_norm -------------------------------------------------------------------------------

#: (residual dtype, compute dtype) pairs the kernel takes: equal, or an fp32 residual stream under
#: fp16/bf16 compute (DESIGN.md decision 12).
ADD_LAYER_NORM_DTYPES: tuple[tuple[torch.dtype, torch.dtype], ...] = (
    (torch.float32, torch.float32), (torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16),
    (torch.float32, torch.float16), (torch.float32, torch.bfloat16))


def _refusals(dtype: torch.dtype, residual_dtype=None, **_facts) -> list[str]:
    if residual_dtype is not None and (residual_dtype, dtype) not in ADD_LAYER_NORM_DTYPES:
        return [f"add_layer_norm takes (residual, compute) dtypes {_pairs(ADD_LAYER_NORM_DTYPES)}, "
                f"got ({residual_dtype}, {dtype})"]
    return []


def _pairs(pairs) -> str:
    return ", ".join(f"({a}, {b})" for a, b in pairs)


def _check_add_layer_norm(x, delta, weight, bias, eps) -> None:
    fn = "add_layer_norm"
    for name, t in (("x", x), ("weight", weight), ("bias", bias)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if (x.dtype, weight.dtype) not in ADD_LAYER_NORM_DTYPES:
        raise TypeError(f"{fn}: (x.dtype, weight.dtype) = (residual, compute) dtypes must be one of "
                        f"{_pairs(ADD_LAYER_NORM_DTYPES)}, got ({x.dtype}, {weight.dtype})")
    if x.dim() != 2:
        raise ValueError(f"{fn}: x must have shape (N, D), got shape {tuple(x.shape)}")
    _expect_tensor(fn, "x", x, dtype=x.dtype, ndim=2)
    n, d = x.shape
    if d < 1:
        raise ValueError(f"{fn}: x must have shape (N, D) with D >= 1, got {tuple(x.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        _expect_tensor(fn, name, t, dtype=weight.dtype, ndim=1)
        if t.shape[0] != d:
            raise ValueError(f"{fn}: {name} must have shape ({d},) to match x {tuple(x.shape)}, got {tuple(t.shape)}")
    if delta is not None:
        if not isinstance(delta, torch.Tensor):
            raise TypeError(f"{fn}: delta must be a torch.Tensor or None, got {type(delta).__name__}")
        _expect_tensor(fn, "delta", delta, dtype=weight.dtype, ndim=2)
        if delta.shape != x.shape:
            raise ValueError(f"{fn}: delta must have x's shape {tuple(x.shape)}, got {tuple(delta.shape)}")
    for name, t in (("weight", weight), ("bias", bias), ("delta", delta)):
        if t is not None and t.device != x.device:
            raise ValueError(f"{fn}: {name} must be on x's device {x.device}, got {t.device}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{fn}: eps must be a finite number >= 0, got {eps!r}")


@torch.library.custom_op(register_op("add_layer_norm", lambda device, dtype, **facts: _refusals(dtype, **facts)), mutates_args=(), device_types=DEVICE_TYPE)
def _add_layer_norm_op(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                       eps: float, tier: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Outputs may not alias inputs: without delta, x_new is an empty (0, D) placeholder and the
    # wrapper returns x itself.
    n, d = x.shape
    x_new = torch.empty_like(x) if delta is not None else x.new_empty((0, d))
    out = torch.empty((n, d), dtype=weight.dtype, device=x.device)
    if n == 0:
        return x_new, out
    code = _tier_code("add_layer_norm", x.device, tier)
    with device_guard(x.device):
        stream = current_stream(x.device)
        _C.add_layer_norm_fwd(x.data_ptr(), 0 if delta is None else delta.data_ptr(), weight.data_ptr(),
                              bias.data_ptr(), 0 if delta is None else x_new.data_ptr(), out.data_ptr(), n, d, eps,
                              _DTYPE_CODES[x.dtype], _DTYPE_CODES[weight.dtype], code, stream)
    return x_new, out


@_add_layer_norm_op.register_fake
def _add_layer_norm_fake(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                         eps: float, tier: int) -> tuple[torch.Tensor, torch.Tensor]:
    n, d = x.shape
    x_new = torch.empty_like(x) if delta is not None else x.new_empty((0, d))
    return x_new, x.new_empty((n, d), dtype=weight.dtype)


def add_layer_norm(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float, *, tier: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add fused with LayerNorm: ``(x_new, a)`` with ``x_new = x + delta`` and
    ``a = LayerNorm(x_new) * weight + bias``.

    x (N, D) in the residual dtype; delta (N, D) in the compute dtype, or None (no add: ``x_new``
    is ``x`` itself); weight, bias (D,) in the compute dtype; all contiguous on one CUDA device.
    (residual, compute) dtypes: ``ADD_LAYER_NORM_DTYPES``. ``x_new`` is one fp32 add rounded to
    x's dtype; ``a`` (N, D) in weight's dtype uses fp32 statistics (biased variance, ``eps``
    added). Same contract as ``fastradio.backends.reference.add_layer_norm``. ``tier``: see the
    module docstring.
    """
    _check_add_layer_norm(x, delta, weight, bias, eps)
    x_new, a = _add_layer_norm_op(x, delta, weight, bias, float(eps), _tier_arg("add_layer_norm", tier))
    return (x if delta is None else x_new), a
