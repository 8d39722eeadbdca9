#!/usr/bin/env python3
"""Predicted per-op times of the wgmma_sm90a design on H100 / H200, written down before any GPU
ran it (issue 15, item 8): ViT-L/16 (C-RADIOv2-L) at 512 px, batch 32 and batch 1, bf16.

For each op of one block (and the patch embedding once): FLOPs, the bytes it must move, the floor
(the larger of FLOPs at the datasheet tensor peak and bytes at the datasheet HBM bandwidth), and
the time the design should reach under the assumptions below. The first GPU run
(benchmarks/gpu_check.py -> bench_ops rows) judges the design against these numbers; a gap larger
than the stated uncertainty means an assumption, or the kernel, is wrong.

    python benchmarks/predict_hopper.py            # the markdown table of benchmarks/README.md

Assumptions (design targets, not measurements):
- Tensor peak 989 TFLOP/s dense bf16 (H100 SXM and H200: the same 132 SMs and clocks), HBM 3.35 TB/s
  (H100 SXM) / 4.8 TB/s (H200).
- linear (wgmma_sm90a: 128 x 128 tiles, 4 stages of K = 64, two consumer warpgroups, persistent
  grid of min(tiles, 132) blocks): a busy SM sustains LINEAR_EFF of its share of the peak; the time
  is whole waves of tiles (ceil(tiles / 132) x one tile's time) plus FILL_US for the first stages
  and the last epilogue. Wave quantisation is what hurts batch 1.
- attention (FA3-style, 128 query rows per block = two consumer warpgroups of 64, 128-key steps):
  one block per (image, head, 128-query tile); a block costs its padded tile (128 x keys rounded up
  to 128) at ATTN_EFF of an SM's share of the peak. At head dim 64 the exp2 unit (16 per clock per
  SM) runs at the same score rate as the tensor cores (4 x 64 FLOPs per score), so even with
  softmax overlapped with the GEMMs (ping-pong) ~40 % is a good result; ATTN_EFF = 0.35.
- add_layer_norm, memory-bound: NORM_BW_EFF of the HBM bandwidth, at least LAUNCH_US.
- patch_embed: the K = 768 im2patch GEMM at PATCH_EFF of peak (reads fp32 pixels, small N).
"""

from __future__ import annotations

import math
import sys

PEAK = 989e12          # FLOP/s, dense bf16 tensor (datasheet)
SMS = 132
HBM = {"H100 SXM": 3.35e12, "H200": 4.8e12}
LINEAR_EFF = 0.70
ATTN_EFF = 0.35
NORM_BW_EFF = 0.85
PATCH_EFF = 0.40
FILL_US = 2.0
LAUNCH_US = 3.0

# C-RADIOv2-L: D 1024, 16 heads x 64, MLP 4096, 24 blocks, patch 16, 8 prefix tokens (spec).
D, HEADS, DH, F, DEPTH, PATCH, PREFIX = 1024, 16, 64, 4096, 24, 16, 8


def linear_row(name: str, n: int, k: int, m: int) -> dict:
    tiles = math.ceil(n / 128) * math.ceil(m / 128)
    tile_s = 2 * 128 * 128 * k / (LINEAR_EFF * PEAK / SMS)
    return {"op": name, "shape": f"N {n}, K {k}, M {m}", "flops": 2.0 * n * k * m,
            "bytes": 2.0 * (n * k + m * k + n * m + m),
            "predict_s": math.ceil(tiles / SMS) * tile_s + FILL_US * 1e-6,
            "note": f"{tiles} tiles = {tiles / SMS:.2f} waves"}


def attention_row(batch: int, t: int) -> dict:
    n = batch * t
    qtiles = math.ceil(t / 128)
    blocks = batch * HEADS * qtiles
    keys = math.ceil(t / 128) * 128
    block_s = 4 * 128 * keys * DH / (ATTN_EFF * PEAK / SMS)
    return {"op": "attention", "shape": f"{batch} x {t} tokens, {HEADS} x {DH}", "flops": 4.0 * batch * t * t * D,
            "bytes": 2.0 * (n * 3 * D + n * D),
            "predict_s": math.ceil(blocks / SMS) * block_s + FILL_US * 1e-6,
            "note": f"{blocks} blocks = {blocks / SMS:.2f} waves"}


def norm_row(n: int, bw: float) -> dict:
    nbytes = 2.0 * 4 * n * D  # bf16: x and delta read, the sum and the normalised rows written
    return {"op": "add_layer_norm (x2)", "shape": f"N {n}, D {D}", "flops": 0.0, "bytes": 2 * nbytes,
            "predict_s": 2 * max(nbytes / (NORM_BW_EFF * bw), LAUNCH_US * 1e-6), "note": "memory-bound"}


def patch_row(batch: int, hw: int) -> dict:
    return {"op": "patch_embed (once)", "shape": f"{batch} x 3 x 512 x 512", "flops": 2.0 * batch * hw * 768 * D,
            "bytes": 4.0 * batch * 3 * 512 * 512 + 2.0 * batch * (hw + PREFIX) * D + 2.0 * 768 * D,
            "predict_s": max(2.0 * batch * hw * 768 * D / (PATCH_EFF * PEAK), LAUNCH_US * 1e-6), "note": "K = 768"}


def rows(batch: int, gpu: str) -> list[dict]:
    hw = (512 // PATCH) ** 2
    t = hw + PREFIX
    n = batch * t
    out = [linear_row("linear qkv", n, D, 3 * D), attention_row(batch, t), linear_row("linear proj", n, D, D),
           norm_row(n, HBM[gpu]), linear_row("linear fc1 (+GELU)", n, D, F), linear_row("linear fc2", n, F, D)]
    for r in out:
        r["floor_s"] = max(r["flops"] / PEAK, r["bytes"] / HBM[gpu])
    p = patch_row(batch, hw)
    p["floor_s"] = max(p["flops"] / PEAK, p["bytes"] / HBM[gpu])
    return out + [p]


def table() -> str:
    lines = []
    for batch in (32, 1):
        for gpu in HBM:
            rs = rows(batch, gpu)
            lines += [f"**ViT-L/16 (C-RADIOv2-L) @ 512 px, batch {batch}, bf16, {gpu}** (per block; x {DEPTH} blocks)",
                      "", "| op | shape | GFLOP | MB moved | floor (us) | predicted (us) | TFLOP/s | note |",
                      "|---|---|---:|---:|---:|---:|---:|---|"]
            for r in rs:
                tf = f"{r['flops'] / r['predict_s'] / 1e12:.0f}" if r["flops"] else "-"
                lines.append(f"| {r['op']} | {r['shape']} | {r['flops'] / 1e9:.2f} | {r['bytes'] / 1e6:.1f} | "
                             f"{r['floor_s'] * 1e6:.1f} | {r['predict_s'] * 1e6:.1f} | {tf} | {r['note']} |")
            block = rs[:-1]
            fwd = DEPTH * sum(r["predict_s"] for r in block) + rs[-1]["predict_s"]
            floor = DEPTH * sum(r["floor_s"] for r in block) + rs[-1]["floor_s"]
            flops = DEPTH * sum(r["flops"] for r in block) + rs[-1]["flops"]
            lines += ["", f"Forward: floor {floor * 1e3:.2f} ms, predicted {fwd * 1e3:.2f} ms "
                          f"({flops / fwd / 1e12:.0f} TFLOP/s, {batch / fwd:.0f} images/s).", ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
