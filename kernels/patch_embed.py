"""Patch embedding (C-RADIOv2 spec §3) as one GEMM with im2patch in the A-operand addressing.

Computes tokens[b, :P] = prefix and tokens[b, P + r*w + c] = patch(b, r, c) . W^T + pos[r*w + c]
for images x (B, 3, H, W), W (D, 768) with feature f = ch*256 + dy*16 + dx, pos (h*w, D) and
prefix (P, D): M = B*h*w rows, K = 768, N = D, fp32 accumulation, one rounding at the store.
Row m = (b, r, c) of A is read straight from the image (no im2col buffer: a K-slice of 16 is one
16-pixel run of one patch row), the position add is the epilogue, and every output row is written
at its final token position; the programs of the first M tile also copy the prefix rows.
Mirrors ``fastradio.backends.reference.patch_embed``; the CUDA twin will be ``csrc/patch_embed/``.
Archs: sm_80+ on GPU (Triton; tensor cores for fp16/bf16, IEEE fp32 FMA for fp32), and CPU tensors
under ``TRITON_INTERPRET=1`` (how CI runs it).
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from fastradio.kernels._common import is_interpreted
from fastradio.kernels._common import round_to_bf16 as _round_to_bf16

__all__ = ["patch_embed", "launch_config", "PATCH", "K", "DTYPES"]

PATCH = 16
K = 3 * PATCH * PATCH
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


_PATCH = tl.constexpr(PATCH)
_K = tl.constexpr(K)


# Batch and grid sizes change with every call and are not specialised; the image sizes are (all
# multiples of 16: one variant), which tells the compiler that every 16-pixel run is contiguous
# and aligned, so A loads are vectorised.
@triton.jit(do_not_specialize=["M", "hw", "w", "P", "BP"])
def _patch_embed_kernel(
    x_ptr,  # (B, 3, H, W) compute dtype, contiguous
    w_ptr,  # (D, 768) compute dtype, contiguous; column f = ch*256 + dy*16 + dx
    pos_ptr,  # (h*w, D) compute dtype, contiguous
    prefix_ptr,  # (P, D) compute dtype, contiguous
    out_ptr,  # (B, P + h*w, D) compute dtype, contiguous
    M,  # B * h * w: GEMM rows
    hw,  # h * w: patches per image
    w,  # patch-grid width
    P,  # prefix tokens per image
    BP,  # B * P: prefix rows to copy
    D,  # width (GEMM N)
    H_IMG,  # image height in pixels (multiple of 16)
    W_IMG,  # image width in pixels (multiple of 16)
    BLOCK_M: tl.constexpr,  # patches per program
    BLOCK_N: tl.constexpr,  # output columns per program
    BLOCK_K: tl.constexpr,  # features per step: a multiple of 16 dividing 256 (stays in one channel)
    SOFT_BF16: tl.constexpr,  # interpreter only: fp32 dot on bf16 inputs, software RNE store
):
    pid = tl.program_id(0)
    num_n = tl.cdiv(D, BLOCK_N)
    # N fastest: the programs in flight share one A tile (the image bytes come from DRAM once);
    # all of W (<= 2.4 MB in 16-bit) stays in L2.
    pid_m = pid // num_n
    pid_n = pid - pid_m * num_n

    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = rm < M
    n_ok = rn < D
    b = rm // hw
    t = rm - b * hw  # token index inside the image: r*w + c
    r = t // w
    c = t - r * w
    # im2patch: A[m, f] = x[b, ch, 16r + dy, 16c + dx] = x_ptr[row_off[m] + col_off[f]].
    # int64 image offsets: B*3*H*W passes 2**31 for large batches at high resolution.
    row_off = b.to(tl.int64) * 3 * H_IMG * W_IMG + (r * (_PATCH * W_IMG) + c * _PATCH)

    kk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, _K, BLOCK_K):
        f = k0 + kk
        col_off = (f // (_PATCH * _PATCH)) * (H_IMG * W_IMG) + ((f // _PATCH) % _PATCH) * W_IMG + f % _PATCH
        a = tl.load(x_ptr + row_off[:, None] + col_off[None, :], mask=m_ok[:, None], other=0.0)
        bt = tl.load(w_ptr + rn[None, :] * _K + f[:, None], mask=n_ok[None, :], other=0.0)  # W^T tile
        if SOFT_BF16:
            a = a.to(tl.float32)
            bt = bt.to(tl.float32)
        acc = tl.dot(a, bt, acc, input_precision="ieee")

    mask = m_ok[:, None] & n_ok[None, :]
    acc += tl.load(pos_ptr + t[:, None] * D + rn[None, :], mask=mask, other=0.0).to(tl.float32)
    out_row = b.to(tl.int64) * (P + hw) + P + t
    if SOFT_BF16:
        res = _round_to_bf16(acc)
    else:
        res = acc.to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + out_row[:, None] * D + rn[None, :], res, mask=mask)

    # Prefix tokens: the first row of programs copies prefix[:, this column block] into every image.
    if pid_m == 0:
        for j0 in range(0, BP, BLOCK_M):
            j = j0 + tl.arange(0, BLOCK_M)
            img = j // P
            p = j - img * P
            pmask = (j < BP)[:, None] & n_ok[None, :]
            val = tl.load(prefix_ptr + p[:, None] * D + rn[None, :], mask=pmask, other=0.0)
            dst = img.to(tl.int64) * (P + hw) + p
            tl.store(out_ptr + dst[:, None] * D + rn[None, :], val.to(out_ptr.dtype.element_ty), mask=pmask)


# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) by (arch major, dtype class). Unmeasured
# starting points, fixed (no autotuning) so results are deterministic. 16-bit: tensor-core tiles
# of 128 x 128 with 8 warps and 3 cp.async stages. sm_90 (wgmma): 128 registers a thread and
# 96 KB of shared memory, two programs per SM. sm_80 (mma.sync): 178 registers and 64 KB, one
# program per SM; BLOCK_K = 32 would fit two at 128 registers but spills in fp16 (ptxas, Triton
# 3.7). fp32: IEEE FMA tiles (no TF32), smaller so the accumulator stays in registers.
_CONFIGS = {
    (8, "16bit"): (128, 128, 64, 8, 3),
    (9, "16bit"): (128, 128, 64, 8, 3),
    (8, "fp32"): (64, 64, 32, 4, 2),
    (9, "fp32"): (64, 64, 32, 4, 2),
}


def launch_config(m: int, d: int, dtype: torch.dtype,
                  capability: tuple[int, int] | None = None) -> dict[str, int]:
    """Deterministic tiles for an (M, 768) x (768, D) GEMM in ``dtype`` on a GPU of ``capability``
    (None: the interpreter, where fewer, bigger programs run faster; the addressing is the same)."""
    if capability is None:
        block_n = max(16, min(128, triton.next_power_of_2(d)))
        block_m = max(16, min(64, triton.next_power_of_2(max(m, 1))))
        return {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": 256, "num_warps": 4, "num_stages": 1}
    major = min(max(capability[0], 8), 9)
    bm, bn, bk, warps, stages = _CONFIGS[(major, "fp32" if dtype == torch.float32 else "16bit")]
    bn = max(16, min(bn, triton.next_power_of_2(d)))  # narrow test widths: fewer masked lanes
    return {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "num_warps": warps, "num_stages": stages}


def patch_embed(x: torch.Tensor, weight: torch.Tensor, pos: torch.Tensor, prefix: torch.Tensor,
                out: torch.Tensor | None = None, config: dict[str, int] | None = None) -> torch.Tensor:
    """Tokens (B, P + h*w, D) in x's dtype of images x (B, 3, H, W), H and W multiples of 16.

    weight (D, 768), pos (h*w, D), prefix (P, D), all contiguous and in x's dtype. Writes into
    ``out`` when given; ``config`` overrides the tiles (tests run the GPU tiles in the
    interpreter). Checks only what protects memory; argument validation with full messages is the
    backend's job (``fastradio.backends.triton``).
    """
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] % PATCH or x.shape[3] % PATCH:
        raise ValueError(f"x must be (B, 3, H, W) with H, W multiples of {PATCH}, got {tuple(x.shape)}")
    bsz, _, hh, ww = x.shape
    h, w = hh // PATCH, ww // PATCH
    d = weight.shape[0]
    n_prefix = prefix.shape[0]
    for name, t, shape in (("x", x, tuple(x.shape)), ("weight", weight, (d, K)), ("pos", pos, (h * w, d)),
                           ("prefix", prefix, (n_prefix, d))):
        if tuple(t.shape) != shape or not t.is_contiguous() or t.device != x.device or t.dtype != x.dtype:
            raise ValueError(f"{name} must be a contiguous {shape} {x.dtype} tensor on {x.device}, got "
                             f"{tuple(t.shape)} {t.dtype} on {t.device} contiguous={t.is_contiguous()}")
    if x.dtype not in DTYPES:
        raise ValueError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    shape = (bsz, n_prefix + h * w, d)
    if out is None:
        out = torch.empty(shape, dtype=x.dtype, device=x.device)
    elif tuple(out.shape) != shape or out.dtype != x.dtype or not out.is_contiguous() or out.device != x.device:
        raise ValueError(f"out must be a contiguous {shape} {x.dtype} tensor on {x.device}, got "
                         f"{tuple(out.shape)} {out.dtype} on {out.device} contiguous={out.is_contiguous()}")
    m = bsz * h * w
    if x.device.type == "meta" or m == 0 or d == 0:
        return out  # shape-only call, or nothing to compute
    interpreted = is_interpreted()
    cap = None if interpreted or x.device.type != "cuda" else torch.cuda.get_device_capability(x.device)
    cfg = dict(config) if config is not None else launch_config(m, d, x.dtype, cap)
    if PATCH * PATCH % cfg["BLOCK_K"] or cfg["BLOCK_K"] % PATCH:
        raise ValueError(f"BLOCK_K must be a multiple of {PATCH} dividing {PATCH * PATCH}, got {cfg['BLOCK_K']}")
    grid = (triton.cdiv(m, cfg["BLOCK_M"]) * triton.cdiv(d, cfg["BLOCK_N"]),)
    # wrap_triton makes the launch visible to torch.compile (triton_op); the interpreter's kernel
    # is launched directly (there is nothing to trace).
    kernel = _patch_embed_kernel if interpreted else wrap_triton(_patch_embed_kernel)
    on_device = torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()
    with on_device:
        kernel[grid](
            x, weight, pos, prefix, out, m, h * w, w, n_prefix, bsz * n_prefix, d, hh, ww,
            BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"],
            SOFT_BF16=interpreted and x.dtype == torch.bfloat16,
            num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
        )
    return out
