"""Decoding and resizing in loader workers, and grouping decoded images into model batches.

- :class:`Geometry`: the model's resolution rules (step, preferred size, "nearest" rounding) as a
  small picklable object, so workers can decide each image's model size without the model.
- :class:`DecodeDataset`: item k → :class:`Decoded` (the image fully decoded — Pillow's
  ``load()``, so a truncated file fails here — converted to RGB and resized to its model size,
  or the reason it could not be). It never raises for a bad image: the error travels as data,
  so one corrupt file cannot kill a worker or the run.
- :class:`DecodeStream` / :func:`iterate`: the decoded images in item order, from ``workers`` processes
  (``torch.utils.data.DataLoader`` with a fixed list of chunks, in order, bounded prefetch) or
  in-process with ``workers=0``. The order never depends on worker scheduling.
- :class:`Batcher`: same-size images into (B, 3, H, W) batches; what is left (or too much
  pending) into packed lists of mixed sizes, in arrival order.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Iterator, NamedTuple, Sequence

import torch

from .sources import Item, Source

__all__ = ["Geometry", "Decoded", "DecodeDataset", "DecodeStream", "iterate", "Batcher", "default_workers"]


def default_workers() -> int:
    """Loader processes by default: one per CPU the process may use, less one for the main
    process, at most 8; 0 (in-process) on a single CPU."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(0, min(8, n - 1))


class Geometry(NamedTuple):
    """What the resolution policies need from a model (see :func:`fastradio.images.target_size`),
    without the model."""

    min_resolution_step: int
    preferred_resolution: tuple[int, int]

    def get_nearest_supported_resolution(self, h: int, w: int) -> tuple[int, int]:
        from fastradio.validation import nearest_supported

        return nearest_supported(int(h), int(w), int(self.min_resolution_step))

    @classmethod
    def of(cls, model) -> "Geometry | None":
        """The model's geometry, or None when its ``get_nearest_supported_resolution`` does not
        follow the common rounding rule (then the main process decides sizes and resizes)."""
        g = cls(int(model.min_resolution_step), tuple(int(v) for v in model.preferred_resolution))
        for h, w in ((1, 1), (7, 9), (17, 31), (24, 40), (40, 24), (333, 500), (500, 333), (1000, 2999)):
            if tuple(int(v) for v in model.get_nearest_supported_resolution(h, w)) != g.get_nearest_supported_resolution(h, w):
                return None
        return g


class Decoded(NamedTuple):
    """One image after a loader worker: ``image`` at ``model_size`` (or at ``original_size`` with
    ``model_size`` None when the main process must decide it), or ``error`` (one line naming the
    image) with ``image`` None. ``kind`` of an error: ``unreadable`` or ``size``."""

    seq: int
    image: torch.Tensor | None
    original_size: tuple[int, int] | None
    model_size: tuple[int, int] | None
    error: str | None = None
    kind: str | None = None


class DecodeDataset(torch.utils.data.Dataset):
    """Item k of ``items`` → :class:`Decoded` (see the module docstring)."""

    def __init__(self, sources: Sequence[Source], items: Sequence[Item], *, policy, geometry: Geometry | None,
                 background=(255, 255, 255), exif_transpose: bool = True):
        self.sources = list(sources)
        self.items = items
        self.policy = policy
        self.geometry = geometry
        self.background = tuple(background)
        self.exif_transpose = bool(exif_transpose)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> Decoded:
        from fastradio import images

        it = self.items[k]
        try:
            x = self.sources[it.source].read(it.ref, background=self.background, exif_transpose=self.exif_transpose)
        except images.ImageInputError as e:
            return Decoded(k, None, None, None, _one_line(e), "unreadable")
        except MemoryError:
            return Decoded(k, None, None, None, f"{it.id}: out of memory while decoding", "unreadable")
        except Exception as e:  # a decoder bug on a malformed file must not end a long run
            return Decoded(k, None, None, None, f"{it.id}: cannot decode ({type(e).__name__}: {_one_line(e)})",
                           "unreadable")
        size = (int(x.shape[1]), int(x.shape[2]))
        if self.geometry is None:
            return Decoded(k, x, size, None)
        try:
            target = images.target_size(self.policy, size, self.geometry, what=it.id)
        except images.ImageInputError as e:
            return Decoded(k, None, size, None, _one_line(e), "size")
        return Decoded(k, images.resize(x, target), size, target)


def _one_line(e) -> str:
    return " ".join(str(e).split())


def _as_list(batch):
    return batch


class DecodeStream:
    """``dataset[0], dataset[1], ...`` in order (iterate it once). ``workers`` > 0: that many
    loader processes, each fetching ``chunk`` consecutive items at a time, at most ``prefetch``
    chunks ahead per worker (so memory is bounded); 0: decoded here, one at a time.
    :meth:`start` starts the workers (the first iteration does it otherwise); call it before this
    process starts threads of its own, since workers are forked. :meth:`close` stops them."""

    def __init__(self, dataset: DecodeDataset, *, workers: int, chunk: int = 8, prefetch: int = 2,
                 context: str | None = None):
        self.dataset, self.workers = dataset, max(0, int(workers))
        self.chunk, self.prefetch, self.context = max(1, int(chunk)), max(1, int(prefetch)), context
        self._it = None

    def start(self) -> "DecodeStream":
        if self._it is not None:
            return self
        n = len(self.dataset)
        if self.workers == 0 or n == 0:
            self._it = (self.dataset[k] for k in range(n))
            return self
        chunks = [list(range(i, min(i + self.chunk, n))) for i in range(0, n, self.chunk)]
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=chunks, collate_fn=_as_list, num_workers=min(self.workers, len(chunks)),
            prefetch_factor=self.prefetch, persistent_workers=False,
            multiprocessing_context=self.context or _default_context())
        self._loader_it = iter(loader)
        self._it = (d for part in self._loader_it for d in part)
        return self

    def __iter__(self) -> Iterator[Decoded]:
        return self.start()._it

    def close(self) -> None:
        it = getattr(self, "_loader_it", None)
        if it is not None:
            shutdown = getattr(it, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            self._loader_it = None


def iterate(dataset: DecodeDataset, *, workers: int, chunk: int = 8, prefetch: int = 2,
            context: str | None = None) -> Iterator[Decoded]:
    """The decoded images in order (see :class:`DecodeStream`); the workers stop when the
    iteration ends or the generator is closed."""
    stream = DecodeStream(dataset, workers=workers, chunk=chunk, prefetch=prefetch, context=context)
    try:
        yield from stream
    finally:
        stream.close()


def _default_context() -> str | None:
    # fork starts workers in milliseconds and shares the item list; the workers never touch CUDA.
    import multiprocessing as mp

    return "fork" if "fork" in mp.get_all_start_methods() else None


class Batcher:
    """Groups decoded images (arriving in item order) into model batches.

    Each image waits in the bucket of its model size; a bucket that reaches ``batch`` images
    becomes a (B, 3, H, W) batch. When more than ``max_pending`` images wait in total (many
    different sizes), the ``batch`` oldest ones go out as one list (the model packs mixed sizes
    without padding). :meth:`drain` empties everything: the rest sorted by size (largest first,
    then item order) and cut into runs of at most ``batch`` images — a run of one size goes as a
    tensor, one of mixed sizes as a packed list. The batches depend only on the order and sizes of the images, never on
    timing, so the results are reproducible."""

    def __init__(self, batch: int, max_pending: int | None = None):
        if batch < 1:
            raise ValueError(f"batch: expected >= 1, got {batch}")
        self.batch = int(batch)
        self.max_pending = int(max_pending) if max_pending is not None else 4 * self.batch
        self._buckets: "OrderedDict[tuple[int, int], list[Decoded]]" = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def pending(self) -> list[Decoded]:
        return [d for b in self._buckets.values() for d in b]

    def add(self, d: Decoded) -> list[list[Decoded]]:
        size = tuple(d.image.shape[1:])
        bucket = self._buckets.setdefault(size, [])
        bucket.append(d)
        self._count += 1
        out = []
        if len(bucket) >= self.batch:
            out.append(self._take(size))
        while self._count > self.max_pending:
            oldest = sorted(self.pending(), key=lambda x: x.seq)[:self.batch]
            keep = {id(x) for x in oldest}
            for s in list(self._buckets):
                self._buckets[s] = [x for x in self._buckets[s] if id(x) not in keep]
                if not self._buckets[s]:
                    del self._buckets[s]
            self._count -= len(oldest)
            out.append(oldest)
        return out

    def _take(self, size) -> list[Decoded]:
        b = self._buckets.pop(size)
        self._count -= len(b)
        return b

    def drain(self) -> list[list[Decoded]]:
        rest = sorted(self.pending(), key=lambda d: (-d.image.shape[1] * d.image.shape[2], tuple(d.image.shape[1:]), d.seq))
        self._buckets.clear()
        self._count = 0
        return [rest[i:i + self.batch] for i in range(0, len(rest), self.batch)]
