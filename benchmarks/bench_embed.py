"""Throughput of ``fastradio embed`` on CPU: a naive loop vs the one-machine pipeline (``--workers
1`` / ``2``) vs ``--engine ray`` with 2 CPU workers, on the same generated JPEGs.

- naive: for each file, Pillow open + RGB, fastradio's resize, one model call per image, in one
  process (what a first script does);
- local-w1 / local-w2: ``fastradio embed -j N`` (N decode processes, batches by size, shards);
- ray-2cpu: ``fastradio embed --engine ray --num-workers 2 -j 1`` on a local Ray cluster started
  before the clock starts (its start-up is reported separately).

Every configuration embeds the same images with the same model into a fresh folder; images/s is
images / wall seconds of the whole command, model load included (the synthetic models load in
well under a second). On a small shared machine the numbers are noisy: run ``--repeat`` times and
the median is reported.

    python benchmarks/bench_embed.py [--images 500] [--size 128x160] [--model synthetic:test-d128]
        [--repeat 2] [--json benchmarks/results/embed-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(folder: Path, n: int, h: int, w: int) -> list[Path]:
    """Smooth random images (noise compresses badly and makes JPEG decode unrealistically slow)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        g = np.random.default_rng(i)
        small = g.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((w + (i % 3) * 8, h + (i % 5) * 4), Image.BILINEAR)
        p = folder / f"img{i:05d}.jpg"
        im.save(p, quality=90)
        out.append(p)
    return out


def naive(paths, model_name: str) -> float:
    import torch

    import fastradio
    from fastradio import images

    t0 = time.perf_counter()
    model = fastradio.load(model_name, device="cpu", backend="reference")
    with torch.inference_mode():
        for p in paths:
            with Image.open(p) as im:
                x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
            x = images.resize(x, model.get_nearest_supported_resolution(*x.shape[1:]))
            model(x[None])
    return time.perf_counter() - t0


def cli_run(folder: Path, out: Path, model_name: str, *extra) -> float:
    from fastradio import cli

    t0 = time.perf_counter()
    rc = cli.main([str(a) for a in ("embed", folder, "-m", model_name, "-o", out, "--backend", "reference",
                                    "--features", "pooled", "-b", 16, "-q", *extra)])
    dt = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"fastradio embed {' '.join(map(str, extra))} failed (exit {rc})")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--size", default="128x160", help="HxW of the generated images (a few px more on some)")
    ap.add_argument("--model", default="synthetic:test-d128")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    h, w = (int(v) for v in a.size.split("x"))
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("FASTRADIO_CACHE", str(tmp / "cache"))
        paths = make_images(tmp / "imgs", a.images, h, w)
        runs: dict[str, list[float]] = {"naive": [], "local-w1": [], "local-w2": []}
        ray_start = None
        if not a.no_ray:
            import ray

            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            t0 = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            ray_start = time.perf_counter() - t0
            runs["ray-2cpu"] = []
        naive(paths[:8], a.model)   # warm-up: the synthetic checkpoint is generated once
        for r in range(a.repeat):
            runs["naive"].append(naive(paths, a.model))
            runs["local-w1"].append(cli_run(tmp / "imgs", tmp / f"w1-{r}", a.model, "-j", 1))
            runs["local-w2"].append(cli_run(tmp / "imgs", tmp / f"w2-{r}", a.model, "-j", 2))
            if "ray-2cpu" in runs:
                runs["ray-2cpu"].append(cli_run(tmp / "imgs", tmp / f"ray-{r}", a.model, "--engine", "ray",
                                                "--num-workers", 2, "-j", 1))
        if ray_start is not None:
            import ray

            ray.shutdown()
    for k, ts in runs.items():
        med = statistics.median(ts)
        results[k] = {"seconds": ts, "median_s": med, "images_per_s": a.images / med}
        print(f"{k:10s} {a.images / med:7.1f} images/s  (median of {len(ts)}: {med:.2f} s; runs {', '.join(f'{t:.2f}' for t in ts)})")
    if ray_start is not None:
        print(f"ray.init (local cluster, 2 CPUs): {ray_start:.1f} s, not included above")
    if a.json:
        import torch

        doc = {"what": "fastradio embed throughput on CPU (wall clock, model load included)",
               "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
                           "processor": platform.processor() or platform.machine(), "note": "shared, noisy"},
               "torch": torch.__version__, "model": a.model, "backend": "reference", "images": a.images,
               "size": [h, w], "batch": 16, "features": "pooled", "ray_init_s": ray_start, "results": results}
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
