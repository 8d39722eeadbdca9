"""Tiny launches of every CUDA kernel variant, for compute-sanitizer (the sanitize steps of
benchmarks/gpu_check.py: memcheck, racecheck, synccheck).

    python benchmarks/sanitize_cases.py [--json PATH] [--budget-s S] [--only SUBSTR]
    python benchmarks/sanitize_cases.py --list       # the case ids
    python benchmarks/sanitize_cases.py --dry-run    # CPU: inputs and reference values, no launch

Each case launches one op / tier / dtype once through ``fastradio.backends.cuda`` with the tier
forced, on shapes chosen to reach each kernel variant the launcher can pick (partial tiles, the
packed and dense attention schedules, the 4- and 8-warp attention blocks, the aligned, odd-K and
many-tile GEMM paths, the cached, scalar and wide LayerNorm kernels, ...) while staying tiny: the
sanitizers slow kernels down by orders of magnitude. The output is checked against the reference
backend run in fp32 on the CPU from the same (already rounded) inputs (relative L2 within a
per-dtype tolerance, and finite), so that the GPU runs nothing but the kernel under test and
host <-> device copies (no torch kernel to instrument or to blame). The tensor-core tiers come
first, then the CUDA-core tier of every op; a case that would not fit ``--budget-s`` (seconds from
process start, imports included) is recorded as skipped, so a slow sanitizer shortens the run
instead of timing the step out.

Writes ``{"script", "mode", "device", "cases": [...], "counts", "ok"}`` to ``--json``; exits 1 if
a case failed (wrong values, an exception) or none ran, else 0 (the sanitizer's own errors give
its ``--error-exitcode``).
"""

from __future__ import annotations

import time

_T_START = time.monotonic()  # the budget counts from here: process start-up and imports included

import argparse
import json
import math
import sys
import zlib
from dataclasses import dataclass, field

import torch

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
#: Relative L2 against the fp32 CPU reference, by the output's dtype: a few roundings of the
#: output dtype (the thorough numerics checks are the pytest suite's; this catches garbage).
TOLERANCE = {F32: 2e-5, F16: 5e-3, BF16: 3e-2}
#: SMs assumed where no GPU is present (dry run), for the shapes that depend on the SM count.
DRY_RUN_SMS = 132


@dataclass
class Case:
    id: str
    op: str
    tier: str
    dtype: torch.dtype  # compute dtype (the tier's input dtype)
    shape: dict = field(default_factory=dict)
    why: str = ""  # the kernel variant this case reaches


def _attention(tier, dtype, head_dim, lengths, heads=2, why=""):
    tag = "x".join(map(str, lengths)) if isinstance(lengths, (list, tuple)) else lengths
    return Case(f"attention/{tier}/{_dt(dtype)}/hd{head_dim}/{tag}", "attention", tier, dtype,
                dict(head_dim=head_dim, lengths=lengths, heads=heads), why)


def _linear(tier, dtype, n, m, k, epilogue, why=""):
    return Case(f"linear/{tier}/{_dt(dtype)}/{n}x{m}x{k}/{epilogue}", "linear", tier, dtype,
                dict(n=n, m=m, k=k, epilogue=epilogue), why)


def _patch_embed(tier, dtype, b, h, w, d, prefix, why=""):
    return Case(f"patch_embed/{tier}/{_dt(dtype)}/{b}x{h}x{w}/d{d}/p{prefix}", "patch_embed", tier, dtype,
                dict(b=b, h=h, w=w, d=d, prefix=prefix), why)


def _dt(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


#: Attention lengths standing for "enough one-query-tile images for 8-warp blocks": 2 x SMs + 8
#: images of 3 tokens, one head (the mma_sm80 launcher takes 8 warps at >= 2 blocks of 128 per SM).
MANY_IMAGES = "many-images"

CASES: list[Case] = [
    # --- tensor-core tiers ---
    _attention("mma_sm80", F16, 80, [1, 7, 70], why="packed schedule, one-token image, partial key tile, 4 warps"),
    _attention("mma_sm80", BF16, 64, [130, 130], why="dense schedule, 2 query tiles, 3 key tiles (pipelined)"),
    _attention("mma_sm80", BF16, 80, MANY_IMAGES, heads=1, why="8-warp blocks"),
    _attention("mma_sm75", F16, 64, [1, 7, 70], why="packed schedule, register-staged copies, 8 warps"),
    _attention("mma_sm75", F16, 80, [130], why="2 query tiles, 3 key tiles"),
    _attention("wgmma_sm90a", BF16, 80, [1, 7, 300], why="TMA + mbarrier K/V pipeline (3 tiles, 2 stages), wgmma "
               "SS/RS with MN-major V, 32-byte tail region, packed schedule, masked last tile"),
    _attention("wgmma_sm90a", F16, 72, [130, 130], why="dense schedule, Dh 72 (zero-filled K tail)"),
    _linear("wgmma_sm90a", BF16, 67, 136, 320, "bias_gelu_residual",
            why="TMA + mbarrier pipeline over 5 k-steps, wgmma, TMA-stored epilogue (M % 8 == 0)"),
    _linear("wgmma_sm90a", F16, 37, 100, 64, "bias_residual", why="M % 8 != 0: masked epilogue stores"),
    _linear("wgmma_sm90a", BF16, "many", "many", 64, "bias", why="persistent grid: more tiles than SMs"),
    _linear("mma_sm80", F16, 67, 80, 64, "bias_gelu", why="small grid: the 64 x 128 tile, cp.async"),
    _linear("mma_sm80", BF16, 37, 41, 75, "bias_residual", why="K % 8 != 0, odd M: predicated loads and stores"),
    _linear("mma_sm80", BF16, "many", "many", 64, "bias", why="grid >= SMs: the 128 x 128 4-stage tile"),
    _linear("mma_sm75", F16, 67, 80, 64, "bias_gelu_residual", why="aligned"),
    _linear("mma_sm75", F16, 37, 41, 75, "none", why="K % 8 != 0, odd M"),
    _patch_embed("mma_sm80", F16, 2, 32, 48, 80, 8, why="partial row and column tiles, prefix rows"),
    _patch_embed("mma_sm80", BF16, 1, 48, 32, 200, 0, why="no prefix"),
    _patch_embed("mma_sm75", F16, 2, 32, 48, 80, 8, why="partial tiles, prefix rows"),
    # --- cuda_core of every op ---
    _attention("cuda_core", F32, 80, [1, 7, 70], why="packed schedule, partial key step"),
    _attention("cuda_core", BF16, 64, [40, 40], why="dense schedule"),
    _attention("cuda_core", F16, 64, [33], why="one image, a 32-key step and one key"),
    _linear("cuda_core", F32, 67, 80, 64, "bias_gelu_residual", why="aligned, vector epilogue"),
    _linear("cuda_core", F32, 37, 41, 75, "bias", why="K % 8 != 0, odd M"),
    _linear("cuda_core", BF16, 67, 80, 64, "bias_gelu", why="16-bit"),
    _patch_embed("cuda_core", F32, 2, 32, 48, 80, 8, why="fp32, prefix rows"),
    _patch_embed("cuda_core", BF16, 1, 16, 64, 33, 1, why="odd width: scalar epilogue"),
    Case("add_layer_norm/cuda_core/float32/5x1536/delta", "add_layer_norm", "cuda_core", F32,
         dict(n=5, d=1536, x_dtype=F32, delta=True), "vectorised, row over several warps"),
    Case("add_layer_norm/cuda_core/bfloat16/13x80/delta", "add_layer_norm", "cuda_core", BF16,
         dict(n=13, d=80, x_dtype=BF16, delta=True), "vectorised, several rows per warp"),
    Case("add_layer_norm/cuda_core/bfloat16/7x33/fp32-residual", "add_layer_norm", "cuda_core", BF16,
         dict(n=7, d=33, x_dtype=F32, delta=True), "scalar path, fp32 residual"),
    Case("add_layer_norm/cuda_core/float16/3x4100/no-delta", "add_layer_norm", "cuda_core", F16,
         dict(n=3, d=4100, x_dtype=F32, delta=False), "the wide kernel (row beyond the register cache)"),
    Case("pos_embed/cuda_core/bfloat16/16to5x7/d80", "pos_embed", "cuda_core", BF16,
         dict(grid=16, d=80, h=5, w=7), "down-sampling, vectorised"),
    Case("pos_embed/cuda_core/float32/16to20x24/d33", "pos_embed", "cuda_core", F32,
         dict(grid=16, d=33, h=20, w=24), "up-sampling, scalar"),
    Case("pos_embed/cuda_core/float16/16to16x16/d128", "pos_embed", "cuda_core", F16,
         dict(grid=16, d=128, h=16, w=16), "the identity size"),
]

#: Epilogues of linear: name -> (bias, activation, residual).
EPILOGUES = {"bias": (True, "none", False), "bias_gelu": (True, "gelu", False), "none": (False, "none", False),
             "bias_residual": (True, "none", True), "bias_gelu_residual": (True, "gelu", True)}


# -- inputs and the reference -------------------------------------------------------------------------

def _gen(case: Case) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(case.id.encode()))


def resolve_shape(case: Case, sms: int) -> dict:
    """The case's shape with the SM-count-dependent sizes filled in."""
    s = dict(case.shape)
    if s.get("lengths") == MANY_IMAGES:
        s["lengths"] = [3] * (2 * sms + 8)
    if s.get("n") == "many":  # a grid of at least `sms` 128 x 128 tiles
        side = 128 * math.ceil(math.sqrt(sms))
        s["n"] = s["m"] = side
    return s


def make_inputs(case: Case, shape: dict) -> dict:
    """CPU tensors (rounded to their dtypes) and the other arguments of the op."""
    g = _gen(case)
    dt = case.dtype
    if case.op == "attention":
        lengths, heads, hd = shape["lengths"], shape["heads"], shape["head_dim"]
        x = torch.randn(sum(lengths), 3, heads, hd, generator=g)
        x[:, :2] *= 1.5
        cu = torch.tensor([0, *lengths], dtype=torch.int64).cumsum(0).to(torch.int32)
        return dict(qkv=x.reshape(sum(lengths), 3 * heads * hd).to(dt), cu_seqlens=cu, max_seqlen=max(lengths),
                    num_heads=heads, head_dim=hd)
    if case.op == "linear":
        n, m, k = shape["n"], shape["m"], shape["k"]
        has_b, act, has_r = EPILOGUES[shape["epilogue"]]
        return dict(x=torch.randn(n, k, generator=g).to(dt), weight=(torch.randn(m, k, generator=g) / math.sqrt(k)).to(dt),
                    bias=(0.1 * torch.randn(m, generator=g)).to(dt) if has_b else None, activation=act,
                    residual=torch.randn(n, m, generator=g).to(dt) if has_r else None)
    if case.op == "patch_embed":
        b, h, w, d, p = shape["b"], shape["h"], shape["w"], shape["d"], shape["prefix"]
        tokens = (h // 16) * (w // 16)
        return dict(x=torch.rand(b, 3, h, w, generator=g).to(dt), weight=(torch.randn(d, 768, generator=g) / 28).to(dt),
                    pos=(0.1 * torch.randn(tokens, d, generator=g)).to(dt), prefix=torch.randn(p, d, generator=g).to(dt))
    if case.op == "add_layer_norm":
        n, d = shape["n"], shape["d"]
        return dict(x=(3 * torch.randn(n, d, generator=g)).to(shape["x_dtype"]),
                    delta=torch.randn(n, d, generator=g).to(dt) if shape["delta"] else None,
                    weight=(1 + 0.3 * torch.randn(d, generator=g)).to(dt), bias=(0.1 * torch.randn(d, generator=g)).to(dt),
                    eps=1e-6)
    if case.op == "pos_embed":
        gr, d = shape["grid"], shape["d"]
        return dict(table=torch.randn(gr, gr, d, generator=g), h=shape["h"], w=shape["w"], out_dtype=dt)
    raise ValueError(f"unknown op {case.op!r}")


def _float(v):
    return v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v


def reference(case: Case, args: dict) -> list[torch.Tensor]:
    """The reference backend in fp32 on the CPU, from the same rounded inputs: the outputs to compare."""
    from fastradio.backends import reference as ref

    a = {k: _float(v) for k, v in args.items()}
    if case.op == "pos_embed":
        a["out_dtype"] = F32
    out = getattr(ref, case.op)(**a)
    return list(out) if isinstance(out, tuple) else [out]


def _rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    e = got.double() - want.double()
    return (e.norm() / want.double().norm().clamp_min(1e-30)).item()


# -- running ------------------------------------------------------------------------------------------

def run_case(case: Case, sms: int, device: torch.device | None) -> dict:
    """One case: launch (unless device is None: dry run) and check. A result row."""
    shape = resolve_shape(case, sms)
    row = {"id": case.id, "op": case.op, "tier": case.tier, "dtype": _dt(case.dtype), "why": case.why,
           "shape": {k: _dt(v) if isinstance(v, torch.dtype) else f"{len(v)} images of {v[0]}"
                     if k == "lengths" and len(v) > 8 else v for k, v in shape.items()}}
    t0 = time.monotonic()
    args = make_inputs(case, shape)
    want = reference(case, args)
    if device is None:
        row.update(status="skip", reason="dry run: inputs and reference only, no launch")
        return row
    from fastradio.backends import cuda

    try:
        cuda.resolve_tier(case.op, device, case.tier, case.dtype)
    except RuntimeError as e:
        row.update(status="skip", reason=str(e))
        return row
    dev_args = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    try:
        out = getattr(cuda, case.op)(**dev_args, tier=case.tier)
        torch.cuda.synchronize(device)
    except Exception as e:  # noqa: BLE001 - recorded, the run goes on
        row.update(status="fail", reason=f"{type(e).__name__}: {e}"[:500], seconds=round(time.monotonic() - t0, 2))
        return row
    outs = [t.cpu() for t in (out if isinstance(out, tuple) else (out,))]
    errs, tols, finite = [], [], True
    for got, ref_out in zip(outs, want):
        finite &= bool(torch.isfinite(got).all())
        errs.append(_rel_l2(got, ref_out))
        tols.append(TOLERANCE[got.dtype])
    ok = finite and all(e <= t for e, t in zip(errs, tols))
    row.update(status="pass" if ok else "fail", rel_l2=[float(f"{e:.3g}") for e in errs], tolerance=tols,
               finite=finite, seconds=round(time.monotonic() - t0, 2))
    if not ok:
        row["reason"] = "non-finite output" if not finite else f"rel L2 {errs} above {tols}"
    return row


def select(only: str | None) -> list[Case]:
    return [c for c in CASES if not only or any(s in c.id for s in only.split(","))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--budget-s", type=float, default=60.0, help="seconds from process start for all cases")
    ap.add_argument("--only", help="comma-separated substrings of case ids")
    ap.add_argument("--list", action="store_true", help="print the case ids and exit")
    ap.add_argument("--dry-run", action="store_true", help="CPU: build inputs and reference values, launch nothing")
    args = ap.parse_args(argv)
    cases = select(args.only)
    if args.list:
        for c in cases:
            print(f"{c.id:<58} {c.why}")
        return 0
    device = None
    sms = DRY_RUN_SMS
    if not args.dry_run:
        if not torch.cuda.is_available():
            print("sanitize_cases: no CUDA device (use --dry-run on a CPU machine)", file=sys.stderr)
            return 2
        device = torch.device("cuda", torch.cuda.current_device())
        sms = torch.cuda.get_device_properties(device).multi_processor_count
    rows, last = [], 0.0
    for case in cases:
        spent = time.monotonic() - _T_START
        if not args.dry_run and spent + last > args.budget_s:
            rows.append({"id": case.id, "op": case.op, "tier": case.tier, "dtype": _dt(case.dtype),
                         "status": "skip", "reason": f"out of time budget ({args.budget_s:.0f} s)"})
            continue
        t0 = time.monotonic()
        rows.append(run_case(case, sms, device))
        last = time.monotonic() - t0
        r = rows[-1]
        print(f"[sanitize_cases] {r['status']:<4} {case.id} {r.get('reason', '')}", flush=True)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("pass", "fail", "skip")}
    ok = counts["fail"] == 0 and (args.dry_run or counts["pass"] > 0)
    result = {"script": "sanitize_cases", "schema": 1, "mode": "dry-run" if args.dry_run else "gpu",
              "device": torch.cuda.get_device_name(device) if device is not None else "cpu", "sm_count": sms,
              "seconds": round(time.monotonic() - _T_START, 1), "cases": rows, "counts": counts, "ok": ok}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    print(f"[sanitize_cases] {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped "
          f"in {result['seconds']} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
