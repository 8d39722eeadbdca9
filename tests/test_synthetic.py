"""synthetic.py: deterministic, realistic random checkpoints in the exact Hub layout."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fastradio import checkpoint as ck
from fastradio.configs import (KNOWN_MODELS, REFERENCE_VERSIONS, ArchConfig, ModelConfig, resolve_known_model,
                               tiny_config)
from fastradio.errors import ModelNotFoundError
from fastradio.synthetic import (AUTO_MAP, CLIP_MEAN, CLIP_STD, REFERENCE_ARGS_KEYS, REFERENCE_CONFIG_KEYS,
                                 REFERENCE_TEACHER_KEYS, config_json, default_cache_dir, model_config,
                                 synthetic_folder, write_checkpoint)

from helpers import P, edit_config, make_checkpoint, read_json, read_tensors


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_other_seed_other_tensors(tmp_path):
    a = make_checkpoint(tmp_path, "test-d160", seed=7)
    b = make_checkpoint(tmp_path, "test-d160", seed=7)
    c = make_checkpoint(tmp_path, "test-d160", seed=8)
    assert _digest(a) == _digest(b)
    ta, tc = read_tensors(a), read_tensors(c)
    same = [k for k in ta if torch.equal(ta[k], tc[k])]
    # Only the seed-independent buffers may agree across seeds.
    assert sorted(same) == sorted([P + "summary_idxs", P + "input_conditioner.norm_mean",
                                   P + "input_conditioner.norm_std"])


def test_tensors_do_not_depend_on_sharding(tmp_path):
    one = read_tensors(make_checkpoint(tmp_path, "test-d128", seed=3))
    four = read_tensors(make_checkpoint(tmp_path, "test-d128", seed=3, shards=4))
    assert one.keys() == four.keys()
    assert all(torch.equal(one[k], four[k]) for k in one)


def test_layout_and_config(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d192", seed=1, shards=3)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                     "model-00003-of-00003.safetensors", "model.safetensors.index.json", "vit_patch_generator.py"]
    index = read_json(folder / ck.INDEX_NAME)
    sizes = sum((folder / f).stat().st_size for f in set(index["weight_map"].values()))
    assert 0 < index["metadata"]["total_size"] < sizes
    cfg = read_json(folder / "config.json")
    args = cfg["args"]
    assert args["model"] == "fastradio_test_d192_patch16"
    assert args["cpe_max_size"] == 256 and args["register_multiple"] == 8 and args["cls_token_per_teacher"]
    assert [t["name"] for t in args["teachers"]] == ["clip", "siglip", "dino_v2", "sam"]
    assert args["model_norm"] is False and args["model_kwargs"] == {} and args["dtype"] == "float32"
    assert len(args) > 12                                  # filler like the real training-argument dump
    for key, value in [("patch_size", 16), ("adaptor_names", None), ("adaptor_configs", {}),
                       ("vitdet_window_size", None), ("feature_normalizer_config", None),
                       ("inter_feature_normalizer_config", None), ("max_resolution", 256),
                       ("preferred_resolution", [64, 64])]:
        assert cfg[key] == value, key
    assert cfg["version"] == "synthetic-test-d192" and cfg["auto_map"] == AUTO_MAP
    # The only source file: our own text carrying the position resize, as Hub repos bundle one.
    assert [p.name for p in folder.iterdir() if p.suffix == ".py"] == ["vit_patch_generator.py"]
    text = (folder / "vit_patch_generator.py").read_text()
    assert "def _get_pos_embeddings" in text and "align_corners=True" in text


def test_real_model_config_uses_full_grid():
    raw = config_json(model_config("C-RADIOv2-g"), name="C-RADIOv2-g")
    assert raw["args"]["cpe_max_size"] == 2048 and raw["max_resolution"] == 2048
    assert raw["args"]["model"] == "vit_giant_patch16_224"
    assert raw["preferred_resolution"] == [768, 768]


def test_rewriting_a_folder_replaces_the_old_layout(tmp_path):
    folder = tmp_path / "ck"
    write_checkpoint(folder, "test-d128", shards=3)
    write_checkpoint(folder, "test-d128")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "vit_patch_generator.py"]
    write_checkpoint(folder, "test-d128", bundled_code=False)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_values_are_realistic(tmp_path):
    t = read_tensors(make_checkpoint(tmp_path, "test-d192", seed=0, feature_normalizer=True))
    d = 192
    for k, v in t.items():
        assert v.abs().max() > 0, f"{k} is all zeros"
        assert torch.isfinite(v.float()).all(), k
    assert t[P + "summary_idxs"].tolist() == [0, 1, 2]
    assert torch.equal(t[P + "input_conditioner.norm_mean"].flatten(), torch.tensor(CLIP_MEAN))
    assert torch.equal(t[P + "input_conditioner.norm_std"].flatten(), torch.tensor(CLIP_STD))
    assert 0.4 < t[P + "model.patch_generator.cls_token.token"].std() < 0.6

    pe = t[P + "model.patch_generator.pos_embed"].view(16, 16, d)
    assert 0.015 < pe.std() < 0.03
    # Smooth: neighbouring grid cells are strongly correlated, far ones are not.
    near = F.cosine_similarity(pe[:, :-1].reshape(-1, d), pe[:, 1:].reshape(-1, d)).mean()
    far = F.cosine_similarity(pe[:, :8].reshape(-1, d), pe[:, 8:].reshape(-1, d)).mean()
    assert near > 0.8 and abs(far) < near - 0.3

    emb = t[P + "model.patch_generator.embedder.weight"]
    assert abs(emb.std() * 768**0.5 - 0.8) < 0.05
    for i in range(3):
        b = f"{P}model.blocks.{i}."
        for norm in ("norm1", "norm2"):
            w = t[b + norm + ".weight"]
            assert 0.9 < w.median() < 1.1 and w.max() > 1.9 and w.min() < 0.25   # a few large, a few damped
            assert 0.01 < t[b + norm + ".bias"].std() < 0.03
        for name, fan_in in (("attn.qkv", d), ("attn.proj", d), ("mlp.fc1", d), ("mlp.fc2", 4 * d)):
            gain = t[b + name + ".weight"].std() * fan_in**0.5
            assert 0.45 < gain < 1.15, (b + name, gain)
        assert 0.01 < t[b + "attn.qkv.bias"].std() < 0.03
        # Outlier channels: a handful of fc2 biases far above the rest.
        fc2b = t[b + "mlp.fc2.bias"].abs()
        assert (fc2b > 0.4).sum() == 2 and fc2b.median() < 0.03
    assert t[P + "model.blocks.2.attn.proj.weight"].std() > t[P + "model.blocks.0.attn.proj.weight"].std()
    tx = t[P + "feature_normalizer.tx"]
    assert (tx.diagonal() - 1).abs().max() < 0.2 and tx.shape == (d, d)


def _forward_stream(t: dict, cfg: ModelConfig, x: torch.Tensor) -> list[torch.Tensor]:
    """A plain pre-norm ViT over the synthetic weights: the residual stream after each block."""
    d, nh = cfg.embed_dim, cfg.num_heads
    x = (x - t[P + "input_conditioner.norm_mean"]) / t[P + "input_conditioner.norm_std"]
    tok = F.conv2d(x, t[P + "model.patch_generator.embedder.weight"].view(d, 3, 16, 16), stride=16)
    tok = tok.flatten(2).transpose(1, 2)
    g = cfg.pos_grid
    pos = t[P + "model.patch_generator.pos_embed"].view(g, g, d)[: x.shape[2] // 16, : x.shape[3] // 16]
    tok = tok + pos.reshape(1, -1, d)
    h = torch.cat([t[P + "model.patch_generator.cls_token.token"][None], tok], 1)
    out = [h]
    for i in range(cfg.depth):
        blk = {k[len(f"{P}model.blocks.{i}."):]: v for k, v in t.items() if k.startswith(f"{P}model.blocks.{i}.")}
        w = blk.__getitem__
        a = F.layer_norm(h, (d,), w("norm1.weight"), w("norm1.bias"), 1e-6)
        qkv = F.linear(a, w("attn.qkv.weight"), w("attn.qkv.bias"))
        q, k, v = qkv.view(1, -1, 3, nh, d // nh).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, -1, d)
        h = h + F.linear(o, w("attn.proj.weight"), w("attn.proj.bias"))
        m = F.gelu(F.linear(F.layer_norm(h, (d,), w("norm2.weight"), w("norm2.bias"), 1e-6), w("mlp.fc1.weight"),
                            w("mlp.fc1.bias")))
        h = h + F.linear(m, w("mlp.fc2.weight"), w("mlp.fc2.bias"))
        out.append(h)
    return out


def test_residual_stream_grows_with_outlier_channels(tmp_path):
    cfg = tiny_config().with_(arch=ArchConfig("synthetic-deep", 128, 12, 2))
    t = read_tensors(write_checkpoint(tmp_path / "deep", cfg, seed=5))
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    stream = _forward_stream(t, cfg, x)
    rms = [s[0, 8:].pow(2).mean().sqrt().item() for s in stream]
    assert rms[-1] > 2 * rms[1] and rms[6] < rms[-1]
    # The largest activations sit in a few outlier channels and reach trained-ViT magnitudes.
    ch_rms = stream[-1][0, 8:].pow(2).mean(0).sqrt()
    top = ch_rms.topk(2)
    bias = t[P + "model.blocks.0.mlp.fc2.bias"].abs().topk(2).indices
    assert set(top.indices.tolist()) == set(bias.tolist())
    assert top.values.min() > 4 * ch_rms.median() and stream[-1].abs().max() > 8
    # fp16/bf16 see real rounding error on these, but nothing overflows.
    assert all(torch.isfinite(s.half()).all() for s in stream)


def test_bf16_storage_keeps_buffers_fp32(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d128", dtype=torch.bfloat16)
    t = read_tensors(folder)
    for k, v in t.items():
        want = torch.int64 if k == P + "summary_idxs" else torch.float32 if k in ck.BUFFER_NAMES else torch.bfloat16
        assert v.dtype == want, k
    assert read_json(folder / "config.json")["args"]["dtype"] == "bfloat16"


def test_write_checkpoint_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="scaled_ln is not defined for vit_base_patch16_224"):
        write_checkpoint(tmp_path / "a", "C-RADIOv2-B", scaled_ln=True)
    with pytest.raises(ValueError, match="dtype: expected one of float32, bfloat16, float16, got torch.float64"):
        write_checkpoint(tmp_path / "a", "test-d128", dtype=torch.float64)
    with pytest.raises(ValueError, match=r"shards: expected 1..30, got 0"):
        write_checkpoint(tmp_path / "a", "test-d128", shards=0)
    with pytest.raises(ValueError, match="seed: expected a non-negative integer, got -1"):
        write_checkpoint(tmp_path / "a", "test-d128", seed=-1)
    with pytest.raises(ModelNotFoundError, match="unknown model 'C-RADIOv9'.*C-RADIOv2-B"):
        write_checkpoint(tmp_path / "a", "C-RADIOv9")


def test_synthetic_folder_generates_once_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTRADIO_CACHE", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    root = tmp_path / "cache" / "synthetic"
    folder = synthetic_folder("TEST_D128", 2)
    assert folder == root / "test-d128-seed2"
    before = _digest(folder)
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert synthetic_folder("test-d128", 2) == folder                     # reused, not rewritten
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in root.iterdir()) == ["test-d128-seed2"]   # no temp folders left
    # An incomplete folder (e.g. made by hand) is replaced by a complete one.
    (folder / "model.safetensors").unlink()
    assert synthetic_folder("test-d128", 2) == folder
    assert _digest(folder) == before
    assert sorted(p.name for p in root.iterdir()) == ["test-d128-seed2"]


def test_synthetic_folder_unknown_name(tmp_path):
    with pytest.raises(ModelNotFoundError, match="unknown model 'nope'.*test-d128"):
        synthetic_folder("nope", root=tmp_path)


def test_streaming_write_of_a_real_size_model_stays_small(tmp_path):
    """C-RADIOv2-B (393 MB fp32) is written tensor by tensor: peak memory stays far below the
    checkpoint size, and the file loads with the real layout."""
    script = (
        "import resource, sys, torch\n"
        "from fastradio.synthetic import write_checkpoint\n"
        "torch.set_num_threads(2)\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "write_checkpoint(sys.argv[1], 'C-RADIOv2-B', seed=0)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    folder = tmp_path / "b"
    res = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True,
                         env={**os.environ}, timeout=120)
    assert res.returncode == 0, res.stderr
    peak_mb = int(res.stdout.strip())
    size = (folder / "model.safetensors").stat().st_size
    assert size > 390e6
    assert peak_mb < 250, f"peak RSS grew by {peak_mb} MB while writing a {size / 1e6:.0f} MB file"
    keys = ck.inspect_keys([folder / "model.safetensors"])
    assert len(keys) == 150
    cfg = ck.parse_config(ck.read_config(folder / "config.json"))
    assert cfg == model_config("C-RADIOv2-B").with_(align_corners=None, align_corners_source=None)
    want = ck.expected_tensors(cfg)
    assert {k: v[0] for k, v in keys.items()} == {k: v[0] for k, v in want.items()}


# -- the Hub schema: what the reference code reads from config.json ---------------------------------
#
# The reference (the Python files every Hub repo bundles) is not part of this project; these tests
# check that a synthetic config.json carries every key it reads (synthetic.REFERENCE_*_KEYS, the one
# list, with why each is read) with a value it can build the model from. Building with the reference
# itself was done by hand outside the repository (DESIGN.md decision 24).

REAL = [m.name for m in KNOWN_MODELS if not m.test_only]
TESTS = [m.name for m in KNOWN_MODELS if m.test_only]


def _json_type_ok(value, types) -> bool:
    # JSON's true/false are Python ints: an integer key must not take them, a number key takes ints.
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, tuple(t for t in types if t is not bool))


def _check_keys(d: dict, keys: dict, where: str) -> None:
    for key, spec in keys.items():
        assert key in d, f"{where}{key}: missing (the reference reads it: {spec.why})"
        assert _json_type_ok(d[key], spec.types), f"{where}{key} = {d[key]!r}: expected {spec.types}"
        assert spec.valid is None or spec.valid(d[key]), f"{where}{key} = {d[key]!r}: not what {spec.why} needs"


def _reference_rules(raw: dict) -> tuple[tuple[str, ...], int, int, tuple[int, ...]]:
    """(teachers, CLS tokens, registers, summary slots) by the reference's rules, written out here
    from the facts (radio-family §4; hf_model's use_summary rule), independently of checkpoint.py."""
    a = raw["args"]
    names = tuple(dict.fromkeys(t["name"] for t in a["teachers"]))
    ncls = len(names) if a["cls_token_per_teacher"] else 1
    if a.get("cpe_num_registers"):
        nreg = a["cpe_num_registers"]
    elif a.get("register_multiple"):
        nreg = a["register_multiple"] - ncls % a["register_multiple"]
    else:
        nreg = 0
    slots = tuple(i for i, t in enumerate(a["teachers"]) if t.get("use_summary", True))
    return names, ncls, nreg, slots


@pytest.mark.parametrize("name", REAL)
def test_config_json_has_the_reference_schema(name):
    km = resolve_known_model(name)
    raw = json.loads(json.dumps(config_json(km.config, name=name)))   # as written to disk
    _check_keys(raw, REFERENCE_CONFIG_KEYS, "")
    _check_keys(raw["args"], REFERENCE_ARGS_KEYS, "args.")
    for i, t in enumerate(raw["args"]["teachers"]):
        _check_keys(t, REFERENCE_TEACHER_KEYS, f"args.teachers[{i}].")
    assert raw["auto_map"] == {"AutoConfig": "hf_model.RADIOConfig", "AutoModel": "hf_model.RADIOModel"}
    assert raw["version"] == km.config_version and raw["version"] in REFERENCE_VERSIONS
    if km.version:                                   # C-RADIOv3/v4: the published version string
        assert raw["version"] == km.version
    assert "model_type" not in raw                   # the reference's RADIOConfig declares none
    # The teacher the summary leaves out (sam / sam3) says so, as the reference needs: it derives
    # the summary slots from use_summary and the weights' summary_idxs must have that length.
    assert [t["use_summary"] for t in raw["args"]["teachers"]] == [
        i in km.summary_idxs for i in range(len(km.teachers))]
    assert raw["args"]["teachers"][-1]["name"].startswith("sam") and not raw["args"]["teachers"][-1]["use_summary"]
    # The reference's rules give the model's structure, and so does fastradio's parser.
    names, ncls, nreg, slots = _reference_rules(raw)
    cfg = ck.parse_config(raw)
    assert (names, ncls, nreg, slots) == (km.teachers, len(km.teachers), km.num_registers, km.summary_idxs)
    assert (cfg.teachers, cfg.num_cls_tokens, cfg.num_registers, cfg.summary_idxs) == (names, ncls, nreg, slots)
    assert cfg.num_prefix_tokens == ncls + nreg == (10 if name.startswith("C-RADIOv4") else 8)
    assert raw["args"]["cpe_num_registers"] is None   # the rule, as on the Hub (v4: multiple 10)
    assert raw["args"]["register_multiple"] == (10 if name.startswith("C-RADIOv4") else 8)


def test_reference_schema_lists_are_consistent():
    # Every args key the writer fills for the reference is in the list, and no listed key is filler.
    raw = config_json(model_config("C-RADIOv2-B"), name="C-RADIOv2-B")
    assert set(REFERENCE_ARGS_KEYS) <= set(raw["args"])
    assert set(REFERENCE_CONFIG_KEYS) <= set(raw)
    assert all(spec.why for spec in (*REFERENCE_CONFIG_KEYS.values(), *REFERENCE_ARGS_KEYS.values()))
    # Names the reference cannot take as namedtuple fields would make it fail before building.
    bad = dict(raw, args={**raw["args"], "enable-cudnn-attention": True})
    assert not REFERENCE_CONFIG_KEYS["args"].valid(bad["args"])


@pytest.mark.parametrize("name", TESTS)
def test_test_architectures_keep_the_schema_and_load_strictly(tmp_path, name):
    """The tiny architectures are not timm models (the reference cannot build them), but their
    config.json has the same keys, and fastradio loads the folder strictly with the structure the
    reference's rules give."""
    import fastradio

    folder = make_checkpoint(tmp_path, name, seed=2)
    raw = read_json(folder / "config.json")
    _check_keys(raw, {k: v for k, v in REFERENCE_CONFIG_KEYS.items() if k != "version"}, "")
    _check_keys(raw["args"], REFERENCE_ARGS_KEYS, "args.")
    assert raw["version"] == f"synthetic-{name}"
    names, ncls, nreg, slots = _reference_rules(raw)
    m = fastradio.load(folder, device="cpu", dtype=torch.float32, backend="reference")
    assert (m.config.teachers, m.config.num_cls_tokens, m.config.num_registers) == (names, ncls, nreg)
    assert m.summary_idxs.tolist() == list(slots) == read_tensors(folder)[P + "summary_idxs"].tolist()
    assert m.num_summary_tokens == ncls + nreg


def test_use_summary_contradicting_the_weights_is_refused(tmp_path):
    import fastradio
    from fastradio.errors import CheckpointError

    folder = make_checkpoint(tmp_path, "test-d144-v4", seed=1)    # summary [0, 1] of 3 CLS tokens
    edit_config(folder, lambda c: c["args"]["teachers"][1].update(use_summary=False))
    with pytest.raises(CheckpointError, match=r"summary_idxs = \[0, 1\] contradicts .*\[0\] .*use_summary"):
        fastradio.load(folder, device="cpu")
    edit_config(folder, lambda c: [t.update(use_summary=False) for t in c["args"]["teachers"]])
    with pytest.raises(CheckpointError, match=r"use_summary selects the summary slots \[\].*at least one"):
        fastradio.load(folder, device="cpu")
