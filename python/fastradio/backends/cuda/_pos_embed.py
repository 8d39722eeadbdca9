"""pos_embed in the CUDA backend: tensor checks, the custom op and its fake (package docstring)."""

from __future__ import annotations

import torch

from ._common import (_C, _DTYPE_CODES, DEVICE_TYPE, _expect_out_dtype, _expect_size, _expect_tensor, _tier_arg,
                      _tier_code, current_stream, device_guard, register_op)

# --- pos_embed ------------------------------------------------------------------------------------

def _check_pos_embed(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype) -> None:
    fn = "pos_embed"
    _expect_tensor(fn, "table", table, dtype=torch.float32, ndim=3)
    g, g2, d = table.shape
    if g != g2 or g < 1 or d < 1:
        raise ValueError(f"{fn}: table must have shape (G, G, D) with G, D >= 1, got {tuple(table.shape)}")
    _expect_size(fn, "h", h)
    _expect_size(fn, "w", w)
    _expect_out_dtype(fn, out_dtype)


@torch.library.custom_op(register_op("pos_embed"), mutates_args=(), device_types=DEVICE_TYPE)
def _pos_embed_op(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype, align_corners: bool,
                  tier: int) -> torch.Tensor:
    g, _, d = table.shape
    out = torch.empty((h * w, d), dtype=out_dtype, device=table.device)
    code = _tier_code("pos_embed", table.device, tier)
    with device_guard(table.device):
        stream = current_stream(table.device)
        _C.pos_embed_fwd(table.data_ptr(), out.data_ptr(), g, d, h, w, _DTYPE_CODES[out_dtype], code, stream,
                         align_corners=align_corners)
    return out


@_pos_embed_op.register_fake
def _pos_embed_fake(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype, align_corners: bool,
                    tier: int) -> torch.Tensor:
    return table.new_empty((h * w, table.shape[2]), dtype=out_dtype)


def pos_embed(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype, align_corners: bool = True, *,
              tier: str | None = None) -> torch.Tensor:
    """Resized position table: table (G, G, D) fp32 CUDA → (h*w, D) ``out_dtype`` (spec §3).

    Bilinear resize to (m, m), m = max(h, w), with ``align_corners`` (True: C-RADIOv2; False:
    C-RADIOv4, radio-family spec §3), fp32 math, top-left h x w window, cast to ``out_dtype``
    (float32, float16 or bfloat16). Same contract as ``fastradio.backends.reference.pos_embed``.
    ``tier``: see the module docstring.
    """
    _check_pos_embed(table, h, w, out_dtype)
    if not isinstance(align_corners, bool):
        raise TypeError(f"pos_embed: align_corners must be a bool, got {type(align_corners).__name__}")
    return _pos_embed_op(table, h, w, out_dtype, align_corners, _tier_arg("pos_embed", tier))
