"""fastradio on Ray Data (optional extra ``fastradio[ray]``): offline embedding of collections
too large for one machine. Importing ``fastradio`` never imports Ray; this package does, lazily.

- :class:`RadioEmbedder` (embedder.py): the callable class for ``Dataset.map_batches``; one
  model per actor, batches of image bytes or decoded arrays in, ``summary`` (+ features) out.
- ``fastradio embed --engine ray`` (engine.py): the CLI's run on a Ray cluster, writing the
  same shards + manifest as the one-machine path (and resumable by either).

Example::

    import ray
    from fastradio.ray import RadioEmbedder

    ds = ray.data.read_images("s3://bucket/images/", include_paths=True, mode="RGB")
    ds = ds.map_batches(RadioEmbedder, fn_constructor_kwargs={"model": "C-RADIOv3-L", "features": "pooled"},
                        batch_size=64, num_gpus=1, concurrency=8)
    ds.write_parquet("s3://bucket/embeddings/")
"""

from .embedder import FEATURES, BatchSource, RadioEmbedder, estimate_gpu_bytes

__all__ = ["RadioEmbedder", "BatchSource", "estimate_gpu_bytes", "FEATURES"]
