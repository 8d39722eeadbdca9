"""Op microbenchmarks: every fastradio backend against the PyTorch code a user would write instead
(its "peer"), in the same process, on the model's real shapes (DESIGN.md §9; method in README.md).

Ops and peers (bf16, plus fp16 on the first shape of each op; C-RADIOv2-L: D 1024, 16 heads x 64,
-H: D 1280, 16 x 80; tokens = batch x (8 + (px/16)^2)):

- ``attention`` (packed varlen qkv, a uniform batch and a mixed-resolution batch with the same
  total tokens) vs ``F.scaled_dot_product_attention`` with each SDPA backend forced in turn
  (flash, efficient, cudnn; math only on small shapes) on the uniform (S, H, T, Dh) batch, or on
  the zero-padded batch with a key-padding mask for the mixed one. TFLOP/s = sum of 4 T^2 D per
  image / time; the ratio is to the best SDPA backend.
- ``linear`` for the qkv / proj / fc1 (+gelu) / fc2 shapes vs ``torch.addmm`` (+ ``F.gelu`` for
  fc1). TFLOP/s = 2 N K M / time, over a bf16 ``torch.matmul`` 8192^3 measured in the same run
  ("gemm_peak" row) and over the nominal 790 TFLOP/s.
- ``add_layer_norm`` vs ``x + delta`` then ``F.layer_norm`` (eager). GB/s = bytes read +
  written / time, over the copy bandwidth measured in the same run ("copy" row).
- ``patch_embed`` vs ``F.conv2d`` (stride 16) + flatten/transpose + pos add + ``torch.cat`` of
  the 8 prefix tokens (+ an fp32 row on the first shape: the CUDA-core tier; the peer's cuDNN
  may use TF32 there). TFLOP/s and GB/s.
- ``pos_embed``: the real 128 x 128 table, D in {768, 1024, 1280, 1536}, square grids for 224 to
  4096 px, out dtype bf16 (+ fp32 on a few shapes), vs ``F.interpolate(bilinear,
  align_corners=True)`` + top-left crop + cast. Bytes = table rows the resize actually reads
  (distinct source taps of the crop, x D x 4 B) + output (h*w x D x sizeof(out)).

Every implementation's output is compared with the fp32 reference before it is timed
(``max_abs_err_vs_fp32``). A backend that refuses an op (``backends.refusals``) or an SDPA backend
that cannot take a shape gives a row with ``skipped`` and the reason. Rows are added while the
time spent plus the last row's time fits ``--budget-s``; the rest become "out of time budget"
skip rows, so a slow compile shortens the run instead of timing the step out.

    python benchmarks/bench_ops.py [--quick] [--json PATH] [--device cuda] [--budget-s 105]
    python benchmarks/bench_ops.py --dry-run      # CPU, tiny shapes, wall clock: checks the code

Returns/writes a list of dicts: one "meta" row, one "copy" row, one "gemm_peak" row, then one per
(op, impl, shape, dtype).
"""

from __future__ import annotations

import time

_T_START = time.monotonic()  # the budget counts from here: process start-up and imports included

import argparse
import contextlib
import functools
import json
import math
import os
import re
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from fastradio import backends  # noqa: E402
from fastradio.backends import reference  # noqa: E402

G = 128  # the stored grid of every C-RADIOv2 model
P = 8  # prefix tokens: 4 cls + 4 registers
PATCH = 16
WIDTHS = (768, 1024, 1280, 1536)
PIXELS = (224, 512, 768, 1024, 2048, 4096)
QUICK_WIDTHS = (768, 1280)
QUICK_PIXELS = (512, 1024, 2048)
PEAK_NOMINAL_TFLOPS = 790.0  # the bf16 dense peak the project's reports use (bench_model.py)
SDPA_MATH_MAX_SCORES = 1 << 28  # math SDPA materialises S*H*T^2 scores: skipped above this


@dataclass(frozen=True)
class Arch:
    name: str
    width: int
    heads: int
    head_dim: int


ARCHS = {"B": Arch("B", 768, 12, 64), "L": Arch("L", 1024, 16, 64), "H": Arch("H", 1280, 16, 80),
         "g": Arch("g", 1536, 24, 64), "test": Arch("test", 128, 2, 64)}

# (arch, px, batch) per mode; fp16 rows are added on the first config of each op only.
CONFIGS = {
    "default": [("L", 512, 32), ("H", 512, 32), ("L", 1024, 4), ("H", 1024, 4)],
    "quick": [("L", 512, 8), ("H", 1024, 1)],
    "dry-run": [("test", 64, 2)],
}


def tokens_per_image(px: int) -> int:
    return P + (px // PATCH) ** 2


def mixed_lengths(px: int, batch: int) -> list[int]:
    """Token counts of a mixed-resolution batch with the same total as ``batch`` images at ``px``:
    images of 0.5, 1.25, 0.75 and 1 x px in turn, the last one cut to what is left."""
    total = batch * tokens_per_image(px)
    sizes = [tokens_per_image(max(PATCH, round(px * f / PATCH) * PATCH)) for f in (0.5, 1.25, 0.75, 1.0)]
    lens, left, i = [], total, 0
    while left > 0:
        t = sizes[i % len(sizes)]
        if t >= left or left - t <= P:
            lens.append(left)
            break
        lens.append(t)
        left -= t
        i += 1
    return lens


# -- the run: budget, measurement, rows ---------------------------------------------------------------

class Bench:
    """Shared state of one run: device, repetitions, rooflines, the time budget, the rows."""

    def __init__(self, device: torch.device, mode: str, budget_s: float, reps: int, t0: float | None = None):
        self.device, self.mode, self.budget_s, self.reps = device, mode, budget_s, reps
        self.dry = mode == "dry-run"
        self.t0 = time.monotonic() if t0 is None else t0
        self.last_row_s = 0.0
        self.copy_gbps: float | None = None
        self.peak_tflops: float | None = None
        self.rows: list[dict] = []
        self._skips_reported: set = set()
        if device.type == "cuda":
            props = torch.cuda.get_device_properties(device)
            self.l2 = getattr(props, "L2_cache_size", 0) or 50 * 2**20
        else:
            self.l2 = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def over_budget(self) -> bool:
        return self.elapsed() + self.last_row_s > self.budget_s

    def input_sets(self, nbytes: int) -> int:
        """Rotating input sets for a memory-bound op: enough to cover twice the L2 (at most 4)."""
        if self.l2 == 0 or nbytes >= self.l2:
            return 1
        return min(4, math.ceil(2 * self.l2 / max(nbytes, 1)))

    def skip(self, base: dict, impl: str, kind: str, why: str, once_key=None) -> None:
        if once_key is not None:
            if once_key in self._skips_reported:
                return
            self._skips_reported.add(once_key)
        self.rows.append({**base, "impl": impl, "kind": kind, "skipped": why})

    def measure(self, base: dict, impl: str, kind: str, fn, args_list: list[tuple], expect, *,
                check=None, flops: float | None = None, nbytes: int | None = None, graphs: bool = False,
                ctx=None, peer_error_is_skip: bool = False) -> dict | None:
        """Check ``fn``'s output against ``expect`` (fp32), time it, append and return its row.
        An exception is an ``error`` row (or, for a peer that cannot take the shape, a skip row)."""
        if self.over_budget():
            self.skip(base, impl, kind, f"out of time budget (--budget-s {self.budget_s:g}; "
                      f"{self.elapsed():.1f} s spent, last row took {self.last_row_s:.1f} s)")
            return None
        row = {**base, "impl": impl, "kind": kind}
        t_start = time.monotonic()
        ctx = ctx or contextlib.nullcontext
        try:
            with ctx():
                out = fn(*args_list[0])
                got = check(out) if check is not None else out
                row["max_abs_err_vs_fp32"] = (got.float() - expect).abs().max().item()
                t = common.time_fn(fn, args_list, reps=self.reps, warmup=3 if self.dry else 10, device=self.device)
                g = common.time_graph(fn, args_list, device=self.device) if graphs else None
            del out, got
        except Exception as e:  # noqa: BLE001 - one failing impl must not end the run
            msg = f"{type(e).__name__}: {e}"[:500]
            row.update(skipped=f"the peer cannot run this shape: {msg}") if peer_error_is_skip else row.update(error=msg)
            self.rows.append(row)
            self.last_row_s = time.monotonic() - t_start
            return row
        row.update(median_ms=t.median_ms, p10_ms=t.p10_ms, p90_ms=t.p90_ms, median_us=t.median_ms * 1e3,
                   p10_us=t.p10_ms * 1e3, p90_us=t.p90_ms * 1e3, reps=t.reps, method=t.method,
                   input_sets=len(args_list))
        if flops is not None:
            row["flops"] = flops
            row["tflops"] = flops / (t.median_ms * 1e-3) / 1e12
            row["frac_peak_measured"] = row["tflops"] / self.peak_tflops if self.peak_tflops else None
            row["frac_peak_790"] = row["tflops"] / PEAK_NOMINAL_TFLOPS
        if nbytes is not None:
            row["bytes"] = nbytes
            row["GBps"] = nbytes / (t.median_ms * 1e-3) / 1e9
            row["frac_copy"] = row["GBps"] / self.copy_gbps if self.copy_gbps else None
        if g is not None:
            row["graph_ms"] = g.median_ms
            row["graph_us"] = g.median_ms * 1e3
            if nbytes is not None:
                row["GBps_graph"] = nbytes / (g.median_ms * 1e-3) / 1e9
                row["frac_copy_graph"] = row["GBps_graph"] / self.copy_gbps if self.copy_gbps else None
        self.rows.append(row)
        self.last_row_s = time.monotonic() - t_start
        return row

    def backends_for(self, op: str, dtype: torch.dtype, base: dict, **facts) -> dict:
        """name → fn for every fastradio backend (every compiled CUDA tier) that runs ``op`` here;
        a skip row (once per op, backend, dtype and facts) for each one that does not."""
        impls = {}
        for name in backends.BACKENDS:
            key = (op, name, dtype, tuple(sorted(facts.items())))
            reasons = backends.refusals(name, op, self.device, dtype, **facts)
            if not reasons and self.dry and name != "reference":
                reasons = ["dry run: only the reference backend runs (the Triton interpreter is far too slow "
                           "for this script; the kernels have their own interpreter tests)"]
            if reasons:
                self.skip(base, name, "fastradio", "; ".join(reasons), once_key=key)
                continue
            mod = backends.get(name)
            if name == "cuda" and hasattr(mod, "build_info"):
                tiers = mod.build_info().get("tiers", {}).get(op, [])
                for tier in tiers:
                    try:
                        mod.resolve_tier(op, self.device, tier, dtype=dtype)  # a tier may take only some dtypes
                    except RuntimeError as e:
                        self.skip(base, f"cuda[{tier}]", "fastradio", str(e), once_key=key + (tier,))
                        continue
                    impls[f"cuda[{tier}]"] = functools.partial(getattr(mod, op), tier=tier)
                if tiers:
                    continue
            impls[name] = getattr(mod, op)
        return impls


def _ratios(rows: list[dict], peer_ms: float | None, peer: str | None) -> None:
    for r in rows:
        if r is None or "median_ms" not in r:
            continue
        r["peer"] = peer
        r["speedup_vs_peer"] = peer_ms / r["median_ms"] if peer_ms else None


#: The wgmma_sm90a attention's ping-pong switch (csrc/attention/attention_sm90a.h), read at every launch.
PINGPONG_ENV = "FASTRADIO_SM90A_ATTENTION_PINGPONG"


@contextlib.contextmanager
def _env(name: str, value: str):
    """``os.environ[name] = value`` inside the block, restored after."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _esize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _configs_with_dtypes(mode: str) -> list[tuple[str, int, int, torch.dtype]]:
    cfgs = CONFIGS[mode]
    out = [(a, px, b, torch.bfloat16) for a, px, b in cfgs]
    a, px, b = cfgs[0]
    out.insert(1, (a, px, b, torch.float16))
    return out


def _randn(shape, dtype, device, gen, scale=1.0) -> torch.Tensor:
    return (torch.randn(shape, generator=gen) * scale).to(device=device, dtype=dtype)


# -- rooflines --------------------------------------------------------------------------------------

def bench_rooflines(b: Bench) -> None:
    copy = common.copy_bandwidth(b.device)
    b.copy_gbps = copy["GBps"]
    b.rows.append({"op": "copy", "impl": "torch.copy_", "kind": "roofline", "device": str(b.device), **copy})
    n = 256 if b.dry else 8192
    dtype = torch.bfloat16
    gen = torch.Generator().manual_seed(0)
    x, y = _randn((n, n), dtype, b.device, gen), _randn((n, n), dtype, b.device, gen)
    t = common.time_fn(torch.matmul, [(x, y)], warmup=3 if b.dry else 10, reps=min(b.reps, 20), device=b.device)
    flops = 2 * n**3
    b.peak_tflops = flops / (t.median_ms * 1e-3) / 1e12
    b.rows.append({"op": "gemm_peak", "impl": "torch.matmul", "kind": "roofline", "device": str(b.device),
                   "dtype": _dtype_name(dtype), "shape": f"{n}^3", "n": n, "flops": flops,
                   "median_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms, "reps": t.reps,
                   "method": t.method, "tflops": b.peak_tflops, "frac_peak_790": b.peak_tflops / PEAK_NOMINAL_TFLOPS})


# -- attention --------------------------------------------------------------------------------------

def _sdpa_backends(b: Bench):
    from torch.nn.attention import SDPBackend
    return [("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION),
            ("cudnn", SDPBackend.CUDNN_ATTENTION), ("math", SDPBackend.MATH)]


def bench_attention(b: Bench) -> None:
    from torch.nn.attention import sdpa_kernel

    for arch_name, px, batch, dtype in _configs_with_dtypes(b.mode):
        arch = ARCHS[arch_name]
        hh, dh, d = arch.heads, arch.head_dim, arch.width
        layouts = [("uniform", [tokens_per_image(px)] * batch)]
        if dtype == torch.bfloat16:
            layouts.append(("mixed", mixed_lengths(px, batch)))
        for layout, lens in layouts:
            n, s, tmax = sum(lens), len(lens), max(lens)
            base = {"op": "attention", "device": str(b.device), "dtype": _dtype_name(dtype), "model": arch.name,
                    "D": d, "heads": hh, "head_dim": dh, "px": px, "batch": batch, "layout": layout,
                    "images": s, "tokens": n, "max_seqlen": tmax,
                    "shape": f"{arch.name} {px}px b{batch} {layout} N={n}"}
            if layout == "mixed":
                base["seqlens"] = lens
            flops = sum(4 * t * t * d for t in lens)
            gen = torch.Generator().manual_seed(n + d)
            qkv = _randn((n, 3 * d), dtype, b.device, gen)
            cu = torch.tensor([0] + list(np.cumsum(lens)), dtype=torch.int32, device=b.device)
            expect = reference.attention(qkv.float(), cu, tmax, hh, dh)
            group = []
            # peers: SDPA, each backend forced, on the (S, H, T, Dh) batch (zero-padded + key mask if mixed)
            if layout == "uniform":
                peer_args, mask, check = (qkv,), None, None
            else:
                pad = torch.zeros((s, tmax, 3 * d), dtype=dtype, device=b.device)
                valid = torch.zeros((s, tmax), dtype=torch.bool, device=b.device)
                for i, (a, e) in enumerate(zip(cu.tolist(), cu.tolist()[1:])):
                    pad[i, :e - a] = qkv[a:e]
                    valid[i, :e - a] = True
                peer_args, mask = (pad.reshape(s * tmax, 3 * d),), valid[:, None, None, :]
                rows_idx = valid.reshape(-1).nonzero().squeeze(1)
                check = lambda out, idx=rows_idx: out[idx]  # noqa: E731

            def sdpa(x, s=s, t=tmax, mask=mask):
                q, k, v = x.view(s, t, 3, hh, dh).permute(2, 0, 3, 1, 4).unbind(0)
                o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                return o.transpose(1, 2).reshape(s * t, d)

            peers = []
            for sname, sb in _sdpa_backends(b):
                impl = f"sdpa[{sname}]"
                if sname == "math" and s * hh * tmax * tmax > SDPA_MATH_MAX_SCORES:
                    b.skip(base, impl, "peer", f"math SDPA materialises S*H*T^2 = {s * hh * tmax * tmax:.3g} scores "
                           f"(> {SDPA_MATH_MAX_SCORES:.3g}): skipped on big shapes")
                    continue
                r = b.measure(base, impl, "peer", sdpa, [peer_args], expect, check=check, flops=flops,
                              ctx=functools.partial(sdpa_kernel, [sb]), peer_error_is_skip=True)
                if r is not None and "median_ms" in r:
                    r["padded_tokens"] = s * tmax
                    peers.append(r)
            best = min(peers, key=lambda r: r["median_ms"]) if peers else None
            for name, fn in b.backends_for("attention", dtype, base, head_dim=dh).items():
                group.append(b.measure(base, name, "fastradio", fn, [(qkv, cu, tmax, hh, dh)], expect, flops=flops))
                if name == "cuda[wgmma_sm90a]":  # the A/B of DESIGN decision 30: the same kernel without ping-pong
                    group.append(b.measure(base, "cuda[wgmma_sm90a,no-pingpong]", "fastradio", fn,
                                           [(qkv, cu, tmax, hh, dh)], expect, flops=flops,
                                           ctx=functools.partial(_env, PINGPONG_ENV, "0")))
            _ratios(group + peers, best["median_ms"] if best else None, best["impl"] if best else None)
            del qkv, expect, peer_args


# -- linear -----------------------------------------------------------------------------------------

def bench_linear(b: Bench) -> None:
    for arch_name, px, batch, dtype in _configs_with_dtypes(b.mode):
        arch = ARCHS[arch_name]
        d = arch.width
        n = batch * tokens_per_image(px)
        layers = [("qkv", d, 3 * d, "none"), ("proj", d, d, "none"), ("fc1", d, 4 * d, "gelu"), ("fc2", 4 * d, d, "none")]
        if dtype != torch.bfloat16:
            layers = layers[2:3]  # fp16: fc1 only (the shape with the epilogue)
        gen = torch.Generator().manual_seed(n + d)
        for layer, k, m, act in layers:
            base = {"op": "linear", "device": str(b.device), "dtype": _dtype_name(dtype), "model": arch.name,
                    "layer": layer, "px": px, "batch": batch, "N": n, "K": k, "M": m, "activation": act,
                    "shape": f"{arch.name} {layer} N={n} K={k} M={m}"}
            x = _randn((n, k), dtype, b.device, gen)
            w = _randn((m, k), dtype, b.device, gen, k ** -0.5)
            bias = _randn((m,), dtype, b.device, gen, 0.1)
            expect = reference.linear(x.float(), w.float(), bias.float(), act, None)
            flops = 2 * n * k * m

            def peer(x, w, bias, act=act):
                y = torch.addmm(bias, x, w.t())
                return F.gelu(y) if act == "gelu" else y

            pname = "torch.addmm" + ("+F.gelu" if act == "gelu" else "")
            pr = b.measure(base, pname, "peer", peer, [(x, w, bias)], expect, flops=flops)
            group = [pr]
            for name, fn in b.backends_for("linear", dtype, base).items():
                group.append(b.measure(base, name, "fastradio", fn, [(x, w, bias, act, None)], expect, flops=flops))
            _ratios(group, pr.get("median_ms") if pr else None, pname)
            del x, w, bias, expect


# -- add_layer_norm ---------------------------------------------------------------------------------

def bench_add_layer_norm(b: Bench) -> None:
    eps = 1e-6
    for arch_name, px, batch, dtype in _configs_with_dtypes(b.mode):
        d = ARCHS[arch_name].width
        n = batch * tokens_per_image(px)
        res = torch.float32 if dtype == torch.float16 else dtype  # the model's residual stream (DESIGN 12)
        base = {"op": "add_layer_norm", "device": str(b.device), "dtype": _dtype_name(dtype),
                "residual_dtype": _dtype_name(res), "model": arch_name, "px": px, "batch": batch, "N": n, "D": d,
                "shape": f"{arch_name} N={n} D={d} res={_dtype_name(res)}"}
        nbytes = n * d * 2 * (_esize(res) + _esize(dtype)) + 2 * d * _esize(dtype)
        gen = torch.Generator().manual_seed(n + d)
        sets = [(_randn((n, d), res, b.device, gen), _randn((n, d), dtype, b.device, gen))
                for _ in range(b.input_sets(nbytes))]
        w = _randn((d,), dtype, b.device, gen, 0.1) + 1
        bias = _randn((d,), dtype, b.device, gen, 0.1)
        x0, dl0 = sets[0]
        _, expect = reference.add_layer_norm(x0.float(), dl0.float(), w.float(), bias.float(), eps)

        def peer(x, delta, w, bias):
            s = x + delta
            return s, F.layer_norm(s, (d,), w.to(s.dtype), bias.to(s.dtype), eps).to(w.dtype)

        second = lambda out: out[1]  # noqa: E731 - the normalised output is what is compared
        args = [(x, dl, w, bias) for x, dl in sets]
        pname = "torch x+delta, F.layer_norm"
        pr = b.measure(base, pname, "peer", peer, args, expect, check=second, nbytes=nbytes, graphs=True)
        group = [pr]
        impls = b.backends_for("add_layer_norm", dtype, base, width=d, residual_dtype=res)
        for name, fn in impls.items():
            group.append(b.measure(base, name, "fastradio", fn, [a + (eps,) for a in args], expect, check=second,
                                   nbytes=nbytes, graphs=True))
        _ratios(group, pr.get("median_ms") if pr else None, pname)
        del sets, args, expect


# -- patch_embed ------------------------------------------------------------------------------------

def bench_patch_embed(b: Bench) -> None:
    # + fp32 on the first shape: fp32 mode runs the CUDA-core tier (no IEEE fp32 tensor cores).
    a, px0, b0 = CONFIGS[b.mode][0]
    for arch_name, px, batch, dtype in _configs_with_dtypes(b.mode) + [(a, px0, b0, torch.float32)]:
        d = ARCHS[arch_name].width
        h = w = px // PATCH
        kdim = 3 * PATCH * PATCH
        es = _esize(dtype)
        base = {"op": "patch_embed", "device": str(b.device), "dtype": _dtype_name(dtype), "model": arch_name,
                "px": px, "batch": batch, "D": d, "h": h, "w": w, "prefix": P,
                "shape": f"{arch_name} {px}px b{batch} D={d}"}
        flops = 2 * batch * h * w * kdim * d
        nbytes = es * (batch * 3 * px * px + d * kdim + h * w * d + P * d + batch * (P + h * w) * d)
        gen = torch.Generator().manual_seed(px + d + batch)
        x = _randn((batch, 3, px, px), dtype, b.device, gen)
        wt = _randn((d, kdim), dtype, b.device, gen, kdim ** -0.5)
        pos = _randn((h * w, d), dtype, b.device, gen, 0.02)
        prefix = _randn((P, d), dtype, b.device, gen, 0.02)
        expect = reference.patch_embed(x.float(), wt.float(), pos.float(), prefix.float())

        def peer(x, wt, pos, prefix):
            y = F.conv2d(x, wt.view(-1, 3, PATCH, PATCH), stride=PATCH).flatten(2).transpose(1, 2) + pos
            return torch.cat([prefix.unsqueeze(0).expand(x.shape[0], -1, -1), y], dim=1)

        pname = "F.conv2d+pos+cat"
        pr = b.measure(base, pname, "peer", peer, [(x, wt, pos, prefix)], expect, flops=flops, nbytes=nbytes)
        group = [pr]
        for name, fn in b.backends_for("patch_embed", dtype, base).items():
            group.append(b.measure(base, name, "fastradio", fn, [(x, wt, pos, prefix)], expect, flops=flops,
                                   nbytes=nbytes))
        _ratios(group, pr.get("median_ms") if pr else None, pname)
        del x, expect


# -- pos_embed --------------------------------------------------------------------------------------

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
    return touched_rows(g, h, w) * d * 4 + h * w * d * _esize(out_dtype)


def pos_embed_shapes(mode: str) -> list[tuple[int, int, int, torch.dtype]]:
    if mode == "dry-run":
        return [(64, 2, 3, torch.bfloat16), (64, 14, 14, torch.float32)]
    widths, pixels = (QUICK_WIDTHS, QUICK_PIXELS) if mode == "quick" else (WIDTHS, PIXELS)
    shapes = [(d, p // 16, p // 16, torch.bfloat16) for d in widths for p in pixels]
    shapes += [(1024, 32, 48, torch.bfloat16), (1024, 48, 32, torch.bfloat16)]  # non-square
    shapes += [(1024, p // 16, p // 16, torch.float32) for p in (512, 2048)]
    return shapes


def bench_pos_embed(b: Bench) -> None:
    g = 16 if b.dry else G
    for d, h, w, dtype in pos_embed_shapes(b.mode):
        base = {"op": "pos_embed", "device": str(b.device), "G": g, "D": d, "h": h, "w": w,
                "px": f"{h * 16}x{w * 16}", "out_dtype": str(dtype), "dtype": _dtype_name(dtype),
                "shape": f"D={d} {h * 16}x{w * 16}px"}
        gen = torch.Generator().manual_seed(d * 7 + h)
        table = (torch.randn(g, g, d, generator=gen) * 0.02).to(b.device)
        expect = torch_pos_embed(table, h, w, torch.float32)
        nbytes = pos_embed_bytes(g, h, w, d, dtype)
        args = [(table, h, w, dtype)]
        pr = b.measure(base, "torch", "peer", torch_pos_embed, args, expect, nbytes=nbytes, graphs=not b.dry)
        group = [pr]
        for name, fn in b.backends_for("pos_embed", dtype, base).items():
            group.append(b.measure(base, name, "fastradio", fn, args, expect, nbytes=nbytes, graphs=not b.dry))
        _ratios(group, pr.get("median_ms") if pr else None, "torch")
        for r in group:  # the field names of earlier result files
            if r is not None and "median_ms" in r:
                r["speedup_vs_torch"] = r["speedup_vs_peer"]
                r["max_abs_err_vs_torch_fp32"] = r["max_abs_err_vs_fp32"]


OPS = {"attention": bench_attention, "linear": bench_linear, "add_layer_norm": bench_add_layer_norm,
       "patch_embed": bench_patch_embed, "pos_embed": bench_pos_embed}


def run(device: str | torch.device = "cuda", quick: bool = False, dry_run: bool = False,
        budget_s: float = 105.0, ops: list[str] | None = None, t0: float | None = None) -> list[dict]:
    """All op benchmarks on ``device``; a list of dicts (see module doc). The budget counts from
    ``t0`` (``time.monotonic()``; default: now)."""
    device = torch.device(device)
    mode = "dry-run" if dry_run or device.type != "cuda" else "quick" if quick else "default"
    reps = 3 if mode == "dry-run" else 30 if quick else 50
    b = Bench(device, mode, budget_s, reps, t0)
    meta = {"op": "meta", "impl": "bench_ops", "kind": "meta", "mode": mode, "device": str(device), "budget_s": budget_s, "reps": reps,
            "torch": torch.__version__, "peak_nominal_tflops": PEAK_NOMINAL_TFLOPS,
            "configs": [list(c) for c in CONFIGS[mode]],
            "kernel_env": {k: os.environ.get(k) for k in ("FASTRADIO_BACKEND", "FASTRADIO_TIER",
                                                          "FASTRADIO_LINEAR_CONFIG", "FASTRADIO_ATTENTION_CONFIG",
                                                          "FASTRADIO_ATTENTION_AUTOTUNE", "TRITON_INTERPRET")}}
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    b.rows.append(meta)
    bench_rooflines(b)
    for name in ops or OPS:
        OPS[name](b)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    meta["elapsed_s"] = b.elapsed()
    meta["rows_out_of_budget"] = sum(1 for r in b.rows if "out of time budget" in r.get("skipped", ""))
    return b.rows


def _fmt(v, spec: str) -> str:
    width = int(re.match(r"\d+", spec).group())
    return format(v, spec) if isinstance(v, (int, float)) else "-".rjust(width)


def print_table(rows: list[dict]) -> None:
    for r in rows:
        if r["op"] == "copy":
            print(f"copy bandwidth: {r['GBps']:.0f} GB/s ({r['method']})")
        elif r["op"] == "gemm_peak":
            print(f"gemm peak (bf16 matmul {r['shape']}): {r['tflops']:.0f} TFLOP/s ({r['method']})")
        elif r["op"] == "meta":
            print(f"mode {r['mode']}, budget {r['budget_s']:g} s, spent {r.get('elapsed_s', 0):.1f} s, "
                  f"{r.get('rows_out_of_budget', 0)} rows out of budget")
    print(f"{'op':<15}{'impl':<30}{'dtype':<10}{'shape':<40}{'ms':>9}{'p90':>9}{'TF/s':>7}{'peak%':>6}"
          f"{'GB/s':>7}{'copy%':>6}{'x peer':>8}")
    for r in rows:
        if r["op"] in ("copy", "gemm_peak", "meta"):
            continue
        head = f"{r['op']:<15}{r['impl']:<30}{r.get('dtype', ''):<10}{r.get('shape', ''):<40}"
        if "skipped" in r or "error" in r:
            print(head + ("skipped: " + r["skipped"] if "skipped" in r else "ERROR: " + r["error"])[:160])
            continue
        frac = r.get("frac_peak_measured")
        copy = r.get("frac_copy")
        print(head + f"{r['median_ms']:>9.4f}{r['p90_ms']:>9.4f}{_fmt(r.get('tflops'), '7.0f')}"
              f"{_fmt(frac * 100 if frac else None, '6.0f')}{_fmt(r.get('GBps'), '7.0f')}"
              f"{_fmt(copy * 100 if copy else None, '6.0f')}{_fmt(r.get('speedup_vs_peer'), '8.2f')}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repetitions")
    ap.add_argument("--dry-run", action="store_true", help="CPU-sized shapes, wall clock: checks the code runs")
    ap.add_argument("--budget-s", type=float, default=105.0,
                    help="seconds from process start: stop adding rows once the time spent plus the last "
                         "row's time would pass this (gpu_check's step limit is 120 s)")
    ap.add_argument("--ops", help=f"comma-separated subset of {','.join(OPS)}")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args(argv)
    ops = args.ops.split(",") if args.ops else None
    device = "cpu" if args.dry_run else args.device
    rows = run(device, quick=args.quick, dry_run=args.dry_run, budget_s=args.budget_s, ops=ops, t0=_T_START)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
