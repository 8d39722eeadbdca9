"""Render the README's feature-picture figure: each bundled sample image (fastradio.samples) next to
its PCA picture (first three principal components of the patch features as RGB, one basis per
image) and its token-norm heat map, one row per image.

    python benchmarks/make_pca_figure.py                       # synthetic:C-RADIOv2-B, CPU
    python benchmarks/make_pca_figure.py --model nvidia/C-RADIOv2-B --out /tmp/real.png

The default model has RANDOM weights (no download): its pictures follow the colours and edges of
the input, not its meaning. A real checkpoint gives semantic segments (objects of one kind share a
colour). The committed figure, benchmarks/figures/pca_samples.png, is this script's default output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def render(model_name: str, *, row_height: int = 150, device: str = "cpu", gap: int = 4) -> np.ndarray:
    from PIL import Image, ImageDraw

    import fastradio
    from fastradio import images, samples, viz

    model = fastradio.load(model_name, device=device, dtype=torch.float32)
    patch = int(model.patch_size)
    cells = []   # per image: (input, PCA picture, norm map), each (row_height, w_i, 3)
    for path in samples.sample_images():
        x = images.read_image(path)
        size = images.target_size("nearest", tuple(x.shape[1:]), model)
        with torch.inference_mode():
            feats = model(images.resize(x, size)[None].to(model.device)).features[0].float().cpu()
        h, w = size[0] // patch, size[1] // patch
        H = row_height
        W = max(round(x.shape[2] * H / x.shape[1]), 1)
        shown = np.asarray(Image.fromarray(viz.to_rgb_uint8(x)).resize((W, H), Image.Resampling.BICUBIC))
        cells.append([shown] + [viz.upscale(p, (H, W)) for p in (viz.pca_rgb(feats, h, w),
                                                                 viz.token_norm_map(feats, h, w))])
    # a grid of equal columns, each panel centred in its cell, so the column labels line up
    header, cw = 18, max(c[0].shape[1] for c in cells)
    canvas = np.full((header + len(cells) * (row_height + gap), 3 * cw + 2 * gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(cells):
        y = header + r * (row_height + gap)
        for c, panel in enumerate(row):
            x0 = c * (cw + gap) + (cw - panel.shape[1]) // 2
            canvas[y:y + row_height, x0:x0 + panel.shape[1]] = panel
    im = Image.fromarray(canvas)
    draw = ImageDraw.Draw(im)
    for c, label in enumerate(("input", "PCA: 3 components as RGB", "token norms")):
        draw.text((c * (cw + gap) + 2, 3), label, fill=(0, 0, 0))
    return np.asarray(im)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="synthetic:C-RADIOv2-B", help="model name (default: random weights, no download)")
    p.add_argument("--out", default=str(HERE / "figures" / "pca_samples.png"), help="PNG to write")
    p.add_argument("--row-height", type=int, default=150, help="height of each row in pixels")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    from fastradio import viz

    fig = render(args.model, row_height=args.row_height, device=args.device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    viz.save_png(fig, out)
    print(f"wrote {out} ({fig.shape[1]}x{fig.shape[0]}, {out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
