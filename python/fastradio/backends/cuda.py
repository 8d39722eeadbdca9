"""CUDA backend: fastradio's C++/CUDA core, ``fastradio._C``, as torch custom ops (DESIGN.md §4-5).

Every op follows one pattern (copy it for a new op):

1. ``<op>(...)``: the op's exact signature (``fastradio.ops``) plus a keyword-only ``tier``.
   It checks what the kernel's raw pointers rely on (dtype, shape, device, contiguity, sizes),
   raising ``TypeError``/``ValueError`` that name what was expected and what came.
2. ``torch.ops.fastradio.cuda_<op>``: a ``torch.library`` custom op. Its fake implementation
   gives the output's shape and dtype (FakeTensor, ``torch.compile(fullgraph=True)``); the real
   one allocates the output and calls ``_C.<op>_fwd`` with ``data_ptr()``s, sizes, the dtype and
   tier codes, and torch's current stream of the tensor's device.
3. ``_C.<op>_fwd`` checks again (pointers, sizes, codes, driver, arch) and launches.

Tiers (``_C.tiers()``): ``tier=None`` takes ``FASTRADIO_TIER`` (``cuda_core``, or per op:
``pos_embed:cuda_core,attention:mma_sm80``), else the most specialised tier compiled into this
build that runs on the device. ``supports`` refuses a forced tier that cannot run.
"""

from __future__ import annotations

import math
import os

import torch

from fastradio.backends import op_setting

try:
    from fastradio import _C
except ImportError as e:  # the dispatcher reports this as the backend's refusal
    raise ImportError(
        f"fastradio._C, the compiled C++/CUDA extension, is not importable ({e}); build it with "
        "`pip install --no-build-isolation .` and a CUDA compiler (see csrc/README.md)") from e

__all__ = ["supports", "pos_embed", "add_layer_norm", "resolve_tier", "build_info", "OP_NAMES", "TIER_ENV"]

#: Environment variable forcing a tier, for every op ("cuda_core") or per op ("pos_embed:cuda_core").
TIER_ENV = "FASTRADIO_TIER"

#: The torch.library names of the ops this backend registers, by op.
OP_NAMES: dict[str, str] = {"pos_embed": "fastradio::cuda_pos_embed", "add_layer_norm": "fastradio::cuda_add_layer_norm"}

_BUILD: dict = _C.build_info()
_TIER_CODES: dict[str, int] = dict(_C.tiers())
_DTYPE_CODES: dict[torch.dtype, int] = {getattr(torch, name): code for name, code in _C.dtype_codes().items()}
_AUTO = -1  # tier code meaning "resolve on the device at call time"


def build_info() -> dict:
    """What the extension was compiled with: toolchain, CUDA version, archs, tiers per op."""
    return dict(_BUILD)


# --- tiers ------------------------------------------------------------------------------------------

def _forced_tier(op: str) -> str | None:
    return op_setting(TIER_ENV, op)


_CAPABILITY: dict[int, tuple[int, int]] = {}


def _capability(device: torch.device) -> tuple[int, int]:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _CAPABILITY:
        _CAPABILITY[index] = torch.cuda.get_device_capability(index)
    return _CAPABILITY[index]


def _tier_refusal(op: str, tier: str, cap: tuple[int, int]) -> str:
    if tier not in _TIER_CODES:
        return f"unknown tier {tier!r} (known tiers: {', '.join(_TIER_CODES)})"
    return _C.check_arch(op, tier, cap[0], cap[1])


def resolve_tier(op: str, device: torch.device | str, tier: str | None = None) -> str:
    """The tier that runs ``op`` on the CUDA ``device``: ``tier``, else ``FASTRADIO_TIER``, else the
    most specialised tier this build compiled that runs there. Raises ``RuntimeError`` if none can."""
    device = torch.device(device)
    cap = _capability(device)
    forced, source = (tier, "the tier argument") if tier else (_forced_tier(op), TIER_ENV)
    if forced:
        why = _tier_refusal(op, forced, cap)
        if why:
            raise RuntimeError(f"{op}: tier {forced!r} (from {source}) cannot run on {device} "
                               f"(compute capability {cap[0]}.{cap[1]}): {why}")
        return forced
    compiled = sorted(_BUILD["tiers"].get(op, []), key=lambda t: _TIER_CODES[t], reverse=True)
    whys = []
    for t in compiled:
        why = _C.check_arch(op, t, cap[0], cap[1])
        if not why:
            return t
        whys.append(why)
    raise RuntimeError(f"{op}: no compiled tier runs on {device} (compute capability {cap[0]}.{cap[1]}): "
                       + ("; ".join(whys) or f"{op} is not compiled in this build"))


_RESOLVED: dict[tuple, int] = {}


def _tier_code(op: str, device: torch.device, code: int) -> int:
    if code != _AUTO:
        return code
    key = (op, device.index, os.environ.get(TIER_ENV, ""))
    if key not in _RESOLVED:
        _RESOLVED[key] = _TIER_CODES[resolve_tier(op, device)]
    return _RESOLVED[key]


def _tier_arg(fn: str, tier: str | None) -> int:
    if tier is None:
        return _AUTO
    if tier not in _TIER_CODES:
        raise ValueError(f"{fn}: tier must be None or one of {', '.join(_TIER_CODES)}, got {tier!r}")
    return _TIER_CODES[tier]


# --- what this backend can run --------------------------------------------------------------------

def supports(op: str, device: torch.device, dtype: torch.dtype, **facts) -> list[str]:
    """Reasons this backend cannot run ``op`` on (device, dtype); empty when it can."""
    if op not in OP_NAMES:
        return [f"the cuda backend does not implement {op!r}"]
    reasons = []
    device = torch.device(device)
    if op not in _BUILD["tiers"]:
        reasons.append(f"{op} is not compiled in this build of fastradio._C")
    if device.type != "cuda":
        reasons.append(f"device {device} is not a CUDA device")
    elif not torch.cuda.is_available():
        reasons.append("device is cuda but torch.cuda.is_available() is False (CPU-only torch, or no GPU/driver)")
    elif _C.device_count() == 0:
        reasons.append(f"fastradio._C (built against CUDA {_BUILD['cuda_version']}) finds no usable CUDA device "
                       "although torch does: the driver is probably older than that CUDA version needs")
    elif op in _BUILD["tiers"]:
        try:
            resolve_tier(op, device)
        except RuntimeError as e:
            reasons.append(str(e))
    if dtype not in _DTYPE_CODES:
        reasons.append(f"dtype {dtype} is not one of {', '.join(str(d) for d in _DTYPE_CODES)}")
    residual = facts.get("residual_dtype")
    if op == "add_layer_norm" and residual is not None and (residual, dtype) not in ADD_LAYER_NORM_DTYPES:
        reasons.append(f"add_layer_norm takes (residual, compute) dtypes {_pairs(ADD_LAYER_NORM_DTYPES)}, "
                       f"got ({residual}, {dtype})")
    return reasons


# --- shared argument checks -----------------------------------------------------------------------

def _expect_tensor(fn: str, name: str, t, *, dtype: torch.dtype, ndim: int) -> None:
    """A contiguous CUDA tensor of ``dtype`` with ``ndim`` dims (the kernels take raw pointers)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != dtype:
        raise TypeError(f"{fn}: {name} must be {dtype}, got {t.dtype}")
    if t.dim() != ndim:
        raise ValueError(f"{fn}: {name} must have {ndim} dims, got shape {tuple(t.shape)}")
    if t.device.type != "cuda":
        raise ValueError(f"{fn}: {name} must be on a CUDA device, got {t.device}")
    if not t.is_contiguous():
        raise ValueError(f"{fn}: {name} must be contiguous, got strides {t.stride()} for shape {tuple(t.shape)}")


def _expect_size(fn: str, name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, torch.SymInt)) or v < 1:
        raise ValueError(f"{fn}: {name} must be an int >= 1, got {v!r}")


def _expect_out_dtype(fn: str, dtype) -> None:
    if dtype not in _DTYPE_CODES:
        raise TypeError(f"{fn}: out_dtype must be one of {', '.join(str(d) for d in _DTYPE_CODES)}, got {dtype}")


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


@torch.library.custom_op(OP_NAMES["pos_embed"], mutates_args=(), device_types="cuda")
def _pos_embed_op(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype, tier: int) -> torch.Tensor:
    g, _, d = table.shape
    out = torch.empty((h * w, d), dtype=out_dtype, device=table.device)
    code = _tier_code("pos_embed", table.device, tier)
    with torch.cuda.device(table.device):
        stream = torch.cuda.current_stream(table.device).cuda_stream
        _C.pos_embed_fwd(table.data_ptr(), out.data_ptr(), g, d, h, w, _DTYPE_CODES[out_dtype], code, stream)
    return out


@_pos_embed_op.register_fake
def _pos_embed_fake(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype, tier: int) -> torch.Tensor:
    return table.new_empty((h * w, table.shape[2]), dtype=out_dtype)


def pos_embed(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype, *, tier: str | None = None) -> torch.Tensor:
    """Resized position table: table (G, G, D) fp32 CUDA → (h*w, D) ``out_dtype`` (spec §3).

    Bilinear resize to (m, m), m = max(h, w), align_corners=True, fp32 math, top-left h x w
    window, cast to ``out_dtype`` (float32, float16 or bfloat16). Same contract as
    ``fastradio.backends.reference.pos_embed``. ``tier``: see the module docstring.
    """
    _check_pos_embed(table, h, w, out_dtype)
    return _pos_embed_op(table, h, w, out_dtype, _tier_arg("pos_embed", tier))


# --- add_layer_norm -------------------------------------------------------------------------------

#: (residual dtype, compute dtype) pairs the kernel takes: equal, or an fp32 residual stream under
#: fp16/bf16 compute (DESIGN.md decision 12).
ADD_LAYER_NORM_DTYPES: tuple[tuple[torch.dtype, torch.dtype], ...] = (
    (torch.float32, torch.float32), (torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16),
    (torch.float32, torch.float16), (torch.float32, torch.bfloat16))


def _pairs(pairs) -> str:
    return ", ".join(f"({a}, {b})" for a, b in pairs)


def _check_add_layer_norm(x, delta, weight, bias, eps) -> None:
    fn = "add_layer_norm"
    for name, t in (("x", x), ("weight", weight), ("bias", bias)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if (x.dtype, weight.dtype) not in ADD_LAYER_NORM_DTYPES:
        raise TypeError(f"{fn}: (x.dtype, weight.dtype) = (residual, compute) dtypes must be one of "
                        f"{_pairs(ADD_LAYER_NORM_DTYPES)}, got ({x.dtype}, {weight.dtype})")
    if x.dim() != 2:
        raise ValueError(f"{fn}: x must have shape (N, D), got shape {tuple(x.shape)}")
    _expect_tensor(fn, "x", x, dtype=x.dtype, ndim=2)
    n, d = x.shape
    if d < 1:
        raise ValueError(f"{fn}: x must have shape (N, D) with D >= 1, got {tuple(x.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        _expect_tensor(fn, name, t, dtype=weight.dtype, ndim=1)
        if t.shape[0] != d:
            raise ValueError(f"{fn}: {name} must have shape ({d},) to match x {tuple(x.shape)}, got {tuple(t.shape)}")
    if delta is not None:
        if not isinstance(delta, torch.Tensor):
            raise TypeError(f"{fn}: delta must be a torch.Tensor or None, got {type(delta).__name__}")
        _expect_tensor(fn, "delta", delta, dtype=weight.dtype, ndim=2)
        if delta.shape != x.shape:
            raise ValueError(f"{fn}: delta must have x's shape {tuple(x.shape)}, got {tuple(delta.shape)}")
    for name, t in (("weight", weight), ("bias", bias), ("delta", delta)):
        if t is not None and t.device != x.device:
            raise ValueError(f"{fn}: {name} must be on x's device {x.device}, got {t.device}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{fn}: eps must be a finite number >= 0, got {eps!r}")


@torch.library.custom_op(OP_NAMES["add_layer_norm"], mutates_args=(), device_types="cuda")
def _add_layer_norm_op(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                       eps: float, tier: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Outputs may not alias inputs: without delta, x_new is an empty (0, D) placeholder and the
    # wrapper returns x itself.
    n, d = x.shape
    x_new = torch.empty_like(x) if delta is not None else x.new_empty((0, d))
    out = torch.empty((n, d), dtype=weight.dtype, device=x.device)
    if n == 0:
        return x_new, out
    code = _tier_code("add_layer_norm", x.device, tier)
    with torch.cuda.device(x.device):
        stream = torch.cuda.current_stream(x.device).cuda_stream
        _C.add_layer_norm_fwd(x.data_ptr(), 0 if delta is None else delta.data_ptr(), weight.data_ptr(),
                              bias.data_ptr(), 0 if delta is None else x_new.data_ptr(), out.data_ptr(), n, d, eps,
                              _DTYPE_CODES[x.dtype], _DTYPE_CODES[weight.dtype], code, stream)
    return x_new, out


@_add_layer_norm_op.register_fake
def _add_layer_norm_fake(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                         eps: float, tier: int) -> tuple[torch.Tensor, torch.Tensor]:
    n, d = x.shape
    x_new = torch.empty_like(x) if delta is not None else x.new_empty((0, d))
    return x_new, x.new_empty((n, d), dtype=weight.dtype)


def add_layer_norm(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float, *, tier: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add fused with LayerNorm: ``(x_new, a)`` with ``x_new = x + delta`` and
    ``a = LayerNorm(x_new) * weight + bias``.

    x (N, D) in the residual dtype; delta (N, D) in the compute dtype, or None (no add: ``x_new``
    is ``x`` itself); weight, bias (D,) in the compute dtype; all contiguous on one CUDA device.
    (residual, compute) dtypes: ``ADD_LAYER_NORM_DTYPES``. ``x_new`` is one fp32 add rounded to
    x's dtype; ``a`` (N, D) in weight's dtype uses fp32 statistics (biased variance, ``eps``
    added). Same contract as ``fastradio.backends.reference.add_layer_norm``. ``tier``: see the
    module docstring.
    """
    _check_add_layer_norm(x, delta, weight, bias, eps)
    x_new, a = _add_layer_norm_op(x, delta, weight, bias, float(eps), _tier_arg("add_layer_norm", tier))
    return (x if delta is None else x_new), a
