"""Op microbenchmarks: every backend against its PyTorch peer, in GB/s and as a fraction of the
device-to-device copy bandwidth measured in the same run (DESIGN.md §9; method in README.md).

pos_embed: the real 128 x 128 table, D in {768, 1024, 1280, 1536}, square grids for 224 to
4096 px, out dtype bf16 (+ fp32 on a few shapes). Peer: ``F.interpolate(bilinear,
align_corners=True)`` + top-left crop + cast, written out here. Bytes moved = table rows the
resize actually reads (distinct source taps of the crop, x D x 4 B) + output (h*w x D x
sizeof(out)); a kernel cannot do with less, so GB/s over copy GB/s is its roofline fraction.

    python benchmarks/bench_ops.py [--quick] [--json PATH] [--device cuda]
    python benchmarks/bench_ops.py --dry-run      # CPU, one tiny shape, wall clock: checks the code

Returns/writes a list of dicts, one per (impl, shape, dtype), plus one "copy" row.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from fastradio import backends  # noqa: E402

G = 128  # the stored grid of every C-RADIOv2 model
WIDTHS = (768, 1024, 1280, 1536)
PIXELS = (224, 512, 768, 1024, 2048, 4096)
QUICK_WIDTHS = (768, 1280)
QUICK_PIXELS = (512, 1024, 2048)


def torch_pos_embed(table: torch.Tensor, h: int, w: int, out_dtype: torch.dtype) -> torch.Tensor:
    """The PyTorch peer: what a user writes without fastradio."""
    g, _, d = table.shape
    m = max(h, w)
    if m == g and h == w:
        return table.reshape(g * g, d).to(out_dtype)
    grid = F.interpolate(table.permute(2, 0, 1)[None], size=(m, m), mode="bilinear", align_corners=True)
    return grid[0, :, :h, :w].permute(1, 2, 0).reshape(h * w, d).to(out_dtype)


def touched_rows(g: int, h: int, w: int) -> int:
    """Distinct (y, x) table rows that the top-left h x w window of the resize reads."""
    def axis(n: int) -> int:
        m = max(h, w)
        if m == 1:
            return 1
        src = np.float32(np.float32(g - 1) / np.float32(m - 1)) * np.arange(n, dtype=np.float32)
        i0 = np.minimum(np.floor(src).astype(np.int64), g - 1)
        lam = src - i0
        i1 = np.where(lam > 0, np.minimum(i0 + 1, g - 1), i0)  # a zero-weight tap need not be read
        return len(np.union1d(i0, i1))
    return axis(h) * axis(w)


def pos_embed_bytes(g: int, h: int, w: int, d: int, out_dtype: torch.dtype) -> int:
    esize = torch.empty((), dtype=out_dtype).element_size()
    return touched_rows(g, h, w) * d * 4 + h * w * d * esize


def _impls(device: torch.device, dtype: torch.dtype) -> tuple[dict, dict]:
    """name → fn(table, h, w, out_dtype) for every backend that runs here; name → reason if not."""
    impls = {"torch": torch_pos_embed}
    skipped = {}
    for name in backends.BACKENDS:
        reasons = backends.refusals(name, "pos_embed", device, dtype)
        if reasons:
            skipped[name] = "; ".join(reasons)
            continue
        mod = backends.get(name)
        if name == "cuda" and hasattr(mod, "build_info"):
            tiers = mod.build_info().get("tiers", {}).get("pos_embed", [])
            for tier in tiers:
                try:
                    mod.resolve_tier("pos_embed", device, tier)
                except RuntimeError as e:
                    skipped[f"cuda[{tier}]"] = str(e)
                    continue
                impls[f"cuda[{tier}]"] = functools.partial(mod.pos_embed, tier=tier)
            if tiers:
                continue
        impls[name] = mod.pos_embed
    return impls, skipped


def bench_pos_embed(device: torch.device, shapes: list[tuple[int, int, int, torch.dtype]],
                    copy_gbps: float, reps: int, graphs: bool) -> list[dict]:
    rows = []
    reported_skips = set()
    for d, h, w, dtype in shapes:
        impls, skipped = _impls(device, dtype)
        for name, why in skipped.items():
            if (name, dtype) not in reported_skips:
                reported_skips.add((name, dtype))
                rows.append({"op": "pos_embed", "impl": name, "out_dtype": str(dtype), "skipped": why})
        gen = torch.Generator().manual_seed(d * 7 + h)
        table = (torch.randn(G, G, d, generator=gen) * 0.02).to(device)
        expect = torch_pos_embed(table, h, w, torch.float32)
        nbytes = pos_embed_bytes(G, h, w, d, dtype)
        base = None
        for name, fn in impls.items():
            row = {"op": "pos_embed", "impl": name, "device": str(device), "G": G, "D": d, "h": h, "w": w,
                   "px": f"{h * 16}x{w * 16}", "out_dtype": str(dtype), "bytes": nbytes}
            try:
                out = fn(table, h, w, dtype)
                row["max_abs_err_vs_torch_fp32"] = (out.float() - expect).abs().max().item()
                t = common.time_fn(fn, [(table, h, w, dtype)], reps=reps, device=device)
                g = common.time_graph(fn, [(table, h, w, dtype)], device=device) if graphs else None
            except Exception as e:  # noqa: BLE001 - one failing impl must not end the run
                row["error"] = f"{type(e).__name__}: {e}"[:500]
                rows.append(row)
                continue
            gbps = nbytes / (t.median_ms * 1e-3) / 1e9
            row.update(median_us=t.median_ms * 1e3, p10_us=t.p10_ms * 1e3, p90_us=t.p90_ms * 1e3,
                       reps=t.reps, method=t.method, GBps=gbps, frac_copy=gbps / copy_gbps if copy_gbps else None)
            if g is not None:
                row.update(graph_us=g.median_ms * 1e3, GBps_graph=nbytes / (g.median_ms * 1e-3) / 1e9)
                row["frac_copy_graph"] = row["GBps_graph"] / copy_gbps if copy_gbps else None
            if name == "torch":
                base = t.median_ms
            row["speedup_vs_torch"] = base / t.median_ms if base else None
            rows.append(row)
    return rows


def run(device: str | torch.device = "cuda", quick: bool = False, dry_run: bool = False) -> list[dict]:
    """All op benchmarks on ``device``; a list of dicts (see module doc)."""
    device = torch.device(device)
    if dry_run or device.type != "cuda":
        shapes = [(64, 2, 3, torch.bfloat16), (64, 14, 14, torch.float32)]
        reps, graphs = 5, False
    else:
        widths, pixels = (QUICK_WIDTHS, QUICK_PIXELS) if quick else (WIDTHS, PIXELS)
        shapes = [(d, p // 16, p // 16, torch.bfloat16) for d in widths for p in pixels]
        shapes += [(1024, 32, 48, torch.bfloat16), (1024, 48, 32, torch.bfloat16)]  # non-square
        shapes += [(1024, p // 16, p // 16, torch.float32) for p in (512, 2048)]
        reps, graphs = (30 if quick else 50), True
    copy = common.copy_bandwidth(device)
    rows = [{"op": "copy", "impl": "torch.copy_", "device": str(device), **copy}]
    rows += bench_pos_embed(device, shapes, copy["GBps"], reps, graphs)
    return rows


def print_table(rows: list[dict]) -> None:
    copy = next((r for r in rows if r["op"] == "copy"), None)
    if copy:
        print(f"copy bandwidth: {copy['GBps']:.0f} GB/s ({copy['method']})")
    print(f"{'op':<10}{'impl':<18}{'dtype':<16}{'D':>6}{'px':>11}{'us':>10}{'graph us':>10}{'GB/s':>9}"
          f"{'copy%':>7}{'x torch':>9}")
    for r in rows:
        if r["op"] == "copy":
            continue
        if "skipped" in r or "error" in r:
            print(f"{r['op']:<10}{r['impl']:<18}{r.get('out_dtype', ''):<16}  "
                  + ("skipped: " + r["skipped"] if "skipped" in r else "ERROR: " + r["error"]))
            continue
        frac = f"{100 * r['frac_copy']:.0f}" if r.get("frac_copy") else "-"
        gus = f"{r['graph_us']:.1f}" if r.get("graph_us") else "-"
        sp = f"{r['speedup_vs_torch']:.2f}" if r.get("speedup_vs_torch") else "-"
        print(f"{r['op']:<10}{r['impl']:<18}{r['out_dtype']:<16}{r['D']:>6}{r['px']:>11}{r['median_us']:>10.1f}"
              f"{gus:>10}{r['GBps']:>9.0f}{frac:>7}{sp:>9}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repetitions")
    ap.add_argument("--dry-run", action="store_true", help="CPU-sized shapes, wall clock: checks the code runs")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args(argv)
    rows = run(args.device, quick=args.quick, dry_run=args.dry_run)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
