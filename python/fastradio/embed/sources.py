"""Where the images of an ``embed`` run come from: small pluggable sources.

A :class:`Source` does two things:

- :meth:`Source.entries` (main process, once per run): the images it holds, as ``(id, ref)``
  pairs in a deterministic order. ``id`` is a string that names the image in the output and is
  how ``--resume`` recognises work already done; ``ref`` is whatever :meth:`Source.read` needs
  (a path for files) and must be picklable, because it travels to the loader workers.
- :meth:`Source.read` (loader workers): one ``ref`` → (3, H, W) float32 RGB in [0, 1], fully
  decoded, raising :class:`fastradio.images.ImageInputError` (one line naming the image) when it
  cannot. Sources are pickled to the workers, so keep them small (no open files, no models).

Sources today: :class:`PathsSource` (files and folders named on the command line),
:class:`FileListSource` (a text file of paths, ``--file-list``), :class:`SamplesSource`
(``--samples``). A source of images stored as bytes (Parquet columns, WebDataset tars) fits the
same two methods: ``entries`` lists (id, (file, row)) and ``read`` decodes the bytes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

__all__ = ["Source", "Item", "PathsSource", "FileListSource", "SamplesSource", "FileSource", "collect_items"]


class Item(NamedTuple):
    """One image of a run: its id, the source that reads it (index into the run's source list)
    and the source's reference to it."""

    id: str
    source: int
    ref: Any


class Source:
    """Base class: a deterministic sequence of images (see the module docstring)."""

    #: short name used in messages and the manifest
    kind = "source"

    def entries(self) -> Iterable[tuple[str, Any]]:
        raise NotImplementedError

    def read(self, ref: Any, *, background=(255, 255, 255), exif_transpose: bool = True):
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind


class FileSource(Source):
    """Image files given as paths; the id is the path as given (a string)."""

    kind = "files"

    def __init__(self, paths: Sequence[str | os.PathLike], what: str = "files"):
        self.paths = [str(p) for p in paths]
        self.what = what

    def entries(self) -> Iterator[tuple[str, Any]]:
        for p in self.paths:
            yield p, p

    def read(self, ref, *, background=(255, 255, 255), exif_transpose: bool = True):
        from fastradio import images

        return images.read_image(ref, background=background, exif_transpose=exif_transpose)

    def describe(self) -> str:
        return f"{len(self.paths)} {self.what}"


class PathsSource(FileSource):
    """Files and folders as on the command line, expanded by
    :func:`fastradio.images.expand_inputs` (folders: files with an image extension, sorted; with
    ``recursive`` the whole tree). A path that does not exist is an ``ImageInputError`` here,
    before anything runs; what a folder holds besides images is reported through ``on_skip``."""

    kind = "paths"

    def __init__(self, inputs: Iterable[str | os.PathLike], *, recursive: bool = False,
                 on_skip: Callable[[Path, str], None] | None = None):
        from fastradio import images

        super().__init__(images.expand_inputs(inputs, recursive=recursive, on_skip=on_skip), "files from the arguments")


class FileListSource(FileSource):
    """A text file with one image path per line (``--file-list FILE``; ``-`` reads standard
    input). Leading and trailing white space is stripped, empty lines and lines starting with
    ``#`` are ignored, relative paths are relative to the current directory (as ``tar -T`` and
    ``xargs`` read them). The files are not checked here: one that is missing or unreadable is
    reported when a loader worker reaches it, like any unreadable image."""

    kind = "file-list"

    def __init__(self, list_path: str | os.PathLike):
        from fastradio import images

        self.list_path = str(list_path)
        try:
            if self.list_path == "-":
                text = sys.stdin.read()
            else:
                with open(self.list_path, encoding="utf-8") as f:
                    text = f.read()
        except FileNotFoundError:
            raise images.ImageInputError(f"--file-list {self.list_path}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise images.ImageInputError(f"--file-list {self.list_path}: cannot read ({e})") from None
        paths = []
        for line in text.splitlines():
            s = line.strip()
            if s and not s.startswith("#"):
                paths.append(s)
        where = "standard input" if self.list_path == "-" else self.list_path
        super().__init__(paths, f"files listed in {where}")


class SamplesSource(FileSource):
    """fastradio's built-in sample images (:mod:`fastradio.samples`; generated on first use)."""

    kind = "samples"

    def __init__(self):
        from fastradio import samples

        super().__init__(samples.sample_images(), "sample images")


def collect_items(sources: Sequence[Source], *, on_duplicates: Callable[[int, str], None] | None = None) -> list[Item]:
    """All images of ``sources``, in order, as :class:`Item`. An id seen before is dropped (it
    would make the output ambiguous and ``--resume`` unable to tell the copies apart); the
    number dropped and the first such id go to ``on_duplicates``."""
    seen: set[str] = set()
    out: list[Item] = []
    dups, first = 0, None
    for k, src in enumerate(sources):
        for id_, ref in src.entries():
            id_ = str(id_)
            if id_ in seen:
                dups += 1
                first = first or id_
                continue
            seen.add(id_)
            out.append(Item(id_, k, ref))
    if dups and on_duplicates is not None:
        on_duplicates(dups, first)
    return out
