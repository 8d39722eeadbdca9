"""End-to-end parity of the whole model on synthetic checkpoints (shared/DESIGN.md §7).

For each synthetic model (the test architecture, C-RADIOv2-B/L/H/g and C-RADIOv4-SO400M/H, seed
recorded) the fp32
oracle is the reference backend in fp32 with TF32 off. Checks, each one row of the JSON:

- fp32 mode, per backend choice (auto, cuda, triton; refused ones are one "skip" row with the
  reason): relative L2 of summary and features vs the oracle <= 1e-5;
- bf16 and fp16 mode, per backend (reference included, as the floor): relative L2 to the fp32
  oracle <= 1.5 x that of the reference backend run in the same dtype (never tighter than 1e-5),
  and per-image summary cosine >= 0.999;
- at square (224, 512), non-square (512x768), tiny (16x16) and identity-grid (2048, B only)
  resolutions, on inputs drawn fresh for every resolution (seeded, CPU-drawn, quantised to k/255);
- a list of mixed sizes (packed into one sequence) vs the oracle run one image at a time;
- NaN isolation: a NaN/Inf image in a batch and in a packed list leaves the other images' outputs
  finite and unchanged (vs the same call with that image clean).

Writes the JSON (``--json PATH``) and, next to it (same stem, ``.npz``), the inputs and outputs of
the fp32 oracle and of the auto backend for one small model and the test model, with the
synthetic name, seed and storage dtype, so anyone can recreate the checkpoint on a CPU and
re-check. Exits 1 if any check fails (skips for refusals or the time budget are not failures).

Checkpoints: C-RADIOv2-B and the test models come from the standard ``synthetic:<name>@<seed>``
cache (fp32, as ``fastradio.load("synthetic:C-RADIOv2-B@0")`` makes them); L, H and g are stored
in bf16 (``fastradio.synthetic.write_checkpoint(..., dtype=torch.bfloat16)``) in
``$FASTRADIO_CACHE/synthetic/<name>-seed<k>-bfloat16``, which halves their generation time (g:
~20 s instead of ~32 s on one core). The fp32 oracle then runs on the bf16-valued weights exactly.
All missing checkpoints are generated at start-up in parallel processes; ``bench_model.py``
reuses this cache (and this code).

    python benchmarks/model_parity.py --json out.json [--quick] [--budget-s 100]
    python benchmarks/model_parity.py --json out.json --dry-run      # CPU, tiny test models

Default, in this order: B (224, 512, 512x768, 16x16, 2048, list, NaN batch and list), test-d128
(224, 256, 128x256, 16x16, list, NaN), L (as B without 2048), H and g (224, 512, 16x16, NaN
batch); a model whose checkpoint is still being generated is passed over for one that is ready.
--quick: B without 2048, test-d128, L at 224, 512, 16x16 and NaN batch; no H, no g. The time
budget (--budget-s, default 100; gpu_check passes its step limit less a margin) skips a model or a
resolution that would not fit, with the reason; the guard learns how long Triton's JIT took on the
first resolution of each model. Triton GEMMs use their deterministic tiles
(FASTRADIO_LINEAR_CONFIG=heuristic) unless the environment says otherwise: autotuning every shape
would not fit. --dry-run: test-d128 (every kind of check) and test-d160 (its checkpoint made by a
child process, as the big ones are), on the CPU with one thread.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent

FP32_TOL = 1e-5          # relative L2 in fp32 mode (DESIGN §7)
LOW_RATIO = 1.5          # low-precision error <= 1.5 x the reference's in that dtype
COS_MIN = 0.999          # per-image summary cosine in low precision
NAN_TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-3, torch.float16: 1e-3}  # neighbours vs clean run
BACKENDS = ("auto", "cuda", "triton")
#: Kernel settings read from the environment (recorded in the JSON). Parity checks the
#: deterministic GEMM tiles unless the caller chose otherwise: autotuning every GEMM shape of
#: five models in three dtypes would not fit the step's 120 s.
KERNEL_ENV = ("FASTRADIO_BACKEND", "FASTRADIO_TIER", "FASTRADIO_LINEAR_CONFIG", "FASTRADIO_ATTENTION_AUTOTUNE",
              "TRITON_INTERPRET")
PARITY_ENV_DEFAULTS = {"FASTRADIO_LINEAR_CONFIG": "heuristic"}
LOW_DTYPES = (torch.bfloat16, torch.float16)


# =============================================================================================
# synthetic checkpoints, shared with bench_model.py
# =============================================================================================

def storage_dtype(name: str) -> str:
    """Storage dtype of the synthetic checkpoint used for ``name``: fp32 for B and the test
    models (the standard ``synthetic:`` cache), bf16 for L/H/g (half the generation time)."""
    from fastradio.configs import resolve_known_model

    km = resolve_known_model(name)
    if km is None:
        raise ValueError(f"unknown model {name!r}")
    return "float32" if (km.test_only or km.name in ("C-RADIOv2-B", "C-RADIOv3-B")) else "bfloat16"


def checkpoint_folder(name: str, seed: int, storage: str) -> Path:
    """Where the checkpoint lives (it may not exist yet)."""
    from fastradio.configs import resolve_known_model
    from fastradio.synthetic import default_cache_dir

    km = resolve_known_model(name)
    base = default_cache_dir() / "synthetic" / f"{km.name}-seed{seed}"
    return base if storage == "float32" else base.with_name(f"{base.name}-{storage}")


def recreate_recipe(name: str, seed: int, storage: str) -> str:
    """Python that recreates the checkpoint byte for byte on any machine (CPU)."""
    if storage == "float32":
        return f'fastradio.load("synthetic:{name}@{seed}", device="cpu", dtype=torch.float32)'
    return (f'fastradio.synthetic.write_checkpoint(folder, "{name}", seed={seed}, dtype=torch.{storage}); '
            f'fastradio.load(folder, device="cpu", dtype=torch.float32)')


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def ensure_checkpoint(name: str, seed: int, storage: str) -> Path:
    """Generate the checkpoint if it is not in the cache (atomically: temp folder + rename)."""
    from fastradio import synthetic

    if storage == "float32":
        return synthetic.synthetic_folder(name, seed)
    final = checkpoint_folder(name, seed, storage)
    if _complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        synthetic.write_checkpoint(tmp, name, seed=seed, dtype=getattr(torch, storage))
        if final.exists() and not _complete(final):
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _complete(final):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


class Checkpoints:
    """Generates missing checkpoints in parallel child processes (one per model, started at
    once) while the caller works on the ones that are ready."""

    def __init__(self, seed: int, spawn_small: tuple[str, ...] = ()):
        self.seed = seed
        self.spawn_small = spawn_small  # test models are generated in-process unless named here
        self.procs: dict[str, tuple[subprocess.Popen, Path, float]] = {}
        self.gen_s: dict[str, float] = {}
        self.cached: dict[str, bool] = {}
        self.logdir = Path(tempfile.mkdtemp(prefix="fastradio-ckpt-logs-"))

    def prefetch(self, names: list[str]) -> None:
        for name in names:
            if name in self.procs or name in self.cached:
                continue
            storage = storage_dtype(name)
            if _complete(checkpoint_folder(name, self.seed, storage)):
                self.cached[name] = True
                continue
            self.cached[name] = False
            if name.startswith("test-") and name not in self.spawn_small:
                continue  # a fraction of a second: generated in wait(), no process start-up
            log = self.logdir / f"{name}.log"
            with open(log, "w") as f:
                proc = subprocess.Popen([sys.executable, str(HERE / "model_parity.py"), "--_generate", name,
                                         str(self.seed), storage], stdout=f, stderr=subprocess.STDOUT)
            self.procs[name] = (proc, log, time.monotonic())

    def ready(self, name: str) -> bool:
        """Can ``wait(name)`` return at once (a test model generated in-process counts: < 1 s)?"""
        if name not in self.procs:
            return name.startswith("test-") or _complete(checkpoint_folder(name, self.seed, storage_dtype(name)))
        return self.procs[name][0].poll() is not None

    def wait(self, name: str, timeout: float) -> Path:
        """The folder of ``name``; raises TimeoutError or RuntimeError (with the child's output)."""
        self.prefetch([name])
        storage = storage_dtype(name)
        if name in self.procs:
            proc, log, t0 = self.procs[name]
            try:
                rc = proc.wait(timeout=max(0.0, timeout))
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"generating synthetic {name}@{self.seed} ({storage}) did not finish "
                                   f"within {timeout:.0f} s") from None
            self.gen_s.setdefault(name, round(time.monotonic() - t0, 1))
            if rc != 0:
                tail = log.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"generating synthetic {name}@{self.seed} failed (rc {rc}): {tail}")
        elif not _complete(checkpoint_folder(name, self.seed, storage)):
            t0 = time.monotonic()
            ensure_checkpoint(name, self.seed, storage)
            self.gen_s[name] = round(time.monotonic() - t0, 1)
        folder = checkpoint_folder(name, self.seed, storage)
        if not _complete(folder):
            raise RuntimeError(f"checkpoint folder {folder} is incomplete")
        return folder

    def info(self, name: str) -> dict:
        storage = storage_dtype(name)
        return {"model": name, "seed": self.seed, "storage_dtype": storage,
                "folder": str(checkpoint_folder(name, self.seed, storage)),
                "was_cached": self.cached.get(name), "generate_s": self.gen_s.get(name),
                "recreate": recreate_recipe(name, self.seed, storage)}

    def close(self) -> None:
        for proc, _, _ in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.logdir, ignore_errors=True)


# =============================================================================================
# helpers shared with bench_model.py
# =============================================================================================

def environment(device: torch.device) -> dict:
    import fastradio

    env = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "device": str(device),
           "python": sys.version.split()[0], "fastradio_file": fastradio.__file__,
           "fastradio_version": getattr(fastradio, "__version__", None), "cpu_count": os.cpu_count()}
    try:
        import triton

        env["triton"] = triton.__version__
    except Exception as e:  # noqa: BLE001
        env["triton"] = f"unavailable: {type(e).__name__}"
    env["kernel_env"] = {k: os.environ.get(k) for k in KERNEL_ENV}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu_name=p.name, capability=list(torch.cuda.get_device_capability(device)),
                   gpu_memory_gib=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count)
    return env


def write_json(path: Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def disable_tf32() -> dict:
    """fp32 matmuls and convolutions in full fp32 (the oracle must not run on TF32)."""
    for obj, attr, val in ((torch.backends.cuda.matmul, "fp32_precision", "ieee"),
                           (getattr(torch.backends.cudnn, "conv", None), "fp32_precision", "ieee")):
        if obj is not None and hasattr(obj, attr):
            try:
                setattr(obj, attr, val)
            except Exception:  # noqa: BLE001 - older torch: the legacy flags below do it
                pass
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    state = {}
    for key, read in (("matmul_allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
                      ("cudnn_allow_tf32", lambda: torch.backends.cudnn.allow_tf32),
                      ("float32_matmul_precision", torch.get_float32_matmul_precision),
                      ("matmul_fp32_precision", lambda: getattr(torch.backends.cuda.matmul, "fp32_precision", None))):
        try:
            state[key] = read()
        except Exception as e:  # noqa: BLE001 - a torch that objects to reading a legacy flag
            state[key] = f"unreadable: {type(e).__name__}: {e}"
    return state


def flops_per_image(cfg, h: int, w: int) -> float:
    """DESIGN §9 / spec: 2·N·768·D (patch embedding) + depth·(2·T·(4·D² + 2·D·F) + 4·T²·D), with
    T = N + P prefix tokens (8; C-RADIOv4: 10) and F the MLP width (4·D, so the block term is the
    spec's 24·T·D²; C-RADIOv4-SO400M: 4304). With ViTDet windows (``cfg.window_size`` = ws, DESIGN
    decision 26) a windowed block runs on the N patch rows only and each attends to the ws² of its
    window: 2·N·(4·D² + 2·D·F) + 4·N·ws²·D."""
    n = h * w
    t = n + cfg.num_prefix_tokens
    d, f = cfg.embed_dim, cfg.mlp_hidden
    total = 2.0 * n * cfg.patch_features * d
    for windowed in (cfg.window_schedule or (False,) * cfg.depth):
        if windowed:
            total += 2.0 * n * (4.0 * d * d + 2.0 * d * f) + 4.0 * n * cfg.window_size**2 * d
        else:
            total += 2.0 * t * (4.0 * d * d + 2.0 * d * f) + 4.0 * t * t * d
    return total


def dtype_name(dt: torch.dtype) -> str:
    return str(dt).replace("torch.", "")


# =============================================================================================
# the checks
# =============================================================================================

@dataclass
class Group:
    kind: str                       # square | non-square | tiny | identity | packed-list | nan-batch | nan-list
    sizes: list                     # [(H, W)] (one size: a batch of `batch` images; several: a list)
    batch: int = 2

    @property
    def label(self) -> str:
        return ",".join(f"{h}x{w}" for h, w in self.sizes)


def groups_for(name: str, mode: str) -> list[Group]:
    """The resolutions checked for one model, most important first."""
    sq = lambda p, b=2: Group("square", [(p, p)], b)  # noqa: E731
    if name.startswith("test-"):
        return [sq(224), Group("identity", [(256, 256)]), Group("non-square", [(128, 256)]),
                Group("tiny", [(16, 16)], 3),
                Group("packed-list", [(224, 224), (16, 16), (64, 96), (224, 224), (96, 32)]),
                Group("nan-batch", [(64, 64)], 3), Group("nan-list", [(64, 64), (32, 48), (16, 16)])]
    big_list = Group("packed-list", [(224, 224), (16, 16), (512, 768), (224, 224), (336, 160)])
    nan = [Group("nan-batch", [(224, 224)], 3), Group("nan-list", [(224, 224), (64, 96), (16, 16)])]
    table = {
        "C-RADIOv2-B": [sq(224), sq(512), Group("non-square", [(512, 768)]), Group("tiny", [(16, 16)], 3),
                        big_list, *nan, Group("identity", [(2048, 2048)], 1)],
        "C-RADIOv2-L": [sq(224), sq(512), Group("non-square", [(512, 768)]), Group("tiny", [(16, 16)], 3),
                        big_list, *nan],
        "C-RADIOv2-H": [sq(224), sq(512), Group("tiny", [(16, 16)], 3), nan[0]],
        "C-RADIOv2-g": [sq(224), sq(512), Group("tiny", [(16, 16)], 3), nan[0]],
        # C-RADIOv4: 10 prefix tokens, align_corners=False; SO400M: head dim 72, MLP 4304
        "C-RADIOv4-SO400M": [sq(224), sq(512), Group("non-square", [(512, 768)]), Group("tiny", [(16, 16)], 3),
                             nan[0]],
        "C-RADIOv4-H": [sq(224), sq(512), Group("tiny", [(16, 16)], 3), nan[0]],
    }
    groups = table[name]
    if mode == "quick":
        if name == "C-RADIOv2-B":
            groups = [g for g in groups if g.kind != "identity"]
        elif name == "C-RADIOv2-L":
            groups = [g for g in groups if g.kind in ("square", "tiny", "nan-batch")]
    return groups


def models_for(mode: str) -> list[str]:
    """Priority order (B first: the real architecture matters most; a model whose checkpoint is
    still being generated is passed over for one that is ready)."""
    if mode == "dry-run":
        return ["test-d128", "test-d160"]
    if mode == "quick":
        return ["C-RADIOv2-B", "test-d128", "C-RADIOv2-L"]
    return ["C-RADIOv2-B", "test-d128", "C-RADIOv2-L", "C-RADIOv2-H", "C-RADIOv4-SO400M", "C-RADIOv4-H",
            "C-RADIOv2-g"]


def dry_groups(name: str) -> list[Group]:
    """CPU-sized groups for --dry-run: every code path once (value, list, NaN), tiny shapes."""
    if name != "test-d128":
        return [Group("square", [(32, 32)])]
    return [Group("square", [(32, 32)]), Group("tiny", [(16, 16)], 3),
            Group("packed-list", [(32, 32), (16, 16), (16, 48), (32, 32)]),
            Group("nan-batch", [(16, 32)], 3), Group("nan-list", [(32, 32), (16, 48), (16, 16)])]


def make_inputs(group: Group, seed: int, device: torch.device) -> tuple[list[torch.Tensor], list[np.ndarray]]:
    """Images quantised to k/255 (like decoded photos), drawn on the CPU from ``seed``: one
    (B, 3, H, W) tensor for a batch group, or a list of (3, H, W) for a list group."""
    g = torch.Generator().manual_seed(seed)
    if len(group.sizes) == 1:
        h, w = group.sizes[0]
        u8 = [torch.randint(0, 256, (group.batch, 3, h, w), generator=g, dtype=torch.uint8)]
    else:
        u8 = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in group.sizes]
    return [t.to(device).float().div_(255.0) for t in u8], [t.numpy() for t in u8]


def _poison(x: torch.Tensor) -> torch.Tensor:
    """NaN over one 16x16 patch and +Inf on one pixel of another."""
    x = x.clone()
    x[..., :16, :16] = float("nan")
    x[..., -1, -1] = float("inf")
    return x


def forward(model, xs: list[torch.Tensor], as_list: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image (summary (3D,), features (hw·D,)) in fp32."""
    with torch.inference_mode():
        if as_list:
            outs = model(xs)
            res = [(o.summary[0].float(), o.features[0].float().flatten()) for o in outs]
        else:
            o = model(xs[0])
            res = [(o.summary[i].float(), o.features[i].float().flatten()) for i in range(o.summary.shape[0])]
    return res


def one_at_a_time(model, xs: list[torch.Tensor], as_list: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    imgs = xs if as_list else list(xs[0])
    out = []
    for img in imgs:
        out += forward(model, [img[None]], False)
    return out


def compare(got: list, ref: list) -> dict:
    """rel-L2 over all images (summary and features), per-image cosines, finiteness."""
    def rel(i: int) -> float:
        a = torch.cat([g[i].double() for g in got])
        b = torch.cat([r[i].double() for r in ref])
        return float((a - b).norm() / b.norm().clamp_min(1e-300))

    def cos(i: int) -> list[float]:
        return [float(F.cosine_similarity(g[i].double(), r[i].double(), dim=0)) for g, r in zip(got, ref)]

    finite = all(bool(torch.isfinite(t).all()) for g in got for t in g)
    sc, fc = cos(0), cos(1)
    maxabs = max(float((g[1] - r[1]).abs().max()) for g, r in zip(got, ref))
    return {"summary_rel_l2": rel(0), "features_rel_l2": rel(1), "summary_cos_min": min(sc),
            "features_cos_min": min(fc), "features_max_abs": maxabs, "finite": finite}


def _ok(v: float, limit: float, ge: bool = False) -> bool:
    return (not math.isnan(v)) and (v >= limit if ge else v <= limit)


@dataclass
class Runner:
    device: torch.device
    seed: int
    mode: str
    deadline: float
    checks: list = field(default_factory=list)
    npz: dict = field(default_factory=dict)
    npz_meta: dict = field(default_factory=dict)
    input_seed: int = 0
    rate: dict = field(default_factory=dict)   # FLOP/s seen so far, per dtype name
    npz_full_tag: str | None = None
    jit_allowance: float = 0.0    # seconds the first resolution of a model took beyond its compute

    def model_allowance(self, name: str) -> float:
        """Seconds to load a model and check its first resolution, JIT included (a guess)."""
        from fastradio.synthetic import model_config

        return 4.0 + model_config(name).param_count() / 3e8 + self.jit_allowance

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def row(self, **kw) -> dict:
        kw.setdefault("seed", self.seed)
        if kw["status"] in ("pass", "fail"):
            kw["pass"] = kw["status"] == "pass"
        self.checks.append(kw)
        tag = kw["status"].upper()
        err = kw.get("errors") or {}
        extra = (f"sum {err['summary_rel_l2']:.2e} feat {err['features_rel_l2']:.2e} cos {err['summary_cos_min']:.6f}"
                 if "summary_rel_l2" in err else kw.get("reason", ""))
        print(f"[parity] {tag:<4} {kw['model']:<12} {kw.get('kind', ''):<12} {str(kw.get('resolution', '')):<22} "
              f"{kw.get('dtype', ''):<9} {kw.get('backend', ''):<9} {extra}", flush=True)
        return kw

    # -- timing estimates for the budget guard ----------------------------------------------
    def estimate(self, cfg, group: Group, runs_fp32: int, runs_low: int) -> float:
        fl = sum(flops_per_image(cfg, h // 16, w // 16) for h, w in group.sizes)
        fl *= group.batch if len(group.sizes) == 1 else 1
        gpu = self.device.type == "cuda"
        r32 = self.rate.get("float32", 25e12 if gpu else 2e10)
        rlow = self.rate.get("low", 150e12 if gpu else 1e10)
        return runs_fp32 * fl / r32 + runs_low * fl / rlow + (0.05 if gpu else 0.01) * (runs_fp32 + runs_low)

    def note_rate(self, key: str, flops: float, secs: float) -> None:
        if secs > 0.2:   # shorter runs measure launch overhead, not the FLOP rate
            r = flops / secs
            self.rate[key] = r if key not in self.rate else 0.5 * (self.rate[key] + r)

    # -- one model ------------------------------------------------------------------------------
    def run_model(self, name: str, folder: Path, storage: str, groups: list[Group], npz_tag: str | None) -> dict:
        import fastradio

        t0 = time.monotonic()
        m32 = fastradio.load(folder, device=self.device, dtype=torch.float32, backend="reference")
        lows = {dt: copy.deepcopy(m32).to(dt) for dt in LOW_DTYPES}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        info = {"load_s": round(time.monotonic() - t0, 2), "plans": {}}
        cfg = m32.config
        # Which backends each dtype can use here: refused ones get one skip row each.
        runnable: dict[torch.dtype, list[str]] = {}
        for dt, m in [(torch.float32, m32), *lows.items()]:
            runnable[dt] = []
            for b in BACKENDS:
                try:
                    m.set_backend(b)
                    info["plans"].setdefault(dtype_name(dt), {})[b] = dict(m.plan.names)
                    runnable[dt].append(b)
                except Exception as e:  # noqa: BLE001 - a refusal is a result
                    reason = f"{type(e).__name__}: {e}"
                    info["plans"].setdefault(dtype_name(dt), {})[b] = {"refused": reason}
                    self.row(model=name, storage_dtype=storage, kind="all", resolution="all",
                             dtype=dtype_name(dt), backend=b, status="skip", reason=reason)
            m.set_backend("reference")
            info["plans"][dtype_name(dt)]["reference"] = dict(m.plan.names)
        for gi, group in enumerate(groups):
            n32 = 1 + len(runnable[torch.float32]) + (1 if len(group.sizes) > 1 else 0)
            nlow = sum(1 + len(runnable[dt]) for dt in LOW_DTYPES) * (2 if group.kind.startswith("nan") else 1)
            est = self.estimate(cfg, group, n32 * (2 if group.kind.startswith("nan") else 1), nlow)
            if gi == 0:   # a new width: the Triton kernels compile again (seen on the models before)
                est += self.jit_allowance
            if self.left() < est + 3:
                self.row(model=name, storage_dtype=storage, kind=group.kind, resolution=group.label,
                         status="skip", reason=f"time budget: ~{est:.0f} s needed, {self.left():.0f} s left")
                continue
            self.input_seed += 1
            t_group = time.monotonic()
            try:
                if group.kind.startswith("nan"):
                    self.nan_group(name, storage, m32, lows, runnable, group)
                else:
                    first_square = group.kind == "square" and npz_tag and npz_tag not in self.npz_meta
                    self.value_group(name, storage, m32, lows, runnable, group, npz_tag if first_square else None)
            except torch.cuda.OutOfMemoryError as e:
                torch.cuda.empty_cache()
                self.row(model=name, storage_dtype=storage, kind=group.kind, resolution=group.label,
                         status="skip", reason=f"out of GPU memory: {str(e)[:300]}")
            if gi == 0:
                overhead = time.monotonic() - t_group - (est - self.jit_allowance)
                self.jit_allowance = max(self.jit_allowance, min(overhead, 30.0))
                info["first_group_s"] = round(time.monotonic() - t_group, 2)
        info["checks_s"] = round(time.monotonic() - t0 - info["load_s"], 2)
        del m32, lows
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return info

    def _timed(self, key: str, flops: float, fn):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t = time.monotonic()
        out = fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.note_rate(key, flops, time.monotonic() - t)
        return out

    @staticmethod
    def _run(m, backend: str, seen: dict, fn) -> tuple[list, str | None]:
        """Outputs of ``fn()`` with ``m`` on ``backend``; a plan already run on these inputs is not
        run again (same ops, same code: same numbers) and the row says which backend it equals."""
        m.set_backend(backend)
        key = tuple(sorted(m.plan.names.items()))
        if key in seen:
            return seen[key][1], seen[key][0]
        out = fn()
        seen[key] = (backend, out)
        return out, None

    def value_group(self, name, storage, m32, lows, runnable, group: Group, npz_tag: str | None) -> None:
        as_list = len(group.sizes) > 1
        cfg = m32.config
        xs, u8 = make_inputs(group, self.input_seed, self.device)
        nimg = len(group.sizes) if as_list else group.batch
        flops = sum(flops_per_image(cfg, h // 16, w // 16) for h, w in group.sizes) * (1 if as_list else nimg)
        common = dict(model=name, storage_dtype=storage, kind=group.kind, resolution=group.label,
                      batch=nimg, input_seed=self.input_seed, packed=as_list)
        run = lambda m: forward(m, xs, as_list)  # noqa: E731
        # The oracle: the reference in fp32; for a list, each image alone (the way the HF model runs).
        m32.set_backend("reference")
        oracle = self._timed("float32", flops, lambda: (one_at_a_time if as_list else forward)(m32, xs, as_list))
        seen = {} if as_list else {tuple(sorted(m32.plan.names.items())): ("reference", oracle)}
        th32 = {"summary_rel_l2_max": FP32_TOL, "features_rel_l2_max": FP32_TOL}
        keep = {}
        for b in (["reference"] if as_list else []) + runnable[torch.float32]:
            got, same = self._run(m32, b, seen, lambda: run(m32))
            e = compare(got, oracle)
            ok = e["finite"] and _ok(e["summary_rel_l2"], FP32_TOL) and _ok(e["features_rel_l2"], FP32_TOL)
            self.row(**common, dtype="float32", backend=b, plan=dict(m32.plan.names), same_plan_as=same,
                     errors=e, thresholds=th32, status="pass" if ok else "fail")
            if b == "auto":
                keep["auto_float32"] = got
        m32.set_backend("reference")
        for dt, m in lows.items():
            # The floor: the reference in this dtype, run the HF way (one image at a time for a list).
            m.set_backend("reference")
            base_out = self._timed("low", flops, lambda: (one_at_a_time if as_list else forward)(m, xs, as_list))
            base = compare(base_out, oracle)
            seen = {} if as_list else {tuple(sorted(m.plan.names.items())): ("reference", base_out)}
            th = {"summary_rel_l2_max": max(LOW_RATIO * base["summary_rel_l2"], FP32_TOL),
                  "features_rel_l2_max": max(LOW_RATIO * base["features_rel_l2"], FP32_TOL),
                  "summary_cos_min": COS_MIN}
            for b in ["reference"] + runnable[dt]:
                got, same = self._run(m, b, seen, lambda: run(m))
                e = compare(got, oracle)
                ok = (e["finite"] and _ok(e["summary_rel_l2"], th["summary_rel_l2_max"])
                      and _ok(e["features_rel_l2"], th["features_rel_l2_max"])
                      and _ok(e["summary_cos_min"], COS_MIN, ge=True))
                self.row(**common, dtype=dtype_name(dt), backend=b, plan=dict(m.plan.names),
                         same_plan_as=None if (b == "reference" and not as_list) else same,
                         errors=e, baseline_reference=base, thresholds=th, status="pass" if ok else "fail")
                if b == "auto":
                    keep[f"auto_{dtype_name(dt)}"] = got
            m.set_backend("reference")
        if npz_tag:
            self.save_npz(npz_tag, name, storage, group, u8, oracle, keep, m32, lows)

    def nan_group(self, name, storage, m32, lows, runnable, group: Group) -> None:
        as_list = len(group.sizes) > 1
        xs, _ = make_inputs(group, self.input_seed, self.device)
        if as_list:
            bad = list(xs)
            bad[1] = _poison(xs[1])
        else:
            bad = [xs[0].clone()]
            bad[0][1] = _poison(xs[0][1])
        nimg = len(group.sizes) if as_list else group.batch
        common = dict(model=name, storage_dtype=storage, kind=group.kind, resolution=group.label, batch=nimg,
                      input_seed=self.input_seed, poisoned_image=1, packed=as_list)
        others = [i for i in range(nimg) if i != 1]
        for dt, m in [(torch.float32, m32), *lows.items()]:
            tol = NAN_TOL[dt]
            seen: dict = {}
            for b in ["reference"] + runnable[dt]:
                both = lambda: (forward(m, xs, as_list), forward(m, bad, as_list))  # noqa: E731
                (clean, dirty), same = self._run(m, b, seen, both)
                e = compare([dirty[i] for i in others], [clean[i] for i in others])
                poisoned_nonfinite = not all(bool(torch.isfinite(t).all()) for t in dirty[1])
                ok = e["finite"] and _ok(e["summary_rel_l2"], tol) and _ok(e["features_rel_l2"], tol)
                self.row(**common, dtype=dtype_name(dt), backend=b, plan=dict(m.plan.names), same_plan_as=same,
                         errors=e, poisoned_outputs_nonfinite=poisoned_nonfinite,
                         thresholds={"others_finite": True, "summary_rel_l2_max": tol, "features_rel_l2_max": tol},
                         status="pass" if ok else "fail")
            m.set_backend("reference")

    def save_npz(self, tag, name, storage, group, u8, oracle, keep, m32, lows) -> None:
        """Inputs + oracle + auto outputs. For the real-size model only the first image, so the
        file stays small; the test model keeps the whole batch."""
        full = tag == self.npz_full_tag  # the test model: whole batch, every dtype
        n = len(oracle) if full else 1
        self.npz[f"{tag}.input_u8"] = u8[0][:n]
        def stack(outs: list, i: int) -> np.ndarray:
            return np.stack([o[i].detach().cpu().numpy().astype(np.float32) for o in outs[:n]])

        self.npz[f"{tag}.oracle_float32.summary"] = stack(oracle, 0)
        self.npz[f"{tag}.oracle_float32.features"] = stack(oracle, 1).reshape(n, -1, m32.embed_dim)
        if not full:   # the small real-size model: first image, default low dtype only (small file)
            low = "bfloat16" if self.device.type != "cuda" or torch.cuda.get_device_capability(self.device)[0] >= 8 \
                else "float16"
            keep = {k: v for k, v in keep.items() if k == f"auto_{low}"}
        for key, outs in keep.items():
            self.npz[f"{tag}.{key}.summary"] = stack(outs, 0)
            self.npz[f"{tag}.{key}.features"] = stack(outs, 1).reshape(n, -1, m32.embed_dim)
        plans = {}
        for dt, m in [(torch.float32, m32), *lows.items()]:
            try:
                m.set_backend("auto")
                plans[dtype_name(dt)] = dict(m.plan.names)
            except Exception as e:  # noqa: BLE001
                plans[dtype_name(dt)] = {"refused": str(e)}
            m.set_backend("reference")
        h, w = group.sizes[0]
        self.npz_meta[tag] = {
            "model": name, "seed": self.seed, "storage_dtype": storage,
            "recreate": recreate_recipe(name, self.seed, storage),
            "input": f"{tag}.input_u8: uint8 (B, 3, H, W); the model input is input_u8 / 255 (float32)",
            "resolution": f"{h}x{w}", "images": n, "input_seed": self.input_seed,
            "outputs": sorted(k for k in self.npz if k.startswith(tag + ".") and k != f"{tag}.input_u8"),
            "auto_plans": plans,
            "oracle": "reference backend, float32, TF32 off; features NLC (B, h*w, D)",
            "check": "fp32 outputs within relative L2 1e-5 of the oracle; bf16/fp16 within 1.5x the reference's error",
        }


# =============================================================================================
# main
# =============================================================================================

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=False, help="write the results here (and <stem>.npz next to it)")
    ap.add_argument("--quick", action="store_true", help="no H/g, fewer resolutions (see the module doc)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny test models: checks that the script works")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic checkpoints")
    ap.add_argument("--budget-s", type=float, default=None, help="stop adding checks when this is spent "
                    "(default 100; the gpu_check step allows 120)")
    ap.add_argument("--models", help="comma-separated model names instead of the mode's list")
    ap.add_argument("--_generate", nargs=3, metavar=("NAME", "SEED", "STORAGE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._generate:
        name, seed, storage = args._generate
        ensure_checkpoint(name, int(seed), storage)
        return 0

    t_start = time.monotonic()
    mode = "dry-run" if args.dry_run else ("quick" if args.quick else "default")
    if args.dry_run:
        device = torch.device("cpu")
        torch.set_num_threads(1)   # tiny shapes: threads only add overhead (and fight the children)
    elif torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        print("model_parity: no CUDA GPU; use --dry-run for the CPU self-check", file=sys.stderr)
        return 2
    budget = args.budget_s if args.budget_s is not None else 100.0
    for k, v in PARITY_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    tf32 = disable_tf32()
    models = args.models.split(",") if args.models else models_for(mode)
    npz_models = [m for m in models if m.startswith("test-")][:1] + [m for m in models if not m.startswith("test-")][:1]
    if mode == "dry-run":
        npz_models = models[:2]   # test-d160 stands in for the small real model
    json_path = Path(args.json) if args.json else None
    npz_path = json_path.with_suffix(".npz") if json_path else None

    ckpts = Checkpoints(args.seed, spawn_small=tuple(models[1:]) if mode == "dry-run" else ())
    ckpts.prefetch(models)
    runner = Runner(device=device, seed=args.seed, mode=mode, deadline=t_start + budget)
    tag_of = lambda m: m.replace("C-RADIOv2-", "")  # noqa: E731
    runner.npz_full_tag = tag_of(npz_models[0]) if npz_models else None
    result = {
        "schema": 1, "script": "model_parity", "mode": mode, "budget_s": budget, "seed": args.seed,
        "environment": environment(device), "tf32": tf32,
        "thresholds": {"fp32_rel_l2_max": FP32_TOL, "low_precision_ratio_to_reference_max": LOW_RATIO,
                       "low_precision_rel_l2_floor": FP32_TOL, "summary_cos_min": COS_MIN,
                       "nan_isolation_rel_l2_max": {dtype_name(k): v for k, v in NAN_TOL.items()}},
        "models": [], "checks": runner.checks, "npz": str(npz_path) if npz_path else None,
    }

    def finish(complete: bool) -> int:
        counts = {s: sum(c["status"] == s for c in runner.checks) for s in ("pass", "fail", "skip")}
        result.update(counts=counts, complete=complete, ok=counts["fail"] == 0 and counts["pass"] > 0,
                      wall_s=round(time.monotonic() - t_start, 1))
        if json_path:
            write_json(json_path, result)
        return 0 if result["ok"] else 1

    try:
        pending = list(models)
        while pending:
            # Priority order, except that a model whose checkpoint is still being generated waits
            # while a later one that is ready runs.
            name = next((m for m in pending if ckpts.ready(m)), pending[0])
            pending.remove(name)
            entry = ckpts.info(name)
            result["models"].append(entry)
            groups = dry_groups(name) if mode == "dry-run" else groups_for(name, mode)
            left = runner.left()
            need = runner.model_allowance(name)
            if left < need:
                entry.update(status="skip", reason=f"time budget: ~{need:.0f} s needed to load and check "
                                                   f"the first resolution, {left:.0f} s left")
                runner.row(model=name, storage_dtype=entry["storage_dtype"], kind="model", status="skip",
                           reason=entry["reason"])
                continue
            if left < 8:
                entry.update(status="skip", reason=f"time budget: {left:.0f} s left")
                runner.row(model=name, storage_dtype=entry["storage_dtype"], kind="model", status="skip",
                           reason=entry["reason"])
                continue
            try:
                folder = ckpts.wait(name, timeout=left - 8)
            except (TimeoutError, RuntimeError) as e:
                entry.update(status="skip" if isinstance(e, TimeoutError) else "fail", reason=str(e))
                runner.row(model=name, storage_dtype=entry["storage_dtype"], kind="model",
                           status=entry["status"], reason=str(e)[:2000])
                continue
            entry["generate_s"] = ckpts.gen_s.get(name)
            tag = tag_of(name) if name in npz_models else None
            try:
                entry.update(runner.run_model(name, folder, entry["storage_dtype"], groups, tag))
                entry["status"] = "done"
            except Exception as e:  # noqa: BLE001 - record it and go on with the next model
                import traceback

                entry.update(status="fail", reason=f"{type(e).__name__}: {e}")
                runner.row(model=name, storage_dtype=entry["storage_dtype"], kind="model", status="fail",
                           reason=traceback.format_exc()[-3000:])
            if json_path:
                write_json(json_path, {**result, "partial": True})
        if npz_path and runner.npz:
            meta = {"models": runner.npz_meta, "environment": result["environment"], "tf32": tf32,
                    "how_to_recheck": "recreate the checkpoint with meta.models[tag].recreate, run "
                                      "model(torch.from_numpy(npz[tag + '.input_u8']).float() / 255) with "
                                      "backend='reference' in float32 on any device, compare with "
                                      "tag.oracle_float32.*"}
            np.savez_compressed(npz_path, meta_json=np.array(json.dumps(meta, default=str)), **runner.npz)
        elif npz_path:
            result["npz"] = None
    finally:
        ckpts.close()
    complete = not any(c["status"] == "skip" and str(c.get("reason", "")).startswith("time budget")
                       for c in runner.checks)
    rc = finish(complete)
    c = result["counts"]
    print(f"[parity] {c['pass']} passed, {c['fail']} failed, {c['skip']} skipped in {result['wall_s']} s"
          f"{'' if complete else ' (incomplete: time budget)'}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
