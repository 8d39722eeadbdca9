"""``fastradio embed --pca DIR``: feature pictures written while the run goes.

:class:`PictureOutput` wraps the run's output (:class:`~fastradio.embed.store.ShardedOutput` or
:class:`~fastradio.embed.store.MemoryOutput`): each shard's results pass through it on their way
to the store, and for every image it writes, into DIR,

- ``<stem>_pca.png``: the first three principal components of the patch features as RGB
  (:func:`fastradio.viz.pca_rgb`),
- ``<stem>_norm.png``: the per-token feature norms as a heat map (:func:`fastradio.viz.token_norm_map`),

each upscaled (nearest: one block per patch) to the image's original size; with
``side_by_side`` the input image (read again from its source, as the loader read it) stands left
of each picture. With ``joint`` one PCA basis is fitted per group of ``group`` consecutive images
of a shard (``--pca-joint``: the ``--batch`` size; groups never span shards), so colours are
comparable within a group; otherwise each image has its own basis.

An image whose pictures cannot be made (non-finite features, a write error) is reported through
``note`` and listed in :attr:`PictureOutput.failures`; its embeddings are stored all the same
(the pictures are a by-product: they never cost the run its results). ``fastradio embed`` then
exits 1 at the end, naming the first failure.

The pictures of a shard are written *before* the shard goes to the store, each file atomically:
an image in a verified shard always has its pictures, and ``--resume`` (which embeds only the
images missing from the output) writes pictures for exactly the images it embeds, replacing any
left by the interrupted run. Pictures of images embedded by an earlier run are not made again.
With ``--out FILE.safetensors`` the pictures are written as each ``--shard-size`` group completes,
so a run that stops leaves the pictures of the images before the stop although the file itself is
not written.

``<stem>`` is the file name of the image id without its extension; when two images of the run
share one, both get ``-<first 8 hex digits of sha1(id)>`` appended (the same names on every run
over the same inputs, so ``--resume`` replaces rather than duplicates).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path, PurePath
from typing import Sequence

import torch

from .sources import Item, Source
from .store import Result

__all__ = ["PictureOutput", "picture_stems"]

_KEPT_ERRORS = 20


def picture_stems(items: Sequence[Item]) -> dict[str, str]:
    """id → file-name stem for the pictures (see the module docstring)."""
    def stem(id_: str) -> str:
        return PurePath(id_).stem or "image"

    counts = Counter(stem(it.id) for it in items)
    return {it.id: stem(it.id) if counts[stem(it.id)] == 1
            else f"{stem(it.id)}-{hashlib.sha1(it.id.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
            for it in items}


class PictureOutput:
    """The run's output with the feature pictures of each shard written first (see the module
    docstring). Everything but :meth:`add` is the wrapped output's."""

    def __init__(self, inner, folder: str | Path, *, items: Sequence[Item], sources: Sequence[Source], patch: int,
                 feature_fmt: str = "NLC", joint: bool = False, group: int = 8, side_by_side: bool = False,
                 background=(255, 255, 255), exif_transpose: bool = True, note=lambda s: None):
        self.inner = inner
        self.folder = Path(folder)
        self.items = {it.id: it for it in items}
        self.stems = picture_stems(items)
        self.sources = list(sources)
        self.patch = int(patch)
        self.layout = "CHW" if feature_fmt == "NCHW" else "NLC"
        self.joint, self.group = bool(joint), max(int(group), 1)
        self.side_by_side = bool(side_by_side)
        self.background, self.exif_transpose = background, exif_transpose
        self.note = note
        self.written = 0       # picture files written by this run
        self.failed = 0        # images whose pictures could not be made
        self.failures: list[str] = []   # the first few of them, "id: reason"

    def __getattr__(self, name):
        # count, shard_count, skip, wait, finish, results, skipped: the wrapped output's
        return getattr(self.inner, name)

    def add(self, results: list[Result]) -> None:
        self.write_pictures(results)
        self.inner.add(results)

    def write_pictures(self, results: Sequence[Result]) -> None:
        from fastradio import viz

        self.folder.mkdir(parents=True, exist_ok=True)
        step = self.group if self.joint else 1
        for start in range(0, len(results), step):
            chunk = [r for r in results[start:start + step] if r.features is not None]
            grids = [(r.model_size[0] // self.patch, r.model_size[1] // self.patch) for r in chunk]
            basis = None
            if self.joint:
                # an image with non-finite features fails on its own below; it must not sink the group
                fit = [(r.features, g) for r, g in zip(chunk, grids) if bool(torch.isfinite(r.features).all())]
                if fit:
                    basis = viz.fit_pca_basis([f for f, _ in fit], [g for _, g in fit], layout=self.layout)
            for r, (h, w) in zip(chunk, grids):
                try:
                    self._one(viz, r, h, w, basis)
                except (ValueError, OSError) as e:
                    msg = f"{r.id}: {' '.join(str(e).split())}"
                    self.failed += 1
                    if len(self.failures) < _KEPT_ERRORS:
                        self.failures.append(msg)
                    self.note(f"--pca: no pictures for {msg}")

    def _one(self, viz, r: Result, h: int, w: int, basis) -> None:
        pca = viz.pca_rgb(r.features, h, w, basis=basis, layout=self.layout)
        norm = viz.token_norm_map(r.features, h, w, layout=self.layout)
        image = None
        if self.side_by_side:   # read again: the loader's copy was resized for the model
            item = self.items[r.id]
            image = self.sources[item.source].read(item.ref, background=self.background,
                                                   exif_transpose=self.exif_transpose)
        for kind, picture in (("pca", pca), ("norm", norm)):
            out = (viz.side_by_side(image, picture) if image is not None
                   else viz.upscale(picture, tuple(r.original_size)))
            viz.save_png(out, self.folder / f"{self.stems[r.id]}_{kind}.png")
            self.written += 1
