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

__all__ = ["supports", "pos_embed", "OP_NAMES"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MIN_CAPABILITY = (8, 0)

#: The torch.library names of the ops this backend registers, by op.
OP_NAMES: dict[str, str] = {"pos_embed": "fastradio::triton_pos_embed"}

try:
    import triton  # noqa: F401  (the import is the availability check)

    from fastradio.kernels.pos_embed import is_interpreted as _kernels_interpreted
    from fastradio.kernels.pos_embed import pos_embed as _launch_pos_embed

    _IMPORT_ERROR: str | None = None
except Exception as e:  # ImportError, or a broken Triton install failing on import
    _IMPORT_ERROR = f"triton is not importable ({type(e).__name__}: {e})"


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


def _pos_embed_impl(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype) -> torch.Tensor:
    _check_pos_embed(table, h, w, out_dtype)
    return _launch_pos_embed(table, h, w, out_dtype)


def _pos_embed_fake(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype) -> torch.Tensor:
    _check_pos_embed(table, h, w, out_dtype)
    return table.new_empty((h * w, table.shape[2]), dtype=out_dtype)


_pos_embed_op = None
if _IMPORT_ERROR is None:
    if _kernels_interpreted():
        _pos_embed_op = torch.library.custom_op(OP_NAMES["pos_embed"], _pos_embed_impl, mutates_args=())
        _pos_embed_op.register_fake(_pos_embed_fake)
    else:
        _pos_embed_op = torch.library.triton_op(OP_NAMES["pos_embed"], _pos_embed_impl, mutates_args=())


def pos_embed(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype) -> torch.Tensor:
    """Resized position table: table (G, G, D) fp32 → (h*w, D) ``out_dtype`` (spec §3).

    Bilinear, align_corners=True, fp32 math, top-left h x w window of the (m, m) resize,
    m = max(h, w). Same contract as ``fastradio.backends.reference.pos_embed``.
    """
    if _pos_embed_op is None:
        raise RuntimeError(f"the triton backend is unavailable: {_IMPORT_ERROR}")
    _check_pos_embed(table, h, w, out_dtype)
    return _pos_embed_op(table, h, w, out_dtype)
