"""The one registry of model configurations, shared by loading, tests, synthetic checkpoints
and benchmarks.

An *architecture* (keyed by the timm model name that a checkpoint's ``config.json`` stores in
``args.model``) fixes the tensor shapes and the head count (which shapes cannot always show: the
SO400M qkv is (3456, 1152) for 16 or 18 heads); a *known model* is a published checkpoint (Hub
repo id, aliases users type, the facts of its family: teachers, registers, summary slots,
preferred resolution, and how its position table is resized) of one architecture. The small
``fastradio-test-*`` architectures exist only for synthetic checkpoints in tests: same structure,
tiny widths and a small position grid.

Facts: spec/c-radiov2.md (C-RADIOv2) and spec/radio-family.md (C-RADIOv3, C-RADIOv4).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

from .compat import Resolution

__all__ = [
    "ArchConfig",
    "ModelConfig",
    "KnownModel",
    "ARCHITECTURES",
    "KNOWN_MODELS",
    "KNOWN_TEACHERS",
    "KNOWN_VERSIONS",
    "resolve_known_model",
    "known_model_for_repo",
    "known_model_for_version",
    "normalize_alias",
    "REFERENCE_VERSIONS",
    "UnsupportedRelease",
    "UNSUPPORTED_RELEASES",
    "unsupported_release",
]


@dataclass(frozen=True)
class ArchConfig:
    """Widths of one ViT architecture (spec §1, radio-family §1)."""

    timm_name: str
    embed_dim: int
    depth: int
    num_heads: int
    #: hidden width of the MLP; None means 4·D (SO400M: 4304, not 4·1152)
    mlp_hidden_dim: int | None = None
    #: whether ``scaled_ln`` is a defined option of this architecture (spec §6)
    allows_scaled_ln: bool = False
    #: layer-scale (``blocks.{i}.ls1.grandma`` / ``ls2.grandma``, (D,)) is part of this architecture
    #: (the ``*_v2_224`` names of C-RADIOv3-B/L); the loader requires it present for these
    layer_scale: bool = False
    #: rows of the unused ``model.reg_token`` (1, rows, D) the checkpoint carries (C-RADIOv3-B/L: 4)
    reg_token_rows: int = 0
    #: the C-RADIOv2 structure (4·D MLP, no layer-scale, no reg_token): the architectures whose
    #: checkpoints without any other marker are C-RADIOv2 ones (align_corners=True, spec §3)
    c_radio_v2: bool = False
    #: G of ViTDet windowed attention (spec §7): how many blocks stay global by default (giant: 8)
    vitdet_global_blocks: int = 4

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return self.mlp_hidden_dim if self.mlp_hidden_dim is not None else 4 * self.embed_dim

    @property
    def test_only(self) -> bool:
        return self.timm_name.startswith("fastradio_test")


ARCHITECTURES: dict[str, ArchConfig] = {
    a.timm_name: a
    for a in (
        ArchConfig("vit_base_patch16_224", 768, 12, 12, c_radio_v2=True),
        ArchConfig("vit_large_patch16_224", 1024, 24, 16, c_radio_v2=True),
        ArchConfig("vit_huge_patch16_224", 1280, 32, 16, c_radio_v2=True),
        ArchConfig("vit_giant_patch16_224", 1536, 40, 24, allows_scaled_ln=True, c_radio_v2=True,
                   vitdet_global_blocks=8),
        # C-RADIOv3-B/L: layer-scale and an unused reg_token (radio-family §1).
        ArchConfig("vit_base_patch16_v2_224", 768, 12, 12, layer_scale=True, reg_token_rows=4),
        ArchConfig("vit_large_patch16_v2_224", 1024, 24, 16, layer_scale=True, reg_token_rows=4),
        # C-RADIOv4-SO400M: 16 heads of 72 (not readable from shapes), MLP 4304 = 16·269.
        ArchConfig("vit_so400m_patch16_224", 1152, 27, 16, mlp_hidden_dim=4304),
        # Test-only architectures: the real family's structures at tiny widths.
        ArchConfig("fastradio_test_d128_patch16", 128, 2, 2, c_radio_v2=True),         # head dim 64
        ArchConfig("fastradio_test_d160_patch16", 160, 2, 2, c_radio_v2=True),         # head dim 80
        ArchConfig("fastradio_test_d192_patch16", 192, 3, 3, allows_scaled_ln=True, c_radio_v2=True),
        # like vit_*_v2_224 (C-RADIOv3-B/L): layer-scale + reg_token
        ArchConfig("fastradio_test_d128_v2_patch16", 128, 2, 2, layer_scale=True, reg_token_rows=4),
        # like SO400M: head dim 72, odd depth, MLP 528 (16 mod 64, as 4304 is), not 4·D
        ArchConfig("fastradio_test_d144_patch16", 144, 3, 2, mlp_hidden_dim=528),
    )
}

#: teacher names of ``args.teachers`` that fastradio knows (radio-family §4); a name outside this
#: set is refused: it would be a model nobody has described to us
KNOWN_TEACHERS: tuple[str, ...] = ("clip", "siglip", "dino_v2", "sam", "siglip2-g", "dino_v3", "sam3")


@dataclass(frozen=True)
class ModelConfig:
    """Everything the network needs, derived from ``config.json``, the weights (summary slots,
    layer-scale) and the checkpoint's revision (align_corners), and cross-checked against the
    tensor shapes by the loader. All sizes are in tokens or features unless named otherwise.

    ``summary_idxs`` and ``align_corners`` are None until known: ``config.json`` states the first
    only through ``teachers[*].use_summary`` (the loader reads it from the weights in any case) and
    never the second (read from the checkpoint's bundled code or the revision table, see
    :mod:`fastradio.align`)."""

    arch: ArchConfig
    patch_size: int = 16
    num_cls_tokens: int = 4
    num_registers: int = 4
    #: side of the stored position-embedding grid (cpe_max_size / patch_size; 128 for 2048 px)
    pos_grid: int = 128
    max_resolution: int = 2048
    #: a :class:`~fastradio.compat.Resolution` (equal to the reference's ``[h, w]`` list too)
    preferred_resolution: tuple[int, int] = Resolution(768, 768)
    ln_eps: float = 1e-6
    scaled_ln: bool = False
    teachers: tuple[str, ...] = ("clip", "siglip", "dino_v2", "sam")
    has_feature_normalizer: bool = False
    #: ViTDet window side in patches (``fastradio.load(..., vitdet_window_size=)``); None = global
    #: attention everywhere (spec §7, DESIGN.md decision 26)
    window_size: int | None = None
    #: ViTDet global blocks G; None = the architecture's default (8 for giant, 4 otherwise)
    window_num_global: int | None = None
    #: which CLS slots form the summary, in order (C-RADIOv2/v3: (0, 1, 2); v4: (0, 1))
    summary_idxs: tuple[int, ...] | None = (0, 1, 2)
    #: x += γ₁·attn(LN1 x); x += γ₂·mlp(LN2 x) with γ = ls1/ls2.grandma (C-RADIOv3-B/L)
    layer_scale: bool = False
    #: the position-table resize: align_corners=True (C-RADIOv2) or False (C-RADIOv4, ...); None
    #: = not decided (such a config cannot run)
    align_corners: bool | None = True
    #: what decided align_corners (the bundled file, the revision table, an override, ...)
    align_corners_source: str | None = None
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.preferred_resolution, Resolution):
            object.__setattr__(self, "preferred_resolution", Resolution(*self.preferred_resolution))

    # -- the Hugging Face config's API (for code written for the reference) --------------------
    def to_dict(self) -> dict:
        """The parsed ``config.json`` (a copy), as the reference's ``model.config.to_dict()``
        gives it; for a config not read from a file (the registry's), the ``config.json`` a
        synthetic checkpoint of it would carry."""
        raw = self.extra.get("config_json")
        if raw is None:
            from .synthetic import config_json  # the one writer of config.json files

            raw = config_json(self)
        return copy.deepcopy(raw)

    @property
    def args(self) -> dict:
        """``config.json``'s ``args`` (the training arguments: ``model``, ``teachers``, ...), as
        the reference's ``model.config.args``."""
        return self.to_dict()["args"]

    @property
    def version(self) -> str | None:
        """``config.json``'s ``version`` (e.g. ``c-radio_v4-h``), as the reference's ``model.config.version``."""
        return self.to_dict().get("version")

    # -- derived sizes -------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return self.arch.embed_dim

    @property
    def depth(self) -> int:
        return self.arch.depth

    @property
    def num_heads(self) -> int:
        return self.arch.num_heads

    @property
    def head_dim(self) -> int:
        return self.arch.head_dim

    @property
    def mlp_hidden(self) -> int:
        return self.arch.mlp_hidden

    @property
    def num_prefix_tokens(self) -> int:
        """CLS + register tokens prepended to every image (8 for C-RADIOv2/v3, 10 for v4)."""
        return self.num_cls_tokens + self.num_registers

    @property
    def reg_token_rows(self) -> int:
        return self.arch.reg_token_rows

    @property
    def summary_dim(self) -> int | None:
        """Width of the summary: len(summary_idxs)·D (C-RADIOv2/v3: 3·D, v4: 2·D)."""
        return None if self.summary_idxs is None else len(self.summary_idxs) * self.embed_dim

    @property
    def patch_features(self) -> int:
        """Features per flattened patch: 3 channels x patch x patch (768)."""
        return 3 * self.patch_size * self.patch_size

    @property
    def min_resolution_step(self) -> int:
        return self.patch_size * (self.window_size or 1)

    @property
    def window_schedule(self) -> tuple[bool, ...] | None:
        """Per block, whether it is windowed (ViTDet, spec §7); None when the mode is off."""
        if self.window_size is None:
            return None
        from .vitdet import schedule

        return schedule(self.depth, self.window_num_global or self.arch.vitdet_global_blocks)

    def param_count(self) -> int:
        """Number of parameters, as the reference counts them (buffers such as the input
        conditioner, summary_idxs and a feature normaliser are not parameters; layer-scale γs and
        the unused reg_token are)."""
        d, f = self.embed_dim, self.mlp_hidden
        per_block = (3 * d * d + 3 * d) + (d * d + d) + (f * d + f) + (d * f + d) + 4 * d
        if self.layer_scale:
            per_block += 2 * d
        n = self.pos_grid**2 * d + d * self.patch_features + self.num_prefix_tokens * d
        n += self.reg_token_rows * d
        return n + self.depth * per_block

    def with_(self, **changes) -> "ModelConfig":
        return replace(self, **changes)


@dataclass(frozen=True)
class KnownModel:
    """A published checkpoint: its canonical name, Hub repo id, architecture and the facts of its
    family that ``config.json`` does not carry or that synthetic checkpoints need.

    align_corners: the position resize of every revision of the Hub repo (True, False), or None
    when it depends on the revision; then ``align_corners_by_revision`` lists the Hub commits known
    for certain, and ``current_align_corners`` is the value of the current revision as far as the
    spec says (used for synthetic checkpoints only, never to load a real one)."""

    name: str
    hub_repo: str
    arch: str
    aliases: tuple[str, ...] = ()
    #: True for the tiny test architectures (never on the Hub; synthetic only)
    test_only: bool = False
    family: str = "C-RADIOv2"
    #: the ``version`` string of the published config.json (None: not known to us)
    version: str | None = None
    #: the ``version`` a config.json must carry for the reference code to accept it (a key of its
    #: resource table, ``RESOURCE_MAP`` in NVlabs/RADIO ``radio/common.py``): ``version`` when it
    #: is known; for C-RADIOv2-B/L/H, which have no key of their own there, the RADIOv2.5 key of
    #: the same size, whose resources (patch 16, max 2048, preferred 768) are C-RADIOv2's.
    #: Written into synthetic checkpoints only; the loader never relies on it
    reference_version: str | None = None
    teachers: tuple[str, ...] = ("clip", "siglip", "dino_v2", "sam")
    num_registers: int = 4
    summary_idxs: tuple[int, ...] = (0, 1, 2)
    preferred_resolution: tuple[int, int] = (768, 768)
    align_corners: bool | None = True
    align_corners_by_revision: tuple[tuple[str, bool], ...] = ()
    current_align_corners: bool | None = None
    licence: str = "see the model card"

    @property
    def config(self) -> ModelConfig:
        """The config of this model's checkpoints (for test architectures: the tiny one with a
        16x16 position grid that their synthetic checkpoints have)."""
        arch = ARCHITECTURES[self.arch]
        align = self.align_corners if self.align_corners is not None else self.current_align_corners
        if self.align_corners is not None:
            source = f"registry: {self.name} ({'every revision' if not self.test_only else 'test architecture'})"
        else:
            source = f"registry: {self.name} (its current Hub revision, per the spec; synthetic checkpoints only)"
        common = dict(num_cls_tokens=len(self.teachers), num_registers=self.num_registers,
                      teachers=self.teachers, summary_idxs=self.summary_idxs, layer_scale=arch.layer_scale,
                      align_corners=align, align_corners_source=source)
        if self.test_only:
            return tiny_config(self.arch, **common)
        return ModelConfig(arch=arch, preferred_resolution=self.preferred_resolution, **common)

    def align_corners_at(self, revision: str | None) -> bool | None:
        """The resize of this repo at a Hub commit, when known for certain; else None."""
        if self.align_corners is not None:
            return self.align_corners
        if revision:
            for commit, value in self.align_corners_by_revision:
                if commit == revision.lower():
                    return value
        return None

    @property
    def config_version(self) -> str | None:
        """The ``version`` a synthetic config.json of this model carries: the published one, else
        the one the reference code accepts for it (see ``reference_version``)."""
        return self.version or self.reference_version


_V2 = dict(family="C-RADIOv2", licence="see the model card")
_V3 = dict(family="C-RADIOv3", preferred_resolution=(512, 512),
           # The spec fixes the count (4 CLS tokens, [0, 1, 2] summarised); the names and their order
           # are those the NVlabs/RADIO README lists for C-RADIOv3's adaptors.
           teachers=("clip", "siglip2-g", "dino_v2", "sam"),
           licence="see the model card")
_V4 = dict(family="C-RADIOv4", preferred_resolution=(512, 512), teachers=("siglip2-g", "dino_v3", "sam3"),
           num_registers=7, summary_idxs=(0, 1), align_corners=False,
           licence="NVIDIA Open Model License (commercial use allowed)")

KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel("C-RADIOv2-B", "nvidia/C-RADIOv2-B", "vit_base_patch16_224", reference_version="radio_v2.5-b", **_V2),
    KnownModel("C-RADIOv2-L", "nvidia/C-RADIOv2-L", "vit_large_patch16_224", reference_version="radio_v2.5-l",
               **_V2),
    KnownModel("C-RADIOv2-H", "nvidia/C-RADIOv2-H", "vit_huge_patch16_224", reference_version="radio_v2.5-h",
               **_V2),
    # The Hub spells this one with a lower-case g, and cache folders are case-sensitive. (The
    # reference's radio_v2.5-g key is the patch-14 RADIOv2.5-g; c-radio_v2-g is this model's.)
    KnownModel("C-RADIOv2-g", "nvidia/C-RADIOv2-g", "vit_giant_patch16_224", reference_version="c-radio_v2-g",
               **_V2),
    # C-RADIOv3 (radio-family §1, §2): B and H resize with align_corners=True; L and g were
    # re-uploaded with code from after the 2025-06-28 switch (False on the current revision,
    # inferred), the first uploads were True: no commit is known for certain, so without the
    # checkpoint's bundled vit_patch_generator.py they are refused (see fastradio.align).
    KnownModel("C-RADIOv3-B", "nvidia/C-RADIOv3-B", "vit_base_patch16_v2_224", version="c-radio_v3-b",
               align_corners=True, **_V3),
    KnownModel("C-RADIOv3-L", "nvidia/C-RADIOv3-L", "vit_large_patch16_v2_224", version="c-radio_v3-l",
               align_corners=None, current_align_corners=False, **_V3),
    KnownModel("C-RADIOv3-H", "nvidia/C-RADIOv3-H", "vit_huge_patch16_224", version="c-radio_v3-h",
               align_corners=True, **_V3),
    KnownModel("C-RADIOv3-g", "nvidia/C-RADIOv3-g", "vit_giant_patch16_224", version="c-radio_v3-g",
               align_corners=None, current_align_corners=False, **_V3),
    KnownModel("C-RADIOv4-SO400M", "nvidia/C-RADIOv4-SO400M", "vit_so400m_patch16_224",
               version="c-radio_v4-so400m", **_V4),
    KnownModel("C-RADIOv4-H", "nvidia/C-RADIOv4-H", "vit_huge_patch16_224", version="c-radio_v4-h", **_V4),
    KnownModel("test-d128", "", "fastradio_test_d128_patch16", test_only=True, family="test"),
    KnownModel("test-d160", "", "fastradio_test_d160_patch16", test_only=True, family="test"),
    KnownModel("test-d192", "", "fastradio_test_d192_patch16", test_only=True, family="test"),
    # C-RADIOv3-B/L's structure (layer-scale, reg_token), with the align_corners=False resize.
    KnownModel("test-d128-v3", "", "fastradio_test_d128_v2_patch16", test_only=True, family="test",
               teachers=_V3["teachers"], align_corners=False),
    # C-RADIOv4-SO400M's structure (3 CLS + 7 registers, summary [0, 1], head dim 72, MLP not 4·D).
    KnownModel("test-d144-v4", "", "fastradio_test_d144_patch16", test_only=True, family="test",
               teachers=_V4["teachers"], num_registers=7, summary_idxs=(0, 1), align_corners=False),
    # C-RADIOv4-H's structure at a tiny width (head dim 80: runs on every backend).
    KnownModel("test-d160-v4", "", "fastradio_test_d160_patch16", test_only=True, family="test",
               teachers=_V4["teachers"], num_registers=7, summary_idxs=(0, 1), align_corners=False),
)

#: ``version`` strings of published config.json files that fastradio knows (radio-family §4)
KNOWN_VERSIONS: dict[str, KnownModel] = {m.version: m for m in KNOWN_MODELS if m.version}


#: The ``version`` keys the reference code accepts (its ``RESOURCE_MAP``, NVlabs/RADIO
#: ``radio/common.py`` at commit c0f3701; ``RADIOConfig`` looks the version up there and fails on
#: any other string). A fact about the reference, used to check that synthetic config.json files
#: are loadable by it; fastradio itself accepts a config by its structure, not by this list.
REFERENCE_VERSIONS: tuple[str, ...] = (
    "radio_v2.5-b", "radio_v2.5-l", "radio_v2.5-h", "radio_v2.5-h-norm", "radio_v2.5-g",
    "radio_v2.1", "radio_v2", "radio_v1", "e-radio_v2",
    "c-radio_v2-g", "c-radio_v2-vlm-h",
    "c-radio_v3-b", "c-radio_v3-l", "c-radio_v3-h", "c-radio_v3-g",
    "c-radio_v4-so400m", "c-radio_v4-h",
)


@dataclass(frozen=True)
class UnsupportedRelease:
    """A RADIO release fastradio does not load (yet), and why: names of it are refused up front
    instead of being looked up on the Hub (where a download would only end in a refusal or, worse,
    an unverified model)."""

    family: str
    #: names users type for it: Hub repo names, the reference's version strings, common spellings
    #: (matched exactly after :func:`normalize_alias`, like known models)
    names: tuple[str, ...]
    reason: str


#: Other RADIO generations (names from the NVlabs/RADIO README and resource table). The reasons are
#: the facts that put them outside what fastradio implements: the C-RADIOv2/v3/v4 ViT encoders of
#: spec/c-radiov2.md and spec/radio-family.md, loaded from safetensors.
UNSUPPORTED_RELEASES: tuple[UnsupportedRelease, ...] = (
    UnsupportedRelease(
        "RADIOv2.5",
        ("RADIO-B", "RADIO-L", "RADIO-H", "RADIO-g", "RADIOv2.5", "RADIOv2.5-B", "RADIOv2.5-L", "RADIOv2.5-H",
         "RADIOv2.5-H-norm", "RADIOv2.5-g"),
        "its checkpoints have not been described to fastradio (teachers, prefix tokens and position resize are "
        "not verified), and RADIOv2.5-g uses 14-pixel patches, which fastradio does not implement"),
    UnsupportedRelease(
        "RADIO (v1, v2, v2.1)",
        ("RADIO", "RADIOv1", "RADIOv2", "RADIOv2.1"),
        "the first RADIO releases are published as TorchHub pickles only (fastradio loads safetensors, never "
        "pickles), and RADIOv1 uses 14-pixel patches"),
    UnsupportedRelease(
        "E-RADIO",
        ("E-RADIO", "E-RADIOv2", "e-radio_v2"),
        "it is a hybrid convolutional architecture (args.model = eradio), not a ViT; fastradio implements the ViT "
        "encoders only"),
    UnsupportedRelease(
        "C-RADIO (first release)",
        ("C-RADIO", "C-RADIOv1"),
        "its checkpoint has not been described to fastradio, so its layout and position resize are not verified"),
    UnsupportedRelease(
        "C-RADIOv2-VLM-H",
        ("C-RADIOv2-VLM-H", "C-RADIOv2-VLM"),
        "its checkpoint has not been described to fastradio, so its layout and position resize are not verified"),
)


def normalize_alias(name: str) -> str:
    """Canonical lookup key: case-insensitive, ``_``/``-`` and an ``nvidia/`` prefix ignored.

    Exact rules (no fuzzy matching): ``C-RADIOv2-G``, ``c-radio_v2-g``, ``nvidia/C-RADIOv2-g``
    and ``cradiov2g`` all give ``cradiov2g``.
    """
    key = name.strip().lower()
    if key.startswith("nvidia/"):
        key = key[len("nvidia/"):]
    return key.replace("-", "").replace("_", "")


def resolve_known_model(name: str) -> KnownModel | None:
    """The registry entry for a user-typed name, or None if the name is not a known model."""
    key = normalize_alias(name)
    for m in KNOWN_MODELS:
        if key == normalize_alias(m.name) or key in (normalize_alias(a) for a in m.aliases):
            return m
    return None


def unsupported_release(name: str) -> UnsupportedRelease | None:
    """The release a user-typed name (or ``nvidia/`` Hub repo id, or reference version string)
    names when fastradio does not support it; None otherwise (also for every known model)."""
    if resolve_known_model(name) is not None:
        return None
    key = normalize_alias(name)
    for r in UNSUPPORTED_RELEASES:
        if key in (normalize_alias(n) for n in r.names):
            return r
    return None


def known_model_for_repo(repo_id: str | None) -> KnownModel | None:
    """The registry entry whose Hub repo is ``repo_id`` (the Hub treats repo ids
    case-insensitively), or None."""
    if not repo_id:
        return None
    for m in KNOWN_MODELS:
        if m.hub_repo and m.hub_repo.lower() == repo_id.strip().lower():
            return m
    return None


def known_model_for_version(version: str | None) -> KnownModel | None:
    """The registry entry of a config.json ``version`` string (case-insensitive), or None."""
    if not version:
        return None
    return KNOWN_VERSIONS.get(version.strip().lower())


def tiny_config(arch: str = "fastradio_test_d128_patch16", pos_grid: int = 16, **kw) -> ModelConfig:
    """A small config for tests: tiny widths and a small position grid (16x16 covers 256 px)."""
    a = ARCHITECTURES[arch]
    kw.setdefault("layer_scale", a.layer_scale)
    kw.setdefault("align_corners_source", "tiny_config (test architecture)")
    return ModelConfig(arch=a, pos_grid=pos_grid, max_resolution=pos_grid * 16, preferred_resolution=(64, 64), **kw)


def _check_registry() -> None:
    for a in ARCHITECTURES.values():
        assert a.embed_dim % a.num_heads == 0, a
        assert not (a.c_radio_v2 and (a.layer_scale or a.reg_token_rows or a.mlp_hidden_dim)), a
    seen: set[str] = set()
    for m in KNOWN_MODELS:
        keys = {normalize_alias(m.name), *map(normalize_alias, m.aliases)}
        assert not keys & seen, f"alias collision in the registry: {m.name}"
        seen |= keys
        assert m.arch in ARCHITECTURES, m
        assert set(m.teachers) <= set(KNOWN_TEACHERS), m
        assert all(0 <= i < len(m.teachers) for i in m.summary_idxs), m
        assert m.align_corners is not None or m.current_align_corners is not None, m
        assert all(len(c) == 40 and c == c.lower() for c, _ in m.align_corners_by_revision), m
    assert len(KNOWN_VERSIONS) == sum(1 for m in KNOWN_MODELS if m.version)
    for m in KNOWN_MODELS:
        assert m.test_only or m.config_version in REFERENCE_VERSIONS, m
    taken = {normalize_alias(n) for m in KNOWN_MODELS for n in (m.name, *m.aliases)}
    for r in UNSUPPORTED_RELEASES:
        assert not {normalize_alias(n) for n in r.names} & taken, r
    # Every reference version that is not one of ours is refused by name.
    ours = {m.config_version for m in KNOWN_MODELS}
    refused = {normalize_alias(n) for r in UNSUPPORTED_RELEASES for n in r.names}
    assert all(normalize_alias(v) in refused for v in REFERENCE_VERSIONS if v not in ours)
    assert math.isqrt(16384) == 128


_check_registry()
