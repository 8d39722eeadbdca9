"""Flash-style variable-length attention (DESIGN.md §5) as one Triton kernel.

Computes, for every image s of a packed batch (rows [cu[s], cu[s+1]) of ``qkv``) and every head h,
out[i, h*Dh:(h+1)*Dh] = softmax(q_i · Kᵀ · Dh^-0.5) · V over the keys of image s only (non-causal),
where q, k and v are the three thirds of each qkv row and heads are contiguous Dh-wide blocks
inside each third. The output (N, H*Dh) is row-major with heads contiguous: the layout the proj
GEMM reads. Mirrors ``fastradio.backends.reference.attention``; the CUDA twin will be
``csrc/attention/``. Archs: sm_80+ on GPU (Triton), and CPU tensors under ``TRITON_INTERPRET=1``.

Algorithm (FlashAttention-2 forward, public knowledge, written here from scratch): one program
owns BLOCK_M query rows of one (image, head); its Q tile stays on chip while it streams the
image's K/V in BLOCK_N-row tiles and keeps an online softmax per query row (running max m, running
sum l, fp32 accumulator acc), so no T x T matrix ever exists in memory:

    s = q·kᵀ (fp32 accumulate);  m' = max(m, rowmax(s));  p = exp2((s - m')·c)
    l = l·exp2((m - m')·c) + rowsum(p);  acc = acc·exp2((m - m')·c) + p·v;  out = acc / l

with c = Dh^-0.5 · log2(e): the softmax scale and exp -> exp2 are folded into one constant. The
max is tracked in raw score units (as in csrc/attention/attention.h), not pre-scaled by c: for
a row's top key s - m' is exactly 0, so its p is exactly 1 (``exp2(s·c - m')`` as one FMA against
a max rounded as fl(s·c) would give exp2 of that rounding error, 1 ± a few ulp), and an image of
one token returns v exactly. p is rounded to the input dtype before p·v (as every flash kernel
does; the fp32 path keeps p in fp32).

Isolation between images (a NaN in one image never reaches another): key/value rows are only ever
read inside the image's own row range. Full K/V tiles are read without masks; the last, partial
tile of an image is read with a row mask (masked rows load 0, never another image's rows) and its
scores for rows past the image are -inf, so they get p = 0 against v = 0. Every query row that is
stored has at least one valid key, so m is finite after the first tile and l >= 1: no 0/0, no NaN
from padding. Query rows past the image are loaded as 0 and never stored.

Head dim 80 is not padded: the head is split into a 64-wide and a 16-wide column block
(D0 + D1 = HEAD_DIM, both powers of two, D1 = 0 for head dim 64). Head dim 72 (C-RADIOv4-SO400M)
takes the same 64 + 16 blocks with columns 72-79 masked (never loaded, zero in registers, never
stored): tl.dot needs K and N >= 16, so an 8-wide block cannot be a dot operand; against a native
72 this spends 8/80 of the MMA work on zeros (a 96-wide tile would spend 24/96). The scores are
dot(q0, k0ᵀ) + dot(q1, k1ᵀ) (the second dot accumulates into the first) and there are two
accumulators, acc0 (BLOCK_M, 64) and acc1 (BLOCK_M, 16). Against a masked 128-wide tile this
does 80/128 of the tensor-core work in both GEMMs, keeps 80 instead of 128 fp32 accumulator
columns in registers (what decides the warps per tile), and loads only real columns; the 16-wide
block costs one extra k-step (QKᵀ) and two n8 MMA columns (PV), and its 32-byte row pieces are
sector-aligned (row stride 3*H*80 elements). Memory holds exactly Dh columns per head.

Schedules (a 1-D grid; both visit (image, head) tiles consecutively, so one image-head's K/V is
read from HBM about once and then hit in L2 by its other query tiles):
- dense: programs per head = S * cdiv(max_seqlen, BLOCK_M); program -> (image, query tile)
  directly; tiles past an image's end exit at once. Exact for uniform batches.
- packed: programs per head = N // BLOCK_M + S, however long the longest image is; image s owns
  the tile ids [cu[s] // BLOCK_M + s, cu[s+1] // BLOCK_M + s + 1), at least cdiv(len, BLOCK_M)
  of them, and a program finds its image by a binary search over cu_seqlens (ceil(log2 S) scalar
  loads). At most one wasted program per image and head, even when max_seqlen is far above most
  lengths (one 4k-token image among a hundred 200-token ones).
The launcher picks the schedule with fewer programs (dense on ties: no search), unless told.

All segment bounds are clamped to [0, N] in the kernel, so even an unchecked, malformed
cu_seqlens cannot make it read or write outside qkv and out (row offsets are 64-bit).

Numerics by dtype: fp16/bf16 use tensor-core dots with fp32 accumulation, fp32 softmax state and
one rounding of the output. fp32 runs both dots as exact fp32 FMAs (``input_precision="ieee"``: no
TF32, which would miss DESIGN §7's 1e-5). Under the interpreter (Triton 3.7), whose bf16 tl.dot
and fp32 -> bf16 cast are wrong, bf16 is emulated (EMULATE_BF16): bf16 loads are widened to fp32
(exact), the dots run in fp32 on those bf16-exact values (bf16 x bf16 products are exact in fp32,
as on a tensor core), and p and the output are rounded to bf16 to nearest-even on the bits.
"""

from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from fastradio.kernels._common import is_interpreted
from fastradio.kernels._common import round_to_bf16 as _round_to_bf16

__all__ = ["attention", "launch_config", "DTYPES", "HEAD_DIMS", "CONFIG_ENV", "AUTOTUNE_ENV"]

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
#: Head dims the kernel is built and tuned for (64: C-RADIOv2/v3-B/L/g; 72: C-RADIOv4-SO400M; 80: -H).
HEAD_DIMS = (64, 72, 80)
#: ``FASTRADIO_ATTENTION_CONFIG=BLOCK_M,BLOCK_N,num_warps,num_stages[,dense|packed]`` forces a config.
CONFIG_ENV = "FASTRADIO_ATTENTION_CONFIG"
#: ``FASTRADIO_ATTENTION_AUTOTUNE=1`` autotunes fp16/bf16 on GPU, keyed on (head dim, length bucket).
AUTOTUNE_ENV = "FASTRADIO_ATTENTION_AUTOTUNE"

_LOG2E = 1.4426950408889634
_SCHEDULES = {"auto": 0, "dense": 1, "packed": 2}


@triton.jit
def _attend_tile(
    acc0, acc1, m_i, l_i,  # running state: (BM, D0) fp32, (BM, D1) fp32, (BM,) fp32, (BM,) fp32
    q0, q1,  # (BM, D0), (BM, D1): the query tile (fp32 when EMULATE_BF16)
    k0_ptrs, k1_ptrs,  # (BN, D0), (BN, D1) pointers to this key tile
    v0_ptrs, v1_ptrs,  # (BN, D0), (BN, D1) pointers to this value tile
    kv_ok,  # (BN,) bool: key row inside the image (only read when MASKED)
    c1_ok,  # (D1,) bool: column of the second block inside the head (only read when TAIL)
    qk_scale,  # fp32: Dh^-0.5 * log2(e)
    D1: tl.constexpr,  # width of the second column block (0: none)
    TAIL: tl.constexpr,  # the second block reaches past the head (Dh 72): its upper columns masked
    MASKED: tl.constexpr,  # the image's last, partial key tile
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 inputs (no TF32), else the tensor-core default
    EMULATE_BF16: tl.constexpr,  # interpreter only: bf16 math emulated in fp32 (see the launcher)
):
    # Scores s = q·kᵀ, fp32, over both column blocks.
    if MASKED:
        k0 = tl.load(k0_ptrs, mask=kv_ok[:, None], other=0.0)
    else:
        k0 = tl.load(k0_ptrs)
    if EMULATE_BF16:
        k0 = k0.to(tl.float32)
    s = tl.dot(q0, tl.trans(k0), input_precision=DOT_PRECISION)
    if D1 > 0:
        if MASKED and TAIL:
            k1 = tl.load(k1_ptrs, mask=kv_ok[:, None] & c1_ok[None, :], other=0.0)
        elif MASKED:
            k1 = tl.load(k1_ptrs, mask=kv_ok[:, None], other=0.0)
        elif TAIL:
            k1 = tl.load(k1_ptrs, mask=c1_ok[None, :], other=0.0)
        else:
            k1 = tl.load(k1_ptrs)
        if EMULATE_BF16:
            k1 = k1.to(tl.float32)
        s = tl.dot(q1, tl.trans(k1), s, input_precision=DOT_PRECISION)
    if MASKED:
        s = tl.where(kv_ok[None, :], s, float("-inf"))

    # Online softmax, max in raw score units, exponents in the log2 domain: p = exp2((s - m_new)·c)
    # is exactly 1 for the row's max. The first tile of an image always holds its key 0, so m_new
    # is finite from then on (for finite inputs) and alpha = exp2(-inf) = 0 on the first tile;
    # masked keys (s = -inf) get p = 0. A NaN score gives a NaN p whether or not the max
    # propagates it, so the row's output is NaN.
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.math.exp2((m_i - m_new) * qk_scale)
    p = tl.math.exp2((s - m_new[:, None]) * qk_scale)
    l_i = l_i * alpha + tl.sum(p, 1)

    if MASKED:
        v0 = tl.load(v0_ptrs, mask=kv_ok[:, None], other=0.0)
    else:
        v0 = tl.load(v0_ptrs)
    if EMULATE_BF16:
        # What the GPU does: p rounded (RNE) to bf16, bf16 x bf16 products exact in fp32.
        p_lo = _round_to_bf16(p).to(tl.float32)
        v0 = v0.to(tl.float32)
    else:
        p_lo = p.to(v0.dtype)
    acc0 = tl.dot(p_lo, v0, acc0 * alpha[:, None], input_precision=DOT_PRECISION)
    if D1 > 0:
        if MASKED and TAIL:
            v1 = tl.load(v1_ptrs, mask=kv_ok[:, None] & c1_ok[None, :], other=0.0)
        elif MASKED:
            v1 = tl.load(v1_ptrs, mask=kv_ok[:, None], other=0.0)
        elif TAIL:
            v1 = tl.load(v1_ptrs, mask=c1_ok[None, :], other=0.0)
        else:
            v1 = tl.load(v1_ptrs)
        if EMULATE_BF16:
            v1 = v1.to(tl.float32)
        acc1 = tl.dot(p_lo, v1, acc1 * alpha[:, None], input_precision=DOT_PRECISION)
    return acc0, acc1, m_new, l_i


# Sizes that change with every batch are not specialised (one compiled variant per config, not per
# batch); num_heads stays specialised: it fixes the row stride, whose divisibility gives vector loads.
@triton.jit(do_not_specialize=["n_rows", "num_seqs", "max_seqlen", "search_steps", "seq_bucket"])
def _attention_kernel(
    qkv_ptr,  # (N, 3*H*HEAD_DIM) fp32 | fp16 | bf16, contiguous: [q | k | v], heads contiguous in each
    cu_seqlens_ptr,  # (S+1,) int32: image s owns rows [cu[s], cu[s+1])
    out_ptr,  # (N, H*HEAD_DIM), qkv's dtype, contiguous
    n_rows,  # N
    num_seqs,  # S
    num_heads,  # H
    max_seqlen,  # >= every image's length (sizes the dense schedule only)
    search_steps,  # ceil(log2(S)): binary-search steps of the packed schedule
    qk_scale,  # fp32: HEAD_DIM^-0.5 * log2(e)
    seq_bucket,  # unused by the code: the autotuner's key (next power of two of max_seqlen, >= 64)
    HEAD_DIM: tl.constexpr,  # 64, 72 or 80
    D0: tl.constexpr,  # first column block: largest power of two <= HEAD_DIM
    D1: tl.constexpr,  # second column block: 0, or the power of two >= 16 covering HEAD_DIM - D0
    BLOCK_M: tl.constexpr,  # query rows per program
    BLOCK_N: tl.constexpr,  # key/value rows per inner step
    SCHEDULE: tl.constexpr,  # 0 auto (fewer programs), 1 dense, 2 packed
    DOT_PRECISION: tl.constexpr,  # "ieee" (fp32 inputs) or "tf32" (ignored for fp16/bf16)
    EMULATE_BF16: tl.constexpr,  # interpreter + bf16: math in fp32 on bf16-rounded values, RNE output
):
    # ---- which (image, head, query tile) this program owns ----
    m_tiles = tl.cdiv(max_seqlen, BLOCK_M)
    dense_per_head = num_seqs * m_tiles
    packed_per_head = n_rows // BLOCK_M + num_seqs
    if SCHEDULE == 1:
        use_packed = False
    elif SCHEDULE == 2:
        use_packed = True
    else:
        use_packed = packed_per_head < dense_per_head
    per_head = tl.where(use_packed, packed_per_head, dense_per_head)
    pid = tl.program_id(0)
    head = pid // per_head
    t = pid - head * per_head
    if use_packed:
        # Largest s in [0, S) with cu[s] // BLOCK_M + s <= t (non-decreasing in s).
        lo = t * 0
        hi = num_seqs - 1
        for _ in range(search_steps):
            mid = (lo + hi + 1) // 2
            first_tile = tl.load(cu_seqlens_ptr + mid) // BLOCK_M + mid
            go = first_tile <= t
            lo = tl.where(go, mid, lo)
            hi = tl.where(go, hi, mid - 1)
        seq = lo
        m_tile = t - (tl.load(cu_seqlens_ptr + seq) // BLOCK_M + seq)
    else:
        seq = t // m_tiles
        m_tile = t - seq * m_tiles

    # Clamped to [0, N]: a malformed cu_seqlens cannot send a program outside qkv / out.
    end = tl.minimum(tl.maximum(tl.load(cu_seqlens_ptr + seq + 1), 0), n_rows)
    start = tl.minimum(tl.maximum(tl.load(cu_seqlens_ptr + seq), 0), end)
    seqlen = end - start
    m_start = m_tile * BLOCK_M
    if (m_start >= seqlen) | (m_start < 0):  # past the image (or, malformed cu_seqlens, before it)
        return

    # ---- pointers: 64-bit row bases, small in-tile offsets ----
    stride_qkv = 3 * num_heads * HEAD_DIM
    stride_out = num_heads * HEAD_DIM
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    cols0 = tl.arange(0, D0)
    q_row0 = qkv_ptr + (start + m_start).to(tl.int64) * stride_qkv + head * HEAD_DIM
    k_row0 = qkv_ptr + start.to(tl.int64) * stride_qkv + (num_heads + head) * HEAD_DIM
    v_row0 = qkv_ptr + start.to(tl.int64) * stride_qkv + (2 * num_heads + head) * HEAD_DIM
    q_ok = (m_start + offs_m) < seqlen

    q0 = tl.load(q_row0 + offs_m[:, None] * stride_qkv + cols0[None, :], mask=q_ok[:, None], other=0.0)
    k0_ptrs = k_row0 + offs_n[:, None] * stride_qkv + cols0[None, :]
    v0_ptrs = v_row0 + offs_n[:, None] * stride_qkv + cols0[None, :]
    if EMULATE_BF16:
        q0 = q0.to(tl.float32)
    acc0 = tl.zeros((BLOCK_M, D0), dtype=tl.float32)
    TAIL: tl.constexpr = D0 + D1 > HEAD_DIM
    cols1 = D0 + tl.arange(0, D1 if D1 > 0 else 16)
    c1_ok = cols1 < HEAD_DIM
    if D1 > 0:
        q1_mask = q_ok[:, None] & c1_ok[None, :] if TAIL else q_ok[:, None]
        q1 = tl.load(q_row0 + offs_m[:, None] * stride_qkv + cols1[None, :], mask=q1_mask, other=0.0)
        k1_ptrs = k_row0 + offs_n[:, None] * stride_qkv + cols1[None, :]
        v1_ptrs = v_row0 + offs_n[:, None] * stride_qkv + cols1[None, :]
        if EMULATE_BF16:
            q1 = q1.to(tl.float32)
        acc1 = tl.zeros((BLOCK_M, D1), dtype=tl.float32)
    else:  # placeholders, never read (D1 == 0 is a constexpr branch inside _attend_tile)
        q1 = q0
        k1_ptrs = k0_ptrs
        v1_ptrs = v0_ptrs
        acc1 = acc0
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)

    # ---- full key tiles: no masks ----
    step = BLOCK_N * stride_qkv
    n_full = (seqlen // BLOCK_N) * BLOCK_N
    for _n in range(0, n_full, BLOCK_N):
        acc0, acc1, m_i, l_i = _attend_tile(
            acc0, acc1, m_i, l_i, q0, q1, k0_ptrs, k1_ptrs, v0_ptrs, v1_ptrs, offs_n < BLOCK_N, c1_ok, qk_scale,
            D1, TAIL, False, DOT_PRECISION, EMULATE_BF16)
        k0_ptrs += step
        v0_ptrs += step
        if D1 > 0:
            k1_ptrs += step
            v1_ptrs += step
    # ---- the last, partial key tile: rows past the image are neither read nor weighted ----
    if n_full < seqlen:
        acc0, acc1, m_i, l_i = _attend_tile(
            acc0, acc1, m_i, l_i, q0, q1, k0_ptrs, k1_ptrs, v0_ptrs, v1_ptrs, (n_full + offs_n) < seqlen,
            c1_ok, qk_scale, D1, TAIL, True, DOT_PRECISION, EMULATE_BF16)

    # ---- normalise and store (l >= 1: the row max contributes exp2(0)) ----
    inv_l = 1.0 / l_i
    o_row0 = out_ptr + (start + m_start).to(tl.int64) * stride_out + head * HEAD_DIM
    o0 = acc0 * inv_l[:, None]
    if EMULATE_BF16:
        o0 = _round_to_bf16(o0)
    tl.store(o_row0 + offs_m[:, None] * stride_out + cols0[None, :], o0.to(out_ptr.dtype.element_ty),
             mask=q_ok[:, None])
    if D1 > 0:
        o1 = acc1 * inv_l[:, None]
        if EMULATE_BF16:
            o1 = _round_to_bf16(o1)
        o1_mask = q_ok[:, None] & c1_ok[None, :] if TAIL else q_ok[:, None]
        tl.store(o_row0 + offs_m[:, None] * stride_out + cols1[None, :], o1.to(out_ptr.dtype.element_ty),
                 mask=o1_mask)


# ---------------------------------------------------------------------------------------------
# Launch configuration
# ---------------------------------------------------------------------------------------------

#: GPU configs (BLOCK_M, BLOCK_N, num_warps, num_stages) for fp16/bf16, by (arch family, head dim):
#: (long sequences, short/undersubscribed). Reasoned, and checked for registers with the bundled
#: ptxas (tests/test_op_attention.py compiles them for sm_80 and sm_90), not yet timed on a GPU.
#: The budget per thread is registers: acc (BM x Dh fp32) + s (BM x BN fp32) + p (BM x BN 16-bit)
#: over num_warps * 32 threads, plus the pipelined K/V tiles in shared memory.
#: - sm_90/sm_100 (wgmma on 64-row warpgroups, 228 KB shared memory): 8 warps = 2 warpgroups x 64
#:   query rows. Dh 64: BN 128 (172 regs, 112 KB for 3 stages of K+V and Q: 2 CTAs/SM);
#:   Dh 80: BN 64 (138 regs, 80 KB).
#: - sm_80/86/89 and anything else (mma.sync, 16 rows per warp; 99 KB shared memory on sm_86/89/120):
#:   BM 128 / BN 64 / 8 warps for both head dims (174 / 227 regs, 48 / 60 KB). 4 warps at Dh 64 (the
#:   classic A100 point) sits at 255 registers with a small spill in Triton, so 8 it is.
#: - short: max_seqlen <= 256 (224 px images) or fewer than 2 programs per SM at BM 128: BM 64,
#:   4 warps (120-236 regs, no spills), so small batches still fill the GPU.
_GPU_CONFIGS = {
    (9, 64): ((128, 128, 8, 3), (64, 64, 4, 3)),
    (9, 72): ((128, 64, 8, 3), (64, 64, 4, 3)),
    (9, 80): ((128, 64, 8, 3), (64, 64, 4, 3)),
    (8, 64): ((128, 64, 8, 3), (64, 64, 4, 3)),
    (8, 72): ((128, 64, 8, 3), (64, 64, 4, 3)),
    (8, 80): ((128, 64, 8, 3), (64, 64, 4, 3)),
}
#: fp32 on GPU: the dots run as exact fp32 FMAs ("ieee": no TF32, DESIGN §7's 1e-5 needs it). The
#: FMA dot holds whole K-rows of its operands per thread, so larger tiles spill; this is the largest
#: spill-free shape found for both head dims on sm_80 and sm_90 (228-255 regs). fp32 is the
#: exactness mode, not the fast one.
_GPU_FP32_CONFIG = (16, 64, 8, 2)
#: Under the interpreter: fewer, larger numpy ops are faster; tests pass their own ``config``.
_INTERPRETER_CONFIG = (32, 32, 4, 1)


def _column_blocks(head_dim: int) -> tuple[int, int]:
    """(D0, D1): the two column blocks a head is split into (module docstring). D1 is at least 16,
    the smallest K and N ``tl.dot`` takes (Triton 3.6 and 3.7 both refuse 8), so head dim 72 is
    64 + 16 with columns 72-79 masked."""
    d0 = 1 << (head_dim.bit_length() - 1)
    return d0, 0 if head_dim == d0 else max(16, triton.next_power_of_2(head_dim - d0))


def _as_config(t, schedule="auto") -> dict:
    bm, bn, w, s = t
    return {"BLOCK_M": bm, "BLOCK_N": bn, "num_warps": w, "num_stages": s, "schedule": schedule}


def _env_config() -> dict | None:
    raw = os.environ.get(CONFIG_ENV, "").strip()
    if not raw:
        return None
    parts = [p.strip() for p in raw.split(",")]
    try:
        sched = parts[4] if len(parts) == 5 else "auto"
        cfg = _as_config(tuple(int(p) for p in parts[:4]), sched)
        if len(parts) not in (4, 5):
            raise ValueError
    except ValueError:
        raise ValueError(f"{CONFIG_ENV} must be 'BLOCK_M,BLOCK_N,num_warps,num_stages[,auto|dense|packed]', "
                         f"got {raw!r}") from None
    return cfg


_SM_COUNTS: dict[int, int] = {}


def _sm_count(device: torch.device) -> int:
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SM_COUNTS:
        _SM_COUNTS[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SM_COUNTS[idx]


def launch_config(head_dim: int, dtype: torch.dtype, max_seqlen: int, num_seqs: int, num_heads: int,
                  capability: tuple[int, int] | None = None, sm_count: int | None = None) -> dict:
    """The deterministic config: ``{"BLOCK_M", "BLOCK_N", "num_warps", "num_stages", "schedule"}``.

    ``capability`` None means the interpreter. ``FASTRADIO_ATTENTION_CONFIG`` overrides it."""
    env = _env_config()
    if env is not None:
        return env
    if capability is None:
        return _as_config(_INTERPRETER_CONFIG)
    if dtype == torch.float32:
        return _as_config(_GPU_FP32_CONFIG)
    family = 9 if capability[0] in (9, 10) else 8  # 228 KB shared memory vs <= 164 KB
    long_cfg, short_cfg = _GPU_CONFIGS[(family, head_dim)]
    programs_at_bm = num_seqs * triton.cdiv(max_seqlen, long_cfg[0]) * num_heads
    short = max_seqlen <= 256 or (sm_count is not None and programs_at_bm < 2 * sm_count)
    return _as_config(short_cfg if short else long_cfg)


def _check_config(cfg: dict) -> dict:
    def pow2(v, lo, hi):
        return isinstance(v, int) and lo <= v <= hi and v & (v - 1) == 0

    ok = (isinstance(cfg, dict) and pow2(cfg.get("BLOCK_M"), 16, 256) and pow2(cfg.get("BLOCK_N"), 16, 256)
          and pow2(cfg.get("num_warps"), 1, 16) and isinstance(cfg.get("num_stages"), int)
          and cfg["num_stages"] >= 1 and cfg.get("schedule", "auto") in _SCHEDULES)
    if not ok:
        raise ValueError("config must be a dict with BLOCK_M and BLOCK_N (powers of two in [16, 256]), "
                         "num_warps (power of two <= 16), num_stages (>= 1) and optionally schedule "
                         f"('auto', 'dense' or 'packed'), got {cfg!r}")
    return {"schedule": "auto", **cfg}


def _programs_per_head(n_rows: int, num_seqs: int, max_seqlen: int, block_m: int, schedule: str) -> int:
    # Must agree with the kernel's own choice (SCHEDULE 0 picks the smaller; dense on ties).
    dense = num_seqs * triton.cdiv(max_seqlen, block_m)
    packed = n_rows // block_m + num_seqs
    if schedule == "dense":
        return dense
    if schedule == "packed":
        return packed
    return packed if packed < dense else dense


def _seq_bucket(max_seqlen: int) -> int:
    return max(64, triton.next_power_of_2(max_seqlen))


_AUTOTUNED = None


def _autotuned_kernel():
    """The kernel under ``triton.autotune`` (opt-in, GPU, fp16/bf16), keyed on (head dim, length
    bucket); the schedule stays 'auto'. Tune once outside CUDA-graph capture before capturing."""
    global _AUTOTUNED
    if _AUTOTUNED is None:
        configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
                   for bm, bn, w, s in ((128, 128, 8, 3), (128, 64, 8, 3), (128, 64, 4, 3), (128, 32, 4, 4),
                                        (64, 64, 4, 3), (64, 128, 4, 3), (64, 32, 4, 4))]
        _AUTOTUNED = triton.autotune(configs=configs, key=["HEAD_DIM", "seq_bucket"])(_attention_kernel)
    return _AUTOTUNED


def attention(qkv: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, num_heads: int, head_dim: int,
              out: torch.Tensor | None = None, config: dict | None = None) -> torch.Tensor:
    """Variable-length non-causal attention: qkv (N, 3*H*Dh) → (N, H*Dh) in qkv's dtype.

    ``cu_seqlens`` (S+1,) int32 delimits the images; ``max_seqlen`` must be >= every length (it
    sizes the dense schedule). Writes into ``out`` ((N, H*Dh), qkv's dtype, contiguous, same device)
    when given. ``config`` forces a launch config (see ``launch_config``); otherwise the
    environment's, the opt-in autotuner's, or the deterministic table's. Checks only what protects
    memory; argument validation with full messages is the backend's job (``fastradio.backends.triton``).
    """
    if qkv.dim() != 2 or qkv.dtype not in DTYPES or not qkv.is_contiguous():
        raise ValueError(f"qkv must be a contiguous 2-D float32/float16/bfloat16 tensor, got "
                         f"{tuple(qkv.shape)} {qkv.dtype} contiguous={qkv.is_contiguous()}")
    if head_dim not in HEAD_DIMS or num_heads < 1 or qkv.shape[1] != 3 * num_heads * head_dim:
        raise ValueError(f"qkv must have 3*num_heads*head_dim = {3 * num_heads * head_dim} columns with "
                         f"head_dim in {HEAD_DIMS} and num_heads >= 1, got shape {tuple(qkv.shape)}, "
                         f"num_heads={num_heads}, head_dim={head_dim}")
    if (cu_seqlens.dim() != 1 or cu_seqlens.dtype != torch.int32 or not cu_seqlens.is_contiguous()
            or cu_seqlens.numel() < 1 or cu_seqlens.device != qkv.device):
        raise ValueError(f"cu_seqlens must be a contiguous 1-D int32 tensor with >= 1 element on {qkv.device}, "
                         f"got {tuple(cu_seqlens.shape)} {cu_seqlens.dtype} on {cu_seqlens.device}")
    if max_seqlen < 1:
        raise ValueError(f"max_seqlen must be >= 1, got {max_seqlen}")
    n = qkv.shape[0]
    d = num_heads * head_dim
    if n >= 2**31:
        raise ValueError(f"qkv has {n} rows; row indices must fit in int32 (cu_seqlens is int32)")
    if out is None:
        out = torch.empty((n, d), dtype=qkv.dtype, device=qkv.device)
    elif (tuple(out.shape) != (n, d) or out.dtype != qkv.dtype or not out.is_contiguous()
          or out.device != qkv.device):
        raise ValueError(f"out must be a contiguous ({n}, {d}) {qkv.dtype} tensor on {qkv.device}, "
                         f"got {tuple(out.shape)} {out.dtype} on {out.device}")
    num_seqs = cu_seqlens.numel() - 1
    if qkv.device.type == "meta" or n == 0 or num_seqs == 0:
        return out  # shape-only call, or nothing to compute
    # No image is longer than N; max_seqlen only sizes the dense schedule. Clamping keeps the
    # kernel's int32 program arithmetic in range, and where even that could overflow (S x tiles of
    # max_seqlen >= 2**31 at the smallest tile) the packed schedule (N // BLOCK_M + S) is forced.
    max_seqlen = min(int(max_seqlen), n)
    force_packed = num_seqs * triton.cdiv(max_seqlen, 16) >= 2**31

    interpreted = is_interpreted()
    on_gpu = qkv.device.type == "cuda" and not interpreted
    d0, d1 = _column_blocks(head_dim)  # 64 -> (64, 0), 72 -> (64, 16) masked, 80 -> (64, 16)
    common = dict(HEAD_DIM=head_dim, D0=d0, D1=d1,
                  DOT_PRECISION="ieee" if qkv.dtype == torch.float32 else "tf32",
                  EMULATE_BF16=interpreted and qkv.dtype == torch.bfloat16)
    args = (qkv, cu_seqlens, out, n, num_seqs, num_heads, max_seqlen, max(0, (num_seqs - 1).bit_length()),
            head_dim ** -0.5 * _LOG2E, _seq_bucket(max_seqlen))
    autotune = (config is None and on_gpu and qkv.dtype != torch.float32
                and os.environ.get(AUTOTUNE_ENV, "") not in ("", "0") and _env_config() is None)
    if autotune:
        kernel = _autotuned_kernel()
        schedule = "packed" if force_packed else "auto"
        launch_kw = dict(SCHEDULE=_SCHEDULES[schedule])

        def grid(meta):
            return (_programs_per_head(n, num_seqs, max_seqlen, meta["BLOCK_M"], schedule) * num_heads,)
    else:
        if config is not None:
            cfg = _check_config(dict(config))
        else:
            cap = torch.cuda.get_device_capability(qkv.device) if on_gpu else None
            cfg = _check_config(launch_config(head_dim, qkv.dtype, max_seqlen, num_seqs, num_heads, cap,
                                              _sm_count(qkv.device) if on_gpu else None))
        if force_packed:
            cfg["schedule"] = "packed"
        kernel = _attention_kernel
        launch_kw = dict(BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], SCHEDULE=_SCHEDULES[cfg["schedule"]],
                         num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
        grid = (_programs_per_head(n, num_seqs, max_seqlen, cfg["BLOCK_M"], cfg["schedule"]) * num_heads,)
    if (grid(dict(BLOCK_M=16)) if callable(grid) else grid)[0] >= 2**31:
        raise ValueError(f"too many programs for one launch ({num_seqs} images x {num_heads} heads)")
    # wrap_triton makes the launch visible to torch.compile (triton_op); the interpreter's kernel
    # is launched directly (older torch refuses to wrap it, and there is nothing to trace).
    if not interpreted:
        kernel = wrap_triton(kernel)
    # Triton launches on the current device and its current stream: make that qkv's.
    on_device = torch.cuda.device(qkv.device) if qkv.device.type == "cuda" else contextlib.nullcontext()
    with on_device:
        kernel[grid](*args, **common, **launch_kw)
    return out
