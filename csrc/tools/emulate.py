#!/usr/bin/env python3
"""Run the real CUDA kernels on the CPU: the emulated device (csrc/emu/, DESIGN.md "The emulated device").

    python csrc/tools/emulate.py                          # plain build: every op/tier/dtype case, sm_80 and sm_75, the whole model, and sm_90 (Hopper: self-test + the sm_90a tiers' cases)
    python csrc/tools/emulate.py --sanitizer thread       # ThreadSanitizer build
    python csrc/tools/emulate.py --sanitizer address      # AddressSanitizer + UBSan build
    python csrc/tools/emulate.py --sanitizer all          # the three builds, one after the other (CI)
    python csrc/tools/emulate.py --op linear --tier mma_sm80
    python csrc/tools/emulate.py --op linear --tier wgmma_sm90a --sanitizer all   # only the archs that run the tier (sm_90)
    python csrc/tools/emulate.py --src /tmp/csrc-copy     # build from another csrc/ folder
    python csrc/tools/emulate.py --mutants quick          # the mutation check (--mutants all: the whole list)

For each build (emulated arch x sanitizer) it configures and builds CMake's emulation targets
(FASTRADIO_CPU_EMULATION=ON; build/emu/...), runs the emulator's self-test (csrc/emu/selftest/:
every check of the emulator must fire on a buggy kernel, every emulated instruction must compute
what the CUDA guide / PTX ISA define; rows selftest/...), then the test driver (csrc/emu/driver/: every op,
tier and dtype against fp64 references with DESIGN §7's tolerances, NaN-poisoned outputs, each case
under several block/thread schedules that must agree bit for bit) and, for the plain sm_80 build,
the whole network on the emulated device (tests/test_emulated_device.py through the emulated
fastradio._C). It prints one table row per case (case, max error, bound, time) and exits non-zero
on any mismatch, unwritten output, sanitizer report, deadlock, divergent barrier or launch error.

The mutation check (--mutants) copies csrc/, applies each mutant of csrc/tools/emulate_mutants.py
(a deleted __syncthreads or cp.async wait, a shifted wait count or tile bound, in every tensor-core
kernel), runs every driver case of the mutant's op and tier, and requires every mutant to be caught
(by the plain build's values or schedules; with `all`, also by the ThreadSanitizer build) while the
controls (a wait that is really redundant) must still pass.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SANITIZERS = ("none", "thread", "address")
DEFAULT_ARCHS = {"none": (80, 75, 90), "thread": (80, 90), "address": (80, 90)}
# Archs whose driver runs only the tiers that need them (the older tiers already ran at sm_80 /
# sm_75), and the ops that have such a tier; their model step runs only those tiers too. sm_90
# also runs the emulated Hopper instructions' self-test (csrc/emu/hopper.cpp) first, as every
# build does.
ARCH_TIERS = {90: ("wgmma_sm90a",)}
ARCH_OPS = {90: ("linear", "attention")}
# The lowest emulated arch that runs each tier, and the archs an arch-specific tier needs.
TIER_MIN_ARCH = {"cuda_core": 0, "mma_sm75": 75, "mma_sm80": 80, "wgmma_sm90a": 90}
TIER_ONLY_ARCHS = {"wgmma_sm90a": (90,)}
EMULATION_ENV = "FASTRADIO_EMULATED_DEVICE"  # python/fastradio/backends/cuda/_common.py

# Report headers of the sanitizers and the emulator in the driver's stderr.
_REPORT = re.compile(r"WARNING: ThreadSanitizer:|ERROR: AddressSanitizer:|ERROR: LeakSanitizer:|"
                     r"runtime error:|^\[emu\] error:|^\[emu\] fatal:", re.MULTILINE)
# The self-test's buggy kernels cause "[emu] error:" lines on purpose (it checks each error itself);
# there only sanitizer reports and fatal emulator errors count.
_SAN_REPORT = re.compile(r"WARNING: ThreadSanitizer:|ERROR: AddressSanitizer:|ERROR: LeakSanitizer:|"
                         r"runtime error:|^\[emu\] fatal:", re.MULTILINE)
_SAN_ENV = {
    "TSAN_OPTIONS": "halt_on_error=0:history_size=7:second_deadlock_stack=1",
    "ASAN_OPTIONS": "halt_on_error=0:detect_leaks=1:abort_on_error=0",
    "UBSAN_OPTIONS": "halt_on_error=0:print_stacktrace=1",
}


@dataclass
class Build:
    src: Path
    arch: int
    sanitizer: str
    python: bool = False

    @property
    def label(self) -> str:
        return f"sm{self.arch}-{self.sanitizer}"

    def directory(self, root: Path) -> Path:
        tag = "csrc" if self.src == REPO / "csrc" else "src-" + hashlib.sha1(str(self.src).encode()).hexdigest()[:10]
        return root / tag / self.label


@dataclass
class Case:
    name: str
    ok: bool
    err: str = ""
    bound: str = ""
    seconds: str = ""
    detail: str = ""
    reports: list[str] = field(default_factory=list)


def log(msg: str) -> None:
    print(msg, flush=True)


def have_fma() -> bool:
    try:
        return " fma " in f" {Path('/proc/cpuinfo').read_text()} ".replace("\n", " ")
    except OSError:
        return False


def cmake_generator() -> list[str]:
    ninja = shutil.which("ninja") or (Path(sys.executable).parent / "ninja")
    return ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if Path(ninja).exists() else []


def build(b: Build, root: Path, jobs: int, cxx: str | None, quiet: bool = False) -> Path:
    """Configures (once) and builds the emulation targets of `b`; returns the build folder."""
    out = b.directory(root)
    out.mkdir(parents=True, exist_ok=True)
    # Configured every time (a second configure is quick), so the options always match this run.
    cmd = ["cmake", "-S", str(REPO), "-B", str(out), "-DFASTRADIO_CPU_EMULATION=ON",
           f"-DFASTRADIO_EMU_ARCH={b.arch}", f"-DFASTRADIO_EMU_SANITIZER={b.sanitizer}",
           f"-DFASTRADIO_EMU_SRC={b.src}", f"-DFASTRADIO_EMU_FMA={'ON' if have_fma() else 'OFF'}",
           f"-DFASTRADIO_EMU_PYTHON={'ON' if b.python else 'OFF'}", f"-DPython_EXECUTABLE={sys.executable}"]
    if not (out / "CMakeCache.txt").exists():
        cmd += cmake_generator()
        if cxx:
            cmd.append(f"-DCMAKE_CXX_COMPILER={cxx}")
    elif cxx:
        cached = re.search(r"^CMAKE_CXX_COMPILER:\w+=(.*)$", (out / "CMakeCache.txt").read_text(), re.MULTILINE)
        if cached and Path(cached.group(1)).name != Path(cxx).name:
            raise SystemExit(f"emulate: {out} was configured with {cached.group(1)}; use another --build-dir for {cxx}")
    run_checked(cmd, quiet=True)
    t0 = time.time()
    targets = ["fastradio_emu_selftest", "fastradio_emu_driver"] + (["_C"] if b.python else [])
    targets = targets if b.arch in ARCH_TIERS else []
    run_checked(["cmake", "--build", str(out), "-j", str(jobs), *(a for t in targets for a in ("--target", t))],
                quiet=True)
    if not quiet:
        log(f"  built {b.label} in {time.time() - t0:.0f} s ({out})")
    return out


def run_checked(cmd: list[str], quiet: bool = False, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-20000:] + p.stderr[-20000:])
        raise SystemExit(f"emulate: command failed ({p.returncode}): {' '.join(cmd)}")
    if not quiet:
        sys.stdout.write(p.stdout)
    return p


def driver_args(args, quick: bool, arch: int | None = None) -> list[str]:
    out = []
    for op in args.op or []:
        out += ["--op", op]
    if args.tier:
        out += ["--tier", args.tier]
    elif arch in ARCH_TIERS:  # the older tiers ran in the sm_80 / sm_75 builds
        out += ["--tier", ARCH_TIERS[arch][0]]
    if args.filter:
        out += ["--filter", args.filter]
    if quick:
        out.append("--quick")
    if args.orders is not None:
        out += ["--orders", str(args.orders)]
    return out


def run_driver(folder: Path, extra: list[str], timeout: float, exe_name: str = "fastradio_emu_driver",
               reports: re.Pattern = _REPORT) -> tuple[list[Case], int, str]:
    """Runs the driver (or the self-test: exe_name); returns its cases (with the reports matching
    `reports` each one caused), the exit status, and the reports printed outside any case."""
    exe = folder / exe_name
    if not exe.exists():
        raise SystemExit(f"emulate: {exe} was not built")
    env = dict(os.environ, **_SAN_ENV)
    try:
        p = subprocess.run([str(exe), *extra], capture_output=True, text=True, env=env, timeout=timeout)
        stdout, stderr, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr = (e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")) + \
            f"\n[emu] error: the driver ran past {timeout:.0f} s and was stopped\n"
        rc = -1
    cases, outside = parse_driver_output(stdout, stderr, reports)
    return cases, rc, outside


def run_selftest(folder: Path, timeout: float) -> tuple[list[Case], int, str]:
    """The emulator's self-test (csrc/emu/selftest/), where the source has one."""
    if not (folder / "fastradio_emu_selftest").exists():
        log("   (no csrc/emu/selftest/ in this source: no self-test)")
        return [], 0, ""
    return run_driver(folder, [], timeout, exe_name="fastradio_emu_selftest", reports=_SAN_REPORT)


def parse_driver_output(stdout: str, stderr: str, reports: re.Pattern = _REPORT) -> tuple[list[Case], str]:
    """The driver's `CASE` lines (or the self-test's `TEST <name> <PASS|FAIL> <detail>`, named
    selftest/<name>), each with the reports (matching `reports`) printed on stderr between its
    `[emu-case-begin]` and `[emu-case-end]` markers; and the reports outside any case.
    A case that began but printed no result line (the driver died in it) is a failure."""
    cases: dict[str, Case] = {}
    order: list[str] = []
    for line in stdout.splitlines():
        parts = line.split("\t")
        if parts[0] == "CASE" and len(parts) >= 3:
            c = Case(parts[1], parts[2] == "PASS", *(parts[3:7] + [""] * 4)[:4])
            cases[c.name] = c
            order.append(c.name)
        elif parts[0] == "TEST" and len(parts) >= 3:
            c = Case("selftest/" + parts[1], parts[2] == "PASS", detail=parts[3] if len(parts) > 3 else "")
            cases[c.name] = c
            order.append(c.name)
    outside: list[str] = []
    current: str | None = None
    chunk: list[str] = []

    def flush():
        text = "\n".join(chunk)
        chunk.clear()
        if not reports.search(text):
            return
        if current is None:
            outside.append(text)
        else:
            cases[current].reports.append(text)

    for line in stderr.splitlines():
        m = re.match(r"\[emu-case-(begin|end)\] (.*)", line)
        if not m:
            chunk.append(line)
            continue
        flush()
        current = m.group(2) if m.group(1) == "begin" else None
        if current is not None and current not in cases:
            cases[current] = Case(current, False, detail="(no result line: the driver died in this case)")
            order.append(current)
    flush()
    return [cases[n] for n in dict.fromkeys(order)], "\n".join(outside)


def short(text: str, n: int = 300) -> str:
    lines = [ln for ln in text.splitlines() if _REPORT.search(ln) or ln.strip().startswith("#0")]
    s = " | ".join(ln.strip() for ln in lines[:4]) or text.strip()[-n:]
    return s[:n]


def print_table(label: str, cases: list[Case]) -> None:
    w = max([len(c.name) for c in cases] + [4])
    log(f"\n{'case':<{w}}  result  {'max err':>10}  {'bound':>10}  {'time':>7}   [{label}]")
    for c in cases:
        bad = not c.ok or c.reports
        res = "FAIL" if bad else "ok"
        log(f"{c.name:<{w}}  {res:<6}  {c.err:>10}  {c.bound:>10}  {c.seconds:>7}" + (f"   {c.detail}" if bad and c.detail else ""))
        for r in c.reports:
            log(f"{'':<{w}}  report: {short(r)}")


def check_build(b: Build, args, root: Path) -> bool:
    """Builds `b`, runs the self-test and the driver (and the model step for the plain sm_80
    build); True if clean."""
    log(f"\n== {b.label} ({'src ' + str(b.src)})")
    folder = build(b, root, args.jobs, args.cxx)
    quick = args.quick
    t0 = time.time()
    st_cases, st_rc, st_outside = run_selftest(folder, args.timeout)  # first: the driver trusts the emulator
    # A Hopper build asked only for ops or a tier it adds nothing to: the self-test alone.
    selftest_only = b.arch in ARCH_TIERS and (bool(args.op) and not set(args.op) & set(ARCH_OPS[b.arch])
                                              or bool(args.tier) and args.tier not in ARCH_TIERS[b.arch])
    if selftest_only:
        print_table(b.label, st_cases)
        st_bad = [c for c in st_cases if not c.ok or c.reports]
        ok = bool(st_cases) and not st_bad and st_rc == 0 and not st_outside
        if st_outside:
            log(f"reports outside any case of the self-test:\n{st_outside[-6000:]}")
        log(f"-- {b.label}: self-test {len(st_cases) - len(st_bad)} of {len(st_cases)} passed (exit {st_rc}), "
            f"self-test only, {time.time() - t0:.0f} s{'' if ok else '  <-- FAILED'}")
        return ok
    cases, rc, outside = run_driver(folder, driver_args(args, quick, b.arch), args.timeout)
    print_table(b.label, st_cases + cases)
    st_bad = [c for c in st_cases if not c.ok or c.reports]
    bad = [c for c in cases if not c.ok or c.reports]
    ok = not bad and not st_bad and rc == 0 and st_rc == 0 and not outside and not st_outside and cases
    for what, text in (("the self-test", st_outside), ("the driver", outside)):
        if text:
            log(f"reports outside any case of {what}:\n{text[-6000:]}")
    selftest = (f"self-test {len(st_cases) - len(st_bad)} of {len(st_cases)} passed (exit {st_rc}), "
                if st_cases or st_rc else "")
    log(f"-- {b.label}: {selftest}{len(cases) - len(bad)} of {len(cases)} cases passed, driver exit {rc}, "
        f"{time.time() - t0:.0f} s{'' if ok else '  <-- FAILED'}")
    if not cases:
        log("   the driver ran no case (a filter that matches nothing?)")
    if b.python and not args.no_model:
        ok = model_step(folder, args, b.arch) and ok
    return bool(ok)


def model_step(folder: Path, args, arch: int = 80) -> bool:
    """The whole network through the emulated _C (tests/test_emulated_device.py); at an arch of
    ARCH_TIERS only the runs that force its tiers (the others ran at sm_80)."""
    mods = sorted(folder.glob("_C*.so"))
    if not mods:
        log("emulate: the emulated _C was not built")
        return False
    env = dict(os.environ, **{EMULATION_ENV: str(mods[0])})
    env.pop("FASTRADIO_TIER", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs",
           str(REPO / "tests" / "test_emulated_device.py")]
    if args.model_filter:
        cmd += ["-k", args.model_filter]
    elif arch in ARCH_TIERS:
        cmd += ["-k", " or ".join(ARCH_TIERS[arch])]
    log(f"\n== model on the emulated device: {' '.join(cmd[1:])}")
    t0 = time.time()
    p = subprocess.run(cmd, env=env, cwd=REPO, text=True, capture_output=True)
    sys.stdout.write(p.stdout[-12000:])
    if p.returncode != 0:
        sys.stdout.write(p.stderr[-8000:])
    skipped = re.search(r"(\d+) skipped", p.stdout)
    passed = re.search(r"(\d+) passed", p.stdout)
    ok = p.returncode == 0 and passed is not None
    log(f"-- model: pytest exit {p.returncode}, {time.time() - t0:.0f} s"
        f"{'' if ok else '  <-- FAILED'}{' (' + skipped.group(0) + ')' if skipped else ''}")
    return ok


# --- the mutation check -------------------------------------------------------------------------------

def mutation_check(args, root: Path) -> bool:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from emulate_mutants import MUTANTS, QUICK  # noqa: E402

    if args.mutants == "all":
        chosen = list(MUTANTS)
    elif args.mutants == "quick":
        chosen = [m for m in MUTANTS if m.name in QUICK]
    else:
        names = set(args.mutants.split(","))
        chosen = [m for m in MUTANTS if m.name in names]
        missing = names - {m.name for m in chosen}
        if missing:
            raise SystemExit(f"emulate: unknown mutants {sorted(missing)}; known: {[m.name for m in MUTANTS]}")
    src = root / "mutants" / "csrc"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(args.src, src, ignore=shutil.ignore_patterns("__pycache__"))
    # CI's quick set runs the plain build only (with its greedy schedules it catches every listed
    # mutant by the values alone); the whole list also runs ThreadSanitizer on each mutant.
    # Each mutant runs in the builds of its arch (80, or 90 for the sm_90a tiers).
    sans = ("none",) + (("thread",) if args.mutants != "quick" else ())
    arch_builds = {a: [Build(src, a, s) for s in sans] for a in sorted({m.arch for m in chosen})}
    log(f"\n== mutation check: {len(chosen)} mutants, builds "
        f"{', '.join(b.label for bs in arch_builds.values() for b in bs)} of {src}")
    for bs in arch_builds.values():  # the unmutated copy first, so each mutant recompiles one file
        for b in bs:
            build(b, root, args.jobs, args.cxx)
    rows = []
    all_ok = True
    for m in chosen:
        path = src / m.file
        original = path.read_text()
        count = original.count(m.find)
        if count != 1:
            raise SystemExit(f"emulate: mutant {m.name}: {m.find!r} occurs {count} times in {m.file} (must be once)")
        path.write_text(original.replace(m.find, m.replace))
        t0 = time.time()
        verdicts = []
        try:
            for b in arch_builds[m.arch]:
                folder = build(b, root, args.jobs, args.cxx, quiet=True)
                extra = ["--op", m.op] + (["--tier", m.tier] if m.tier else [])
                cases, rc, outside = run_driver(folder, extra, min(args.timeout, 600))
                failed = [c.name for c in cases if not c.ok or c.reports]
                verdicts.append((b.sanitizer, bool(failed or rc != 0 or outside or not cases), failed))
        finally:
            path.write_text(original)
        caught = any(v[1] for v in verdicts)
        ok = caught if m.expect == "caught" else not caught
        all_ok &= ok
        how = ", ".join(f"{s}: {'caught' if c else 'passed'}" + (f" ({len(f)} cases)" if f else "")
                        for s, c, f in verdicts)
        rows.append((m.name, m.expect, how, ok, time.time() - t0))
        log(f"  {m.name:<44} expect {m.expect:<8} {how:<48} {'ok' if ok else 'WRONG'}  {time.time() - t0:.0f} s")
    bad = [r for r in rows if not r[3]]
    log(f"-- mutation check: {len(rows) - len(bad)} of {len(rows)} as expected"
        f"{'' if not bad else '  <-- FAILED: ' + ', '.join(r[0] for r in bad)}")
    return not bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--sanitizer", default="none",
                    help="none | thread | address | all, or a comma list (default none)")
    ap.add_argument("--arch", help="emulated archs, comma list (default: 80,75,90 plain; 80,90 with a sanitizer; "
                                   "90 runs the self-test and the sm_90a tiers)")
    ap.add_argument("--op", action="append", help="only this op (repeatable)")
    ap.add_argument("--tier", help="only this tier (cuda_core, mma_sm75, mma_sm80, wgmma_sm90a); without --arch, only "
                                   "the archs that run it")
    ap.add_argument("--filter", help="only cases whose name contains this")
    ap.add_argument("--src", type=Path, default=REPO / "csrc", help="the csrc/ folder to build (default: this repo's)")
    ap.add_argument("--quick", action="store_true", help="the driver's quick case list (one case per op/tier/dtype)")
    ap.add_argument("--orders", type=int, help="schedules per case (the driver's default otherwise)")
    ap.add_argument("--no-model", action="store_true", help="skip the whole-network step")
    ap.add_argument("--model-filter", help="pytest -k expression for the model step")
    ap.add_argument("--mutants", help="run the mutation check: quick | all | NAME,NAME,...")
    ap.add_argument("--build-only", action="store_true", help="build, run nothing")
    ap.add_argument("--build-dir", type=Path, default=REPO / "build" / "emu")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--cxx", help="C++ compiler (default: CMake's choice, e.g. g++; clang++ works too)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per driver run")
    args = ap.parse_args(argv)
    args.src = args.src.resolve()
    if not (args.src / "emu" / "emulation.cmake").exists():
        ap.error(f"--src {args.src} has no emu/emulation.cmake (is it a csrc/ folder?)")

    t0 = time.time()
    if args.mutants:
        ok = mutation_check(args, args.build_dir)
        log(f"\nemulate: {'PASSED' if ok else 'FAILED'} in {time.time() - t0:.0f} s")
        return 0 if ok else 1

    sans = SANITIZERS if args.sanitizer == "all" else tuple(args.sanitizer.split(","))
    for s in sans:
        if s not in SANITIZERS:
            ap.error(f"--sanitizer must be one of {', '.join(SANITIZERS)} or all, got {s!r}")
    builds = []
    for s in sans:
        archs = [int(a) for a in args.arch.split(",")] if args.arch else DEFAULT_ARCHS[s]
        if args.tier in TIER_MIN_ARCH and not args.arch:  # only the archs that run the tier
            archs = [a for a in archs if a >= TIER_MIN_ARCH[args.tier] and a in TIER_ONLY_ARCHS.get(args.tier, (a,))]
        for i, a in enumerate(archs):
            hopper_model = a in ARCH_TIERS and (not args.tier or args.tier in ARCH_TIERS[a])
            model = (s == "none" and (i == 0 or hopper_model) and not args.no_model
                     and args.src == REPO / "csrc")
            builds.append(Build(args.src, a, s, python=model))
    if args.build_only:
        for b in builds:
            build(b, args.build_dir, args.jobs, args.cxx)
        return 0
    results = [(b.label, check_build(b, args, args.build_dir)) for b in builds]
    log("\n== summary")
    for label, ok in results:
        log(f"  {label:<14} {'passed' if ok else 'FAILED'}")
    ok = all(r[1] for r in results)
    log(f"emulate: {'PASSED' if ok else 'FAILED'} in {time.time() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
