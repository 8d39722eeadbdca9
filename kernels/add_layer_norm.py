"""Residual add fused with the LayerNorm after it (DESIGN.md decision 11) as one memory-bound kernel.

Computes, per row of an (N, D) token matrix, x_new = x + delta rounded once to x's dtype (the
residual stream), then a = LayerNorm(x_new) * weight + bias with fp32 statistics, rounded once to
weight's dtype. Each row is read once (x, delta) and written once (x_new, a); the whole row sits in
registers (D <= 1536 in C-RADIOv2), so the statistics cost no extra memory traffic.
Mirrors ``fastradio.backends.reference.add_layer_norm``; the CUDA twin will be ``csrc/add_layer_norm/``.
Archs: sm_80+ on GPU (Triton), and CPU tensors under ``TRITON_INTERPRET=1`` (how CI runs it).

Variance: trained ViT residual streams have rows whose mean is large against their spread (mean
1e3, std 1e-2 is realistic), where the one-pass E[x^2] - E[x]^2 loses every digit and even a plain
two-pass centring inherits the rounding error of the fp32 row sum (~1e-4 at mean 1e3, i.e. 1% of
such a row's spread). So the row is centred twice: c = x - m0 with m0 = fp32 mean (exact by
Sterbenz for values within 2x of m0), then m1 = mean(c) removes m0's rounding error and the
variance is mean((c - m1)^2). All three reductions are over registers.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from fastradio.kernels._common import is_interpreted
from fastradio.kernels._common import round_to_bf16 as _round_to_bf16

__all__ = ["add_layer_norm", "launch_config", "DTYPES", "MAX_D"]

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
#: Widest row: 8192 values are 32 a thread at 8 warps (ptxas: 80 registers, no spills on sm_80 and
#: sm_90). C-RADIOv2 needs <= 1536.
MAX_D = 8192


@triton.jit
def _cast(val, DST: tl.constexpr, SOFT_BF16: tl.constexpr):
    # fp32 -> DST with round-to-nearest-even; the interpreter's own fp32 -> bf16 cast truncates.
    if SOFT_BF16:
        return _round_to_bf16(val)
    return val.to(DST)


# Only D's divisibility matters for vector loads; N varies with every batch and resolution.
@triton.jit(do_not_specialize=["N"])
def _add_layer_norm_kernel(
    x_ptr,  # (N, D) residual dtype (fp32 | fp16 | bf16), contiguous
    delta_ptr,  # (N, D) compute dtype, contiguous; unused (any valid pointer) when not HAS_DELTA
    w_ptr,  # (D,) compute dtype
    b_ptr,  # (D,) compute dtype
    x_out_ptr,  # (N, D) residual dtype, contiguous: x + delta (a copy of x when not HAS_DELTA)
    a_out_ptr,  # (N, D) compute dtype, contiguous: LayerNorm(x + delta)
    N,  # rows
    D,  # row width
    eps,  # fp32
    HAS_DELTA: tl.constexpr,
    BLOCK_M: tl.constexpr,  # rows per program
    BLOCK_D: tl.constexpr,  # next power of two >= D: the whole row in registers
    X_SOFT_BF16: tl.constexpr,  # round x_new to bf16 in software (interpreter only)
    A_SOFT_BF16: tl.constexpr,  # round a to bf16 in software (interpreter only)
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_D)
    col_ok = cols < D
    mask = (rows < N)[:, None] & col_ok[None, :]
    # int64 row offsets: N * D passes 2**31 for large packed batches.
    offs = rows.to(tl.int64)[:, None] * D + cols[None, :]

    x_in = tl.load(x_ptr + offs, mask=mask, other=0.0)
    if HAS_DELTA:
        s = x_in.to(tl.float32) + tl.load(delta_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        x_new = _cast(s, x_out_ptr.dtype.element_ty, X_SOFT_BF16)
    else:
        x_new = x_in
    tl.store(x_out_ptr + offs, x_new, mask=mask)

    # LayerNorm of the residual as stored (rounded to its dtype), like the reference.
    v = x_new.to(tl.float32)
    inv_d = 1.0 / D
    m0 = tl.sum(v, axis=1) * inv_d
    c = tl.where(mask, v - m0[:, None], 0.0)
    m1 = tl.sum(c, axis=1) * inv_d
    c = tl.where(mask, c - m1[:, None], 0.0)
    var = tl.sum(c * c, axis=1) * inv_d
    rstd = 1.0 / tl.sqrt_rn(var + eps)

    w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    a = c * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(a_out_ptr + offs, _cast(a, a_out_ptr.dtype.element_ty, A_SOFT_BF16), mask=mask)


# Elements per program by arch. Unmeasured starting points, fixed (no autotuning) so results are
# deterministic: Hopper needs more bytes in flight per SM than Ampere to reach its bandwidth.
_ELEMS_PER_PROGRAM = {8: 4096, 9: 8192}


def launch_config(n_rows: int, d: int, capability: tuple[int, int] | None = None) -> dict[str, int]:
    """Deterministic tiles for (N, D) on a GPU of ``capability`` (None: the interpreter).

    The whole row is one register tile (BLOCK_D = next power of two >= D, so 1536 wastes a quarter
    of the lanes on masked, traffic-free elements); small rows are batched BLOCK_M to a program so
    every program moves a few thousand elements; 16 elements per thread per tensor.
    """
    block_d = max(16, triton.next_power_of_2(d))
    major = 8 if capability is None else min(max(capability[0], 8), 9)
    per_program = _ELEMS_PER_PROGRAM[major]
    block_m = max(1, min(per_program // block_d, 64, triton.next_power_of_2(max(n_rows, 1))))
    num_warps = max(1, min(8, block_m * block_d // 512))
    return {"BLOCK_M": block_m, "BLOCK_D": block_d, "num_warps": num_warps}


def _check_out(name: str, out: torch.Tensor, shape: tuple[int, int], dtype: torch.dtype,
               device: torch.device) -> None:
    if (tuple(out.shape) != shape or out.dtype != dtype or not out.is_contiguous()
            or out.device != device):
        raise ValueError(f"{name} must be a contiguous {shape} {dtype} tensor on {device}, "
                         f"got {tuple(out.shape)} {out.dtype} on {out.device} contiguous={out.is_contiguous()}")


def add_layer_norm(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float, x_out: torch.Tensor | None = None,
                   a_out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + delta, LayerNorm(x + delta)) for x (N, D), delta (N, D) or None, weight/bias (D,).

    x_new has x's dtype and is always a new tensor (a copy of x when delta is None); a has
    weight's dtype. Writes into ``x_out`` / ``a_out`` when given (contiguous, right shape, dtype
    and device). Checks only what protects memory; argument validation with full messages is the
    backend's job (``fastradio.backends.triton``).
    """
    if x.dim() != 2 or not x.is_contiguous():
        raise ValueError(f"x must be a contiguous (N, D) tensor, got {tuple(x.shape)} contiguous={x.is_contiguous()}")
    n, d = x.shape
    if d > MAX_D:
        raise ValueError(f"D must be at most {MAX_D}, got {d}")
    for name, t, shape in (("delta", delta, (n, d)), ("weight", weight, (d,)), ("bias", bias, (d,))):
        if t is not None and (tuple(t.shape) != shape or not t.is_contiguous() or t.device != x.device):
            raise ValueError(f"{name} must be a contiguous {shape} tensor on {x.device}, got "
                             f"{tuple(t.shape)} on {t.device} contiguous={t.is_contiguous()}")
    if x.dtype not in DTYPES or weight.dtype not in DTYPES or (delta is not None and delta.dtype not in DTYPES):
        raise ValueError("x, delta and weight must be float32, float16 or bfloat16")
    if x_out is None:
        x_out = torch.empty_like(x)
    else:
        _check_out("x_out", x_out, (n, d), x.dtype, x.device)
    if a_out is None:
        a_out = torch.empty((n, d), dtype=weight.dtype, device=x.device)
    else:
        _check_out("a_out", a_out, (n, d), weight.dtype, x.device)
    if x.device.type == "meta" or n == 0:
        return x_out, a_out  # shape-only call, or nothing to compute
    interpreted = is_interpreted()
    cap = None if interpreted or x.device.type != "cuda" else torch.cuda.get_device_capability(x.device)
    cfg = launch_config(n, d, cap)
    grid = (triton.cdiv(n, cfg["BLOCK_M"]),)
    # wrap_triton makes the launch visible to torch.compile (triton_op); the interpreter's kernel
    # is launched directly (there is nothing to trace).
    kernel = _add_layer_norm_kernel if interpreted else wrap_triton(_add_layer_norm_kernel)
    on_device = torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()
    with on_device:
        kernel[grid](
            x, x if delta is None else delta, weight, bias, x_out, a_out, n, d, float(eps),
            HAS_DELTA=delta is not None, BLOCK_M=cfg["BLOCK_M"], BLOCK_D=cfg["BLOCK_D"],
            X_SOFT_BF16=interpreted and delta is not None and x.dtype == torch.bfloat16,
            A_SOFT_BF16=interpreted and weight.dtype == torch.bfloat16,
            num_warps=cfg["num_warps"],
        )
    return x_out, a_out
