"""Helpers shared by the kernel tests (tests/test_op_*.py, tests/test_cuda_*.py): the one rule for
when a GPU test runs, skips or fails; the seeds tests draw their inputs from; dtype ids."""

from __future__ import annotations

import functools
import os
import zlib

import pytest
import torch

from fastradio import backends

# -- seeds ------------------------------------------------------------------------------------------

#: Environment variable choosing the draw of a test's random inputs (default "0").
SEED_ENV = "FASTRADIO_TEST_SEED"
#: How many draws a seed-looped check makes inside the test itself.
SEED_LOOP = 6


def seed_runs(n: int = SEED_LOOP) -> list[str]:
    """The draws a seed-looped check runs over: FASTRADIO_TEST_SEED (default 0) and the n - 1
    integers after it ("0".."5" by default), so a property that holds for only some draws fails
    in a plain run, not only when someone happens to set FASTRADIO_TEST_SEED."""
    first = os.environ.get(SEED_ENV, "0")
    try:
        base = int(first)
    except ValueError:
        return [first] + [f"{first}+{i}" for i in range(1, n)]
    return [str(base + i) for i in range(n)]


def case_seed(*parts, run: str | None = None) -> int:
    """A generator seed for one case (``parts`` name it) in draw ``run`` (default: the draw
    FASTRADIO_TEST_SEED names)."""
    run = os.environ.get(SEED_ENV, "0") if run is None else run
    return zlib.crc32(repr((run,) + parts).encode())


# -- when a GPU test runs ---------------------------------------------------------------------------

def gpu_unusable_reason() -> str | None:
    """Why torch's CUDA device cannot run fastradio._C's kernels although torch sees one, or None.

    With an NVIDIA driver older than the CUDA runtime that _C links statically, ``_C.device_count()``
    is 0 while torch (whose runtime may be older) sees the GPU. Skipping every GPU test then would
    make a GPU run look green having run nothing, so this state is a failure with the fix."""
    if not torch.cuda.is_available():
        return None
    try:
        from fastradio import _C
    except ImportError as e:
        return f"torch sees a CUDA device but fastradio._C, the compiled extension, does not import: {e}"
    if _C.device_count() > 0:
        return None
    cuda = _C.build_info().get("cuda_version", "?")
    return (f"torch sees a CUDA device but fastradio._C (built against CUDA {cuda}) finds none: the NVIDIA "
            f"driver must support CUDA {cuda} or newer (nvidia-smi shows the highest CUDA version the driver "
            f"supports, top right). Update the driver, or install the fastradio build for the CUDA version "
            f"the driver supports (fastradio-cu12 / fastradio-cu13, or a source build with that toolkit). "
            f"GPU tests fail rather than skip here, so that a GPU run cannot pass without running them.")


def has_gpu() -> bool:
    """torch sees a CUDA device and fastradio._C can use it."""
    return torch.cuda.is_available() and gpu_unusable_reason() is None


def require_gpu() -> None:
    """Inside a test that needs fastradio._C on a GPU: skip when there is no CUDA device; FAIL
    (never skip) when torch sees one that _C cannot use (``gpu_unusable_reason``)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)")
    why = gpu_unusable_reason()
    if why:
        pytest.fail(why, pytrace=False)


def needs_gpu(fn):
    """Decorator: the test runs only with a GPU that fastradio._C can use (``require_gpu``)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        require_gpu()
        return fn(*args, **kwargs)

    return wrapper


#: For the tests of the no-driver / no-GPU path of _C: skipped where _C has a device.
no_gpu = pytest.mark.skipif(has_gpu(), reason="checks the no-driver/no-GPU path")


# -- Triton kernels compiled for a named GPU without one ---------------------------------------------

#: The opening lines of the tests' ``_COMPILE_CHECK`` scripts (run with ``python -c``, without
#: TRITON_INTERPRET). The one reason to skip is a Triton without its NVIDIA backend; anything else
#: (a kernel that does not compile, an API this Triton lacks) raises, the script exits non-zero and
#: the test fails. A catch-all skip once hid an attention config (head dim 72 with an 8-wide dot)
#: that neither Triton 3.6 nor 3.7 compiles.
TRITON_COMPILE_PRELUDE = r"""
import json, sys
import triton.backends
if "nvidia" not in triton.backends.backends:
    print(json.dumps({"skip": f"this Triton has no NVIDIA backend (it has {sorted(triton.backends.backends)})"}))
    sys.exit(0)
"""


def dtype_id(dt: torch.dtype) -> str:
    """Short test id for a dtype: ``float16`` for ``torch.float16``."""
    return str(dt).replace("torch.", "")


def backend_or_skip(name: str, op: str, device: str, dtype: torch.dtype = torch.float32, **facts):
    """The backend module ``name`` if it can run ``op`` on (device, dtype) here; otherwise skip
    the test with the dispatcher's own reasons. The cuda backend on a CUDA device follows
    ``require_gpu``: a GPU that torch sees and _C cannot use fails the test."""
    if device == "cuda":
        if name == "cuda":
            require_gpu()
        elif not torch.cuda.is_available():
            pytest.skip("no CUDA device")
    reasons = backends.refusals(name, op, torch.device(device), dtype, **facts)
    if reasons:
        pytest.skip(f"{name} on {device}: " + "; ".join(reasons))
    return backends.get(name)
