"""Helpers shared by the Triton kernels: interpreter detection and the bf16 rounding the
interpreter needs."""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["round_to_bf16", "is_interpreted"]


@triton.jit
def round_to_bf16(x):
    # fp32 -> bf16 with round-to-nearest-even done on the bits. Only used under the interpreter,
    # whose own fp32 -> bf16 cast truncates (Triton 3.7); on GPU the native cast is already RNE.
    bits = x.to(tl.uint32, bitcast=True)
    rounded = ((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16).to(tl.uint16)
    rounded = tl.where(x != x, 0x7FC0, rounded)  # NaN must not carry into the exponent
    return rounded.to(tl.bfloat16, bitcast=True)


def is_interpreted() -> bool:
    """True when the kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1 when
    ``fastradio.kernels`` was imported: ``triton.jit`` decides at decoration time)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(round_to_bf16, InterpretedFunction)
