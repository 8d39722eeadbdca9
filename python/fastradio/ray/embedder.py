"""``RadioEmbedder``: the stateful callable class a Ray Data pipeline gives to ``map_batches``.

One instance per Ray actor: the model loads once, in ``__init__``, after checks that fail in
seconds rather than after hours (an unknown model, a GPU actor that sees no GPU, a model that
cannot fit in the actor's GPU memory). Each call takes a batch (a dict of numpy arrays, Ray's
``batch_format="numpy"``) and returns one output row per input row, in input order.

Images come as an ``image`` column of encoded bytes (``ray.data.read_binary_files``, a Parquet
column of JPEG/PNG bytes) or of decoded HxWxC uint8 arrays (``ray.data.read_images``), or, for
``fastradio embed --engine ray``, as ``source``/``ref`` columns that a run's
:class:`fastradio.embed.Source` list reads. Decoding, the resolution policy and batching are the
one-machine pipeline's own (:mod:`fastradio.embed.loader`, :func:`fastradio.embed.forward`), so
the two engines compute the same numbers.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["RadioEmbedder", "BatchSource", "estimate_gpu_bytes", "FEATURES", "SUMMARY_DTYPES"]

FEATURES = ("none", "pooled", "full")
SUMMARY_DTYPES = {"float32": np.float32, "float16": np.float16}
#: columns an output row never copies from its input row: the pixels (heavy) and what produced them
NOT_PASSED_THROUGH = ("image", "source", "ref")
#: tests only: the first actor call to find this file (path in the env var) removes it and kills
#: its own process (SIGKILL-like ``os._exit``): a worker lost midway through a run
KILL_ENV = "FASTRADIO_RAY_TEST_KILL"


class BatchSource:
    """A :class:`fastradio.embed.Source`-like reader of the values of an ``image`` column: bytes
    of an encoded image, or a decoded (H, W), (H, W, 1|3|4) uint8 array."""

    kind = "image-column"

    def read(self, ref, *, background=(255, 255, 255), exif_transpose: bool = True) -> torch.Tensor:
        from PIL import Image, ImageOps

        from fastradio import images

        if isinstance(ref, (bytes, bytearray, memoryview)):
            try:
                with Image.open(io.BytesIO(bytes(ref))) as im:
                    im.seek(0)
                    im.load()
                    if exif_transpose:
                        im = ImageOps.exif_transpose(im) or im
                    t = images.pil_to_tensor(im, background=background)
            except images.ImageInputError:
                raise
            except Image.UnidentifiedImageError:
                raise images.ImageInputError("cannot decode (not an image format Pillow reads)") from None
            except Exception as e:  # truncated data, a decoder error, ...
                raise images.ImageInputError(f"cannot decode ({type(e).__name__}: {e})") from None
        elif isinstance(ref, np.ndarray):
            a = ref
            if a.ndim == 2:
                a = a[:, :, None]
            if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
                raise images.ImageInputError(f"expected an (H, W) or (H, W, 1|3|4) array, got shape {tuple(ref.shape)}")
            if a.dtype != np.uint8:
                raise images.ImageInputError(f"expected a uint8 array (as ray.data.read_images gives), got {a.dtype}")
            mode = {1: "L", 3: "RGB", 4: "RGBA"}[a.shape[2]]
            t = images.pil_to_tensor(Image.fromarray(np.ascontiguousarray(a if mode != "L" else a[:, :, 0]), mode),
                                     background=background)
        else:
            raise images.ImageInputError(f"expected image bytes or a uint8 array, got {type(ref).__name__}")
        if t.shape[1] < 1 or t.shape[2] < 1:
            raise images.ImageInputError(f"empty image ({images.fmt_size(t.shape[1:])})")
        return t


def estimate_gpu_bytes(cfg, dtype: torch.dtype, batch: int, size: Sequence[int]) -> int:
    """A model's GPU memory need, from its config (no weights read): the weights, the activations
    of one ``batch`` at ``size`` (the fp32 residual stream, the widest hidden layer, q/k/v, two
    spares) and ~1 GiB of CUDA context and allocator slack. An estimate meant to catch "cannot
    fit", not to plan to the last MiB."""
    b = torch.empty((), dtype=dtype).element_size()
    tokens = (int(size[0]) // 16) * (int(size[1]) // 16) + 8
    d, f = int(cfg.embed_dim), int(cfg.mlp_hidden)
    act = batch * tokens * (4 * d + (f + 5 * d) * b)
    return int(cfg.param_count()) * b + act + (1 << 30)


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def _assigned_gpus() -> float:
    """GPUs Ray gave this actor (0 outside Ray)."""
    try:
        import ray

        if ray.is_initialized():
            return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    except Exception:
        pass
    return 0.0


class RadioEmbedder:
    """Embed images in a Ray Data pipeline: ``ds.map_batches(RadioEmbedder, fn_constructor_kwargs=
    {"model": "C-RADIOv3-L"}, batch_size=64, num_gpus=1, concurrency=8)``.

    model, revision, dtype, backend, device: as :func:`fastradio.load` (device default: the
    actor's GPU when it has one, else cpu). load_kwargs (and unknown keyword arguments): passed
    to :func:`fastradio.load` unchanged (e.g. ``vitdet_window_size``).
    resolution: ``native`` (sizes as they are; mixed sizes run packed), ``nearest`` (each side
    to the nearest multiple of the patch step), ``preferred`` or ``(H, W)`` / ``"HxW"``.
    features: ``none``, ``pooled`` (mean of the patch features, (D,)) or ``full`` (every patch,
    ``feature_fmt`` NLC (h·w, D) or NCHW (D, h, w)). summary_dtype: ``float32`` or ``float16``.
    batch_size: images per model call (Ray's batches are cut into calls of this size by model
    size, as the one-machine pipeline does). decode_threads: threads decoding a batch (default:
    the CPUs Ray gave the actor). memory_limit_bytes: the GPU memory the model may use (default:
    the device's total; a MIG slice or a shared GPU may want less).

    Output columns: every input column except ``image`` (and ``source``/``ref``) unchanged (ids,
    paths), then ``summary`` (n, 3·D), ``pooled`` or ``features``, ``height``, ``width`` (as
    decoded), ``input_height``, ``input_width`` (as fed to the model), ``error``: ``""`` or why
    the image could not be used, and ``error_kind`` (``unreadable`` or ``size``); such a row has
    NaN in ``summary``/``pooled``, an empty ``features`` and -1 sizes (filter with
    ``ds.filter(lambda r: not r["error"])``)."""

    def __init__(self, model: str, *, revision: str | None = None, dtype: str | torch.dtype | None = None,
                 backend: str = "auto", device: str | None = None, resolution: Any = "nearest",
                 features: str = "none", feature_fmt: str = "NLC", summary_dtype: str = "float32",
                 batch_size: int = 32, background: Any = "white", exif_transpose: bool = True,
                 decode_threads: int | None = None, memory_limit_bytes: int | None = None,
                 sources: Sequence[Any] | None = None, load_kwargs: dict | None = None, **extra_load_kwargs):
        import fastradio
        from fastradio import images

        # 1. arguments (cheap, before anything loads)
        if features not in FEATURES:
            raise ValueError(f"RadioEmbedder: features: expected one of {', '.join(FEATURES)}, got {features!r}")
        if feature_fmt not in ("NLC", "NCHW"):
            raise ValueError(f"RadioEmbedder: feature_fmt: expected NLC or NCHW, got {feature_fmt!r}")
        if str(summary_dtype) not in SUMMARY_DTYPES:
            raise ValueError(f"RadioEmbedder: summary_dtype: expected float32 or float16, got {summary_dtype!r}")
        if int(batch_size) < 1:
            raise ValueError(f"RadioEmbedder: batch_size: expected >= 1, got {batch_size}")
        self.policy = resolution if isinstance(resolution, tuple) else images.parse_resolution(str(resolution))
        self.background = tuple(images.parse_background(background)) if isinstance(background, str) else tuple(background)
        self.features, self.feature_fmt, self.batch_size = features, feature_fmt, int(batch_size)
        self.summary_dtype = SUMMARY_DTYPES[str(summary_dtype)]
        self.exif_transpose = bool(exif_transpose)
        self.sources = list(sources) if sources is not None else None
        kwargs = dict(load_kwargs or {})
        kwargs.update(extra_load_kwargs)

        # 2. the device: a GPU actor that sees no GPU is a cluster set-up error, said now
        gpus = _assigned_gpus()
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            if gpus > 0 and not torch.cuda.is_available():
                raise RuntimeError(
                    f"RadioEmbedder: this Ray actor was given num_gpus={gpus:g}, but PyTorch sees no CUDA device "
                    f"(torch.cuda.is_available() is False; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}, "
                    f"torch {torch.__version__} built with CUDA {torch.version.cuda}); install a CUDA build of torch "
                    f"on the workers, or run CPU actors (num_gpus=0)")
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"RadioEmbedder: device {device!r} was asked for, but PyTorch sees no CUDA device "
                               f"on this worker")

        # 3. memory: from the config, before the weights are read
        if dev.type == "cuda" or memory_limit_bytes is not None:
            from fastradio import checkpoint, hub

            resolved = hub.resolve(model, revision=revision)
            cfg = checkpoint.parse_config(checkpoint.read_config(resolved.config_path), source=str(resolved.config_path))
            if isinstance(dtype, str):
                tdtype = getattr(torch, {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype))
            elif isinstance(dtype, torch.dtype):
                tdtype = dtype
            else:
                tdtype = torch.float32 if dev.type == "cpu" else torch.bfloat16
            # the fixed size, else the preferred one (native/nearest sizes are not known yet)
            size = self.policy if isinstance(self.policy, tuple) else tuple(cfg.preferred_resolution)
            need = estimate_gpu_bytes(cfg, tdtype, self.batch_size, size)
            have = memory_limit_bytes
            if have is None:
                have = torch.cuda.get_device_properties(dev).total_memory
            if need > have:
                raise RuntimeError(
                    f"RadioEmbedder: {model} ({cfg.param_count() / 1e6:.0f} M parameters, "
                    f"{str(tdtype).replace('torch.', '')}, batch {self.batch_size} at {size[0]}x{size[1]}) needs about "
                    f"{_gib(need)} of GPU memory, the actor's GPU has {_gib(have)}; use a smaller batch_size, "
                    f"a lower resolution, fp16/bf16, or a larger GPU")

        # 4. the model
        try:
            self.model = fastradio.load(model, device=dev, dtype=dtype, backend=backend, revision=revision, **kwargs)
        except TypeError as e:
            if kwargs and "unexpected keyword" in str(e):
                raise TypeError(f"RadioEmbedder: load kwargs {sorted(kwargs)}: fastradio.load {fastradio.__version__} "
                                f"does not take one of them ({e})") from None
            raise
        from fastradio.embed.loader import Geometry

        self.geometry = Geometry.of(self.model)
        threads = decode_threads or max(1, int(_assigned_cpus()))
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="fastradio-decode") \
            if threads > 1 else None

    # -- facts for the driver (settings of a sharded output) ---------------------------------------------

    def facts(self) -> dict:
        """What ``fastradio embed`` records about the model in its manifest."""
        m = self.model
        cfg = getattr(m, "config", None)
        src = getattr(m, "source", None)
        return {"dtype": str(m.dtype).replace("torch.", ""), "device": str(m.device),
                "backends": dict(getattr(getattr(m, "plan", None), "names", None) or {}),
                "embed_dim": int(m.embed_dim), "summary_dim": int(m.summary_dim),
                "patch_size": int(getattr(m, "patch_size", 16)), "min_resolution_step": int(m.min_resolution_step),
                "preferred_resolution": tuple(int(v) for v in m.preferred_resolution),
                "max_resolution": getattr(m, "max_resolution", None),
                "align_corners": getattr(cfg, "align_corners", None),
                "align_corners_source": str(getattr(cfg, "align_corners_source", None)),
                "source": {"source": str(getattr(src, "source", "")), "repo_id": getattr(src, "repo_id", None),
                           "folder": str(getattr(src, "folder", ""))} if src is not None else None}

    # -- one batch -----------------------------------------------------------------------------------------

    def __call__(self, batch: dict) -> dict:
        from fastradio import images
        from fastradio.embed.loader import Batcher, DecodeDataset
        from fastradio.embed.pipeline import forward
        from fastradio.embed.sources import Item

        _test_kill()
        n = len(next(iter(batch.values()))) if batch else 0
        if "image" in batch:
            sources = [BatchSource()]
            ids = batch["id"] if "id" in batch else batch["path"] if "path" in batch else None
            items = [Item(str(ids[k]) if ids is not None else f"row {k}", 0, batch["image"][k]) for k in range(n)]
        elif "ref" in batch and self.sources is not None:
            sources = self.sources
            items = [Item(str(batch["id"][k]), int(batch["source"][k]), batch["ref"][k]) for k in range(n)]
        else:
            raise ValueError(f"RadioEmbedder: expected an 'image' column (bytes or uint8 arrays), got columns "
                             f"{sorted(batch)}")
        ds = DecodeDataset(sources, items, policy=self.policy, geometry=self.geometry, background=self.background,
                           exif_transpose=self.exif_transpose)
        decoded = list(self._pool.map(ds.__getitem__, range(n))) if self._pool else [ds[k] for k in range(n)]
        good = []
        for k, d in enumerate(decoded):
            if d.error is None and d.model_size is None:   # the model's own rounding rule (Geometry declined)
                try:
                    target = images.target_size(self.policy, d.original_size, self.model, what=items[k].id)
                    d = d._replace(image=images.resize(d.image, target), model_size=target)
                except images.ImageInputError as e:
                    d = d._replace(image=None, error=" ".join(str(e).split()), kind="size")
                decoded[k] = d
            if d.error is None:
                good.append(d)
        if "image" in batch:   # BatchSource errors do not name the row; the one-machine ones do
            decoded = [d if d.error is None or d.error.startswith(items[d.seq].id + ":") else
                       d._replace(error=f"{items[d.seq].id}: {d.error}") for d in decoded]
        outs: dict[int, Any] = {}
        batcher = Batcher(self.batch_size, max_pending=max(len(good), 1))
        calls = [b for d in good for b in batcher.add(d)] + batcher.drain()
        for call in calls:
            for d, r in zip(call, forward(self.model, [d.image for d in call], feature_fmt=self.feature_fmt,
                                          features=self.features)):
                outs[d.seq] = r
        return self._columns(batch, decoded, outs, n)

    def _columns(self, batch: dict, decoded: list, outs: dict, n: int) -> dict:
        m = self.model
        s_dim, dim = int(m.summary_dim), int(m.embed_dim)
        res = {k: v for k, v in batch.items() if k not in NOT_PASSED_THROUGH}
        summary = np.full((n, s_dim), np.nan, dtype=self.summary_dtype)
        sizes = np.full((n, 4), -1, dtype=np.int32)
        pooled = np.full((n, dim), np.nan, dtype=self.summary_dtype) if self.features == "pooled" else None
        feats = []
        for k, d in enumerate(decoded):
            r = outs.get(k)
            if d.original_size is not None:
                sizes[k, :2] = d.original_size
            if r is not None:
                sizes[k, 2:] = d.model_size
                summary[k] = r.summary.numpy()
                if pooled is not None:
                    pooled[k] = r.pooled.numpy()
            if self.features == "full":
                empty = np.zeros((0, dim) if self.feature_fmt == "NLC" else (dim, 0, 0), np.float32)
                feats.append(r.features.numpy() if r is not None else empty)
        res.update(summary=summary, height=sizes[:, 0], width=sizes[:, 1], input_height=sizes[:, 2],
                   input_width=sizes[:, 3], error=np.array([d.error or "" for d in decoded], dtype=object),
                   error_kind=np.array([(d.kind or "unreadable") if d.error else "" for d in decoded], dtype=object))
        if pooled is not None:
            res["pooled"] = pooled
        if self.features == "full":
            if feats and len({f.shape for f in feats}) == 1:
                res["features"] = np.stack(feats)
            else:
                arr = np.empty(n, dtype=object)
                arr[:] = feats
                res["features"] = arr
        return res


def _assigned_cpus() -> float:
    try:
        import ray

        if ray.is_initialized():
            return float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))
    except Exception:
        pass
    return 1.0


def _test_kill() -> None:
    path = os.environ.get(KILL_ENV)
    if not path:
        return
    claim = f"{path}.{os.getpid()}"
    try:
        os.rename(path, claim)   # atomic: exactly one actor wins
    except OSError:
        return
    os._exit(137)
