"""Exception types of fastradio. All name what was expected and what was received."""

from __future__ import annotations

__all__ = ["CheckpointError", "ModelNotFoundError", "UnsupportedModelError"]


class CheckpointError(ValueError):
    """A checkpoint (config.json or weights) is malformed, truncated, or contradicts itself."""


class UnsupportedModelError(ValueError):
    """A well-formed checkpoint that asks for a feature fastradio does not implement."""


class ModelNotFoundError(FileNotFoundError):
    """The model files could not be found (unknown name, missing folder, offline and not cached)."""
