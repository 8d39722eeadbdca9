"""Finding a model's files: ``synthetic:`` names, local folders, and the Hugging Face Hub cache.

:func:`resolve` tries, in order:

1. ``synthetic:<name>[@seed]`` (e.g. ``synthetic:C-RADIOv2-B``, ``synthetic:test-d128@3``): random
   weights generated locally by :mod:`fastradio.synthetic` into
   ``$FASTRADIO_CACHE/synthetic/<canonical name>-seed<k>`` (default ``~/.cache/fastradio``), reused
   once complete.
2. An existing local path: a folder with ``config.json`` and ``model.safetensors`` (or
   ``model.safetensors.index.json`` and its shards), or a file inside such a folder.
3. A known model name or alias (``C-RADIOv2-B``, ``c-radio_v2-g``, ``nvidia/C-RADIOv2-G``; exact
   normalisation only, see :func:`fastradio.configs.normalize_alias`) → its Hub repo id.
4. A name of another RADIO generation (``nvidia/RADIO-B``, ``RADIOv2.5-L``, ``E-RADIO``, ...;
   :data:`fastradio.configs.UNSUPPORTED_RELEASES`) is refused as not supported yet, with the
   reason, before any lookup.
5. Any other ``owner/name`` string: a raw Hub repo id, loaded with the same strict checks.

Hub repos are fetched with ``huggingface_hub.snapshot_download``, restricted to ``config.json``,
``*.safetensors``, ``model.safetensors.index.json`` and one source file, ``vit_patch_generator.py``,
which :mod:`fastradio.align` reads as *text* to learn the checkpoint's position resize (no
``.py`` file is ever imported or run; remote code is never executed). A snapshot cached without
that file (by an older fastradio) gets it fetched alone when online. The cache is tried first
with ``local_files_only=True``, so a cached model needs no network; ``HF_HUB_OFFLINE`` (read at
call time), ``HF_HUB_CACHE`` and ``HF_HOME`` are honoured.

A resolved Hub snapshot knows its identity (repo id and commit hash); so does a local path that
is a snapshot folder of a Hugging Face cache (``models--<owner>--<name>/snapshots/<commit>``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from .align import BUNDLED_FILE
from .checkpoint import CONFIG_NAME, INDEX_NAME, WEIGHTS_NAME, _is_pickle, find_weight_files, refuse_pickle
from .configs import KNOWN_MODELS, resolve_known_model, unsupported_release
from .errors import ModelNotFoundError, UnsupportedModelError

__all__ = ["ResolvedModel", "resolve", "ALLOW_PATTERNS", "SYNTHETIC_PREFIX"]

SYNTHETIC_PREFIX = "synthetic:"
#: the only files fetched from a Hub repo (the .py file is read as text, never run)
ALLOW_PATTERNS = (CONFIG_NAME, "*.safetensors", INDEX_NAME, BUNDLED_FILE)
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "ON", "YES", "TRUE"}


class ResolvedModel(NamedTuple):
    """Where a model's files are. source: "local", "cache", "download" or "synthetic".
    repo_id and revision (a commit hash): the Hub identity of a snapshot, when known."""

    folder: Path
    config_path: Path
    weight_files: list[Path]
    repo_id: str | None
    source: str
    revision: str | None = None


def _known_names() -> str:
    return ", ".join(m.name for m in KNOWN_MODELS if not m.test_only)


def _test_names() -> str:
    return ", ".join(m.name for m in KNOWN_MODELS if m.test_only)


def resolve(name_or_path: str | os.PathLike, *, revision: str | None = None) -> ResolvedModel:
    """Find the files of a model (see the module docstring for the order).

    revision: a Hub branch, tag or commit (Hub names only). Raises ModelNotFoundError (unknown
    name, missing folder or files, offline and not cached), UnsupportedModelError (a name of
    another RADIO generation, a pickle-only folder), CheckpointError (a broken sharded index),
    ValueError (malformed arguments)."""
    if revision is not None and not isinstance(revision, str):
        raise TypeError(f"revision: expected a string or None, got {type(revision).__name__}")
    if isinstance(name_or_path, os.PathLike):
        return _local(Path(name_or_path), revision)
    if not isinstance(name_or_path, str):
        raise TypeError(f"name_or_path: expected a str or os.PathLike, got {type(name_or_path).__name__}")
    name = name_or_path.strip()
    if not name:
        raise ValueError("name_or_path: expected a model name, Hub repo id or folder, got an empty string")

    if name.startswith(SYNTHETIC_PREFIX):
        if revision is not None:
            raise ValueError(f"revision applies to Hub models only, got revision={revision!r} for {name!r}")
        return _synthetic(name[len(SYNTHETIC_PREFIX):])

    path = Path(name).expanduser()
    if path.exists():
        return _local(path, revision)
    if _looks_like_path(name):
        raise ModelNotFoundError(f"{name}: no such file or folder (expected a folder with {CONFIG_NAME} and "
                                 f"{WEIGHTS_NAME}, a known model name, or a Hub repo id 'owner/name')")

    km = resolve_known_model(name)
    if km is not None:
        if km.test_only:
            raise ModelNotFoundError(
                f"{name!r} is a test-only architecture with no Hub repo: use 'synthetic:{km.name}' for random "
                f"weights, or a folder written by fastradio.synthetic.write_checkpoint")
        return _from_hub(km.hub_repo, revision)
    _refuse_unsupported(name)
    if _REPO_ID.match(name):
        return _from_hub(name, revision)
    raise ModelNotFoundError(
        f"unknown model {name!r}: expected one of {_known_names()} (case-insensitive, '-'/'_' ignored, "
        f"an 'nvidia/' prefix allowed), a Hub repo id 'owner/name', a folder with {CONFIG_NAME} and "
        f"{WEIGHTS_NAME}, or 'synthetic:<name>[@seed]' for random weights (also {_test_names()})")


def _refuse_unsupported(name: str, prefix: str = "") -> None:
    """Refuse a name of another RADIO generation before anything is looked up or downloaded."""
    release = unsupported_release(name)
    if release is not None:
        raise UnsupportedModelError(
            f"{prefix + name!r} names {release.family}, which fastradio does not support yet: {release.reason}. "
            f"Supported: {_known_names()}")


def _looks_like_path(name: str) -> bool:
    return (name.startswith((".", "~", "/")) or "\\" in name or name.count("/") > 1
            or os.path.isabs(name) or name.lower().endswith((".json", ".safetensors")) or _is_pickle(name))


# ---------------------------------------------------------------------------------------------

def _synthetic(spec: str) -> ResolvedModel:
    name, _, seed_text = spec.partition("@")
    seed = 0
    if seed_text or spec.endswith("@"):
        if not seed_text.isdigit():
            raise ValueError(f"synthetic:{spec}: expected synthetic:<name>[@seed] with a non-negative integer "
                             f"seed, got seed {seed_text!r}")
        seed = int(seed_text)
    km = resolve_known_model(name) if name else None
    if km is None:
        _refuse_unsupported(name, prefix="synthetic:")
        raise ModelNotFoundError(
            f"synthetic:{spec}: unknown model {name!r}: expected one of "
            f"{', '.join(m.name for m in KNOWN_MODELS)}")
    from .synthetic import synthetic_folder   # imported here: pulls in the generator only when used

    folder = synthetic_folder(km.name, seed)
    return _folder_files(folder, None, "synthetic")


def _local(path: Path, revision: str | None) -> ResolvedModel:
    if revision is not None:
        raise ValueError(f"revision applies to Hub models only, got revision={revision!r} for the local "
                         f"path {path}")
    if not path.exists():
        raise ModelNotFoundError(f"{path}: no such file or folder (expected a folder with {CONFIG_NAME} and "
                                 f"{WEIGHTS_NAME} or {INDEX_NAME})")
    if path.is_file():
        if _is_pickle(path.name):
            raise refuse_pickle(path)
        if path.name not in (CONFIG_NAME, WEIGHTS_NAME, INDEX_NAME) and not path.name.endswith(".safetensors"):
            raise ModelNotFoundError(f"{path}: expected a checkpoint folder (or a {CONFIG_NAME} / *.safetensors "
                                     f"file inside one), got a {path.suffix or 'plain'} file")
        path = path.parent
    path = path.absolute()
    repo_id, commit = hf_cache_identity(path)
    resolved = _folder_files(path.resolve(), repo_id, "local")
    return resolved._replace(revision=commit)


def hf_cache_identity(folder: Path) -> tuple[str | None, str | None]:
    """(repo id, commit) when ``folder`` is a snapshot folder of a Hugging Face cache,
    ``.../models--<owner>--<name>/snapshots/<40-hex commit>``; else (None, None). Read from the
    path as given (the cache's files are symlinks into ``blobs/``; the folder itself is not)."""
    parts = Path(folder).parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and _COMMIT.match(parts[-1]) \
            and parts[-3].startswith("models--"):
        owner_name = parts[-3][len("models--"):].split("--")
        if len(owner_name) == 2 and all(owner_name):
            return "/".join(owner_name), parts[-1]
    return None, None


def _folder_files(folder: Path, repo_id: str | None, source: str) -> ResolvedModel:
    config = folder / CONFIG_NAME
    if not config.is_file():
        found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        shown = ", ".join(found[:12]) + (f", ... ({len(found) - 12} more)" if len(found) > 12 else "")
        raise ModelNotFoundError(f"{folder}: missing {CONFIG_NAME} (expected {CONFIG_NAME} and {WEIGHTS_NAME} "
                                 f"or {INDEX_NAME}); found: {shown or '(nothing)'}")
    revision = folder.name if repo_id is not None and _COMMIT.match(folder.name) else None
    return ResolvedModel(folder, config, find_weight_files(folder), repo_id, source, revision)


# ---------------------------------------------------------------------------------------------
# the Hugging Face Hub
# ---------------------------------------------------------------------------------------------

def _hf_offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(var)
        if value:
            return value.strip().upper() in _TRUE
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hf_cache_dir() -> str | None:
    """The Hub cache from the environment at call time (huggingface_hub reads it at import)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.path.expanduser(os.environ[var])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def _how_to_get(repo_id: str) -> str:
    # `hf` is the Hugging Face CLI (huggingface_hub >= 0.34; `huggingface-cli` before). The repos
    # also hold a TorchHub pickle that fastradio never reads: no need to download it.
    return (f"download it once with network access (`hf download {repo_id} --exclude '*.pth.tar'`, or "
            f"fastradio.load('{repo_id}') while online), or copy its config.json and *.safetensors into a "
            f"folder and pass that folder's path, or use 'synthetic:<name>' for random weights in tests")


def _complete_snapshot(folder: Path, repo_id: str, source: str) -> ResolvedModel | None:
    try:
        return _folder_files(folder, repo_id, source)
    except ModelNotFoundError:
        return None


def _from_hub(repo_id: str, revision: str | None) -> ResolvedModel:
    import huggingface_hub
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    common = dict(revision=revision, cache_dir=_hf_cache_dir(), allow_patterns=list(ALLOW_PATTERNS))
    rev = f" (revision {revision})" if revision else ""
    cached = None
    try:
        folder = Path(huggingface_hub.snapshot_download(repo_id, local_files_only=True, **common))
        cached = _complete_snapshot(folder, repo_id, "cache")
    except LocalEntryNotFoundError:
        folder = None
    if cached is not None:
        if not (cached.folder / BUNDLED_FILE).is_file() and not _hf_offline():
            _fetch_bundled_file(repo_id, cached, common)
        return cached
    if _hf_offline():
        what = (f"the cached snapshot {folder} is incomplete (it needs {CONFIG_NAME} and {WEIGHTS_NAME} or "
                f"{INDEX_NAME})" if folder is not None else "it is not in the Hugging Face cache "
                f"({_hf_cache_dir() or 'the default cache'})")
        raise ModelNotFoundError(f"{repo_id}{rev}: offline (HF_HUB_OFFLINE is set) and {what}; {_how_to_get(repo_id)}")
    try:
        folder = Path(huggingface_hub.snapshot_download(repo_id, local_files_only=False, **common))
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as e:
        raise ModelNotFoundError(f"{repo_id}{rev}: the Hub refused or does not know this repo "
                                 f"({type(e).__name__}: {e})") from e
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        raise ModelNotFoundError(f"{repo_id}{rev}: could not download the files and they are not cached "
                                 f"({type(e).__name__}: {e}); {_how_to_get(repo_id)}") from e
    done = _complete_snapshot(folder, repo_id, "download")
    if done is None:
        found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise ModelNotFoundError(f"{repo_id}{rev}: the repo has no {CONFIG_NAME} with {WEIGHTS_NAME} or "
                                 f"{INDEX_NAME} (downloaded: {', '.join(found) or 'nothing'})")
    return done


def _fetch_bundled_file(repo_id: str, cached: ResolvedModel, common: dict) -> None:
    """Fetch the one source file fastradio reads as text into a snapshot cached without it (by an
    older fastradio). Best effort: a repo without the file, or no network, leaves the decision to
    :func:`fastradio.align.decide` (which refuses rather than guesses when it must)."""
    import huggingface_hub

    kw = dict(common, allow_patterns=[BUNDLED_FILE], revision=cached.revision or common.get("revision"))
    try:
        huggingface_hub.snapshot_download(repo_id, local_files_only=False, **kw)
    except Exception:  # noqa: BLE001  (any failure: the file stays absent, decide() handles that)
        pass
