"""Backends and the per-op dispatcher (DESIGN.md §4).

A backend is a module in this package that exposes, for each op it implements, a function with
the op's exact signature (see ``fastradio.ops``) and one function

    supports(op: str, device: torch.device, dtype: torch.dtype, **facts) -> list[str]

that returns the reasons it cannot run ``op`` here (an empty list means it can). ``facts`` are
op-specific keywords (e.g. ``head_dim``) a backend may use to refuse; unknown ones are ignored.

``select`` picks the backend for one op: an explicit choice is honoured or refused with every
reason; ``"auto"`` walks ``AUTO_ORDER`` and takes the first backend with no reason to refuse.
The order is the place to encode measured speed (benchmarks/results/); until a GPU run has
measured an op, the CUDA backend goes first for the ops it has, because it serves every arch.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import torch

__all__ = ["BACKENDS", "AUTO_ORDER", "BackendUnavailable", "get", "select", "refusals", "op_setting", "auto_order", "ENV_VAR"]

#: All backends, by name.
BACKENDS: tuple[str, ...] = ("reference", "cuda", "triton")

#: Preference of ``backend="auto"``, per op; an op not listed uses ``_DEFAULT_ORDER``.
_DEFAULT_ORDER: tuple[str, ...] = ("cuda", "triton", "reference")
AUTO_ORDER: dict[str, tuple[str, ...]] = {}

#: Environment override of the backend choice, e.g. ``FASTRADIO_BACKEND=triton`` (forces one
#: backend for every op) or ``FASTRADIO_BACKEND=pos_embed:triton,attention:reference``.
ENV_VAR = "FASTRADIO_BACKEND"


def auto_order(op: str, device: torch.device, dtype: torch.dtype | None = None) -> tuple[str, ...]:
    """Backends "auto" tries for ``op`` on ``device`` (in ``dtype``), best first. On CPU only the
    reference: Triton on CPU is its interpreter, a testing tool orders of magnitude slower, which
    runs only when asked for by name.

    Hopper (sm_90), fp16/bf16: where the CUDA backend would run a tensor-core op on a pre-Hopper
    ``mma.sync`` tier (``mma_sm80``: no ``wgmma_sm90a`` tier for the op, or none compiled), Triton
    goes first, since its ``tl.dot`` lowers to wgmma there (issue 15; a GPU measurement may reorder
    this). ``wgmma_sm90a``, ``cuda_core`` (the memory-bound ops) and a tier forced through
    FASTRADIO_TIER keep the CUDA backend first."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return ("reference",)
    order = AUTO_ORDER.get(op, _DEFAULT_ORDER)
    if dtype in (torch.float16, torch.bfloat16) and "triton" in order and not _cuda_leads_on_hopper(op, dev, dtype):
        order = ("triton", *(b for b in order if b != "triton"))
    return order


def _cuda_leads_on_hopper(op: str, device: torch.device, dtype: torch.dtype) -> bool:
    """False only on an sm_90 device where the CUDA backend would run ``op`` on an ``mma.sync``
    tier (no tier forced through FASTRADIO_TIER: a forced tier is what the user wants run)."""
    try:
        cuda = get("cuda")
        if cuda._common._capability(device)[0] != 9 or cuda._forced_tier(op):
            return True
        return cuda.resolve_tier(op, device, dtype=dtype) not in ("mma_sm80", "mma_sm75")
    except Exception:  # no extension, no driver, no tier: keep the order (cuda then refuses by itself)
        return True


class BackendUnavailable(RuntimeError):
    """Raised when a requested backend cannot run an op; the message lists every reason."""


def get(name: str) -> ModuleType:
    """The backend module called ``name`` (imported lazily: ``cuda`` needs the extension)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)} or 'auto'")
    return importlib.import_module(f"{__name__}.{name}")


def refusals(name: str, op: str, device: torch.device, dtype: torch.dtype, **facts) -> list[str]:
    """Why backend ``name`` cannot run ``op`` on (device, dtype); empty if it can."""
    try:
        mod = get(name)
    except ImportError as e:  # e.g. the compiled extension is missing from this install
        return [f"backend {name!r} failed to import: {e}"]
    if not hasattr(mod, op):
        return [f"backend {name!r} does not implement {op!r} yet"]
    return list(mod.supports(op, torch.device(device), dtype, **facts))


def op_setting(var: str, op: str) -> str | None:
    """The value an environment variable gives ``op``: ``VAR=value`` applies to every op,
    ``VAR=op1:value1,op2:value2`` per op; None when unset or not given for this op."""
    raw = os.environ.get(var, "").strip()
    if not raw:
        return None
    if ":" not in raw:
        return raw
    for item in raw.split(","):
        key, _, val = item.partition(":")
        if key.strip() == op:
            return val.strip() or None
    return None


def select(op: str, choice: str, device: torch.device, dtype: torch.dtype, **facts) -> str:
    """Name of the backend that will run ``op``.

    ``choice`` is ``"auto"`` or a backend name; the environment variable ``FASTRADIO_BACKEND``
    overrides ``"auto"`` (not an explicit choice). Raises ``BackendUnavailable`` with every
    backend's reasons when nothing can run the op.
    """
    if choice == "auto":
        choice = op_setting(ENV_VAR, op) or "auto"
    if choice != "auto":
        reasons = refusals(choice, op, device, dtype, **facts)
        if reasons:
            raise BackendUnavailable(
                f"backend {choice!r} cannot run {op!r} on {device} with {dtype}: " + "; ".join(reasons))
        return choice
    collected = []
    for name in auto_order(op, device, dtype):
        reasons = refusals(name, op, device, dtype, **facts)
        if not reasons:
            return name
        collected.append(f"{name}: " + "; ".join(reasons))
    raise BackendUnavailable(f"no backend can run {op!r} on {device} with {dtype}: " + " | ".join(collected))
