"""Shared test helpers: synthetic checkpoints on disk, editing their config and tensors, a fake
Hugging Face cache, and an offline environment. Import as ``from helpers import ...`` (pytest puts
``tests/`` on ``sys.path``) or ``from tests.helpers import ...``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import torch

from fastradio.checkpoint import CONFIG_NAME, INDEX_NAME, PREFIX, WEIGHTS_NAME, find_weight_files
from fastradio.synthetic import write_checkpoint

__all__ = ["make_checkpoint", "read_json", "write_json", "edit_config", "read_tensors", "write_tensors",
           "edit_tensors", "fake_hf_cache", "offline_hf", "P"]

P = PREFIX


def make_checkpoint(tmp_path: str | os.PathLike, name: str = "test-d128", seed: int = 0, **kw) -> Path:
    """Write a synthetic checkpoint to ``tmp_path/<name>-seed<seed>[-<n>]`` and return the folder.
    ``kw`` goes to :func:`fastradio.synthetic.write_checkpoint` (shards, dtype, feature_normalizer,
    scaled_ln). A fresh folder each call, so tests may edit it freely."""
    base = Path(tmp_path) / f"{name}-seed{seed}"
    folder, k = base, 1
    while folder.exists():
        folder, k = base.with_name(f"{base.name}-{k}"), k + 1
    return write_checkpoint(folder, name, seed=seed, **kw)


def read_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())


def write_json(path: str | os.PathLike, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2))


def edit_config(folder: str | os.PathLike, fn: Callable[[dict], None]) -> dict:
    """Apply ``fn`` (mutating) to ``folder/config.json``; returns the new dict."""
    path = Path(folder) / CONFIG_NAME
    data = read_json(path)
    fn(data)
    write_json(path, data)
    return data


def read_tensors(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder (names with the ``radio_model.`` prefix), via the
    safetensors library itself (independent of fastradio's loader)."""
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in find_weight_files(folder):
        out.update(load_file(str(f)))
    return out


def write_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> None:
    """Write ``tensors`` as one safetensors file with the safetensors library."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})


def edit_tensors(folder: str | os.PathLike, fn: Callable[[dict], None]) -> None:
    """Apply ``fn`` (mutating the name → tensor dict) to a single-file checkpoint."""
    path = Path(folder) / WEIGHTS_NAME
    assert path.is_file() and not (Path(folder) / INDEX_NAME).exists(), "edit_tensors needs a single-file layout"
    tensors = read_tensors(folder)
    fn(tensors)
    write_tensors(path, tensors)


def fake_hf_cache(cache_dir: str | os.PathLike, repo_id: str, src: str | os.PathLike, *,
                  commit: str | None = None, ref: str | None = "main", files: list[str] | None = None) -> Path:
    """Lay out ``src``'s files in a Hugging Face Hub cache the way huggingface_hub does:
    ``models--{owner}--{name}/blobs/<hash>``, ``snapshots/<commit>/<file>`` symlinks to the blobs,
    and ``refs/<ref>`` holding the commit. Returns the snapshot folder."""
    src = Path(src)
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    blobs, snap = repo / "blobs", repo / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for name in files if files is not None else sorted(p.name for p in src.iterdir()):
        data = (src / name).read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / name
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, snap))
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snap


def offline_hf(monkeypatch, root: str | os.PathLike) -> Path:
    """Point HF_HOME / HF_HUB_CACHE and FASTRADIO_CACHE at ``root`` and go offline, both in the
    environment and in huggingface_hub's import-time constants. Returns the Hub cache folder."""
    import huggingface_hub.constants as hc

    root = Path(root)
    hub = root / "hf" / "hub"
    hub.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FASTRADIO_CACHE", str(root / "fastradio"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(hub))
    return hub


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64: the DESIGN §7 model-level error measure of the tests."""
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def random_images(b: int, h: int, w: int, seed: int) -> torch.Tensor:
    """(b, 3, h, w) fp32 images in [0, 1), reproducible from the seed."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g)
