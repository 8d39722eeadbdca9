"""The RADIO family beyond C-RADIOv2 (spec/radio-family.md): C-RADIOv3-B/L/H/g and C-RADIOv4-SO400M/H
as first-class models.

- the registry: names, aliases, Hub ids, heads, MLP widths, prefix/summary structure, preferred
  resolutions, true parameter and tensor counts (from generated files and from the table);
- parity of ``fastradio.load(folder, device="cpu", dtype=torch.float32)`` with the independent
  oracle (tests/independent_radio.py) at real sizes and depths, at non-square and tiny resolutions;
- the position resize: read from the bundled ``vit_patch_generator.py`` as text, the revision
  table, the C-RADIOv2 rule, the override, and refusal when nothing answers;
- layer-scale: applied (γ far from 1e-5 matters), folded for the fast backends (== literal in
  fp32, one rounding after a cast, recomputed when weights change);
- the same forward through the Triton interpreter (v3-B, v3-H, v4-H at real size; SO400M once
  head dim 72 lands), lists, NaN isolation, forward_intermediates, torch.compile, the CLI.

Real-size checkpoints come from the session fixture ``family`` (conftest.py), generated once.
"""

from __future__ import annotations

import gc
import json
import math
import shutil
import warnings
from pathlib import Path

import pytest
import torch

import fastradio
from fastradio import align, backends, synthetic
from fastradio import checkpoint as ck
from fastradio.configs import ARCHITECTURES, KNOWN_MODELS, known_model_for_repo, resolve_known_model
from fastradio.errors import CheckpointError, UnsupportedModelError

import independent_radio
from helpers import P, edit_config, edit_tensors, fake_hf_cache, make_checkpoint, offline_hf
from helpers import rel_l2, random_images as _images

#: radio-family §1: name → (hub repo, arch, D, depth, heads, head dim, MLP, CLS, prefix, summary slots,
#: layer-scale, tensors, parameters, preferred)
FACTS = {
    "C-RADIOv3-B": ("nvidia/C-RADIOv3-B", "vit_base_patch16_v2_224", 768, 12, 12, 64, 3072, 4, 8, (0, 1, 2),
                    True, 175, 98_254_848, 512),
    "C-RADIOv3-L": ("nvidia/C-RADIOv3-L", "vit_large_patch16_v2_224", 1024, 24, 16, 64, 4096, 4, 8, (0, 1, 2),
                    True, 343, 319_934_464, 512),
    "C-RADIOv3-H": ("nvidia/C-RADIOv3-H", "vit_huge_patch16_224", 1280, 32, 16, 80, 5120, 4, 8, (0, 1, 2),
                    False, 390, 651_642_880, 512),
    "C-RADIOv3-g": ("nvidia/C-RADIOv3-g", "vit_giant_patch16_224", 1536, 40, 24, 64, 6144, 4, 8, (0, 1, 2),
                    False, 486, 1_159_618_560, 512),
    "C-RADIOv4-SO400M": ("nvidia/C-RADIOv4-SO400M", "vit_so400m_patch16_224", 1152, 27, 16, 72, 4304, 3, 10,
                         (0, 1), False, 330, 431_237_232, 512),
    "C-RADIOv4-H": ("nvidia/C-RADIOv4-H", "vit_huge_patch16_224", 1280, 32, 16, 80, 5120, 3, 10, (0, 1),
                    False, 390, 651_645_440, 512),
}
#: the resize of the synthetic checkpoints: the spec's value for the current Hub revision
ALIGN = {"C-RADIOv3-B": True, "C-RADIOv3-L": False, "C-RADIOv3-H": True, "C-RADIOv3-g": False,
         "C-RADIOv4-SO400M": False, "C-RADIOv4-H": False}
#: real-size models whose checkpoints the CPU suite generates (g: table and reduced depth only)
REAL = ["C-RADIOv3-B", "C-RADIOv3-L", "C-RADIOv3-H", "C-RADIOv4-SO400M", "C-RADIOv4-H"]


class LazyTensors:
    """A checkpoint's tensors read on demand through the safetensors library (not fastradio).
    ``keep=False``: never held (the oracle then reads the file on every call); True: each tensor
    is kept once read (for several oracle calls in one test)."""

    def __init__(self, folder: Path, keep: bool = False):
        from safetensors import safe_open

        self._files = {}
        for f in ck.find_weight_files(folder):
            with safe_open(str(f), framework="pt") as h:
                for k in h.keys():
                    self._files[k] = f
        self._open = {}
        self._kept = {} if keep else None

    def __contains__(self, k):
        return k in self._files

    def __iter__(self):
        return iter(self._files)

    def __getitem__(self, k):
        from safetensors import safe_open

        if self._kept is not None and k in self._kept:
            return self._kept[k]
        f = self._files[k]
        if f not in self._open:
            self._open[f] = safe_open(str(f), framework="pt")
        t = self._open[f].get_tensor(k)
        if self._kept is not None:
            self._kept[k] = t
        return t


def oracle(sd, x, name: str, **kw):
    """The independent implementation with the spec's facts for ``name`` (heads, align_corners);
    ``sd``: a folder or a LazyTensors."""
    sd = LazyTensors(sd) if isinstance(sd, Path) else sd
    heads = FACTS[name][4]
    return independent_radio.forward(sd, x, num_heads=heads, align_corners=ALIGN[name], **kw)


@pytest.fixture(scope="module")
def loaded(family):
    """name → fp32 reference model on CPU. Holds one model at a time (the big ones are GBs)."""
    cache = {}

    def get(name: str):
        if name not in cache:
            cache.clear()
            gc.collect()
            cache[name] = fastradio.load(family.folder(name), device="cpu", dtype=torch.float32, backend="reference")
        return cache[name]

    get.clear = lambda: (cache.clear(), gc.collect())
    yield get
    cache.clear()


# =============================================================================================
# the registry
# =============================================================================================

@pytest.mark.parametrize("name", list(FACTS))
def test_registry_facts(name):
    repo, arch, d, depth, heads, hd, mlp, ncls, prefix, slots, ls, n_t, n_p, pref = FACTS[name]
    km = resolve_known_model(name)
    assert (km.name, km.hub_repo, km.arch) == (name, repo, arch)
    assert known_model_for_repo(repo) is km and known_model_for_repo(repo.lower()) is km
    cfg = km.config
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.head_dim, cfg.mlp_hidden) == (d, depth, heads, hd, mlp)
    assert (cfg.num_cls_tokens, cfg.num_prefix_tokens, cfg.summary_idxs) == (ncls, prefix, slots)
    assert cfg.summary_dim == len(slots) * d and cfg.layer_scale == ls and cfg.reg_token_rows == (4 if ls else 0)
    assert cfg.preferred_resolution == (pref, pref) and cfg.patch_size == 16 and cfg.min_resolution_step == 16
    assert cfg.param_count() == n_p
    want = ck.expected_tensors(cfg)
    assert len(want) == n_t
    assert sum(math.prod(s) for k, (s, _) in want.items() if k not in ck.BUFFER_NAMES) == n_p
    assert km.version == f"c-radio_v{name[8]}-{name.split('-')[-1].lower()}"


def test_so400m_heads_come_from_the_table_not_the_shapes():
    """qkv (3456, 1152) fits 16 heads of 72 and 18 of 64: the architecture table says 16."""
    a = ARCHITECTURES["vit_so400m_patch16_224"]
    assert (a.num_heads, a.head_dim, a.mlp_hidden) == (16, 72, 4304)
    assert 3 * a.embed_dim == 3456 and a.embed_dim % 18 == 0


@pytest.mark.parametrize("alias, name", [
    ("C-RADIOv4-SO400M", "C-RADIOv4-SO400M"), ("c-radio_v4-so400m", "C-RADIOv4-SO400M"),
    ("nvidia/C-RADIOv4-so400m", "C-RADIOv4-SO400M"), ("c-radio_v4-h", "C-RADIOv4-H"), ("CRADIOV4H", "C-RADIOv4-H"),
    ("C-RADIOv3-g", "C-RADIOv3-g"), ("C-RADIOv3-G", "C-RADIOv3-g"), ("nvidia/c-radio_v3-G", "C-RADIOv3-g"),
    ("c_radio_v3_b", "C-RADIOv3-B"), ("C-RADIOv3-l", "C-RADIOv3-L"), ("c-radiov3-h", "C-RADIOv3-H"),
    ("C-RADIOv2-G", "C-RADIOv2-g"),
])
def test_aliases(alias, name):
    assert resolve_known_model(alias).name == name


def test_list_models_shows_the_family_with_true_counts():
    infos = {m.name: m for m in fastradio.list_models()}
    assert set(FACTS) | {"C-RADIOv2-B", "C-RADIOv2-L", "C-RADIOv2-H", "C-RADIOv2-g"} == set(infos)
    for name, f in FACTS.items():
        m = infos[name]
        assert (m.hub_repo, m.params, m.head_dim, m.mlp_hidden, m.num_prefix_tokens, m.summary_dim) == (
            f[0], f[12], f[5], f[6], f[8], len(f[9]) * f[2])
    assert infos["C-RADIOv4-H"].align_corners is False and infos["C-RADIOv3-L"].align_corners is None
    assert "commercial use allowed" in infos["C-RADIOv4-H"].licence
    tests = {m.name: m for m in fastradio.list_models(include_test=True) if m.test_only}
    for name, m in tests.items():   # the test architectures' true counts (16x16 position grid)
        cfg = resolve_known_model(name).config
        want = ck.expected_tensors(cfg)
        assert m.params == sum(math.prod(s) for k, (s, _) in want.items() if k not in ck.BUFFER_NAMES)
        assert cfg.pos_grid == 16


# =============================================================================================
# counts from the generated files
# =============================================================================================

@pytest.mark.parametrize("name", REAL)
def test_generated_files_have_the_spec_counts(family, name):
    folder = family.folder(name)
    keys = ck.inspect_keys(ck.find_weight_files(folder))
    n_t, n_p = FACTS[name][11], FACTS[name][12]
    assert len(keys) == n_t
    assert sum(math.prod(s) for k, (s, _) in keys.items() if k not in ck.BUFFER_NAMES) == n_p
    raw = json.loads((folder / "config.json").read_text())
    assert raw["args"]["model"] == FACTS[name][1] and raw["version"] == resolve_known_model(name).version
    assert raw["preferred_resolution"] == [512, 512]
    text = (folder / align.BUNDLED_FILE).read_text()
    assert f"align_corners={ALIGN[name]}" in text
    if FACTS[name][10]:
        assert keys[P + "model.reg_token"] == ((1, 4, FACTS[name][2]), torch.float32)
        g = LazyTensors(folder)[P + "model.blocks.3.ls2.grandma"]
        assert g.min() >= 0.05 - 1e-6 and g.max() <= 2.0 + 1e-6 and g.max() / g.min() > 5   # far from 1e-5


def test_v3_g_counts_from_the_table():
    """C-RADIOv3-g (4.6 GB in fp32) is checked from the architecture table, not generated."""
    cfg = resolve_known_model("C-RADIOv3-g").config
    want = ck.expected_tensors(cfg)
    assert len(want) == 486 and cfg.param_count() == 1_159_618_560
    assert sum(math.prod(s) for k, (s, _) in want.items() if k not in ck.BUFFER_NAMES) == 1_159_618_560
    raw = synthetic.config_json(cfg, name="C-RADIOv3-g")
    assert raw["version"] == "c-radio_v3-g" and raw["args"]["model"] == "vit_giant_patch16_224"
    got = ck.parse_config(raw)
    assert got == cfg.with_(align_corners=None, align_corners_source=None)   # slots from use_summary


# =============================================================================================
# parity with the independent oracle, real sizes and depths
# =============================================================================================

@pytest.mark.parametrize("name", REAL)
def test_fp32_parity_with_independent_oracle(family, loaded, name):
    """fastradio.load(folder, device="cpu", dtype=torch.float32) against the oracle at relative
    L2 <= 1e-5, real size and depth: a non-square batch (1x2 patch grid, resized from 128x128)
    and a tiny one-patch image. Also the public surface of spec c-radiov2 §8 for this model."""
    folder = family.folder(name)
    model = loaded(name)
    cfg = model.config
    assert cfg.align_corners is ALIGN[name] and cfg.align_corners_source.startswith("bundled file: ")
    _, _, d, depth, heads, hd, mlp, ncls, prefix, slots, *_ = FACTS[name]
    sd = LazyTensors(folder, keep=True)
    x = _images(2, 16, 32, seed=1)
    s, f = model(x)
    rs, rf = oracle(sd, x, name)
    assert s.shape == rs.shape == (2, len(slots) * d) and f.shape == rf.shape == (2, 2, d)
    assert rel_l2(s, rs) <= 1e-5 and rel_l2(f, rf) <= 1e-5
    assert f.std() > 0.1 and s.std() > 0.1
    x = _images(1, 16, 16, seed=2)
    s, f = model(x)
    rs, rf = oracle(sd, x, name)
    assert rel_l2(s, rs) <= 1e-5 and rel_l2(f, rf) <= 1e-5
    # spec c-radiov2 §8, per model
    m = model
    assert (m.num_summary_tokens, m.num_cls_tokens, m.summary_dim, m.embed_dim) == (prefix, ncls, len(slots) * d, d)
    assert m.preferred_resolution == (512, 512) and m.patch_size == 16 and m.min_resolution_step == 16
    assert m.summary_idxs.tolist() == list(slots) and m.config.summary_idxs == slots
    assert (m.config.num_heads, m.config.head_dim, m.config.mlp_hidden, m.config.depth) == (heads, hd, mlp, depth)
    assert m.adaptor_names == [] and m.window_size is None
    assert m.get_nearest_supported_resolution(500, 333) == (496, 336)


def test_fp32_parity_v3_g_reduced_depth(tmp_path):
    """C-RADIOv3-g's widths (D 1536, 24 heads, align_corners=False) at depth 2 (its real depth
    needs a 4.6 GB checkpoint): the model built from the config against the oracle."""
    from dataclasses import replace

    cfg = resolve_known_model("C-RADIOv3-g").config
    cfg = cfg.with_(arch=replace(cfg.arch, depth=2), pos_grid=32, max_resolution=512)
    synthetic.write_checkpoint(tmp_path, cfg, seed=4)
    sd = LazyTensors(tmp_path)
    model = fastradio.RadioModel(cfg)
    model.load_state_dict({k[len(P):]: sd[k] for k in sd}, strict=True)
    model.eval()
    x = _images(1, 16, 48, seed=4)
    s, f = model(x)
    rs, rf = independent_radio.forward(sd, x, num_heads=24, align_corners=False)
    assert rel_l2(s, rs) <= 1e-5 and rel_l2(f, rf) <= 1e-5


@pytest.mark.parametrize("name, changes", [
    ("test-d128-v3", {}), ("test-d144-v4", {}), ("test-d160-v4", {}),
])
@pytest.mark.parametrize("hw", [(64, 64), (48, 96), (16, 16), (16, 256), (320, 320)], ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_fp32_parity_test_architectures(tmp_path, name, changes, hw):
    """The family's structures at tiny widths, at many resolutions (320 > the 16x16 grid)."""
    folder = make_checkpoint(tmp_path, name, seed=5)
    model = fastradio.load(folder, device="cpu", dtype=torch.float32)
    x = _images(2, *hw, seed=hw[0] + hw[1])
    s, f = model(x)
    rs, rf = independent_radio.forward(LazyTensors(folder), x, num_heads=model.config.num_heads,
                                       align_corners=False)
    assert rel_l2(s, rs) <= 1e-5 and rel_l2(f, rf) <= 1e-5


# =============================================================================================
# the position resize: where align_corners comes from
# =============================================================================================

_TEXT_CASES = [
    ("    x = F.interpolate(t, size=(m, m), mode='bilinear', align_corners=False)\n", False),
    ("    x = torch.nn.functional.interpolate(t, size=(m, m), mode='bilinear', align_corners=True)\n", True),
    ("    x = interpolate(t, (m, m), mode='bilinear',\n                    align_corners = False)\n", False),
    # a training-only branch does something else; eval is what counts
    ("    if self.training:\n        x = F.interpolate(t, size=s, mode='bilinear', align_corners=True)\n"
     "    else:\n        x = F.interpolate(t, size=s, mode='bilinear', align_corners=False)\n", False),
    ("    if not self.training:\n        x = F.interpolate(t, size=s, mode='bilinear', align_corners=True)\n"
     "    else:\n        x = F.grid_sample(t, g, align_corners=False)\n", True),
    # two eval calls that agree; a comment mentioning the other value is not code
    ("    # align_corners=True was the old default\n    a = F.interpolate(t, size=s, align_corners=False)\n"
     "    b = F.interpolate(a, size=s, align_corners=False)\n", False),
]


def _module(body: str, name: str = "_get_pos_embeddings") -> str:
    return ("import torch\nimport torch.nn.functional as F\n\n\nclass ViTPatchGenerator:\n"
            "    def other(self, t):\n        return F.interpolate(t, size=(2, 2), align_corners=True)\n\n"
            f"    def {name}(self, t, s, m):\n" + "".join("    " + ln + "\n" for ln in body.splitlines())
            + "        return x\n")


@pytest.mark.parametrize("body, want", _TEXT_CASES)
def test_bundled_file_parsing(body, want):
    got = align.parse_bundled_text(_module(body), "vit_patch_generator.py")
    assert got.align_corners is want and "vit_patch_generator.py, line " in got.where


@pytest.mark.parametrize("text, needle", [
    (_module("    x = F.interpolate(t, size=s, align_corners=True)\n    y = F.interpolate(x, size=s, align_corners=False)\n"),
     "disagree"),
    (_module("    x = F.interpolate(t, size=s, mode='bilinear')\n"), "no align_corners= keyword"),
    (_module("    x = F.interpolate(t, size=s, align_corners=self.ac)\n"), "not the constant True or False"),
    (_module("    x = t\n"), "no interpolate(...) call"),
    (_module("    x = F.interpolate(t, size=s, align_corners=False)\n", name="_pos_embeddings"), "no function"),
    ("", "no function _get_pos_embeddings"),
])
def test_bundled_file_ambiguous_is_an_error(text, needle):
    with pytest.raises(ValueError, match="cannot tell the position resize") as e:
        align.parse_bundled_text(text)
    assert needle in str(e.value)


def test_bundled_file_unparsable_python_falls_back_to_text():
    text = _module("    x = F.interpolate(t, size=s, align_corners=False)\n") + "\nmatch = lambda: (\n"  # syntax error
    got = align.parse_bundled_text(text, "f.py")
    assert got.align_corners is False and "plain text" in got.where
    bad = "def _get_pos_embeddings(x):\n    y = F.interpolate(x, align_corners=True)\n    z = F.interpolate(y, align_corners=False)\n)("
    with pytest.raises(ValueError, match="True on line 2 and False on line 3"):
        align.parse_bundled_text(bad)


def test_bundled_file_is_read_never_run(tmp_path):
    """A file whose code would fail loudly (and delete a file) if imported or executed: loading
    reads the align_corners value from its text, and nothing runs."""
    folder = make_checkpoint(tmp_path, "test-d160-v4", seed=1)
    victim = tmp_path / "victim.txt"
    victim.write_text("still here")
    (folder / align.BUNDLED_FILE).write_text(
        f"import os\nos.remove({str(victim)!r})\nraise SystemExit('executed!')\n\n"
        "def _get_pos_embeddings(self, t, m):\n"
        "    return F.interpolate(t, size=(m, m), mode='bilinear', align_corners=False)\n")
    model = fastradio.load(folder, device="cpu", dtype=torch.float32)
    assert model.config.align_corners is False and victim.read_text() == "still here"


@pytest.fixture
def v4_without_file(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d160-v4", seed=2, bundled_code=False)
    assert not (folder / align.BUNDLED_FILE).exists()
    return folder


def test_v4_folder_without_file_or_revision_is_refused(v4_without_file, monkeypatch):
    """Never loaded with a guess: refused before any weight is read, naming the fixes."""
    read = []
    monkeypatch.setattr(ck, "load_weights", lambda *a, **k: read.append(a))
    with pytest.raises(UnsupportedModelError) as e:
        fastradio.load(v4_without_file, device="cpu", dtype=torch.float32)
    msg = str(e.value)
    for needle in ("cannot tell how this checkpoint", "align_corners", "vit_patch_generator.py",
                   "pos_align_corners=False", "refusing to guess"):
        assert needle in msg
    assert read == []


def test_real_v4_folder_without_file_is_refused(family, tmp_path):
    """The same for a real-size C-RADIOv4 folder (config.json and weights only)."""
    src = family.folder("C-RADIOv4-SO400M")
    folder = tmp_path / "so400m"
    folder.mkdir()
    shutil.copy(src / "config.json", folder / "config.json")
    (folder / "model.safetensors").symlink_to(src / "model.safetensors")
    with pytest.raises(UnsupportedModelError, match="version = 'c-radio_v4-so400m'.*refusing to guess"):
        fastradio.load(folder, device="cpu", dtype=torch.float32)
    m = fastradio.load(folder, device="cpu", dtype=torch.float32, pos_align_corners=False)
    assert m.config.align_corners is False and m.config.align_corners_source == "override: pos_align_corners=False"


def test_override_loads_and_is_recorded(v4_without_file):
    model = fastradio.load(v4_without_file, device="cpu", dtype=torch.float32, pos_align_corners=False)
    assert model.config.align_corners is False
    assert model.config.align_corners_source == "override: pos_align_corners=False"
    x = _images(1, 48, 32, seed=6)
    s, f = model(x)
    rs, rf = independent_radio.forward(LazyTensors(v4_without_file), x, num_heads=2, align_corners=False)
    assert rel_l2(s, rs) <= 1e-5 and rel_l2(f, rf) <= 1e-5
    with pytest.raises(TypeError, match="pos_align_corners: expected True, False or None"):
        fastradio.load(v4_without_file, device="cpu", pos_align_corners="no")


def test_override_against_the_file_warns(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d160-v4", seed=2)
    with pytest.warns(UserWarning, match="overrides the checkpoint's own code"):
        m = fastradio.load(folder, device="cpu", pos_align_corners=True)
    assert m.config.align_corners is True and "says align_corners=False" in m.config.align_corners_source


def test_the_file_decides_and_is_actually_used(tmp_path):
    """A v4-structured folder whose file says True runs with True: the outputs follow the file
    (they match the oracle with True, and differ from the one with False by far more than 1e-5)."""
    folder = make_checkpoint(tmp_path, "test-d160-v4", seed=3)
    (folder / align.BUNDLED_FILE).write_text(synthetic.bundled_source(True))
    model = fastradio.load(folder, device="cpu", dtype=torch.float32)
    assert model.config.align_corners is True
    x = _images(1, 48, 96, seed=7)
    s, _ = model(x)
    sd = LazyTensors(folder)
    assert rel_l2(s, independent_radio.forward(sd, x, num_heads=2, align_corners=True)[0]) <= 1e-5
    assert rel_l2(s, independent_radio.forward(sd, x, num_heads=2, align_corners=False)[0]) > 1e-3


def test_ambiguous_file_is_refused(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d128", seed=1)
    (folder / align.BUNDLED_FILE).write_text("def _get_pos_embeddings(t):\n    return F.interpolate(t, size=(4, 4))\n")
    with pytest.raises(UnsupportedModelError, match="no align_corners= keyword.*pos_align_corners"):
        fastradio.load(folder, device="cpu")


def test_c_radio_v2_without_file_keeps_align_corners_true(tmp_path):
    """C-RADIOv2 unchanged: a folder with config.json and weights only loads with True."""
    folder = make_checkpoint(tmp_path, "test-d128", seed=1, bundled_code=False)
    m = fastradio.load(folder, device="cpu")
    assert m.config.align_corners is True and m.config.align_corners_source.startswith("C-RADIOv2 structure")
    # a newer marker (layer-scale, or the C-RADIOv4 prefix) is not C-RADIOv2: refused without the file
    for name in ("test-d128-v3", "test-d160-v4"):
        folder = make_checkpoint(tmp_path, name, seed=1, bundled_code=False)
        with pytest.raises(UnsupportedModelError, match="cannot tell how this checkpoint"):
            fastradio.load(folder, device="cpu")


@pytest.mark.parametrize("repo, value, ok", [
    ("nvidia/C-RADIOv4-H", False, True), ("nvidia/C-RADIOv3-B", True, True), ("nvidia/C-RADIOv2-H", True, True),
    ("nvidia/C-RADIOv3-L", None, False), ("nvidia/C-RADIOv3-g", None, False),
])
def test_revision_table_for_hub_snapshots(monkeypatch, tmp_path, repo, value, ok):
    """A Hub snapshot without the file (cached by an older fastradio): the table answers by repo;
    C-RADIOv3-L/-g depend on the revision and no commit is known for certain, so they are
    refused. Reached both by name and by the snapshot's path."""
    hf = offline_hf(monkeypatch, tmp_path / "env")
    name = "test-d160-v4" if value is False else "test-d128"
    src = make_checkpoint(tmp_path / "src", name, seed=1, bundled_code=False)
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = fake_hf_cache(hf, repo, src, commit=commit)
    cfg = ck.parse_config(ck.read_config(snap / "config.json"))
    cfg = ck.config_for_files(cfg, ck.find_weight_files(snap))
    from fastradio import hub

    for target in (repo, str(snap)):
        r = hub.resolve(target)
        assert (r.repo_id, r.revision) == (repo, commit)
        if ok:
            got = align.decide(cfg, r.folder, repo_id=r.repo_id, revision=r.revision)
            assert got.align_corners is value and got.align_corners_source.startswith(f"revision table: {repo}")
        else:
            with pytest.raises(UnsupportedModelError, match=f"{repo} @ {commit}: its position resize depends on "
                                                            f"the revision"):
                align.decide(cfg, r.folder, repo_id=r.repo_id, revision=r.revision)
    # with the file in the snapshot, the file decides
    (snap / align.BUNDLED_FILE).write_text(synthetic.bundled_source(False))
    got = align.decide(cfg, snap, repo_id=repo, revision=commit)
    assert got.align_corners is False and got.align_corners_source.startswith("bundled file: ")


def test_known_revision_commit_answers(monkeypatch):
    """The per-revision table answers for a listed commit (none is listed for certain yet: this
    proves the mechanism with a temporary entry)."""
    from dataclasses import replace
    from fastradio import configs

    km = resolve_known_model("C-RADIOv3-L")
    commit = "a" * 40
    entry = replace(km, align_corners_by_revision=((commit, False),))
    monkeypatch.setattr(configs, "KNOWN_MODELS", tuple(entry if m is km else m for m in configs.KNOWN_MODELS))
    assert configs.known_model_for_repo("nvidia/C-RADIOv3-L").align_corners_at(commit) is False
    assert configs.known_model_for_repo("nvidia/C-RADIOv3-L").align_corners_at("b" * 40) is None


def test_stale_hub_snapshot_fetches_the_bundled_file(monkeypatch, tmp_path):
    """Online, a cached snapshot without vit_patch_generator.py gets that one file fetched."""
    import huggingface_hub
    from fastradio import hub

    hf = offline_hf(monkeypatch, tmp_path / "env")
    src = make_checkpoint(tmp_path / "src", "test-d160-v4", seed=1)
    snap = fake_hf_cache(hf, "nvidia/C-RADIOv3-L", src, files=["config.json", "model.safetensors"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    import huggingface_hub.constants as hc
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    real = huggingface_hub.snapshot_download
    calls = []

    def fake(repo_id, **kw):
        calls.append(kw)
        if kw.get("local_files_only"):
            return real(repo_id, **kw)
        assert kw["allow_patterns"] == [align.BUNDLED_FILE]
        shutil.copy(src / align.BUNDLED_FILE, snap / align.BUNDLED_FILE)
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    r = hub.resolve("C-RADIOv3-L")
    assert [c["local_files_only"] for c in calls] == [True, False]
    assert (r.folder / align.BUNDLED_FILE).is_file()
    m = fastradio.load("C-RADIOv3-L", device="cpu")
    assert m.config.align_corners is False and m.config.align_corners_source.startswith("bundled file: ")


# =============================================================================================
# config.json: refuse what is not understood
# =============================================================================================

@pytest.mark.parametrize("edit, exc, needles", [
    (lambda c: c["args"]["teachers"].append({"name": "radio_teacher_x"}), UnsupportedModelError,
     ["args.teachers[3].name = 'radio_teacher_x'", "siglip2-g", "dino_v3", "sam3"]),
    (lambda c: c.update(version="c-radio_v5-h"), UnsupportedModelError,
     ["version = 'c-radio_v5-h'", "does not know", "c-radio_v4-so400m"]),
    (lambda c: c.update(version="c-radio_v3-x"), UnsupportedModelError, ["'c-radio_v3-x'"]),
    (lambda c: c.update(version="c-radio_v4-so400m"), CheckpointError,
     ["version = 'c-radio_v4-so400m' is C-RADIOv4-SO400M", "vit_so400m_patch16_224"]),
    (lambda c: c["args"].update(model_kwargs={"qk_norm": True}), UnsupportedModelError, ["qk_norm"]),
    (lambda c: c.update(vitdet_window_size=16), UnsupportedModelError, ["windowed"]),
])
def test_config_not_understood_is_refused(edit, exc, needles):
    raw = synthetic.config_json(resolve_known_model("C-RADIOv4-H").config, name="C-RADIOv4-H")
    edit(raw)
    with pytest.raises(exc) as e:
        ck.parse_config(raw, source="v4/config.json")
    for needle in needles:
        assert needle in str(e.value)


def test_family_config_variants_accepted():
    raw = synthetic.config_json(resolve_known_model("C-RADIOv4-H").config, name="C-RADIOv4-H")
    raw["adaptor_names"] = []
    raw.pop("preferred_resolution")                 # the family's 512 from the version
    raw["args"].pop("cpe_num_registers")
    raw["args"]["register_multiple"] = 10           # 10 - 3 mod 10 = 7 registers, as explicit 7
    cfg = ck.parse_config(raw)
    assert (cfg.num_cls_tokens, cfg.num_registers, cfg.preferred_resolution) == (3, 7, (512, 512))
    for version in ("radio_v2.5-g", "c-radio_v2-b", "e-radio_v2", None):   # C-RADIOv2-era: accepted
        raw2 = synthetic.config_json(resolve_known_model("C-RADIOv2-B").config, name="C-RADIOv2-B")
        raw2["version"] = version
        assert ck.parse_config(raw2).preferred_resolution == (768, 768)


def test_prefix_rows_are_cross_checked(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d144-v4", seed=1)
    edit_config(folder, lambda c: c["args"].update(cpe_num_registers=5))
    with pytest.raises(CheckpointError, match=r"3 CLS tokens \(one per teacher: siglip2-g, dino_v3, sam3\) \+ "
                                              r"5 registers \(args.cpe_num_registers\) = 8 rows.*10 rows"):
        fastradio.load(folder, device="cpu")


def test_layer_scale_is_cross_checked(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d128-v3", seed=1)
    edit_tensors(folder, lambda t: [t.pop(k) for k in list(t) if ".ls1." in k or ".ls2." in k])
    with pytest.raises(CheckpointError, match="fastradio_test_d128_v2_patch16, which has layer-scale, but the "
                                              "weights have no"):
        fastradio.load(folder, device="cpu")
    folder = make_checkpoint(tmp_path, "test-d128-v3", seed=1)
    edit_tensors(folder, lambda t: t.pop(P + "model.reg_token"))
    with pytest.raises(CheckpointError, match="1 missing: radio_model.model.reg_token"):
        fastradio.load(folder, device="cpu")
    folder = make_checkpoint(tmp_path, "test-d128-v3", seed=1)
    edit_tensors(folder, lambda t: t.update({P + "model.blocks.0.ls1.gamma": t.pop(P + "model.blocks.0.ls1.grandma")}))
    with pytest.raises(CheckpointError, match="TorchHub files say ls1.gamma"):
        fastradio.load(folder, device="cpu")


def test_summary_slots_are_cross_checked(tmp_path):
    folder = make_checkpoint(tmp_path, "test-d144-v4", seed=1)
    edit_tensors(folder, lambda t: t.update({P + "summary_idxs": torch.tensor([0, 3])}))
    with pytest.raises(CheckpointError, match=r"expected indices of CLS tokens in \[0, 3\), got \[0, 3\]"):
        fastradio.load(folder, device="cpu")


# =============================================================================================
# layer-scale
# =============================================================================================

def test_layer_scale_is_applied(family, loaded):
    """γ (log-uniform 0.05..2) changes the outputs far beyond the tolerance: the oracle without
    layer-scale, and the model with γ = 1, are both far from the model."""
    folder = family.folder("C-RADIOv3-B")
    model = loaded("C-RADIOv3-B")
    x = _images(1, 16, 32, seed=8)
    s, f = model(x)
    rs, rf = oracle(folder, x, "C-RADIOv3-B", layer_scale=False)
    assert rel_l2(s, rs) > 1e-2 and rel_l2(f, rf) > 1e-2
    g = {i: (b.ls1.grandma.detach().clone(), b.ls2.grandma.detach().clone()) for i, b in enumerate(model.model.blocks)}
    try:
        with torch.no_grad():
            for b in model.model.blocks:
                b.ls1.grandma.fill_(1.0)
                b.ls2.grandma.fill_(1.0)
        s1, _ = model(x)
        assert rel_l2(s1, rs) <= 1e-5            # γ = 1 is "no layer-scale"
    finally:
        with torch.no_grad():
            for i, b in enumerate(model.model.blocks):
                b.ls1.grandma.copy_(g[i][0])
                b.ls2.grandma.copy_(g[i][1])
    assert rel_l2(model(x).summary, s) == 0


@pytest.mark.parametrize("name", ["test-d128-v3", "C-RADIOv3-B"])
def test_layer_scale_fold_equals_literal_in_fp32(family, tmp_path, name):
    """The fold of the fast backends (W' = diag(γ)·W, b' = γ·b) against the literal x += γ·branch,
    both through the reference ops in fp32: within 1e-6."""
    folder = make_checkpoint(tmp_path, name, seed=3) if name.startswith("test") else family.folder(name)
    model = fastradio.load(folder, device="cpu", dtype=torch.float32, backend="reference")
    x = _images(2, 32, 48, seed=9)
    assert not model.folds_layer_scale
    literal = model(x)
    model.fold_layer_scale = True
    assert model.folds_layer_scale
    folded = model(x)
    assert rel_l2(folded.summary, literal.summary) <= 1e-6           # different arithmetic, same numbers
    assert rel_l2(folded.features, literal.features) <= 1e-6
    pw, pb, fw, fb = model._folded_block(1)
    blk = model.model.blocks[1]
    assert torch.equal(pw, blk.ls1.grandma[:, None] * blk.attn.proj.weight)
    assert torch.equal(fb, blk.ls2.grandma * blk.mlp.fc2.bias)


def test_layer_scale_fold_is_rounded_once_and_follows_weight_changes(tmp_path):
    """Cast down with a fast backend planned: the folds come from the fp32 weights (one rounding:
    == (γ·W in fp32).to(bf16) exactly, which folding the bf16 weights would not give), survive a
    further device/dtype-preserving move, and a weight change afterwards is picked up."""
    folder = make_checkpoint(tmp_path, "test-d128-v3", seed=4)
    m32 = fastradio.load(folder, device="cpu", dtype=torch.float32, backend="reference")
    blk32 = m32.model.blocks[0]
    want_w = (blk32.ls1.grandma[:, None] * blk32.attn.proj.weight).to(torch.bfloat16)
    want_fc2 = (blk32.ls2.grandma[:, None] * blk32.mlp.fc2.weight).to(torch.bfloat16)
    m = fastradio.load(folder, device="cpu", dtype=torch.bfloat16, backend="triton")
    assert set(m._ls_fold) == {0, 1}                                  # prepared at the cast
    pw, _, fw, _ = m._folded_block(0)
    assert torch.equal(pw, want_w) and torch.equal(fw, want_fc2)
    blk = m.model.blocks[0]
    twice = (blk.ls1.grandma.float()[:, None] * blk.attn.proj.weight.float()).to(torch.bfloat16)
    assert not torch.equal(twice, want_w)                              # so the test can tell
    m.to("cpu")                                                        # a no-op move keeps them
    assert torch.equal(m._folded_block(0)[0], want_w)
    with torch.no_grad():
        blk.ls1.grandma.mul_(2)
    now = (blk.ls1.grandma.float()[:, None] * blk.attn.proj.weight.float()).to(torch.bfloat16)
    assert torch.equal(m._folded_block(0)[0], now) and not torch.equal(now, want_w)
    # the reference backend applies γ literally and prepares no fold at the cast
    mr = fastradio.load(folder, device="cpu", dtype=torch.bfloat16, backend="reference")
    assert mr._ls_fold == {} and not mr.folds_layer_scale


# =============================================================================================
# the fast backends: the Triton kernels under the interpreter
# =============================================================================================

def _triton_refusal(head_dim: int) -> str | None:
    reasons = []
    for op in ("pos_embed", "patch_embed", "add_layer_norm", "linear", "attention"):
        reasons += backends.refusals("triton", op, torch.device("cpu"), torch.float32, head_dim=head_dim)
    return "; ".join(reasons) or None


@pytest.mark.parametrize("name", ["C-RADIOv3-B", "C-RADIOv3-H", "C-RADIOv4-H"])
def test_triton_interpreter_real_size(family, loaded, name):
    """The whole network through the Triton kernels (interpreted) at real size and depth: a
    packed list of a non-square and a one-patch image against the oracle, each alone. v3-B runs
    layer-scale folded into proj/fc2; v4-H the 10-token prefix and align_corners=False."""
    why = _triton_refusal(FACTS[name][5])
    if why:
        pytest.skip(f"triton cannot run here: {why}")
    loaded.clear()
    folder = family.folder(name)
    tri = fastradio.load(folder, device="cpu", dtype=torch.float32, backend="triton")
    assert set(tri.plan.names.values()) == {"triton"}
    assert tri.folds_layer_scale == FACTS[name][10] and tri.folds_input_norm
    imgs = [_images(1, 16, 32, seed=10)[0], _images(1, 16, 16, seed=11)[0]]
    outs = tri(imgs)
    sd = LazyTensors(folder, keep=True)
    for img, out in zip(imgs, outs):
        rs, rf = oracle(sd, img[None], name)
        assert rel_l2(out.summary, rs) <= 1e-5 and rel_l2(out.features, rf) <= 1e-5


def test_triton_so400m(family, loaded):
    """SO400M's head dim 72: until the Triton attention kernel takes it, forcing triton is refused
    with the reason (and this parity check is skipped); once it does, it must match."""
    why = _triton_refusal(72)
    folder = family.folder("C-RADIOv4-SO400M")
    if why:
        with pytest.raises(backends.BackendUnavailable, match="head_dim 72"):
            fastradio.load(folder, device="cpu", dtype=torch.float32, backend="triton").plan
        pytest.skip(f"the Triton attention kernel does not take head dim 72 yet: {why}")
    loaded.clear()
    tri = fastradio.load(folder, device="cpu", dtype=torch.float32, backend="triton")
    x = _images(1, 16, 32, seed=12)
    a = tri(x)
    rs, rf = oracle(folder, x, "C-RADIOv4-SO400M")
    assert rel_l2(a.summary, rs) <= 1e-5 and rel_l2(a.features, rf) <= 1e-5


@pytest.mark.parametrize("name", ["test-d128-v3", "test-d144-v4", "test-d160-v4"])
def test_triton_interpreter_test_architectures(tmp_path, monkeypatch, name):
    """The family's structures on the Triton kernels: every op where the kernels take the head
    dim; for head dim 72 (test-d144-v4) the ragged MLP (528 = 16 mod 64) and everything else on
    Triton with attention on the reference."""
    if _triton_refusal(64):
        pytest.skip(f"triton cannot run here: {_triton_refusal(64)}")
    folder = make_checkpoint(tmp_path, name, seed=6)
    ref = fastradio.load(folder, device="cpu", dtype=torch.float32, backend="reference")
    hd = ref.config.head_dim
    if _triton_refusal(hd):
        monkeypatch.setenv(backends.ENV_VAR, "pos_embed:triton,patch_embed:triton,add_layer_norm:triton,"
                                             "linear:triton,attention:reference")
        tri = fastradio.load(folder, device="cpu", dtype=torch.float32, backend="auto")
        assert tri.plan.names["linear"] == "triton" and tri.plan.names["attention"] == "reference"
    else:
        tri = fastradio.load(folder, device="cpu", dtype=torch.float32, backend="triton")
        assert set(tri.plan.names.values()) == {"triton"}
    imgs = [_images(1, 48, 32, seed=1)[0], _images(1, 16, 16, seed=2)[0], _images(1, 48, 32, seed=3)[0]]
    imgs[2][0, 3, 3] = float("nan")
    outs = tri(imgs)
    assert torch.isnan(outs[2].summary).all()
    for img, out in zip(imgs[:2], outs):
        want = ref(img[None])
        assert rel_l2(out.summary, want.summary) <= 1e-5 and rel_l2(out.features, want.features) <= 1e-5


# =============================================================================================
# everything else keeps working: lists, NaN, intermediates, compile
# =============================================================================================

@pytest.mark.parametrize("name", ["test-d128-v3", "test-d144-v4"])
def test_lists_nan_and_intermediates(tmp_path, name):
    model = fastradio.load(make_checkpoint(tmp_path, name, seed=7), device="cpu", dtype=torch.float32)
    p, d = model.num_summary_tokens, model.embed_dim
    sizes = [(64, 64), (16, 48), (64, 64), (112, 32), (16, 16)]
    imgs = [_images(1, h, w, seed=i)[0] for i, (h, w) in enumerate(sizes)]
    outs = model(imgs)
    for img, out in zip(imgs, outs):
        alone = model(img[None])
        torch.testing.assert_close(out.summary, alone.summary, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.features, alone.features, rtol=1e-5, atol=1e-5)
        assert out.summary.shape == (1, model.summary_dim)
    x = _images(3, 32, 32, seed=9)
    clean = model(x)
    x[1, 0, 5, 7] = float("nan")
    s, f = model(x)
    assert torch.isnan(s[1]).all() and torch.isnan(f[1]).all()
    assert torch.equal(s[0], clean.summary[0]) and torch.equal(f[2], clean.features[2])
    x = _images(2, 32, 48, seed=6)
    final, inter = model.forward_intermediates(x, indices=[0, -1], return_prefix_tokens=True)
    torch.testing.assert_close(final.summary, model(x).summary)
    assert inter[0].summary.shape == (2, model.summary_dim) and inter[1].features.shape == (2, d, 2, 3)
    torch.testing.assert_close(inter[1].summary, final.summary)
    assert p == model.config.num_prefix_tokens


@pytest.mark.parametrize("name", ["test-d128-v3", "test-d144-v4"])
def test_torch_compile_fullgraph(tmp_path, name):
    model = fastradio.load(make_checkpoint(tmp_path, name, seed=8), device="cpu", dtype=torch.float32)
    x = _images(2, 32, 48, seed=8)
    expected = model(x)
    got = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(got.summary, expected.summary, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.features, expected.features, rtol=1e-5, atol=1e-5)
    # and with layer-scale folded (as the fast backends run it), inside the graph
    if model.config.layer_scale:
        model.fold_layer_scale = True
        torch._dynamo.reset()
        got = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
        torch.testing.assert_close(got.summary, expected.summary, rtol=1e-5, atol=1e-5)


def test_cli_embed_with_synthetic_v4_h(family, tmp_path, monkeypatch, capsys):
    """`fastradio embed --model synthetic:C-RADIOv4-H`: the real architecture with random weights
    (reused from the session's checkpoint), outputs of the v4 shapes."""
    from PIL import Image
    import numpy as np
    from fastradio import cli

    family.folder("C-RADIOv4-H")
    monkeypatch.setenv("FASTRADIO_CACHE", str(family.root))
    d = tmp_path / "imgs"
    d.mkdir()
    for i, (h, w) in enumerate([(20, 40), (33, 17)]):
        a = np.random.default_rng(i).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(a).save(d / f"{i}.png")
    out = tmp_path / "emb.safetensors"
    rc = cli.main(["embed", str(d), "--model", "synthetic:C-RADIOv4-H", "--device", "cpu", "--resolution", "16x32",
                   "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    tensors, meta = cli.read_embeddings(out)
    assert meta["synthetic"] is True and meta["summary_dim"] == 2560 and meta["embed_dim"] == 1280
    assert meta["align_corners"] is False and meta["align_corners_source"].startswith("bundled file: ")
    assert tensors["summary/0"].shape == (2560,) and tensors["features/1"].shape == (2, 1280)


def test_cli_pos_align_corners_option(tmp_path, capsys):
    """`embed --pos-align-corners false` loads a C-RADIOv4 folder that does not carry its resize;
    without it the refusal is a usage error naming the option's API twin."""
    from PIL import Image
    import numpy as np
    from fastradio import cli

    folder = make_checkpoint(tmp_path, "test-d160-v4", seed=2, bundled_code=False)
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "o.safetensors"
    rc = cli.main(["embed", str(img), "--model", str(folder), "--device", "cpu", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "pos_align_corners=False" in err and "refusing to guess" in err
    rc = cli.main(["embed", str(img), "--model", str(folder), "--device", "cpu", "--out", str(out),
                   "--pos-align-corners", "false"])
    assert rc == 0, capsys.readouterr().err
    _, meta = cli.read_embeddings(out)
    assert meta["align_corners"] is False and meta["align_corners_source"] == "override: pos_align_corners=False"
