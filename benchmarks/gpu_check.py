"""The one prepared GPU command (DESIGN.md §8): build, test every tier, sanitize, benchmark, record.

    python benchmarks/gpu_check.py [--quick] [--out DIR] [--logs DIR] [--budget-s S] [--archs A]
    python benchmarks/gpu_check.py --dry-run        # CPU: GPU steps skipped with reasons

Steps run in order, each in a subprocess with its own hard time limit, inside an overall budget
(default 420 s, so a run fits well inside 8 minutes on an H100 and a second try fits the lease);
each is recorded as pass/fail/skip with its reason, duration and output tail:

1. probe: torch, Triton, the GPU (name, compute capability, driver);
2. build: a wheel for the local arch only (FASTRADIO_CUDA_ARCHS=<cc>[;<cc>a]) with
   ``pip wheel --no-build-isolation --no-deps --no-index`` (the machine has no internet),
   unpacked into a temporary folder that later steps put first on PYTHONPATH;
3. probe-build: ``_C.build_info()``, the tiers compiled and which of them run on this GPU;
4. pytest: the tests that touch a device (``-k "cuda or gpu"``; the CPU-only ones run in CI),
   TRITON_INTERPRET unset, counts from JUnit XML;
5. model-parity: ``model_parity.py`` (DESIGN §7 checks per backend and dtype, + an .npz);
6. sanitize[memcheck], sanitize[racecheck], sanitize[synccheck]: ``compute-sanitizer --tool X``
   on ``sanitize_cases.py`` (one tiny launch of every op / tier / dtype variant, values checked
   against the reference), one step per tool, 90 s for the three together;
7. bench-ops: ``bench_ops.py`` (every op and backend against its PyTorch peer);
8. pytest[tier=X]: the CUDA tests again with FASTRADIO_TIER forcing each other runnable tier;
9. bench-model: ``bench_model.py`` (images/s and latency vs the reference and torch.compile).

Correctness comes first so that a tight lease still gets it; a step that no longer fits the
budget is recorded as skipped. A new step is one entry in ``STEPS``.

Writes ``<out>/<YYYY-MM-DD>-<gpu-slug>.json`` (default out: benchmarks/results; dry run: a temp
folder), prints a summary, and exits 1 if any step failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

REPO = Path(__file__).resolve().parents[1]
TAIL = 4000  # characters of output kept per step in the result file


@dataclass
class Ctx:
    args: argparse.Namespace
    tmp: Path
    logs: Path
    deadline: float
    env: dict = field(default_factory=dict)  # environment for every step's subprocess
    info: dict = field(default_factory=dict)  # probe results
    results: dict = field(default_factory=dict)  # benchmark / parity payloads by step
    gpu: bool = False


# A step's command: argv, or a string saying why the step is skipped.
Command = Union[list, str]


@dataclass
class Step:
    name: str
    timeout_s: int
    command: Callable[[Ctx], Command]
    needs_gpu: bool = True
    env: Callable[[Ctx], dict] | None = None
    after: Callable[[Ctx, dict, Path], None] | None = None  # parse outputs into the record
    on_skip: Callable[[Ctx], None] | None = None


Entry = Union[Step, Callable[[Ctx], list]]  # a step, or a factory expanded when reached


# -- helpers ------------------------------------------------------------------------------------

def _py() -> list:
    return [sys.executable]


def _run(argv: list, env: dict, timeout: float, log: Path) -> tuple[int | None, float]:
    """Run argv in its own process group; kill that group on timeout. (rc or None, seconds)."""
    t0 = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    return rc, time.monotonic() - t0


def _tail(log: Path) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return text[-TAIL:]


def _junit_counts(path: Path) -> dict:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    c = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    c["passed"] = c["tests"] - c["failures"] - c["errors"] - c["skipped"]
    return c


def _gpu_env(ctx: Ctx) -> dict:
    env = dict(ctx.env)
    env.pop("TRITON_INTERPRET", None)  # GPU runs use the compiled Triton path
    return env


# -- steps ----------------------------------------------------------------------------------------

_PROBE = r"""
import json, platform, sys
out, stage = sys.argv[1], sys.argv[2]
info = {"python": sys.version.split()[0], "platform": platform.platform()}
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu_name=p.name, capability=list(torch.cuda.get_device_capability(0)),
                    gpu_memory_gib=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count,
                    l2_bytes=getattr(p, "L2_cache_size", None))
except Exception as e:
    info["torch_error"] = repr(e)
try:
    import triton
    info["triton"] = triton.__version__
except Exception as e:
    info["triton_error"] = repr(e)
if stage == "build":
    try:
        import fastradio
        info.update(fastradio_file=fastradio.__file__, fastradio_version=getattr(fastradio, "__version__", None),
                    has_load=hasattr(fastradio, "load"))
    except Exception as e:
        info["fastradio_error"] = repr(e)
    try:
        from fastradio import _C
        info["build_info"] = _C.build_info()
        cap = info.get("capability")
        runnable = {}
        for op, tiers in info["build_info"].get("tiers", {}).items():
            runnable[op] = [t for t in tiers if cap and not _C.check_arch(op, t, cap[0], cap[1])]
        info["runnable_tiers"] = runnable
    except Exception as e:
        info["build_info_error"] = repr(e)
    try:
        import torch
        from fastradio import backends
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        info["refusals_pos_embed_bf16"] = {b: backends.refusals(b, "pos_embed", dev, torch.bfloat16)
                                           for b in backends.BACKENDS}
    except Exception as e:
        info["refusals_error"] = repr(e)
json.dump(info, open(out, "w"), default=str, indent=1)
"""


def _probe(stage: str) -> Step:
    def command(ctx: Ctx) -> Command:
        return _py() + ["-c", _PROBE, str(ctx.tmp / f"probe-{stage}.json"), stage]

    def after(ctx: Ctx, rec: dict, log: Path) -> None:
        try:
            data = json.loads((ctx.tmp / f"probe-{stage}.json").read_text())
        except (OSError, ValueError):
            return
        ctx.info.update(data)
        if stage == "env":
            ctx.gpu = bool(data.get("cuda_available")) and not ctx.args.dry_run
            ctx.info["nvidia_smi"] = _nvidia_smi()
            if not data.get("cuda_available") and not ctx.args.dry_run:
                rec.update(status="fail", reason="no CUDA GPU visible to torch")

    return Step(f"probe-{stage}", 120, command, needs_gpu=False, after=after)


def _nvidia_smi() -> str | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    q = "name,driver_version,memory.total,clocks.max.sm,power.limit,compute_cap"
    try:
        res = subprocess.run([exe, f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() or res.stderr.strip()


def _archs(ctx: Ctx) -> str:
    if ctx.args.archs:
        return ctx.args.archs
    major, minor = ctx.info.get("capability", [0, 0])
    arch = f"{major}{minor}"
    return f"{arch};{arch}a" if major >= 9 else arch  # the a-variant carries the sm_90a/100a tiers


def _build_command(ctx: Ctx) -> Command:
    if ctx.args.dry_run:
        return "dry run: no build"
    if not (REPO / "pyproject.toml").exists():
        return "no pyproject.toml yet"
    if not ctx.info.get("capability"):
        return "no GPU capability known (probe failed)"
    wheel_dir = ctx.tmp / "wheel"
    wheel_dir.mkdir(exist_ok=True)
    return _py() + ["-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-index", "-v",
                    "-w", str(wheel_dir), str(REPO)]


def _build_env(ctx: Ctx) -> dict:
    env = dict(ctx.env)
    env["FASTRADIO_CUDA_ARCHS"] = _archs(ctx)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 8))
    return env


def _build_after(ctx: Ctx, rec: dict, log: Path) -> None:
    rec["archs"] = _archs(ctx)
    wheels = sorted((ctx.tmp / "wheel").glob("fastradio-*.whl"))
    if rec["status"] == "pass" and wheels:
        site = ctx.tmp / "site"
        shutil.rmtree(site, ignore_errors=True)
        with zipfile.ZipFile(wheels[-1]) as z:
            z.extractall(site)
        rec["wheel"] = wheels[-1].name
        _use_path(ctx, site)
        return
    if rec["status"] == "pass":
        rec.update(status="fail", reason="pip reported success but wrote no wheel")
    _use_source_tree(ctx)
    rec["fallback"] = "testing the source tree (python/ on PYTHONPATH): the cuda backend will be unavailable"


def _use_path(ctx: Ctx, path: Path) -> None:
    old = ctx.env.get("PYTHONPATH")
    ctx.env["PYTHONPATH"] = str(path) + (os.pathsep + old if old else "")


def _skipped_build(ctx: Ctx) -> None:
    # A dry run tests the fastradio installed here when it has its compiled extension (the tests of
    # the cuda backend import fastradio._C, which the source tree lacks); otherwise the source tree.
    if ctx.args.dry_run and _installed_has_extension(ctx.env):
        return
    _use_source_tree(ctx)


def _installed_has_extension(env: dict) -> bool:
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('fastradio._C') is None)"
    try:
        return subprocess.run(_py() + ["-c", probe], cwd=REPO.parent, env=env, capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _use_source_tree(ctx: Ctx) -> None:
    # The dev layout: fastradio.kernels is a link to kernels/ (an ignored path, made here if absent).
    link = REPO / "python" / "fastradio" / "kernels"
    if not link.exists():
        try:
            link.symlink_to(Path("..") / ".." / "kernels")
        except OSError:
            pass
    _use_path(ctx, REPO / "python")


def _pytest(name: str, select: list, timeout_s: int, tier_env: Callable[[Ctx], str] | None = None) -> Step:
    xml = f"junit-{name}.xml"

    def command(ctx: Ctx) -> Command:
        base = _py() + ["-m", "pytest", "tests", "-q", "-rfE", "-p", "no:cacheprovider"]
        if ctx.args.dry_run:
            return base + ["--collect-only"]
        return base + select + [f"--junitxml={ctx.tmp / xml}"]

    def env(ctx: Ctx) -> dict:
        e = _gpu_env(ctx) if not ctx.args.dry_run else dict(ctx.env)
        if tier_env is not None:
            e["FASTRADIO_TIER"] = tier_env(ctx)
        return e

    def after(ctx: Ctx, rec: dict, log: Path) -> None:
        if ctx.args.dry_run:
            rec["note"] = "dry run: collection only"
            return
        rec["counts"] = _junit_counts(ctx.tmp / xml)
        if rec.get("rc") == 5:
            rec.update(status="fail", reason="pytest collected no tests (exit 5)")

    return Step(name, timeout_s, command, needs_gpu=False, env=env, after=after)


def _tier_steps(ctx: Ctx) -> list:
    runnable = ctx.info.get("runnable_tiers") or {}
    if not ctx.gpu:
        return [Step("pytest[tiers]", 1, lambda c: "no GPU: tiers are not forced")]
    if not runnable:
        return [Step("pytest[tiers]", 1, lambda c: "no compiled tiers known (no _C build_info)")]
    # Ops with more than one runnable tier: the main run used the default; force each tier here.
    tiers = sorted({t for ts in runnable.values() if len(ts) > 1 for t in ts})
    if not tiers:
        only = ", ".join(f"{op}: {ts[0] if ts else 'none'}" for op, ts in runnable.items())
        return [Step("pytest[tiers]", 1, lambda c: f"every op has one runnable tier ({only}); the main run covered it")]
    steps = []
    for t in tiers:
        value = ",".join(f"{op}:{t}" for op, ts in runnable.items() if t in ts and len(ts) > 1)
        steps.append(_pytest(f"pytest[tier={t}]", ["-k", "cuda"], 90, tier_env=lambda c, v=value: v))
    return steps


#: compute-sanitizer tools and each one's hard limit in seconds (90 s for the three): racecheck
#: (shared-memory hazards) and synccheck (barrier misuse) matter for the tensor-core tiers' staged
#: tiles; memcheck for every op's bounds.
SANITIZER_TOOLS = (("memcheck", 30), ("racecheck", 35), ("synccheck", 25))
SANITIZER_ERROR_RC = 99  # the sanitizer's --error-exitcode (the case script itself exits 0/1/2)
SANITIZE_SCRIPT = "benchmarks/sanitize_cases.py"


def _sanitizer_exe() -> str | None:
    exe = shutil.which("compute-sanitizer")
    if not exe:
        found = sorted(Path("/usr/local").glob("cuda*/bin/compute-sanitizer"))
        exe = str(found[-1]) if found else None
    return exe


def _sanitizer_report(text: str) -> dict:
    """What compute-sanitizer said: its own lines (prefixed '========='), the error count
    ('ERROR SUMMARY: N errors'; racecheck: 'RACECHECK SUMMARY: H hazards displayed (E errors, W
    warnings)', whose warnings are counted apart)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("=========")]
    out = {"errors": None}
    for ln in lines:
        m = re.search(r"ERROR SUMMARY: (\d+) errors?", ln)
        if m:
            out["errors"] = int(m.group(1))
        m = re.search(r"RACECHECK SUMMARY: .*\((\d+) errors?, (\d+) warnings?\)", ln)
        if m:
            out["errors"] = max(out["errors"] or 0, int(m.group(1)))
            out["warnings"] = int(m.group(2))
    report = "\n".join(lines)
    if len(report) > TAIL:
        report = report[:TAIL // 2] + "\n[...]\n" + report[-TAIL // 2:]
    out["report"] = report
    return out


def _sanitizer(tool: str, timeout_s: int) -> Step:
    name = f"sanitize[{tool}]"
    out = f"sanitize-{tool}.json"

    def command(ctx: Ctx) -> Command:
        exe = ctx.info.get("sanitizer_exe", _sanitizer_exe())
        if not exe:
            return "compute-sanitizer not found (PATH, /usr/local/cuda*/bin)"
        if not (REPO / SANITIZE_SCRIPT).exists():
            return f"not available: {SANITIZE_SCRIPT} does not exist"
        # The cases stop being launched a margin before the hard limit (start-up and exit counted).
        limit = min(timeout_s, ctx.deadline - time.monotonic() - 5)
        return [exe, "--tool", tool, "--error-exitcode", str(SANITIZER_ERROR_RC), "--print-limit", "20"] + _py() + [
            SANITIZE_SCRIPT, "--json", str(ctx.tmp / out), "--budget-s", str(max(5, int(limit - 8)))]

    def env(ctx: Ctx) -> dict:
        e = _gpu_env(ctx)
        e["PYTORCH_NO_CUDA_MEMORY_CACHING"] = "1"  # one cudaMalloc per tensor, so overruns are seen
        return e

    def after(ctx: Ctx, rec: dict, log: Path) -> None:
        try:
            text = log.read_text(errors="replace")
        except OSError:
            text = ""
        rec["tool"] = tool
        rec.update(_sanitizer_report(text))
        try:
            data = json.loads((ctx.tmp / out).read_text())
        except (OSError, ValueError) as e:
            data = None
            rec["results_error"] = f"no results file: {e}"
        if data is not None:
            rec["cases"] = data.get("counts")
            rec["failed_cases"] = [c for c in data.get("cases", []) if c.get("status") == "fail"]
            rec["skipped_cases"] = {c["id"]: c.get("reason") for c in data.get("cases", []) if c.get("status") == "skip"}
        errors = rec.get("errors")
        if rec.get("rc") == SANITIZER_ERROR_RC or (errors or 0) > 0:
            rec.update(status="fail", reason=f"{tool} reported {'?' if errors is None else errors} error(s)")
        elif rec["status"] == "fail" and rec.get("failed_cases"):
            rec["reason"] = f"{len(rec['failed_cases'])} case(s) failed their value check under {tool}"
        elif rec["status"] == "fail" and "reason" not in rec:
            rec["reason"] = f"exit code {rec.get('rc')} (see output_tail)"
        elif rec["status"] == "pass" and not (data or {}).get("counts", {}).get("pass"):
            rec.update(status="fail", reason=f"no case ran under {tool}")

    return Step(name, timeout_s, command, env=env, after=after)


def _json_script(name: str, script: str, timeout_s: int, needs_load: bool = False,
                 budget_flag: bool = False) -> Step:
    """A script that takes --json PATH [--quick] and writes its results there. With budget_flag
    it also gets --budget-s: the time it may plan for (its limit less a margin for start-up and
    writing results). A ``<name>.npz`` it writes next to the JSON is copied to the result folder
    as ``<date>-<gpu>-<name>.npz``."""
    out = f"{name}.json"

    def command(ctx: Ctx) -> Command:
        if not (REPO / script).exists():
            return f"not available: {script} does not exist yet"
        if needs_load and not ctx.info.get("has_load"):
            return "not available: fastradio.load is missing"
        if ctx.args.dry_run and name != "bench-ops":
            return "dry run: needs a GPU"
        argv = _py() + [script, "--json", str(ctx.tmp / out)]
        if ctx.args.quick:
            argv.append("--quick")
        if ctx.args.dry_run:
            argv.append("--dry-run")
        if budget_flag:
            limit = min(timeout_s, ctx.deadline - time.monotonic() - 5)
            argv += ["--budget-s", str(max(10, int(limit - 15)))]
        return argv

    def after(ctx: Ctx, rec: dict, log: Path) -> None:
        try:
            ctx.results[name] = json.loads((ctx.tmp / out).read_text())
        except (OSError, ValueError) as e:
            rec["results_error"] = f"no results file: {e}"
        npz = ctx.tmp / f"{name}.npz"
        if npz.exists():
            out_dir = (Path(ctx.args.out) if ctx.args.out
                       else ctx.tmp if ctx.args.dry_run else REPO / "benchmarks" / "results")
            out_dir.mkdir(parents=True, exist_ok=True)
            day = dt.datetime.now(dt.timezone.utc).date().isoformat()
            dest = out_dir / f"{day}-{_slug(ctx.info.get('gpu_name') or 'cpu')}-{name}.npz"
            shutil.copyfile(npz, dest)
            rec["npz"] = str(dest)

    return Step(name, timeout_s, command, needs_gpu=(name != "bench-ops"), env=_gpu_env_or_plain, after=after)


def _gpu_env_or_plain(ctx: Ctx) -> dict:
    return dict(ctx.env) if ctx.args.dry_run else _gpu_env(ctx)


STEPS: list = [
    _probe("env"),
    Step("build", 300, _build_command, env=_build_env, after=_build_after, on_skip=lambda c: _skipped_build(c)),
    _probe("build"),
    # Most important first, so that a tight lease still gets correctness: the CPU-only tests
    # already run in CI, so on the GPU only the tests that touch a device ("cuda"/"gpu" in the id).
    _pytest("pytest", ["-k", "cuda or gpu"], 240),
    _json_script("model-parity", "benchmarks/model_parity.py", 120, needs_load=True, budget_flag=True),
    *(_sanitizer(tool, limit) for tool, limit in SANITIZER_TOOLS),
    _json_script("bench-ops", "benchmarks/bench_ops.py", 120),
    _tier_steps,
    _json_script("bench-model", "benchmarks/bench_model.py", 120, needs_load=True, budget_flag=True),
]


# -- runner ---------------------------------------------------------------------------------------

def _run_step(ctx: Ctx, step: Step) -> dict:
    rec = {"name": step.name, "status": "skip", "timeout_s": step.timeout_s}
    cmd = step.command(ctx)
    if step.needs_gpu and not ctx.gpu and not isinstance(cmd, str):
        cmd = "dry run: needs a GPU" if ctx.args.dry_run else "no GPU"
    if isinstance(cmd, str):
        rec["reason"] = cmd
        if step.on_skip is not None:
            step.on_skip(ctx)
        return rec
    remaining = ctx.deadline - time.monotonic()
    if remaining < 15:
        rec["reason"] = f"out of time budget ({ctx.args.budget_s} s)"
        return rec
    limit = min(step.timeout_s, remaining - 5)
    log = ctx.logs / (step.name.replace("/", "_") + ".log")
    env = step.env(ctx) if step.env else dict(ctx.env)
    rc, secs = _run(cmd, env, limit, log)
    rec.update(rc=rc, seconds=round(secs, 1), limit_s=round(limit), log=str(log),
               cmd=" ".join(str(c) for c in cmd if len(str(c)) < 300))
    if rc is None:
        rec.update(status="fail", reason=f"timed out after {limit:.0f} s")
    else:
        rec["status"] = "pass" if rc == 0 else "fail"
    if step.after is not None:
        step.after(ctx, rec, log)
    rec["output_tail"] = _tail(log)
    return rec


def _git() -> dict:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip() or None, "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None}


def _summary(result: dict) -> str:
    env = result["environment"]
    lines = [f"gpu_check: {env.get('gpu_name') or 'no GPU'} (cc {env.get('capability') or '-'}), "
             f"{result['wall_s']:.0f} s{' (dry run)' if result['dry_run'] else ''}"]
    for s in result["steps"]:
        extra = s.get("reason", "")
        if "counts" in s and s["counts"]:
            c = s["counts"]
            extra = f"{c['passed']} passed, {c['failures']} failed, {c['errors']} errors, {c['skipped']} skipped " + extra
        secs = f"{s['seconds']:>6.1f}s" if "seconds" in s else "      -"
        lines.append(f"  {s['status'].upper():<5} {secs}  {s['name']:<24} {extra}".rstrip())
    ops = result["benchmarks"].get("bench-ops") or []
    copy = next((r for r in ops if r.get("op") == "copy"), None)
    if copy:
        lines.append(f"  copy bandwidth {copy['GBps']:.0f} GB/s")
    best: dict = {}
    for r in ops:
        if r.get("op") == "pos_embed" and r.get("frac_copy") and r["bytes"] >= 32 << 20:
            best.setdefault(r["impl"], []).append(r["frac_copy"])
    for impl, fr in sorted(best.items()):
        lines.append(f"  pos_embed {impl:<16} copy fraction on >= 32 MiB shapes: "
                     f"median {sorted(fr)[len(fr) // 2]:.2f}, min {min(fr):.2f}")
    lines.append(f"  result file: {result['path']}")
    return "\n".join(lines)


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer benchmark shapes")
    ap.add_argument("--dry-run", action="store_true", help="CPU only: skip GPU steps, write to a temp dir")
    ap.add_argument("--out", help="folder for the result file (default benchmarks/results; dry run: temp)")
    ap.add_argument("--logs", help="folder for full step logs (default: a temp folder)")
    ap.add_argument("--budget-s", type=int, default=420, help="overall time budget in seconds")
    ap.add_argument("--archs", help="FASTRADIO_CUDA_ARCHS for the build (default: this GPU's)")
    args = ap.parse_args(argv)

    started = dt.datetime.now(dt.timezone.utc)
    tmp = Path(tempfile.mkdtemp(prefix="fastradio-gpu-check-"))
    logs = Path(args.logs) if args.logs else tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(args=args, tmp=tmp, logs=logs, deadline=time.monotonic() + args.budget_s, env=dict(os.environ))

    records = []
    queue: list = list(STEPS)
    while queue:
        entry = queue.pop(0)
        if not isinstance(entry, Step):
            queue[:0] = entry(ctx)
            continue
        rec = _run_step(ctx, entry)
        records.append(rec)
        print(f"[gpu_check] {rec['status']:<4} {rec['name']} {rec.get('reason', '')}", flush=True)

    env = {k: ctx.info.get(k) for k in ("gpu_name", "capability", "gpu_memory_gib", "sm_count", "l2_bytes",
                                         "torch", "torch_cuda", "triton", "python", "platform", "nvidia_smi",
                                         "fastradio_file", "fastradio_version", "build_info", "build_info_error",
                                         "runnable_tiers", "refusals_pos_embed_bf16")}
    name = env.get("gpu_name") or "cpu"
    out_dir = Path(args.out) if args.out else (tmp if args.dry_run else REPO / "benchmarks" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{started.date().isoformat()}-{_slug(name)}.json"
    result = {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "wall_s": round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 1),
        "command": " ".join(["python", "benchmarks/gpu_check.py"] + (argv if argv is not None else sys.argv[1:])),
        "quick": args.quick,
        "dry_run": args.dry_run,
        "git": _git(),
        "environment": env,
        "steps": records,
        "benchmarks": ctx.results,
        "counts": {s: sum(r["status"] == s for r in records) for s in ("pass", "fail", "skip")},
        "path": str(path),
    }
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(_summary(result))
    return 1 if result["counts"]["fail"] else 0


def _slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-") or "unknown"


if __name__ == "__main__":
    sys.exit(main())
