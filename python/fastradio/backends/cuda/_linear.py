"""linear in the CUDA backend: tensor checks, the custom op and its fake (package docstring).

Tiers (csrc/linear/): ``cuda_core`` takes every dtype and is the float32 tier everywhere (IEEE
fp32 FMAs, no TF32); ``mma_sm75`` takes float16 (Turing's tensor cores have no bfloat16);
``mma_sm80`` takes float16 and bfloat16; ``wgmma_sm90a`` (sm_90a only: H100/H200) takes float16 and
bfloat16 and runs calls it has no tensor map for (K % 8 != 0, x or weight not 16-byte aligned) on
mma_sm80's kernel instead. So the automatic choice for 16-bit inputs is wgmma_sm90a on sm_90 (when
compiled for 90a), mma_sm80 on other sm_80+ GPUs, and cuda_core for float32; a forced tier that
cannot take the dtype is refused.
"""

from __future__ import annotations

import torch

from fastradio.backends.checks.linear import check_linear

from ._common import (_C, _DTYPE_CODES, DEVICE_NAME, DEVICE_TYPE, _tier_arg, _tier_code, current_stream, device_guard,
                      register_op)

# --- linear ---------------------------------------------------------------------------------------

#: Activation codes of ``_C.linear_fwd`` (csrc/linear/linear.h, LinearActivation).
_ACTIVATION_CODES = {"none": 0, "gelu": 1}
#: The dtypes each tensor-core tier takes (cuda_core takes all three).
LINEAR_TIER_DTYPES: dict[str, tuple[torch.dtype, ...]] = {
    "mma_sm75": (torch.float16,),
    "mma_sm80": (torch.float16, torch.bfloat16),
    "wgmma_sm90a": (torch.float16, torch.bfloat16),
}
_MAX_DIM = 2**31 - 1  # N, M and K each (their products may be larger: 64-bit offsets)


def _check_linear(x, weight, bias, activation, residual) -> None:
    check_linear(x, weight, bias, activation, residual)
    fn = "linear"
    if x.device.type != DEVICE_TYPE:
        raise ValueError(f"{fn}: x must be on a {DEVICE_NAME} device, got {x.device}")
    for name, size in (("N", x.shape[0]), ("K", x.shape[1]), ("M", weight.shape[0])):
        if size > _MAX_DIM:
            raise ValueError(f"{fn}: {name} must be < 2**31, got {size}")


@torch.library.custom_op(register_op("linear", tier_dtypes=LINEAR_TIER_DTYPES), mutates_args=(), device_types=DEVICE_TYPE)
def _linear_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str,
               residual: torch.Tensor | None, tier: int) -> torch.Tensor:
    n, k = x.shape
    m = weight.shape[0]
    out = torch.empty((n, m), dtype=x.dtype, device=x.device)
    if n == 0:
        return out
    code = _tier_code("linear", x.device, tier, x.dtype)
    with device_guard(x.device):
        stream = current_stream(x.device)
        _C.linear_fwd(x.data_ptr(), weight.data_ptr(), 0 if bias is None else bias.data_ptr(),
                      0 if residual is None else residual.data_ptr(), out.data_ptr(), n, m, k,
                      _ACTIVATION_CODES[activation], _DTYPE_CODES[x.dtype], code, stream)
    return out


@_linear_op.register_fake
def _linear_fake(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str,
                 residual: torch.Tensor | None, tier: int) -> torch.Tensor:
    return x.new_empty((x.shape[0], weight.shape[0]))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str = "none",
           residual: torch.Tensor | None = None, *, tier: str | None = None) -> torch.Tensor:
    """act(x·Wᵀ + bias) + residual (ops.linear) → (N, M) in x's dtype.

    x (N, K), weight (M, K) as nn.Linear stores it (read in place), bias (M,) or None, residual
    (N, M) or None: contiguous, one dtype (float32, float16 or bfloat16), one CUDA device;
    activation "none" or "gelu" (exact erf). fp32 accumulation (IEEE fp32 products for float32, no
    TF32), the epilogue in fp32, one rounding. Same contract as
    ``fastradio.backends.reference.linear``. ``tier``: see the module and package docstrings.
    """
    _check_linear(x, weight, bias, activation, residual)
    return _linear_op(x, weight, bias, activation, residual, _tier_arg("linear", tier))
