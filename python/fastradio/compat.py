"""Drop-in compatibility with code written for the reference model (DESIGN.md decision 23).

Code written for the reference loads it with ``AutoModel.from_pretrained("nvidia/C-RADIOv2-B",
trust_remote_code=True, torch_dtype=...)`` and then reaches into it: ``model.radio_model``,
``model.model.blocks[i]``, ``model.model.patch_generator.num_skip``, forward hooks on blocks,
``load_state_dict`` with the Hub's ``radio_model.`` key prefix, ``model.config.args``, a
``preferred_resolution`` compared with a list. With only the import and load lines changed
(``fastradio.load(...)`` or ``fastradio.RadioModel.from_pretrained(...)``) such code runs
unchanged, or fails with a message saying what to write instead.

Every shim for that lives here, so the core (``model.py``, ``api.py``) stays about the network:

- :class:`Resolution`: a ``(height, width)`` NamedTuple that also equals the reference's lists;
- :func:`resolve_dtype`: ``dtype`` / ``torch_dtype`` / ``"reference"`` / ``"auto"`` → a torch dtype
  and a sentence saying what decided it;
- :func:`note_trust_remote_code`: ``trust_remote_code`` is accepted and ignored, said once;
- :func:`strip_hub_prefix`: Hub-named state dicts → ours;
- :class:`ReferenceSurface`: the reference's attribute names on :class:`~fastradio.RadioModel`
  (``radio_model``, ``blocks``, ``adaptors``, ``switch_to_deploy``, ``from_pretrained``,
  ``load_state_dict`` with either key naming);
- :class:`NotCalledByForward`: modules the fused forward never calls refuse forward hooks (a hook
  there would silently never fire); hooks on blocks do fire (``has_forward_hooks``).

This module imports only torch: ``configs`` and ``model`` import it.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Callable, Mapping, NamedTuple

import torch
from torch import nn
from torch.nn.modules import module as _torch_module

__all__ = ["HUB_PREFIX", "Resolution", "CompatibilityNote", "resolve_dtype", "note_trust_remote_code",
           "strip_hub_prefix", "has_forward_hooks", "NotCalledByForward", "ReferenceSurface",
           "LOAD_KEYWORDS"]

#: the prefix of every tensor name in the Hub's ``model.safetensors`` (and of the reference's
#: ``state_dict()``): the Hugging Face wrapper holds the network as ``radio_model``
HUB_PREFIX = "radio_model."


class Resolution(NamedTuple):
    """(height, width) in pixels. Equal to the same two numbers as a tuple *or a list*: the
    reference's ``preferred_resolution`` comes from ``config.json`` as a list, and code written
    for it compares with ``[768, 768]``. The hash stays the tuple's (lists are unhashable, so the
    hash/eq contract holds); ordering is the tuple's."""

    height: int
    width: int

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            other = tuple(other)
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = tuple.__hash__


class CompatibilityNote(UserWarning):
    """A reference-style argument was accepted but means something else here (filter it with
    ``warnings.filterwarnings("ignore", category=fastradio.compat.CompatibilityNote)``)."""


_NOTED: set[str] = set()


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this package (the
    user's load line, whichever entry point it went through)."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _note_once(key: str, message: str) -> None:
    if key not in _NOTED:
        _NOTED.add(key)
        warnings.warn(message, CompatibilityNote, stacklevel=_caller_stacklevel())


def note_trust_remote_code(value: Any) -> None:
    """``trust_remote_code`` is the Hugging Face switch that lets ``AutoModel`` import the model
    repo's Python files. fastradio runs none, so the switch has nothing to allow: accepted (code
    written for the reference passes it) and ignored, with a one-line note once per process."""
    if value is None or value is False:
        return
    if value is not True:
        raise TypeError(f"trust_remote_code: expected True, False or None, got {type(value).__name__} {value!r}")
    _note_once("trust_remote_code",
               "fastradio: trust_remote_code=True is ignored: no code from the model repository is executed "
               "(config.json is read as data, weights from safetensors only)")


#: string spellings ``dtype=`` / ``torch_dtype=`` accept, besides torch dtypes
_DTYPE_NAMES = {"float32": torch.float32, "float": torch.float32, "fp32": torch.float32,
                "float16": torch.float16, "half": torch.float16, "fp16": torch.float16,
                "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _dtype_word(dtype: Any) -> str:
    return repr(dtype) if isinstance(dtype, str) else str(dtype)


def resolve_dtype(dtype: Any, torch_dtype: Any, *, default: torch.dtype, default_why: str,
                  stored: Callable[[], torch.dtype]) -> tuple[torch.dtype, str]:
    """The compute dtype for :func:`fastradio.load` and a sentence saying what decided it.

    ``torch_dtype`` is the Hugging Face name of ``dtype`` (give either; both → they must mean the
    same). Accepted: a torch dtype (float32, float16, bfloat16), its name (``"bfloat16"``,
    ``"bf16"``, ...), ``"reference"`` (float32 on every device: what the reference computes in
    with its Hub weights, for exact comparisons), ``"auto"`` (Transformers' meaning: the dtype the
    checkpoint stores, ``stored()``), or None (``default``, explained by ``default_why``)."""
    if dtype is None and torch_dtype is None:
        return default, default_why
    picked = [_one_dtype(v, arg, stored) for v, arg in ((dtype, "dtype"), (torch_dtype, "torch_dtype")) if v is not None]
    if len(picked) == 2 and picked[0][0] != picked[1][0]:
        raise ValueError(f"dtype={_dtype_word(dtype)} and torch_dtype={_dtype_word(torch_dtype)} disagree: "
                         f"give one of them (torch_dtype is the Hugging Face name for dtype)")
    return picked[0]


def _one_dtype(given: Any, arg: str, stored: Callable[[], torch.dtype]) -> tuple[torch.dtype, str]:
    if isinstance(given, str):
        word = given.strip().lower()
        if word == "reference":
            return torch.float32, (f"{arg}='reference': float32 on every device, the precision the reference "
                                   f"computes in with its float32 Hub weights")
        if word == "auto":
            dt = stored()
            return dt, f"{arg}='auto': the dtype the checkpoint stores ({str(dt).replace('torch.', '')})"
        if word in _DTYPE_NAMES:
            return _DTYPE_NAMES[word], f"{arg}={given!r}"
        raise ValueError(f"{arg}: expected a torch dtype (torch.float32, torch.float16, torch.bfloat16), one of "
                         f"their names, 'reference' (float32 everywhere) or 'auto' (the stored dtype), got {given!r}")
    if given not in _DTYPES:
        raise TypeError(f"{arg}: expected torch.float32, torch.float16 or torch.bfloat16 (or 'reference', "
                        f"'auto'), got {given!r}")
    return given, f"{arg}={given}"


def strip_hub_prefix(state_dict: Mapping[str, Any]) -> Mapping[str, Any]:
    """A state dict named as on the Hub (``radio_model.model.blocks.0...``, the reference's
    ``state_dict()``) → our names (the same without ``radio_model.``); ours pass through. A mix
    of both namings is refused, naming an example of each."""
    prefixed = [k for k in state_dict if k.startswith(HUB_PREFIX)]
    if not prefixed:
        return state_dict
    plain = [k for k in state_dict if not k.startswith(HUB_PREFIX)]
    if plain:
        raise KeyError(
            f"load_state_dict: expected every key with the Hub's {HUB_PREFIX!r} prefix or none, got a mix: "
            f"{len(prefixed)} with it (e.g. {prefixed[0]!r}), {len(plain)} without (e.g. {plain[0]!r})")
    out = type(state_dict)() if isinstance(state_dict, dict) else {}
    for k, v in state_dict.items():
        out[k[len(HUB_PREFIX):]] = v
    meta = getattr(state_dict, "_metadata", None)
    if meta is not None:  # nn.Module.state_dict() carries per-module versions; keep them, renamed
        out._metadata = type(meta)((k[len(HUB_PREFIX):] if k.startswith(HUB_PREFIX) else k, v)
                                   for k, v in meta.items())
    return out


def has_forward_hooks(module: nn.Module) -> bool:
    """Whether calling ``module`` would run any forward or forward-pre hook (its own, or a global
    one from ``torch.nn.modules.module.register_module_forward_hook``). A few dict truth tests:
    the model asks it per block per forward to choose the fused path (none) or the block's
    ``__call__`` (some)."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or _torch_module._global_forward_hooks or _torch_module._global_forward_pre_hooks)


class NotCalledByForward:
    """Mixin for modules that hold weights but that the fused forward never calls (it reads their
    parameters into fused ops): a forward hook on one would silently never fire, so registering
    one raises and names what works instead."""

    def _no_hooks(self, what: str):
        raise RuntimeError(
            f"{what} on a {type(self).__name__} inside a fastradio model would never fire: the fused forward "
            f"reads this module's weights but does not call it. Hooks on a block do fire: "
            f"model.model.blocks[i].{what}(fn) (its input and output are the (B, T, D) token tensors, "
            f"prefix tokens first); or take block outputs with model.forward_intermediates(x, indices=[...])")

    def register_forward_hook(self, *args, **kwargs):
        self._no_hooks("register_forward_hook")

    def register_forward_pre_hook(self, *args, **kwargs):
        self._no_hooks("register_forward_pre_hook")


class Linear(NotCalledByForward, nn.Linear):
    """nn.Linear whose forward the model never calls (see :class:`NotCalledByForward`)."""


class LayerNorm(NotCalledByForward, nn.LayerNorm):
    """nn.LayerNorm whose forward the model never calls (see :class:`NotCalledByForward`)."""


#: the keywords :func:`fastradio.load` takes; ``from_pretrained`` names them when given others
LOAD_KEYWORDS = ("device", "dtype", "torch_dtype", "backend", "revision", "pos_align_corners", "trust_remote_code")


class ReferenceSurface:
    """The reference's attribute names on :class:`~fastradio.RadioModel` (its Hugging Face wrapper
    and the RADIOModel inside it), for code written against them. Mixed in before nn.Module."""

    #: the reference's inter-feature normaliser; checkpoints that have one are refused at load
    inter_feature_normalizer = None

    @property
    def radio_model(self):
        """The reference's Hugging Face wrapper holds the network as ``.radio_model``; here the
        model is the network, so ``model.radio_model`` is the model itself."""
        return self

    @property
    def blocks(self) -> nn.ModuleList:
        """``model.model.blocks``: the transformer blocks (callable; forward hooks on them fire)."""
        return self.model.blocks

    def switch_to_deploy(self) -> None:
        """The reference re-parameterises some layers for inference here; fastradio's weights are
        already in that form, so this does nothing."""

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        """``RadioModel.from_pretrained(name_or_path, **kwargs)`` is :func:`fastradio.load` (same
        arguments: ``device``, ``dtype`` / ``torch_dtype``, ``backend``, ``revision``,
        ``pos_align_corners``, ``trust_remote_code``), for code written as
        ``AutoModel.from_pretrained(..., trust_remote_code=True, torch_dtype=...)``."""
        unknown = sorted(set(kwargs) - set(LOAD_KEYWORDS))
        if unknown:
            hint = ""
            if "device_map" in unknown:
                hint = "; for device_map='cuda' write device='cuda' (the whole model goes on one device)"
            raise TypeError(f"from_pretrained: unexpected keyword argument(s) {', '.join(unknown)}; fastradio.load "
                            f"takes {', '.join(LOAD_KEYWORDS)}{hint}")
        from .api import load

        return load(name_or_path, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict`` that also takes the Hub's names (``radio_model.``-prefixed,
        as the reference's ``state_dict()`` has them): the prefix is stripped when every key has
        it, a mix is refused. ``strict`` and ``assign`` mean what they mean in torch; with
        ``strict=True`` missing and unexpected keys are an error naming them. To save with the
        Hub's names: ``model.state_dict(prefix="radio_model.")``."""
        return super().load_state_dict(strip_hub_prefix(state_dict), strict=strict, assign=assign)
