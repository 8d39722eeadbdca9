"""The ``fastradio embed`` pipeline for collections of any size.

    sources (files, folders, --file-list, --samples)          sources.py
      → items (id, source, ref), deterministic order, duplicates dropped
      → loader workers: full decode + RGB + resize              loader.py (DecodeDataset, iterate)
      → batches grouped by model size, mixed sizes packed       loader.py (Batcher)
      → the model                                               pipeline.py (forward, run)
      → shards written as they fill + _manifest.json            store.py (ShardedOutput)
         or one safetensors file at the end (--out *.safetensors; MemoryOutput)
    progress on stderr: a bar on a terminal, else log lines     progress.py

Reading an output folder back::

    from fastradio import embed
    data, manifest = embed.load("embeddings/")   # ids, summary (N, 3D), pooled / features, sizes
"""

from .loader import Batcher, Decoded, DecodeDataset, DecodeStream, Geometry, default_workers, iterate
from .pipeline import Options, Stats, StopRun, forward, run
from .progress import Progress, fmt_duration
from .sources import FileListSource, FileSource, Item, PathsSource, SamplesSource, Source, collect_items
from .store import (MANIFEST, MemoryOutput, OutputError, Result, ShardedOutput, load, prepare_folder, read_manifest,
                    read_shard)

__all__ = ["Batcher", "Decoded", "DecodeDataset", "DecodeStream", "Geometry", "default_workers", "iterate", "Options", "Stats",
           "StopRun", "forward", "run", "Progress", "fmt_duration", "FileListSource", "FileSource", "Item",
           "PathsSource", "SamplesSource", "Source", "collect_items", "MANIFEST", "MemoryOutput", "OutputError",
           "Result", "ShardedOutput", "load", "prepare_folder", "read_manifest", "read_shard"]
