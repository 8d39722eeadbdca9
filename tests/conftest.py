"""Shared fixtures. ``family``: real-size synthetic checkpoints of the RADIO family (C-RADIOv3,
C-RADIOv4), generated once per session on first use and removed at the end (they are GBs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


class FamilyCheckpoints:
    """Real-size synthetic checkpoints (seed 0, fp32, bundled vit_patch_generator.py) under
    ``root/synthetic/<name>-seed0``: the layout of the ``synthetic:`` cache, so a test that sets
    ``FASTRADIO_CACHE=root`` loads ``synthetic:<name>`` from here without generating again."""

    def __init__(self, root: Path):
        self.root = root

    def folder(self, name: str) -> Path:
        from fastradio import synthetic

        return synthetic.synthetic_folder(name, 0, root=self.root / "synthetic")


@pytest.fixture(scope="session")
def family(tmp_path_factory):
    root = tmp_path_factory.mktemp("family-cache")
    yield FamilyCheckpoints(root)
    shutil.rmtree(root, ignore_errors=True)
