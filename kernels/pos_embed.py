"""Bilinear position-embedding resize (C-RADIOv2 spec §3) as one memory-bound Triton kernel.

Computes out[r*w + c, :] = bilinear sample of the (G, G, D) fp32 table resized to (m, m),
m = max(h, w), at output pixel (r, c) of the top-left h x w window; all math in fp32, one rounding
to the output dtype at the end. Per axis, align_corners=True (C-RADIOv2): scale = fp32(G-1) /
fp32(m-1) (0 when m == 1), src = fp32(scale * i); align_corners=False (C-RADIOv4, radio-family
spec §3): scale = fp32(G) / fp32(m), src = max(0, fma(i + 0.5, scale, -0.5)); then
i0 = min(floor(src), G - 1), i1 = min(i0 + 1, G - 1), lam = min(src - i0, 1).
Mirrors ``fastradio.backends.reference.pos_embed``; the CUDA twin is ``csrc/pos_embed/``.
Archs: sm_80+ on GPU (Triton), and CPU tensors under ``TRITON_INTERPRET=1`` (how CI runs it).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from fastradio.kernels._common import is_interpreted
from fastradio.kernels._common import round_to_bf16 as _round_to_bf16

__all__ = ["pos_embed", "launch_config", "is_interpreted", "OUT_DTYPES"]

OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# Only D's divisibility matters for vector loads; not specialising the other sizes keeps the
# number of compiled variants (and the first-call latency per new resolution) small.
@triton.jit(do_not_specialize=["n_rows", "w", "G"])
def _pos_embed_kernel(
    table_ptr,  # (G, G, D) fp32, contiguous
    out_ptr,  # (n_rows, D) = (h*w, D), fp32 | fp16 | bf16, contiguous
    n_rows,  # h * w
    w,  # width of the patch grid (columns of the output window)
    G,  # side of the stored grid
    D,  # embedding width
    scale,  # fp32: (G-1)/(m-1) (0 when m == 1) with ALIGN_CORNERS, else G/m
    ALIGN_CORNERS: tl.constexpr,
    BLOCK_N: tl.constexpr,  # output rows per program
    BLOCK_D: tl.constexpr,  # embedding columns per program
    SOFT_BF16: tl.constexpr,  # round fp32 -> bf16 in software (interpreter only)
):
    pid_n = tl.program_id(0)
    pid_d = tl.program_id(1)

    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    row_ok = rows < n_rows
    col_ok = cols < D

    r = rows // w
    c = rows - r * w
    if ALIGN_CORNERS:
        # src must be the *rounded* fp32 product (spec §3); fma(.., 0.0) rounds it once and, unlike
        # a plain multiply, cannot be contracted with the subtraction below into an unrounded fma.
        sy = tl.fma(scale, r.to(tl.float32), 0.0)
        sx = tl.fma(scale, c.to(tl.float32), 0.0)
    else:
        # (i + 0.5)·scale − 0.5 rounded once (radio-family spec §3: exactly torch's weights). In
        # fp64 both steps are exact (a 24-bit scale times an index of < 30 bits, then -0.5), so one
        # cast to fp32 is the fma's single rounding, under the interpreter too (whose tl.fma rounds
        # twice). Per output row and column, not per element: the fp64 cost is nil.
        sy = tl.maximum(((r.to(tl.float64) + 0.5) * scale - 0.5).to(tl.float32), 0.0)
        sx = tl.maximum(((c.to(tl.float64) + 0.5) * scale - 0.5).to(tl.float32), 0.0)
    y0 = tl.minimum(sy.to(tl.int32), G - 1)  # src >= 0, so truncation is floor
    x0 = tl.minimum(sx.to(tl.int32), G - 1)
    y1 = tl.minimum(y0 + 1, G - 1)
    x1 = tl.minimum(x0 + 1, G - 1)
    ly1 = tl.minimum(sy - y0.to(tl.float32), 1.0)  # past the last row (m > G, no align_corners)
    lx1 = tl.minimum(sx - x0.to(tl.float32), 1.0)
    ly0 = 1.0 - ly1
    lx0 = 1.0 - lx1

    # Table offsets stay in int32 (G*G*D < 2**31 is checked by the launcher); output offsets
    # are int64 because h*w*D can pass 2**31 at very large resolutions.
    # Taps with zero weight are not read (masks are per row, so loads stay vectorised along D).
    d = cols[None, :]
    mask = row_ok[:, None] & col_ok[None, :]
    need_x1 = (lx1 != 0.0)[:, None]
    need_y1 = (ly1 != 0.0)[:, None]
    t00 = tl.load(table_ptr + ((y0 * G + x0) * D)[:, None] + d, mask=mask, other=0.0)
    t01 = tl.load(table_ptr + ((y0 * G + x1) * D)[:, None] + d, mask=mask & need_x1, other=0.0)
    t10 = tl.load(table_ptr + ((y1 * G + x0) * D)[:, None] + d, mask=mask & need_y1, other=0.0)
    t11 = tl.load(table_ptr + ((y1 * G + x1) * D)[:, None] + d, mask=mask & need_x1 & need_y1, other=0.0)

    # torch's association: (1-ly)*((1-lx)*t00 + lx*t01) + ly*((1-lx)*t10 + lx*t11). A zero weight
    # drops its taps (bit-identical for finite tables), so (h, w) = (G, G) is an exact copy even
    # of inf/NaN entries, as in the reference and the CUDA kernel.
    lx0 = lx0[:, None]
    lx1 = lx1[:, None]
    top = tl.where(lx1 == 0.0, t00, lx0 * t00 + lx1 * t01)
    bot = tl.where(lx1 == 0.0, t10, lx0 * t10 + lx1 * t11)
    val = tl.where(ly1[:, None] == 0.0, top, ly0[:, None] * top + ly1[:, None] * bot)

    if SOFT_BF16:
        res = _round_to_bf16(val)
    else:
        res = val.to(out_ptr.dtype.element_ty)
    out_offs = rows.to(tl.int64)[:, None] * D + d
    tl.store(out_ptr + out_offs, res, mask=mask)


def launch_config(n_rows: int, d: int) -> dict[str, int]:
    """Deterministic tile sizes: ~4K elements per program, 128 columns (every C-RADIOv2 width is
    a multiple; a warp streams one row as 16-byte vectors) by 32 consecutive output rows, which
    share most of their source taps when up-sampling, so repeats hit L1. Grid axis 0 (fastest)
    walks rows, so the table slice of one column block (128 x 128 x 128 x 4 B = 8 MiB) stays in L2."""
    block_d = min(128, max(16, triton.next_power_of_2(d)))
    block_n = max(1, min(256, 4096 // block_d, triton.next_power_of_2(n_rows)))
    return {"BLOCK_N": block_n, "BLOCK_D": block_d, "num_warps": 4}


def _fp32_scale(g: int, m: int, align_corners: bool) -> float:
    # fp64 division of two small ints, rounded once to fp32, equals the fp32 division exactly.
    if not align_corners:
        return float(np.float32(g / m))
    return 0.0 if m == 1 else float(np.float32((g - 1) / (m - 1)))


def pos_embed(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype, align_corners: bool = True,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """Resized position table: table (G, G, D) fp32 contiguous → (h*w, D) ``out_dtype``, with
    ``align_corners`` (True: C-RADIOv2; False: C-RADIOv4).

    Writes into ``out`` ((h*w, D), ``out_dtype``, contiguous, on table's device) when given.
    Checks only what protects memory; argument validation with full messages is the backend's
    job (``fastradio.backends.triton``).
    """
    g, g2, d = table.shape
    if g != g2 or table.dtype != torch.float32 or not table.is_contiguous():
        raise ValueError(f"table must be a contiguous (G, G, D) float32 tensor, got "
                         f"{tuple(table.shape)} {table.dtype} contiguous={table.is_contiguous()}")
    if out_dtype not in OUT_DTYPES:
        raise ValueError(f"out_dtype must be float32, float16 or bfloat16, got {out_dtype}")
    if g * g * d >= 2**31:
        raise ValueError(f"table (G, G, D) = ({g}, {g}, {d}) is too large for int32 offsets")
    n_rows = h * w
    if out is None:
        out = torch.empty((n_rows, d), dtype=out_dtype, device=table.device)
    elif (tuple(out.shape) != (n_rows, d) or out.dtype != out_dtype or not out.is_contiguous()
          or out.device != table.device):
        raise ValueError(f"out must be a contiguous ({n_rows}, {d}) {out_dtype} tensor on {table.device}, "
                         f"got {tuple(out.shape)} {out.dtype} on {out.device}")
    if table.device.type == "meta":
        return out  # shape-only call: nothing to compute
    interpreted = is_interpreted()
    cfg = launch_config(n_rows, d)
    grid = (triton.cdiv(n_rows, cfg["BLOCK_N"]), triton.cdiv(d, cfg["BLOCK_D"]))
    # wrap_triton makes the launch visible to torch.compile (triton_op); the interpreter's kernel
    # is launched directly (older torch refuses to wrap it, and there is nothing to trace).
    kernel = _pos_embed_kernel if interpreted else wrap_triton(_pos_embed_kernel)
    # Triton launches on the current device and its current stream: make that the table's.
    on_device = torch.cuda.device(table.device) if table.device.type == "cuda" else contextlib.nullcontext()
    with on_device:
        kernel[grid](
            table, out, n_rows, w, g, d, _fp32_scale(g, max(h, w), align_corners),
            ALIGN_CORNERS=bool(align_corners), BLOCK_N=cfg["BLOCK_N"], BLOCK_D=cfg["BLOCK_D"],
            SOFT_BF16=interpreted and out_dtype == torch.bfloat16,
            num_warps=cfg["num_warps"],
        )
    return out
