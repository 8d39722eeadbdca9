"""CUDA backend: fastradio's C++/CUDA core, ``fastradio._C``, as torch custom ops (DESIGN.md §4-5).

One module per op, ``_<op>.py``, each following one pattern (copy one for a new op):

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

The emulated device: with ``FASTRADIO_EMULATED_DEVICE`` naming an emulated build of ``_C`` (csrc/emu/,
``python csrc/tools/emulate.py``), the same wrappers run the kernels on the CPU and take CPU tensors
(``DEVICE_TYPE``); for tests only.
"""

from __future__ import annotations

import torch

from ._common import (_BUILD, _C, _DTYPE_CODES, _TIER_CODES, DEVICE_NAME, DEVICE_TYPE, EMULATED, EMULATION_ENV,  # noqa: F401
                      OP_NAMES, OP_REFUSALS, TIER_DTYPES, TIER_ENV, _forced_tier, build_info, resolve_tier)
from ._add_layer_norm import ADD_LAYER_NORM_DTYPES, add_layer_norm
from ._attention import ATTENTION_HEAD_DIMS, ATTENTION_TIER_DTYPES, attention
from ._linear import LINEAR_TIER_DTYPES, linear
from ._patch_embed import PATCH_EMBED_TIER_DTYPES, patch_embed
from ._pos_embed import pos_embed

__all__ = ["supports", "pos_embed", "add_layer_norm", "patch_embed", "attention", "linear", "resolve_tier",
           "build_info", "OP_NAMES", "TIER_ENV", "ADD_LAYER_NORM_DTYPES", "PATCH_EMBED_TIER_DTYPES",
           "ATTENTION_HEAD_DIMS", "ATTENTION_TIER_DTYPES", "LINEAR_TIER_DTYPES"]


# --- what this backend can run --------------------------------------------------------------------

def supports(op: str, device: torch.device, dtype: torch.dtype, **facts) -> list[str]:
    """Reasons this backend cannot run ``op`` on (device, dtype); empty when it can."""
    if op not in OP_NAMES:
        return [f"the cuda backend does not implement {op!r}"]
    reasons = []
    device = torch.device(device)
    if op not in _BUILD["tiers"]:
        reasons.append(f"{op} is not compiled in this build of fastradio._C")
    if device.type != DEVICE_TYPE:
        reasons.append(f"device {device} is not a {DEVICE_NAME} device")
    elif not EMULATED and not torch.cuda.is_available():
        reasons.append("device is cuda but torch.cuda.is_available() is False (CPU-only torch, or no GPU/driver)")
    elif _C.device_count() == 0:
        reasons.append(f"fastradio._C (built against CUDA {_BUILD['cuda_version']}) finds no usable CUDA device "
                       "although torch does: the driver is probably older than that CUDA version needs")
    elif op in _BUILD["tiers"]:
        try:
            resolve_tier(op, device, dtype=dtype if dtype in _DTYPE_CODES else None)
        except RuntimeError as e:
            reasons.append(str(e))
    if dtype not in _DTYPE_CODES:
        reasons.append(f"dtype {dtype} is not one of {', '.join(str(d) for d in _DTYPE_CODES)}")
    if op in OP_REFUSALS:
        reasons += OP_REFUSALS[op](device, dtype, **facts)
    return reasons


