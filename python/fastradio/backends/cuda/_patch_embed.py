"""patch_embed in the CUDA backend: tensor checks, the custom op and its fake (package docstring)."""

from __future__ import annotations

import torch

from fastradio.backends.checks.patch_embed import check_patch_embed, output_shape

from ._common import (_C, _DTYPE_CODES, DEVICE_NAME, DEVICE_TYPE, _tier_arg, _tier_code, current_stream, device_guard,
                      register_op)

# --- patch_embed ----------------------------------------------------------------------------------

#: Tiers that take only some compute dtypes: tensor cores have no IEEE fp32 mode (TF32 would
#: break the fp32 accuracy rule), so float32 always runs on cuda_core; Turing's have no bf16.
PATCH_EMBED_TIER_DTYPES: dict[str, tuple[torch.dtype, ...]] = {"mma_sm80": (torch.float16, torch.bfloat16),
                                                               "mma_sm75": (torch.float16,)}


def _check_patch_embed(x, weight, pos, prefix) -> None:
    check_patch_embed(x, weight, pos, prefix)  # shared with the triton backend
    if x.device.type != DEVICE_TYPE:
        raise ValueError(f"patch_embed: x must be on a {DEVICE_NAME} device, got {x.device}")


@torch.library.custom_op(register_op("patch_embed", tier_dtypes=PATCH_EMBED_TIER_DTYPES), mutates_args=(),
                         device_types=DEVICE_TYPE)
def _patch_embed_op(x: torch.Tensor, weight: torch.Tensor, pos: torch.Tensor, prefix: torch.Tensor,
                    tier: int) -> torch.Tensor:
    b, _, hh, ww = x.shape
    out = torch.empty(output_shape(x, weight, prefix), dtype=x.dtype, device=x.device)
    if b == 0:
        return out
    d, p = weight.shape[0], prefix.shape[0]
    code = _tier_code("patch_embed", x.device, tier, x.dtype)
    with device_guard(x.device):
        stream = current_stream(x.device)
        _C.patch_embed_fwd(x.data_ptr(), weight.data_ptr(), pos.data_ptr(), prefix.data_ptr() if p else 0,
                           out.data_ptr(), b, hh, ww, d, p, _DTYPE_CODES[x.dtype], code, stream)
    return out


@_patch_embed_op.register_fake
def _patch_embed_fake(x: torch.Tensor, weight: torch.Tensor, pos: torch.Tensor, prefix: torch.Tensor,
                      tier: int) -> torch.Tensor:
    return x.new_empty(output_shape(x, weight, prefix))


def patch_embed(x: torch.Tensor, weight: torch.Tensor, pos: torch.Tensor, prefix: torch.Tensor, *,
                tier: str | None = None) -> torch.Tensor:
    """Tokens (B, P + h*w, D) in x's dtype of images x (B, 3, H, W) (ops.patch_embed, spec §3).

    x contiguous on a CUDA device, H and W multiples of 16; weight (D, 768) with feature
    ch*256 + dy*16 + dx, pos (h*w, D), prefix (P, D), all in x's (the compute) dtype: float32,
    float16 or bfloat16. fp32 accumulation (IEEE in float32), pos added in fp32, one rounding.
    Same contract as ``fastradio.backends.reference.patch_embed``. Strided weight/pos/prefix are
    copied first (small); a strided x is refused rather than silently copied. ``tier``: see the
    package docstring (``mma_sm80`` takes float16 and bfloat16, ``mma_sm75`` float16).
    """
    weight, pos, prefix = (t.contiguous() if isinstance(t, torch.Tensor) else t for t in (weight, pos, prefix))
    _check_patch_embed(x, weight, pos, prefix)
    return _patch_embed_op(x, weight, pos, prefix, _tier_arg("patch_embed", tier))
