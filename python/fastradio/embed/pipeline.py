"""The ``embed`` loop: decoded images in item order → model batches → shards.

Shards are cut from the stream of images in item order: a shard takes the next images until it
holds ``shard_size`` of them (or its outputs reach ``shard_bytes``); then the images still
waiting in the :class:`~fastradio.embed.loader.Batcher` run, and the shard — its images in item
order — goes to the output. Batches never span shards, so each shard is a contiguous stretch of
the items (less skipped ones) and what it holds does not depend on worker timing.

An image that cannot be used (unreadable, or a size ``--resolution native`` cannot take) is
either skipped (``skip_unreadable``: reported, recorded in the output) or stops the run: the
images before it are embedded and written as a last (short) shard, no model work is done on it
or after it, and :class:`StopRun` names it. Any other exception (a model error, Ctrl-C) writes
what was already computed and propagates.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, NamedTuple, Sequence

import torch

from .loader import Batcher, Decoded, DecodeDataset, DecodeStream, Geometry
from .sources import Item, Source
from .store import Result

__all__ = ["Options", "Stats", "StopRun", "run", "forward"]


@dataclasses.dataclass
class Options:
    policy: object = "nearest"                 # images.parse_resolution(...)
    batch: int = 8
    shard_size: int = 1000
    shard_bytes: int = 1 << 30
    features: str = "full"                      # none | pooled | full
    feature_fmt: str = "NLC"
    skip_unreadable: bool = False
    workers: int = 0
    prefetch: int = 2
    max_pending: int | None = None              # Batcher default: 4 x batch
    background: tuple = (255, 255, 255)
    exif_transpose: bool = True


@dataclasses.dataclass
class Stats:
    embedded: int = 0
    skipped: int = 0
    resized: int = 0
    too_big: int = 0
    batches: int = 0
    seconds: float = 0.0


class StopRun(Exception):
    """The run stopped at an image it could not use (``kind``: ``unreadable`` or ``size``)."""

    def __init__(self, message: str, item: Item, kind: str):
        super().__init__(message)
        self.item, self.kind = item, kind


class _Out(NamedTuple):
    summary: torch.Tensor
    pooled: torch.Tensor | None
    features: torch.Tensor | None


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def forward(model, xs: Sequence[torch.Tensor], *, feature_fmt: str = "NLC", features: str = "full") -> list[_Out]:
    """Run ``model`` on images ``xs`` (each (3, H, W)): one (B, 3, H, W) call when they share a
    size, else one packed list call. Returns float32 CPU tensors per image: summary (3·D,),
    pooled (D,) (mean over the patches) when ``features == "pooled"``, the patch features (own
    storage) when ``"full"``."""
    device = torch.device(getattr(model, "device", "cpu"))
    patch_dims = (1,) if feature_fmt == "NLC" else (2, 3)
    with torch.inference_mode():
        if len({tuple(x.shape) for x in xs}) == 1:
            out = model(_to_device(torch.stack(list(xs)), device), feature_fmt=feature_fmt)
            s_all, f_all = out[0], out[1]
            summaries = s_all.float().cpu().unbind(0)
            if features == "pooled":
                pooled = f_all.float().mean(dim=patch_dims).cpu().unbind(0)
                return [_Out(s, p, None) for s, p in zip(summaries, pooled)]
            if features == "full":
                feats = f_all.float().cpu().unbind(0)
                return [_Out(s, None, f.clone()) for s, f in zip(summaries, feats)]
            return [_Out(s, None, None) for s in summaries]
        outs = model([_to_device(x, device) for x in xs], feature_fmt=feature_fmt)
        res = []
        for o in outs:
            s, f = o[0][0].float().cpu(), o[1]
            if features == "pooled":
                res.append(_Out(s, f.float().mean(dim=patch_dims)[0].cpu(), None))
            elif features == "full":
                res.append(_Out(s, None, f[0].float().cpu().clone()))
            else:
                res.append(_Out(s, None, None))
        return res


def run(model, sources: Sequence[Source], items: Sequence[Item], output, *, options: Options,
        progress=None, note: Callable[[str], None] = lambda s: None) -> Stats:
    """Embed ``items`` into ``output`` (a :class:`~fastradio.embed.store.ShardedOutput` or
    :class:`~fastradio.embed.store.MemoryOutput`: ``add(results)`` per shard, ``skip(id,
    reason)``). ``progress``: a :class:`~fastradio.embed.progress.Progress` or None."""
    from fastradio import images

    o = options
    stats = Stats()
    t0 = time.monotonic()
    geometry = Geometry.of(model)
    dataset = DecodeDataset(sources, items, policy=o.policy, geometry=geometry, background=o.background,
                            exif_transpose=o.exif_transpose)
    batcher = Batcher(o.batch, o.max_pending)
    patch = int(getattr(model, "patch_size", 16))
    dim = int(model.embed_dim)
    max_res = getattr(model, "max_resolution", None)
    shard: dict[int, Result] = {}
    shard_bytes = 0
    pending_bytes = 0

    def est_bytes(size) -> int:
        per = int(getattr(model, "summary_dim", 3 * dim))
        if o.features == "pooled":
            per += dim
        elif o.features == "full":
            per += (size[0] // patch) * (size[1] // patch) * dim
        return 4 * per

    def run_batch(batch: list[Decoded]) -> None:
        nonlocal shard_bytes, pending_bytes
        outs = forward(model, [d.image for d in batch], feature_fmt=o.feature_fmt, features=o.features)
        for d, r in zip(batch, outs):
            res = Result(items[d.seq].id, d.original_size, d.model_size, r.summary, r.pooled, r.features)
            shard[d.seq] = res
            shard_bytes += res.nbytes()
            pending_bytes -= est_bytes(d.model_size)
        stats.batches += 1
        stats.embedded += len(batch)
        if progress is not None:
            progress.set_shards(output.shard_count)
            progress.update(embedded=len(batch))

    def write_computed() -> None:
        nonlocal shard_bytes
        if shard:
            output.add([shard[k] for k in sorted(shard)])
        shard.clear()
        shard_bytes = 0

    def close_shard() -> None:
        nonlocal pending_bytes
        for b in batcher.drain():
            run_batch(b)
        pending_bytes = 0
        write_computed()

    stop: StopRun | None = None
    # workers are forked before this process starts threads of its own (progress bar, shard writer)
    stream = DecodeStream(dataset, workers=o.workers, chunk=o.batch, prefetch=o.prefetch).start()
    if progress is not None and progress.t0 is None:
        progress.start()
    try:
        for d in stream:
            item = items[d.seq]
            if d.error is None and d.model_size is None:   # the main process decides the size
                try:
                    target = images.target_size(o.policy, d.original_size, model, what=item.id)
                    d = d._replace(image=images.resize(d.image, target), model_size=target)
                except images.ImageInputError as e:
                    d = d._replace(image=None, error=" ".join(str(e).split()), kind="size")
            if d.error is not None:
                if o.skip_unreadable:
                    note(f"skipped {d.error}")
                    output.skip(item.id, d.error)
                    stats.skipped += 1
                    if progress is not None:
                        progress.update(skipped=1)
                    continue
                stop = StopRun(d.error, item, d.kind or "unreadable")
                break
            if d.model_size != d.original_size:
                stats.resized += 1
            if max_res and max(d.model_size) > max_res:
                if not stats.too_big:
                    note(f"{item.id}: {images.fmt_size(d.model_size)} exceeds the model's max resolution {max_res}; "
                         f"this works but is slow and off the training distribution (consider --resolution preferred)")
                stats.too_big += 1
            pending_bytes += est_bytes(d.model_size)
            for b in batcher.add(d):
                run_batch(b)
            if len(shard) + len(batcher) >= o.shard_size or shard_bytes + pending_bytes >= o.shard_bytes:
                close_shard()
        close_shard()   # the images before a stop are embedded and written too
    except BaseException:
        try:
            write_computed()   # what the model already computed is kept
        except Exception:
            pass
        raise
    finally:
        stream.close()
        stats.seconds = time.monotonic() - t0
    if stop is not None:
        raise stop
    return stats
