"""Helpers shared by the Triton kernels: interpreter detection, the bf16 rounding the
interpreter needs, and a fix to Triton 3.6's interpreter under NumPy >= 2.4."""

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


def _fix_interpreter_index() -> bool:
    """Make Triton's interpreter accept a scalar tensor as a loop bound under NumPy >= 2.4.

    The interpreter holds a scalar as a 1-element 1-D array and, up to Triton 3.6, converts it
    with ``int(data)`` in ``tensor.__index__`` (what ``range(0, n, BLOCK)`` calls on a runtime
    ``n``); NumPy 2.4 made ``int()`` of an array with ndim > 0 a TypeError, so every kernel loop
    with a runtime bound fails under TRITON_INTERPRET=1 (triton-lang/triton#9171; Triton 3.7
    converts ``data.squeeze()``). This probes the interpreter's own ``__index__`` on a throwaway
    class and, only where it fails, wraps ``_patch_lang_tensor`` so launches install the 3.7
    conversion (and restore it afterwards, as the interpreter restores its own patches). Nothing
    changes for compiled kernels, nor on Triton 3.7, nor with NumPy < 2.4. True when it patched."""
    try:
        import numpy as np
        from triton.runtime import interpreter
    except ImportError:
        return False
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_fastradio_index_fix", False):
        return False

    class _Probe:
        def __init__(self):
            self.handle = type("Handle", (), {"data": np.array([3], dtype=np.int32)})()

    class _Scope:
        def set_attr(self, obj, name, value):
            setattr(obj, name, value)

    try:
        original(_Probe, _Scope())
        if range(_Probe())[-1] == 2:
            return False  # this interpreter converts scalars fine
    except TypeError:
        pass  # int() of a 1-element 1-D array: the case to fix
    except Exception:
        return False  # an interpreter this probe does not understand: leave it alone

    def _patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))

    _patch_lang_tensor._fastradio_index_fix = True
    interpreter._patch_lang_tensor = _patch_lang_tensor
    return True


_fix_interpreter_index()
