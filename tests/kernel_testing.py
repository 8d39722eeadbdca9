"""Helpers shared by the per-op kernel tests (tests/test_op_*.py)."""

from __future__ import annotations

import pytest
import torch

from fastradio import backends


def dtype_id(dt: torch.dtype) -> str:
    """Short test id for a dtype: ``float16`` for ``torch.float16``."""
    return str(dt).replace("torch.", "")


def backend_or_skip(name: str, op: str, device: str, dtype: torch.dtype = torch.float32, **facts):
    """The backend module ``name`` if it can run ``op`` on (device, dtype) here; otherwise skip
    the test with the dispatcher's own reasons."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    reasons = backends.refusals(name, op, torch.device(device), dtype, **facts)
    if reasons:
        pytest.skip(f"{name} on {device}: " + "; ".join(reasons))
    return backends.get(name)
