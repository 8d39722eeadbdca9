"""Synthetic C-RADIO checkpoints (v2, v3, v4): random weights in the exact Hugging Face layout, for
tests and benchmarks without network access. Never chosen silently: only ``synthetic:<name>[@seed]`` names
(see :mod:`fastradio.hub`) or explicit calls produce them, and their ``config.json`` says so
(``fastradio_synthetic``).

Layout: ``config.json`` in the Hub schema: every key the reference code reads
(:data:`REFERENCE_CONFIG_KEYS`, :data:`REFERENCE_ARGS_KEYS`, :data:`REFERENCE_TEACHER_KEYS`: the
``auto_map``, a ``version`` the reference accepts, the training ``args`` its model factory
dereferences, ``use_summary`` false on the teacher the summary leaves out) plus some filler training
arguments, so that the reference loads the folder once its own Python files are copied in
(DESIGN.md decision 24); ``model.safetensors`` or ``model-0000i-of-0000n.safetensors`` shards with
``model.safetensors.index.json``, and a ``vit_patch_generator.py`` like the one every Hub repo
bundles: a short text written here (not upstream code) whose ``_get_pos_embeddings`` calls
``F.interpolate(..., align_corners=<the model's value>)``, so that :mod:`fastradio.align` reads it
(as text, as for a real checkpoint). Names, shapes and dtypes are exactly those of
:func:`fastradio.checkpoint.expected_tensors`.

Weights (all drawn on the CPU from a ``torch.Generator`` seeded by ``sha256(seed, tensor name)``,
so a tensor's bytes depend only on the seed and its name, not on the order, sharding or thread
count; nothing is ever all-zero). D = width, t = (i + 1) / depth for block i:

- ``norm_mean``/``norm_std``: the OpenAI CLIP constants; ``summary_idxs``: the model's slots
  ([0, 1, 2]; C-RADIOv4: [0, 1]).
- ``pos_embed``: a smooth field (a coarse (G/8)² random grid up-sampled bilinearly, scaled to std
  0.02) plus white noise of std 0.005, so position-table resizing is exercised on realistic data.
- ``embedder.weight``: N(0, 1) · 0.8 / √768; ``cls_token.token`` and ``reg_token``: N(0, 0.5²).
- Layer-scale ``ls1``/``ls2.grandma`` (C-RADIOv3-B/L): log-uniform in [0.05, 2] per channel, far
  from the 1e-5 init of training, so a block that drops or misapplies γ changes the outputs a lot.
- LayerNorm weights 1 + N(0, 0.1²), with ~2 % of the channels scaled by U(2, 4); LayerNorm biases
  and all linear biases N(0, 0.02²).
- ``qkv``/``fc1`` weights N(0, 1/D) · U(0.7, 1.1); ``proj``/``fc2`` weights N(0, 1/fan_in) ·
  (0.5 + 0.5·t): the residual stream grows with depth as in trained ViTs.
- Outlier channels: max(2, D/128) channels (chosen from the seed) get a fixed-sign push of
  (0.5 + t) through every ``fc2.bias``, so they accumulate to ~10-40 in the residual stream (the
  "massive activations" of trained ViTs), and small LayerNorm weights (0.05-0.2) that damp them,
  as trained models learn to. This makes fp16/bf16 comparisons meaningful.
- ``feature_normalizer`` (optional): mean N(0, 0.05²), tx = I + N(0, 0.3²/D).

The tensors are generated and written one at a time (the safetensors header is computed from the
shapes first), so even C-RADIOv2-g (4.6 GB in fp32) never needs more than one tensor in memory.
``dtype`` sets the storage dtype of the parameters (fp32 like the Hub, or bf16/fp16 for
benchmarks); buffers stay fp32 and ``summary_idxs`` int64, which the loader accepts.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F

from .align import BUNDLED_FILE
from .checkpoint import BUFFER_NAMES, CONFIG_NAME, INDEX_NAME, PREFIX, WEIGHTS_NAME, expected_tensors
from .configs import KNOWN_MODELS, REFERENCE_VERSIONS, ModelConfig, resolve_known_model
from .errors import ModelNotFoundError

__all__ = ["write_checkpoint", "synthetic_folder", "model_config", "config_json", "bundled_source",
           "default_cache_dir", "CLIP_MEAN", "CLIP_STD", "AUTO_MAP", "ConfigKey", "REFERENCE_CONFIG_KEYS",
           "REFERENCE_ARGS_KEYS", "REFERENCE_TEACHER_KEYS"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_STORAGE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_ST_TAGS = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}
_OURS = (CONFIG_NAME, WEIGHTS_NAME, INDEX_NAME, BUNDLED_FILE)


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------

def model_config(name: str) -> ModelConfig:
    """The config a synthetic checkpoint of a known model gets: the registry's config for real
    models (128x128 position grid), ``tiny_config`` (16x16 grid, 256 px) for the ``test-*`` ones."""
    km = resolve_known_model(name)
    if km is None:
        raise ModelNotFoundError(
            f"unknown model {name!r} for a synthetic checkpoint: expected one of "
            f"{', '.join(m.name for m in KNOWN_MODELS)}")
    return km.config


# The Hub schema of config.json. A synthetic config.json has every key the reference code reads
# (the files a Hub repo bundles, run with ``AutoModel.from_pretrained(folder,
# trust_remote_code=True)``), so that the reference loads a synthetic folder once its Python files
# are copied in, exactly like a downloaded one. The reference is only read for these facts (which
# keys, which values it expects); none of its code is here.

class ConfigKey(NamedTuple):
    """One key the reference reads: the JSON types it accepts, what it does with the key, and (for
    some) a test of the value it needs to build the model."""

    types: tuple[type, ...]
    why: str
    valid: Callable[[Any], bool] | None = None


_NULL = type(None)

#: ``auto_map`` of a Hub config.json: the classes Transformers builds with trust_remote_code
AUTO_MAP = {"AutoConfig": "hf_model.RADIOConfig", "AutoModel": "hf_model.RADIOModel"}

#: What the reference reads from config.json, in one place: the writer below fills every key and
#: the tests check them (tests/test_synthetic.py). This mirrors NVlabs/RADIO (read at commit
#: c0f3701, and the same functions back to 2024): ``radio/hf_model.py`` (``RADIOConfig.__init__``
#: takes the top-level keys and looks ``version`` up in its resource table;
#: ``RADIOModel.__init__`` turns ``args`` into a namedtuple, reads ``args.dtype`` and derives the
#: summary slots from ``teachers[*].use_summary``), ``radio/radio_model.py``
#: (``create_model_from_args``: the timm factory arguments, ``model_kwargs``, ``model_norm``,
#: ``cpe_max_size``, the teachers, ``cls_token_per_teacher``, ``register_multiple``,
#: ``cpe_num_registers``) and Transformers (``auto_map``, ``architectures``, ``torch_dtype``).
#: Keys it reads with a default (getattr, .get) are listed too: a Hub dump has them. Change this
#: when the reference reads more.
REFERENCE_CONFIG_KEYS: dict[str, ConfigKey] = {
    "auto_map": ConfigKey((dict,), "the remote-code classes Transformers builds", lambda v: v == AUTO_MAP),
    "architectures": ConfigKey((list,), "Transformers: the model class", lambda v: v == ["RADIOModel"]),
    "torch_dtype": ConfigKey((str,), "Transformers: the stored dtype",
                             lambda v: v in ("float32", "bfloat16", "float16")),
    "version": ConfigKey((str,), "RADIOConfig: RESOURCE_MAP[version] (fails on an unknown string)",
                         lambda v: v in REFERENCE_VERSIONS),
    "patch_size": ConfigKey((int,), "RADIOConfig: the patch size", lambda v: v == 16),
    "max_resolution": ConfigKey((int,), "RADIOConfig: max_resolution", lambda v: v > 0),
    "preferred_resolution": ConfigKey((list,), "RADIOConfig: preferred_resolution",
                                      lambda v: len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)),
    "adaptor_names": ConfigKey((list, _NULL), "RADIOModel: adaptor heads to build", lambda v: not v),
    "adaptor_configs": ConfigKey((dict,), "RADIOModel: adaptor head sizes", lambda v: v == {}),
    "vitdet_window_size": ConfigKey((int, _NULL), "RADIOModel: windowed attention", lambda v: v is None),
    "feature_normalizer_config": ConfigKey((dict, _NULL), "RADIOModel: FeatureNormalizer(embed_dim)",
                                           lambda v: v is None or isinstance(v.get("embed_dim"), int)),
    "inter_feature_normalizer_config": ConfigKey((dict, _NULL), "RADIOModel: intermediate normaliser",
                                                 lambda v: v is None),
    "args": ConfigKey((dict,), "RADIOModel: namedtuple(args) (keys must be identifiers not starting with '_')",
                      lambda v: all(k.isidentifier() and not k.startswith("_") and not keyword.iskeyword(k)
                                    for k in v)),
}

#: ``args`` keys the reference dereferences. The timm factory arguments are those of timm's training
#: script (create_model drops the ones that are None; a non-None drop_block / bn_* / gp would reach
#: the ViT constructor, a true ``pretrained`` or a non-empty ``initial_checkpoint`` would download
#: or load weights).
REFERENCE_ARGS_KEYS: dict[str, ConfigKey] = {
    "model": ConfigKey((str,), "timm.create_model(name)"),
    "pretrained": ConfigKey((bool,), "create_model(pretrained=)", lambda v: v is False),
    "in_chans": ConfigKey((int, _NULL), "input channels (else input_size[0])", lambda v: v in (None, 3)),
    "input_size": ConfigKey((list, _NULL), "input channels from input_size[0]", lambda v: v is None or v[0] == 3),
    "num_classes": ConfigKey((int, _NULL), "create_model(num_classes=) (the head is replaced)"),
    "drop": ConfigKey((int, float, _NULL), "create_model(drop_rate=)"),
    "drop_path": ConfigKey((int, float, _NULL), "create_model(drop_path_rate=)"),
    "drop_block": ConfigKey((int, float, _NULL), "create_model(drop_block_rate=)", lambda v: v is None),
    "gp": ConfigKey((str, _NULL), "create_model(global_pool=)", lambda v: v is None),
    "bn_momentum": ConfigKey((int, float, _NULL), "create_model(bn_momentum=)", lambda v: v is None),
    "bn_eps": ConfigKey((int, float, _NULL), "create_model(bn_eps=)", lambda v: v is None),
    "torchscript": ConfigKey((bool,), "create_model(scriptable=)"),
    "initial_checkpoint": ConfigKey((str, _NULL), "create_model(checkpoint_path=)", lambda v: not v),
    "model_kwargs": ConfigKey((dict,), "create_model(**model_kwargs) ('weight_init' popped first)"),
    "model_norm": ConfigKey((bool,), "keep the final norm (else nn.Identity)", lambda v: v is False),
    "cpe_max_size": ConfigKey((int, _NULL), "enable_cpe(max_img_size=): the position grid", lambda v: v is not None),
    "teachers": ConfigKey((list,), "CLS tokens: one per distinct name; summary slots from use_summary",
                          lambda v: len(v) > 0 and all(isinstance(t, dict) for t in v)),
    "cls_token_per_teacher": ConfigKey((bool,), "one CLS token per teacher, else one"),
    "register_multiple": ConfigKey((int, _NULL), "registers = multiple - num_cls % multiple"),
    "cpe_num_registers": ConfigKey((int, _NULL), "an explicit register count (overrides the rule)"),
    "dtype": ConfigKey((str,), "RADIOModel: model.to(getattr(torch, dtype))",
                       lambda v: v in ("float32", "bfloat16", "float16")),
    "spectral_reparam": ConfigKey((bool,), "older wrappers: spectral re-parametrisation", lambda v: v is False),
}

#: keys of each ``args.teachers`` entry the reference reads (``use_summary`` defaults to true)
REFERENCE_TEACHER_KEYS: dict[str, ConfigKey] = {
    "name": ConfigKey((str,), "CLS token count: distinct names"),
    "use_summary": ConfigKey((bool,), "summary slots: the teachers with use_summary true, in order"),
}


def config_json(cfg: ModelConfig, *, dtype: torch.dtype = torch.float32, seed: int = 0,
                name: str | None = None) -> dict:
    """A ``config.json`` dict in the Hub schema (every key of :data:`REFERENCE_CONFIG_KEYS`,
    :data:`REFERENCE_ARGS_KEYS` and :data:`REFERENCE_TEACHER_KEYS`) that
    :func:`fastradio.checkpoint.parse_config` turns back into ``cfg`` (fields compared by ``==``),
    except ``align_corners``, which config.json does not hold (the bundled code does) and parses
    to None. The summary slots are written as the teachers' ``use_summary`` flags when they can
    be (one CLS token per teacher, slots in increasing order), else left to the weights (then
    they parse to None). ``name``: the known model, whose ``version`` string it carries (else
    ``synthetic-<name>``, which the reference does not accept: the test architectures are not
    timm models either)."""
    teachers = list(cfg.teachers)
    if cfg.num_cls_tokens == len(teachers) and teachers:
        per_teacher = True
    elif cfg.num_cls_tokens == 1:
        per_teacher = False
    else:
        raise ValueError(f"cannot express {cfg.num_cls_tokens} CLS tokens with teachers {teachers} in "
                         f"config.json: expected one per teacher or exactly one")
    # The registers: the rule with the smallest multiple that gives them (8 - n % 8 for C-RADIOv2/v3;
    # C-RADIOv4's 3 + 7 is register_multiple 10, as on the Hub), never an explicit count.
    multiple = None
    if cfg.num_registers:
        multiple = 8 if cfg.num_registers == 8 - cfg.num_cls_tokens % 8 else cfg.num_cls_tokens + cfg.num_registers
    if cfg.window_size is not None:
        raise ValueError("synthetic checkpoints with windowed attention are not supported")
    slots = cfg.summary_idxs
    flags = per_teacher and slots is not None and list(slots) == sorted(set(slots))
    args = {
        "model": cfg.arch.timm_name,
        "cpe_max_size": cfg.pos_grid * cfg.patch_size,
        "cpe_num_registers": None,
        "register_multiple": multiple,
        "cls_token_per_teacher": per_teacher,
        "teachers": [{"name": t, "use_summary": i in slots} if flags else {"name": t} for i, t in enumerate(teachers)],
        "dtype": str(dtype).replace("torch.", ""),
        "model_norm": False,
        "model_kwargs": {"scaled_ln": True} if cfg.scaled_ln else {},
        # The timm factory arguments, at the defaults of timm's training script.
        "pretrained": False, "in_chans": None, "input_size": [3, 432, 432], "num_classes": None,
        "drop": 0.0, "drop_path": None, "drop_block": None, "gp": None, "bn_momentum": None, "bn_eps": None,
        "torchscript": False, "initial_checkpoint": "",
        "spectral_reparam": False,
        # Filler, like the ~150 training arguments of a real dump (read by nobody).
        "batch_size": 1024, "lr": 0.001, "weight_decay": 0.02, "epochs": 1, "warmup_epochs": 0,
        "amp": True, "seed": seed, "teacher_feature_distillation": True,
    }
    return {
        "architectures": ["RADIOModel"],
        "auto_map": dict(AUTO_MAP),
        # No "model_type": the reference's RADIOConfig declares none (""), and Transformers warns
        # when config.json names another.
        "args": args,
        "version": _version(name, cfg),
        "patch_size": cfg.patch_size,
        "max_resolution": cfg.max_resolution,
        "preferred_resolution": list(cfg.preferred_resolution),
        "adaptor_names": None,
        "adaptor_configs": {},
        "vitdet_window_size": None,
        "feature_normalizer_config": {"embed_dim": cfg.embed_dim} if cfg.has_feature_normalizer else None,
        "inter_feature_normalizer_config": None,
        "torch_dtype": str(dtype).replace("torch.", ""),
        "fastradio_synthetic": {"seed": seed, "note": "random weights generated by fastradio.synthetic"},
    }


def _version(name: str | None, cfg: ModelConfig) -> str:
    km = resolve_known_model(name) if name else None
    if km is not None and km.config_version:
        return km.config_version
    return f"synthetic-{km.name if km is not None else cfg.arch.timm_name}"


def bundled_source(align_corners: bool) -> str:
    """A minimal ``vit_patch_generator.py`` of our own (not upstream code): just enough for
    :mod:`fastradio.align` to read the resize from it, as from a real checkpoint's bundled file.
    Never imported by fastradio."""
    if not isinstance(align_corners, bool):
        raise TypeError(f"align_corners: expected a bool, got {align_corners!r}")
    return f'''"""Position table of a fastradio synthetic checkpoint (random weights).

Written by fastradio.synthetic so that the checkpoint folder carries its position resize the way
Hub checkpoints do; fastradio reads this file as text and never imports or runs it.
"""

import torch.nn.functional as F


def _get_pos_embeddings(table, rows, cols):
    """table (1, D, G, G) -> the (rows, cols) window of the resized table."""
    side = max(rows, cols)
    resized = F.interpolate(table, size=(side, side), mode="bilinear", align_corners={align_corners})
    return resized[:, :, :rows, :cols]
'''


# ---------------------------------------------------------------------------------------------
# tensors
# ---------------------------------------------------------------------------------------------

def _generator(seed: int, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _outliers(cfg: ModelConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(channel indices, signs) of the residual-stream outlier channels."""
    g = _generator(seed, "outlier-channels")
    d = cfg.embed_dim
    idx = torch.randperm(d, generator=g)[: max(2, d // 128)]
    sign = torch.where(torch.rand(idx.numel(), generator=g) < 0.5, -1.0, 1.0)
    return idx, sign


def _make_tensor(name: str, shape: tuple[int, ...], cfg: ModelConfig, seed: int,
                 outliers: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """One tensor of the scheme in the module docstring, fp32 (int64 for summary_idxs)."""
    key = name[len(PREFIX):]
    g = _generator(seed, key)
    d = cfg.embed_dim
    if key == "summary_idxs":
        if cfg.summary_idxs is not None and len(cfg.summary_idxs) == shape[0]:
            return torch.tensor(cfg.summary_idxs, dtype=torch.int64)
        return torch.arange(shape[0], dtype=torch.int64)
    if key == "input_conditioner.norm_mean":
        return torch.tensor(CLIP_MEAN, dtype=torch.float32).view(3, 1, 1)
    if key == "input_conditioner.norm_std":
        return torch.tensor(CLIP_STD, dtype=torch.float32).view(3, 1, 1)
    if key.endswith("pos_embed"):
        grid = cfg.pos_grid
        c = max(2, grid // 8)
        smooth = F.interpolate(_randn(g, 1, d, c, c), size=(grid, grid), mode="bilinear", align_corners=True)
        smooth = smooth * (0.02 / smooth.std().clamp_min(1e-6))
        smooth += 0.005 * _randn(g, 1, d, grid, grid)
        return smooth.flatten(2).transpose(1, 2).contiguous()          # (1, G*G, D) row-major
    if key.endswith("embedder.weight"):
        return _randn(g, *shape) * (0.8 / math.sqrt(shape[1]))
    if key.endswith("cls_token.token") or key == "model.reg_token":
        return _randn(g, *shape) * 0.5
    if key == "feature_normalizer.mean":
        return _randn(g, d) * 0.05
    if key == "feature_normalizer.tx":
        return torch.eye(d) + _randn(g, d, d) * (0.3 / math.sqrt(d))

    parts = key.split(".")                        # model.blocks.{i}.{sub}.{param}
    i = int(parts[2])
    t = (i + 1) / cfg.depth
    sub, param = ".".join(parts[3:-1]), parts[-1]
    idx, sign = outliers
    if sub in ("ls1", "ls2"):
        lo, hi = math.log(0.05), math.log(2.0)
        return torch.exp(lo + (hi - lo) * torch.rand(d, generator=g))
    if sub in ("norm1", "norm2"):
        if param == "bias":
            return _randn(g, d) * 0.02
        w = 1.0 + 0.1 * _randn(g, d)
        big = torch.rand(d, generator=g) < 0.02
        w[big] *= 2.0 + 2.0 * torch.rand(int(big.sum()), generator=g)
        w[idx] = 0.05 + 0.15 * torch.rand(idx.numel(), generator=g)
        return w
    if param == "bias":
        b = _randn(g, *shape) * 0.02
        if sub == "mlp.fc2":
            b[idx] += (0.5 + t) * sign
        return b
    fan_in = shape[1]
    if sub in ("attn.proj", "mlp.fc2"):
        gain = 0.5 + 0.5 * t
    else:
        gain = _uniform(g, 0.7, 1.1)
    return _randn(g, *shape) * (gain / math.sqrt(fan_in))


# ---------------------------------------------------------------------------------------------
# streaming safetensors writer
# ---------------------------------------------------------------------------------------------

def _write_safetensors(path: Path, specs: list[tuple[str, tuple[int, ...], torch.dtype]],
                       make: Callable[[str], torch.Tensor]) -> int:
    """Write a safetensors file tensor by tensor; returns the bytes of tensor data. The header is
    built from ``specs`` first, so only one tensor is alive at a time."""
    if sys.byteorder != "little":
        raise RuntimeError("safetensors stores little-endian data; this writer needs a little-endian host")
    header: dict = {"__metadata__": {"format": "pt"}}
    pos = 0
    for name, shape, dtype in specs:
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": _ST_TAGS[dtype], "shape": list(shape), "data_offsets": [pos, pos + nbytes]}
        pos += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)               # the format pads the header to 8 bytes
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for name, shape, dtype in specs:
            t = make(name)
            if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
                raise RuntimeError(f"synthetic tensor {name}: expected {dtype} {shape}, made {t.dtype} "
                                   f"{tuple(t.shape)}")
            f.write(memoryview(t.contiguous().reshape(-1).view(torch.uint8).numpy()))
            del t
    os.replace(tmp, path)
    return pos


def _split(specs: list[tuple[str, tuple[int, ...], torch.dtype]], shards: int) -> list[list]:
    sizes = [math.prod(s) * torch.empty((), dtype=dt).element_size() for _, s, dt in specs]
    target = sum(sizes) / shards
    groups: list[list] = [[]]
    acc = 0
    for k, (spec, size) in enumerate(zip(specs, sizes)):
        left_specs, left_groups = len(specs) - k, shards - len(groups)
        if groups[-1] and left_groups > 0 and (acc >= target * len(groups) or left_specs <= left_groups):
            groups.append([])
        groups[-1].append(spec)
        acc += size
    return groups


def write_checkpoint(folder: str | os.PathLike, model: str | ModelConfig, *, seed: int = 0, shards: int = 1,
                     feature_normalizer: bool = False, scaled_ln: bool = False,
                     dtype: torch.dtype = torch.float32, bundled_code: bool = True) -> Path:
    """Write a synthetic checkpoint in the Hub layout into ``folder`` (created if needed; an
    earlier checkpoint there is replaced) and return the folder.

    model: a known name or alias (``"C-RADIOv2-B"``, ``"test-d128"``) or a ModelConfig. seed: same
    seed → byte-identical tensors. shards: 1 writes ``model.safetensors``; n > 1 writes n shards and
    ``model.safetensors.index.json``. feature_normalizer / scaled_ln: add those options (also taken
    from a ModelConfig). dtype: storage dtype of the parameters (float32, bfloat16 or float16).
    bundled_code: write ``vit_patch_generator.py`` saying the config's align_corners (False: leave
    it out, as in a folder holding only config.json and weights).
    """
    cfg = model_config(model) if isinstance(model, str) else model
    name = resolve_known_model(model).name if isinstance(model, str) else None
    if feature_normalizer:
        cfg = cfg.with_(has_feature_normalizer=True)
    if scaled_ln:
        if not cfg.arch.allows_scaled_ln:
            raise ValueError(f"scaled_ln is not defined for {cfg.arch.timm_name}")
        cfg = cfg.with_(scaled_ln=True)
    if dtype not in _STORAGE_DTYPES:
        raise ValueError(f"dtype: expected one of float32, bfloat16, float16, got {dtype}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")

    specs = [(k, shape, dt if k in BUFFER_NAMES else dtype) for k, (shape, dt) in expected_tensors(cfg).items()]
    if not 1 <= shards <= len(specs):
        raise ValueError(f"shards: expected 1..{len(specs)}, got {shards}")

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.iterdir():
        if p.name in _OURS or (p.name.startswith("model-") and p.name.endswith(".safetensors")):
            p.unlink()

    outliers = _outliers(cfg, seed)
    shapes = {k: s for k, s, _ in specs}
    stored = {k: dt for k, _, dt in specs}

    def make(k: str) -> torch.Tensor:
        return _make_tensor(k, shapes[k], cfg, seed, outliers).to(stored[k])

    if shards == 1:
        _write_safetensors(folder / WEIGHTS_NAME, specs, make)
    else:
        weight_map, total = {}, 0
        groups = _split(specs, shards)
        for i, group in enumerate(groups, 1):
            fname = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
            total += _write_safetensors(folder / fname, group, make)
            weight_map.update({k: fname for k, _, _ in group})
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        _write_text(folder / INDEX_NAME, json.dumps(index, indent=2) + "\n")
    if bundled_code:
        if cfg.align_corners is None:
            raise ValueError("bundled_code=True needs the config's align_corners (True or False), got None")
        _write_text(folder / BUNDLED_FILE, bundled_source(cfg.align_corners))
    _write_text(folder / CONFIG_NAME, json.dumps(config_json(cfg, dtype=dtype, seed=seed, name=name), indent=2) + "\n")
    return folder


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# the synthetic cache used by ``synthetic:`` names
# ---------------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """fastradio's cache root: ``$FASTRADIO_CACHE``, else ``$XDG_CACHE_HOME/fastradio``, else
    ``~/.cache/fastradio``."""
    env = os.environ.get("FASTRADIO_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "fastradio"


def _complete(folder: Path) -> bool:
    return (folder / CONFIG_NAME).is_file() and (
        (folder / WEIGHTS_NAME).is_file() or (folder / INDEX_NAME).is_file())


def synthetic_folder(name: str, seed: int = 0, *, root: str | os.PathLike | None = None) -> Path:
    """The folder of the synthetic checkpoint ``<canonical name>-seed<seed>`` under
    ``root`` (default ``default_cache_dir() / "synthetic"``), generating it first if it is not
    there. Generation goes to a temporary folder renamed into place, so a folder that exists is
    complete, and concurrent callers both end up with one valid copy."""
    km = resolve_known_model(name)
    if km is None:
        raise ModelNotFoundError(
            f"unknown model {name!r} for a synthetic checkpoint: expected one of "
            f"{', '.join(m.name for m in KNOWN_MODELS)} (as synthetic:<name>[@seed])")
    root = Path(root) if root is not None else default_cache_dir() / "synthetic"
    final = root / f"{km.name}-seed{seed}"
    if _complete(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        write_checkpoint(tmp, km.name, seed=seed)
        if final.exists() and not _complete(final):
            stale = Path(tempfile.mkdtemp(prefix=f".{final.name}.stale.", dir=root))
            os.replace(final, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _complete(final):           # lost a race to a broken folder: report it
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
