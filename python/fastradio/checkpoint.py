"""Reading C-RADIO checkpoints (v2, v3, v4): ``config.json`` as data, safetensors weights checked
strictly.

Layouts (spec/c-radiov2.md §6, spec/radio-family.md §4): a folder with ``config.json`` and either ``model.safetensors`` or
``model.safetensors.index.json`` plus the shards it lists. Every tensor name starts with
``radio_model.``; the model's state-dict names are those names without the prefix. A file whose
names *all* lack the prefix (``safetensors.torch.save_file(model.state_dict(), ...)``) is read as if
it had it.

Nothing from a model folder is ever executed: ``config.json`` is parsed as JSON and read key by
key, ``.py`` files are never imported or run (the position-resize detection of
:mod:`fastradio.align` reads one of them as text), and pickle checkpoints (``*.pth``, ``*.pth.tar``, ``*.pt``,
``*.bin``) are refused because unpickling can run arbitrary code.

Stored dtypes accepted by default (``DEFAULT_ALLOWED_DTYPES``): float32 (what the Hub files hold),
bfloat16 and float16. All *parameters* of one checkpoint must share one of those dtypes, except
that the position table may be float32 beside lower-precision weights (the state_dict of a
``.half()`` fastradio model: it keeps the table fp32); the
buffers (``input_conditioner.norm_mean``/``norm_std``, ``feature_normalizer.mean``/``tx``) may be
any allowed float dtype (synthetic bf16 checkpoints keep them fp32); ``summary_idxs`` must be
int64. Tensors are returned as stored, never cast: the caller casts once when it places them.

Every failure raises :class:`~fastradio.errors.CheckpointError` (malformed, truncated, or
self-contradictory files) or :class:`~fastradio.errors.UnsupportedModelError` (well-formed files
that ask for something fastradio does not implement), naming the file, what was expected and
what was found.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import torch

from .configs import ARCHITECTURES, KNOWN_TEACHERS, KNOWN_VERSIONS, ModelConfig, known_model_for_version
from .errors import CheckpointError, ModelNotFoundError, UnsupportedModelError

__all__ = [
    "PREFIX",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "INDEX_NAME",
    "PICKLE_SUFFIXES",
    "BUFFER_NAMES",
    "DEFAULT_ALLOWED_DTYPES",
    "read_config",
    "parse_config",
    "expected_tensors",
    "find_weight_files",
    "refuse_pickle",
    "inspect_keys",
    "stored_dtype",
    "config_for_files",
    "load_weights",
    "validate_summary_idxs",
]

PREFIX = "radio_model."
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
#: checkpoint formats that are Python pickles (loading one can execute code)
PICKLE_SUFFIXES = (".pth.tar", ".pth", ".pt", ".bin", ".ckpt", ".pkl")
#: checkpoint names (with prefix) that are buffers, not parameters
BUFFER_NAMES = frozenset(PREFIX + n for n in (
    "summary_idxs",
    "input_conditioner.norm_mean",
    "input_conditioner.norm_std",
    "feature_normalizer.mean",
    "feature_normalizer.tx",
))
DEFAULT_ALLOWED_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.float16)

_SUMMARY = PREFIX + "summary_idxs"
_EMBED = PREFIX + "model.patch_generator.embedder.weight"
_POS = PREFIX + "model.patch_generator.pos_embed"
_CLS = PREFIX + "model.patch_generator.cls_token.token"
_BLOCKS = PREFIX + "model.blocks."
_REG_TOKEN = PREFIX + "model.reg_token"
_FN = PREFIX + "feature_normalizer."
_INTER_FN = PREFIX + "inter_feature_normalizer."

#: safetensors dtype tag → (torch dtype, bytes per element)
_ST_DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "F64": (torch.float64, 8), "F32": (torch.float32, 4), "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2), "I64": (torch.int64, 8), "I32": (torch.int32, 4),
    "I16": (torch.int16, 2), "I8": (torch.int8, 1), "U8": (torch.uint8, 1), "BOOL": (torch.bool, 1),
    "U16": (torch.uint16, 2), "U32": (torch.uint32, 4), "U64": (torch.uint64, 8),
    "F8_E4M3": (torch.float8_e4m3fn, 1), "F8_E5M2": (torch.float8_e5m2, 1),
}
_MAX_HEADER_BYTES = 100 * 1024 * 1024   # the safetensors format's own limit
_MAX_CONFIG_BYTES = 16 * 1024 * 1024    # a config.json is a few kB; refuse to parse giant files
_MAX_LISTED = 12                        # names listed in one error message


# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------

_MISSING = object()


def _type_name(types: tuple[type, ...]) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object", tuple: "a list", type(None): "null"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def _is(value: Any, types: tuple[type, ...]) -> bool:
    # JSON booleans are Python ints; an integer field must not accept true/false and vice versa.
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, tuple(t for t in types if t is not bool))


def _field(d: dict, key: str, types: tuple[type, ...], where: str, source: str, default: Any = _MISSING) -> Any:
    if key not in d:
        if default is _MISSING:
            raise CheckpointError(f"{source}: missing key {where}{key} (expected {_type_name(types)})")
        return default
    value = d[key]
    if not _is(value, types):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise CheckpointError(f"{source}: {where}{key}: expected {_type_name(types)}, "
                              f"got {type(value).__name__} {shown}")
    return value


def read_config(path: str | os.PathLike) -> dict:
    """Parse a ``config.json`` as plain JSON data (nothing in it is executed or imported)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > _MAX_CONFIG_BYTES:
            raise CheckpointError(f"{path}: expected a config.json of at most {_MAX_CONFIG_BYTES} bytes, "
                                  f"got {size} bytes")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as e:
        raise ModelNotFoundError(f"{path}: config.json not found") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: expected a JSON object, could not parse the file ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def parse_config(cfg: dict, *, source: str = "config.json") -> ModelConfig:
    """``config.json`` contents (a dict) → :class:`ModelConfig`.

    Read: ``args.model`` (architecture), ``args.cpe_max_size`` (position grid = cpe_max_size //
    patch_size; 2048 when absent), ``patch_size`` (16; absent or null means 16),
    ``args.cls_token_per_teacher`` and ``args.teachers`` (one CLS token per distinct teacher name,
    else 1; their ``use_summary``: the summary slots), ``args.register_multiple`` /
    ``args.cpe_num_registers`` (registers: the explicit count when it is a positive integer, else
    ``register_multiple - num_cls % register_multiple``, else 0), ``args.model_norm``,
    ``args.model_kwargs`` (only ``scaled_ln``), ``max_resolution``, ``preferred_resolution``,
    ``vitdet_window_size``, ``adaptor_names``/``adaptor_configs``, ``feature_normalizer_config``,
    ``inter_feature_normalizer_config``, ``version`` (a known C-RADIOv3/v4 version must match its
    architecture and gives the family's preferred resolution when the file has none; one naming an
    unknown RADIO release from v3 on is refused). Teacher names must be known ones
    (``configs.KNOWN_TEACHERS``). Everything else (the training arguments, ``auto_map`` and other
    Transformers keys) is ignored.

    The summary slots are the teachers whose ``use_summary`` is true (default true), as the
    reference derives them, when at least one teacher states the flag; otherwise
    ``summary_idxs=None``, and :func:`config_for_files` takes them from the weights (which must
    agree when the config states them). config.json does not say how the position table is
    resized: ``align_corners=None`` (decided by :func:`fastradio.align.decide`).

    Raises CheckpointError for wrong types, impossible values and contradictions, and
    UnsupportedModelError for unknown architectures, teachers and versions and features not
    implemented (windowed attention, adaptors, a final norm, unknown model_kwargs, an
    intermediate-feature normaliser).
    """
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{source}: expected a JSON object, got {type(cfg).__name__}")
    args = _field(cfg, "args", (dict,), "", source)
    a = "args."

    model = _field(args, "model", (str,), a, source)
    if model not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"{source}: args.model = {model!r} is not a supported architecture; expected one of "
            f"{', '.join(ARCHITECTURES)}")
    arch = ARCHITECTURES[model]

    patch = _field(cfg, "patch_size", (int, type(None)), "", source, None)
    patch = 16 if patch is None else patch
    if patch != 16:
        raise UnsupportedModelError(f"{source}: patch_size: expected 16 (the only patch size of the C-RADIO family), "
                                    f"got {patch}")

    cpe = _field(args, "cpe_max_size", (int, type(None)), a, source, 2048)
    if cpe is None:
        raise UnsupportedModelError(
            f"{source}: args.cpe_max_size is null: a model without the CPE position grid is not C-RADIOv2 "
            f"and is not supported (expected an integer such as 2048)")
    if cpe <= 0 or cpe % patch:
        raise CheckpointError(f"{source}: args.cpe_max_size: expected a positive multiple of the patch size "
                              f"{patch}, got {cpe}")
    pos_grid = cpe // patch

    per_teacher = _field(args, "cls_token_per_teacher", (bool,), a, source, False)
    teachers_raw = _field(args, "teachers", (list, type(None)), a, source, None) or []
    names: list[str] = []
    for i, t in enumerate(teachers_raw):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
            raise CheckpointError(f"{source}: args.teachers[{i}]: expected an object with a non-empty "
                                  f"'name' string, got {t!r:.80}")
        if t["name"] not in KNOWN_TEACHERS:
            raise UnsupportedModelError(
                f"{source}: args.teachers[{i}].name = {t['name']!r} is not a teacher fastradio knows "
                f"(expected one of {', '.join(KNOWN_TEACHERS)}): a checkpoint distilled from other teachers "
                f"is not a model described to us")
        if t["name"] not in names:
            names.append(t["name"])
    # The summary slots as the reference derives them: the teachers (every entry, in order) whose
    # use_summary is true (its default). Only when the file states use_summary somewhere: configs
    # without the flag leave the slots to the summary_idxs tensor, which is the authority either way.
    summary_idxs = None
    if any(isinstance(t, dict) and "use_summary" in t for t in teachers_raw):
        for i, t in enumerate(teachers_raw):
            _field(t, "use_summary", (bool,), f"args.teachers[{i}].", source, True)
        summary_idxs = tuple(i for i, t in enumerate(teachers_raw) if t.get("use_summary", True))
    if per_teacher:
        if not names:
            raise CheckpointError(f"{source}: args.cls_token_per_teacher is true, so args.teachers must list "
                                  f"at least one teacher; got {teachers_raw!r:.80}")
        num_cls = len(names)
        cls_rule = f"{num_cls} CLS tokens (one per teacher: {', '.join(names)})"
    else:
        num_cls = 1
        cls_rule = "1 CLS token (args.cls_token_per_teacher is false or absent)"
    if summary_idxs is not None and (not summary_idxs or summary_idxs[-1] >= num_cls):
        raise CheckpointError(
            f"{source}: args.teachers[*].use_summary selects the summary slots {list(summary_idxs)}, but the model "
            f"has {cls_rule}: expected at least one slot, each below {num_cls}")

    multiple = _field(args, "register_multiple", (int, type(None)), a, source, None)
    explicit = _field(args, "cpe_num_registers", (int, type(None)), a, source, None)
    for key, v in (("register_multiple", multiple), ("cpe_num_registers", explicit)):
        if v is not None and v < 0:
            raise CheckpointError(f"{source}: args.{key}: expected a non-negative integer, got {v}")
    # A count of 0 / null means "not set" (falls through to the rule), as in the reference.
    if explicit:
        num_registers = explicit
        reg_rule = f"{explicit} registers (args.cpe_num_registers)"
    elif multiple:
        num_registers = multiple - num_cls % multiple
        reg_rule = f"{num_registers} registers (args.register_multiple {multiple} - {num_cls} mod {multiple})"
    else:
        num_registers = 0
        reg_rule = "0 registers (args.register_multiple and args.cpe_num_registers unset)"

    if _field(args, "model_norm", (bool, type(None)), a, source, False):
        raise UnsupportedModelError(
            f"{source}: args.model_norm is true (a final LayerNorm); no C-RADIO model has a final norm and "
            f"fastradio does not implement one (expected false or absent)")

    kwargs = _field(args, "model_kwargs", (dict, type(None)), a, source, None) or {}
    unknown = sorted(k for k in kwargs if k != "scaled_ln")
    if unknown:
        raise UnsupportedModelError(
            f"{source}: args.model_kwargs has options fastradio does not implement: {', '.join(unknown)} "
            f"(only 'scaled_ln' is understood)")
    scaled_ln = _field(kwargs, "scaled_ln", (bool,), "args.model_kwargs.", source, False)
    if scaled_ln and not arch.allows_scaled_ln:
        raise UnsupportedModelError(
            f"{source}: args.model_kwargs.scaled_ln is true, but scaled_ln is not defined for {model} "
            f"(only for {', '.join(n for n, x in ARCHITECTURES.items() if x.allows_scaled_ln)})")

    args_dtype = _field(args, "dtype", (str, type(None)), a, source, None)

    version = _field(cfg, "version", (str, type(None)), "", source, None)
    known = known_model_for_version(version)
    if known is not None and known.arch != model:
        raise CheckpointError(
            f"{source}: the config contradicts itself: version = {version!r} is {known.name}, whose architecture "
            f"is args.model = {known.arch}, but args.model = {model!r}")
    newer = _radio_major(version)
    if known is None and newer is not None and newer >= 3:
        raise UnsupportedModelError(
            f"{source}: version = {version!r} names a RADIO release fastradio does not know (known versions: "
            f"{', '.join(KNOWN_VERSIONS)}; older C-RADIOv2 versions are accepted)")

    max_res = _field(cfg, "max_resolution", (int, type(None)), "", source, None)
    max_res = cpe if max_res is None else max_res
    if max_res <= 0:
        raise CheckpointError(f"{source}: max_resolution: expected a positive integer, got {max_res}")

    pref = _field(cfg, "preferred_resolution", (list, tuple, type(None)), "", source, None)
    if pref is None:  # the family's value (C-RADIOv3/v4: 512), else C-RADIOv2's 768
        pref = list(known.preferred_resolution) if known is not None else [768, 768]
    if len(pref) != 2 or not all(_is(v, (int,)) and v > 0 and v % patch == 0 for v in pref):
        raise CheckpointError(f"{source}: preferred_resolution: expected [height, width], two positive "
                              f"multiples of {patch}, got {pref!r:.80}")

    window = _field(cfg, "vitdet_window_size", (int, type(None)), "", source, None)
    if window is not None:
        raise UnsupportedModelError(
            f"{source}: vitdet_window_size = {window}: windowed (ViTDet) attention set in config.json is not "
            f"implemented (expected null); fastradio.load(..., vitdet_window_size={window}) turns the mode on")
    adaptors = _field(cfg, "adaptor_names", (list, type(None)), "", source, None)
    if adaptors:
        raise UnsupportedModelError(
            f"{source}: adaptor_names = {adaptors!r:.80}: adaptor heads are not implemented yet "
            f"(expected null or [])")
    adaptor_cfgs = _field(cfg, "adaptor_configs", (dict, type(None)), "", source, None)
    if adaptor_cfgs:
        raise UnsupportedModelError(
            f"{source}: adaptor_configs has entries {sorted(adaptor_cfgs)!r:.80}: adaptor heads are not "
            f"implemented yet (expected {{}} or null)")

    fn_cfg = _field(cfg, "feature_normalizer_config", (dict, type(None)), "", source, None)
    if fn_cfg is not None and "embed_dim" in fn_cfg and fn_cfg["embed_dim"] != arch.embed_dim:
        raise CheckpointError(
            f"{source}: feature_normalizer_config.embed_dim = {fn_cfg['embed_dim']!r} contradicts "
            f"args.model = {model} (width {arch.embed_dim})")
    inter = _field(cfg, "inter_feature_normalizer_config", (dict, type(None)), "", source, None)
    if inter is not None:
        raise UnsupportedModelError(
            f"{source}: inter_feature_normalizer_config is set: the intermediate-feature normaliser is "
            f"not implemented yet (expected null)")

    extra = {
        "config_json": copy.deepcopy(cfg),  # the file as parsed: model.config.to_dict() / .args (fastradio.compat)
        "source": source,
        "version": version,
        "args_dtype": args_dtype,
        "cpe_max_size": cpe,
        "register_multiple": multiple,
        "cpe_num_registers": explicit,
        "prefix_rule": f"{cls_rule} + {reg_rule}",
        "feature_normalizer_config": fn_cfg,
        "known_model": known.name if known is not None else None,
    }
    return ModelConfig(
        arch=arch,
        patch_size=patch,
        num_cls_tokens=num_cls,
        num_registers=num_registers,
        pos_grid=pos_grid,
        max_resolution=max_res,
        preferred_resolution=(pref[0], pref[1]),
        scaled_ln=scaled_ln,
        teachers=tuple(names),
        has_feature_normalizer=fn_cfg is not None,
        window_size=None,
        # The summary slots of use_summary, if stated, are cross-checked against the weights' (and
        # otherwise taken from them) by config_for_files; layer-scale is confirmed against the
        # weights too; the position resize, which config.json does not hold, is decided from the
        # checkpoint's bundled code or revision (fastradio.align.decide).
        summary_idxs=summary_idxs,
        layer_scale=arch.layer_scale,
        align_corners=None,
        align_corners_source=None,
        extra=extra,
    )


_RADIO_VERSION = re.compile(r"radio[_-]?v(\d+)")


def _radio_major(version: str | None) -> int | None:
    """The RADIO major version a ``version`` string names (``c-radio_v3-b`` → 3,
    ``radio_v2.5-g`` → 2), or None when it names none."""
    if not version:
        return None
    m = _RADIO_VERSION.search(version.lower())
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------------------------
# the tensors a config implies
# ---------------------------------------------------------------------------------------------

def _summary_len(cfg: ModelConfig) -> int:
    # The slots are checkpoint data: known once config_for_files has read them (C-RADIOv2/v3:
    # [0, 1, 2]; v4: [0, 1]); before that the loader accepts 1..num_cls entries and
    # validate_summary_idxs checks the values.
    if cfg.summary_idxs is not None:
        return len(cfg.summary_idxs)
    return min(3, cfg.num_cls_tokens)


def expected_tensors(cfg: ModelConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every checkpoint tensor the config implies: ``{name (with prefix): (shape, dtype)}``, in
    the canonical order. Parameters are float32 as on the Hub (the loader also accepts the other
    ``DEFAULT_ALLOWED_DTYPES``), ``summary_idxs`` int64 of shape (len(summary_idxs),), the input
    conditioner buffers float32 (3, 1, 1), ``model.reg_token`` (1, rows, D) when the architecture
    carries one (C-RADIOv3-B/L: loaded and ignored), ``blocks.{i}.ls1/ls2.grandma`` (D,) with
    layer-scale, and ``feature_normalizer.{mean (D,), tx (D, D)}`` float32 when
    ``cfg.has_feature_normalizer``. 6 + 12·depth entries for C-RADIOv2 (+ 2·depth + 1 for
    C-RADIOv3-B/L)."""
    d, f, f32 = cfg.embed_dim, cfg.mlp_hidden, torch.float32
    pg = PREFIX + "model.patch_generator."
    out: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
        _SUMMARY: ((_summary_len(cfg),), torch.int64),
        PREFIX + "input_conditioner.norm_mean": ((3, 1, 1), f32),
        PREFIX + "input_conditioner.norm_std": ((3, 1, 1), f32),
        pg + "pos_embed": ((1, cfg.pos_grid**2, d), f32),
        pg + "embedder.weight": ((d, cfg.patch_features), f32),
        pg + "cls_token.token": ((cfg.num_prefix_tokens, d), f32),
    }
    if cfg.reg_token_rows:
        out[_REG_TOKEN] = ((1, cfg.reg_token_rows, d), f32)
    for i in range(cfg.depth):
        b = f"{_BLOCKS}{i}."
        out.update({
            b + "norm1.weight": ((d,), f32), b + "norm1.bias": ((d,), f32),
            b + "attn.qkv.weight": ((3 * d, d), f32), b + "attn.qkv.bias": ((3 * d,), f32),
            b + "attn.proj.weight": ((d, d), f32), b + "attn.proj.bias": ((d,), f32),
        })
        if cfg.layer_scale:
            out[b + "ls1.grandma"] = ((d,), f32)
        out.update({
            b + "norm2.weight": ((d,), f32), b + "norm2.bias": ((d,), f32),
            b + "mlp.fc1.weight": ((f, d), f32), b + "mlp.fc1.bias": ((f,), f32),
            b + "mlp.fc2.weight": ((d, f), f32), b + "mlp.fc2.bias": ((d,), f32),
        })
        if cfg.layer_scale:
            out[b + "ls2.grandma"] = ((d,), f32)
    if cfg.has_feature_normalizer:
        out[_FN + "mean"] = ((d,), f32)
        out[_FN + "tx"] = ((d, d), f32)
    return out


# ---------------------------------------------------------------------------------------------
# finding and reading safetensors files
# ---------------------------------------------------------------------------------------------

def _is_pickle(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


def refuse_pickle(path: str | os.PathLike) -> UnsupportedModelError:
    """The error for a pickle checkpoint (returned, so callers ``raise refuse_pickle(p)``)."""
    return UnsupportedModelError(
        f"{path}: pickle checkpoints (*.pth, *.pth.tar, *.pt, *.bin) are refused: unpickling can execute "
        f"arbitrary code from the file. fastradio loads safetensors only (config.json + model.safetensors, "
        f"as on the Hugging Face Hub, e.g. nvidia/C-RADIOv2-B); a safe pickle-to-safetensors conversion "
        f"is not implemented yet")


def _listing(folder: Path) -> list[str]:
    try:
        return sorted(p.name for p in folder.iterdir())
    except OSError:
        return []


def _short(names: Iterable[str], limit: int = _MAX_LISTED) -> str:
    names = list(names)
    if not names:
        return "(nothing)"
    text = ", ".join(names[:limit])
    return text + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def find_weight_files(folder: str | os.PathLike) -> list[Path]:
    """The safetensors files of a checkpoint folder: ``[model.safetensors]``, or the shards a
    ``model.safetensors.index.json`` lists (sorted, each once). A sharded index is validated here
    against the shard headers: every listed shard exists, the index's keys equal the keys in the
    shards, and each key is in the shard the index names.

    Raises ModelNotFoundError when neither layout is present, UnsupportedModelError when only
    pickle checkpoints are, CheckpointError for a broken index."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelNotFoundError(f"{folder}: expected a checkpoint folder, no such directory")
    single = folder / WEIGHTS_NAME
    if single.is_file():
        return [single]
    index = folder / INDEX_NAME
    if index.is_file():
        return _read_index(index)
    found = _listing(folder)
    pickles = [n for n in found if _is_pickle(n)]
    if pickles:
        raise refuse_pickle(folder / pickles[0])
    raise ModelNotFoundError(
        f"{folder}: expected {WEIGHTS_NAME} or {INDEX_NAME} (sharded), found: {_short(found)}")


def _read_index(index: Path) -> list[Path]:
    try:
        data = json.loads(index.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{index}: expected a JSON object with a 'weight_map', could not parse ({e})") from e
    wmap = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(wmap, dict) or not wmap:
        raise CheckpointError(f"{index}: expected a non-empty 'weight_map' object (tensor name → shard file), "
                              f"got {type(wmap).__name__ if wmap is not None else 'no weight_map'}")
    shards: dict[str, Path] = {}
    for key, fname in wmap.items():
        # Shards must sit beside the index: no paths, so an index cannot point outside the folder.
        if (not isinstance(fname, str) or not fname.endswith(".safetensors") or fname != Path(fname).name
                or fname.startswith(".")):
            raise CheckpointError(f"{index}: weight_map[{key!r}]: expected a *.safetensors file name in the "
                                  f"same folder, got {fname!r}")
        shards.setdefault(fname, index.parent / fname)
    missing = [n for n, p in shards.items() if not p.is_file()]
    if missing:
        raise CheckpointError(f"{index}: lists shard(s) that do not exist: {_short(sorted(missing))} "
                              f"(found in the folder: {_short(_listing(index.parent))})")
    files = [shards[n] for n in sorted(shards)]
    headers = _read_headers(files)
    where = {name: h.path.name for h in headers for name in h.entries}
    listed, stored = set(wmap), set(where)
    if listed != stored:
        raise CheckpointError(
            f"{index}: the index and the shards disagree: in the index but in no shard: "
            f"{_short(sorted(listed - stored))}; in a shard but not in the index: {_short(sorted(stored - listed))}")
    moved = [f"{k} (index: {wmap[k]}, stored in: {where[k]})" for k in sorted(listed) if wmap[k] != where[k]]
    if moved:
        raise CheckpointError(f"{index}: tensors are not in the shard the index names: {_short(moved)}")
    return files


class _Entry(NamedTuple):
    dtype_tag: str
    dtype: torch.dtype | None      # None: a dtype tag torch/fastradio does not know
    shape: tuple[int, ...]
    begin: int
    end: int
    #: the name in the file when it differs from the entry's key (a file without the Hub prefix)
    stored_name: str | None = None


class _Header(NamedTuple):
    path: Path
    entries: dict[str, _Entry]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _read_header(path: Path) -> _Header:
    """Parse and check a safetensors header without reading the tensor data: the header length,
    the JSON, each entry's dtype/shape/offsets, and that the offsets tile the data section exactly
    (which catches truncated and padded files)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: truncated safetensors file: expected at least an 8-byte header "
                                      f"length, the file has {size} bytes")
            n = int.from_bytes(head, "little")
            if n > _MAX_HEADER_BYTES or n < 2:
                raise CheckpointError(f"{path}: corrupted safetensors header: the header length field says "
                                      f"{n} bytes (expected 2..{_MAX_HEADER_BYTES})")
            if 8 + n > size:
                raise CheckpointError(f"{path}: truncated safetensors file: the header needs {8 + n} bytes, "
                                      f"the file has {size}")
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the safetensors file ({e})") from e
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupted safetensors header: expected a JSON object, could not "
                              f"parse it ({e})") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupted safetensors header: expected a JSON object, "
                              f"got {type(header).__name__}")
    meta = header.pop("__metadata__", None)
    if meta is not None and not isinstance(meta, dict):
        raise CheckpointError(f"{path}: corrupted safetensors header: __metadata__ should be an object, "
                              f"got {type(meta).__name__}")
    data_size = size - 8 - n
    entries: dict[str, _Entry] = {}
    for name, e in header.items():
        ok = (isinstance(e, dict) and isinstance(e.get("dtype"), str) and isinstance(e.get("shape"), list)
              and all(type(s) is int and s >= 0 for s in e["shape"])
              and isinstance(e.get("data_offsets"), list) and len(e["data_offsets"]) == 2
              and all(type(o) is int and o >= 0 for o in e["data_offsets"])
              and e["data_offsets"][0] <= e["data_offsets"][1])
        if not ok:
            raise CheckpointError(f"{path}: corrupted safetensors header: entry {name!r} should have a dtype, "
                                  f"a shape and data_offsets [begin, end], got {e!r:.120}")
        tag = e["dtype"]
        dtype, item = _ST_DTYPES.get(tag, (None, 0))
        begin, end = e["data_offsets"]
        shape = tuple(e["shape"])
        if dtype is not None and end - begin != math.prod(shape) * item:
            raise CheckpointError(f"{path}: corrupted safetensors header: {name} is {tag} {list(shape)} "
                                  f"({math.prod(shape) * item} bytes) but its offsets span {end - begin} bytes")
        entries[name] = _Entry(tag, dtype, shape, begin, end)
    spans = sorted((x.begin, x.end, k) for k, x in entries.items())
    last = max((x.end for x in entries.values()), default=0)
    if last > data_size:
        raise CheckpointError(f"{path}: truncated safetensors file: the header describes {last} bytes of tensor "
                              f"data, the file holds {data_size} (expected size {8 + n + last} bytes, got {size})")
    pos = 0
    for begin, end, k in spans:
        if begin != pos:
            raise CheckpointError(f"{path}: corrupted safetensors header: {k} starts at data byte {begin}, "
                                  f"expected {pos} (tensors must tile the data section without gaps or overlap)")
        pos = end
    if pos != data_size:
        raise CheckpointError(f"{path}: corrupted safetensors file: {data_size - pos} unexpected bytes after the "
                              f"last tensor (expected size {8 + n + pos} bytes, got {size})")
    return _Header(path, entries)


def _read_headers(files: list[Path]) -> list[_Header]:
    if not files:
        raise CheckpointError("expected at least one safetensors weight file, got none")
    headers, seen = [], {}
    for p in map(Path, files):
        if _is_pickle(p.name):
            raise refuse_pickle(p)
        h = _read_header(p)
        for name in h.entries:
            if name in seen:
                raise CheckpointError(f"duplicate tensor {name}: stored in both {seen[name]} and {p}")
            seen[name] = p
        headers.append(h)
    return headers


def _checkpoint_headers(files: list[Path]) -> list[_Header]:
    """The headers with every name in the Hub's naming. A file whose names all lack the
    ``radio_model.`` prefix but that is otherwise our layout (what ``model.state_dict()`` saved
    with ``safetensors.torch.save_file`` holds) is read as if it had it; anything else keeps its
    names, so a TorchHub-style ``base_model.*`` file is still reported as such."""
    headers = _read_headers(list(files))
    names = [n for h in headers for n in h.entries]
    if any(n.startswith(PREFIX) for n in names) or _EMBED[len(PREFIX):] not in names:
        return headers
    return [_Header(h.path, {PREFIX + n: e._replace(stored_name=n) for n, e in h.entries.items()}) for h in headers]


def stored_dtype(files: list[Path]) -> torch.dtype:
    """The dtype a checkpoint stores its parameters in (its patch embedding's; the loader checks
    that the others agree), from the headers only."""
    e = {n: x for h in _checkpoint_headers(files) for n, x in h.entries.items()}.get(_EMBED)
    if e is None or e.dtype is None:
        raise CheckpointError(f"{_where(list(files))}: expected a tensor {_EMBED} to tell the stored dtype, "
                              f"got {'none' if e is None else e.dtype_tag}")
    return e.dtype


def inspect_keys(files: list[Path]) -> dict[str, tuple[tuple[int, ...], torch.dtype | str]]:
    """``{name: (shape, dtype)}`` of every tensor in the files, from the headers only (no tensor
    data is read). dtype is a torch.dtype, or the safetensors tag string for a dtype torch does not
    have. Raises CheckpointError for a corrupted or truncated file or a name stored twice."""
    return {name: (e.shape, e.dtype if e.dtype is not None else e.dtype_tag)
            for h in _checkpoint_headers(list(files)) for name, e in h.entries.items()}


def _refuse_inter_normalizer(names: Iterable[str], where: str) -> None:
    inter = sorted(n for n in names if n.startswith(_INTER_FN))
    if inter:
        raise UnsupportedModelError(
            f"{where}: the checkpoint has an intermediate-feature normaliser ({_short(inter, 4)}), which "
            f"fastradio does not implement yet")


def config_for_files(cfg: ModelConfig, files: list[Path]) -> ModelConfig:
    """The config completed with the facts of the weights (radio-family §4), reading headers and
    the tiny ``summary_idxs`` tensor only:

    - ``has_feature_normalizer`` when the weights carry ``radio_model.feature_normalizer.*``;
    - ``layer_scale`` iff ``blocks.{i}.ls1.grandma`` is present (an architecture that has
      layer-scale, ``vit_*_patch16_v2_224``, without it is a contradiction);
    - ``summary_idxs`` from the ``summary_idxs`` tensor when it is valid (distinct CLS slots; an
      invalid one is left to :func:`load_weights`, which reports it).

    Raises UnsupportedModelError for ``inter_feature_normalizer.*`` tensors, CheckpointError for
    contradictions."""
    headers = _checkpoint_headers(list(files))
    keys = {name: e for h in headers for name, e in h.entries.items()}
    where = _where(files)
    _refuse_inter_normalizer(keys, where)
    changes: dict[str, Any] = {}
    if not cfg.has_feature_normalizer and any(k.startswith(_FN) for k in keys):
        changes["has_feature_normalizer"] = True

    ls = any(k.startswith(_BLOCKS) and k.endswith(".ls1.grandma") for k in keys)
    if cfg.arch.layer_scale and not ls:
        raise CheckpointError(
            f"{where}: the config contradicts the weights: {_cfg_source(cfg)} says args.model = "
            f"{cfg.arch.timm_name}, which has layer-scale, but the weights have no "
            f"{_BLOCKS}<i>.ls1.grandma tensors")
    if ls != cfg.layer_scale:
        changes["layer_scale"] = ls

    vals = _summary_from(headers, cfg)
    if vals is not None and cfg.summary_idxs is not None and vals != tuple(cfg.summary_idxs):
        raise CheckpointError(f"{where}: {_SUMMARY} = {list(vals)} contradicts the config's summary slots "
                              f"{list(cfg.summary_idxs)} (args.teachers[*].use_summary)")
    if vals is not None:
        changes["summary_idxs"] = vals
    return cfg.with_(**changes) if changes else cfg


def _summary_from(headers: list[_Header], cfg: ModelConfig) -> tuple[int, ...] | None:
    """The summary slots when ``summary_idxs`` is readable and valid; else None, and
    :func:`load_weights` reports what is wrong with it in its usual order of checks."""
    from safetensors import SafetensorError, safe_open

    for h in headers:
        e = h.entries.get(_SUMMARY)
        if e is None:
            continue
        if e.dtype != torch.int64 or len(e.shape) != 1 or not 1 <= e.shape[0] <= cfg.num_cls_tokens:
            return None
        try:
            with safe_open(str(h.path), framework="pt", device="cpu") as f:
                idxs = f.get_tensor(e.stored_name or _SUMMARY)
            validate_summary_idxs(idxs, cfg.num_cls_tokens)
        except (SafetensorError, OSError, RuntimeError, CheckpointError):
            return None
        return tuple(int(v) for v in idxs.tolist())
    return None


# ---------------------------------------------------------------------------------------------
# strict loading
# ---------------------------------------------------------------------------------------------

def _where(files: list[Path]) -> str:
    files = [Path(f) for f in files]
    if len(files) == 1:
        return str(files[0])
    return f"{files[0].parent} ({len(files)} shards)"


def _dtype_name(dt: torch.dtype | str) -> str:
    return str(dt).replace("torch.", "")


def _cfg_source(cfg: ModelConfig) -> str:
    return cfg.extra.get("source", "config")


def _check_architecture(keys: dict[str, _Entry], cfg: ModelConfig, where: str) -> None:
    """Cross-check what the config says against what the tensor shapes show, before the per-key
    comparison, so a contradiction is explained as such (both sides named)."""
    src = _cfg_source(cfg)
    emb = keys.get(_EMBED)
    depth_w = 1 + max((int(k[len(_BLOCKS):].split(".", 1)[0]) for k in keys
                       if k.startswith(_BLOCKS) and k[len(_BLOCKS):].split(".", 1)[0].isdigit()), default=-1)
    if emb is not None and len(emb.shape) == 2:
        d_w = emb.shape[0]
        if (d_w, depth_w) != (cfg.embed_dim, cfg.depth):
            match = [n for n, x in ARCHITECTURES.items() if (x.embed_dim, x.depth) == (d_w, depth_w)]
            hint = (f"; these sizes are those of args.model = {match[0]}" if match
                    else "; no supported architecture has these sizes")
            raise CheckpointError(
                f"{where}: the config contradicts the weights: {src} says args.model = {cfg.arch.timm_name} "
                f"(width {cfg.embed_dim}, depth {cfg.depth}), but the weights have width {d_w} "
                f"({_EMBED} is {list(emb.shape)}) and depth {depth_w} (blocks 0..{depth_w - 1}){hint}")
        if emb.shape[1] != cfg.patch_features:
            raise CheckpointError(
                f"{where}: the config contradicts the weights: patch size {cfg.patch_size} means "
                f"{cfg.patch_features} features per patch, but {_EMBED} is {list(emb.shape)}")
    pos = keys.get(_POS)
    if pos is not None and len(pos.shape) == 3 and pos.shape[0] == 1:
        rows = pos.shape[1]
        g = math.isqrt(rows)
        if g * g != rows:
            raise CheckpointError(
                f"{where}: {_POS} has {rows} rows, which is not a square grid; {src} (args.cpe_max_size "
                f"{cfg.pos_grid * cfg.patch_size}) expects {cfg.pos_grid}x{cfg.pos_grid} = {cfg.pos_grid**2}")
        if g != cfg.pos_grid:
            raise CheckpointError(
                f"{where}: the config contradicts the weights: {src} says args.cpe_max_size = "
                f"{cfg.pos_grid * cfg.patch_size}, a {cfg.pos_grid}x{cfg.pos_grid} position grid "
                f"({cfg.pos_grid**2} rows), but {_POS} has {rows} rows, a {g}x{g} grid "
                f"(cpe_max_size {g * cfg.patch_size})")
    cls = keys.get(_CLS)
    if cls is not None and len(cls.shape) == 2 and cls.shape[0] != cfg.num_prefix_tokens:
        rule = cfg.extra.get("prefix_rule") or f"{cfg.num_cls_tokens} CLS + {cfg.num_registers} registers"
        raise CheckpointError(
            f"{where}: the config contradicts the weights: {src} implies {rule} = {cfg.num_prefix_tokens} "
            f"rows of {_CLS}, but the weights have {cls.shape[0]} rows ({list(cls.shape)})")


def _unexpected_hints(names: list[str]) -> str:
    hints = []
    if any(n.startswith(_FN) for n in names):
        hints.append("feature_normalizer.* is an optional feature normaliser: load with the config from "
                     "config_for_files() (or set feature_normalizer_config) to accept it")
    if any(n.startswith(PREFIX + "adaptors.") for n in names):
        hints.append("adaptors.* are teacher adaptor heads, which are not implemented yet")
    if any(n.startswith(PREFIX + "model.norm.") for n in names):
        hints.append("model.norm.* is a final LayerNorm, which C-RADIOv2 does not have")
    if any(".ls1." in n or ".ls2." in n for n in names):
        hints.append("ls1/ls2 are layer-scale weights: the Hugging Face layout names them ls1.grandma and "
                     "ls2.grandma, one pair in every block (TorchHub files say ls1.gamma; C-RADIOv2 has none)")
    if any(n == _REG_TOKEN for n in names):
        hints.append("model.reg_token belongs to the vit_*_patch16_v2_224 architectures (C-RADIOv3-B/L)")
    if any(n.endswith("embedder.bias") for n in names):
        hints.append("C-RADIOv2's patch embedding has no bias")
    if any(not n.startswith(PREFIX) for n in names):
        hints.append(f"names without the {PREFIX!r} prefix (e.g. base_model.*, from a TorchHub file) are not "
                     f"in the Hugging Face layout")
    return ("; note: " + "; ".join(hints)) if hints else ""


def _check_keys(keys: dict[str, _Entry], want: dict[str, tuple[tuple[int, ...], torch.dtype]],
                cfg: ModelConfig, allow: tuple[torch.dtype, ...], where: str) -> None:
    missing = [k for k in want if k not in keys]
    unexpected = sorted(k for k in keys if k not in want)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_short(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_short(unexpected)}")
        raise CheckpointError(
            f"{where}: the tensors do not match {cfg.arch.timm_name} (expected {len(want)} tensors, "
            f"found {len(keys)}): {'; '.join(parts)}{_unexpected_hints(unexpected)}")

    bad_shape = []
    for k, (shape, _) in want.items():
        got = keys[k].shape
        if k == _SUMMARY:
            if len(got) != 1 or not 1 <= got[0] <= cfg.num_cls_tokens:
                bad_shape.append(f"{k}: expected (k,) with 1 <= k <= {cfg.num_cls_tokens}, got {got}")
        elif got != shape:
            bad_shape.append(f"{k}: expected {shape}, got {got}")
    if bad_shape:
        raise CheckpointError(f"{where}: wrong tensor shapes: {_short(bad_shape, 6)}")

    allowed = ", ".join(map(_dtype_name, allow))
    bad_dtype, param_dtypes = [], {}
    for k, (_, dtype) in want.items():
        e = keys[k]
        got = e.dtype if e.dtype is not None else e.dtype_tag
        if dtype == torch.int64:
            if got != torch.int64:
                bad_dtype.append(f"{k}: expected int64, got {_dtype_name(got)}")
        elif got not in allow:
            bad_dtype.append(f"{k}: expected one of {allowed}, got {_dtype_name(got)}")
        elif k not in BUFFER_NAMES and not (k == _POS and got == torch.float32):
            # An fp32 position table beside lower-precision weights is what a cast-down
            # fastradio model's state_dict() holds (it keeps the table fp32, DESIGN decision 3).
            param_dtypes.setdefault(got, []).append(k)
    if bad_dtype:
        raise CheckpointError(f"{where}: wrong tensor dtypes: {_short(bad_dtype, 6)}")
    if len(param_dtypes) > 1:
        mix = "; ".join(f"{_dtype_name(dt)}: {len(v)} (e.g. {v[0]})" for dt, v in param_dtypes.items())
        raise CheckpointError(f"{where}: expected all parameters stored in one dtype, got a mix: {mix}")


def validate_summary_idxs(idxs: torch.Tensor, num_cls_tokens: int, *, source: str = "summary_idxs") -> None:
    """``summary_idxs`` must be a 1-D int64 tensor of 1..num_cls distinct indices in
    [0, num_cls_tokens): the summary is built from CLS tokens only, never registers or patches."""
    if not isinstance(idxs, torch.Tensor) or idxs.dtype != torch.int64 or idxs.dim() != 1:
        got = f"{idxs.dtype} {tuple(idxs.shape)}" if isinstance(idxs, torch.Tensor) else type(idxs).__name__
        raise CheckpointError(f"{source}: expected a 1-D int64 tensor, got {got}")
    vals = idxs.tolist()
    if not 1 <= len(vals) <= num_cls_tokens:
        raise CheckpointError(f"{source}: expected 1..{num_cls_tokens} indices, got {len(vals)}: {vals}")
    bad = [v for v in vals if not 0 <= v < num_cls_tokens]
    if bad:
        raise CheckpointError(f"{source}: expected indices of CLS tokens in [0, {num_cls_tokens}), got {vals} "
                              f"({bad} out of range)")
    if len(set(vals)) != len(vals):
        raise CheckpointError(f"{source}: expected distinct indices, got {vals}")


def load_weights(files: list[Path], cfg: ModelConfig, *,
                 allow_dtypes: Iterable[torch.dtype] = DEFAULT_ALLOWED_DTYPES,
                 device: str | torch.device = "cpu",
                 check_finite: bool = True) -> dict[str, torch.Tensor]:
    """Load and strictly check safetensors weights for ``cfg``.

    files: ``find_weight_files(folder)`` (one file or all shards). cfg: from ``parse_config`` (pass
    it through ``config_for_files`` first to accept an optional feature normaliser). Returns
    ``{name without the 'radio_model.' prefix: tensor}`` as stored (no casting), on ``device``.

    Checks, each a CheckpointError naming the file, the expected and the found: corrupted or
    truncated files, names stored twice, the config contradicting the weights (width/depth,
    position grid, CLS/register rows, patch size), missing and unexpected names, shapes, dtypes
    (floats in ``allow_dtypes``, parameters all one dtype, ``summary_idxs`` int64), the
    ``summary_idxs`` values, a positive input-normalisation std, and (``check_finite``) no NaN/Inf
    anywhere. ``inter_feature_normalizer.*`` raises UnsupportedModelError.
    """
    files = [Path(f) for f in files]
    allow = tuple(allow_dtypes)
    where = _where(files)
    headers = _checkpoint_headers(files)
    keys = {name: e for h in headers for name, e in h.entries.items()}
    _refuse_inter_normalizer(keys, where)
    _check_architecture(keys, cfg, where)
    want = expected_tensors(cfg)
    _check_keys(keys, want, cfg, allow, where)

    from safetensors import SafetensorError, safe_open

    out: dict[str, torch.Tensor] = {}
    for h in headers:
        try:
            with safe_open(str(h.path), framework="pt", device=str(device)) as f:
                for name, e in h.entries.items():
                    out[name[len(PREFIX):]] = f.get_tensor(e.stored_name or name)
        except (SafetensorError, OSError, RuntimeError) as e:
            raise CheckpointError(f"{h.path}: could not read the safetensors data ({e})") from e

    src = f"{where}: {_SUMMARY}"
    validate_summary_idxs(out["summary_idxs"], cfg.num_cls_tokens, source=src)
    if cfg.summary_idxs is not None and tuple(out["summary_idxs"].tolist()) != tuple(cfg.summary_idxs):
        raise CheckpointError(f"{src} = {out['summary_idxs'].tolist()} contradicts the config's summary slots "
                              f"{list(cfg.summary_idxs)}")
    std = out["input_conditioner.norm_std"]
    if not bool((std.float() > 0).all()):
        raise CheckpointError(f"{where}: {PREFIX}input_conditioner.norm_std: expected positive values, "
                              f"got {std.flatten().tolist()}")
    if check_finite:
        bad = [f"{PREFIX}{k} ({int((~torch.isfinite(t)).sum())} values)" for k, t in out.items()
               if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise CheckpointError(f"{where}: expected finite weights, found NaN/Inf in {_short(bad, 6)}")
    return {k[len(PREFIX):]: out[k[len(PREFIX):]] for k in want}
