#!/usr/bin/env python3
"""Compile gate (DESIGN.md §6, §8): every CUDA source, every arch, both toolchains.

Compiles each ``csrc/**/*.cu`` (not the emulated device's own, csrc/emu/) device-only, once per
arch, with CUDA 13 nvcc (sm_75..sm_120, incl. 90a/100a) and with clang-19 + CUDA 12.9
(sm_60..sm_90), plus a clang host-side pass, captures ptxas's ``-v`` resource report and fails
(exit 1) on:

- a compile error (message names file, toolchain, arch);
- any register spill (spill stores or loads > 0) in any function;
- static shared memory over 48 KiB, or over the arch's opt-in limit (csrc/common/arch.h);
- a stack frame in a kernel of a registered source (local memory: none of ours has one);
- a kernel of a tier with a SASS rule (SASS_RULES: wgmma_sm90a) whose machine code, read back from
  the cubin by cuobjdump, lacks an instruction the tier exists for (HGMMA, UTMALDG) or holds a local
  memory access (LDL/STL): a silent fallback to slower instructions, or a kernel that went through
  local memory, fails here and not on the first GPU.

A source registered in a ``fastradio_add_kernel(... MIN_ARCH n [ONLY_ARCHS ...])`` call is compiled
only for the archs that tier needs; an unregistered one for every arch. Writes ``report.json`` and
``report.md`` (default ``build/compile_gate/``) and prints a summary table.

    python csrc/tools/compile_gate.py                       # both toolchains, every arch
    python csrc/tools/compile_gate.py --toolchain clang --archs 60,70
    python csrc/tools/compile_gate.py --sources my.cu       # any file (used by the tests)

Toolchains are found as csrc/tools/setup_toolchains.sh leaves them: ``FASTRADIO_NVCC`` (else
/usr/local/cuda-13.0, /usr/local/cuda, PATH), ``FASTRADIO_CLANG`` (else clang++-19) and
``FASTRADIO_CLANG_CUDA_PATH`` (else ``$FASTRADIO_TOOLCHAINS_DIR/cuda-12.9``, ``<repo>/.toolchains/cuda-12.9``).
A requested toolchain that is missing is an error (exit 2) unless ``--allow-missing``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"

#: Archs each toolchain is gated on (then intersected with what the compiler actually supports).
GATE_ARCHS = {
    "nvcc": ["75", "80", "86", "87", "89", "90", "90a", "100", "100a", "110", "120"],
    "clang": ["60", "61", "62", "70", "72", "75", "80", "86", "87", "89", "90"],
}
STATIC_SMEM_LIMIT = 48 * 1024


@dataclasses.dataclass(frozen=True)
class SassRule:
    """What every kernel of a tier's cubins must (need) and must not (forbid) contain, by SASS opcode
    (the mnemonic before its first '.')."""

    need: tuple[str, ...]
    forbid: tuple[str, ...]


#: Per tier (fastradio_add_kernel's TIER), checked on the nvcc cubins of the archs the tier is built
#: for. wgmma_sm90a: the warpgroup MMA and the TMA load are the reason the tier exists; LDL/STL is
#: local memory (spills, or an array the compiler could not keep in registers).
SASS_RULES = {
    "wgmma_sm90a": SassRule(need=("HGMMA", "UTMALDG"), forbid=("LDL", "STL")),
}


# --- ptxas -v report ----------------------------------------------------------------------------

@dataclasses.dataclass
class FunctionReport:
    """One function of ptxas's -v report (entry = a kernel)."""

    name: str
    entry: bool = False
    registers: int = 0
    barriers: int = 0
    smem: int = 0
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0


_RE_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
_RE_PROPS = re.compile(r"Function properties for (\S+)")
_RE_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_RE_USED = re.compile(r"Used (\d+) registers")
_RE_BARRIERS = re.compile(r"used (\d+) barriers")
_RE_SMEM = re.compile(r"(\d+) bytes smem")
_RE_TOO_MUCH_SMEM = re.compile(r"Entry function '([^']+)' uses too much shared data \((0x[0-9a-fA-F]+) bytes")
_RE_ERROR = re.compile(r"(?:ptxas|nvcc|clang\S*)?\s*(?:fatal )?error\s*:?\s*(.*)", re.IGNORECASE)


def parse_ptxas(text: str) -> dict[str, FunctionReport]:
    """Functions of a ``ptxas -v`` report (nvcc ``-Xptxas -v`` or clang ``-Xcuda-ptxas -v``)."""
    funcs: dict[str, FunctionReport] = {}
    entry: FunctionReport | None = None
    props: FunctionReport | None = None

    def get(name: str) -> FunctionReport:
        if name not in funcs:
            funcs[name] = FunctionReport(name)
        return funcs[name]

    for line in text.splitlines():
        if m := _RE_ENTRY.search(line):
            entry = get(m.group(1))
            entry.entry = True
        elif m := _RE_PROPS.search(line):
            props = get(m.group(1))
        elif m := _RE_FRAME.search(line):
            if props is not None:
                props.stack, props.spill_stores, props.spill_loads = map(int, m.groups())
        elif m := _RE_TOO_MUCH_SMEM.search(line):
            f = get(m.group(1))
            f.entry = True
            f.smem = max(f.smem, int(m.group(2), 16))
        elif (m := _RE_USED.search(line)) and entry is not None:
            entry.registers = int(m.group(1))
            if b := _RE_BARRIERS.search(line):
                entry.barriers = int(b.group(1))
            if s := _RE_SMEM.search(line):
                entry.smem = max(entry.smem, int(s.group(1)))
    return funcs


def smem_optin_limits(arch_h: Path = CSRC / "common" / "arch.h") -> dict[int, int]:
    """{arch: opt-in shared memory bytes per block} from csrc/common/arch.h's table."""
    text = arch_h.read_text()
    body = text[text.index("kSmemOptinLimits[]"):]
    body = body[:body.index("};")]
    return {int(a): int(k) * 1024 for a, k in re.findall(r"\{\s*(\d+)\s*,\s*(\d+)\s*\}", body)}


def findings(funcs: dict[str, FunctionReport], arch: str, limits: dict[int, int]) -> list[str]:
    """What breaks the gate in one compile's report (spills, shared memory over a limit)."""
    out = []
    optin = limits.get(int(re.match(r"\d+", arch).group()), STATIC_SMEM_LIMIT)
    for f in funcs.values():
        if f.spill_stores or f.spill_loads:
            out.append(f"{f.name}: spills {f.spill_stores} bytes of stores / {f.spill_loads} bytes of loads "
                       f"({f.registers} registers)")
        if f.smem > STATIC_SMEM_LIMIT:
            out.append(f"{f.name}: {f.smem} bytes of static shared memory > {STATIC_SMEM_LIMIT} (48 KiB static limit)")
        elif f.smem > optin:
            out.append(f"{f.name}: {f.smem} bytes of shared memory > {optin} (sm_{arch} opt-in limit)")
    return out


# --- sources and their archs ----------------------------------------------------------------------

@dataclasses.dataclass
class Registration:
    op: str
    tier: str
    min_arch: int
    only_archs: list[str]


def kernel_sources() -> list[Path]:
    """Every GPU kernel source: csrc/**/*.cu except csrc/emu/, which holds the emulated device's
    own self-test kernels (some broken on purpose), never built for a GPU."""
    return sorted(p for p in CSRC.rglob("*.cu") if p.relative_to(CSRC).parts[0] != "emu")


def registrations(root: Path = CSRC) -> dict[Path, Registration]:
    """Sources named in ``fastradio_add_kernel(...)`` calls of csrc/**/CMakeLists.txt."""
    regs: dict[Path, Registration] = {}
    for cm in sorted(root.rglob("CMakeLists.txt")):
        text = re.sub(r"#[^\n]*", "", cm.read_text())
        for call in re.findall(r"fastradio_add_kernel\s*\(([^)]*)\)", text):
            toks = call.split()
            op, kw, cur = toks[0], {}, None
            for t in toks[1:]:
                if t in ("TIER", "MIN_ARCH", "ONLY_ARCHS", "SOURCES"):
                    cur = t
                    kw[cur] = []
                elif cur:
                    kw[cur].append(t)
            reg = Registration(op, kw["TIER"][0], int(kw["MIN_ARCH"][0]), kw.get("ONLY_ARCHS", []))
            for s in kw["SOURCES"]:
                regs[(cm.parent / s).resolve()] = reg
    return regs


def needed(reg: Registration | None, arch: str) -> bool:
    if reg is None:
        return True
    if int(re.match(r"\d+", arch).group()) < reg.min_arch:
        return False
    return not reg.only_archs or arch in reg.only_archs


# --- toolchains -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Toolchain:
    name: str
    compiler: str
    version: str
    archs: list[str]
    cuda_path: str = ""

    def device_cmd(self, src: Path, arch: str, defines: list[str], out: str = os.devnull) -> list[str]:
        common = ["-std=c++17", "-O3", "-DNDEBUG", f"-I{CSRC}", *defines]
        if self.name == "nvcc":
            return [self.compiler, "-cubin", f"-arch=sm_{arch}", "-Xptxas", "-v", "-o", out, *common, str(src)]
        return [self.compiler, "-x", "cuda", f"--cuda-path={self.cuda_path}", "-Wno-unknown-cuda-version",
                "-fno-crash-diagnostics", "--cuda-device-only", f"--cuda-gpu-arch=sm_{arch}", "-Xcuda-ptxas", "-v",
                "-c", "-o", os.devnull, *common, str(src)]

    def host_cmd(self, src: Path, defines: list[str]) -> list[str]:
        return [self.compiler, "-x", "cuda", f"--cuda-path={self.cuda_path}", "-Wno-unknown-cuda-version",
                "-fno-crash-diagnostics", "--cuda-host-only", "-std=c++17", "-O3", "-Wall", f"-I{CSRC}", *defines,
                "-c", "-o", os.devnull, str(src)]


def _run(cmd: list[str]) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.stdout + p.stderr


def find_nvcc(explicit: str | None) -> Toolchain | None:
    cands = [explicit, os.environ.get("FASTRADIO_NVCC"), "/usr/local/cuda-13.0/bin/nvcc",
             "/usr/local/cuda/bin/nvcc", shutil.which("nvcc")]
    for c in cands:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            m = re.search(r"release (\d+\.\d+), V([\d.]+)", _run([c, "--version"]))
            if not m or int(m.group(1).split(".")[0]) < 13:
                continue
            codes = re.findall(r"sm_(\d+)", _run([c, "--list-gpu-code"]))
            supported = set(codes) | {f"{a}a" for a in codes if int(a) >= 90}
            return Toolchain("nvcc", c, m.group(2), [a for a in GATE_ARCHS["nvcc"] if a in supported])
    return None


def find_cuobjdump(explicit: str | None, nvcc: Toolchain | None) -> str | None:
    """cuobjdump: given, $FASTRADIO_CUOBJDUMP, beside nvcc, on PATH, or from a PyPI package in this
    Python (nvidia-cuda-cuobjdump, or the copy Triton ships)."""
    import glob
    import sysconfig
    site = sysconfig.get_paths()["purelib"]
    cands = [explicit, os.environ.get("FASTRADIO_CUOBJDUMP"),
             str(Path(os.path.realpath(nvcc.compiler)).parent / "cuobjdump") if nvcc else None,
             shutil.which("cuobjdump"), *sorted(glob.glob(os.path.join(site, "nvidia", "cu1*", "bin", "cuobjdump"))),
             os.path.join(site, "triton", "backends", "nvidia", "bin", "cuobjdump")]
    return next((c for c in cands if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


_RE_SASS_FUNC = re.compile(r"^\s*Function\s*:\s*(\S+)", re.MULTILINE)
_RE_SASS_OP = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)")


def sass_opcodes(text: str) -> dict[str, set[str]]:
    """`cuobjdump -sass` output -> {function: its opcodes (the mnemonic before the first '.')}."""
    out: dict[str, set[str]] = {}
    starts = list(_RE_SASS_FUNC.finditer(text))
    for i, m in enumerate(starts):
        body = text[m.end(): starts[i + 1].start() if i + 1 < len(starts) else len(text)]
        out[m.group(1)] = set(_RE_SASS_OP.findall(body))
    return out


def sass_findings(ops: dict[str, set[str]], rule: SassRule) -> list[str]:
    out = []
    if not ops:
        out.append("SASS check: cuobjdump found no function in the cubin")
    for name, have in sorted(ops.items()):
        missing = [o for o in rule.need if o not in have]
        bad = sorted(o for o in rule.forbid if o in have)
        if missing:
            out.append(f"{name}: SASS lacks {', '.join(missing)} (the tier's instructions; a fallback was compiled)")
        if bad:
            out.append(f"{name}: SASS has {', '.join(bad)} (local memory)")
    return out


def find_clang(explicit: str | None, cuda_path: str | None) -> Toolchain | None:
    clang = explicit or os.environ.get("FASTRADIO_CLANG") or shutil.which("clang++-19")
    tdir = os.environ.get("FASTRADIO_TOOLCHAINS_DIR", str(REPO / ".toolchains"))
    cuda = cuda_path or os.environ.get("FASTRADIO_CLANG_CUDA_PATH") or str(Path(tdir) / "cuda-12.9")
    ptxas = Path(cuda) / "bin" / "ptxas"
    if not clang or not shutil.which(clang) or not ptxas.is_file():
        return None
    m = re.search(r"clang version ([\d.]+)", _run([clang, "--version"]))
    supported = set(re.findall(r"'sm_(\d+a?)'", _run([str(ptxas), "--help"])))
    archs = [a for a in GATE_ARCHS["clang"] if a in supported]
    return Toolchain("clang", clang, m.group(1) if m else "?", archs, cuda)


# --- the gate -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Job:
    file: str
    toolchain: str
    arch: str  # "host" for the host-side pass
    cmd: list[str]
    returncode: int = 0
    seconds: float = 0.0
    output: str = ""
    functions: list[dict] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    registered: bool = False         # a fastradio_add_kernel source: no stack frame allowed
    rule: SassRule | None = None     # a tier with a SASS rule: the cubin is kept and read back
    cubin: str = ""
    cuobjdump: str = ""
    sass: dict = dataclasses.field(default_factory=dict)  # function -> sorted opcodes of interest


def _execute(job: Job, limits: dict[int, int]) -> Job:
    t0 = time.monotonic()
    p = subprocess.run(job.cmd, capture_output=True, text=True, cwd=REPO)
    job.seconds = round(time.monotonic() - t0, 2)
    job.returncode = p.returncode
    job.output = (p.stdout + p.stderr).strip()
    funcs = parse_ptxas(job.output)
    job.functions = [dataclasses.asdict(f) for f in funcs.values()]
    if job.arch != "host":
        job.problems = findings(funcs, job.arch, limits)
    if job.registered and job.arch != "host":
        job.problems += [f"{f.name}: {f.stack} bytes of stack frame (local memory)" for f in funcs.values()
                         if f.entry and f.stack]
    if job.rule is not None and p.returncode == 0:
        if not job.cuobjdump:
            job.problems.append("SASS check: no cuobjdump (pip install nvidia-cuda-cuobjdump, or set "
                                "FASTRADIO_CUOBJDUMP)")
        else:
            d = subprocess.run([job.cuobjdump, "-sass", job.cubin], capture_output=True, text=True)
            if d.returncode != 0:
                job.problems.append(f"SASS check: cuobjdump failed: {(d.stdout + d.stderr)[-400:]}")
            else:
                ops = sass_opcodes(d.stdout)
                job.problems += sass_findings(ops, job.rule)
                keep = set(job.rule.need) | set(job.rule.forbid)
                job.sass = {n: sorted(o & keep) for n, o in ops.items()}
    if job.cubin:
        Path(job.cubin).unlink(missing_ok=True)
    if p.returncode != 0:
        errors = [ln.strip() for ln in job.output.splitlines() if "error" in ln.lower()]
        job.problems.append("compile failed: " + (" | ".join(errors[:5]) or job.output[-800:]))
    return job


def _demangle(names: set[str]) -> dict[str, str]:
    filt = shutil.which("c++filt")
    if not filt or not names:
        return {n: n for n in names}
    ordered = sorted(names)
    out = subprocess.run([filt], input="\n".join(ordered), capture_output=True, text=True).stdout.splitlines()
    if len(out) != len(ordered):
        return {n: n for n in names}
    return dict(zip(ordered, out))


def _short(name: str) -> str:
    name = re.sub(r"^void ", "", name)
    name = name.replace("(anonymous namespace)::", "").replace("fastradio::", "")
    depth, cut = 0, len(name)
    for i, ch in enumerate(name):  # drop the parameter list: the first "(" outside template args
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            cut = i
            break
    return name[:cut]


def run_gate(sources: list[Path], toolchains: list[Toolchain], archs: set[str] | None, jobs: int,
             host_pass: bool = True, cuobjdump: str | None = None, scratch: Path | None = None) -> list[Job]:
    regs = registrations()
    defines = sorted({f"-DFASTRADIO_HAS_{r.op.upper()}_{r.tier.upper()}=1" for r in regs.values()})
    limits = smem_optin_limits()
    work: list[Job] = []
    for src in sources:
        rel = str(src.relative_to(REPO)) if src.is_relative_to(REPO) else str(src)
        reg = regs.get(src.resolve())
        rule = SASS_RULES.get(reg.tier) if reg else None
        for tc in toolchains:
            for arch in tc.archs:
                if (archs is None or arch in archs) and needed(reg, arch):
                    if rule is not None and tc.name == "nvcc":
                        scratch = scratch or Path(REPO / "build" / "compile_gate" / "cubins")
                        scratch.mkdir(parents=True, exist_ok=True)
                        cubin = str(scratch / f"{src.stem}.sm_{arch}.cubin")
                        work.append(Job(rel, tc.name, arch, tc.device_cmd(src, arch, defines, cubin), rule=rule,
                                        cubin=cubin, cuobjdump=cuobjdump or "", registered=True))
                    else:
                        work.append(Job(rel, tc.name, arch, tc.device_cmd(src, arch, defines),
                                        registered=reg is not None))
            if host_pass and tc.name == "clang":
                work.append(Job(rel, tc.name, "host", tc.host_cmd(src, defines)))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda j: _execute(j, limits), work))


def _arch_key(a: str) -> tuple[int, str]:
    m = re.match(r"(\d+)(\D*)", a)
    return (int(m.group(1)), m.group(2)) if m else (1 << 30, a)


def report(done: list[Job], toolchains: list[Toolchain], out_dir: Path, seconds: float) -> tuple[str, bool]:
    names = _demangle({f["name"] for j in done for f in j.functions})
    ok = not any(j.problems for j in done)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "ok": ok,
        "seconds": round(seconds, 1),
        "toolchains": {t.name: {"compiler": t.compiler, "version": t.version, "archs": t.archs,
                                "cuda_path": t.cuda_path} for t in toolchains},
        "limits": {"static_smem": STATIC_SMEM_LIMIT, "smem_optin": smem_optin_limits()},
        "jobs": [dict(dataclasses.asdict(j), functions=[dict(f, demangled=names[f["name"]]) for f in j.functions])
                 for j in done],
    }
    (out_dir / "report.json").write_text(json.dumps(data, indent=1))

    # Full table (report.md): one row per (file, toolchain, arch, kernel).
    rows = ["| file | toolchain | arch | kernel | regs | spill st/ld (B) | smem (B) | stack (B) |",
            "|---|---|---|---|---|---|---|---|"]
    for j in sorted(done, key=lambda j: (j.file, j.toolchain, _arch_key(j.arch))):
        for f in j.functions:
            rows.append(f"| {j.file} | {j.toolchain} | {j.arch} | `{_short(names[f['name']])}` | {f['registers']} "
                        f"| {f['spill_stores']}/{f['spill_loads']} | {f['smem']} | {f['stack']} |")
    # Summary (printed): one row per (file, toolchain, kernel) over archs.
    summary: dict[tuple, dict] = {}
    for j in done:
        for f in j.functions:
            s = summary.setdefault((j.file, j.toolchain, _short(names[f["name"]])),
                                   {"archs": [], "regs": 0, "reg_arch": "", "spill": 0, "smem": 0, "stack": 0})
            s["archs"].append(j.arch)
            if f["registers"] >= s["regs"]:
                s["regs"], s["reg_arch"] = f["registers"], j.arch
            s["spill"] += f["spill_stores"] + f["spill_loads"]
            s["smem"] = max(s["smem"], f["smem"])
            s["stack"] = max(s["stack"], f["stack"])
    lines = ["| file | toolchain | kernel | archs | max regs (arch) | spills (B) | max smem (B) | max stack (B) |",
             "|---|---|---|---|---|---|---|---|"]
    for (file, tc, kernel), s in sorted(summary.items()):
        archs = sorted(set(s["archs"]), key=_arch_key)
        lines.append(f"| {file} | {tc} | `{kernel}` | {len(archs)}: {archs[0]}..{archs[-1]} | "
                     f"{s['regs']} (sm_{s['reg_arch']}) | {s['spill']} | {s['smem']} | {s['stack']} |")
    def readable(problem: str) -> str:  # "<mangled>: ..." -> "<kernel> (<mangled>): ..."
        name, sep, rest = problem.partition(": ")
        return f"{_short(names[name])} ({name}){sep}{rest}" if name in names else problem

    problems = [f"FAIL {j.file} [{j.toolchain} {'host pass' if j.arch == 'host' else 'sm_' + j.arch}]: {readable(p)}"
                for j in sorted(done, key=lambda j: (j.file, j.toolchain, _arch_key(j.arch))) for p in j.problems]
    tcs = ", ".join(f"{t.name} {t.version} ({' '.join(t.archs)})" for t in toolchains)
    verdict = (f"compile gate: {'PASS' if ok else 'FAIL'}: {len(done)} compiles of "
               f"{len({j.file for j in done})} files in {seconds:.0f} s; toolchains: {tcs}")
    sass = [f"| {j.file} | sm_{j.arch} | `{_short(names.get(n, n))}` | {' '.join(ops) or '-'} |"
            for j in sorted(done, key=lambda j: (j.file, _arch_key(j.arch))) for n, ops in sorted(j.sass.items())]
    sass_md = ["\n## SASS rules (SASS_RULES: opcodes found of those needed / forbidden)\n",
               "| file | arch | kernel | opcodes |", "|---|---|---|---|", *sass] if sass else []
    md = "\n".join([f"# Compile gate\n\n{verdict}\n", *(["## Failures\n", *problems, ""] if problems else []),
                    "## Summary\n", *lines, *sass_md, "\n## Every kernel, every arch\n", *rows, ""])
    (out_dir / "report.md").write_text(md)
    text = "\n".join([*lines, *sass_md, "", *problems, verdict,
                      f"report: {out_dir / 'report.md'}, {out_dir / 'report.json'}"])
    return text, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--toolchain", choices=("nvcc", "clang", "both"), default="both")
    ap.add_argument("--archs", help="only these archs, e.g. 80,90a (',' or ';' separated)")
    ap.add_argument("--sources", nargs="+", type=Path, help="files to gate (default: csrc/**/*.cu)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--report-dir", type=Path, default=REPO / "build" / "compile_gate")
    ap.add_argument("--nvcc", help="CUDA 13 nvcc (default: $FASTRADIO_NVCC, /usr/local/cuda-13.0, PATH)")
    ap.add_argument("--clang", help="clang++ (default: $FASTRADIO_CLANG, clang++-19)")
    ap.add_argument("--clang-cuda-path", help="CUDA 12.9 folder for clang (default: $FASTRADIO_CLANG_CUDA_PATH)")
    ap.add_argument("--no-host-pass", action="store_true", help="skip clang's host-side compile of each file")
    ap.add_argument("--allow-missing", action="store_true", help="skip a missing toolchain instead of failing")
    ap.add_argument("--cuobjdump", help="for the SASS rules (default: $FASTRADIO_CUOBJDUMP, beside nvcc, PATH, "
                                        "nvidia-cuda-cuobjdump or Triton's copy in this Python)")
    args = ap.parse_args(argv)

    wanted = ("nvcc", "clang") if args.toolchain == "both" else (args.toolchain,)
    toolchains, missing = [], []
    for name in wanted:
        tc = find_nvcc(args.nvcc) if name == "nvcc" else find_clang(args.clang, args.clang_cuda_path)
        (toolchains if tc else missing).append(tc or name)
    for name in missing:
        hint = ("set FASTRADIO_NVCC to a CUDA 13 nvcc" if name == "nvcc"
                else "run csrc/tools/setup_toolchains.sh (or set FASTRADIO_CLANG / FASTRADIO_CLANG_CUDA_PATH)")
        print(f"compile gate: toolchain {name} not found: {hint}", file=sys.stderr)
    if missing and not args.allow_missing:
        return 2
    if not toolchains:
        print("compile gate: no toolchain to run", file=sys.stderr)
        return 2
    archs = set(re.split(r"[,;\s]+", args.archs.strip())) - {""} if args.archs else None
    sources = [p.resolve() for p in args.sources] if args.sources else kernel_sources()
    if not sources:
        print("compile gate: no .cu sources found", file=sys.stderr)
        return 2

    t0 = time.monotonic()
    nvcc = next((t for t in toolchains if t.name == "nvcc"), None)
    done = run_gate(sources, toolchains, archs, args.jobs, host_pass=not args.no_host_pass,
                    cuobjdump=find_cuobjdump(args.cuobjdump, nvcc), scratch=args.report_dir / "cubins")
    if not done:
        print("compile gate: nothing to compile for these toolchains/archs", file=sys.stderr)
        return 2
    text, ok = report(done, toolchains, args.report_dir, time.monotonic() - t0)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
