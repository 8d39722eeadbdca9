"""What every op of the CUDA backend shares: the extension, its build, tier resolution and the
tensor checks done before raw pointers cross into ``_C`` (see the package docstring)."""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os

import torch

from fastradio.backends import op_setting

#: The emulated device (csrc/emu/, DESIGN.md "The emulated device"): set to the path of an emulated
#: ``_C`` (``python csrc/tools/emulate.py`` builds one), this backend loads that module instead of
#: fastradio._C and its kernels run on the CPU, CPU tensors being the "device" memory. It exists to
#: test the whole path (Python wrappers, binding, launchers, kernels) without a GPU; it is slow.
EMULATION_ENV = "FASTRADIO_EMULATED_DEVICE"


def _load_extension():
    path = os.environ.get(EMULATION_ENV, "").strip()
    if not path:
        try:
            from fastradio import _C
        except ImportError as e:  # the dispatcher reports this as the backend's refusal
            raise ImportError(
                f"fastradio._C, the compiled C++/CUDA extension, is not importable ({e}); build it with "
                "`pip install --no-build-isolation .` and a CUDA compiler (see csrc/README.md)") from e
        return _C, False
    if not os.path.isfile(path):
        raise ImportError(f"{EMULATION_ENV}={path!r}: no such file (build the emulated _C with "
                          "`python csrc/tools/emulate.py --build-only`)")
    loader = importlib.machinery.ExtensionFileLoader("_C", path)
    spec = importlib.util.spec_from_file_location("_C", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    if module.build_info().get("toolchain") != "emulated":
        raise ImportError(f"{EMULATION_ENV}={path!r} is not an emulated build of _C "
                          f"(toolchain {module.build_info().get('toolchain')!r})")
    return module, True


_C, EMULATED = _load_extension()

#: The torch device type whose memory the kernels take: "cuda", or "cpu" on the emulated device.
DEVICE_TYPE = "cpu" if EMULATED else "cuda"
#: How messages name that device.
DEVICE_NAME = "CPU (emulated CUDA device)" if EMULATED else "CUDA"


#: Environment variable forcing a tier, for every op ("cuda_core") or per op ("pos_embed:cuda_core").
TIER_ENV = "FASTRADIO_TIER"

#: The torch.library names of the ops this backend registers, by op.
OP_NAMES: dict[str, str] = {}  # filled by each op module (register_op)

#: Per-op refusals beyond the shared ones: op -> fn(device, dtype, **facts) -> list of reasons.
OP_REFUSALS: dict = {}

#: The compute dtypes each tier of an op takes: op -> {tier: dtypes}. A tier missing here takes
#: every dtype of ``_DTYPE_CODES``; e.g. mma_sm75 (fp16 tensor cores) takes only float16, so the
#: automatic choice for a float32 linear is cuda_core.
TIER_DTYPES: dict[str, dict[str, tuple[torch.dtype, ...]]] = {}

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
    if EMULATED:
        arch = int(_BUILD["archs"][0])
        return arch // 10, arch % 10
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _CAPABILITY:
        _CAPABILITY[index] = torch.cuda.get_device_capability(index)
    return _CAPABILITY[index]


def _dtype_refusal(op: str, tier: str, dtype: torch.dtype | None) -> str:
    takes = TIER_DTYPES.get(op, {}).get(tier)
    if dtype is None or takes is None or dtype in takes:
        return ""
    return f"{op}/{tier} takes {', '.join(str(d) for d in takes)}, not {dtype}"


def _tier_refusal(op: str, tier: str, cap: tuple[int, int], dtype: torch.dtype | None = None) -> str:
    if tier not in _TIER_CODES:
        return f"unknown tier {tier!r} (known tiers: {', '.join(_TIER_CODES)})"
    return _C.check_arch(op, tier, cap[0], cap[1]) or _dtype_refusal(op, tier, dtype)


def resolve_tier(op: str, device: torch.device | str, tier: str | None = None,
                 dtype: torch.dtype | None = None) -> str:
    """The tier that runs ``op`` in ``dtype`` on the CUDA ``device``: ``tier``, else
    ``FASTRADIO_TIER``, else the most specialised tier this build compiled that runs there and takes
    ``dtype`` (None: any). Raises ``RuntimeError`` saying why if none can."""
    device = torch.device(device)
    cap = _capability(device)
    forced, source = (tier, "the tier argument") if tier else (_forced_tier(op), TIER_ENV)
    if forced:
        why = _tier_refusal(op, forced, cap, dtype)
        if why:
            raise RuntimeError(f"{op}: tier {forced!r} (from {source}) cannot run on {device} "
                               f"(compute capability {cap[0]}.{cap[1]}): {why}")
        return forced
    compiled = sorted(_BUILD["tiers"].get(op, []), key=lambda t: _TIER_CODES[t], reverse=True)
    whys = []
    for t in compiled:
        why = _tier_refusal(op, t, cap, dtype)
        if not why:
            return t
        whys.append(why)
    raise RuntimeError(f"{op}: no compiled tier runs on {device} (compute capability {cap[0]}.{cap[1]})"
                       f"{'' if dtype is None else f' in {dtype}'}: "
                       + ("; ".join(whys) or f"{op} is not compiled in this build"))


_RESOLVED: dict[tuple, int] = {}


def _tier_code(op: str, device: torch.device, code: int, dtype: torch.dtype | None = None) -> int:
    """The tier code to launch: ``code`` when forced by the caller, else resolved (and cached) for
    (op, device, dtype, FASTRADIO_TIER). A forced code is re-checked against ``dtype`` here because
    the binding cannot know which dtypes a tier's kernels were instantiated for."""
    if code != _AUTO:
        name = next(t for t, c in _TIER_CODES.items() if c == code)
        why = _dtype_refusal(op, name, dtype)
        if why:
            raise ValueError(f"{op}: tier {name!r} cannot run this call: {why}")
        return code
    key = (op, device.index, dtype, os.environ.get(TIER_ENV, ""))
    if key not in _RESOLVED:
        _RESOLVED[key] = _TIER_CODES[resolve_tier(op, device, dtype=dtype)]
    return _RESOLVED[key]


def _tier_arg(fn: str, tier: str | None) -> int:
    if tier is None:
        return _AUTO
    if tier not in _TIER_CODES:
        raise ValueError(f"{fn}: tier must be None or one of {', '.join(_TIER_CODES)}, got {tier!r}")
    return _TIER_CODES[tier]


# --- shared argument checks -----------------------------------------------------------------------

def _expect_tensor(fn: str, name: str, t, *, dtype: torch.dtype, ndim: int) -> None:
    """A contiguous CUDA tensor of ``dtype`` with ``ndim`` dims (the kernels take raw pointers)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != dtype:
        raise TypeError(f"{fn}: {name} must be {dtype}, got {t.dtype}")
    if t.dim() != ndim:
        raise ValueError(f"{fn}: {name} must have {ndim} dims, got shape {tuple(t.shape)}")
    if t.device.type != DEVICE_TYPE:
        raise ValueError(f"{fn}: {name} must be on a {DEVICE_NAME} device, got {t.device}")
    if not t.is_contiguous():
        raise ValueError(f"{fn}: {name} must be contiguous, got strides {t.stride()} for shape {tuple(t.shape)}")


def _expect_size(fn: str, name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, torch.SymInt)) or v < 1:
        raise ValueError(f"{fn}: {name} must be an int >= 1, got {v!r}")


def _expect_out_dtype(fn: str, dtype) -> None:
    if dtype not in _DTYPE_CODES:
        raise TypeError(f"{fn}: out_dtype must be one of {', '.join(str(d) for d in _DTYPE_CODES)}, got {dtype}")


def register_op(op: str, refusals=None, tier_dtypes: dict[str, tuple[torch.dtype, ...]] | None = None) -> str:
    """Record that this backend implements ``op``; returns its torch.library name.

    ``refusals``: fn(device, dtype, **facts) -> reasons, for op-specific limits (e.g. head dims).
    ``tier_dtypes``: {tier: dtypes} for tiers that take only some dtypes (see TIER_DTYPES)."""
    OP_NAMES[op] = f"fastradio::cuda_{op}"
    if refusals is not None:
        OP_REFUSALS[op] = refusals
    if tier_dtypes:
        TIER_DTYPES[op] = dict(tier_dtypes)
    return OP_NAMES[op]


def current_stream(device: torch.device) -> int:
    """torch's current stream on ``device``, as the integer handle ``_C`` takes (0, the default
    stream, on the emulated device: its launches are synchronous)."""
    return 0 if EMULATED else torch.cuda.current_stream(device).cuda_stream


def device_guard(device: torch.device):
    """Makes ``device`` current for the launch (a no-op on the emulated device)."""
    return contextlib.nullcontext() if EMULATED else torch.cuda.device(device)
