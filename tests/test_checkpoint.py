"""checkpoint.py: config.json parsing and strict safetensors loading (spec §1, §3, §6)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from fastradio import align
from fastradio import checkpoint as ck
from fastradio.configs import ARCHITECTURES, KNOWN_MODELS, ModelConfig, tiny_config
from fastradio.errors import CheckpointError, ModelNotFoundError, UnsupportedModelError
from fastradio.synthetic import config_json, model_config

from helpers import P, edit_config, edit_tensors, make_checkpoint, read_json, read_tensors, write_json, write_tensors

SPEC = {  # c-radiov2 §1 and radio-family §1: name → (tensor count, parameter count)
    "C-RADIOv2-B": (150, 98_233_344),
    "C-RADIOv2-L": (294, 319_881_216),
    "C-RADIOv2-H": (390, 651_642_880),
    "C-RADIOv2-g": (486, 1_159_618_560),
    "C-RADIOv3-B": (175, 98_254_848),
    "C-RADIOv3-L": (343, 319_934_464),
    "C-RADIOv3-H": (390, 651_642_880),
    "C-RADIOv3-g": (486, 1_159_618_560),
    "C-RADIOv4-SO400M": (330, 431_237_232),
    "C-RADIOv4-H": (390, 651_645_440),
}
#: prefix rows, summary slots, MLP width, heads (radio-family §1)
FAMILY = {
    "C-RADIOv3-B": (8, (0, 1, 2), 3072, 12), "C-RADIOv3-L": (8, (0, 1, 2), 4096, 16),
    "C-RADIOv3-H": (8, (0, 1, 2), 5120, 16), "C-RADIOv3-g": (8, (0, 1, 2), 6144, 24),
    "C-RADIOv4-SO400M": (10, (0, 1), 4304, 16), "C-RADIOv4-H": (10, (0, 1), 5120, 16),
}


def parsed(cfg: ModelConfig) -> ModelConfig:
    """What parse_config gives for config_json(cfg): config.json never holds the position resize,
    and holds the summary slots (as the teachers' use_summary flags) only with one CLS token per
    teacher."""
    per_teacher = cfg.num_cls_tokens == len(cfg.teachers) > 0
    return cfg.with_(summary_idxs=cfg.summary_idxs if per_teacher else None, align_corners=None,
                     align_corners_source=None)


def load(folder: Path, **kw) -> tuple[ModelConfig, dict]:
    cfg = ck.parse_config(ck.read_config(folder / "config.json"), source=str(folder / "config.json"))
    files = ck.find_weight_files(folder)
    cfg = ck.config_for_files(cfg, files)
    cfg = align.decide(cfg, folder)
    return cfg, ck.load_weights(files, cfg, **kw)


@pytest.fixture
def ckpt(tmp_path) -> Path:
    return make_checkpoint(tmp_path, "test-d128", seed=0)


# -- the tensors a config implies ------------------------------------------------------------

@pytest.mark.parametrize("name", list(SPEC))
def test_expected_tensors_match_spec_counts(name):
    cfg = model_config(name)
    want = ck.expected_tensors(cfg)
    n_tensors, n_params = SPEC[name]
    extra = 2 * cfg.depth + 1 if cfg.layer_scale else 0          # ls1/ls2.grandma per block + reg_token
    assert len(want) == n_tensors == 6 + 12 * cfg.depth + extra
    params = sum(torch.Size(s).numel() for k, (s, _) in want.items() if k not in ck.BUFFER_NAMES)
    assert params == cfg.param_count() == n_params
    assert all(k.startswith(P) for k in want)
    assert want[P + "model.patch_generator.pos_embed"][0] == (1, 16384, cfg.embed_dim)
    prefix, slots, hidden, heads = FAMILY.get(name, (8, (0, 1, 2), 4 * cfg.embed_dim, None))
    assert want[P + "model.patch_generator.cls_token.token"][0] == (prefix, cfg.embed_dim)
    assert want[P + "summary_idxs"] == ((len(slots),), torch.int64)
    assert want[P + "model.blocks.0.mlp.fc1.weight"][0] == (hidden, cfg.embed_dim)
    assert cfg.summary_idxs == slots and cfg.summary_dim == len(slots) * cfg.embed_dim
    if heads is not None:
        assert cfg.num_heads == heads
    assert want[P + "input_conditioner.norm_std"] == ((3, 1, 1), torch.float32)
    assert {dt for k, (_, dt) in want.items() if k != P + "summary_idxs"} == {torch.float32}


def test_expected_tensors_with_feature_normalizer():
    cfg = model_config("C-RADIOv2-B").with_(has_feature_normalizer=True)
    want = ck.expected_tensors(cfg)
    assert len(want) == 152
    assert want[P + "feature_normalizer.mean"] == ((768,), torch.float32)
    assert want[P + "feature_normalizer.tx"] == ((768, 768), torch.float32)


# -- config.json -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", [m.name for m in KNOWN_MODELS])
def test_parse_config_round_trips_every_known_model(name):
    cfg = model_config(name)
    got = ck.parse_config(config_json(cfg, name=name))
    assert got == parsed(cfg)
    if name.startswith("C-RADIOv2"):
        assert (got.pos_grid, got.num_cls_tokens, got.num_registers) == (128, 4, 4)
        assert (got.max_resolution, got.preferred_resolution) == (2048, (768, 768))
        assert got.teachers == ("clip", "siglip", "dino_v2", "sam")
    elif name.startswith("C-RADIOv4"):
        assert (got.pos_grid, got.num_cls_tokens, got.num_registers, got.num_prefix_tokens) == (128, 3, 7, 10)
        assert (got.max_resolution, got.preferred_resolution) == (2048, (512, 512))
        assert got.teachers == ("siglip2-g", "dino_v3", "sam3")
    elif name.startswith("C-RADIOv3"):
        assert (got.num_cls_tokens, got.num_registers, got.preferred_resolution) == (4, 4, (512, 512))
        assert got.layer_scale == (name in ("C-RADIOv3-B", "C-RADIOv3-L"))


@pytest.mark.parametrize("changes", [
    dict(num_cls_tokens=1, num_registers=7),        # the rule: 8 - 1 % 8
    dict(num_registers=2),                          # an explicit cpe_num_registers
    dict(num_registers=0),                          # no registers at all
    dict(scaled_ln=True, has_feature_normalizer=True),
])
def test_parse_config_round_trips_variants(changes):
    cfg = tiny_config("fastradio_test_d192_patch16").with_(**changes)
    assert ck.parse_config(config_json(cfg)) == parsed(cfg)


def test_parse_config_minimal_takes_c_radio_defaults():
    raw = {"args": {"model": "vit_large_patch16_224", "cls_token_per_teacher": True, "register_multiple": 8,
                    "teachers": [{"name": n} for n in ("clip", "siglip", "dino_v2", "sam")]}}
    cfg = ck.parse_config(raw)
    # No teacher states use_summary: the summary slots are left to the weights.
    assert cfg == parsed(model_config("C-RADIOv2-L")).with_(summary_idxs=None)


def test_parse_config_register_rule_and_duplicate_teacher_names():
    raw = config_json(model_config("C-RADIOv2-B"))
    raw["args"]["teachers"].append({"name": "clip", "use_summary": False})   # counted once
    raw["args"]["register_multiple"] = 16
    cfg = ck.parse_config(raw)
    assert (cfg.num_cls_tokens, cfg.num_registers) == (4, 12)
    raw["args"]["cpe_num_registers"] = 0                    # 0 means unset, as in the reference
    assert ck.parse_config(raw).num_registers == 12
    raw["args"]["cpe_num_registers"] = 5
    assert ck.parse_config(raw).num_registers == 5
    raw["args"]["cpe_num_registers"] = None
    raw["args"]["register_multiple"] = 3                    # 3 - 4 mod 3 = 2
    assert ck.parse_config(raw).num_registers == 2
    raw["args"]["register_multiple"] = 4                    # 4 - 4 mod 4 = 4: a full extra multiple
    assert ck.parse_config(raw).num_registers == 4


def _set(raw: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    d = raw
    for p in path:
        d = d[p]
    if value is _DELETE:
        del d[last]
    else:
        d[last] = value


_DELETE = object()


@pytest.mark.parametrize("key, value, needles", [
    ("args.cpe_max_size", "2048", ["args.cpe_max_size", "expected an integer", "got str"]),
    ("args.cpe_max_size", 2040, ["args.cpe_max_size", "multiple of the patch size 16", "got 2040"]),
    ("args.cls_token_per_teacher", 1, ["args.cls_token_per_teacher", "expected a boolean", "got int"]),
    ("args.model", 3, ["args.model", "expected a string", "got int"]),
    ("args.model", _DELETE, ["missing key args.model", "expected a string"]),
    ("args", _DELETE, ["missing key args", "expected an object"]),
    ("args.teachers", ["clip"], ["args.teachers[0]", "'name'", "got 'clip'"]),
    ("args.teachers", [], ["cls_token_per_teacher is true", "at least one teacher"]),
    ("args.register_multiple", -8, ["args.register_multiple", "non-negative", "got -8"]),
    ("args.model_kwargs", [], ["args.model_kwargs", "expected an object or null", "got list"]),
    ("args.model_kwargs", {"scaled_ln": "yes"}, ["args.model_kwargs.scaled_ln", "expected a boolean", "got str"]),
    ("preferred_resolution", [768], ["preferred_resolution", "[height, width]", "got [768]"]),
    ("preferred_resolution", [768, 770], ["preferred_resolution", "multiples of 16", "got [768, 770]"]),
    ("max_resolution", 2048.0, ["max_resolution", "expected an integer or null", "got float"]),
    ("max_resolution", 0, ["max_resolution", "positive", "got 0"]),
    ("feature_normalizer_config", {"embed_dim": 1024}, ["embed_dim = 1024", "width 768"]),
    ("patch_size", True, ["patch_size", "expected an integer or null", "got bool"]),
])
def test_parse_config_wrong_values(key, value, needles):
    raw = config_json(model_config("C-RADIOv2-B"))
    _set(raw, key, value)
    with pytest.raises(CheckpointError) as e:
        ck.parse_config(raw, source="repo/config.json")
    msg = str(e.value)
    assert msg.startswith("repo/config.json: ")
    for needle in needles:
        assert needle in msg


def test_parse_config_not_a_dict():
    with pytest.raises(CheckpointError, match="expected a JSON object, got list"):
        ck.parse_config([1, 2])


@pytest.mark.parametrize("key, value, needles", [
    ("args.model", "vit_small_patch16_224", ["'vit_small_patch16_224'", "vit_base_patch16_224",
                                              "vit_giant_patch16_224"]),
    ("vitdet_window_size", 16, ["vitdet_window_size = 16", "windowed", "not implemented", "expected null"]),
    ("adaptor_names", ["clip", "sam"], ["adaptor_names", "'clip'", "not implemented"]),
    ("adaptor_configs", {"clip": {}}, ["adaptor_configs", "'clip'", "not implemented"]),
    ("args.model_norm", True, ["args.model_norm is true", "has a final norm"]),
    ("args.model_kwargs", {"scaled_ln": False, "qk_norm": True}, ["qk_norm", "only 'scaled_ln'"]),
    ("args.model_kwargs", {"scaled_ln": True}, ["scaled_ln is true", "vit_base_patch16_224",
                                                "vit_giant_patch16_224"]),
    ("inter_feature_normalizer_config", {"embed_dim": 768}, ["inter_feature_normalizer_config", "not implemented"]),
    ("patch_size", 14, ["patch_size", "expected 16", "got 14"]),
    ("args.cpe_max_size", None, ["args.cpe_max_size is null", "not supported"]),
])
def test_parse_config_refuses_unsupported(key, value, needles):
    raw = config_json(model_config("C-RADIOv2-B"))
    _set(raw, key, value)
    with pytest.raises(UnsupportedModelError) as e:
        ck.parse_config(raw)
    for needle in needles:
        assert needle in str(e.value)


def test_parse_config_scaled_ln_where_defined():
    raw = config_json(model_config("C-RADIOv2-g"))
    raw["args"]["model_kwargs"] = {"scaled_ln": True}
    assert ck.parse_config(raw).scaled_ln is True


def test_read_config_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json not found"):
        ck.read_config(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="expected a JSON object, could not parse"):
        ck.read_config(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(CheckpointError, match="top level, got list"):
        ck.read_config(tmp_path / "config.json")


# -- round trips -------------------------------------------------------------------------------

def test_round_trip_single_file(ckpt):
    cfg, sd = load(ckpt)
    assert cfg == model_config("test-d128").with_(align_corners_source=cfg.align_corners_source)
    assert cfg.align_corners_source.startswith("bundled file: ")
    raw = read_tensors(ckpt)                       # the safetensors library, not our loader
    assert list(sd) == [k[len(P):] for k in ck.expected_tensors(cfg)]
    assert len(sd) == len(raw) == 6 + 12 * cfg.depth
    for k, v in sd.items():
        assert v.dtype == raw[P + k].dtype and torch.equal(v, raw[P + k]), k
    assert sd["summary_idxs"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("shards", [2, 5])
def test_round_trip_sharded(tmp_path, shards):
    single = read_tensors(make_checkpoint(tmp_path, "test-d192", seed=4, feature_normalizer=True))
    folder = make_checkpoint(tmp_path, "test-d192", seed=4, shards=shards, feature_normalizer=True)
    files = ck.find_weight_files(folder)
    assert [f.name for f in files] == [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
    index = read_json(folder / ck.INDEX_NAME)
    assert set(index["weight_map"]) == set(single)
    cfg, sd = load(folder)
    assert cfg.has_feature_normalizer and len(sd) == 6 + 12 * 3 + 2
    for k, v in sd.items():
        assert torch.equal(v, single[P + k]), k


def test_round_trip_bf16_storage(tmp_path):
    fp32 = read_tensors(make_checkpoint(tmp_path, "test-d160", seed=2))
    cfg, sd = load(make_checkpoint(tmp_path, "test-d160", seed=2, dtype=torch.bfloat16))
    for k, v in sd.items():
        full = P + k
        if full in ck.BUFFER_NAMES:
            assert torch.equal(v, fp32[full]), k
        else:
            assert v.dtype == torch.bfloat16 and torch.equal(v, fp32[full].to(torch.bfloat16)), k
    with pytest.raises(CheckpointError, match="expected one of float32, got bfloat16"):
        ck.load_weights(ck.find_weight_files(make_checkpoint(tmp_path, "test-d160", dtype=torch.bfloat16)),
                        cfg, allow_dtypes=(torch.float32,))


def test_inspect_keys_reads_headers_only(ckpt):
    keys = ck.inspect_keys(ck.find_weight_files(ckpt))
    assert keys[P + "model.blocks.1.mlp.fc1.weight"] == ((512, 128), torch.float32)
    assert keys[P + "summary_idxs"] == ((3,), torch.int64)
    assert len(keys) == 30


# -- strict loading: names, shapes, dtypes ---------------------------------------------------

def _fails(folder: Path, *needles: str, exc=CheckpointError, **kw) -> str:
    with pytest.raises(exc) as e:
        load(folder, **kw)
    msg = str(e.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in: {msg}"
    return msg


def test_missing_key(ckpt):
    edit_tensors(ckpt, lambda t: t.pop(P + "model.blocks.1.mlp.fc2.bias"))
    _fails(ckpt, "expected 30 tensors, found 29", "1 missing: radio_model.model.blocks.1.mlp.fc2.bias",
           str(ckpt / "model.safetensors"))


def test_unexpected_keys_with_hints(ckpt):
    def add(t):
        t[P + "model.norm.weight"] = torch.ones(128)
        t[P + "model.blocks.0.ls1.gamma"] = torch.ones(128)
    edit_tensors(ckpt, add)
    _fails(ckpt, "expected 30 tensors, found 32", "2 unexpected", P + "model.norm.weight",
           P + "model.blocks.0.ls1.gamma", "final LayerNorm", "layer-scale")


def test_unexpected_feature_normalizer_is_named(ckpt):
    edit_tensors(ckpt, lambda t: t.update({P + "feature_normalizer.mean": torch.ones(128),
                                           P + "feature_normalizer.tx": torch.eye(128)}))
    cfg = ck.parse_config(ck.read_config(ckpt / "config.json"))
    files = ck.find_weight_files(ckpt)
    with pytest.raises(CheckpointError, match="feature normaliser") as e:
        ck.load_weights(files, cfg)
    assert "2 unexpected" in str(e.value)
    # config_for_files detects it from the keys, and then it loads.
    _, sd = load(ckpt)
    assert torch.equal(sd["feature_normalizer.tx"], torch.eye(128))


def test_feature_normalizer_in_config_but_not_in_weights(ckpt):
    edit_config(ckpt, lambda c: c.update(feature_normalizer_config={"embed_dim": 128}))
    _fails(ckpt, "2 missing", P + "feature_normalizer.mean", P + "feature_normalizer.tx")


def test_inter_feature_normalizer_refused(ckpt):
    edit_tensors(ckpt, lambda t: t.update({P + "inter_feature_normalizer.mean": torch.ones(2, 128)}))
    _fails(ckpt, "intermediate-feature normaliser", P + "inter_feature_normalizer.mean",
           exc=UnsupportedModelError)
    cfg = ck.parse_config(ck.read_config(ckpt / "config.json"))
    with pytest.raises(UnsupportedModelError):
        ck.load_weights(ck.find_weight_files(ckpt), cfg)


def test_torchhub_names_are_explained(ckpt):
    edit_tensors(ckpt, lambda t: t.update({"base_model.blocks.0.norm1.weight": torch.ones(128)}))
    _fails(ckpt, "1 unexpected", "base_model.blocks.0.norm1.weight", "TorchHub")


def test_wrong_shape(ckpt):
    edit_tensors(ckpt, lambda t: t.update({P + "model.blocks.0.attn.qkv.bias": torch.ones(385)}))
    _fails(ckpt, "wrong tensor shapes", P + "model.blocks.0.attn.qkv.bias", "expected (384,), got (385,)")


@pytest.mark.parametrize("key, tensor, needle", [
    (P + "model.blocks.0.norm1.weight", torch.ones(128, dtype=torch.float64),
     "expected one of float32, bfloat16, float16, got float64"),
    (P + "summary_idxs", torch.tensor([0, 1, 2], dtype=torch.int32), "expected int64, got int32"),
    (P + "model.patch_generator.cls_token.token", torch.ones(8, 128, dtype=torch.int64),
     "expected one of float32, bfloat16, float16, got int64"),
])
def test_wrong_dtype(ckpt, key, tensor, needle):
    edit_tensors(ckpt, lambda t: t.update({key: tensor}))
    _fails(ckpt, "wrong tensor dtypes", key, needle)


def test_mixed_parameter_dtypes(ckpt):
    key = P + "model.blocks.1.attn.proj.weight"
    edit_tensors(ckpt, lambda t: t.update({key: t[key].to(torch.float16)}))
    # 25: the fp32 position table may sit beside any weights' dtype (a .half() model's state_dict)
    _fails(ckpt, "expected all parameters stored in one dtype", "float32: 25", f"float16: 1 (e.g. {key})")


def test_position_table_may_stay_fp32_beside_half_weights(ckpt):
    """What a .half() fastradio model's state_dict holds: fp16 weights, the fp32 position table
    and fp32 conditioner buffers; it loads, and a half-precision position table is refused mixed
    with fp32 weights as before."""
    pos = P + "model.patch_generator.pos_embed"
    edit_tensors(ckpt, lambda t: t.update({k: v.half() for k, v in t.items()
                                            if v.is_floating_point() and k != pos and "input_conditioner" not in k}))
    _, weights = load(ckpt)
    assert weights["model.patch_generator.pos_embed"].dtype == torch.float32
    assert weights["model.blocks.0.attn.qkv.weight"].dtype == torch.float16
    edit_tensors(ckpt, lambda t: t.update({k: v.float() for k, v in t.items() if v.is_floating_point()}))
    edit_tensors(ckpt, lambda t: t.update({pos: t[pos].half()}))
    _fails(ckpt, "expected all parameters stored in one dtype", f"float16: 1 (e.g. {pos})")


# -- strict loading: the config contradicting the weights -------------------------------------

def test_config_says_other_architecture(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d160")
    edit_config(folder, lambda c: c["args"].update(model="fastradio_test_d128_patch16"))
    _fails(folder, "the config contradicts the weights",
           "args.model = fastradio_test_d128_patch16 (width 128, depth 2)",
           "the weights have width 160", "[160, 768]", "args.model = fastradio_test_d160_patch16")


def test_config_says_other_depth(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d192")
    edit_tensors(folder, lambda t: [t.pop(k) for k in list(t) if k.startswith(P + "model.blocks.2.")])
    _fails(folder, "(width 192, depth 3)", "depth 2 (blocks 0..1)", "no supported architecture has these sizes")


def test_config_says_other_cpe_max_size(ckpt):
    edit_config(ckpt, lambda c: c["args"].update(cpe_max_size=512))
    _fails(ckpt, "args.cpe_max_size = 512", "32x32 position grid (1024 rows)", "256 rows, a 16x16 grid",
           "(cpe_max_size 256)")


def test_pos_embed_not_square(ckpt):
    key = P + "model.patch_generator.pos_embed"
    edit_tensors(ckpt, lambda t: t.update({key: t[key][:, :250]}))
    _fails(ckpt, key, "250 rows", "not a square grid", "16x16 = 256")


def test_config_says_other_cls_rows(ckpt):
    edit_config(ckpt, lambda c: c["args"].update(register_multiple=16))
    _fails(ckpt, "4 CLS tokens (one per teacher: clip, siglip, dino_v2, sam)",
           "12 registers (args.register_multiple 16 - 4 mod 16) = 16 rows",
           "the weights have 8 rows ([8, 128])")


def test_config_without_per_teacher_cls_and_explicit_registers(ckpt):
    edit_config(ckpt, lambda c: c["args"].update(cls_token_per_teacher=False, cpe_num_registers=3,
                                                 teachers=[{"name": t["name"]} for t in c["args"]["teachers"]]))
    _fails(ckpt, "1 CLS token", "3 registers (args.cpe_num_registers) = 4 rows", "the weights have 8 rows")


@pytest.mark.parametrize("values, needle", [
    ([0, 1, 4], "expected indices of CLS tokens in [0, 4), got [0, 1, 4] ([4] out of range)"),
    ([0, -1, 2], "[-1] out of range"),
    ([0, 0, 2], "expected distinct indices, got [0, 0, 2]"),
])
def test_summary_idxs_values(ckpt, values, needle):
    edit_tensors(ckpt, lambda t: t.update({P + "summary_idxs": torch.tensor(values)}))
    _fails(ckpt, P + "summary_idxs", needle)


def test_summary_idxs_shape(ckpt):
    edit_tensors(ckpt, lambda t: t.update({P + "summary_idxs": torch.arange(5)}))
    _fails(ckpt, "expected (k,) with 1 <= k <= 4, got (5,)")


def test_validate_summary_idxs_direct():
    ck.validate_summary_idxs(torch.tensor([0, 1, 2]), 4)
    ck.validate_summary_idxs(torch.tensor([3]), 4)
    with pytest.raises(CheckpointError, match="expected a 1-D int64 tensor, got torch.float32"):
        ck.validate_summary_idxs(torch.tensor([0.0, 1.0]), 4)
    with pytest.raises(CheckpointError, match="expected 1..4 indices, got 0"):
        ck.validate_summary_idxs(torch.zeros(0, dtype=torch.int64), 4)


def test_nonpositive_std_and_nonfinite_weights(ckpt):
    key = P + "model.blocks.0.mlp.fc1.weight"

    def poison(t):
        t[key][3, 5] = float("nan")
        t[key][0, 0] = float("inf")
    edit_tensors(ckpt, poison)
    _fails(ckpt, "expected finite weights", f"{key} (2 values)")
    load(ckpt, check_finite=False)
    edit_tensors(ckpt, lambda t: t.update({P + "input_conditioner.norm_std": torch.zeros(3, 1, 1)}))
    _fails(ckpt, "norm_std: expected positive values, got [0.0, 0.0, 0.0]", check_finite=False)


# -- strict loading: damaged files ------------------------------------------------------------

def _header_len(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[:8], "little")


def test_truncated_data(ckpt):
    path = ckpt / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    msg = _fails(ckpt, str(path), "truncated safetensors file", f"expected size {len(data)} bytes, "
                 f"got {len(data) - 100}")
    assert "holds" in msg


def test_truncated_header(ckpt):
    path = ckpt / "model.safetensors"
    n = _header_len(path)
    path.write_bytes(path.read_bytes()[:20])
    _fails(ckpt, str(path), "truncated safetensors file", f"the header needs {8 + n} bytes, the file has 20")


def test_tiny_file(ckpt):
    (ckpt / "model.safetensors").write_bytes(b"\x01\x02")
    _fails(ckpt, "truncated", "8-byte header length", "has 2 bytes")


def test_corrupted_header_json(ckpt):
    path = ckpt / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8] = ord("X")                      # the header's opening brace
    path.write_bytes(bytes(data))
    _fails(ckpt, str(path), "corrupted safetensors header", "expected a JSON object")


def test_corrupted_header_length(ckpt):
    path = ckpt / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes((2**40).to_bytes(8, "little") + data[8:])
    _fails(ckpt, str(path), "corrupted safetensors header", f"says {2**40} bytes")


def test_corrupted_offsets(ckpt):
    path = ckpt / "model.safetensors"
    data = path.read_bytes()
    n = _header_len(path)
    header = json.loads(data[8:8 + n])
    key = P + "model.blocks.0.norm1.bias"
    b, e = header[key]["data_offsets"]
    header[key]["data_offsets"] = [b, e + 4]
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + data[8 + n:])
    _fails(ckpt, str(path), "corrupted safetensors header", key, "(512 bytes) but its offsets span 516 bytes")


def test_trailing_garbage(ckpt):
    path = ckpt / "model.safetensors"
    path.write_bytes(path.read_bytes() + b"\0" * 16)
    _fails(ckpt, str(path), "16 unexpected bytes after the last tensor")


def test_duplicate_name_inside_one_header(ckpt):
    path = ckpt / "model.safetensors"
    data = path.read_bytes()
    n = _header_len(path)
    text = data[8:8 + n].decode()
    entry = f'"{P}summary_idxs":'
    i = text.index(entry)
    j = text.index("}", i) + 1
    text = text[:1] + text[i:j] + "," + text[1:]   # the same name twice
    blob = text.encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + data[8 + n:])
    _fails(ckpt, "corrupted safetensors header", "duplicate key")


# -- layouts: pickles, indexes, shards ----------------------------------------------------------

class _Boom:
    """Unpickling this writes a marker file: proof of code execution."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_pickle_checkpoint_refused_and_never_unpickled(tmp_path):
    folder = tmp_path / "radio"
    folder.mkdir()
    marker = tmp_path / "executed"
    for name in ("model.pth", "radio_v2.pth.tar", "pytorch_model.bin", "weights.pt"):
        (folder / name).write_bytes(pickle.dumps(_Boom(str(marker))))
    write_json(folder / "config.json", config_json(model_config("test-d128")))
    with pytest.raises(UnsupportedModelError) as e:
        ck.find_weight_files(folder)
    msg = str(e.value)
    for needle in ("pickle", "arbitrary code", "safetensors", "not implemented yet"):
        assert needle in msg
    with pytest.raises(UnsupportedModelError, match="pickle"):
        ck.load_weights([folder / "model.pth"], model_config("test-d128"))
    assert not marker.exists()


def test_safetensors_preferred_over_pickle(ckpt, tmp_path):
    marker = tmp_path / "executed"
    (ckpt / "pytorch_model.bin").write_bytes(pickle.dumps(_Boom(str(marker))))
    (ckpt / "modeling_radio.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    assert ck.find_weight_files(ckpt) == [ckpt / "model.safetensors"]
    load(ckpt)
    assert not marker.exists()


def test_no_weights_at_all(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    write_json(folder / "config.json", {})
    with pytest.raises(ModelNotFoundError, match=r"expected model.safetensors or model.safetensors.index.json "
                                                 r"\(sharded\), found: config.json"):
        ck.find_weight_files(folder)


def test_index_lists_missing_shard(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d128", shards=3)
    (folder / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(CheckpointError) as e:
        ck.find_weight_files(folder)
    msg = str(e.value)
    assert "lists shard(s) that do not exist: model-00002-of-00003.safetensors" in msg
    assert "model-00001-of-00003.safetensors" in msg            # what was found


def test_duplicate_key_across_shards(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d128", shards=2)
    s1, s2 = folder / "model-00001-of-00002.safetensors", folder / "model-00002-of-00002.safetensors"
    from safetensors.torch import load_file
    t1, t2 = load_file(str(s1)), load_file(str(s2))
    dup = next(iter(t1))
    t2[dup] = t1[dup]
    write_tensors(s2, t2)
    with pytest.raises(CheckpointError) as e:
        ck.find_weight_files(folder)
    assert f"duplicate tensor {dup}: stored in both {s1} and {s2}" in str(e.value)
    with pytest.raises(CheckpointError, match="duplicate tensor"):
        ck.load_weights([s1, s2], model_config("test-d128"))


def test_index_and_shards_disagree(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d128", shards=2)
    index = read_json(folder / ck.INDEX_NAME)
    moved = next(k for k, v in index["weight_map"].items() if v.startswith("model-00001"))
    index["weight_map"][moved] = "model-00002-of-00002.safetensors"
    write_json(folder / ck.INDEX_NAME, index)
    with pytest.raises(CheckpointError, match=f"not in the shard the index names: {moved} "
                                              r"\(index: model-00002-of-00002.safetensors, stored in: "
                                              r"model-00001-of-00002.safetensors\)"):
        ck.find_weight_files(folder)
    del index["weight_map"][moved]
    index["weight_map"][P + "ghost"] = "model-00001-of-00002.safetensors"
    write_json(folder / ck.INDEX_NAME, index)
    with pytest.raises(CheckpointError) as e:
        ck.find_weight_files(folder)
    msg = str(e.value)
    assert f"in the index but in no shard: {P}ghost" in msg
    assert f"in a shard but not in the index: {moved}" in msg


@pytest.mark.parametrize("weight_map, needle", [
    ({P + "summary_idxs": "../elsewhere.safetensors"}, "expected a *.safetensors file name in the same folder"),
    ({P + "summary_idxs": "model.pth"}, "got 'model.pth'"),
    ({}, "expected a non-empty 'weight_map'"),
])
def test_index_malformed(tmp_path, weight_map, needle):
    folder = make_checkpoint(tmp_path, "test-d128", shards=2)
    write_json(folder / ck.INDEX_NAME, {"metadata": {}, "weight_map": weight_map})
    with pytest.raises(CheckpointError) as e:
        ck.find_weight_files(folder)
    assert needle in str(e.value) and str(folder / ck.INDEX_NAME) in str(e.value)


def test_unknown_safetensors_dtype_tag(ckpt):
    path = ckpt / "model.safetensors"
    data = path.read_bytes()
    n = _header_len(path)
    header = json.loads(data[8:8 + n])
    key = P + "model.blocks.0.norm2.bias"
    header[key]["dtype"] = "F7"
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + data[8 + n:])
    assert ck.inspect_keys([path])[key] == ((128,), "F7")
    _fails(ckpt, "wrong tensor dtypes", key, "got F7")


def test_all_architectures_are_loadable_names():
    # Every registry architecture parses (no name in ARCHITECTURES is refused by parse_config).
    for name in ARCHITECTURES:
        raw = config_json(tiny_config(name) if name.startswith("fastradio") else
                          ModelConfig(arch=ARCHITECTURES[name]))
        assert ck.parse_config(raw).arch.timm_name == name
