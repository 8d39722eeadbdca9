"""The ``fastradio`` command line (also ``python -m fastradio``).

Commands::

    fastradio info [--json]                   versions, build, devices, backend x op support
    fastradio models [--all] [--json]         the known models
    fastradio embed IMAGE_OR_DIR ... --model NAME_OR_PATH [options]
    fastradio embed --file-list paths.txt --model NAME --out emb/ [--resume] [--format parquet]
    fastradio embed --samples --model synthetic:C-RADIOv2-B     (no download, random weights)

``embed`` options: inputs (files, folders, ``--recursive``, ``--file-list FILE`` (repeatable, ``-``
= stdin), ``--samples``); ``--out FOLDER`` (default ``embeddings``) or ``--out FILE.safetensors``;
``--format {safetensors,parquet}``; ``--features {none,pooled,full}`` (``--no-features`` = none);
``--feature-fmt {NLC,NCHW}``; ``--shard-size N`` (default 1000), ``--shard-mb MB`` (default 1024);
``--resume``, ``--overwrite``; ``--batch N`` (default 8); ``--workers N`` (loader processes; default
one per CPU less one, at most 8; 0 = in-process); ``--log-interval SECONDS`` (default 10);
``--resolution {native,nearest,preferred,HxW}`` (default ``nearest``); ``--device``, ``--dtype``,
``--backend``, ``--revision``; ``--pos-align-corners {true,false}`` (the position
resize of a checkpoint that does not carry it, see :mod:`fastradio.align`); ``--vitdet-window-size WS``
(ViTDet windowed attention, DESIGN.md decision 26); ``--background COLOUR`` (for transparent pixels; default white),
``--no-exif-transpose``; ``--skip-unreadable``; ``--pca DIR`` (feature pictures, with ``--pca-joint``
and ``--side-by-side``: :mod:`fastradio.embed.pictures`); ``--quiet``, ``--debug``; ``--engine {local,ray}``
with ``--address``, ``--num-workers``, ``--gpus-per-worker`` (:mod:`fastradio.ray.engine`). Image reading and
resizing are described in :mod:`fastradio.images`, the pipeline in :mod:`fastradio.embed`.

Resolution policies: ``native`` feeds each image at its own size, which must be a multiple of
the model's step (16); ``nearest`` resizes each image to
``model.get_nearest_supported_resolution(h, w)`` (a no-op for sizes that are already multiples);
``preferred`` resizes every image to ``model.preferred_resolution`` (768x768 for C-RADIOv2, 512x512
for C-RADIOv3/v4);
``HxW`` resizes every image to that height x width. Resizing is bicubic with antialiasing.

Pipeline (:mod:`fastradio.embed`): the inputs are listed (not opened) up front; loader worker
processes decode each image completely (a truncated file fails there), convert it to RGB and resize
it; the main process groups images of one model size into (B, 3, H, W) batches and packs the rest
(mixed sizes) into lists, which the model takes without padding; results are cut into shards of
``--shard-size`` images in input order. Results do not depend on the batching or the workers.

Unreadable images (truncated, corrupt, missing, or a size ``native`` cannot take) are found when a
worker reaches them, not by a pre-pass. Without ``--skip-unreadable`` the run stops at the first one
(exit 2, naming it and why): the images before it are embedded and written, the model never sees it
or anything after it. With ``--skip-unreadable`` each is reported (a note on stderr) and recorded in
the output (``skipped``: id and reason).

Output folder (default)
-----------------------
``FOLDER/shard-00000.safetensors`` (or ``.parquet``), ``shard-00001...``, written as they fill, and
``FOLDER/_manifest.json``, rewritten after each shard; every file goes through a temporary name,
fsync and rename. Layouts of the shards and the manifest: :mod:`fastradio.embed.store`. A run killed
at any moment loses at most the shard it was filling; ``--resume`` verifies the listed shards (size,
sha256, counts), deletes unlisted or damaged ones, and embeds only the images not in a verified
shard; it refuses when the model, revision, dtype, resolution policy, format, features or pixel
settings differ (naming each difference). An existing run is never replaced without ``--overwrite``.
Ctrl-C writes what was computed and records the run as interrupted (exit 130). Read back with
``fastradio.embed.load(FOLDER)``.

Output file (``--out NAME.safetensors``)
----------------------------------------
The single-file format of earlier versions: everything is kept in memory (float32) until the end,
then written atomically (temporary file + rename); a run that stops writes nothing. Tensors, all
float32 on the CPU, one set per image ``i`` = 0, 1, ... in the order of the ``images`` metadata
entry:

- ``summary/<i>``: (summary_dim,) the summary vector (the CLS tokens of the model's summary slots
  concatenated: 3·D for C-RADIOv2/v3, 2·D for C-RADIOv4);
- ``features/<i>`` (``--features full``): the patch features, (h·w, D) for ``--feature-fmt NLC``
  (row-major patch grid) or (D, h, w) for ``NCHW``, where (h, w) = model size / patch size;
- ``pooled/<i>`` (``--features pooled``): (D,) the mean of the patch features.

Header metadata (safetensors allows only strings; lists and dicts are JSON-encoded):

=====================  ===========================================================================
key                    value
=====================  ===========================================================================
format                 ``fastradio.embeddings``
format_version         ``1``
fastradio_version      package version that wrote the file
model                  ``--model`` as given
model_source           JSON {kind: local|cache|download|synthetic, repo_id, folder}: where the weights came from
synthetic              ``true`` when the weights are random (``synthetic:`` models), else ``false``
dtype                  compute dtype of the model (the stored tensors are always float32)
device                 device the model ran on
backends               JSON object op → backend that ran it
embed_dim              D
summary_dim            3·D (C-RADIOv4: 2·D)
patch_size             16
align_corners          the position resize used (``true``/``false``) and, in ``align_corners_source``, what decided it
features               ``none``, ``pooled`` or ``full``
feature_fmt            ``NLC`` or ``NCHW`` with ``--features full``, else ``none``
resolution             the policy: ``native``, ``nearest``, ``preferred`` or ``HxW``
background             R,G,B used under transparent pixels
exif_transpose         ``true``/``false``
count                  number of images
images                 JSON list of image paths, as given / expanded (index i ↔ tensors ``/<i>``)
original_sizes         JSON list of [height, width] as read (after EXIF orientation)
model_sizes            JSON list of [height, width] fed to the model
skipped                JSON list of {id, reason} (``--skip-unreadable``)
=====================  ===========================================================================

:func:`read_embeddings` loads a file back with the JSON entries decoded.

Progress goes to stderr: "loading NAME ..." / "loaded NAME in X s" around the model load (for
``synthetic:`` names, that the weights are generated), then a tqdm bar when stderr is a terminal,
else log lines every ``--log-interval`` seconds with counts, images/s and the ETA, and a final
``done:`` line. ``--quiet`` keeps only warnings and errors.

Exit codes: 0 success; 1 failure while running (message, plus a traceback with ``--debug``);
2 usage or input errors (bad option, missing file, unreadable image, unsupported size under
``native``, model not found, backend refused, output folder clash, --resume settings differ),
reported in one line without a traceback unless ``--debug``; 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from fastradio._io import atomic_path

__all__ = ["main", "build_parser", "collect_info", "format_info", "embed_images", "write_embeddings",
           "read_embeddings", "UsageError", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "fastradio.embeddings"
FORMAT_VERSION = "1"
DEFAULT_OUT = "embeddings"
DEFAULT_BATCH = 8
DEFAULT_SHARD_SIZE = 1000
DEFAULT_SHARD_MB = 1024
DEFAULT_LOG_INTERVAL = 10.0
_PROG = "fastradio"

_DTYPES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}
_INFO_DTYPES = ("float32", "bfloat16", "float16")
_JSON_META = ("backends", "images", "original_sizes", "model_sizes", "skipped")


class UsageError(Exception):
    """A usage or input error: one line, exit code 2."""


# -- small output helpers ----------------------------------------------------------------------------

class _Console:
    """stderr notes/warnings that do not tear a running progress bar."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar = None
        self.progress = None   # a fastradio.embed.Progress whose bar (if any) notes must not tear

    def _write(self, text: str) -> None:
        if self.bar is not None or getattr(self.progress, "bar", None) is not None:
            from tqdm import tqdm
            tqdm.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if not self.quiet:
            self._write(f"note: {text}")

    def info(self, text: str) -> None:
        if not self.quiet:
            self._write(text)

    def warn(self, text: str) -> None:
        self._write(f"warning: {text}")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


# -- info --------------------------------------------------------------------------------------------

def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _extension_info() -> dict:
    try:
        mod = importlib.import_module("fastradio._C")
    except ImportError as e:
        return {"available": False, "build_info": None, "error": f"extension not built: {_one_line(e)}"}
    except Exception as e:  # a broken build (missing symbol, bad ABI): say so, do not crash
        return {"available": False, "build_info": None,
                "error": f"extension failed to import: {type(e).__name__}: {_one_line(e)}"}
    try:
        bi = mod.build_info()
    except Exception as e:
        return {"available": False, "build_info": None,
                "error": f"extension imported but build_info() failed: {type(e).__name__}: {_one_line(e)}"}
    return {"available": True, "build_info": _jsonable(bi), "error": None}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _cuda_info(torch) -> tuple[dict, list[dict]]:
    devices = []
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return {"available": False, "device_count": 0,
                "reason": f"torch {torch.__version__} was built without CUDA"}, devices
    try:
        n = torch.cuda.device_count()
    except Exception as e:
        return {"available": False, "device_count": 0, "reason": _one_line(e)}, devices
    if not torch.cuda.is_available() or n == 0:
        reason = "no CUDA device visible"
        try:
            torch.cuda.init()
        except Exception as e:
            reason = _one_line(e)
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        if cvd is not None:
            reason += f" (CUDA_VISIBLE_DEVICES={cvd!r})"
        return {"available": False, "device_count": 0, "reason": reason}, devices
    for i in range(n):
        try:
            p = torch.cuda.get_device_properties(i)
            devices.append({"device": f"cuda:{i}", "type": "cuda", "name": p.name,
                            "capability": [p.major, p.minor], "sm": f"sm_{p.major}{p.minor}",
                            "total_memory_bytes": int(p.total_memory),
                            "multiprocessors": int(p.multi_processor_count)})
        except Exception as e:
            devices.append({"device": f"cuda:{i}", "type": "cuda", "name": None, "error": _one_line(e)})
    return {"available": True, "device_count": n, "reason": None}, devices


def collect_info() -> dict:
    """Everything ``fastradio info`` reports, as JSON-compatible data."""
    import torch

    import fastradio
    from fastradio import backends, ops

    cuda, cuda_devices = _cuda_info(torch)
    devices = [{"device": "cpu", "type": "cpu", "name": _cpu_name(), "threads": torch.get_num_threads()}]
    devices += cuda_devices
    table, auto = [], []
    for dev in devices:
        if dev.get("error"):
            continue
        d = torch.device(dev["device"])
        for dt_name in _INFO_DTYPES:
            dt = getattr(torch, dt_name)
            for op in ops.OPS:
                for b in backends.BACKENDS:
                    try:
                        reasons = [str(r) for r in backends.refusals(b, op, d, dt)]
                    except Exception as e:  # a backend's supports() must never break `info`
                        reasons = [f"supports() raised {type(e).__name__}: {_one_line(e)}"]
                    table.append({"device": dev["device"], "dtype": dt_name, "backend": b, "op": op,
                                  "usable": not reasons, "reasons": reasons})
                try:
                    chosen, err = backends.select(op, "auto", d, dt), None
                except Exception as e:
                    chosen, err = None, _one_line(e)
                auto.append({"device": dev["device"], "dtype": dt_name, "op": op, "backend": chosen, "error": err})
    pkgs = {name: _version(dist) for name, dist in
            (("numpy", "numpy"), ("pillow", "pillow"), ("safetensors", "safetensors"),
             ("huggingface_hub", "huggingface_hub"), ("tqdm", "tqdm"))}
    return {
        "fastradio": {"version": fastradio.__version__, "location": str(Path(fastradio.__file__).parent)},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "platform": platform.platform(),
        "torch": {"version": torch.__version__, "cuda": torch.version.cuda,
                  "cudnn": (torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)},
        "triton": {"version": _version("triton")},
        "packages": pkgs,
        "extension": _extension_info(),
        "environment": {k: os.environ[k] for k in (backends.ENV_VAR, "CUDA_VISIBLE_DEVICES", "TRITON_INTERPRET")
                        if k in os.environ},
        "cuda": cuda,
        "devices": devices,
        "backends": table,
        "auto": auto,
    }


def _status_text(by_dtype: dict[str, list[str]]) -> str:
    """{dtype: reasons} → "usable (float32, bfloat16); float16: reason" (collapsed)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for dt, reasons in by_dtype.items():
        groups.setdefault(tuple(reasons), []).append(dt)
    ok = groups.pop((), None)
    if not groups:
        return "usable"
    if ok is None and len(groups) == 1:
        return "no: " + "; ".join(next(iter(groups)))
    parts = [f"usable ({', '.join(ok)})"] if ok else []
    parts += [f"no for {', '.join(dts)}: {'; '.join(reasons)}" for reasons, dts in groups.items()]
    return " | ".join(parts)


def format_info(info: dict) -> str:
    """Human-readable rendering of :func:`collect_info`."""
    lines = []
    fr, py, t = info["fastradio"], info["python"], info["torch"]
    lines.append(f"fastradio   {fr['version']}  ({fr['location']})")
    lines.append(f"python      {py['version']} {py['implementation']}  ({py['executable']})")
    lines.append(f"platform    {info['platform']}")
    lines.append(f"torch       {t['version']}  (CUDA {t['cuda'] or 'none'}, cuDNN {t['cudnn'] or 'none'})")
    lines.append(f"triton      {info['triton']['version'] or 'not installed'}")
    lines.append("packages    " + ", ".join(f"{k} {v or 'not installed'}" for k, v in info["packages"].items()))
    ext = info["extension"]
    if ext["available"]:
        bi = ext["build_info"]
        if isinstance(bi, dict):
            lines.append("_C          built")
            for k, v in bi.items():
                lines.append(f"              {k}: {json.dumps(v) if not isinstance(v, str) else v}")
        else:
            lines.append(f"_C          built: {bi}")
    else:
        lines.append(f"_C          {ext['error']}")
    for k, v in info["environment"].items():
        lines.append(f"env         {k}={v}")
    lines.append("")
    lines.append("devices")
    for d in info["devices"]:
        if d["type"] == "cpu":
            lines.append(f"  cpu       {d['name']} ({d['threads']} threads)")
        elif d.get("error"):
            lines.append(f"  {d['device']:<9} error: {d['error']}")
        else:
            gib = d["total_memory_bytes"] / 2**30
            lines.append(f"  {d['device']:<9} {d['name']}, {d['sm']} (compute capability "
                         f"{d['capability'][0]}.{d['capability'][1]}), {gib:.1f} GiB, {d['multiprocessors']} SMs")
    if not info["cuda"]["available"]:
        lines.append(f"  cuda      unavailable: {info['cuda']['reason']}")
    ops_order = list(dict.fromkeys(r["op"] for r in info["backends"]))
    op_width = max((len(op) for op in ops_order), default=0)
    for dev in dict.fromkeys(r["device"] for r in info["backends"]):
        lines.append("")
        lines.append(f"backends on {dev}")
        rows = [r for r in info["backends"] if r["device"] == dev]
        for b in dict.fromkeys(r["backend"] for r in rows):
            per_op = {op: {r["dtype"]: r["reasons"] for r in rows if r["backend"] == b and r["op"] == op}
                      for op in ops_order}
            texts = {op: _status_text(v) for op, v in per_op.items()}
            if len(set(texts.values())) == 1:
                lines.append(f"  {b:<10} every op: {next(iter(texts.values()))}")
            else:
                lines.append(f"  {b}")
                for op, txt in texts.items():
                    lines.append(f"    {op:<{op_width}} {txt}")
        autos = [a for a in info["auto"] if a["device"] == dev]
        by_text: dict[str, list[str]] = {}
        for dt in dict.fromkeys(a["dtype"] for a in autos):
            sel = [a for a in autos if a["dtype"] == dt]
            chosen = {a["backend"] for a in sel}
            if len(chosen) == 1 and None not in chosen:
                text = f"{chosen.pop()} for every op"
            else:
                text = ", ".join(f"{a['op']}→{a['backend']}" if a["backend"] else f"{a['op']}→none ({a['error']})"
                                 for a in sel)
            by_text.setdefault(text, []).append(dt)
        for text, dts in by_text.items():
            lines.append(f"  auto ({', '.join(dts)}): {text}")
    return "\n".join(lines)


def cmd_info(args) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_info(info))
    return 0


# -- models ------------------------------------------------------------------------------------------

def _record_dict(r: Any) -> dict:
    if hasattr(r, "_asdict"):
        d = dict(r._asdict())
    elif dataclasses.is_dataclass(r):
        d = dataclasses.asdict(r)
    elif isinstance(r, dict):
        d = dict(r)
    else:
        d = dict(vars(r))
    return _jsonable(d)


def cmd_models(args) -> int:
    import fastradio

    records = [_record_dict(r) for r in fastradio.list_models(include_test=args.all)]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    head = (f"{'name':<16} {'hub repo':<23} {'params':>13} {'width':>5} {'depth':>5} {'heads':>5} {'mlp':>5} "
            f"{'prefix':>6} {'summary':>7} {'preferred':>9} {'max':>5} {'resize':<14}")
    print(head)
    for r in records:
        params = r.get("params")
        ps = f"{params:,}" if isinstance(params, int) else "?"
        pref = r.get("preferred_resolution")
        pref_s = f"{pref[0]}x{pref[1]}" if isinstance(pref, list) and len(pref) == 2 else str(pref)
        ac = r.get("align_corners", True)
        resize = {True: "corners=True", False: "corners=False"}.get(ac, "per revision")
        print(f"{r.get('name', '?'):<16} {r.get('hub_repo') or '(synthetic only)':<23} {ps:>13} "
              f"{r.get('embed_dim', '?'):>5} {r.get('depth', '?'):>5} {r.get('num_heads', '?'):>5} "
              f"{r.get('mlp_hidden', '?'):>5} {r.get('num_prefix_tokens', '?'):>6} {r.get('summary_dim', '?'):>7} "
              f"{pref_s:>9} {r.get('max_resolution', '?'):>5} {resize:<14}")
    print("\nresize: the position-table interpolation (align_corners); 'per revision' is read from the "
          "checkpoint's bundled vit_patch_generator.py (as text).")
    print("Any name also loads as synthetic:<name> (random weights, offline, for testing only).")
    return 0


# -- embed -------------------------------------------------------------------------------------------

@dataclasses.dataclass
class EmbedItem:
    """One image of an ``embed`` run."""

    path: Path
    original_size: tuple[int, int]
    model_size: tuple[int, int] = (0, 0)


def plan_batches(sizes: Sequence[tuple[int, int]], batch: int) -> list[list[int]]:
    """Consecutive runs of at most ``batch`` indices."""
    return [list(range(i, min(i + batch, len(sizes)))) for i in range(0, len(sizes), batch)]


def embed_images(model, items: Sequence[EmbedItem], *, batch: int = DEFAULT_BATCH, feature_fmt: str = "NLC",
                 features: bool = True, read: Callable[[Path], "Any"] | None = None,
                 on_done: Callable[[int], None] | None = None,
                 on_unreadable: Callable[[EmbedItem, Exception], bool] | None = None) -> tuple[dict, list[EmbedItem]]:
    """Run ``model`` over ``items`` (their ``model_size`` already decided).

    Returns (tensors, done): ``tensors`` maps ``summary/<i>`` and ``features/<i>`` to float32 CPU
    tensors for the i-th item of ``done`` (the items actually embedded, in order; an item is
    dropped only when ``on_unreadable`` returns True for it, else its error propagates).
    ``read(path)`` returns a (3, H, W) float tensor (default :func:`fastradio.images.read_image`).
    """
    import torch

    from . import images

    read = read or images.read_image
    tensors: dict = {}
    done: list[EmbedItem] = []
    device = model.device
    for idx in plan_batches([it.model_size for it in items], batch):
        xs, its = [], []
        for k in idx:
            it = items[k]
            try:
                x = read(it.path)
            except images.ImageInputError as e:
                if on_unreadable is not None and on_unreadable(it, e):
                    if on_done:
                        on_done(1)
                    continue
                raise
            xs.append(images.resize(x, it.model_size))
            its.append(it)
        if not xs:
            continue
        with torch.inference_mode():
            if len({tuple(x.shape) for x in xs}) == 1:
                out = model(torch.stack(xs).to(device), feature_fmt=feature_fmt)
                results = [(out[0][j], out[1][j]) for j in range(len(xs))]
            else:
                outs = model([x.to(device) for x in xs], feature_fmt=feature_fmt)
                results = [(o[0][0], o[1][0]) for o in outs]
        for it, (s, f) in zip(its, results):
            i = len(done)
            tensors[f"summary/{i}"] = s.detach().to("cpu", torch.float32).clone().contiguous()
            if features:
                tensors[f"features/{i}"] = f.detach().to("cpu", torch.float32).clone().contiguous()
            done.append(it)
        if on_done:
            on_done(len(its))
    return tensors, done


def write_embeddings(path: str | os.PathLike, tensors: dict, metadata: dict[str, Any]) -> None:
    """Write a safetensors file atomically (temporary file in the same folder, then rename).
    Non-string metadata values are JSON-encoded."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {str(k): (v if isinstance(v, str) else json.dumps(_jsonable(v))) for k, v in metadata.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o666 & ~_umask())  # save_file creates it 0600; give it a normal file's mode


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_embeddings(path: str | os.PathLike) -> tuple[dict, dict]:
    """Load an ``embed`` output: (tensors, metadata) with the JSON metadata entries decoded and
    ``count``, ``embed_dim``, ``summary_dim``, ``patch_size`` as ints."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    for k in _JSON_META:
        if k in meta:
            meta[k] = json.loads(meta[k])
    for k in ("count", "embed_dim", "summary_dim", "patch_size"):
        if k in meta:
            meta[k] = int(meta[k])
    for k in ("synthetic", "exif_transpose", "align_corners"):
        if k in meta:
            meta[k] = meta[k] == "true"
    return tensors, meta


def _parse_device(text: str | None):
    import torch

    if text is None:
        return None
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device: expected cpu, cuda or cuda:N, got {text!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: CUDA is not available here (see `fastradio info`)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif dev.type != "cpu":
        raise UsageError(f"--device: expected cpu, cuda or cuda:N, got {text!r}")
    return dev


def _is_synthetic(name: str) -> bool:
    return str(name).strip().lower().startswith("synthetic:")


def _synthetic_hint(name: str) -> str:
    from .configs import resolve_known_model

    km = None
    try:
        km = resolve_known_model(str(name))
    except Exception:
        pass
    target = km.name if km is not None else "C-RADIOv2-B"
    return (f"to try fastradio without the real weights, use --model synthetic:{target} "
            f"(random weights, meaningless embeddings)")


def _describe_source(model, name: str) -> str:
    """Where the weights came from: JSON {kind, repo_id, folder} for a resolved model (see
    ``fastradio.hub.ResolvedModel``), else the name."""
    src = getattr(model, "source", None)
    if src is None:
        return str(name)
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if hasattr(src, "folder") and hasattr(src, "source"):
        return json.dumps({"kind": str(src.source), "repo_id": getattr(src, "repo_id", None),
                           "folder": str(src.folder)})
    if hasattr(src, "_asdict"):
        return json.dumps(_jsonable(src._asdict()))
    if dataclasses.is_dataclass(src):
        return json.dumps(_jsonable({f.name: getattr(src, f.name) for f in dataclasses.fields(src)}))
    return str(src)


def _align_meta(model) -> dict:
    cfg = getattr(model, "config", None)
    ac = getattr(cfg, "align_corners", None)
    if not isinstance(ac, bool):
        return {}
    return {"align_corners": ac, "align_corners_source": str(getattr(cfg, "align_corners_source", None))}


def _load_kwargs(args) -> dict:
    """The model options of `fastradio.load` given on the command line (both engines pass these)."""
    extra = {}
    if getattr(args, "pos_align_corners", None) is not None:
        extra["pos_align_corners"] = args.pos_align_corners == "true"
    if getattr(args, "vitdet_window_size", None) is not None:
        extra["vitdet_window_size"] = args.vitdet_window_size
    return extra


def _load_model(args, dtype_name: str | None, device):
    import torch

    import fastradio
    from .backends import BackendUnavailable
    from .errors import CheckpointError, ModelNotFoundError, UnsupportedModelError

    dtype = getattr(torch, dtype_name) if dtype_name else None
    extra = _load_kwargs(args)
    try:
        model = fastradio.load(args.model, device=device, dtype=dtype, backend=args.backend,
                               revision=args.revision, **extra)
    except ModelNotFoundError as e:
        msg = _one_line(e)
        hint = _synthetic_hint(args.model)
        if hint.split()[hint.split().index("--model") + 1] not in msg:
            msg += f"; {hint}"
        raise UsageError(msg) from e
    except (CheckpointError, UnsupportedModelError, BackendUnavailable, ValueError, TypeError) as e:
        raise UsageError(f"cannot load model {args.model!r}: {_one_line(e)}") from e
    try:
        _ = model.plan  # resolve the backends now: a refusal is a usage error, not a crash mid-run
    except BackendUnavailable as e:
        raise UsageError(_one_line(e)) from e
    except AttributeError:
        pass
    return model


def _model_key(name: str) -> str:
    """A canonical name of ``--model`` for comparing runs (--resume): aliases of a known model,
    ``synthetic:x`` and ``synthetic:x@0``, and spellings of one local path compare equal."""
    from .configs import resolve_known_model

    n = str(name).strip()
    try:
        if _is_synthetic(n):
            base, _, seed = n[len("synthetic:"):].partition("@")
            km = resolve_known_model(base)
            return f"synthetic:{km.name if km else base}@{int(seed) if seed.strip() else 0}"
        p = Path(n).expanduser()
        if p.exists():
            return str(p.resolve())
        km = resolve_known_model(n)
        if km is not None:
            return km.hub_repo or km.name
    except Exception:
        pass
    return n


def _load_with_messages(args, dtype_name: str | None, device, console: _Console):
    """:func:`_load_model` between "loading ..." and "loaded in X s" lines (not with --quiet)."""
    name = str(args.model)
    if _is_synthetic(name):
        console.info(f"loading {name}: random weights, generated locally on first use (then cached) ...")
    elif Path(name).expanduser().exists():
        console.info(f"loading {name} ...")
    else:
        console.info(f"loading {name}: from the Hugging Face cache, or downloading it (a progress bar shows the "
                     f"download) ...")
    t0 = time.monotonic()
    model = _load_model(args, dtype_name, device)
    dt = time.monotonic() - t0
    src = getattr(model, "source", None)
    kind = getattr(src, "source", None)
    where = {"synthetic": f"generated locally, in {getattr(src, 'folder', '?')}",
             "cache": "from the Hugging Face cache", "download": "downloaded from the Hugging Face Hub",
             "local": f"from {getattr(src, 'folder', name)}"}.get(kind)
    dtype = str(getattr(model, "dtype", "?")).replace("torch.", "")
    console.info(f"loaded {name} in {dt:.1f} s ({where + '; ' if where else ''}{dtype} on {getattr(model, 'device', '?')})")
    return model


def _source_json(text: str):
    """_describe_source's JSON text → the object (for the manifest), or the text itself."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


_BOOKKEEPING = ("format", "format_version", "created", "updated", "complete", "count", "shard_count", "skipped_count",
                "runs", "skipped", "shards")


def cmd_embed(args) -> int:
    from . import embed, images

    console = _Console(quiet=args.quiet)
    # 1. options (all checked before anything is read or loaded)
    for opt, v, lo in (("--batch", args.batch, 1), ("--shard-size", args.shard_size, 1), ("--shard-mb", args.shard_mb, 1),
                       ("--workers", args.workers, 0), ("--log-interval", args.log_interval, 0)):
        if v is not None and v < lo:
            raise UsageError(f"{opt}: expected {'a positive number' if lo else 'zero or more'}, got {v}")
    policy = images.parse_resolution(args.resolution)
    background = images.parse_background(args.background)
    dtype_name = None
    if args.dtype is not None:
        dtype_name = _DTYPES.get(args.dtype.strip().lower())
        if dtype_name is None:
            raise UsageError(f"--dtype: expected float32, bfloat16 or float16 (or fp32, bf16, fp16), got {args.dtype!r}")
    if isinstance(policy, tuple) and (policy[0] % 16 or policy[1] % 16):
        # every supported size is a multiple of 16 (the exact step is checked after loading)
        nh, nw = (max(round(v / 16), 1) * 16 for v in policy)
        raise UsageError(f"--resolution {images.fmt_size(policy)}: height and width must be multiples of 16; "
                         f"the nearest supported resolution is {nh}x{nw}")
    features = args.features or ("none" if args.no_features else "full")
    if args.no_features and features != "none":
        raise UsageError(f"--no-features contradicts --features {features}")
    ray_engine = _check_engine_options(args)
    device = args.device if ray_engine else _parse_device(args.device)   # ray: the workers' device, checked there
    out = Path(args.out)
    single = out.suffix.lower() == ".safetensors"
    if single:
        if out.is_dir():
            raise UsageError(f"--out {out}: is a directory; a single-file output is a file name ending in .safetensors")
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: folder {out.parent} does not exist")
        for opt, given in (("--resume", args.resume), ("--format parquet", args.format == "parquet"),
                           ("--shard-size", args.shard_size is not None), ("--shard-mb", args.shard_mb is not None)):
            if given:
                raise UsageError(f"{opt} needs a sharded output folder, but --out {out} names a single .safetensors "
                                 f"file; give a folder, e.g. --out {out.with_suffix('')}")
    elif out.is_file():
        raise UsageError(f"--out {out}: is a file; give a folder for the sharded output (or a name ending in "
                         f".safetensors for one file)")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other")
    if args.format == "parquet":
        try:
            embed.store.require_pyarrow()
        except embed.OutputError as e:
            raise UsageError(str(e)) from e
    _check_pca_options(args, features)
    if not args.inputs and not args.samples and not args.file_list:
        raise UsageError("no images given: name image files or folders, use --file-list, or --samples")
    workers = embed.default_workers() if args.workers is None else args.workers

    # 2. the images (listed, not opened: loader workers open them during the run)
    sources: list = []
    if args.samples:
        sources.append(embed.SamplesSource())
    skipped_entries: dict[str, list[Path]] = {}
    if args.inputs:
        sources.append(embed.PathsSource(args.inputs, recursive=args.recursive,
                                         on_skip=lambda p, why: skipped_entries.setdefault(why, []).append(p)))
    for fl in args.file_list or ():
        sources.append(embed.FileListSource(fl))
    for why, ps in skipped_entries.items():
        shown = ", ".join(str(p) for p in ps[:5]) + (f", ... ({len(ps) - 5} more)" if len(ps) > 5 else "")
        console.note(f"skipped {len(ps)} {'entry' if len(ps) == 1 else 'entries'}: {why}: {shown}")
    items = embed.collect_items(sources, on_duplicates=lambda n, first: console.note(
        f"ignored {n} repeated image path(s) (e.g. {first}): each image is embedded once"))
    if not items:
        where = ", ".join([*args.inputs, *(args.file_list or [])]) or "the inputs"
        raise UsageError(f"no images found in {where}")

    # 3. the output (before the model loads: a clash or a --resume mismatch fails fast)
    label = policy if isinstance(policy, str) else images.fmt_size(policy)
    if dtype_name is None and ray_engine:
        # the workers decide (a GPU's bf16, a CPU's fp32); a resumed run keeps the earlier run's dtype
        expected_dtype = _previous_dtype(out) if args.resume else None
    elif dtype_name is None:
        from .api import default_device, default_dtype
        expected_dtype = str(default_dtype(device if device is not None else default_device())).replace("torch.", "")
    else:
        expected_dtype = dtype_name
    settings = {
        "fastradio_version": None, "model": str(args.model), "model_key": _model_key(args.model),
        "revision": args.revision, "dtype": expected_dtype, "resolution": label, "shard_format": args.format,
        "features": features, "feature_fmt": args.feature_fmt if features == "full" else None,
        "background": ",".join(str(v) for v in background), "exif_transpose": not args.no_exif_transpose,
        "vitdet_window_size": args.vitdet_window_size,
    }
    lock, state = None, None
    todo = items
    if not single:
        try:
            lock, state = embed.prepare_folder(out, resume=args.resume, overwrite=args.overwrite, settings=settings,
                                               note=console.note)
        except embed.OutputError as e:
            raise UsageError(str(e)) from e
        if state is not None:
            for msg in state.dropped:
                console.warn(f"--resume: {msg}")
            if state.removed:
                console.note(f"--resume: removed {len(state.removed)} unfinished file(s) of the interrupted run "
                             f"({', '.join(state.removed[:3])}{', ...' if len(state.removed) > 3 else ''})")
            todo = [it for it in items if it.id not in state.done]
            extra = len(state.done) - (len(items) - len(todo))
            console.note(f"--resume: {len(items) - len(todo)} of {len(items)} image(s) are already in {out} "
                         f"({len(state.shards)} shard(s) verified)"
                         + (f"; {extra} image(s) there are not among this run's inputs (kept)" if extra else ""))
    job = _EmbedJob(args, console, sources, items, todo, state, lock, settings, out, single, policy, label,
                    background, features, workers, dtype_name or (expected_dtype if ray_engine else None), device)
    try:
        return _embed_run(job)
    finally:
        if lock is not None:
            lock.close()
        if job.ray_started:
            import ray
            ray.shutdown()


def _check_pca_options(args, features: str) -> None:
    """--pca DIR (created here, so that an unwritable folder fails before any work)."""
    if not args.pca:
        for opt, given in (("--pca-joint", args.pca_joint), ("--side-by-side", args.side_by_side)):
            if given:
                raise UsageError(f"{opt} needs --pca DIR (the folder for the pictures)")
        return
    if features != "full":
        raise UsageError(f"--pca needs the patch features, but --features is {features}; drop --features/--no-features "
                         f"(the default stores them) or give --features full")
    folder = Path(args.pca)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--pca {folder}: is a file; give a folder for the pictures")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--pca {folder}: cannot create the folder ({e.strerror or e})") from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--pca {folder}: folder is not writable")


@dataclasses.dataclass
class _EmbedJob:
    """What ``cmd_embed`` decided before the model loads."""

    args: Any
    console: _Console
    sources: list            # fastradio.embed.Source
    items: list              # every input image (fastradio.embed.Item)
    todo: list               # those not in a verified shard of an earlier run
    state: Any               # fastradio.embed.store.ResumeState (--resume) or None
    lock: Any                # the output folder's lock, when it existed already
    settings: dict           # the manifest's settings known so far
    out: Path
    single: bool             # --out *.safetensors
    policy: Any
    label: str               # the policy as text
    background: tuple
    features: str            # none | pooled | full
    workers: int
    dtype_name: str | None
    device: Any
    ray_started: bool = False   # --engine ray: this run started Ray (and shuts it down)


def _check_engine_options(args) -> bool:
    """--engine and its options; True for ``--engine ray``."""
    ray_engine = args.engine == "ray"
    for opt, v in (("--address", args.address), ("--num-workers", args.num_workers),
                   ("--gpus-per-worker", args.gpus_per_worker)):
        if v is not None and not ray_engine:
            raise UsageError(f"{opt} applies to --engine ray only")
    if ray_engine and args.num_workers is not None and args.num_workers < 1:
        raise UsageError(f"--num-workers: expected a positive number, got {args.num_workers}")
    if ray_engine and args.gpus_per_worker is not None and args.gpus_per_worker < 0:
        raise UsageError(f"--gpus-per-worker: expected zero or more, got {args.gpus_per_worker}")
    return ray_engine


def _previous_dtype(out: Path) -> str | None:
    from . import embed

    try:
        return embed.read_manifest(out).get("dtype")
    except embed.OutputError:
        return None


def _ray_model(job: "_EmbedJob"):
    """--engine ray: join the cluster and build one worker's model there (fastradio.ray.engine.probe);
    returns what the manifest records of the model."""
    from .ray import engine as ray_engine

    args, console = job.args, job.console
    try:
        job.ray_started = ray_engine.connect(args.address, quiet=args.quiet)
        ray_engine.check_resources(*_ray_resources(job))
        console.info(f"loading {args.model} on a Ray worker (checks the model, the device and its memory) ...")
        t0 = time.monotonic()
        facts = ray_engine.probe(_ray_ctor(job), gpus_per_worker=_ray_resources(job)[1],
                                 cpus_per_worker=_ray_resources(job)[2])
    except ray_engine.EngineError as e:
        raise UsageError(str(e)) from e
    console.info(f"loaded {args.model} on a Ray worker in {time.monotonic() - t0:.1f} s "
                 f"({facts.facts['dtype']} on {facts.device})")
    return facts


def _ray_resources(job: "_EmbedJob") -> tuple[int, float, float]:
    """(workers, GPUs per worker, CPUs per worker); --workers is the decode CPUs of one worker."""
    a = job.args
    return a.num_workers or 1, float(a.gpus_per_worker or 0), float(a.workers or 1)


def _ray_ctor(job: "_EmbedJob") -> dict:
    a = job.args
    return {"model": a.model, "revision": a.revision, "dtype": job.dtype_name, "backend": a.backend,
            "device": job.device, "load_kwargs": _load_kwargs(a)}


def _embed_run(job: _EmbedJob) -> int:
    """cmd_embed after the checks: load the model, run, write."""
    import fastradio

    from . import embed

    args, console, items, todo, state, out, single = (job.args, job.console, job.items, job.todo, job.state,
                                                        job.out, job.single)
    policy, label, features, workers = job.policy, job.label, job.features, job.workers
    lock = job.lock
    if state is not None and not todo:
        # nothing left: record completion without loading the model
        prev = {k: v for k, v in state.previous.items() if k not in _BOOKKEEPING}
        output = embed.ShardedOutput(out, prev, state=state, lock=lock, run={"embedded": 0})
        output.finish("complete")
        if not args.quiet:
            print(f"nothing to do: all {len(items)} image(s) are already in {out} ({output.count} embedded in "
                  f"{output.shard_count} shard(s))")
        return 0

    # 4. the model
    if _is_synthetic(args.model):
        console.warn(f"{args.model} has RANDOM weights generated locally, not the published checkpoint: "
                     f"its embeddings are meaningless (use it only to test the pipeline)")
    if args.engine == "ray":
        model = _ray_model(job)
    else:
        model = _load_with_messages(args, job.dtype_name, job.device, console)
    dtype = str(model.dtype).replace("torch.", "")
    if state is not None and dtype != state.previous.get("dtype"):
        raise UsageError(f"--resume: {out / embed.MANIFEST} was written with dtype {state.previous.get('dtype')}, "
                         f"this run's model computes in {dtype}; pass --dtype {state.previous.get('dtype')}")
    step = int(getattr(model, "min_resolution_step", 16))
    if isinstance(policy, tuple) and (policy[0] % step or policy[1] % step):
        nh, nw = (int(v) for v in model.get_nearest_supported_resolution(*policy))
        raise UsageError(f"--resolution {label}: not a multiple of the model's step {step}; the nearest supported "
                         f"resolution is {nh}x{nw}")
    names = getattr(getattr(model, "plan", None), "names", None) or {}
    settings = dict(job.settings)
    settings.update({
        "fastradio_version": fastradio.__version__, "dtype": dtype,
        "model_source": _source_json(_describe_source(model, args.model)), "synthetic": _is_synthetic(args.model),
        "device": str(model.device), "backend": args.backend, "backends": dict(names),
        "embed_dim": int(model.embed_dim), "summary_dim": int(model.summary_dim),
        "patch_size": int(getattr(model, "patch_size", 16)), **_align_meta(model),
    })
    options = embed.Options(policy=policy, batch=args.batch, shard_size=args.shard_size or DEFAULT_SHARD_SIZE,
                            shard_bytes=(args.shard_mb or DEFAULT_SHARD_MB) << 20, features=features,
                            feature_fmt=args.feature_fmt, skip_unreadable=args.skip_unreadable, workers=workers,
                            background=job.background, exif_transpose=not args.no_exif_transpose)
    if single:
        output = embed.MemoryOutput()
    else:
        settings.update(shard_size=options.shard_size, shard_bytes=options.shard_bytes,
                        sources=[s.describe() for s in job.sources])
        try:
            output = embed.ShardedOutput(out, settings, state=state, lock=lock,
                                         run={"engine": args.engine, "workers": workers, "batch": args.batch,
                                 "device": settings["device"],
                                              "backend": args.backend, "fastradio_version": fastradio.__version__})
        except embed.OutputError as e:
            raise UsageError(str(e)) from e

    if args.pca:
        from .embed.pictures import PictureOutput
        output = PictureOutput(output, args.pca, items=items, sources=job.sources, patch=settings["patch_size"],
                               feature_fmt=args.feature_fmt, joint=args.pca_joint, group=args.batch,
                               side_by_side=args.side_by_side, background=job.background,
                               exif_transpose=not args.no_exif_transpose, note=console.warn)

    # 5. run
    mode = "none" if args.quiet else ("bar" if sys.stderr.isatty() else "log")
    progress = embed.Progress(total=len(items), already=len(items) - len(todo), mode=mode,
                              interval=args.log_interval, stream=sys.stderr)
    where = "memory, written at the end" if single else f"{out}/ in shards of {options.shard_size}"
    if mode == "log":
        progress.write(f"embedding {len(todo)} image(s)"
                       + (f" ({len(items) - len(todo)} done before)" if len(todo) < len(items) else "")
                       + f": batch {args.batch}, {workers or 'no'} loader worker(s), --resolution {label}, "
                         f"features {features}; output to {where}")
    console.progress = progress   # started by embed.run once the loader workers are up
    status = "failed"
    try:
        if args.engine == "ray":
            from .ray import engine as ray_engine
            n, g, c = _ray_resources(job)
            stats = ray_engine.run(job.sources, todo, output, options=options, ctor=_ray_ctor(job), num_workers=n,
                                   gpus_per_worker=g, cpus_per_worker=c, max_resolution=model.max_resolution,
                                   progress=progress, show_bars=not args.quiet, note=console.note)
        else:
            stats = embed.run(model, job.sources, todo, output, options=options, progress=progress,
                              note=console.note)
        status = "complete"
    except embed.StopRun as e:
        status = "stopped"
        progress.close()
        output.finish(status)
        hint = ("--skip-unreadable skips such files" if e.kind == "unreadable"
                else "--skip-unreadable skips such images")
        if single:
            raise UsageError(f"{e} ({hint}); nothing was written") from None
        raise UsageError(f"{e} — stopped before embedding it; {output.count} image(s) are in {out} (fix or remove "
                         f"the file and continue with --resume; {hint})") from None
    except KeyboardInterrupt:
        status = "interrupted"
        progress.close()
        if not single:
            output.finish(status)
            console.warn(f"interrupted: {output.count} image(s) are saved in {out}; continue with --resume")
        raise
    finally:
        progress.close()
        if status == "failed" and not single:
            try:
                output.finish(status)
            except Exception:
                pass
    output.finish(status)
    progress.set_shards(output.shard_count)
    if mode == "log":
        progress.write(progress.line("done"))
    if stats.resized:
        console.note(f"resized {stats.resized} of {stats.embedded} image(s) (--resolution {label}; bicubic, antialiased)")
    if stats.too_big > 1:
        console.note(f"{stats.too_big} image(s) exceeded the model's max resolution {getattr(model, 'max_resolution', '?')}")
    if output.count == 0:
        raise UsageError("no image could be read" + ("" if single else f" (see {out / embed.MANIFEST}, 'skipped')"))

    # 6. the summary line (and the single file)
    what = {"none": "summaries", "pooled": "summaries and pooled features",
            "full": f"summaries and {args.feature_fmt} features"}[features]
    if single:
        _write_single_file(job, model, output, settings)
        if not args.quiet:
            print(f"wrote {what} of {output.count} image(s) to {out} (model {args.model}, {dtype} on "
                  f"{settings['device']})" + (f"; skipped {len(output.skipped)} unreadable" if output.skipped else ""))
        return _pictures_done(args, output, stats, console)
    if not args.quiet:
        print(f"wrote {what} of {output.count} image(s) in {output.shard_count} {args.format} shard(s) to {out} "
              f"(manifest {out / embed.MANIFEST}; model {args.model}, {dtype} on {settings['device']})"
              + (f"; skipped {stats.skipped} unreadable" if stats.skipped else ""))
    return _pictures_done(args, output, stats, console)


def _pictures_done(args, output, stats, console: _Console) -> int:
    """After the embeddings are stored: the --pca line, and exit 1 if some pictures failed."""
    if not args.pca:
        return 0
    console.info(f"wrote {output.written} picture(s) of {stats.embedded - output.failed} image(s) to {args.pca}")
    if output.failed:
        raise RuntimeError(f"--pca: no pictures for {output.failed} image(s) (their embeddings are stored); "
                           f"first: {output.failures[0]}")
    return 0


def _write_single_file(job: _EmbedJob, model, output, settings: dict) -> None:
    """The ``--out FILE.safetensors`` format (see the module docstring)."""
    import fastradio

    args, features = job.args, job.features
    tensors = {}
    for i, r in enumerate(output.results):
        tensors[f"summary/{i}"] = r.summary.contiguous()
        if features == "pooled":
            tensors[f"pooled/{i}"] = r.pooled.contiguous()
        elif features == "full":
            tensors[f"features/{i}"] = r.features.contiguous()
    meta = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "fastradio_version": fastradio.__version__,
        "model": str(args.model), "model_source": _describe_source(model, args.model),
        "synthetic": "true" if settings["synthetic"] else "false", "dtype": settings["dtype"],
        "device": settings["device"], "backends": settings["backends"], "embed_dim": str(settings["embed_dim"]),
        "summary_dim": str(settings["summary_dim"]), "patch_size": str(settings["patch_size"]),
        **{k: ("true" if v else "false") if isinstance(v, bool) else v
           for k, v in settings.items() if k in ("align_corners", "align_corners_source")},
        "features": features,
        "feature_fmt": args.feature_fmt if features == "full" else "none", "resolution": job.label,
        "background": settings["background"], "exif_transpose": "false" if args.no_exif_transpose else "true",
        "count": str(len(output.results)), "images": [r.id for r in output.results],
        "original_sizes": [list(r.original_size) for r in output.results],
        "model_sizes": [list(r.model_size) for r in output.results], "skipped": output.skipped,
    }
    try:
        write_embeddings(job.out, tensors, meta)
    except OSError as e:
        raise UsageError(f"--out {job.out}: cannot write ({e.strerror or e})") from e


# -- parser and main ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bar, notes or summary line")

    p = argparse.ArgumentParser(prog=_PROG, description="Fast inference for NVIDIA C-RADIOv2 image encoders.")
    p.add_argument("--version", action="version", version=f"fastradio {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    pi = sub.add_parser("info", parents=[common], help="versions, build, devices and backend support",
                        description="Report versions, the C++/CUDA extension build, devices, and for every "
                                    "backend x op x device x dtype whether it is usable or why not.")
    pi.add_argument("--json", action="store_true", help="machine-readable output")
    pi.set_defaults(func=cmd_info)

    pm = sub.add_parser("models", parents=[common], help="list the known models",
                        description="List the known models (names accept aliases; any also loads as "
                                    "synthetic:<name> with random weights).")
    pm.add_argument("--all", action="store_true", help="include the tiny test-only architectures")
    pm.add_argument("--json", action="store_true", help="machine-readable output")
    pm.set_defaults(func=cmd_models)

    pe = sub.add_parser(
        "embed", parents=[common], help="embed images into shards (or one safetensors file)",
        description="Embed image files, folders of them or lists of them, and write summaries (and patch features) "
                    "into a folder of shards with a manifest, written as the run goes and resumable "
                    "(or, for --out FILE.safetensors, one file at the end). Formats: `python -m pydoc fastradio.cli`.",
        epilog="Without network access use --model synthetic:C-RADIOv2-B (random weights; the embeddings are "
               "meaningless, but every step of the pipeline runs).")
    pe.add_argument("inputs", nargs="*", metavar="IMAGE_OR_DIR", help="image files and/or folders")
    pe.add_argument("-m", "--model", required=True, metavar="NAME_OR_PATH",
                    help="known model name (see `fastradio models`), local folder, or synthetic:<name>")
    pe.add_argument("--file-list", action="append", metavar="FILE",
                    help="a text file of image paths, one per line ('-': standard input; # comments; relative to "
                         "the current folder); may be repeated")
    pe.add_argument("-o", "--out", default=DEFAULT_OUT, metavar="FOLDER_OR_FILE",
                    help=f"output folder of shards + _manifest.json (default: {DEFAULT_OUT}); a name ending in "
                         f".safetensors writes one file instead, kept in memory until the end")
    pe.add_argument("--format", default="safetensors", choices=["safetensors", "parquet"],
                    help="shard format (default: safetensors); parquet needs pyarrow (pip install 'fastradio[parquet]')")
    pe.add_argument("--features", default=None, choices=["none", "pooled", "full"],
                    help="patch features to store: none, pooled (mean over the patches, one D-vector per image) or "
                         "full (every patch; large) (default: full)")
    pe.add_argument("--shard-size", type=int, default=None, metavar="N",
                    help=f"images per shard (default: {DEFAULT_SHARD_SIZE}); a run killed midway loses at most "
                         f"one shard")
    pe.add_argument("--shard-mb", type=int, default=None, metavar="MB",
                    help=f"also close a shard when its outputs reach this size (default: {DEFAULT_SHARD_MB})")
    pe.add_argument("--resume", action="store_true",
                    help="continue an interrupted run in --out: verify its shards, embed only the images not in them "
                         "(the settings must match)")
    pe.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    pe.add_argument("-b", "--batch", type=int, default=DEFAULT_BATCH, metavar="N",
                    help=f"images per model call (default: {DEFAULT_BATCH})")
    pe.add_argument("-j", "--workers", type=int, default=None, metavar="N",
                    help="processes decoding and resizing images (default: one per CPU less one, at most 8; "
                         "0: in this process); with --engine ray: the CPUs (decode threads) of each Ray worker "
                         "(default: 1)")
    pe.add_argument("--log-interval", type=float, default=DEFAULT_LOG_INTERVAL, metavar="SECONDS",
                    help=f"when stderr is not a terminal, a progress line every SECONDS (default: "
                         f"{DEFAULT_LOG_INTERVAL:g}; 0: after every batch); on a terminal a progress bar")
    pe.add_argument("-r", "--resolution", default="nearest", metavar="{native,nearest,preferred,HxW}",
                    help="native: as is (multiples of 16 only); nearest: resize to the nearest multiple of 16 "
                         "(default); preferred: the model's preferred size; HxW: height x width")
    pe.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    pe.add_argument("--dtype", default=None,
                    help="float32 | bfloat16 | float16 (default: float32 on CPU, bf16 on sm_80+, else fp16)")
    from .backends import BACKENDS
    pe.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help="kernel backend (default: auto)")
    pe.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) for Hub models")
    pe.add_argument("--pos-align-corners", default=None, choices=["true", "false"],
                    help="the position-table resize of a checkpoint that does not say it (a local C-RADIOv3/v4 "
                         "folder without its vit_patch_generator.py): false for C-RADIOv4 and the current "
                         "C-RADIOv3-L/-g uploads, true for C-RADIOv2; default: read from the checkpoint")
    pe.add_argument("--vitdet-window-size", type=int, default=None, metavar="WS",
                    help="ViTDet windowed attention in WS x WS-patch windows (high resolution; sizes become "
                         "multiples of 16*WS); default: global attention")
    pe.add_argument("--feature-fmt", default="NLC", choices=["NLC", "NCHW"],
                    help="layout of the stored features: NLC (h*w, D) or NCHW (D, h, w); default NLC")
    pe.add_argument("--no-features", action="store_true", help="store only the summary vectors (= --features none)")
    pe.add_argument("--recursive", action="store_true", help="descend into subfolders of folders")
    pe.add_argument("--samples", action="store_true",
                    help="add fastradio's built-in sample images (generated on first use)")
    pe.add_argument("--background", default="white", metavar="COLOUR",
                    help="colour under transparent pixels: name, #rrggbb or R,G,B (default: white)")
    pe.add_argument("--no-exif-transpose", action="store_true", help="ignore EXIF orientation tags")
    pe.add_argument("--pca", default=None, metavar="DIR",
                    help="also write feature pictures per image into DIR: <stem>_pca.png (first 3 principal components "
                         "as RGB) and <stem>_norm.png (token norms); see fastradio.embed.pictures")
    pe.add_argument("--pca-joint", action="store_true",
                    help="with --pca: one PCA basis per --batch images (comparable colours)")
    pe.add_argument("--side-by-side", action="store_true", help="with --pca: the input image left of each picture")
    pe.add_argument("--engine", default="local", choices=["local", "ray"],
                    help="local: this machine (default); ray: a Ray cluster's workers decode and embed, this process "
                         "writes the same shards + manifest (needs pip install 'fastradio[ray]'; either engine "
                         "--resume's the other's run)")
    pe.add_argument("--address", default=None, help="--engine ray: the cluster (default: RAY_ADDRESS, else a new "
                                                    "local one)")
    pe.add_argument("--num-workers", type=int, default=None, metavar="N",
                    help="--engine ray: model workers (Ray actors) (default: 1); --workers: CPUs of each")
    pe.add_argument("--gpus-per-worker", type=float, default=None, metavar="G",
                    help="--engine ray: GPUs per worker (default: 0; 1 for one model per GPU, 0.5 for two)")
    pe.add_argument("--skip-unreadable", action="store_true",
                    help="skip images that cannot be decoded (truncated, corrupt, missing) or used (a size "
                         "--resolution native cannot take), reported and recorded in the output, instead of stopping "
                         "at the first one")
    pe.set_defaults(func=cmd_embed)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastradio`` console script and ``python -m fastradio``; returns the
    exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (argparse printed it)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    debug = getattr(args, "debug", False)
    from .images import ImageInputError

    try:
        return int(args.func(args))
    except (UsageError, ImageInputError) as e:
        if debug:
            traceback.print_exc()
        print(f"{_PROG}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    except Exception as e:
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (run with --debug for the traceback)"
        if type(e).__name__ == "OutOfMemoryError":
            hint = " (try a smaller --batch or --resolution)" + hint
        print(f"{_PROG}: error: {type(e).__name__}: {_one_line(e)}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
