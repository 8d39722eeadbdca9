"""attention in the CUDA backend: tensor checks, the custom op and its fake (package docstring).

Tiers (csrc/attention/): ``cuda_core`` takes float32, float16 and bfloat16 (fp32 math),
``mma_sm75`` float16, ``mma_sm80`` float16 and bfloat16, ``wgmma_sm90a`` (sm_90a only: H100/H200)
float16 and bfloat16; the automatic choice is the most specialised compiled tier that runs on the
device and takes the dtype (wgmma_sm90a on sm_90 when compiled for 90a), so float32 always runs on
cuda_core (the exactness mode).
"""

from __future__ import annotations

import torch

from fastradio.backends.checks import attention as _checks

from ._common import (_C, _DTYPE_CODES, DEVICE_NAME, DEVICE_TYPE, _tier_arg, _tier_code, current_stream, device_guard,
                      register_op)

# --- attention ------------------------------------------------------------------------------------

#: Head dims the kernels are built for (C-RADIOv2-B/L/g: 64, -H: 80).
ATTENTION_HEAD_DIMS: tuple[int, ...] = _checks.HEAD_DIMS

#: Tiers that take only some dtypes; cuda_core takes all three.
ATTENTION_TIER_DTYPES: dict[str, tuple[torch.dtype, ...]] = {
    "mma_sm75": (torch.float16,),
    "mma_sm80": (torch.float16, torch.bfloat16),
    "wgmma_sm90a": (torch.float16, torch.bfloat16),
}


def _refusals(device: torch.device, dtype: torch.dtype, head_dim=None, **_facts) -> list[str]:
    if head_dim is not None and head_dim not in ATTENTION_HEAD_DIMS:
        return [f"head_dim {head_dim} is not {_checks.HEAD_DIMS_TEXT} (the head dims the CUDA attention kernels "
                "are built for: C-RADIOv2-B/L/g use 64, -H uses 80)"]
    return []


def _check_attention(qkv, cu_seqlens, max_seqlen, num_heads, head_dim) -> None:
    _checks.check_structure(qkv, cu_seqlens, max_seqlen, num_heads, head_dim)
    if qkv.device.type != DEVICE_TYPE:
        raise ValueError(f"attention: qkv must be on a {DEVICE_NAME} device, got {qkv.device}")


@torch.library.custom_op(register_op("attention", _refusals, ATTENTION_TIER_DTYPES), mutates_args=(),
                         device_types=DEVICE_TYPE)
def _attention_op(qkv: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, num_heads: int, head_dim: int,
                  tier: int) -> torch.Tensor:
    n = qkv.shape[0]
    out = qkv.new_empty((n, num_heads * head_dim))
    if n == 0:
        return out
    # Inside a compiled graph this is the first eager point: check the values there too (cached).
    _checks.check_values(qkv, cu_seqlens, max_seqlen)
    code = _tier_code("attention", qkv.device, tier, qkv.dtype)
    if qkv.data_ptr() % 16:  # a view at an odd offset: the kernels read 16-byte pieces
        qkv = qkv.clone()
    with device_guard(qkv.device):
        stream = current_stream(qkv.device)
        _C.attention_fwd(qkv.data_ptr(), cu_seqlens.data_ptr(), out.data_ptr(), n, cu_seqlens.shape[0] - 1,
                         max_seqlen, num_heads, head_dim, _DTYPE_CODES[qkv.dtype], code, stream)
    return out


@_attention_op.register_fake
def _attention_fake(qkv: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, num_heads: int, head_dim: int,
                    tier: int) -> torch.Tensor:
    _checks.check_structure(qkv, cu_seqlens, max_seqlen, num_heads, head_dim)
    return qkv.new_empty((qkv.shape[0], num_heads * head_dim))


def attention(qkv: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, num_heads: int, head_dim: int, *,
              tier: str | None = None) -> torch.Tensor:
    """Variable-length non-causal attention (ops.attention): qkv (N, 3*H*Dh) → (N, H*Dh) in qkv's dtype.

    qkv (float32, float16 or bfloat16, contiguous, CUDA) holds the q, k and v thirds of each packed
    token, heads contiguous inside each third; cu_seqlens (S+1,) int32 on qkv's device delimits the
    images (0 = cu[0] <= ... <= cu[S] = N); max_seqlen >= every image's length; head_dim 64, 72 or 80;
    scale head_dim^-0.5. Each token attends to its own image only. Same contract as
    ``fastradio.backends.reference.attention``. ``tier``: see the module docstrings.
    """
    _check_attention(qkv, cu_seqlens, max_seqlen, num_heads, head_dim)
    code = _tier_arg("attention", tier)
    _checks.check_values(qkv, cu_seqlens, max_seqlen)
    return _attention_op(qkv, cu_seqlens, max_seqlen, num_heads, head_dim, code)
