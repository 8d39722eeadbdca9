"""The sharded output folder of ``fastradio embed``: shards, the manifest, resume, reading back.

Layout of ``--out FOLDER``::

    FOLDER/_manifest.json             settings of the run and, per shard, its file, ids, sizes, checksum
    FOLDER/shard-00000.safetensors    (or .parquet with --format parquet)
    FOLDER/shard-00001.safetensors
    FOLDER/.fastradio-embed.lock      held while a run writes the folder (a second run is refused)

The manifest's leading underscore (like the dot of the lock and of temporary files) makes Parquet
readers that take a folder (pyarrow, pandas, Spark) skip it: ``pandas.read_parquet(FOLDER)``
reads the shards as one table.

Every file is written under a temporary name in the folder, flushed to disk (fsync), renamed
into place, and the folder fsync'ed; the manifest is rewritten the same way after each shard. So
a reader sees only complete files, a shard is part of the output exactly when the manifest lists
it, and a run killed at any moment loses at most the shard it was filling (plus, at worst, one
shard file that was renamed but not yet listed: ``--resume`` deletes such unlisted files).

Shard contents (one entry of ``manifest["shards"]`` per file, images in the entry's ``ids`` order):

- safetensors: ``summary`` (n, 3·D) float32; ``pooled`` (n, D) float32 with ``--features pooled``
  (mean of the patch features over the patches); ``features/<j>`` for image j of the shard with
  ``--features full``: (h·w, D) for NLC or (D, h, w) for NCHW. The header metadata repeats the
  ids and sizes (``ids``, ``original_sizes``, ``model_sizes`` as JSON), so a shard describes
  itself.
- Parquet: one row per image: ``id`` (string), ``height``, ``width`` (as read), ``input_height``,
  ``input_width`` (as fed to the model), ``summary`` (fixed_size_list<float32>[3·D]), ``pooled``
  (fixed_size_list<float32>[D], with ``--features pooled``), ``features`` (large_list<float32>:
  the patch features flattened in ``feature_fmt`` order, with ``--features full``).

:func:`read_manifest`, :func:`read_shard` and :func:`load` read an output folder back (both
formats), checking each shard's checksum.
"""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import hashlib
import json
import os
import re
import secrets
import threading
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch

__all__ = ["MANIFEST", "LAYOUT_NAME", "LAYOUT_VERSION", "SHARD_FORMATS", "COMPARED_SETTINGS", "Result",
           "OutputError", "ShardedOutput", "MemoryOutput", "ResumeState", "prepare_folder", "read_manifest",
           "read_shard", "load", "shard_name", "sha256_file", "require_pyarrow"]

MANIFEST = "_manifest.json"
LOCK_NAME = ".fastradio-embed.lock"
LAYOUT_NAME = "fastradio.embeddings.shards"
LAYOUT_VERSION = 1
SHARD_FORMATS = ("safetensors", "parquet")
SHARD_RE = re.compile(r"^shard-(\d{5,})\.(safetensors|parquet)$")
TMP_RE = re.compile(r"^\..*\.tmp$")
#: settings that must match for ``--resume`` (a mixed output would be unusable)
COMPARED_SETTINGS = ("model_key", "revision", "dtype", "resolution", "shard_format", "features", "feature_fmt",
                     "background", "exif_transpose", "vitdet_window_size")
#: tests only: simulate a crash after the k-th shard of a run ("shard:k" after its manifest
#: update, "orphan:k" after its file is renamed but before the manifest lists it, "tmp:k" half
#: way through writing its temporary file)
CRASH_ENV = "FASTRADIO_EMBED_TEST_CRASH"


class OutputError(ValueError):
    """A problem with the output folder (not empty, settings differ on --resume, locked, ...);
    one line, exit code 2."""


class Result(NamedTuple):
    """One embedded image: float32 CPU tensors."""

    id: str
    original_size: tuple[int, int]
    model_size: tuple[int, int]
    summary: torch.Tensor
    pooled: torch.Tensor | None = None
    features: torch.Tensor | None = None

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.summary, self.pooled, self.features) if t is not None)


def shard_name(index: int, fmt: str) -> str:
    return f"shard-{index:05d}.{fmt}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, give it a normal file's mode, rename it onto ``path``, fsync the folder."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        _publish(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(p: Path) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def _crash_hook(stage: str, k: int, tmp: Path | None = None) -> None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    want, _, n = spec.partition(":")
    if want == stage and n.strip() == str(k):
        if tmp is not None:
            with open(tmp, "r+b") as f:
                f.truncate(max(1, os.path.getsize(tmp) // 2))
        os._exit(70)


def require_pyarrow():
    """Import pyarrow (and pyarrow.parquet) or raise an OutputError naming the extra."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise OutputError("--format parquet needs pyarrow, which is not installed: "
                          "pip install 'fastradio[parquet]' (or pip install pyarrow)") from e
    return pa, pq


# -- encoding shards ---------------------------------------------------------------------------------

def _shard_meta(index: int, results: Sequence[Result], settings: dict) -> dict:
    return {"format": LAYOUT_NAME + ".shard", "format_version": str(LAYOUT_VERSION), "index": str(index),
            "count": str(len(results)), "features": str(settings.get("features")),
            "feature_fmt": str(settings.get("feature_fmt")), "model": str(settings.get("model")),
            "ids": json.dumps([r.id for r in results]),
            "original_sizes": json.dumps([list(r.original_size) for r in results]),
            "model_sizes": json.dumps([list(r.model_size) for r in results])}


def _write_safetensors(tmp: Path, index: int, results: Sequence[Result], settings: dict) -> None:
    from safetensors.torch import save_file

    tensors = {"summary": torch.stack([r.summary for r in results]).contiguous()}
    if settings.get("features") == "pooled":
        tensors["pooled"] = torch.stack([r.pooled for r in results]).contiguous()
    elif settings.get("features") == "full":
        for j, r in enumerate(results):
            tensors[f"features/{j}"] = r.features.contiguous()
    save_file(tensors, str(tmp), metadata=_shard_meta(index, results, settings))


def _write_parquet(tmp: Path, index: int, results: Sequence[Result], settings: dict) -> None:
    import numpy as np

    pa, pq = require_pyarrow()
    n = len(results)
    s = torch.stack([r.summary for r in results]).numpy()
    cols = {
        "id": pa.array([r.id for r in results], pa.string()),
        "height": pa.array([r.original_size[0] for r in results], pa.int32()),
        "width": pa.array([r.original_size[1] for r in results], pa.int32()),
        "input_height": pa.array([r.model_size[0] for r in results], pa.int32()),
        "input_width": pa.array([r.model_size[1] for r in results], pa.int32()),
        "summary": pa.FixedSizeListArray.from_arrays(pa.array(s.reshape(-1), pa.float32()), s.shape[1]),
    }
    if settings.get("features") == "pooled":
        p = torch.stack([r.pooled for r in results]).numpy()
        cols["pooled"] = pa.FixedSizeListArray.from_arrays(pa.array(p.reshape(-1), pa.float32()), p.shape[1])
    elif settings.get("features") == "full":
        flat = [r.features.reshape(-1).numpy() for r in results]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([f.size for f in flat], out=offsets[1:])
        values = pa.array(np.concatenate(flat) if flat else np.zeros(0, np.float32), pa.float32())
        cols["features"] = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)
    table = pa.table(cols)
    meta = {k: v for k, v in _shard_meta(index, results, settings).items() if k not in ("ids",)}
    table = table.replace_schema_metadata({"fastradio": json.dumps(meta)})
    pq.write_table(table, str(tmp))


_WRITERS: dict[str, Callable] = {"safetensors": _write_safetensors, "parquet": _write_parquet}


# -- reading -----------------------------------------------------------------------------------------

def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of an output folder (raises OutputError when missing or malformed)."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(f"{path}: no such file (not a fastradio embed output folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OutputError(f"{path}: not a readable manifest ({e})") from None
    if not isinstance(data, dict) or data.get("format") != LAYOUT_NAME:
        raise OutputError(f"{path}: not a fastradio embed manifest (format {data.get('format') if isinstance(data, dict) else None!r})")
    if int(data.get("format_version", 0)) > LAYOUT_VERSION:
        raise OutputError(f"{path}: format version {data['format_version']} is newer than this fastradio reads "
                          f"({LAYOUT_VERSION}); upgrade fastradio")
    return data


def read_shard(folder: str | os.PathLike, entry: dict, manifest: dict, *, verify: bool = True) -> dict:
    """One shard → {ids, original_sizes, model_sizes, summary (n, 3D), pooled (n, D) or None,
    features (list of per-image tensors, shaped as in the safetensors layout) or None}."""
    path = Path(folder) / entry["file"]
    if verify:
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise OutputError(f"{path}: checksum mismatch (sha256 {digest[:12]}…, manifest {entry['sha256'][:12]}…)")
    out: dict[str, Any] = {"ids": list(entry["ids"]), "original_sizes": [tuple(s) for s in entry["original_sizes"]],
                           "model_sizes": [tuple(s) for s in entry["model_sizes"]], "pooled": None, "features": None}
    n = len(out["ids"])
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        t = load_file(str(path))
        out["summary"] = t["summary"]
        out["pooled"] = t.get("pooled")
        if manifest.get("features") == "full":
            out["features"] = [t[f"features/{j}"] for j in range(n)]
        return out
    _, pq = require_pyarrow()
    table = pq.read_table(str(path))
    if table.column("id").to_pylist() != out["ids"]:
        raise OutputError(f"{path}: ids differ from the manifest")

    def fixed(name):
        col = table.column(name).combine_chunks()
        return torch.from_numpy(col.flatten().to_numpy(zero_copy_only=False).copy()).view(n, col.type.list_size)

    out["summary"] = fixed("summary")
    if "pooled" in table.column_names:
        out["pooled"] = fixed("pooled")
    if "features" in table.column_names:
        d, p = int(manifest["embed_dim"]), int(manifest["patch_size"])
        feats = []
        for (h, w), v in zip(out["model_sizes"], table.column("features").to_pylist()):
            x = torch.tensor(v, dtype=torch.float32)
            feats.append(x.view(h // p * (w // p), d) if manifest.get("feature_fmt") == "NLC" else x.view(d, h // p, w // p))
        out["features"] = feats
    return out


def load(folder: str | os.PathLike, *, verify: bool = True) -> tuple[dict, dict]:
    """A whole output folder → (data, manifest): data as :func:`read_shard` with every shard
    concatenated in manifest order (``summary`` and ``pooled`` stacked)."""
    manifest = read_manifest(folder)
    data: dict[str, Any] = {"ids": [], "original_sizes": [], "model_sizes": [], "summary": [], "pooled": [],
                            "features": []}
    for e in manifest["shards"]:
        s = read_shard(folder, e, manifest, verify=verify)
        for k in ("ids", "original_sizes", "model_sizes"):
            data[k] += s[k]
        data["summary"].append(s["summary"])
        if s["pooled"] is not None:
            data["pooled"].append(s["pooled"])
        if s["features"] is not None:
            data["features"] += s["features"]
    s_dim = int(manifest.get("summary_dim", 0))
    data["summary"] = torch.cat(data["summary"]) if data["summary"] else torch.zeros(0, s_dim)
    data["pooled"] = torch.cat(data["pooled"]) if data["pooled"] else None
    data["features"] = data["features"] if manifest.get("features") == "full" else None
    return data, manifest


# -- the folder: checks, lock, resume ----------------------------------------------------------------

class ResumeState(NamedTuple):
    """What ``--resume`` keeps of an earlier run."""

    shards: list[dict]          # verified manifest entries, in order
    done: set[str]              # ids in those shards
    runs: list[dict]            # earlier runs' records
    next_index: int
    dropped: list[str]          # messages about shards that failed verification (redone)
    removed: list[str]          # files removed (unlisted shards, temporary files)
    previous: dict              # the old manifest


def _ours(name: str) -> bool:
    return name in (MANIFEST, LOCK_NAME) or bool(SHARD_RE.match(name)) or bool(TMP_RE.match(name))


def _lock(folder: Path):
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None
    f = open(folder / LOCK_NAME, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        who = f.read().strip()
        f.close()
        raise OutputError(f"--out {folder}: another fastradio embed is writing this folder"
                          f"{f' ({who})' if who else ''}; wait for it or choose another --out") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    return f


def prepare_folder(folder: Path, *, resume: bool, overwrite: bool, settings: dict,
                   note: Callable[[str], None] = lambda s: None) -> tuple[Any, ResumeState | None]:
    """Check the output folder before the model loads; for ``resume``, verify what an earlier
    run wrote (see :func:`_resume_state`). Creates nothing and deletes only shard files that
    failed verification or were never listed. Returns (lock or None, state or None for a fresh
    start); a folder that exists is locked here, one that does not is created and locked by
    :class:`ShardedOutput`."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder}: exists and is not a folder (a single-file output must end in .safetensors)")
    if not folder.exists():
        if not folder.parent.is_dir():
            raise OutputError(f"--out {folder}: folder {folder.parent} does not exist")
        if resume:
            note(f"--resume: {folder} does not exist yet; starting a new run")
        return None, None
    names = sorted(p.name for p in folder.iterdir())
    foreign = [n for n in names if not _ours(n)]
    has_manifest = MANIFEST in names
    if foreign:
        what = "a fastradio manifest and other files" if has_manifest else "files that are not fastradio output"
        raise OutputError(f"--out {folder}: the folder holds {what} (e.g. {foreign[0]}); "
                          f"give a new or empty folder")
    if has_manifest and not resume and not overwrite:
        raise OutputError(f"--out {folder}: holds an earlier run ({MANIFEST}); continue it with --resume, "
                          f"start over with --overwrite, or give another folder")
    if not has_manifest and any(SHARD_RE.match(n) for n in names) and not overwrite:
        raise OutputError(f"--out {folder}: holds shard files but no {MANIFEST}, so they cannot be resumed; "
                          f"remove them or use --overwrite")
    lock = _lock(folder)
    try:
        if has_manifest and resume:
            return lock, _resume_state(folder, settings, note)
        if resume:
            note(f"--resume: {folder} holds no earlier run; starting a new one")
        return lock, None
    except BaseException:
        if lock is not None:
            lock.close()
        raise


def _describe(v) -> str:
    return "none" if v is None else str(v)


def _resume_state(folder: Path, settings: dict, note: Callable[[str], None]) -> ResumeState:
    old = read_manifest(folder)
    diffs = []
    for k in COMPARED_SETTINGS:
        a, b = old.get(k), settings.get(k)
        if a != b:
            label = {"model_key": "model", "shard_format": "format"}.get(k, k)
            shown_a = old.get("model") if k == "model_key" else a
            shown_b = settings.get("model") if k == "model_key" else b
            diffs.append(f"{label} {_describe(shown_a)} (this run: {_describe(shown_b)})")
    if diffs:
        raise OutputError(f"--resume: {folder / MANIFEST} was written with other settings: {'; '.join(diffs)}; "
                          f"run with the same settings, or give another --out (or --overwrite to start over)")
    entries = list(old.get("shards", []))
    ok: list[dict] = []
    dropped: list[str] = []

    def check(e: dict) -> str | None:
        p = folder / str(e.get("file", ""))
        if not SHARD_RE.match(p.name):
            return f"{e.get('file')!r}: not a shard file name"
        if not p.is_file():
            return f"{p.name}: missing"
        if len(e.get("ids", ())) != e.get("count") or len(e.get("original_sizes", ())) != e.get("count") \
                or len(e.get("model_sizes", ())) != e.get("count"):
            return f"{p.name}: the manifest's counts disagree"
        if p.stat().st_size != e.get("bytes"):
            return f"{p.name}: size {p.stat().st_size} bytes, the manifest says {e.get('bytes')}"
        if sha256_file(p) != e.get("sha256"):
            return f"{p.name}: checksum mismatch"
        return None

    if len(entries) > 8:
        note(f"--resume: verifying {len(entries)} shards (sizes and sha256 checksums)")
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
        problems = list(ex.map(check, entries))
    done: set[str] = set()
    for e, why in zip(entries, problems):
        if why is None:
            dup = done.intersection(e["ids"])
            if dup:
                why = f"{e['file']}: repeats ids of earlier shards (e.g. {next(iter(dup))})"
        if why is None:
            ok.append(e)
            done.update(e["ids"])
        else:
            dropped.append(f"{why}; its {e.get('count', '?')} image(s) will be embedded again")
            _unlink(folder / str(e.get("file", "")))
    listed = {e["file"] for e in ok}
    removed = []
    for p in sorted(folder.iterdir()):
        if (SHARD_RE.match(p.name) and p.name not in listed) or TMP_RE.match(p.name):
            _unlink(p)
            removed.append(p.name)
    indices = [int(SHARD_RE.match(e["file"]).group(1)) for e in ok]
    return ResumeState(ok, done, list(old.get("runs", [])), max(indices, default=-1) + 1, dropped, removed, old)


# -- writing -----------------------------------------------------------------------------------------

class ShardedOutput:
    """Writes shards and keeps the manifest current. :meth:`add` hands a shard to a background
    thread (one shard written while the next is computed; at most one waits), so the model does
    not wait on the disk. Errors of the writer come out of the next :meth:`add` or :meth:`finish`."""

    def __init__(self, folder: Path, settings: dict, *, state: ResumeState | None, lock=None, run: dict | None = None):
        """``state`` and ``lock`` come from :func:`prepare_folder`. A fresh start (``state``
        None) creates the folder if needed, takes its lock, and removes an earlier run's files
        (``--overwrite``); the manifest is written at once."""
        self.folder = Path(folder)
        self.settings = dict(settings)
        self.fmt = settings["shard_format"]
        if self.fmt not in SHARD_FORMATS:
            raise OutputError(f"--format: expected one of {', '.join(SHARD_FORMATS)}, got {self.fmt!r}")
        if state is None:
            try:
                self.folder.mkdir(exist_ok=True)
            except OSError as e:
                raise OutputError(f"--out {self.folder}: cannot create the folder ({e.strerror or e})") from None
            if lock is None:
                lock = _lock(self.folder)
            for p in self.folder.iterdir():
                if p.name != LOCK_NAME and _ours(p.name):
                    _unlink(p)
            _fsync_dir(self.folder)
        self._lock = lock
        self._entries: list[dict] = list(state.shards) if state else []
        self._frags: list[str] = [json.dumps(e, separators=(",", ":")) for e in self._entries]
        self._skipped: list[dict] = []
        self._next = state.next_index if state else 0
        self.runs = list(state.runs) if state else []
        self.run = dict(run or {})
        self.run.update(started=_now(), status="running", embedded=0, skipped=0, shards=0, resumed=state is not None)
        self.runs.append(self.run)
        self.created = (state.previous.get("created") if state else None) or _now()
        self._written_this_run = 0
        self._mutex = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastradio-shards")
        self._pending: concurrent.futures.Future | None = None
        self._write_manifest(complete=False)

    @property
    def count(self) -> int:
        return sum(int(e["count"]) for e in list(self._entries))

    @property
    def shard_count(self) -> int:
        return len(self._entries)

    def skip(self, id_: str, reason: str) -> None:
        with self._mutex:
            self._skipped.append({"id": id_, "reason": reason})
            self.run["skipped"] = len(self._skipped)

    def add(self, results: list[Result]) -> None:
        self.wait()
        if results:
            self._pending = self._pool.submit(self._write_shard, list(results))

    def wait(self) -> None:
        fut, self._pending = self._pending, None
        if fut is not None:
            fut.result()

    def finish(self, status: str) -> None:
        """Wait for the writer, record the run's end (``complete``, ``stopped``, ``interrupted``,
        ``failed``) and release the folder."""
        try:
            try:
                self.wait()
            finally:
                self._pool.shutdown(wait=True)
                self.run.update(status=status, finished=_now())
                self._write_manifest(complete=status == "complete")
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def _write_shard(self, results: list[Result]) -> None:
        index = self._next
        self._next += 1
        self._written_this_run += 1
        k = self._written_this_run
        path = self.folder / shard_name(index, self.fmt)
        tmp = _tmp_name(path)
        try:
            _WRITERS[self.fmt](tmp, index, results, self.settings)
            _crash_hook("tmp", k, tmp)
            digest, size = sha256_file(tmp), os.path.getsize(tmp)
            _publish(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise
        _crash_hook("orphan", k)
        entry = {"index": index, "file": path.name, "count": len(results), "bytes": size, "sha256": digest,
                 "written": _now(), "ids": [r.id for r in results],
                 "original_sizes": [list(r.original_size) for r in results],
                 "model_sizes": [list(r.model_size) for r in results]}
        frag = json.dumps(entry, separators=(",", ":"))
        with self._mutex:
            self._entries.append(entry)
            self._frags.append(frag)
            self.run["embedded"] += len(results)
            self.run["shards"] += 1
        self._write_manifest(complete=False)
        _crash_hook("shard", k)

    def _write_manifest(self, *, complete: bool) -> None:
        with self._mutex:
            skipped = list(self._skipped)
            self.run["updated"] = _now()
            head = {"format": LAYOUT_NAME, "format_version": LAYOUT_VERSION}
            head.update(self.settings)
            head.update(created=self.created, updated=self.run["updated"], complete=complete, count=self.count,
                        shard_count=len(self._entries), skipped_count=len(skipped), runs=self.runs)
            text = json.dumps(head, indent=1)
            frags = list(self._frags)
        # the shard entries (the bulk: ~100 bytes per image) are encoded once each, when written
        body = (text[:-2] + ',\n "skipped": ' + json.dumps(skipped) + ',\n "shards": [\n'
                + ",\n".join(frags) + "\n ]\n}\n")
        _write_atomic(self.folder / MANIFEST, body.encode("utf-8"))


class MemoryOutput:
    """The single-file (``--out FILE.safetensors``) output: results kept in memory, written by
    the caller at the end."""

    def __init__(self):
        self.results: list[Result] = []
        self.skipped: list[dict] = []

    @property
    def count(self) -> int:
        return len(self.results)

    shard_count = 0

    def skip(self, id_: str, reason: str) -> None:
        self.skipped.append({"id": id_, "reason": reason})

    def add(self, results: list[Result]) -> None:
        self.results.extend(results)

    def wait(self) -> None:
        pass

    def finish(self, status: str) -> None:
        pass
