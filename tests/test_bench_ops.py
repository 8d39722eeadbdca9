"""``benchmarks/bench_ops.py --dry-run`` (CPU, tiny shapes, wall clock), run as a subprocess the way
``gpu_check.py`` runs it, and its JSON rows checked field by field: every op is there, every
backend has a timed row or a skip row with its reason, and the derived numbers (TFLOP/s, GB/s,
fractions of the rooflines, ratios to the peer) follow from the recorded times.

The Triton interpreter is switched off for the subprocess (its rows are then skip rows with the
reason), as in ``test_benchmark_scripts.py``: the kernels have their own interpreter tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
OPS = ("attention", "linear", "add_layer_norm", "patch_embed", "pos_embed")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRITON_INTERPRET", "FASTRADIO_BACKEND", "FASTRADIO_TIER")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "python"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _bench_ops(*extra: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / "bench_ops.py"), "--json", str(out), "--dry-run", *extra],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-ops") / "bench-ops.json"
    res = _bench_ops(out=out)
    assert res.returncode == 0, f"bench_ops exited {res.returncode}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return json.loads(out.read_text())


def _timed(rows, op=None):
    return [r for r in rows if "median_ms" in r and (op is None or r["op"] == op) and r["kind"] != "roofline"]


def test_meta_and_rooflines(rows):
    meta = rows[0]
    assert meta["op"] == "meta" and meta["mode"] == "dry-run" and meta["device"] == "cpu"
    assert meta["budget_s"] == 105 and meta["rows_out_of_budget"] == 0 and 0 < meta["elapsed_s"] < 105
    copy = next(r for r in rows if r["op"] == "copy")
    assert copy["GBps"] > 0 and copy["method"] == "cpu-wall"
    peak = next(r for r in rows if r["op"] == "gemm_peak")
    assert peak["tflops"] == pytest.approx(peak["flops"] / (peak["median_ms"] * 1e-3) / 1e12)
    assert peak["frac_peak_790"] == pytest.approx(peak["tflops"] / 790.0)


def test_every_op_has_peer_and_reference_rows_in_both_dtypes(rows):
    assert not [r for r in rows if "error" in r]
    for op in OPS:
        timed = _timed(rows, op)
        assert {r["kind"] for r in timed} == {"peer", "fastradio"}, op
        assert "reference" in {r["impl"] for r in timed}, op
        assert {r["dtype"] for r in timed} >= {"bfloat16", "float16" if op != "pos_embed" else "float32"}, op
        skipped = {r["impl"] for r in rows if r["op"] == op and "skipped" in r}
        assert {"cuda", "triton"} <= skipped | {r["impl"] for r in timed if r["impl"].startswith("cuda[")}, op
    assert all(r["skipped"] for r in rows if "skipped" in r)
    triton = [r for r in rows if r["impl"] == "triton"]
    assert triton and all("skipped" in r for r in triton)


def test_attention_rows(rows):
    att = _timed(rows, "attention")
    assert {r["layout"] for r in att} == {"uniform", "mixed"}
    impls = {r["impl"] for r in rows if r["op"] == "attention"}
    assert {"sdpa[flash]", "sdpa[efficient]", "sdpa[cudnn]", "sdpa[math]", "reference"} <= impls
    for r in att:
        lens = r.get("seqlens") or [r["tokens"] // r["images"]] * r["images"]
        assert sum(lens) == r["tokens"] and max(lens) == r["max_seqlen"] and len(lens) == r["images"]
        assert r["flops"] == sum(4 * t * t * r["D"] for t in lens)
        assert r["heads"] * r["head_dim"] == r["D"]
        assert r["peer"].startswith("sdpa[")
    for layout in ("uniform", "mixed"):
        group = [r for r in att if r["layout"] == layout and r["dtype"] == "bfloat16"]
        uni = [r for r in att if r["layout"] == "uniform" and r["dtype"] == "bfloat16"]
        assert group[0]["tokens"] == uni[0]["tokens"]       # mixed batch: same total tokens
        best = min((r for r in group if r["kind"] == "peer"), key=lambda r: r["median_ms"])
        assert all(r["peer"] == best["impl"] for r in group)
    mixed = [r for r in att if r["layout"] == "mixed"]
    assert len(set(mixed[0]["seqlens"])) > 1


def test_derived_numbers_follow_from_the_times(rows):
    copy = next(r for r in rows if r["op"] == "copy")["GBps"]
    peak = next(r for r in rows if r["op"] == "gemm_peak")["tflops"]
    for r in _timed(rows):
        assert 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"], r
        assert r["median_us"] == pytest.approx(r["median_ms"] * 1e3)
        assert r["method"] == "cpu-wall" and r["reps"] == 3
        assert r["max_abs_err_vs_fp32"] < 0.1, r
        assert r["shape"] and r["dtype"] in ("bfloat16", "float16", "float32")
        if r["op"] in ("attention", "linear", "patch_embed"):
            assert r["tflops"] == pytest.approx(r["flops"] / (r["median_ms"] * 1e-3) / 1e12)
            assert r["frac_peak_measured"] == pytest.approx(r["tflops"] / peak)
            assert r["frac_peak_790"] == pytest.approx(r["tflops"] / 790.0)
        if r["op"] in ("add_layer_norm", "patch_embed", "pos_embed"):
            assert r["GBps"] == pytest.approx(r["bytes"] / (r["median_ms"] * 1e-3) / 1e9)
            assert r["frac_copy"] == pytest.approx(r["GBps"] / copy)
        peer = next(p for p in _timed(rows) if p["impl"] == r["peer"] and p["op"] == r["op"]
                    and p["shape"] == r["shape"] and p["dtype"] == r["dtype"] and p.get("layout") == r.get("layout"))
        assert r["speedup_vs_peer"] == pytest.approx(peer["median_ms"] / r["median_ms"])


def test_shape_facts(rows):
    for r in _timed(rows, "linear"):
        assert r["flops"] == 2 * r["N"] * r["K"] * r["M"]
        assert (r["activation"] == "gelu") == (r["layer"] == "fc1")
        assert r["impl"] != "torch.addmm+F.gelu" or r["layer"] == "fc1"
    assert {r["layer"] for r in _timed(rows, "linear")} == {"qkv", "proj", "fc1", "fc2"}
    for r in _timed(rows, "add_layer_norm"):
        res = 4 if r["residual_dtype"] == "float32" else 2
        assert r["residual_dtype"] == ("float32" if r["dtype"] == "float16" else r["dtype"])
        assert r["bytes"] == r["N"] * r["D"] * 2 * (res + 2) + 2 * r["D"] * 2
    for r in _timed(rows, "patch_embed"):
        assert r["flops"] == 2 * r["batch"] * r["h"] * r["w"] * 768 * r["D"]
    for r in _timed(rows, "pos_embed"):
        assert r["speedup_vs_torch"] == r["speedup_vs_peer"] and "max_abs_err_vs_torch_fp32" in r


def test_budget_turns_rows_into_skips(tmp_path):
    out = tmp_path / "b0.json"
    res = _bench_ops("--budget-s", "0", "--ops", "linear,add_layer_norm", out=out)
    assert res.returncode == 0, res.stderr[-4000:]
    rows = json.loads(out.read_text())
    assert rows[0]["rows_out_of_budget"] > 0
    assert not _timed(rows)
    assert {r["op"] for r in rows if "out of time budget" in r.get("skipped", "")} == {"linear", "add_layer_norm"}


def test_shape_sets():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_ops
    finally:
        sys.path.remove(str(BENCH))
    assert bench_ops.tokens_per_image(512) == 1032 and bench_ops.tokens_per_image(1024) == 4104
    assert bench_ops.CONFIGS["default"] == [("L", 512, 32), ("H", 512, 32), ("L", 1024, 4), ("H", 1024, 4)]
    for arch, px, batch in bench_ops.CONFIGS["default"] + bench_ops.CONFIGS["quick"]:
        a = bench_ops.ARCHS[arch]
        assert a.heads * a.head_dim == a.width
        lens = bench_ops.mixed_lengths(px, batch)
        assert sum(lens) == batch * bench_ops.tokens_per_image(px) and len(set(lens)) > 1 and min(lens) > 8


def test_wgmma_attention_gets_a_no_pingpong_row(monkeypatch):
    """Where the cuda[wgmma_sm90a] attention runs, a second row times the same call with the
    ping-pong switch off (DESIGN decision 30's A/B), and the switch is restored afterwards. A fake
    tier stands in for the GPU kernel: it records the switch it saw and returns the reference."""
    import torch

    sys.path.insert(0, str(BENCH))
    try:
        import bench_ops
    finally:
        sys.path.remove(str(BENCH))
    seen = []

    def fake(qkv, cu, tmax, hh, dh):
        seen.append(os.environ.get(bench_ops.PINGPONG_ENV))
        return bench_ops.reference.attention(qkv.float(), cu, tmax, hh, dh).to(qkv.dtype)

    monkeypatch.delenv(bench_ops.PINGPONG_ENV, raising=False)
    monkeypatch.setattr(bench_ops.Bench, "backends_for", lambda self, op, dtype, base, **kw: {"cuda[wgmma_sm90a]": fake})
    monkeypatch.setattr(bench_ops, "_sdpa_backends", lambda b: [])
    b = bench_ops.Bench(torch.device("cpu"), "dry-run", budget_s=600, reps=2)
    bench_ops.bench_attention(b)
    ours = [r for r in b.rows if r.get("kind") == "fastradio"]
    assert ours and all("median_ms" in r for r in ours), ours
    pairs = list(zip(ours[::2], ours[1::2]))
    assert len(ours) % 2 == 0 and all(a["impl"] == "cuda[wgmma_sm90a]" and
                                      c["impl"] == "cuda[wgmma_sm90a,no-pingpong]" and a["shape"] == c["shape"]
                                      for a, c in pairs), [r["impl"] for r in ours]
    assert None in seen and "0" in seen and set(seen) == {None, "0"}, seen
    assert bench_ops.PINGPONG_ENV not in os.environ
