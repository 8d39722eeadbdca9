"""Whole-model benchmarks (shared/DESIGN.md §9): images/s at batch 32 and latency at batch 1, bf16,
for fastradio (backend "auto") against its peers in the same run: the reference backend in eager
bf16 (the model as Hugging Face runs it: eager, SDPA) and ``torch.compile(reference model)``.

Numbers per (model, resolution, batch, impl): median / p10 / p90 ms of single calls (CUDA events,
``common.time_fn``), and at batch 1 the CUDA-graph time too (``common.time_graph``; when capture
fails the reason is recorded and the events time stands). Throughput rows report images/s and
TFLOP/s with the spec's count, FLOPs/img = 2·N·768·D + depth·(2·T·(4·D² + 2·D·F) + 4·T²·D) (N
patches, T = N + P prefix tokens, F the MLP width; = 24·T·D² per block for F = 4·D), as a fraction of 790 TFLOP/s (the H100 bf16 GEMM figure of DESIGN §9; the GPU's name
is recorded, and an 8192³ bf16 GEMM is measured in the same run as a second yardstick).

torch.compile runs in a child process that starts at once and compiles while this process times
the eager configurations (its inductor workers get half the cores; rows timed while it compiled
say so). It then waits; its timings run alone on the GPU after the eager ones. Compiling ViT-L
takes tens of seconds per shape, so only the configs marked "compile" get the compiled peer.

Sets (each within a time budget, --budget-s; a config that would not fit is dropped with the
reason, and so is one that would not fit in GPU memory or runs out of it):

- default (~100 s): L@512 b32 and b1 with torch.compile; B, H, C-RADIOv4-SO400M, C-RADIOv4-H, g
  @512 b32 and b1 without; then L@1024² and 2048² b1 with global attention and with ViTDet windows
  (ws = 16, fastradio.load's vitdet_window_size; the FLOP count knows the mode), budget permitting.
- --quick: L@512 b32 (compiled) and b1 (eager, graphs); B@512 b32 and b1. No H, no g.
- --full (no 120 s limit; tens of minutes): B/L/H/g and C-RADIOv4-SO400M/H x 224/512/768/1024 px x
  b32/b1, all compiled; and the four high-resolution rows (L@1024²/2048² b1, windows or not; eager)
  (L's compile overlaps the eager timings; the other models' compiled peers run one after another
  at the end, one child process per model).
- --dry-run: CPU, tiny test models, wall clock, torch.compile(backend="eager"): checks the code.

Checkpoints: the synthetic ones of ``model_parity.py`` (same cache, same seed; generated in
parallel processes if absent).

    python benchmarks/bench_model.py --json out.json [--quick | --full] [--budget-s S]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import model_parity as mp  # noqa: E402

PEAK_TFLOPS = 790.0     # H100 bf16 dense GEMM, DESIGN §9 (H200: same SMs and clocks)
GOALS = {"L@512 b32 images/s": 880, "L@512 b1 latency ms (graphs)": 2.0,
         "speedup vs reference eager (large batch)": 1.3, "speedup vs torch.compile(reference) (large batch)": 1.15,
         "speedup vs reference eager at b1, <= 512 px": 2.0}


@dataclass(frozen=True)
class Config:
    model: str
    h: int
    w: int
    batch: int
    compile: bool = False
    #: ViTDet window side in patches (fastradio.load's vitdet_window_size); None: global attention
    window: int | None = None

    @property
    def key(self) -> str:
        return f"{self.model}@{self.h}x{self.w} b{self.batch}" + (f" ws{self.window}" if self.window else "")


#: High resolution with and without ViTDet windows (DESIGN decision 26): L at 1024² and 2048², b1,
#: global attention vs ws = 16 (G = 4). Last in their sets, so the budget drops them first.
HIGH_RES = [Config("C-RADIOv2-L", p, p, 1, window=ws) for p in (1024, 2048) for ws in (None, 16)]


def configs_for(mode: str) -> list[Config]:
    """In priority order (the budget drops from the end)."""
    if mode == "dry-run":
        return [Config("test-d128", 64, 64, 4, True), Config("test-d128", 64, 64, 1, True),
                Config("test-d160", 32, 48, 4), Config("test-d160", 32, 48, 1)]
    if mode == "quick":
        return [Config("C-RADIOv2-L", 512, 512, 32, True), Config("C-RADIOv2-L", 512, 512, 1),
                Config("C-RADIOv2-B", 512, 512, 32), Config("C-RADIOv2-B", 512, 512, 1)]
    if mode == "full":
        return [Config(m, p, p, b, True) for m in ("C-RADIOv2-L", "C-RADIOv2-B", "C-RADIOv2-H", "C-RADIOv4-SO400M",
                                                   "C-RADIOv4-H", "C-RADIOv2-g")
                for p in (512, 224, 768, 1024) for b in (32, 1)] + HIGH_RES
    return [Config("C-RADIOv2-L", 512, 512, 32, True), Config("C-RADIOv2-L", 512, 512, 1, True),
            Config("C-RADIOv2-B", 512, 512, 32), Config("C-RADIOv2-B", 512, 512, 1),
            Config("C-RADIOv2-H", 512, 512, 32), Config("C-RADIOv2-H", 512, 512, 1),
            Config("C-RADIOv4-SO400M", 512, 512, 32), Config("C-RADIOv4-SO400M", 512, 512, 1),
            Config("C-RADIOv4-H", 512, 512, 32), Config("C-RADIOv4-H", 512, 512, 1),
            Config("C-RADIOv2-g", 512, 512, 32), Config("C-RADIOv2-g", 512, 512, 1)] + HIGH_RES


DROPPED = {
    "default": "224/768/1024 px (all models), torch.compile except L@512 (use --full)",
    "quick": "H, g and C-RADIOv4; torch.compile of L@512 b1; 224/768/1024 px",
    "full": "nothing (time budget permitting)",
    "dry-run": "real models: CPU self-check only",
}


# -- timing plan ----------------------------------------------------------------------------------

class Pace:
    """Repetition counts and cost estimates from the FLOP count and the rate seen so far."""

    def __init__(self, device: torch.device, mode: str):
        self.gpu = device.type == "cuda"
        self.rate = 250e12 if self.gpu else 2e10      # bf16 FLOP/s, updated from measurements
        self.target_s = {"quick": 0.8, "default": 1.0, "full": 2.0, "dry-run": 0.05}[mode]
        self.dry = mode == "dry-run"

    def call_s(self, flops: float) -> float:
        return flops / self.rate + (0.003 if self.gpu else 0.002)

    def plan(self, flops: float, batch: int) -> dict:
        t = self.call_s(flops)
        if self.dry:
            return {"warmup": 1, "reps": 3, "calls": 2, "replays": 2}
        clamp = lambda v, lo, hi: int(max(lo, min(hi, round(v))))  # noqa: E731
        p = {"warmup": clamp(0.3 / t, 2, 10), "reps": clamp(self.target_s / t, 6, 50)}
        if batch == 1:
            p["calls"] = clamp(0.05 / t, 3, 20)
            p["replays"] = clamp(self.target_s / (p["calls"] * t), 5, 20)
        return p

    def cost_s(self, flops: float, batch: int, impls: int) -> float:
        p = self.plan(flops, batch)
        n = p["warmup"] + p["reps"] + (p["calls"] * (p["replays"] + 4) if batch == 1 else 0)
        return impls * (n * self.call_s(flops) + 0.5)

    def learn(self, flops: float, secs: float) -> None:
        if secs > 0.002:
            self.rate = 0.5 * self.rate + 0.5 * flops / secs


def activation_bytes(cfg, h: int, w: int, batch: int) -> int:
    """Rough peak of one bf16 forward: the model keeps every block's output (depth x tokens x D),
    plus the widest temporaries of a block (qkv, MLP hidden, GELU), plus the fp32 input."""
    t = (h // 16) * (w // 16) + cfg.num_prefix_tokens
    n = batch * t
    return 2 * n * cfg.embed_dim * (cfg.depth + 12) + 2 * n * cfg.mlp_hidden * 3 + 4 * batch * 3 * h * w * 2


# -- measuring one implementation ----------------------------------------------------------------

def measure(fn, xs: list, cfg_model, c: Config, pace: Pace, device: torch.device) -> dict:
    """Times fn(x) for the rotating inputs xs; batch 1 also under a CUDA graph."""
    flops = mp.flops_per_image(cfg_model, c.h // 16, c.w // 16) * c.batch
    p = pace.plan(flops, c.batch)
    args = [(x,) for x in xs]
    row: dict = {}
    with torch.inference_mode():
        # The first call alone: Triton JIT compilation / autotuning, allocator growth (part of warm-up).
        t0 = time.perf_counter()
        fn(xs[0])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        row["first_call_s"] = round(time.perf_counter() - t0, 3)
        t = common.time_fn(fn, args, warmup=p["warmup"], reps=p["reps"], device=device)
        row.update(median_ms=t.median_ms, p10_ms=t.p10_ms, p90_ms=t.p90_ms, reps=t.reps, method=t.method)
        if c.batch > 1:   # batch 1 measures launch latency as much as FLOP rate
            pace.learn(flops, t.median_ms / 1e3)
        if c.batch == 1:
            row["events_latency_ms"] = t.median_ms
            g = None
            if device.type != "cuda":
                row["graph_unavailable"] = f"device {device} is not a CUDA device (time_graph needs one)"
            else:
                g = common.time_graph(fn, args, calls=p["calls"], replays=p["replays"], device=device)
                if g is None:
                    row["graph_unavailable"] = "capture failed: " + _capture_error(fn, args[0])
            if g is not None:
                row.update(graph_ms=g.median_ms, graph_p10_ms=g.p10_ms, graph_p90_ms=g.p90_ms,
                           graph_calls=p["calls"], graph_replays=g.reps, graph_method=g.method)
            row["latency_ms"] = g.median_ms if g is not None else t.median_ms
            row["latency_method"] = g.method if g is not None else f"{t.method} (no CUDA graph)"
    secs = (row["latency_ms"] if c.batch == 1 else row["median_ms"]) / 1e3
    row["images_per_s"] = c.batch / secs
    row["tflops"] = flops / secs / 1e12
    row["frac_peak_790"] = row["tflops"] / PEAK_TFLOPS
    return row


def _capture_error(fn, args: tuple) -> str:
    """Why a CUDA graph capture of fn fails (diagnostic only; time_graph swallows it)."""
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn(*args)
        del graph
        return "unknown (a plain capture of one call works)"
    except Exception as e:  # noqa: BLE001
        try:
            torch.cuda.synchronize()
        except Exception:  # noqa: BLE001
            pass
        return f"{type(e).__name__}: {str(e)[:300]}"


def make_inputs(c: Config, device: torch.device, n: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(c.batch * 1000 + c.h)
    return [torch.rand(c.batch, 3, c.h, c.w, generator=g).to(device) for _ in range(n)]


def base_row(c: Config, cfg_model, seed: int, storage: str) -> dict:
    n = (c.h // 16) * (c.w // 16)
    return {"model": c.model, "vitdet_window_size": c.window, "seed": seed, "storage_dtype": storage,
            "px": f"{c.h}x{c.w}", "batch": c.batch,
            "dtype": "bfloat16", "patches_per_image": n, "tokens_per_image": n + cfg_model.num_prefix_tokens,
            "flops_per_image": mp.flops_per_image(cfg_model, c.h // 16, c.w // 16)}


def gemm_peak(device: torch.device, dry: bool) -> dict:
    n = 256 if dry else 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    out = torch.empty(n, n, device=device, dtype=torch.bfloat16)
    t = common.time_fn(lambda: torch.mm(a, b, out=out), warmup=3 if dry else 10, reps=5 if dry else 30,
                       flush_l2=False, device=device)
    return {"m_n_k": n, "median_ms": t.median_ms, "tflops": 2 * n**3 / (t.median_ms / 1e3) / 1e12, "method": t.method}


# -- the torch.compile child ----------------------------------------------------------------------

class CompileWorker:
    """A child process that compiles the reference model for the "compile" configs while the
    parent times eager ones, then times them when told to (so nothing else runs on the GPU)."""

    def __init__(self, spec: dict, logdir: Path):
        self.spec_path = logdir / "compile-spec.json"
        self.out_path = logdir / "compile-results.json"
        self.log = logdir / "compile-worker.log"
        spec = {**spec, "out": str(self.out_path)}
        self.spec_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))
        self.lines: queue.Queue = queue.Queue()
        self.proc = subprocess.Popen([sys.executable, str(HERE / "bench_model.py"), "--_compile-worker",
                                      str(self.spec_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(self.log, "w"), text=True, env=env, start_new_session=True)
        self.ready: dict | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def _next(self, prefix: str, timeout: float) -> dict | None:
        end = time.monotonic() + max(0.0, timeout)
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                return None
            if line is None:
                self.lines.put(None)
                return None
            if line.startswith(prefix):
                return json.loads(line[len(prefix):])
            if time.monotonic() > end:
                return None

    def busy(self) -> bool:
        """Still compiling (not yet reported READY)?"""
        if self.ready is None and self.proc.poll() is None:
            self.ready = self._next("READY ", 0.0)
        return self.ready is None and self.proc.poll() is None

    def run(self, wait_ready_s: float, run_s: float) -> tuple[list, dict]:
        """Wait for READY, let it time, return (rows, info)."""
        info: dict = {}
        if self.ready is None:
            self.ready = self._next("READY ", wait_ready_s)
        if self.ready is None:
            info["error"] = (f"did not finish compiling within the time budget ({wait_ready_s:.0f} s more)"
                             if self.proc.poll() is None else f"exited with rc {self.proc.returncode}")
            self.stop()
            info["log_tail"] = self.log_tail()
            return [], info
        info.update(self.ready)
        try:
            self.proc.stdin.write("GO\n")
            self.proc.stdin.flush()
        except OSError as e:
            info["error"] = f"could not signal the worker: {e}"
        done = self._next("DONE ", run_s)
        if done is None:
            info["error"] = f"did not finish timing within {run_s:.0f} s"
            self.stop()
        try:
            rows = json.loads(self.out_path.read_text())
        except (OSError, ValueError):
            rows = []
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.stop()
        info["log_tail"] = self.log_tail()
        return rows, info

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except OSError:
                self.proc.kill()
            self.proc.wait()

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def compile_worker_main(spec_path: str) -> int:
    """The child: load, compile each config (first call), READY, wait for GO, time, DONE."""
    import fastradio

    spec = json.loads(Path(spec_path).read_text())
    device = torch.device(spec["device"])
    if spec["mode"] == "dry-run":
        torch.set_num_threads(1)
    deadline = spec["deadline_epoch"]
    pace = Pace(device, spec["mode"])
    t0 = time.monotonic()
    model = fastradio.load(spec["folder"], device=device, dtype=torch.bfloat16, backend="reference")
    load_s = time.monotonic() - t0
    compiled = torch.compile(model, backend=spec["backend"], dynamic=False)
    cfgs = [Config(**c) for c in spec["configs"]]
    ready, rows, done = [], [], {}
    last_compile = None
    for c in cfgs:
        br = base_row(c, model.config, spec["seed"], spec["storage"])
        br.update(impl="reference-compile", backend="reference", plan=dict(model.plan.names),
                  compile_backend=spec["backend"], compile_options={"dynamic": False, "mode": "default"})
        # A later shape recompiles the whole graph: assume it takes as long again, with a margin,
        # so that a compile never runs into the parent's deadline (which would lose every result).
        guess = 1.5 * last_compile + 5 if last_compile else 0.0
        if time.time() + guess > deadline:
            rows.append({**br, "status": "skip", "reason": f"no time left to compile (the last compile took "
                                                            f"{last_compile:.0f} s)"})
            continue
        xs = make_inputs(c, device)
        try:
            t = time.monotonic()
            with torch.inference_mode():
                compiled(xs[0])
                compiled(xs[1])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            last_compile = time.monotonic() - t
            done[c] = (br, xs, last_compile)
            ready.append({"config": c.key, "compile_s": round(last_compile, 1)})
        except Exception as e:  # noqa: BLE001 - a compile failure is a result
            rows.append({**br, "status": "error",
                         "reason": f"torch.compile failed: {type(e).__name__}: {str(e)[:1500]}"})
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print("READY " + json.dumps({"load_s": round(load_s, 1), "compiled": ready,
                                 "compile_threads": os.environ.get("TORCHINDUCTOR_COMPILE_THREADS")}), flush=True)
    cmd = sys.stdin.readline().strip()
    if cmd == "GO":
        for c, (br, xs, cs) in done.items():
            try:
                r = measure(compiled, xs, model.config, c, pace, device)
                rows.append({**br, **r, "compile_s": cs, "status": "ok"})
            except Exception as e:  # noqa: BLE001
                rows.append({**br, "compile_s": cs, "status": "error",
                             "reason": f"{type(e).__name__}: {str(e)[:1500]}"})
    Path(spec["out"]).write_text(json.dumps(rows, default=str))
    print("DONE {}", flush=True)
    return 0


# -- main -------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the results here")
    grp = ap.add_mutually_exclusive_group()
    grp.add_argument("--quick", action="store_true", help="L and B at 512 px only (see the module doc)")
    grp.add_argument("--full", action="store_true", help="B/L/H/g x 224/512/768/1024 px, all compiled (minutes)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny test models: checks that the script works")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic checkpoints")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="stop adding configs when this is spent (default 105; --full 3600)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile peer")
    ap.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; dry run: eager)")
    ap.add_argument("--linear-config", default=None,
                    help="FASTRADIO_LINEAR_CONFIG for fastradio's Triton GEMMs when the environment does not set "
                         "it (default: 'heuristic' — autotuning every GEMM shape does not fit 120 s; --full: the "
                         "library default, autotune)")
    ap.add_argument("--_compile-worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._compile_worker:
        return compile_worker_main(args._compile_worker)

    t_start = time.monotonic()
    mode = "dry-run" if args.dry_run else ("quick" if args.quick else ("full" if args.full else "default"))
    if args.dry_run:
        device = torch.device("cpu")
        torch.set_num_threads(1)   # tiny shapes: threads only add overhead (and fight the children)
    elif torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        print("bench_model: no CUDA GPU; use --dry-run for the CPU self-check", file=sys.stderr)
        return 2
    budget = args.budget_s if args.budget_s is not None else (3600.0 if mode == "full" else 105.0)
    deadline = t_start + budget
    left = lambda: deadline - time.monotonic()  # noqa: E731
    compile_backend = args.compile_backend or ("eager" if mode == "dry-run" else "inductor")
    linear_config = args.linear_config or (None if mode == "full" else "heuristic")
    if linear_config:
        os.environ.setdefault("FASTRADIO_LINEAR_CONFIG", linear_config)
    configs = configs_for(mode)
    models = list(dict.fromkeys(c.model for c in configs))
    json_path = Path(args.json) if args.json else None
    pace = Pace(device, mode)
    logdir = Path(tempfile.mkdtemp(prefix="fastradio-bench-model-"))

    rows: list[dict] = []
    dropped: list[dict] = []
    result = {"schema": 1, "script": "bench_model", "mode": mode, "budget_s": budget, "seed": args.seed,
              "environment": mp.environment(device), "dtype": "bfloat16",
              "peak_tflops_assumed": PEAK_TFLOPS,
              "peak_note": "790 TFLOP/s = H100 bf16 dense GEMM (DESIGN §9); frac_peak_790 is against it on any GPU "
                           "(see environment.gpu_name); gemm_peak is measured here",
              "flops_formula": "2*N*768*D + depth*(2*T*(4*D^2 + 2*D*F) + 4*T^2*D), N patches, "
                               "T = N + 8 (C-RADIOv4: N + 10), F = MLP width (4*D; C-RADIOv4-SO400M: 4304)",
              "impls": {"fastradio": "fastradio.load(..., backend='auto'), bf16, eager",
                        "reference-eager": "the same model on backend='reference' (plain PyTorch, SDPA), bf16",
                        "reference-compile": f"torch.compile(reference model, backend={compile_backend!r}, "
                                             f"dynamic=False), bf16"},
              "not_in_this_mode": DROPPED[mode],
              "kernel_env": {k: os.environ.get(k) for k in mp.KERNEL_ENV}, "goals": GOALS,
              "rows": rows, "dropped": dropped, "models": []}

    def save(partial: bool) -> None:
        if json_path:
            result["wall_s"] = round(time.monotonic() - t_start, 1)
            mp.write_json(json_path, {**result, "partial": partial} if partial else result)

    ckpts = mp.Checkpoints(args.seed)
    ckpts.prefetch(models)
    worker = None
    try:
        # The compiled peer, one worker per model. The first starts now and compiles while the
        # eager configs are timed; others (--full) run one after another at the end.
        groups: dict[str, list[Config]] = {}
        for c in configs:
            if c.compile and not args.no_compile:
                groups.setdefault(c.model, []).append(c)
        if args.no_compile:
            dropped.append({"config": "reference-compile (all)", "reason": "--no-compile"})
        result["compile_workers"] = {}

        def start_worker(model: str) -> CompileWorker | None:
            try:
                folder = ckpts.wait(model, timeout=max(0.0, min(120.0, left() - 20)))
            except (TimeoutError, RuntimeError) as e:
                for c in groups[model]:
                    dropped.append({"config": c.key + " reference-compile", "reason": str(e)[:500]})
                return None
            spec = {"device": str(device), "folder": str(folder), "mode": mode, "seed": args.seed,
                    "storage": mp.storage_dtype(model), "backend": compile_backend,
                    "deadline_epoch": time.time() + left() - (15 if device.type == "cuda" else 5),
                    "configs": [dataclasses.asdict(c) for c in groups[model]]}
            wdir = logdir / model
            wdir.mkdir()
            return CompileWorker(spec, wdir)

        def collect(model: str, w: CompileWorker) -> None:
            cc = groups[model]
            run_s = max(5.0, 1.5 * sum(pace.cost_s(mp.flops_per_image(_cfg(c), c.h // 16, c.w // 16) * c.batch,
                                                   c.batch, 1) for c in cc) + 5)
            crow, info = w.run(wait_ready_s=max(0.0, left() - run_s - 3), run_s=run_s)
            result["compile_workers"][model] = info
            for r in crow:
                rows.append(r)
                _print(r)
            for c in cc:
                if not any(r.get("impl") == "reference-compile" and _key(r) == (c.model, f"{c.h}x{c.w}", c.batch, c.window)
                           for r in crow):
                    dropped.append({"config": c.key + " reference-compile",
                                    "reason": "compile worker: " + info.get("error", "no result")})
            save(True)

        pending_workers = list(groups)
        first = pending_workers.pop(0) if pending_workers else None
        worker = start_worker(first) if first else None

        if device.type == "cuda":
            result["gemm_peak"] = gemm_peak(device, False)
        else:
            result["gemm_peak"] = gemm_peak(device, True)
        peak_meas = result["gemm_peak"]["tflops"]

        loaded: dict = {}
        entries: dict = {}
        for c in configs:
            label = c.key
            storage = mp.storage_dtype(c.model)
            mcfg = _cfg(c)
            flops = mp.flops_per_image(mcfg, c.h // 16, c.w // 16) * c.batch
            need = pace.cost_s(flops, c.batch, 2)
            if (c.model, c.window) not in loaded:   # loading: ~1 s per GB of bf16 weights, plus generation if absent
                need += 1 + 2 * mcfg.param_count() / 1e9 + (0 if ckpts.ready(c.model) else 10)
            reserve = 12.0 if (worker is not None and device.type == "cuda") else 2.0
            if left() < need + reserve:
                dropped.append({"config": label, "reason": f"time budget: ~{need:.0f} s needed, {left():.0f} s left"})
                continue
            if (c.model, c.window) not in loaded:
                entry = entries[c.model] = ckpts.info(c.model)
                result["models"].append(entry)
                try:
                    folder = ckpts.wait(c.model, timeout=max(0.0, left() - 10))
                    t0 = time.monotonic()
                    m = load_model(folder, c, device)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    entry.update(load_s=round(time.monotonic() - t0, 1), generate_s=ckpts.gen_s.get(c.model))
                    loaded[(c.model, c.window)] = m
                except Exception as e:  # noqa: BLE001
                    entry["error"] = f"{type(e).__name__}: {str(e)[:1000]}"
                    loaded[(c.model, c.window)] = None
            m = loaded[(c.model, c.window)]
            if m is None:
                dropped.append({"config": label, "reason": "model not available: " + entries[c.model].get("error", "")})
                continue
            if device.type == "cuda":
                free, _total = torch.cuda.mem_get_info(device)
                est = activation_bytes(m.config, c.h, c.w, c.batch)
                if est > 0.9 * free:
                    dropped.append({"config": label, "reason": f"would not fit in GPU memory: ~{est / 2**30:.1f} GiB "
                                                               f"needed, {free / 2**30:.1f} GiB free"})
                    continue
            xs = make_inputs(c, device)
            for impl, backend in (("reference-eager", "reference"), ("fastradio", "auto")):
                row = {**base_row(c, m.config, args.seed, storage), "impl": impl, "backend": backend}
                try:
                    m.set_backend(backend)
                    row["plan"] = dict(m.plan.names)
                    row["concurrent_compile"] = bool(worker and worker.busy())
                    row.update(measure(lambda x: m(x), xs, m.config, c, pace, device))
                    row["status"] = "ok"
                except torch.cuda.OutOfMemoryError as e:
                    row.update(status="skip", reason=f"out of GPU memory: {str(e)[:300]}")
                except Exception as e:  # noqa: BLE001
                    row.update(status="error", reason=f"{type(e).__name__}: {str(e)[:1500]}")
                rows.append(row)
                _print(row)
            del xs
            if device.type == "cuda":
                torch.cuda.empty_cache()
            save(True)
        loaded.clear()
        if device.type == "cuda":
            torch.cuda.empty_cache()

        if worker is not None:
            collect(first, worker)
            worker.stop()
        for model in pending_workers:   # --full: the other models' compiled peers, one at a time
            worker = start_worker(model)
            if worker is not None:
                collect(model, worker)
                worker.stop()
    finally:
        if worker is not None:
            worker.stop()
        ckpts.close()

    _speedups(rows, peak_meas)
    result["summary"] = _summary(rows)
    errors = [r for r in rows if r.get("status") == "error" and r["impl"] != "reference-compile"]
    ok = not errors and any(r.get("status") == "ok" for r in rows)
    result.update(ok=ok, counts={s: sum(r.get("status") == s for r in rows) for s in ("ok", "skip", "error")})
    save(False)
    for d in dropped:
        print(f"[bench] dropped {d['config']}: {d['reason']}", flush=True)
    print(f"[bench] {len(rows)} rows, {len(dropped)} dropped, {result['wall_s']} s", flush=True)
    return 0 if ok else 1


def _cfg(c: Config):
    from fastradio.synthetic import model_config

    return model_config(c.model).with_(window_size=c.window)


def load_model(folder, c: Config, device: torch.device):
    """The model of config c: bf16, backend "auto", ViTDet windows when c.window is set."""
    import fastradio

    return fastradio.load(folder, device=device, dtype=torch.bfloat16, backend="auto", vitdet_window_size=c.window)


def _key(r: dict) -> tuple:
    return (r["model"], r["px"], r["batch"], r.get("vitdet_window_size"))


def _speedups(rows: list[dict], peak_meas: float) -> None:
    by = {}
    for r in rows:
        if r.get("status") == "ok":
            by[(_key(r), r["impl"])] = r
    for r in rows:
        if r.get("status") != "ok":
            continue
        r["frac_measured_gemm_peak"] = r["tflops"] / peak_meas if peak_meas else None
        t = r["latency_ms"] if r["batch"] == 1 else r["median_ms"]
        for peer in ("reference-eager", "reference-compile"):
            p = by.get((_key(r), peer))
            if p is not None and p is not r:
                pt = p["latency_ms"] if p["batch"] == 1 else p["median_ms"]
                r[f"speedup_vs_{peer.replace('-', '_')}"] = pt / t
        if r["batch"] == 1 and "events_latency_ms" in r:
            p = by.get((_key(r), "reference-eager"))
            if p is not None and p is not r:
                r["speedup_vs_reference_eager_events"] = p["events_latency_ms"] / r["latency_ms"]


def _summary(rows: list[dict]) -> dict:
    out = {}
    for r in rows:
        if r.get("status") != "ok":
            continue
        ws = f" ws{r['vitdet_window_size']}" if r.get("vitdet_window_size") else ""
        k = f"{r['model']}@{r['px']} b{r['batch']}{ws} {r['impl']}"
        out[k] = ({"latency_ms": round(r["latency_ms"], 3), "method": r["latency_method"]} if r["batch"] == 1 else
                  {"images_per_s": round(r["images_per_s"], 1), "tflops": round(r["tflops"], 1),
                   "frac_peak_790": round(r["frac_peak_790"], 3)})
    return out


def _print(r: dict) -> None:
    ws = f" ws{r['vitdet_window_size']}" if r.get("vitdet_window_size") else ""
    head = f"[bench] {r['model']:<12} {r['px']:>9} b{r['batch']:<3}{ws} {r['impl']:<18}"
    if r.get("status") != "ok":
        print(f"{head} {r.get('status', '').upper()}: {r.get('reason', '')[:300]}", flush=True)
    elif r["batch"] == 1:
        print(f"{head} {r['latency_ms']:8.3f} ms ({r['latency_method']}; events {r['events_latency_ms']:.3f} ms)",
              flush=True)
    else:
        print(f"{head} {r['median_ms']:8.2f} ms  {r['images_per_s']:8.1f} img/s  {r['tflops']:6.1f} TFLOP/s "
              f"({100 * r['frac_peak_790']:.0f}% of 790)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
