"""The GPU-check scripts ``benchmarks/model_parity.py`` and ``benchmarks/bench_model.py`` in their
``--dry-run`` mode (CPU, tiny synthetic test models), so a broken script is caught here before GPU
time is spent on it: both run as subprocesses the way ``gpu_check.py`` runs them, and the JSON
(and the parity ``.npz``) they write is checked field by field, including that the parity
verdicts follow from the recorded errors and thresholds and that the ``.npz`` re-checks on the CPU
from its own metadata.

The Triton interpreter is switched off for the subprocesses (their triton rows are then "skip"
rows with the reason): the kernels have their own interpreter tests, and interpreting every op of
a whole model is too slow for this file's budget (under a minute on 2 cores).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def _env(cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRITON_INTERPRET", "FASTRADIO_BACKEND", "FASTRADIO_TIER", "FASTRADIO_LINEAR_CONFIG")}
    env["FASTRADIO_CACHE"] = str(cache)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "python"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _run(script: str, out: Path, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), "--json", str(out), "--dry-run"], cwd=REPO,
                          env=_env(cache), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both scripts, parity first, sharing one checkpoint cache (as in gpu_check)."""
    root = tmp_path_factory.mktemp("bench-scripts")
    cache = root / "cache"
    parity = _run("model_parity.py", root / "model-parity.json", cache)
    bench = _run("bench_model.py", root / "bench-model.json", cache)
    return {"root": root, "cache": cache, "parity": parity, "bench": bench}


def _load(runs, name: str) -> dict:
    res = runs["parity" if name == "model-parity" else "bench"]
    assert res.returncode == 0, f"{name} exited {res.returncode}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return json.loads((runs["root"] / f"{name}.json").read_text())


# -- model_parity.py --------------------------------------------------------------------------------

def test_parity_result_file(runs):
    d = _load(runs, "model-parity")
    assert d["script"] == "model_parity" and d["mode"] == "dry-run" and d["schema"] == 1
    assert d["ok"] is True and d["complete"] is True and "partial" not in d
    assert d["counts"]["fail"] == 0 and d["counts"]["pass"] >= 30
    assert d["tf32"]["matmul_allow_tf32"] is False and d["tf32"]["cudnn_allow_tf32"] is False
    th = d["thresholds"]
    assert th["fp32_rel_l2_max"] == 1e-5 and th["low_precision_ratio_to_reference_max"] == 1.5
    assert th["summary_cos_min"] == 0.999
    assert d["environment"]["device"] == "cpu" and d["environment"]["torch"] == torch.__version__
    names = [m["model"] for m in d["models"]]
    assert names == ["test-d128", "test-d160"]
    for m in d["models"]:
        assert m["seed"] == 0 and m["storage_dtype"] == "float32" and m["status"] == "done"
        assert f'synthetic:{m["model"]}@0' in m["recreate"]
        assert set(m["plans"]) == {"float32", "bfloat16", "float16"}
        assert set(m["plans"]["float32"]) == {"auto", "cuda", "triton", "reference"}
        assert "refused" in m["plans"]["float32"]["cuda"]      # CPU: the cuda backend says why not


def test_parity_checks_cover_every_kind_dtype_and_backend(runs):
    checks = _load(runs, "model-parity")["checks"]
    ran = [c for c in checks if c["status"] != "skip"]
    assert {c["kind"] for c in ran} == {"square", "tiny", "packed-list", "nan-batch", "nan-list"}
    assert {c["dtype"] for c in ran} == {"float32", "bfloat16", "float16"}
    assert {c["backend"] for c in ran} == {"reference", "auto"}
    skips = [c for c in checks if c["status"] == "skip"]
    assert {(c["backend"], c["dtype"]) for c in skips if c["model"] == "test-d128"} == {
        (b, dt) for b in ("cuda", "triton") for dt in ("float32", "bfloat16", "float16")}
    assert all(c["reason"] for c in skips)
    for c in ran:
        for key in ("model", "seed", "dtype", "backend", "plan", "resolution", "errors", "thresholds", "status",
                    "input_seed", "storage_dtype"):
            assert key in c, (key, c)
        assert set(c["plan"]) >= {"pos_embed", "patch_embed", "attention"}


def test_parity_verdicts_follow_from_errors_and_thresholds(runs):
    for c in _load(runs, "model-parity")["checks"]:
        if c["status"] == "skip":
            continue
        e, t = c["errors"], c["thresholds"]
        ok = (e["finite"] and e["summary_rel_l2"] <= t["summary_rel_l2_max"]
              and e["features_rel_l2"] <= t["features_rel_l2_max"]
              and e["summary_cos_min"] >= t.get("summary_cos_min", -1.0))
        assert ok == (c["status"] == "pass") == c["pass"], c
        if c["kind"].startswith("nan"):
            assert c["poisoned_image"] == 1 and c["poisoned_outputs_nonfinite"] is True
            continue
        if c["dtype"] == "float32":
            assert t["summary_rel_l2_max"] == 1e-5
        else:   # 1.5 x the reference's own error in that dtype, which is well above fp32 noise
            base = c["baseline_reference"]
            assert t["summary_rel_l2_max"] == pytest.approx(max(1.5 * base["summary_rel_l2"], 1e-5))
            assert 1e-4 < base["features_rel_l2"] < 0.05
            if c["backend"] == "reference" and not c["packed"]:
                assert e == base


def test_parity_npz_rechecks_on_cpu_from_its_metadata(runs):
    d = _load(runs, "model-parity")
    npz_path = Path(d["npz"])
    assert npz_path == runs["root"] / "model-parity.npz"
    z = np.load(npz_path)
    meta = json.loads(str(z["meta_json"]))
    assert set(meta["models"]) == {"test-d128", "test-d160"}
    full, small = meta["models"]["test-d128"], meta["models"]["test-d160"]
    assert full["images"] == 2 and small["images"] == 1
    assert f"test-d128.auto_float16.summary" in z.files and "test-d160.auto_float16.summary" not in z.files
    for tag, m in meta["models"].items():
        assert m["seed"] == 0 and m["storage_dtype"] == "float32" and "recreate" in m
        for k in m["outputs"]:
            assert k in z.files and z[k].dtype == np.float32 and np.isfinite(z[k]).all()
        x = z[f"{tag}.input_u8"]
        assert x.dtype == np.uint8 and x.shape[:2] == (m["images"], 3)
    # Re-check the test model the way the metadata says, in a fresh checkpoint cache.
    import fastradio

    old = os.environ.get("FASTRADIO_CACHE")
    os.environ["FASTRADIO_CACHE"] = str(runs["root"] / "recheck-cache")
    try:
        model = fastradio.load("synthetic:test-d128@0", device="cpu", dtype=torch.float32, backend="reference")
    finally:
        if old is None:
            os.environ.pop("FASTRADIO_CACHE")
        else:
            os.environ["FASTRADIO_CACHE"] = old
    with torch.inference_mode():
        out = model(torch.from_numpy(z["test-d128.input_u8"]).float() / 255)
    for part in ("summary", "features"):
        ref = torch.from_numpy(z[f"test-d128.oracle_float32.{part}"])
        got = getattr(out, part).float()
        assert got.shape == ref.shape
        assert float((got - ref).norm() / ref.norm()) < 1e-5


# -- bench_model.py ---------------------------------------------------------------------------------

def test_bench_result_file(runs):
    d = _load(runs, "bench-model")
    assert d["script"] == "bench_model" and d["mode"] == "dry-run" and d["ok"] is True and "partial" not in d
    assert d["peak_tflops_assumed"] == 790.0 and "N + 8" in d["flops_formula"]
    assert d["counts"]["error"] == 0 and d["dropped"] == []
    assert d["kernel_env"]["FASTRADIO_LINEAR_CONFIG"] == "heuristic"
    assert d["gemm_peak"]["tflops"] > 0
    assert [m["model"] for m in d["models"]] == ["test-d128", "test-d160"]
    assert all(m["was_cached"] for m in d["models"]), "bench_model must reuse model_parity's checkpoints"
    assert set(d["compile_workers"]) == {"test-d128"}
    w = d["compile_workers"]["test-d128"]
    assert "error" not in w, w
    assert [c["config"] for c in w["compiled"]] == ["test-d128@64x64 b4", "test-d128@64x64 b1"]


def test_bench_rows(runs):
    d = _load(runs, "bench-model")
    rows = d["rows"]
    got = {(r["model"], r["px"], r["batch"], r["impl"]) for r in rows}
    want = {("test-d128", "64x64", b, i) for b in (4, 1) for i in ("fastradio", "reference-eager", "reference-compile")}
    want |= {("test-d160", "32x48", b, i) for b in (4, 1) for i in ("fastradio", "reference-eager")}
    assert got == want
    for r in rows:
        assert r["status"] == "ok", r
        assert r["dtype"] == "bfloat16" and r["seed"] == 0 and r["plan"]
        h, w = (int(v) for v in r["px"].split("x"))
        n = (h // 16) * (w // 16)
        assert r["patches_per_image"] == n and r["tokens_per_image"] == n + 8
        secs = (r["latency_ms"] if r["batch"] == 1 else r["median_ms"]) / 1e3
        assert r["images_per_s"] == pytest.approx(r["batch"] / secs)
        assert r["tflops"] == pytest.approx(r["flops_per_image"] * r["images_per_s"] / 1e12)
        assert r["frac_peak_790"] == pytest.approx(r["tflops"] / 790.0)
        assert r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] and r["method"] == "cpu-wall"
        if r["batch"] == 1:
            assert "not a CUDA device" in r["graph_unavailable"] and "graph_ms" not in r
            assert r["latency_ms"] == r["events_latency_ms"] and "no CUDA graph" in r["latency_method"]
        if r["impl"] == "fastradio":
            assert r["backend"] == "auto" and r["speedup_vs_reference_eager"] > 0
        if r["impl"] == "reference-compile":
            assert r["compile_backend"] == "eager" and r["compile_s"] > 0
    fr = next(r for r in rows if r["impl"] == "fastradio" and r["model"] == "test-d128" and r["batch"] == 4)
    assert fr["speedup_vs_reference_compile"] > 0
    assert set(d["summary"]) == {f"{m}@{r} b{b} {i}" for m, r, b, i in got}


def test_flop_formula_matches_the_spec():
    sys.path.insert(0, str(BENCH))
    try:
        import model_parity as mp
    finally:
        sys.path.remove(str(BENCH))
    from fastradio.synthetic import model_config

    cfg = model_config("C-RADIOv2-L")
    n, t, d = 32 * 32, 32 * 32 + 8, 1024
    assert mp.flops_per_image(cfg, 32, 32) == 2 * n * 768 * d + 24 * (24 * t * d * d + 4 * t * t * d)
    assert math.isclose(mp.flops_per_image(cfg, 32, 32) / 1e9, 729.6, rel_tol=1e-3)
    # C-RADIOv4-SO400M: 10 prefix tokens and an MLP of 4304 (not 4·D): radio-family §5.7, 985 GFLOP at 512²
    so = model_config("C-RADIOv4-SO400M")
    n, t, d, f = 32 * 32, 32 * 32 + 10, 1152, 4304
    assert mp.flops_per_image(so, 32, 32) == 2 * n * 768 * d + 27 * (2 * t * (4 * d * d + 2 * d * f) + 4 * t * t * d)
    assert math.isclose(mp.flops_per_image(so, 32, 32) / 1e9, 985, rel_tol=5e-3)
    assert math.isclose(mp.flops_per_image(so, 32, 32) / mp.flops_per_image(model_config("C-RADIOv4-H"), 32, 32),
                        0.67, abs_tol=0.01)


def test_hopper_prediction_is_current_and_counts_the_spec_flops():
    """benchmarks/README.md's predicted Hopper table is predict_hopper.py's output, and the script's
    per-image FLOPs at batch 1 are the spec's count (model_parity.flops_per_image)."""
    out = subprocess.run([sys.executable, str(BENCH / "predict_hopper.py")], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() and out in (BENCH / "README.md").read_text()
    sys.path.insert(0, str(BENCH))
    try:
        import model_parity as mp
        import predict_hopper as ph
    finally:
        sys.path.remove(str(BENCH))
    from fastradio.synthetic import model_config

    rows = ph.rows(1, "H200")
    total = ph.DEPTH * sum(r["flops"] for r in rows[:-1]) + rows[-1]["flops"]
    assert total == mp.flops_per_image(model_config("C-RADIOv2-L"), 32, 32)
    assert all(r["predict_s"] >= r["floor_s"] > 0 for r in rows)


def test_bf16_storage_checkpoints_are_cached_and_load(tmp_path, monkeypatch):
    """The L/H/g path (bf16 storage in its own cache folder) on a test architecture."""
    monkeypatch.setenv("FASTRADIO_CACHE", str(tmp_path))
    sys.path.insert(0, str(BENCH))
    try:
        import model_parity as mp
    finally:
        sys.path.remove(str(BENCH))
    import fastradio

    assert [mp.storage_dtype(m) for m in ("test-d128", "C-RADIOv2-B", "C-RADIOv2-L", "C-RADIOv2-g", "C-RADIOv3-B",
                                          "C-RADIOv4-SO400M", "C-RADIOv4-H")] == [
        "float32", "float32", "bfloat16", "bfloat16", "float32", "bfloat16", "bfloat16"]
    folder = mp.ensure_checkpoint("test-d160", 3, "bfloat16")
    assert folder == tmp_path / "synthetic" / "test-d160-seed3-bfloat16"
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert mp.ensure_checkpoint("test-d160", 3, "bfloat16") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp          # reused, not rewritten
    model = fastradio.load(folder, device="cpu", dtype=torch.float32)
    assert model.model.blocks[0].mlp.fc1.weight.dtype == torch.float32
    w = model.model.blocks[0].mlp.fc1.weight
    assert torch.equal(w, w.bfloat16().float())                              # bf16 values, exactly


def test_gpu_check_passes_a_budget_to_both_steps(tmp_path):
    import argparse
    import time

    sys.path.insert(0, str(BENCH))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(BENCH))
    args = argparse.Namespace(dry_run=False, quick=True, out=None, budget_s=420)
    ctx = gpu_check.Ctx(args=args, tmp=tmp_path, logs=tmp_path, deadline=time.monotonic() + 60)
    ctx.info["has_load"] = True
    steps = {s.name: s for s in gpu_check.STEPS if isinstance(s, gpu_check.Step)}
    for name, script in (("model-parity", "model_parity.py"), ("bench-model", "bench_model.py")):
        argv = steps[name].command(ctx)
        assert argv[1].endswith(script) and "--quick" in argv
        budget = float(argv[argv.index("--budget-s") + 1])
        assert 30 <= budget <= 45          # 60 s left overall, less the margins


# -- the sanitizer steps: benchmarks/sanitize_cases.py and gpu_check's compute-sanitizer steps ----------

def _bench_module(name: str):
    import importlib

    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


def test_sanitize_cases_cover_every_tier_and_dtype_of_every_op():
    sc = _bench_module("sanitize_cases")
    from fastradio.backends import cuda

    ids = [c.id for c in sc.CASES]
    assert len(ids) == len(set(ids))
    tensor_core = ("linear", "attention", "patch_embed")
    assert {(c.op, c.tier) for c in sc.CASES} == {
        (op, t) for op in tensor_core for t in ("cuda_core", "mma_sm75", "mma_sm80")} | {
        ("add_layer_norm", "cuda_core"), ("pos_embed", "cuda_core"), ("linear", "wgmma_sm90a"),
        ("attention", "wgmma_sm90a")}
    for c in sc.CASES:  # every case's dtype is one its tier takes ...
        takes = cuda.TIER_DTYPES.get(c.op, {}).get(c.tier)
        assert takes is None or c.dtype in takes, c.id
    for op in tensor_core:  # ... and every dtype a tensor-core tier takes has a case
        for tier, takes in cuda.TIER_DTYPES[op].items():
            assert {c.dtype for c in sc.CASES if (c.op, c.tier) == (op, tier)} == set(takes), (op, tier)
    # The tensor-core tiers come first (a short budget still sanitizes them), then cuda_core.
    tiers = [c.tier for c in sc.CASES]
    assert max(i for i, t in enumerate(tiers) if t != "cuda_core") < tiers.index("cuda_core")


@pytest.mark.parametrize("sms", [46, 108, 132, 148])
def test_sanitize_cases_reach_each_launcher_variant(sms):
    """The shapes pick the variants they name, by the launchers' own rules (csrc/attention/
    attention_mma.h mma_warps, csrc/linear/linear_sm80.cu), on GPUs of different sizes."""
    sc = _bench_module("sanitize_cases")

    def attention_warps(c):  # mma_warps: 8 when the 128-row grid has >= 2 blocks per SM
        s = sc.resolve_shape(c, sms)
        lengths = s["lengths"]
        uniform = len(set(lengths)) == 1
        grid = len(lengths) * -(-lengths[0] // 128) if uniform else sum(lengths) // 128 + len(lengths)
        return 8 if grid * s["heads"] >= 2 * sms else 4

    sm80 = [c for c in sc.CASES if (c.op, c.tier) == ("attention", "mma_sm80")]
    assert {attention_warps(c) for c in sm80} == {4, 8}
    assert any(len(set(sc.resolve_shape(c, sms)["lengths"])) == 1 for c in sm80)  # dense schedule
    assert any(len(set(sc.resolve_shape(c, sms)["lengths"])) > 1 for c in sm80)  # packed schedule
    gemm = [sc.resolve_shape(c, sms) for c in sc.CASES if (c.op, c.tier) == ("linear", "mma_sm80")]
    big_blocks = [-(-s["n"] // 128) * -(-s["m"] // 128) for s in gemm if s["k"] % 8 == 0]
    assert any(b >= sms for b in big_blocks) and any(b < sms for b in big_blocks)  # Big and Small tiles
    assert any(s["k"] % 8 for s in gemm)  # the unaligned path
    hopper = [sc.resolve_shape(c, sms) for c in sc.CASES if (c.op, c.tier) == ("linear", "wgmma_sm90a")]
    tiles = [-(-s["n"] // 128) * -(-s["m"] // 128) for s in hopper]
    assert any(t > sms for t in tiles) and any(t < sms for t in tiles)  # persistent blocks with 2 tiles, and 1
    assert any(s["m"] % 8 for s in hopper) and any(s["m"] % 8 == 0 for s in hopper)  # masked, TMA-stored epilogue


def test_sanitize_cases_arguments_fit_the_cuda_wrappers():
    """Every case's inputs pass the cuda backend's own argument checks (under FakeTensorMode on a
    'cuda' device: no GPU needed), with the reference's output shapes and the dtypes of the op."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from fastradio.backends import cuda

    sc = _bench_module("sanitize_cases")
    for c in sc.CASES:
        args = sc.make_inputs(c, sc.resolve_shape(c, 132))
        want = sc.reference(c, args)
        with FakeTensorMode():
            fake = {k: torch.empty(v.shape, dtype=v.dtype, device="cuda") if isinstance(v, torch.Tensor) else v
                    for k, v in args.items()}
            out = getattr(cuda, c.op)(**fake, tier=c.tier)
            got = [(tuple(t.shape), t.dtype) for t in (out if isinstance(out, tuple) else (out,))]
        dtypes = [args["x"].dtype, c.dtype] if c.op == "add_layer_norm" else [c.dtype]
        assert got == [(tuple(w.shape), dt) for w, dt in zip(want, dtypes)], c.id
        for w in want:
            assert torch.isfinite(w).all() and w.dtype == torch.float32, c.id


def test_sanitize_cases_dry_run_and_list(tmp_path):
    sc = _bench_module("sanitize_cases")
    env = _env(tmp_path / "cache")
    res = subprocess.run([sys.executable, str(BENCH / "sanitize_cases.py"), "--dry-run", "--json",
                          str(tmp_path / "s.json")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    d = json.loads((tmp_path / "s.json").read_text())
    assert d["script"] == "sanitize_cases" and d["mode"] == "dry-run" and d["ok"] is True
    assert [c["id"] for c in d["cases"]] == [c.id for c in sc.CASES]
    assert d["counts"] == {"pass": 0, "fail": 0, "skip": len(sc.CASES)}
    assert all(c["reason"].startswith("dry run") for c in d["cases"])
    listed = subprocess.run([sys.executable, str(BENCH / "sanitize_cases.py"), "--list", "--only", "mma_sm75"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0
    assert [ln.split()[0] for ln in listed.stdout.splitlines()] == [c.id for c in sc.CASES if "mma_sm75" in c.id]
    # Without a GPU (and without --dry-run) it refuses rather than reporting success.
    if not torch.cuda.is_available():
        res = subprocess.run([sys.executable, str(BENCH / "sanitize_cases.py")], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 2 and "no CUDA device" in res.stderr


def _sanitizer_ctx(tmp_path, gpu_check, exe="/opt/cuda/bin/compute-sanitizer"):
    import argparse
    import time

    args = argparse.Namespace(dry_run=False, quick=False, out=None, budget_s=420)
    ctx = gpu_check.Ctx(args=args, tmp=tmp_path, logs=tmp_path, deadline=time.monotonic() + 400,
                        env={"TRITON_INTERPRET": "1", "PATH": "/usr/bin"})
    ctx.info["sanitizer_exe"] = exe
    ctx.gpu = True
    return ctx


def test_gpu_check_sanitizer_steps_command_lines(tmp_path):
    gpu_check = _bench_module("gpu_check")
    ctx = _sanitizer_ctx(tmp_path, gpu_check)
    steps = [s for s in gpu_check.STEPS if isinstance(s, gpu_check.Step) and s.name.startswith("sanitize[")]
    assert [s.name for s in steps] == ["sanitize[memcheck]", "sanitize[racecheck]", "sanitize[synccheck]"]
    assert 60 <= sum(s.timeout_s for s in steps) <= 90 and all(s.needs_gpu for s in steps)
    names = [s.name for s in gpu_check.STEPS if isinstance(s, gpu_check.Step)]
    assert names.index("model-parity") < names.index("sanitize[memcheck]") < names.index("bench-ops")
    for step, tool in zip(steps, ("memcheck", "racecheck", "synccheck")):
        argv = step.command(ctx)
        assert argv[:7] == ["/opt/cuda/bin/compute-sanitizer", "--tool", tool, "--error-exitcode", "99",
                            "--print-limit", "20"]
        assert argv[7:10] == [sys.executable, "benchmarks/sanitize_cases.py", "--json"]
        assert argv[10] == str(tmp_path / f"sanitize-{tool}.json")
        budget = int(argv[argv.index("--budget-s") + 1])
        assert 5 <= budget <= step.timeout_s - 8
        env = step.env(ctx)
        assert env["PYTORCH_NO_CUDA_MEMORY_CACHING"] == "1" and "TRITON_INTERPRET" not in env
    ctx.info["sanitizer_exe"] = None
    assert steps[0].command(ctx).startswith("compute-sanitizer not found")


@pytest.mark.parametrize("rc,log,cases,status,reason", [
    (0, "========= COMPUTE-SANITIZER\n[sanitize_cases] pass x\n========= ERROR SUMMARY: 0 errors\n",
     {"pass": 3, "fail": 0, "skip": 1}, "pass", None),
    (99, "========= Invalid __global__ read of size 4 bytes\n=========     at attention_core_kernel\n"
         "========= ERROR SUMMARY: 2 errors\n", {"pass": 3, "fail": 0, "skip": 0}, "fail", "reported 2 error(s)"),
    (0, "========= RACECHECK SUMMARY: 3 hazards displayed (0 errors, 3 warnings)\n",
     {"pass": 3, "fail": 0, "skip": 0}, "pass", None),
    (1, "========= ERROR SUMMARY: 0 errors\n", {"pass": 2, "fail": 1, "skip": 0}, "fail", "1 case(s) failed"),
    (0, "========= ERROR SUMMARY: 0 errors\n", {"pass": 0, "fail": 0, "skip": 4}, "fail", "no case ran"),
    (2, "sanitize_cases: no CUDA device\n", None, "fail", "exit code 2"),
])
def test_gpu_check_sanitizer_step_records(tmp_path, rc, log, cases, status, reason):
    """Per tool: pass/fail, the sanitizer's own report lines and error count, the case counts."""
    gpu_check = _bench_module("gpu_check")
    ctx = _sanitizer_ctx(tmp_path, gpu_check)
    step = next(s for s in gpu_check.STEPS if isinstance(s, gpu_check.Step) and s.name == "sanitize[racecheck]")
    path = tmp_path / "racecheck.log"
    path.write_text(log)
    if cases is not None:
        rows = [{"id": f"c{i}", "status": s, "reason": "r"} for s, n in cases.items() for i in range(n)]
        (tmp_path / "sanitize-racecheck.json").write_text(json.dumps({"counts": cases, "cases": rows}))
    rec = {"name": step.name, "status": "pass" if rc == 0 else "fail", "rc": rc}
    step.after(ctx, rec, path)
    assert rec["status"] == status, rec
    assert rec["tool"] == "racecheck"
    assert rec["report"] == "\n".join(ln for ln in log.splitlines() if ln.startswith("========="))
    if reason is None:
        assert "reason" not in rec
    else:
        assert reason in rec["reason"], rec
    if cases is not None:
        assert rec["cases"] == cases and len(rec["failed_cases"]) == cases["fail"]
    if "warnings" in log:
        assert rec["errors"] == 0 and rec["warnings"] == 3
