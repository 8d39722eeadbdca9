"""``fastradio embed --engine ray``: the one-machine run with Ray actors in place of the local model.

What stays in the driver (the process that runs ``fastradio embed``): listing the inputs, the
output folder (lock, ``--resume``, the manifest) and cutting and writing shards, all the code of
:mod:`fastradio.embed`, so the output is the same folder either engine writes and either engine
resumes. What moves to the cluster: reading, decoding, resizing and the model, in
:class:`~fastradio.ray.embedder.RadioEmbedder` actors (``--num-workers`` of them, each with
``--gpus-per-worker`` GPUs), fed by Ray Data with the run's items as rows.

Rows come back in item order (Ray Data's ``preserve_order``), so shards hold the same images as
a one-machine run's and a stop at a bad image writes exactly the images before it. A worker that
dies is restarted by Ray and its batch is computed again; rows are keyed by image id and a
repeated id is dropped here, so a retry can never put an image in the output twice. A shard is
part of the output exactly when the manifest lists it (as in the one-machine path).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

import torch

__all__ = ["EngineError", "ModelFacts", "connect", "probe", "run"]


class EngineError(RuntimeError):
    """A problem found before the run (cluster resources, the model on a worker); one line."""


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise EngineError("--engine ray needs Ray Data, which is not installed: pip install 'fastradio[ray]' "
                          "(or pip install 'ray[data]')") from e
    return ray


def connect(address: str | None, *, quiet: bool = False) -> bool:
    """Join the cluster at ``address`` (None: ``RAY_ADDRESS`` or a new local one). Returns
    whether this call started Ray (then :func:`run`'s caller shuts it down)."""
    ray = _require_ray()
    if ray.is_initialized():
        return False
    kw = {"log_to_driver": not quiet}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # a new local cluster for one run: no web server (Ray refuses the argument when joining one)
        kw["include_dashboard"] = False
    try:
        ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise EngineError(f"--address {address}: cannot connect to a Ray cluster ({_one_line(e)})") from e
    return True


def check_resources(num_workers: int, gpus_per_worker: float, cpus_per_worker: float) -> None:
    """Refuse a request the cluster can never place (its actors would wait forever)."""
    ray = _require_ray()
    total = ray.cluster_resources()
    for what, per, have in (("GPU", gpus_per_worker, total.get("GPU", 0.0)), ("CPU", cpus_per_worker, total.get("CPU", 0.0))):
        if per and num_workers * per > have:
            opt = "--gpus-per-worker" if what == "GPU" else "CPUs per worker"
            raise EngineError(f"--num-workers {num_workers} x {opt} {per:g} needs {num_workers * per:g} {what}(s), "
                              f"the Ray cluster has {have:g}" + (" (run CPU workers with --gpus-per-worker 0)"
                                                                 if what == "GPU" and not have else ""))


class ModelFacts:
    """What the CLI needs of a model it does not load itself (the workers do): the attributes of
    a :class:`fastradio.RadioModel` used for the manifest and the resolution checks."""

    def __init__(self, facts: dict):
        from fastradio.embed.loader import Geometry

        self.facts = dict(facts)
        self.dtype = getattr(torch, facts["dtype"])
        self.device = facts["device"]
        self.embed_dim, self.summary_dim = facts["embed_dim"], facts["summary_dim"]
        self.patch_size, self.min_resolution_step = facts["patch_size"], facts["min_resolution_step"]
        self.preferred_resolution = tuple(facts["preferred_resolution"])
        self.max_resolution = facts["max_resolution"]
        self.plan = type("Plan", (), {"names": facts["backends"]})()
        self.config = type("Config", (), {"align_corners": facts["align_corners"],
                                          "align_corners_source": facts["align_corners_source"]})()
        src = facts["source"]
        # a ResolvedModel's fields the manifest's model_source takes (where the worker found the weights)
        self.source = type("Source", (), dict(src))() if isinstance(src, dict) else src
        self._geometry = Geometry(self.min_resolution_step, self.preferred_resolution)

    def get_nearest_supported_resolution(self, h: int, w: int):
        return self._geometry.get_nearest_supported_resolution(h, w)


def _cause(e: BaseException) -> BaseException:
    """The user's exception inside a Ray error (RayTaskError / RayActorError wrap it)."""
    seen = 0
    while seen < 5 and getattr(e, "cause", None) is not None and e.cause is not e:
        e, seen = e.cause, seen + 1
    return e


def _probe_fn(kwargs: dict) -> dict:
    from fastradio.ray.embedder import RadioEmbedder

    return RadioEmbedder(**kwargs).facts()


def probe(ctor: dict, *, gpus_per_worker: float, cpus_per_worker: float) -> ModelFacts:
    """Build one :class:`RadioEmbedder` on a worker with a worker's resources, before the run:
    an unknown model, a GPU worker without a GPU, a model too large for the GPU fail here, in
    seconds, not when the pipeline starts its actors. Returns what the manifest records."""
    ray = _require_ray()
    task = ray.remote(_probe_fn).options(num_gpus=gpus_per_worker, num_cpus=cpus_per_worker, max_retries=0)
    try:
        return ModelFacts(ray.get(task.remote(ctor)))
    except ray.exceptions.RayError as e:
        c = _cause(e)
        msg = _one_line(c if c is not e else e).split(" Traceback")[0]
        raise EngineError(f"on a Ray worker: {type(c).__name__}: {msg}") from None


def _slim(source):
    """A source as the workers need it: file sources read by ``ref`` alone, so their list of every
    path (millions of them, copied into each actor) stays here."""
    import copy

    s = copy.copy(source)
    if isinstance(getattr(s, "paths", None), list):
        s.paths = []
    return s


def _block(items, start: int, stop: int):
    """Rows ``start:stop`` of the run as one Arrow table (one Ray block): seq, id, source, ref."""
    import pyarrow as pa

    part = items[start:stop]
    return pa.table({"seq": pa.array(range(start, stop), pa.int64()), "id": [it.id for it in part],
                     "source": pa.array([int(it.source) for it in part], pa.int32()), "ref": [it.ref for it in part]})


def run(sources: Sequence[Any], items: Sequence[Any], output, *, options, ctor: dict, num_workers: int,
        gpus_per_worker: float, cpus_per_worker: float, max_resolution: int | None = None, progress=None,
        show_bars: bool = True, note: Callable[[str], None] = lambda s: None):
    """Embed ``items`` (of ``sources``) on the Ray cluster into ``output``, as
    :func:`fastradio.embed.run` does locally (same :class:`~fastradio.embed.Options`, same
    :class:`~fastradio.embed.Stats`, same :class:`~fastradio.embed.StopRun`). ``ctor``: the
    :class:`RadioEmbedder` model arguments (model, revision, dtype, backend, load_kwargs)."""
    ray = _require_ray()
    from fastradio.embed import Result, Stats, StopRun
    from fastradio.ray.embedder import RadioEmbedder

    o = options
    stats = Stats()
    t0 = time.monotonic()
    n = len(items)
    if n == 0:
        return stats
    # blocks of whole model batches (so both engines batch alike): a few per worker to balance the
    # load, at most ~1024 rows (a block's results wait in order in the driver's memory)
    per_block = o.batch * max(1, min(-(-n // (o.batch * 4 * max(1, num_workers))), 1024 // o.batch))
    blocks = [_block(items, i, min(i + per_block, n)) for i in range(0, n, per_block)]
    # from_blocks keeps our blocks as they are and reads their metadata here; from_arrow would start
    # a Ray task per block just for that (and may re-split them)
    make = getattr(ray.data, "from_blocks", None) or ray.data.from_arrow
    # a Dataset keeps a copy of the context it was made under: set ours for it, leave the caller's
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    try:
        ctx.execution_options.preserve_order = True   # rows in item order: shards as the one-machine path cuts them
        ctx.enable_progress_bars = bool(show_bars)
        ds = make(blocks)
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
    kwargs = dict(ctor, sources=[_slim(s) for s in sources], resolution=o.policy, features=o.features, feature_fmt=o.feature_fmt,
                  batch_size=o.batch, background=tuple(o.background), exif_transpose=o.exif_transpose)
    # Ray Data restarts a dead actor and retries its batch (max_restarts / max_task_retries -1 by default)
    out = ds.map_batches(RadioEmbedder, fn_constructor_kwargs=kwargs, batch_size=o.batch, batch_format="numpy",
                         compute=ray.data.ActorPoolStrategy(size=num_workers), num_gpus=gpus_per_worker,
                         num_cpus=cpus_per_worker)

    shard: list = []
    shard_bytes = 0
    seen: set[str] = set()
    repeated = 0
    stop = None
    if progress is not None and progress.t0 is None:
        progress.start()

    def close_shard():
        nonlocal shard_bytes
        if shard:
            output.add(list(shard))
            if progress is not None:
                progress.set_shards(output.shard_count)
        shard.clear()
        shard_bytes = 0

    try:
        for b in out.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            embedded = 0
            for k in range(len(b["id"])):
                id_ = str(b["id"][k])
                if id_ in seen:   # a retried batch's rows: the first copy is kept
                    repeated += 1
                    continue
                seen.add(id_)
                err = str(b["error"][k])
                if err:
                    if o.skip_unreadable:
                        note(f"skipped {err}")
                        output.skip(id_, err)
                        stats.skipped += 1
                        if progress is not None:
                            progress.update(skipped=1)
                        continue
                    stop = StopRun(err, items[int(b["seq"][k])], str(b["error_kind"][k]) or "unreadable")
                    break
                size = (int(b["height"][k]), int(b["width"][k]))
                msize = (int(b["input_height"][k]), int(b["input_width"][k]))
                pooled = torch.from_numpy(b["pooled"][k].copy()) if "pooled" in b else None
                feats = torch.from_numpy(b["features"][k].copy()) if "features" in b else None
                r = Result(id_, size, msize, torch.from_numpy(b["summary"][k].copy()), pooled, feats)
                if msize != size:
                    stats.resized += 1
                if max_resolution and max(msize) > max_resolution:
                    stats.too_big += 1
                shard.append(r)
                shard_bytes += r.nbytes()
                embedded += 1
                if len(shard) >= o.shard_size or shard_bytes >= o.shard_bytes:
                    close_shard()
            stats.embedded += embedded
            if progress is not None and embedded:
                progress.update(embedded=embedded)
            if stop is not None:
                break
        close_shard()   # the images before a stop are written too
    except BaseException:
        try:
            close_shard()
        except Exception:
            pass
        raise
    finally:
        stats.seconds = time.monotonic() - t0
    if repeated:
        note(f"dropped {repeated} repeated row(s) of retried Ray tasks (each image is stored once)")
    if stop is not None:
        raise stop
    return stats
