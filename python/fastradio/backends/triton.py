"""Triton backend: the kernels of ``fastradio.kernels`` as torch custom ops (DESIGN.md §4).

Runs on CUDA GPUs of compute capability 8.0 or newer, and on CPU tensors when Triton's
interpreter is on (``TRITON_INTERPRET=1`` set before ``fastradio.kernels`` is imported; that is
how CI checks the kernels). This is the only module that imports ``fastradio.kernels``.

Each op is a ``torch.library`` custom op named ``fastradio::triton_<op>``. On GPU it is a
``triton_op`` (the kernel launch is visible to ``torch.compile`` through ``wrap_triton``); under
the interpreter it is an opaque ``custom_op`` with a fake implementation, because the
interpreter cannot be traced and must run on real tensors. Either way
``torch.compile(fullgraph=True)`` and FakeTensor shape propagation work.
"""

from __future__ import annotations

import os

import torch

__all__ = ["supports", "pos_embed", "add_layer_norm", "patch_embed", "attention", "linear", "OP_NAMES"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MIN_CAPABILITY = (8, 0)

#: The torch.library names of the ops this backend registers, by op.
OP_NAMES: dict[str, str] = {"pos_embed": "fastradio::triton_pos_embed",
                            "add_layer_norm": "fastradio::triton_add_layer_norm",
                            "patch_embed": "fastradio::triton_patch_embed",
                            "attention": "fastradio::triton_attention",
                            "linear": "fastradio::triton_linear"}

#: Per-op refusals on top of the shared ones below (e.g. that op's kernel failed to import):
#: op -> fn(device, dtype, **facts) -> list of reasons. Each op's section registers its own.
_OP_REFUSALS: dict = {}

try:
    import triton  # noqa: F401  (the import is the availability check)

    from fastradio.kernels._common import is_interpreted as _kernels_interpreted
    from fastradio.kernels.pos_embed import pos_embed as _launch_pos_embed

    _IMPORT_ERROR: str | None = None
except Exception as e:  # ImportError, or a broken Triton install failing on import
    _IMPORT_ERROR = f"triton is not importable ({type(e).__name__}: {e})"



def _register(op: str, impl, fake):
    """Register ``impl`` as ``fastradio::triton_<op>``: a ``triton_op`` on GPU (the launch stays
    visible to torch.compile through wrap_triton), an opaque ``custom_op`` with ``fake`` under the
    interpreter (which cannot be traced and must run on real tensors)."""
    if _kernels_interpreted():
        handle = torch.library.custom_op(OP_NAMES[op], impl, mutates_args=())
        handle.register_fake(fake)
        return handle
    return torch.library.triton_op(OP_NAMES[op], impl, mutates_args=())

def supports(op: str, device: torch.device, dtype: torch.dtype, **facts) -> list[str]:
    """Reasons this backend cannot run ``op`` on (device, dtype); empty when it can."""
    if _IMPORT_ERROR is not None:
        return [_IMPORT_ERROR]
    reasons = []
    device = torch.device(device)
    if device.type == "cpu":
        if not _kernels_interpreted():
            env = os.environ.get("TRITON_INTERPRET", "<unset>")
            reasons.append(
                "device is cpu and the Triton interpreter is off (TRITON_INTERPRET must be 1 "
                f"before fastradio.kernels is imported; it is {env!r}); Triton kernels run on CPU "
                "only in the interpreter")
    elif device.type == "cuda":
        if _kernels_interpreted():
            reasons.append("the Triton kernels were imported with TRITON_INTERPRET=1 (the CPU "
                           "interpreter); unset it to run them on the GPU")
        elif not torch.cuda.is_available():
            reasons.append("device is cuda but torch.cuda.is_available() is False")
        else:
            cap = torch.cuda.get_device_capability(device)
            if cap < _MIN_CAPABILITY:
                reasons.append(f"CUDA compute capability {cap[0]}.{cap[1]} is below 8.0 "
                               "(the Triton kernels are built for sm_80+)")
    else:
        reasons.append(f"device type {device.type!r} is not supported (cuda sm_80+, or cpu "
                       "under TRITON_INTERPRET=1)")
    if dtype not in _DTYPES:
        reasons.append(f"dtype {dtype} is not one of float32, float16, bfloat16")
    if op in _OP_REFUSALS:
        reasons.extend(_OP_REFUSALS[op](device, dtype, **facts))
    return reasons


def _check_pos_embed(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype) -> None:
    # Everything the kernel's raw pointers rely on, with what was expected and what came.
    if not isinstance(table, torch.Tensor):
        raise TypeError(f"pos_embed: table must be a torch.Tensor, got {type(table).__name__}")
    if table.dim() != 3 or table.shape[0] != table.shape[1] or table.shape[0] < 1 or table.shape[2] < 1:
        raise ValueError(f"pos_embed: table must have shape (G, G, D) with G, D >= 1, got {tuple(table.shape)}")
    if table.dtype != torch.float32:
        raise TypeError(f"pos_embed: table must be float32 (the resize is fp32, spec §3), got {table.dtype}")
    if not table.is_contiguous():
        raise ValueError(f"pos_embed: table must be contiguous, got strides {table.stride()} "
                         f"for shape {tuple(table.shape)}")
    for name, v in (("h", h), ("w", w)):
        if isinstance(v, bool) or not isinstance(v, (int, torch.SymInt)) or v < 1:
            raise ValueError(f"pos_embed: {name} must be an int >= 1, got {v!r}")
    if out_dtype not in _DTYPES:
        raise TypeError(f"pos_embed: out_dtype must be float32, float16 or bfloat16, got {out_dtype}")
    dev = table.device
    if dev.type == "cpu" and not _kernels_interpreted():
        raise ValueError("pos_embed: table is on cpu but the Triton interpreter is off "
                         "(set TRITON_INTERPRET=1 before importing fastradio, or move table to cuda)")
    if dev.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"pos_embed: table must be on cuda (or cpu under TRITON_INTERPRET=1), got {dev}")
    if dev.type == "cuda" and not _kernels_interpreted() and torch.cuda.is_available():
        cap = torch.cuda.get_device_capability(dev)
        if cap < _MIN_CAPABILITY:
            raise ValueError(f"pos_embed: the Triton kernels need compute capability 8.0+, {dev} has {cap[0]}.{cap[1]}")


def _pos_embed_impl(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype, align_corners: bool) -> torch.Tensor:
    _check_pos_embed(table, h, w, out_dtype)
    return _launch_pos_embed(table, h, w, out_dtype, align_corners)


def _pos_embed_fake(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype, align_corners: bool) -> torch.Tensor:
    _check_pos_embed(table, h, w, out_dtype)
    return table.new_empty((h * w, table.shape[2]), dtype=out_dtype)


_pos_embed_op = None
if _IMPORT_ERROR is None:
    _pos_embed_op = _register("pos_embed", _pos_embed_impl, _pos_embed_fake)


def pos_embed(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype, align_corners: bool = True) -> torch.Tensor:
    """Resized position table: table (G, G, D) fp32 → (h*w, D) ``out_dtype`` (spec §3).

    Bilinear with ``align_corners`` (True: C-RADIOv2; False: C-RADIOv4, radio-family spec §3),
    fp32 math, top-left h x w window of the (m, m) resize, m = max(h, w). Same contract as
    ``fastradio.backends.reference.pos_embed``.
    """
    if _pos_embed_op is None:
        raise RuntimeError(f"the triton backend is unavailable: {_IMPORT_ERROR}")
    _check_pos_embed(table, h, w, out_dtype)
    if not isinstance(align_corners, bool):
        raise TypeError(f"pos_embed: align_corners must be a bool, got {type(align_corners).__name__}")
    return _pos_embed_op(table, h, w, out_dtype, align_corners)


# --- add_layer_norm -------------------------------------------------------------------------------
# x_new = x + delta; a = LayerNorm(x_new) (DESIGN.md decision 11). x_new is always a new tensor,
# also when delta is None (then a copy of x written in the same pass): a custom op's outputs may
# not alias its inputs, and the copy costs one N x D write once per forward (block 0's norm1).

_ADD_LAYER_NORM_IMPORT_ERROR: str | None = None
if _IMPORT_ERROR is None:
    try:
        from fastradio.kernels.add_layer_norm import MAX_D as _ADD_LAYER_NORM_MAX_D
        from fastradio.kernels.add_layer_norm import add_layer_norm as _launch_add_layer_norm
    except Exception as e:  # a broken kernel file must not take the other ops down
        _ADD_LAYER_NORM_IMPORT_ERROR = f"kernels/add_layer_norm.py failed to import ({type(e).__name__}: {e})"


def _add_layer_norm_refusals(device: torch.device, dtype: torch.dtype, **facts) -> list[str]:
    if _ADD_LAYER_NORM_IMPORT_ERROR is not None:
        return [_ADD_LAYER_NORM_IMPORT_ERROR]
    width = facts.get("width")
    if width is not None and width > _ADD_LAYER_NORM_MAX_D:
        return [f"width {width} is above {_ADD_LAYER_NORM_MAX_D} (add_layer_norm keeps a whole row in registers)"]
    return []


_OP_REFUSALS["add_layer_norm"] = _add_layer_norm_refusals


def _check_kernel_device(op: str, what: str, dev: torch.device) -> None:
    """Device rules shared by the kernels of the add_layer_norm and patch_embed sections."""
    if dev.type == "cpu" and not _kernels_interpreted():
        raise ValueError(f"{op}: {what} is on cpu but the Triton interpreter is off "
                         f"(set TRITON_INTERPRET=1 before importing fastradio, or move {what} to cuda)")
    if dev.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"{op}: {what} must be on cuda (or cpu under TRITON_INTERPRET=1), got {dev}")
    if dev.type == "cuda" and not _kernels_interpreted() and torch.cuda.is_available():
        cap = torch.cuda.get_device_capability(dev)
        if cap < _MIN_CAPABILITY:
            raise ValueError(f"{op}: the Triton kernels need compute capability 8.0+, {dev} has {cap[0]}.{cap[1]}")


def _check_same_device(op: str, ref_name: str, ref: torch.Tensor, others) -> None:
    for name, t in others:
        if t.device != ref.device:
            raise ValueError(f"{op}: {name} must be on {ref_name}'s device {ref.device}, got {t.device}")


def _check_contiguous(op: str, named) -> None:
    for name, t in named:
        if not t.is_contiguous():
            raise ValueError(f"{op}: {name} must be contiguous, got strides {t.stride()} for shape "
                             f"{tuple(t.shape)} (call .contiguous())")


def _check_add_layer_norm(x, delta, weight, bias, eps) -> None:
    # Everything the kernel's raw pointers rely on, with what was expected and what came.
    op = "add_layer_norm"
    named = [("x", x), ("weight", weight), ("bias", bias)] + ([("delta", delta)] if delta is not None else [])
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor{' or None' if name == 'delta' else ''}, "
                            f"got {type(t).__name__}")
    if x.dim() != 2 or x.shape[1] < 1:
        raise ValueError(f"{op}: x must have shape (N, D) with D >= 1, got {tuple(x.shape)}")
    n, d = x.shape
    for name, t in (("weight", weight), ("bias", bias)):
        if tuple(t.shape) != (d,):
            raise ValueError(f"{op}: {name} must have shape (D,) = ({d},) with D from x, got {tuple(t.shape)}")
    if delta is not None and tuple(delta.shape) != (n, d):
        raise ValueError(f"{op}: delta must have x's shape {(n, d)}, got {tuple(delta.shape)}")
    if d > _ADD_LAYER_NORM_MAX_D:
        raise ValueError(f"{op}: D must be at most {_ADD_LAYER_NORM_MAX_D} (a whole row is kept in "
                         f"registers), got {d}")
    if weight.dtype not in _DTYPES:
        raise TypeError(f"{op}: weight (the compute dtype) must be float32, float16 or bfloat16, got {weight.dtype}")
    if bias.dtype != weight.dtype:
        raise TypeError(f"{op}: bias must have weight's dtype {weight.dtype}, got {bias.dtype}")
    if delta is not None and delta.dtype != weight.dtype:
        raise TypeError(f"{op}: delta must be in the compute dtype (weight's) {weight.dtype}, got {delta.dtype}")
    if x.dtype not in (weight.dtype, torch.float32):
        raise TypeError(f"{op}: x (the residual stream) must be float32 or weight's dtype {weight.dtype}, "
                        f"got {x.dtype}")
    if isinstance(eps, bool) or not isinstance(eps, (float, int)) or not 0.0 <= eps < float("inf"):
        raise ValueError(f"{op}: eps must be a finite float >= 0, got {eps!r}")
    _check_contiguous(op, named)
    _check_same_device(op, "x", x, named[1:])
    _check_kernel_device(op, "x", x.device)


def _add_layer_norm_impl(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                         eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    _check_add_layer_norm(x, delta, weight, bias, eps)
    return _launch_add_layer_norm(x, delta, weight, bias, eps)


def _add_layer_norm_fake(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                         eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    _check_add_layer_norm(x, delta, weight, bias, eps)
    return torch.empty_like(x), x.new_empty(x.shape, dtype=weight.dtype)


_add_layer_norm_op = None
if _IMPORT_ERROR is None and _ADD_LAYER_NORM_IMPORT_ERROR is None:
    _add_layer_norm_op = _register("add_layer_norm", _add_layer_norm_impl, _add_layer_norm_fake)


def add_layer_norm(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + delta, LayerNorm(x + delta)) with fp32 statistics (ops.add_layer_norm).

    x (N, D) in the residual dtype (float32, or weight's dtype); delta (N, D) in weight's dtype or
    None; weight, bias (D,) in the compute dtype. Returns x_new (N, D) in x's dtype, a new tensor
    (a copy of x when delta is None), and a (N, D) in weight's dtype. Same contract as
    ``fastradio.backends.reference.add_layer_norm``.
    """
    if _add_layer_norm_op is None:
        raise RuntimeError("the triton backend cannot run add_layer_norm: "
                           f"{_IMPORT_ERROR or _ADD_LAYER_NORM_IMPORT_ERROR}")
    _check_add_layer_norm(x, delta, weight, bias, eps)
    return _add_layer_norm_op(x, delta, weight, bias, float(eps))

# --- end add_layer_norm ---------------------------------------------------------------------------


# --- patch_embed ----------------------------------------------------------------------------------
# tokens (B, P + h*w, D) = [prefix; im2patch(x) . W^T + pos] in one launch (spec §3). Argument
# checks shared with the cuda backend; the device check of the add_layer_norm section above.

from fastradio.backends.checks import patch_embed as _checks_patch_embed  # noqa: E402

_PATCH_EMBED_IMPORT_ERROR: str | None = None
if _IMPORT_ERROR is None:
    try:
        from fastradio.kernels.patch_embed import K as _PATCH_EMBED_K
        from fastradio.kernels.patch_embed import PATCH as _PATCH_EMBED_PATCH
        from fastradio.kernels.patch_embed import patch_embed as _launch_patch_embed
        if (_PATCH_EMBED_PATCH, _PATCH_EMBED_K) != (_checks_patch_embed.PATCH, _checks_patch_embed.K):
            raise ImportError(f"kernels/patch_embed.py has patch {_PATCH_EMBED_PATCH}, K {_PATCH_EMBED_K}; "
                              f"the checks expect {_checks_patch_embed.PATCH}, {_checks_patch_embed.K}")
    except Exception as e:  # a broken kernel file must not take the other ops down
        _PATCH_EMBED_IMPORT_ERROR = f"kernels/patch_embed.py failed to import ({type(e).__name__}: {e})"


def _patch_embed_refusals(device: torch.device, dtype: torch.dtype, **facts) -> list[str]:
    return [] if _PATCH_EMBED_IMPORT_ERROR is None else [_PATCH_EMBED_IMPORT_ERROR]


_OP_REFUSALS["patch_embed"] = _patch_embed_refusals


def _check_patch_embed(x, weight, pos, prefix) -> None:
    # The checks both fast backends share (backends/checks/patch_embed.py), then where the Triton
    # kernel can run.
    _checks_patch_embed.check_patch_embed(x, weight, pos, prefix)
    _check_kernel_device("patch_embed", "x", x.device)


def _patch_embed_impl(x: torch.Tensor, weight: torch.Tensor, pos: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    _check_patch_embed(x, weight, pos, prefix)
    return _launch_patch_embed(x, weight, pos, prefix)


def _patch_embed_fake(x: torch.Tensor, weight: torch.Tensor, pos: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    _check_patch_embed(x, weight, pos, prefix)
    return x.new_empty(_checks_patch_embed.output_shape(x, weight, prefix))


_patch_embed_op = None
if _IMPORT_ERROR is None and _PATCH_EMBED_IMPORT_ERROR is None:
    _patch_embed_op = _register("patch_embed", _patch_embed_impl, _patch_embed_fake)


def patch_embed(x: torch.Tensor, weight: torch.Tensor, pos: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """Tokens (B, P + h*w, D) in x's dtype of images x (B, 3, H, W) (ops.patch_embed, spec §3).

    x contiguous, H and W multiples of 16; weight (D, 768), pos (h*w, D), prefix (P, D), all in
    x's (the compute) dtype. Same contract as ``fastradio.backends.reference.patch_embed``.
    Strided weight/pos/prefix are copied first (small, and the reference pos_embed returns a
    transposed view); a strided x is refused rather than silently copied (a whole extra pass).
    """
    if _patch_embed_op is None:
        raise RuntimeError(f"the triton backend cannot run patch_embed: {_IMPORT_ERROR or _PATCH_EMBED_IMPORT_ERROR}")
    weight, pos, prefix = (t.contiguous() if isinstance(t, torch.Tensor) else t for t in (weight, pos, prefix))
    _check_patch_embed(x, weight, pos, prefix)
    return _patch_embed_op(x, weight, pos, prefix)

# --- end patch_embed ------------------------------------------------------------------------------


# --- attention ------------------------------------------------------------------------------------
# Variable-length non-causal attention over packed images (ops.attention; kernels/attention.py).
# The argument checks, structural and of cu_seqlens' values (once per cu_seqlens tensor version,
# skipped while tracing or capturing), are shared with the cuda backend: backends/checks/attention.py.
# Only the device checks below are this backend's own.

from fastradio.backends.checks import attention as _attention_checks  # noqa: E402

_ATTENTION_IMPORT_ERROR: str | None = None
if _IMPORT_ERROR is None:
    try:
        from fastradio.kernels.attention import HEAD_DIMS as _ATTENTION_HEAD_DIMS
        from fastradio.kernels.attention import attention as _launch_attention
    except Exception as e:  # a broken kernel file must not take the other ops down
        _ATTENTION_IMPORT_ERROR = f"kernels/attention.py failed to import ({type(e).__name__}: {e})"


def _attention_refusals(device: torch.device, dtype: torch.dtype, **facts) -> list[str]:
    if _ATTENTION_IMPORT_ERROR is not None:
        return [_ATTENTION_IMPORT_ERROR]
    head_dim = facts.get("head_dim")
    if head_dim is not None and head_dim not in _ATTENTION_HEAD_DIMS:
        return [f"head_dim {head_dim} is not {_attention_checks.HEAD_DIMS_TEXT} (the head dims the attention "
                "kernel is built and tuned for: C-RADIOv2-B/L/g use 64, -H uses 80)"]
    return []


_OP_REFUSALS["attention"] = _attention_refusals


def _check_attention(qkv, cu_seqlens, max_seqlen, num_heads, head_dim) -> None:
    # Everything the kernel's raw pointers rely on, with what was expected and what came.
    _attention_checks.check_structure(qkv, cu_seqlens, max_seqlen, num_heads, head_dim)
    op = "attention"
    dev = qkv.device
    if dev.type == "cpu" and not _kernels_interpreted():
        raise ValueError(f"{op}: qkv is on cpu but the Triton interpreter is off "
                         "(set TRITON_INTERPRET=1 before importing fastradio, or move qkv to cuda)")
    if dev.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"{op}: qkv must be on cuda (or cpu under TRITON_INTERPRET=1), got {dev}")
    if dev.type == "cuda" and not _kernels_interpreted() and torch.cuda.is_available():
        cap = torch.cuda.get_device_capability(dev)
        if cap < _MIN_CAPABILITY:
            raise ValueError(f"{op}: the Triton kernels need compute capability 8.0+, {dev} has {cap[0]}.{cap[1]}")


def _attention_impl(qkv: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, num_heads: int,
                    head_dim: int) -> torch.Tensor:
    _check_attention(qkv, cu_seqlens, max_seqlen, num_heads, head_dim)
    _attention_checks.check_values(qkv, cu_seqlens, max_seqlen)
    return _launch_attention(qkv, cu_seqlens, max_seqlen, num_heads, head_dim)


def _attention_fake(qkv: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, num_heads: int,
                    head_dim: int) -> torch.Tensor:
    _check_attention(qkv, cu_seqlens, max_seqlen, num_heads, head_dim)
    return qkv.new_empty((qkv.shape[0], num_heads * head_dim))


_attention_op = None
if _IMPORT_ERROR is None and _ATTENTION_IMPORT_ERROR is None:
    _attention_op = _register("attention", _attention_impl, _attention_fake)


def attention(qkv: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, num_heads: int,
              head_dim: int) -> torch.Tensor:
    """Variable-length non-causal attention (ops.attention): qkv (N, 3*H*Dh) → (N, H*Dh) in qkv's dtype.

    qkv holds the q, k and v thirds of each packed token, heads contiguous inside each third;
    cu_seqlens (S+1,) int32 on qkv's device delimits the images (0 = cu[0] <= ... <= cu[S] = N);
    max_seqlen >= every image's length; head_dim 64, 72 or 80; scale head_dim^-0.5. Each token attends
    to its own image only. Same contract as ``fastradio.backends.reference.attention``.
    """
    if _attention_op is None:
        raise RuntimeError(f"the triton backend cannot run attention: {_IMPORT_ERROR or _ATTENTION_IMPORT_ERROR}")
    _check_attention(qkv, cu_seqlens, max_seqlen, num_heads, head_dim)
    _attention_checks.check_values(qkv, cu_seqlens, max_seqlen)
    return _attention_op(qkv, cu_seqlens, max_seqlen, num_heads, head_dim)

# --- end attention --------------------------------------------------------------------------------


# --- linear ---------------------------------------------------------------------------------------
# The block GEMMs with fused epilogues (ops.linear; kernels/linear.py): act(x·Wᵀ + b) + residual,
# weight in nn.Linear's (M, K) layout, activation "none" or exact-erf "gelu", fp32 accumulation and
# epilogue, one rounding. Argument checks: backends/checks/linear.py (shared with the cuda backend)
# plus the device helper of the add_layer_norm section above.

from fastradio.backends.checks.linear import check_linear as _check_linear_args

_LINEAR_IMPORT_ERROR: str | None = None
if _IMPORT_ERROR is None:
    try:
        from fastradio.kernels.linear import linear as _launch_linear
    except Exception as e:  # a broken kernel file must not take the other ops down
        _LINEAR_IMPORT_ERROR = f"kernels/linear.py failed to import ({type(e).__name__}: {e})"


def _linear_refusals(device: torch.device, dtype: torch.dtype, **facts) -> list[str]:
    return [] if _LINEAR_IMPORT_ERROR is None else [_LINEAR_IMPORT_ERROR]


_OP_REFUSALS["linear"] = _linear_refusals


def _check_linear(x, weight, bias, activation, residual) -> None:
    # Everything the kernel's raw pointers rely on (checks/linear.py, shared with the cuda
    # backend), then where this backend's kernels run.
    _check_linear_args(x, weight, bias, activation, residual)
    _check_kernel_device("linear", "x", x.device)


def _linear_impl(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str,
                 residual: torch.Tensor | None) -> torch.Tensor:
    _check_linear(x, weight, bias, activation, residual)
    return _launch_linear(x, weight, bias, activation, residual)


def _linear_fake(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str,
                 residual: torch.Tensor | None) -> torch.Tensor:
    _check_linear(x, weight, bias, activation, residual)
    return x.new_empty((x.shape[0], weight.shape[0]))


_linear_op = None
if _IMPORT_ERROR is None and _LINEAR_IMPORT_ERROR is None:
    _linear_op = _register("linear", _linear_impl, _linear_fake)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str = "none",
           residual: torch.Tensor | None = None) -> torch.Tensor:
    """act(x·Wᵀ + bias) + residual (ops.linear) → (N, M) in x's dtype.

    x (N, K), weight (M, K) as nn.Linear stores it, bias (M,) or None, residual (N, M) or None, all
    contiguous, in x's dtype (float32, float16 or bfloat16) and on x's device; activation "none" or
    "gelu" (exact erf). fp32 accumulation (IEEE fp32 products for fp32 inputs, no TF32) and fp32
    epilogue, one rounding. Same contract as ``fastradio.backends.reference.linear``.
    """
    if _linear_op is None:
        raise RuntimeError(f"the triton backend cannot run linear: {_IMPORT_ERROR or _LINEAR_IMPORT_ERROR}")
    _check_linear(x, weight, bias, activation, residual)
    return _linear_op(x, weight, bias, activation, residual)

# --- end linear -----------------------------------------------------------------------------------
