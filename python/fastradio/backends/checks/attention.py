"""attention's argument checks, shared by the triton and cuda backends (see the package docstring).

Structural checks always (types, sizes, dtypes, contiguity, qkv and cu_seqlens on one device):
everything a kernel's raw pointers rely on apart from the device kind, which each backend checks
itself. cu_seqlens' values (start 0, non-decreasing, end N, no image longer than max_seqlen) need
them on the host: free on CPU, one sync on GPU, so they are checked once per cu_seqlens tensor
version (the model passes the same tensor to every block) and skipped while tracing
(torch.compile, FakeTensor) or capturing a CUDA graph (DESIGN.md decision 13). The kernels clamp
every bound to [0, N], so an unchecked, malformed cu_seqlens can give wrong numbers but never
touches memory outside qkv and out.
"""

from __future__ import annotations

import weakref

import torch

__all__ = ["HEAD_DIMS", "DTYPES", "check_structure", "check_values", "CHECKED"]

#: The head dims both fast backends' kernels are built for (C-RADIOv2/v3-B/L/g: 64,
#: C-RADIOv4-SO400M: 72, C-RADIOv2/v3/v4-H: 80).
HEAD_DIMS: tuple[int, ...] = (64, 72, 80)
HEAD_DIMS_TEXT = "64, 72 or 80"
DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: (weakref to the last cu_seqlens whose values passed, its _version, N, max_seqlen).
CHECKED: list = [None]

_OP = "attention"


def _is_int(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, torch.SymInt))


def check_structure(qkv, cu_seqlens, max_seqlen, num_heads, head_dim) -> None:
    """Raise TypeError/ValueError naming what was expected and what came."""
    op = _OP
    for name, t in (("qkv", qkv), ("cu_seqlens", cu_seqlens)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not _is_int(num_heads) or num_heads < 1:
        raise ValueError(f"{op}: num_heads must be an int >= 1, got {num_heads!r}")
    if not _is_int(head_dim) or head_dim not in HEAD_DIMS:
        raise ValueError(f"{op}: head_dim must be {HEAD_DIMS_TEXT} (the head dims the kernel is built "
                         f"for), got {head_dim!r}")
    if not _is_int(max_seqlen) or max_seqlen < 1:
        raise ValueError(f"{op}: max_seqlen must be an int >= 1, got {max_seqlen!r}")
    if qkv.dtype not in DTYPES:
        raise TypeError(f"{op}: qkv must be float32, float16 or bfloat16, got {qkv.dtype}")
    width = 3 * num_heads * head_dim
    if qkv.dim() != 2 or qkv.shape[1] != width:
        raise ValueError(f"{op}: qkv must have shape (N, 3*num_heads*head_dim) = (N, {width}) for "
                         f"{num_heads} heads of {head_dim}, got {tuple(qkv.shape)}")
    if not qkv.is_contiguous():
        raise ValueError(f"{op}: qkv must be contiguous, got strides {qkv.stride()} for shape "
                         f"{tuple(qkv.shape)} (call .contiguous())")
    if cu_seqlens.dtype != torch.int32:
        raise TypeError(f"{op}: cu_seqlens must be int32, got {cu_seqlens.dtype}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1:
        raise ValueError(f"{op}: cu_seqlens must have shape (S+1,) with S >= 0 images, got {tuple(cu_seqlens.shape)}")
    if not cu_seqlens.is_contiguous():
        raise ValueError(f"{op}: cu_seqlens must be contiguous, got stride {cu_seqlens.stride()}")
    if cu_seqlens.device != qkv.device:
        raise ValueError(f"{op}: cu_seqlens must be on qkv's device {qkv.device}, got {cu_seqlens.device}")


def host_values(cu_seqlens: torch.Tensor) -> list[int]:
    """cu_seqlens on the host: the one sync of the value check (a function so tests can count it)."""
    return cu_seqlens.tolist()


def check_values(qkv: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> None:
    """cu_seqlens' values against N and max_seqlen, where that costs no tracing break (module doc)."""
    if (type(cu_seqlens) is not torch.Tensor or type(qkv) is not torch.Tensor or torch.compiler.is_compiling()
            or cu_seqlens.device.type == "meta"):
        return  # FakeTensor / FunctionalTensor / tracing: values unknown
    n = qkv.shape[0]
    last = CHECKED[0]
    if last is not None and last[0]() is cu_seqlens and last[1:] == (cu_seqlens._version, n, max_seqlen):
        return
    if cu_seqlens.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return
    cu = host_values(cu_seqlens)
    op = _OP
    if cu[0] != 0:
        raise ValueError(f"{op}: cu_seqlens must start at 0, got {cu[0]}")
    for i in range(1, len(cu)):
        if cu[i] < cu[i - 1]:
            raise ValueError(f"{op}: cu_seqlens must be non-decreasing, got {cu[i]} after {cu[i - 1]} at index {i}")
    if cu[-1] != n:
        raise ValueError(f"{op}: cu_seqlens must end at N = qkv.shape[0] = {n}, got {cu[-1]}")
    longest = max((b - a for a, b in zip(cu, cu[1:])), default=0)
    if longest > max_seqlen:
        raise ValueError(f"{op}: max_seqlen must be >= the longest image ({longest} tokens), got {max_seqlen}")
    CHECKED[0] = (weakref.ref(cu_seqlens), cu_seqlens._version, n, max_seqlen)
