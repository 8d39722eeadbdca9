"""The block GEMMs with fused epilogues (qkv, proj, fc1, fc2) as one tiled Triton kernel.

Computes out = act(x @ weight.T + bias) + residual for x (N, K) row-major and weight (M, K)
row-major exactly as nn.Linear stores it: the kernel reads weight's tiles as the (K, M) operand
Wᵀ in place (no transpose copy). act is "none" or the exact erf GELU 0.5·y·(1 + erf(y/√2)).
bias (M,) and residual (N, M) are optional. Accumulation in fp32; the whole epilogue (bias,
GELU, residual) in fp32 on the accumulator, then one rounding to x's dtype. fp32 inputs use
IEEE fp32 products (input_precision="ieee", never TF32), so fp32 matches an fp32 reference.
Mirrors ``fastradio.backends.reference.linear`` (one rounding instead of one per step).

Letters follow the op, not the usual GEMM naming: N token rows, M output features, K the
reduction. The output is cut into BLOCK_N x BLOCK_M tiles, one program each, visited in groups
of GROUP_N row tiles (all column tiles of a group before the next group) so that a wave of
programs shares the same few x row panels and weight column panels in L2.

Tile configs: a deterministic per-arch heuristic (``launch_config``, the default), or, opt-in
until a GPU run has measured it (DESIGN.md decision 14), Triton's autotuner over a short
per-arch list keyed on (M, K, N bucket) (``FASTRADIO_LINEAR_CONFIG=autotune``, see ``linear``).
Archs: sm_80+ on GPU (mma.sync on sm_8x, wgmma on sm_90), and CPU tensors under
``TRITON_INTERPRET=1`` (how CI runs it).

Under the interpreter (constexpr INTERPRETED) three primitives are replaced, everything else
(tile order, pointers, masks, K loop, epilogue) is the same code:
- the tile product is a broadcast multiply of the operands widened to fp32 and an fp32 sum
  instead of tl.dot: Triton 3.7's interpreter multiplies bf16 bit patterns as integers, and its
  np.matmul goes through a multi-threaded BLAS that crawls on a busy 2-core machine. Products of
  fp16/bf16 values are exact in fp32, so this is the GPU's computation up to summation order;
- erf is evaluated with exp (``_erf_interp``, |error| < 1.2e-7) instead of tl.math.erf, which the
  interpreter runs as one Python call per element;
- fp32 -> bf16 is rounded to nearest-even on the bits: the interpreter's cast truncates.
tl.dot and libdevice's erff are exercised by the GPU tests and the sm_80/sm_90 compile checks.
"""

from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from fastradio.kernels._common import is_interpreted, round_to_bf16

__all__ = ["linear", "launch_config", "autotune_configs", "is_interpreted", "DTYPES", "ACTIVATIONS",
           "CONFIG_ENV"]

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
ACTIVATIONS = ("none", "gelu")
#: "heuristic" (deterministic, the default), "autotune" (GPU only), or an explicit tile config such as
#: "BLOCK_N=128,BLOCK_M=256,BLOCK_K=64,GROUP_N=8,num_warps=8,num_stages=3".
CONFIG_ENV = "FASTRADIO_LINEAR_CONFIG"

_CONFIG_KEYS = ("BLOCK_N", "BLOCK_M", "BLOCK_K", "GROUP_N", "num_warps", "num_stages")
_MAX_BLOCK_K = 64  # every BLOCK_K divides this, so K % 64 == 0 means "no K tail" for any config


@triton.jit
def _erf_interp(x):
    # erf(x) = sign(x) * (1 - erfc(|x|)) with the Chebyshev-fitted erfc of Numerical Recipes
    # (fractional error < 1.2e-7 for every x >= 0). Interpreter only: a handful of numpy
    # operations on the whole tile instead of a Python math.erf call per element.
    z = tl.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    p = 0.17087277
    p = -0.82215223 + t * p
    p = 1.48851587 + t * p
    p = -1.13520398 + t * p
    p = 0.27886807 + t * p
    p = -0.18628806 + t * p
    p = 0.09678418 + t * p
    p = 0.37409196 + t * p
    p = 1.00002368 + t * p
    erfc = t * tl.exp(-z * z - 1.26551223 + t * p)
    return tl.where(x < 0.0, erfc - 1.0, 1.0 - erfc)


# N (tokens) changes with every batch size and resolution: not specialising it (nor the autotune
# bucket) keeps one compiled variant per (M, K) divisibility and epilogue.
@triton.jit(do_not_specialize=["N", "N_BUCKET"])
def _linear_kernel(
    x_ptr,  # (N, K) row-major, fp32 | fp16 | bf16
    w_ptr,  # (M, K) row-major (nn.Linear layout), x's dtype; tiles read as the (K, M) operand Wᵀ
    b_ptr,  # (M,) x's dtype; any valid pointer when HAS_BIAS is False (not read)
    r_ptr,  # (N, M) row-major, x's dtype; any valid pointer when HAS_RESIDUAL is False (not read)
    out_ptr,  # (N, M) row-major, x's dtype
    N,  # token rows
    M,  # output features
    K,  # reduction length (input features)
    N_BUCKET,  # power-of-two bucket of N: an autotune key only, unused in the body
    HAS_BIAS: tl.constexpr,
    GELU: tl.constexpr,  # exact erf GELU after the bias, before the residual
    HAS_RESIDUAL: tl.constexpr,
    EVEN_K: tl.constexpr,  # K % BLOCK_K == 0: no masked K tail
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 (no TF32), "tf32" (ignored) for fp16/bf16
    INTERPRETED: tl.constexpr,  # Triton's CPU interpreter: see the module docstring
    BLOCK_N: tl.constexpr,  # token rows per tile
    BLOCK_M: tl.constexpr,  # output features per tile
    BLOCK_K: tl.constexpr,  # reduction step
    GROUP_N: tl.constexpr,  # row tiles per group of the swizzled tile order
):
    # Grouped tile order: program ids walk the column tiles of GROUP_N row tiles (column-major
    # inside the group), then the next group; the last group may have fewer rows.
    pid = tl.program_id(0)
    tiles_n = tl.cdiv(N, BLOCK_N)
    tiles_m = tl.cdiv(M, BLOCK_M)
    per_group = GROUP_N * tiles_m
    group = pid // per_group
    first_n = group * GROUP_N
    rows_in_group = tl.minimum(tiles_n - first_n, GROUP_N)
    in_group = pid - group * per_group
    pid_n = first_n + in_group % rows_in_group
    pid_m = in_group // rows_in_group

    # Operand rows wrap around (mod N, mod M) instead of being masked: the loads stay unmasked
    # and vectorised along K, and the rows past the edge are computed but never stored.
    # Offsets are int64: N*K and N*M pass 2**31 at large batches.
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    ks = tl.arange(0, BLOCK_K)
    a_rows = (rows % N).to(tl.int64)
    b_cols = (cols % M).to(tl.int64)
    a_ptrs = x_ptr + (a_rows * K)[:, None] + ks[None, :]  # (BLOCK_N, BLOCK_K) of x
    b_ptrs = w_ptr + (b_cols * K)[None, :] + ks[:, None]  # (BLOCK_K, BLOCK_M) of Wᵀ

    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            k_ok = ks < K - k0
            a = tl.load(a_ptrs, mask=k_ok[None, :], other=0.0)
            b = tl.load(b_ptrs, mask=k_ok[:, None], other=0.0)
        if INTERPRETED:
            acc += tl.sum(a.to(tl.float32)[:, :, None] * b.to(tl.float32)[None, :, :], axis=1)
        else:
            acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K

    # The epilogue runs on the two column halves of the tile one after the other: the exact GELU
    # (libdevice erff) on a whole 128 x 256 accumulator needs more than 255 registers per thread
    # and spills; per half it does not, and the split costs no shared memory (ptxas, sm_80/sm_90).
    halves = tl.permute(tl.reshape(acc, (BLOCK_N, 2, BLOCK_M // 2)), (0, 2, 1))
    left, right = tl.split(halves)
    _epilogue(left, rows, pid_m * BLOCK_M, N, M, b_ptr, r_ptr, out_ptr,
              HAS_BIAS, GELU, HAS_RESIDUAL, INTERPRETED, BLOCK_M // 2)
    _epilogue(right, rows, pid_m * BLOCK_M + BLOCK_M // 2, N, M, b_ptr, r_ptr, out_ptr,
              HAS_BIAS, GELU, HAS_RESIDUAL, INTERPRETED, BLOCK_M // 2)


@triton.jit
def _epilogue(
    y,  # (BLOCK_N, WIDTH) fp32 accumulator of x·Wᵀ for output rows `rows`, columns col0 + [0, WIDTH)
    rows,  # (BLOCK_N,) int32 output rows (may run past N: masked)
    col0,  # first output column
    N, M,
    b_ptr,  # (M,)
    r_ptr,  # (N, M) row-major
    out_ptr,  # (N, M) row-major
    HAS_BIAS: tl.constexpr, GELU: tl.constexpr, HAS_RESIDUAL: tl.constexpr, INTERPRETED: tl.constexpr,
    WIDTH: tl.constexpr,
):
    # fp32 throughout (bias, GELU, residual), one rounding at the store.
    cols = col0 + tl.arange(0, WIDTH)
    col_ok = cols < M
    if HAS_BIAS:
        bias = tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        y = y + bias[None, :]
    if GELU:
        z = y * 0.7071067811865476  # y / sqrt(2)
        if INTERPRETED:
            erf = _erf_interp(z)
        else:
            erf = tl.math.erf(z)  # libdevice erff, <= 2 ulp
        y = 0.5 * y * (1.0 + erf)
    mask = (rows < N)[:, None] & col_ok[None, :]
    offs = rows.to(tl.int64)[:, None] * M + cols[None, :]
    if HAS_RESIDUAL:
        y = y + tl.load(r_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if INTERPRETED and out_ptr.dtype.element_ty == tl.bfloat16:
        res = round_to_bf16(y)
    else:
        res = y.to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + offs, res, mask=mask)


# -- tile configs -----------------------------------------------------------------------------------

def _cfg(bn, bm, bk, group, warps, stages) -> dict[str, int]:
    return dict(zip(_CONFIG_KEYS, (bn, bm, bk, group, warps, stages)))


# Per arch family and operand width: the configs the autotuner tries, and the heuristic's three
# (big, mid, small) in order of preference. 16-bit configs feed the tensor cores (mma.sync on
# sm_8x; wgmma on sm_90, 64 rows per warpgroup). A stage holds (BLOCK_N + BLOCK_M) * BLOCK_K
# elements, 48 KiB for 128x256x64 in 16 bits; Triton keeps num_stages stages in smem on sm_90
# (3 -> 144 KiB of 227) and num_stages - 1 on sm_8x (3 -> 96 KiB, within even sm_86/89's 99 KiB).
# fp32 runs IEEE FMAs on the CUDA cores (TF32 would break the fp32 accuracy contract): smaller
# tiles, 32-wide K steps. All of them compile without spills (tests/test_op_linear.py).
_BIG16_90 = _cfg(128, 256, 64, 8, 8, 3)  # 2 warpgroups x (64 x 256) wgmma, the large-batch tile
_MID16_90 = _cfg(128, 128, 64, 8, 4, 4)
_SMALL16_90 = _cfg(64, 128, 64, 8, 4, 4)  # batch ~1: more programs than 132 SMs
_BIG16_80 = _cfg(128, 256, 64, 8, 8, 3)
_MID16_80 = _cfg(128, 128, 32, 8, 4, 4)
_SMALL16_80 = _cfg(64, 128, 32, 8, 4, 4)
_BIG32 = _cfg(128, 128, 32, 8, 8, 3)
_MID32 = _cfg(64, 128, 32, 8, 4, 3)
_SMALL32 = _cfg(64, 64, 32, 8, 4, 3)

_TILE_EFFICIENCY = (1.0, 0.87, 0.67)  # relative throughput of the (big, mid, small) tiles: see launch_config
_HEURISTIC: dict[tuple[str, str], tuple[dict[str, int], ...]] = {
    ("sm90", "16bit"): (_BIG16_90, _MID16_90, _SMALL16_90),
    ("sm80", "16bit"): (_BIG16_80, _MID16_80, _SMALL16_80),
    ("sm90", "fp32"): (_BIG32, _MID32, _SMALL32),
    ("sm80", "fp32"): (_BIG32, _MID32, _SMALL32),
}
_CONFIGS: dict[tuple[str, str], list[dict[str, int]]] = {
    ("sm90", "16bit"): [_BIG16_90, _cfg(128, 256, 64, 8, 8, 4), _cfg(256, 128, 64, 8, 8, 3), _MID16_90,
                        _cfg(128, 128, 64, 8, 8, 4), _SMALL16_90],
    ("sm80", "16bit"): [_BIG16_80, _cfg(256, 128, 64, 8, 8, 3), _cfg(128, 256, 32, 8, 8, 3), _MID16_80,
                        _cfg(128, 128, 64, 8, 4, 3), _SMALL16_80],
    ("sm90", "fp32"): [_BIG32, _MID32, _SMALL32],
    ("sm80", "fp32"): [_BIG32, _MID32, _SMALL32],
}


def _family(capability: tuple[int, int]) -> str:
    return "sm90" if capability[0] in (9, 10) else "sm80"  # sm_100 has sm_90's smem; sm_120 does not


def _width(dtype: torch.dtype) -> str:
    return "fp32" if dtype == torch.float32 else "16bit"


def _fits(cfg: dict[str, int], capability: tuple[int, int], dtype: torch.dtype) -> bool:
    if capability == (8, 0) or capability[0] in (9, 10):
        return True
    # sm_86/87/89 (and sm_120): 99 KiB of shared memory per block. sm_8x holds num_stages - 1
    # stages; other archs are assumed to hold all of them.
    item = 4 if dtype == torch.float32 else 2
    stage = (cfg["BLOCK_N"] + cfg["BLOCK_M"]) * cfg["BLOCK_K"] * item
    resident = cfg["num_stages"] - 1 if capability[0] == 8 else cfg["num_stages"]
    return resident * stage <= 96 * 1024


def autotune_configs(capability: tuple[int, int], dtype: torch.dtype) -> list[dict[str, int]]:
    """The configs the GPU autotuner tries for this arch and dtype."""
    return [dict(c) for c in _CONFIGS[(_family(capability), _width(dtype))] if _fits(c, capability, dtype)]


def _n_tiles(n: int, m: int, cfg: dict[str, int]) -> int:
    return triton.cdiv(n, cfg["BLOCK_N"]) * triton.cdiv(m, cfg["BLOCK_M"])


def launch_config(n: int, m: int, k: int, dtype: torch.dtype,
                  capability: tuple[int, int] | None = None, num_sms: int = 132) -> dict[str, int]:
    """Deterministic tile config for an (n, m, k) GEMM; ``capability`` None means the interpreter.

    On GPU: of the arch's (big, mid, small) tiles, the one with the least estimated time, waves
    of programs over ``num_sms`` SMs times the time of one tile, where a tile's time is its area
    over a per-tile efficiency (1.0, 0.87, 0.67: big tiles reuse each loaded element more; the
    ratios are reasoned, not yet measured). Large batches get the big tile; batch-1 GEMMs, whose
    big-tile grid would leave SMs idle or end in a ragged last wave, get a smaller one. Under the
    interpreter every program and every K step costs Python time whatever its size, so the tiles
    are as large as the problem (capped) to run few.
    """
    if capability is None:
        # Up to 256 x 256 output tiles; BLOCK_K as deep as the interpreter's 2**20-element limit
        # allows for the (BLOCK_N, BLOCK_K, BLOCK_M) product it forms instead of tl.dot.
        bn = max(16, min(256, triton.next_power_of_2(n)))
        bm = max(16, min(256, triton.next_power_of_2(m)))
        bk = max(16, min(_MAX_BLOCK_K, triton.next_power_of_2(k), 2**20 // (bn * bm)))
        return _cfg(bn, bm, bk, 8, 4, 1)
    candidates = [(c, eff) for c, eff in zip(_HEURISTIC[(_family(capability), _width(dtype))], _TILE_EFFICIENCY)
                  if _fits(c, capability, dtype)]

    def est_time(item):
        cfg, eff = item
        waves = triton.cdiv(_n_tiles(n, m, cfg), num_sms)
        return waves * cfg["BLOCK_N"] * cfg["BLOCK_M"] / eff

    return dict(min(candidates, key=est_time)[0])  # the first (bigger) one on ties


def _parse_config(text: str) -> dict[str, int]:
    try:
        cfg = {k.strip(): int(v) for k, v in (item.split("=") for item in text.split(",") if item.strip())}
    except ValueError:
        cfg = {}
    if set(cfg) != set(_CONFIG_KEYS):
        raise ValueError(f"{CONFIG_ENV} must be 'autotune', 'heuristic' or "
                         f"'{'=..,'.join(_CONFIG_KEYS)}=..', got {text!r}")
    return cfg


def _check_config(cfg: dict[str, int]) -> dict[str, int]:
    if set(cfg) != set(_CONFIG_KEYS):
        raise ValueError(f"config must have exactly the keys {_CONFIG_KEYS}, got {sorted(cfg)}")
    for key in ("BLOCK_N", "BLOCK_M", "BLOCK_K"):
        v = cfg[key]
        if v < 16 or v & (v - 1):
            raise ValueError(f"config {key} must be a power of two >= 16, got {v}")
    if cfg["BLOCK_K"] > _MAX_BLOCK_K:
        raise ValueError(f"config BLOCK_K must be <= {_MAX_BLOCK_K}, got {cfg['BLOCK_K']}")
    if cfg["GROUP_N"] < 1 or cfg["num_warps"] < 1 or cfg["num_stages"] < 1:
        raise ValueError(f"config GROUP_N, num_warps and num_stages must be >= 1, got {cfg}")
    return dict(cfg)


def _n_bucket(n: int) -> int:
    # Power-of-two buckets, clamped: below 128 rows every GEMM is a tiny one, and above 32768 the
    # grid is many waves deep for every tile size, so the best config stops changing.
    return min(32768, max(128, triton.next_power_of_2(n)))


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.device != b.device or a.numel() == 0 or b.numel() == 0 or a.device.type == "meta":
        return False
    a0, b0 = a.data_ptr(), b.data_ptr()
    return a0 < b0 + b.numel() * b.element_size() and b0 < a0 + a.numel() * a.element_size()


_AUTOTUNED: dict[tuple[str, str], object] = {}


def _autotuned_kernel(capability: tuple[int, int], dtype: torch.dtype):
    key = (f"sm{capability[0]}{capability[1]}", _width(dtype))
    if key not in _AUTOTUNED:
        configs = [
            triton.Config({k: c[k] for k in ("BLOCK_N", "BLOCK_M", "BLOCK_K", "GROUP_N")},
                          num_warps=c["num_warps"], num_stages=c["num_stages"])
            for c in autotune_configs(capability, dtype)
        ]
        # Keyed on the weight's shape and the N bucket (arg dtypes are part of Triton's key too).
        _AUTOTUNED[key] = triton.autotune(configs=configs, key=["M", "K", "N_BUCKET"])(_linear_kernel)
    return _AUTOTUNED[key]


# -- launcher ---------------------------------------------------------------------------------------

def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           activation: str = "none", residual: torch.Tensor | None = None,
           out: torch.Tensor | None = None, config: dict[str, int] | str | None = None) -> torch.Tensor:
    """act(x @ weight.T + bias) + residual → (N, M) in x's dtype.

    x (N, K), weight (M, K), bias (M,) or None, residual (N, M) or None, all contiguous, one
    dtype (fp32, fp16 or bf16), one device; activation "none" or "gelu" (exact erf). Writes into
    ``out`` ((N, M), x's dtype, contiguous, on x's device) when given; ``out`` may be ``residual``
    itself (an in-place residual add: each element is read before it is written, by the same
    program) but must not overlap x, weight or bias.

    ``config``: a dict of tile sizes (keys BLOCK_N, BLOCK_M, BLOCK_K, GROUP_N, num_warps,
    num_stages), "heuristic" (``launch_config``) or "autotune"; None reads ``FASTRADIO_LINEAR_CONFIG``
    (same values, or a "KEY=v,..." config), defaulting to "heuristic". The interpreter and
    CUDA-graph capture (no benchmarking inside a capture) use "heuristic" instead of "autotune",
    and so does an in-place residual add (the autotuner runs the kernel several times).

    Checks only what protects memory; argument validation with full messages is the backend's
    job (``fastradio.backends.triton``).
    """
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"x must be (N, K) and weight (M, K), got {tuple(x.shape)} and {tuple(weight.shape)}")
    n, k = x.shape
    m = weight.shape[0]
    if x.dtype not in DTYPES:
        raise ValueError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    for name, t, shape in (("x", x, (n, k)), ("weight", weight, (m, k)), ("bias", bias, (m,)),
                           ("residual", residual, (n, m))):
        if t is None:
            continue
        if (tuple(t.shape) != shape or t.dtype != x.dtype or not t.is_contiguous()
                or t.device != x.device):
            raise ValueError(f"{name} must be a contiguous {shape} {x.dtype} tensor on {x.device}, got "
                             f"{tuple(t.shape)} {t.dtype} contiguous={t.is_contiguous()} on {t.device}")
    in_place = False
    if out is None:
        # A fresh tensor overlaps nothing (and under torch.compile's tracing the tensors here are
        # fakes without data pointers: nothing below may look at addresses then).
        out = torch.empty((n, m), dtype=x.dtype, device=x.device)
    elif (tuple(out.shape) != (n, m) or out.dtype != x.dtype or not out.is_contiguous()
          or out.device != x.device):
        raise ValueError(f"out must be a contiguous ({n}, {m}) {x.dtype} tensor on {x.device}, "
                         f"got {tuple(out.shape)} {out.dtype} on {out.device}")
    else:
        in_place = residual is not None and _overlaps(out, residual) and out.data_ptr() == residual.data_ptr()
        for name, t in (("x", x), ("weight", weight), ("bias", bias), ("residual", residual)):
            if t is not None and _overlaps(out, t) and not (name == "residual" and in_place):
                raise ValueError(f"out must not overlap {name}" + (" (except being residual itself)"
                                                                   if name == "residual" else ""))
    if x.device.type == "meta" or n == 0 or m == 0:
        return out  # shape-only call, or nothing to compute
    if k == 0:
        raise ValueError("K must be >= 1 (x and weight have no columns)")

    interpreted = is_interpreted()
    on_gpu = x.device.type == "cuda" and not interpreted
    capability = torch.cuda.get_device_capability(x.device) if on_gpu else None
    if config is None:
        config = os.environ.get(CONFIG_ENV, "").strip() or "heuristic"
    if isinstance(config, str):
        if config == "autotune" and (not on_gpu or in_place or torch.cuda.is_current_stream_capturing()):
            config = "heuristic"
        if config == "heuristic":
            sms = torch.cuda.get_device_properties(x.device).multi_processor_count if on_gpu else 132
            config = launch_config(n, m, k, x.dtype, capability, sms)
        elif config != "autotune":
            config = _parse_config(config)
    if isinstance(config, dict):
        config = _check_config(config)
        if interpreted and config["BLOCK_N"] * config["BLOCK_K"] * config["BLOCK_M"] > 2**20:
            raise ValueError(f"config BLOCK_N * BLOCK_K * BLOCK_M must be <= 2**20 under the interpreter "
                             f"(its tensor size limit), got {config}")

    # Unused pointers must still be valid tensors for the launch: x stands in for them.
    args = (x, weight, bias if bias is not None else x, residual if residual is not None else x, out,
            n, m, k, _n_bucket(n))
    consts = dict(
        HAS_BIAS=bias is not None, GELU=activation == "gelu", HAS_RESIDUAL=residual is not None,
        EVEN_K=k % _MAX_BLOCK_K == 0 if config == "autotune" else k % config["BLOCK_K"] == 0,
        DOT_PRECISION="ieee" if x.dtype == torch.float32 else "tf32",
        INTERPRETED=interpreted,
    )

    def grid(meta):
        return (triton.cdiv(n, meta["BLOCK_N"]) * triton.cdiv(m, meta["BLOCK_M"]),)

    # Triton launches on the current device and its current stream: make that x's.
    on_device = torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()
    with on_device:
        if config == "autotune":
            # wrap_triton makes the launch visible to torch.compile (triton_op).
            wrap_triton(_autotuned_kernel(capability, x.dtype))[grid](*args, **consts)
        else:
            # The interpreter's kernel is launched directly (nothing to trace; older torch
            # refuses to wrap it).
            kernel = _linear_kernel if interpreted else wrap_triton(_linear_kernel)
            kernel[grid](*args, **consts,
                         BLOCK_N=config["BLOCK_N"], BLOCK_M=config["BLOCK_M"], BLOCK_K=config["BLOCK_K"],
                         GROUP_N=config["GROUP_N"], num_warps=config["num_warps"],
                         num_stages=config["num_stages"])
    return out
