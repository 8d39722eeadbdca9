"""The public entry points: :func:`load` and :func:`list_models` (DESIGN.md §3)."""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import torch

from . import vitdet
from .compat import note_trust_remote_code, resolve_dtype
from .configs import KNOWN_MODELS
from .errors import CheckpointError
from .model import RadioModel

__all__ = ["load", "list_models", "ModelInfo", "default_device", "default_dtype"]


class ModelInfo(NamedTuple):
    name: str
    hub_repo: str
    arch: str
    embed_dim: int
    depth: int
    num_heads: int
    head_dim: int
    params: int
    patch_size: int
    min_resolution_step: int
    max_resolution: int
    preferred_resolution: tuple[int, int]
    test_only: bool
    family: str = "C-RADIOv2"
    mlp_hidden: int = 0
    num_cls_tokens: int = 4
    num_prefix_tokens: int = 8
    summary_dim: int = 0
    layer_scale: bool = False
    #: the position resize of every revision; None: it depends on the revision (read from the
    #: checkpoint's bundled code)
    align_corners: bool | None = True
    licence: str = ""


def list_models(include_test: bool = False) -> list[ModelInfo]:
    """The registry: known models with Hub repo id, size (true parameter counts), resolution
    limits, prefix/summary structure, position resize and licence note. The tiny ``test-*``
    architectures (synthetic checkpoints only, 16x16 position grid) are listed with
    ``include_test``."""
    out = []
    for m in KNOWN_MODELS:
        if m.test_only and not include_test:
            continue
        c = m.config
        out.append(ModelInfo(m.name, m.hub_repo, m.arch, c.embed_dim, c.depth, c.num_heads, c.head_dim,
                             c.param_count(), c.patch_size, c.min_resolution_step, c.max_resolution,
                             c.preferred_resolution, m.test_only, m.family, c.mlp_hidden, c.num_cls_tokens,
                             c.num_prefix_tokens, c.summary_dim, c.layer_scale,
                             m.align_corners if not m.test_only else c.align_corners, m.licence))
    return out


def default_device() -> torch.device:
    """``cuda`` when a GPU is usable, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """fp32 on CPU; bf16 on sm_80+; fp16 below (no fast bf16 there)."""
    device = torch.device(device)
    if device.type != "cuda":
        return torch.float32
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def _default_why(device: torch.device, dtype: torch.dtype) -> str:
    name = str(dtype).replace("torch.", "")
    if device.type != "cuda":
        return f"default on {device.type}: {name}"
    major, minor = torch.cuda.get_device_capability(device)
    return f"default on {device} (sm_{major}{minor}): {name}; dtype='reference' gives float32 as the reference computes"


def load(name_or_path: str | os.PathLike, *, device: str | torch.device | None = None,
         dtype: torch.dtype | str | None = None, backend: str = "auto", revision: str | None = None,
         pos_align_corners: bool | None = None, torch_dtype: torch.dtype | str | None = None,
         trust_remote_code: bool | None = None, vitdet_window_size: int | None = None,
         vitdet_num_global: int | None = None) -> RadioModel:
    """Load a C-RADIO model (v2, v3 or v4) ready for inference.

    name_or_path: a known model name or alias (``C-RADIOv2-B``, ``c-radio_v2-g``,
    ``nvidia/C-RADIOv4-SO400M``, ``c-radio_v4-h``; ``fastradio.list_models()`` lists them), a local
    folder with ``config.json`` and ``model.safetensors`` (or a sharded index), or
    ``synthetic:<name>[@seed]`` for random weights generated locally (for testing; never chosen
    silently).
    device: default ``cuda`` when available, else ``cpu``. dtype: default fp32 on CPU, bf16 on
    sm_80+, fp16 below; ``"reference"``: fp32 on every device (what the reference computes in);
    ``"auto"``: the stored dtype (Transformers' meaning); also a dtype's name (``"bfloat16"``).
    ``model.dtype_source`` says what decided. backend: "auto", "reference", "cuda" or "triton"
    (per-op choice; ops a backend lacks fall back to the reference). revision: a Hub revision for
    Hub downloads.
    pos_align_corners: how the position table is resized (True: C-RADIOv2; False: C-RADIOv4).
    Leave it None: it is read from the checkpoint's bundled ``vit_patch_generator.py`` (as text)
    or its known Hub revision, and a checkpoint for which neither answers is refused, with this
    argument named as one fix (``model.config.align_corners_source`` says what decided).
    torch_dtype, trust_remote_code: for code written as ``AutoModel.from_pretrained(...,
    trust_remote_code=True, torch_dtype=...)`` (:mod:`fastradio.compat`): ``torch_dtype`` is
    ``dtype`` by its Hugging Face name; ``trust_remote_code`` is ignored (nothing from the model
    repo is ever executed), with a note once.
    vitdet_window_size: ViTDet windowed attention with ws x ws-patch windows (the TorchHub
    argument of the same name; spec §7): most blocks attend inside windows only, inputs must be
    multiples of 16·ws (``model.min_resolution_step``). vitdet_num_global: how many blocks stay
    global (None: 8 for giant, 4 otherwise, as the reference).

    Every tensor's name, shape and dtype is checked against the architecture in config.json;
    nothing from the model repo is executed.
    """
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    note_trust_remote_code(trust_remote_code)
    default = default_dtype(device)
    # Checked before anything is fetched; "auto" needs the checkpoint's headers: decided below.
    resolve_dtype(dtype, torch_dtype, default=default, default_why="", stored=lambda: torch.float32)
    vitdet.check_options(vitdet_window_size, None, 0)  # before anything is fetched; the count below
    if pos_align_corners is not None and not isinstance(pos_align_corners, bool):
        raise TypeError(f"pos_align_corners: expected True, False or None, got {type(pos_align_corners).__name__}")

    from . import align, checkpoint, hub  # imported here: they pull in safetensors / huggingface_hub

    resolved = hub.resolve(name_or_path, revision=revision)
    try:
        raw = json.loads(resolved.config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{resolved.config_path}: not a readable JSON config ({e})") from e
    cfg = checkpoint.parse_config(raw, source=str(resolved.config_path))
    cfg = checkpoint.config_for_files(cfg, resolved.weight_files)
    vitdet.check_options(vitdet_window_size, vitdet_num_global, cfg.depth)
    cfg = cfg.with_(window_size=vitdet_window_size, window_num_global=vitdet_num_global)
    dtype, dtype_why = resolve_dtype(dtype, torch_dtype, default=default, default_why=_default_why(device, default),
                                     stored=lambda: checkpoint.stored_dtype(resolved.weight_files))
    # Before any weight is read: a checkpoint whose position resize is unknown is refused.
    cfg = align.decide(cfg, resolved.folder, repo_id=resolved.repo_id, revision=resolved.revision,
                       override=pos_align_corners)
    weights = checkpoint.load_weights(resolved.weight_files, cfg)
    cfg = cfg.with_(summary_idxs=tuple(int(i) for i in weights["summary_idxs"].tolist()))

    with torch.device("meta"):
        model = RadioModel(cfg, backend=backend, name=str(name_or_path))
        # The checkpoint decides which CLS slots form the summary (spec §5), and how many.
        model.register_buffer("summary_idxs", torch.empty_like(weights["summary_idxs"]))
    model.load_state_dict(weights, strict=True, assign=True)
    model.source = resolved
    model.dtype_source = dtype_why
    model.requires_grad_(False).eval()
    return model.to(device=device, dtype=dtype)
