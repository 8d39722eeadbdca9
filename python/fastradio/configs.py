"""The one registry of model configurations, shared by loading, tests, synthetic checkpoints
and benchmarks.

An *architecture* (keyed by the timm model name that a checkpoint's ``config.json`` stores in
``args.model``) fixes the tensor shapes; a *known model* is a published checkpoint (Hub repo id,
aliases users type) of one architecture. The small ``fastradio-test-*`` architectures exist only
for synthetic checkpoints in tests: same structure, tiny widths and a small position grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

__all__ = [
    "ArchConfig",
    "ModelConfig",
    "KnownModel",
    "ARCHITECTURES",
    "KNOWN_MODELS",
    "resolve_known_model",
    "normalize_alias",
]


@dataclass(frozen=True)
class ArchConfig:
    """Widths of one ViT architecture (spec §1)."""

    timm_name: str
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: int = 4
    #: whether ``scaled_ln`` is a defined option of this architecture (spec §6)
    allows_scaled_ln: bool = False

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


ARCHITECTURES: dict[str, ArchConfig] = {
    a.timm_name: a
    for a in (
        ArchConfig("vit_base_patch16_224", 768, 12, 12),
        ArchConfig("vit_large_patch16_224", 1024, 24, 16),
        ArchConfig("vit_huge_patch16_224", 1280, 32, 16),
        ArchConfig("vit_giant_patch16_224", 1536, 40, 24, allows_scaled_ln=True),
        # Test-only architectures: head dims 64 and 80 like the real family, tiny widths.
        ArchConfig("fastradio_test_d128_patch16", 128, 2, 2),
        ArchConfig("fastradio_test_d160_patch16", 160, 2, 2),
        ArchConfig("fastradio_test_d192_patch16", 192, 3, 3, allows_scaled_ln=True),
    )
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything the network needs, derived from ``config.json`` (and cross-checked against the
    tensor shapes by the loader). All sizes are in tokens or features unless named otherwise."""

    arch: ArchConfig
    patch_size: int = 16
    num_cls_tokens: int = 4
    num_registers: int = 4
    #: side of the stored position-embedding grid (cpe_max_size / patch_size; 128 for 2048 px)
    pos_grid: int = 128
    max_resolution: int = 2048
    preferred_resolution: tuple[int, int] = (768, 768)
    ln_eps: float = 1e-6
    scaled_ln: bool = False
    teachers: tuple[str, ...] = ("clip", "siglip", "dino_v2", "sam")
    has_feature_normalizer: bool = False
    #: ViTDet window size; None = global attention everywhere (the only mode supported now)
    window_size: int | None = None
    extra: dict = field(default_factory=dict, compare=False, repr=False)

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
        return self.arch.mlp_ratio * self.arch.embed_dim

    @property
    def num_prefix_tokens(self) -> int:
        """CLS + register tokens prepended to every image (8 for C-RADIOv2)."""
        return self.num_cls_tokens + self.num_registers

    @property
    def patch_features(self) -> int:
        """Features per flattened patch: 3 channels x patch x patch (768)."""
        return 3 * self.patch_size * self.patch_size

    @property
    def min_resolution_step(self) -> int:
        return self.patch_size * (self.window_size or 1)

    def param_count(self) -> int:
        """Number of parameters, as the reference counts them (buffers such as the input
        conditioner, summary_idxs and a feature normaliser are not parameters)."""
        d, f = self.embed_dim, self.mlp_hidden
        per_block = (3 * d * d + 3 * d) + (d * d + d) + (f * d + f) + (d * f + d) + 4 * d
        n = self.pos_grid**2 * d + d * self.patch_features + self.num_prefix_tokens * d
        return n + self.depth * per_block

    def with_(self, **changes) -> "ModelConfig":
        return replace(self, **changes)


@dataclass(frozen=True)
class KnownModel:
    """A published checkpoint: its canonical name, Hub repo id and architecture."""

    name: str
    hub_repo: str
    arch: str
    aliases: tuple[str, ...] = ()
    #: True for the tiny test architectures (never on the Hub; synthetic only)
    test_only: bool = False

    @property
    def config(self) -> ModelConfig:
        return ModelConfig(arch=ARCHITECTURES[self.arch])


KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel("C-RADIOv2-B", "nvidia/C-RADIOv2-B", "vit_base_patch16_224"),
    KnownModel("C-RADIOv2-L", "nvidia/C-RADIOv2-L", "vit_large_patch16_224"),
    KnownModel("C-RADIOv2-H", "nvidia/C-RADIOv2-H", "vit_huge_patch16_224"),
    # The Hub spells this one with a lower-case g, and cache folders are case-sensitive.
    KnownModel("C-RADIOv2-g", "nvidia/C-RADIOv2-g", "vit_giant_patch16_224"),
    KnownModel("test-d128", "", "fastradio_test_d128_patch16", test_only=True),
    KnownModel("test-d160", "", "fastradio_test_d160_patch16", test_only=True),
    KnownModel("test-d192", "", "fastradio_test_d192_patch16", test_only=True),
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


def tiny_config(arch: str = "fastradio_test_d128_patch16", pos_grid: int = 16, **kw) -> ModelConfig:
    """A small config for tests: tiny widths and a small position grid (16x16 covers 256 px)."""
    return ModelConfig(arch=ARCHITECTURES[arch], pos_grid=pos_grid,
                       max_resolution=pos_grid * 16, preferred_resolution=(64, 64), **kw)


def _check_registry() -> None:
    for a in ARCHITECTURES.values():
        assert a.embed_dim % a.num_heads == 0, a
    seen: set[str] = set()
    for m in KNOWN_MODELS:
        keys = {normalize_alias(m.name), *map(normalize_alias, m.aliases)}
        assert not keys & seen, f"alias collision in the registry: {m.name}"
        seen |= keys
        assert m.arch in ARCHITECTURES, m
    assert math.isqrt(16384) == 128


_check_registry()
