#!/usr/bin/env python3
"""Opens a built fastradio wheel and proves what it promises (README "Install"):

1. name and tags: a known distribution (wheel_variants.py), a CPython tag matching the
   extension's suffix, a manylinux tag equal to the one `auditwheel show` computes, and every
   shared object an ELF file for the tag's machine (x86_64 or aarch64);
2. the binary: the SASS and PTX archs inside fastradio/_C (listed by cuobjdump) include every
   promised arch, an arch-specific "90a"/"100a" only next to its plain arch, and no shared CUDA
   runtime is needed;
3. build_info(): the wheel installed into a fresh virtualenv, `_C.build_info()` must agree with
   the binary: the same SASS and PTX arch sets, every kernel function's archs equal to one of its
   kernel table entries (and every entry found), the variant's CUDA major and toolchain, and every
   op compiled for every promised arch;
4. the CPU test suite (TRITON_INTERPRET=1 pytest tests) run against the installed wheel, from a
   folder where the source tree is not importable; no tests collected is a failure;
5. a size report: wheel, _C, SASS and PTX bytes per arch.

An aarch64 wheel (cross-built: build_wheels.py --platform aarch64) is installed into an aarch64
CPython run under qemu-user (cross_aarch64.py: Debian's 3.11 or 3.13, or $FASTRADIO_AARCH64_PYTHON_3_X),
next to an aarch64 CPU torch from PyPI (AARCH64_TORCH_SPEC); there the same build_info() comparison runs, then `fastradio info`, then a
chosen subset of the CPU tests (AARCH64_TESTS, AARCH64_SELECT: under emulation the whole suite
would take hours).

    python3 csrc/tools/check_wheel.py wheelhouse/fastradio_cu13-*-cp311-*.whl
    python3 csrc/tools/check_wheel.py W.whl --sass 80 --ptx 80 --no-tests     # a reduced build

Promises default to the variant's (wheel_variants.py). Writes <wheel>.check.json; exit 1 when
anything is off, listing every problem. The fresh venv takes its heavy test dependencies (torch,
Triton, ...) from a per-Python venv under --work made once ($TORCH_SPEC, default torch==2.13.0),
through a .pth file, so that a check does not reinstall gigabytes; the wheel itself and anything
else it requires are installed by pip into the fresh venv.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cross_aarch64  # noqa: E402
from wheel_variants import arch_key, platform_of_tag, variant_of  # noqa: E402

TEST_DEPS = ["numpy", "safetensors", "huggingface_hub", "pillow", "tqdm", "pytest", "triton==3.7.*"]
#: torch for the aarch64 check: the newest CPU-only aarch64 torch on PyPI (from 2.10 on, PyPI's aarch64
#: torch is a CUDA build that does not import without its GPU libraries).
AARCH64_TORCH_SPEC = "torch==2.9.1"
#: torch's own dependencies on aarch64, installed by name: pip evaluates a requirement's markers for the
#: machine it runs on, not for --platform, so `pip install --platform ...aarch64 torch` on x86_64 also
#: takes torch's x86_64-only requirements (the nvidia-* CUDA libraries and triton: 4.6 GB, unusable
#: there). torch itself goes in with --no-deps. From torch 2.9.1's METADATA, markers read for aarch64.
AARCH64_TORCH_DEPS = ["filelock", "typing-extensions>=4.10.0", "sympy>=1.13.3", "networkx>=2.5.1", "jinja2",
                      "fsspec>=0.8.5"]
AARCH64_TEST_DEPS = ["numpy", "safetensors", "huggingface_hub", "pillow", "tqdm", "pytest"]
#: The CPU tests run under qemu against an aarch64 wheel (emulation is ~20x slower; the rest of the
#: suite is the x86_64 check's): the extension's build_info(), the kernels' host twins (the
#: aarch64-compiled host C++ of the linear tiers, incl. the warp-level ldmatrix/mma emulation, against
#: float64 oracles, at the smaller sizes), checkpoint loading (sharded safetensors round trips) and
#: the reference model at a small synthetic size (properties, NaN containment).
AARCH64_TESTS = ["test_cuda_core.py", "test_cuda_linear.py", "test_checkpoint.py", "test_model.py"]
AARCH64_SELECT = ("build_info or (host and not 257 and not 131 and not so400m and not model_shape) "
                  "or round_trip_sharded or test_properties or test_nan_in_one_image")


def log(msg: str) -> None:
    print(f"[check_wheel] {msg}", file=sys.stderr, flush=True)


def sort_archs(archs) -> list[str]:
    return sorted(set(archs), key=arch_key)


# --- 1. name and tags ----------------------------------------------------------------------------

def parse_wheel_name(name: str) -> dict:
    m = re.fullmatch(r"(?P<dist>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl",
                     name)
    if not m:
        raise ValueError(f"not a wheel file name: {name}")
    return m.groupdict()


def extension_suffix_for(py_tag: str, machine: str = "x86_64") -> str:
    m = re.fullmatch(r"cp(\d)(\d+)", py_tag)
    return f".cpython-{m.group(1)}{m.group(2)}-{machine}-linux-gnu.so" if m else ""


def wrong_machine(z: zipfile.ZipFile, machine: str) -> list[str]:
    """Every shared object in the wheel not built for `machine` ("name: aarch64" per offender)."""
    bad = []
    for name in z.namelist():
        if re.search(r"\.so(\.\d+)*$", name):
            with tempfile.NamedTemporaryFile() as f:
                f.write(z.read(name))
                f.flush()
                try:
                    got = cross_aarch64.elf_machine(Path(f.name))
                except cross_aarch64.CrossError:
                    got = "not ELF"
            if got != machine:
                bad.append(f"{name}: {got}")
    return bad


def auditwheel_tag(wheel: Path, auditwheel: list[str]) -> tuple[str | None, str]:
    """The platform tag `auditwheel show` says the wheel is consistent with, and its text."""
    out = subprocess.run([*auditwheel, "show", str(wheel)], capture_output=True, text=True)
    text = out.stdout + out.stderr
    m = re.search(r'consistent with the\s+following platform tag:\s+"([^"]+)"', text)
    return (m.group(1) if m else None), text


# --- 2. the binary ---------------------------------------------------------------------------------

def parse_resource_usage(text: str) -> dict[str, set[str]]:
    """`cuobjdump --dump-resource-usage` -> {function: {sass arch}}."""
    funcs: dict[str, set[str]] = {}
    arch = None
    for line in text.splitlines():
        m = re.match(r"\s*arch = sm_(\w+)", line)
        if m:
            arch = m.group(1)
            continue
        m = re.match(r"\s*Function (\S+?):?\s*$", line)
        if m and arch:
            funcs.setdefault(m.group(1), set()).add(arch)
    return funcs


def parse_ptx(text: str) -> tuple[str | None, set[str]]:
    """A PTX file -> (its target arch, its kernel entry names)."""
    m = re.search(r"^\s*\.target\s+sm_(\w+)", text, re.M)
    return (m.group(1) if m else None), set(re.findall(r"\.entry\s+([\w$.]+)\s*\(", text))


def inspect_binary(so: Path, cuobjdump: str) -> dict:
    """SASS/PTX archs and sizes inside `so`, and the archs of each kernel function."""
    result = {"sass_bytes": {}, "ptx_bytes": {}, "functions_sass": {}, "functions_ptx": {}}
    listing = subprocess.run([cuobjdump, "--list-elf", "--list-ptx", str(so)], capture_output=True, text=True)
    if listing.returncode != 0 and "does not contain device code" not in listing.stdout + listing.stderr:
        raise RuntimeError(f"cuobjdump failed on {so.name}: {listing.stderr.strip() or listing.stdout.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        if re.search(r"(ELF|PTX) file", listing.stdout):
            subprocess.run([cuobjdump, "--extract-elf", "all", str(so)], cwd=tmp, capture_output=True, check=True)
            subprocess.run([cuobjdump, "--extract-ptx", "all", str(so)], cwd=tmp, capture_output=True, check=True)
        for f in sorted(Path(tmp).iterdir()):
            m = re.search(r"\.sm_(\w+)\.(cubin|ptx)$", f.name)
            if not m:
                continue
            arch, kind = m.groups()
            key = "sass_bytes" if kind == "cubin" else "ptx_bytes"
            result[key][arch] = result[key].get(arch, 0) + f.stat().st_size
            if kind == "ptx":
                target, entries = parse_ptx(f.read_text(errors="replace"))
                for e in entries:
                    result["functions_ptx"].setdefault(e, set()).add(target or arch)
    if result["sass_bytes"]:
        usage = subprocess.run([cuobjdump, "--dump-resource-usage", str(so)], capture_output=True, text=True,
                               check=True)
        result["functions_sass"] = parse_resource_usage(usage.stdout)
    return result


def needed_libraries(so: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out.stdout)


# --- 3. build_info() against the binary and the promises ----------------------------------------

def verify(build_info: dict, binary: dict, sass_promise: list[str], ptx_promise: list[str],
           cuda_major: str | None = None, toolchain: str | None = None) -> list[str]:
    """Everything on which build_info(), the binary and the promises disagree (empty: all agree)."""
    problems = []
    bin_sass, bin_ptx = set(binary["sass_bytes"]), set(binary["ptx_bytes"])
    bi_sass, bi_ptx = set(build_info.get("sass_archs", [])), set(build_info.get("ptx_archs", []))
    fmt = lambda s, p: " ".join(f"{p}_{a}" for a in sort_archs(s)) or "none"  # noqa: E731

    # the binary against the promises
    if missing := set(sass_promise) - bin_sass:
        problems.append(f"promised SASS missing from the binary: {fmt(missing, 'sm')} (it has {fmt(bin_sass, 'sm')})")
    if missing := set(ptx_promise) - bin_ptx:
        problems.append(f"promised PTX missing from the binary: {fmt(missing, 'compute')} "
                        f"(it has {fmt(bin_ptx, 'compute')})")
    for a in bin_sass:
        if a[-1].isalpha() and a[:-1] not in bin_sass:
            problems.append(f"sm_{a} SASS without plain sm_{a[:-1]} SASS next to it")

    # build_info() against the binary, as sets
    if bi_sass != bin_sass:
        problems.append(f"build_info() sass_archs ({fmt(bi_sass, 'sm')}) disagree with the binary "
                        f"({fmt(bin_sass, 'sm')}): listed but absent {fmt(bi_sass - bin_sass, 'sm')}, "
                        f"present but not listed {fmt(bin_sass - bi_sass, 'sm')}")
    if bi_ptx != bin_ptx:
        problems.append(f"build_info() ptx_archs ({fmt(bi_ptx, 'compute')}) disagree with the binary "
                        f"({fmt(bin_ptx, 'compute')})")

    # ... and per kernel function: its archs must be those of one kernel table entry
    entries = {}
    for op, tiers in build_info.get("kernels", {}).items():
        for tier, k in tiers.items():
            entries[f"{op}/{tier}"] = (frozenset(k.get("sass", [])), frozenset(k.get("ptx", [])))
    seen = set()
    functions = set(binary["functions_sass"]) | set(binary["functions_ptx"])
    for fn in sorted(functions):
        got = (frozenset(binary["functions_sass"].get(fn, ())), frozenset(binary["functions_ptx"].get(fn, ())))
        # A kernel is in both; a non-inlined device function shows in SASS only (PTX lists .entry
        # kernels): compare the side it is in.
        match = [name for name, e in entries.items()
                 if (not got[0] or e[0] == got[0]) and (not got[1] or e[1] == got[1])]
        if match:
            seen.update(match)
        else:
            known = "; ".join(f"{n}: {fmt(e[0], 'sm')} + {fmt(e[1], 'compute')}" for n, e in entries.items())
            problems.append(f"kernel {fn} has SASS {fmt(got[0], 'sm')} and PTX {fmt(got[1], 'compute')}, which is "
                            f"no build_info() kernel entry ({known or 'none'})")
    for name in sorted(set(entries) - seen):
        if functions or entries[name][0] or entries[name][1]:
            problems.append(f"build_info() entry {name} ({fmt(entries[name][0], 'sm')}) matches no kernel in the binary")

    # every op runs natively on every promised arch, and has the promised PTX
    if not entries:
        problems.append("build_info() lists no compiled kernel")
    for op, tiers in build_info.get("kernels", {}).items():
        op_sass = set().union(*(set(k.get("sass", [])) for k in tiers.values()))
        op_ptx = set().union(*(set(k.get("ptx", [])) for k in tiers.values()))
        if missing := set(sass_promise) - op_sass:
            problems.append(f"op {op} has no tier with SASS for {fmt(missing, 'sm')}")
        if missing := set(ptx_promise) - op_ptx:
            problems.append(f"op {op} has no tier with PTX for {fmt(missing, 'compute')}")

    if cuda_major and not str(build_info.get("cuda_version", "")).startswith(cuda_major + "."):
        problems.append(f"build_info() cuda_version {build_info.get('cuda_version')!r}: expected CUDA {cuda_major}.x")
    if toolchain and build_info.get("toolchain") != toolchain:
        problems.append(f"build_info() toolchain {build_info.get('toolchain')!r}: expected {toolchain!r}")
    return problems


# --- 4. a fresh venv and the test suite ------------------------------------------------------------

def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def deps_site(python: str, deps: Path, runner: list[str] | None = None) -> str:
    """site-packages of a per-Python venv under `deps` holding the test dependencies (made once).
    With a runner (qemu: an aarch64 `python`), a folder of aarch64 wheels installed by this
    machine's pip instead (pip under emulation would take many minutes to unpack torch)."""
    if runner:
        return aarch64_deps_site(python, deps, runner)
    torch_spec = os.environ.get("TORCH_SPEC", "torch==2.13.0")
    tag = _run([python, "-c", "import sys; print('cp%d%d' % sys.version_info[:2])"], check=True).stdout.strip()
    root = deps / tag
    py = root / "bin" / "python"
    want = "\n".join([torch_spec, *TEST_DEPS])
    stamp = root / ".fastradio-requirements"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{tag}.lock", "w") as lock:  # one maker at a time; the others wait and reuse
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (py.exists() and stamp.exists() and stamp.read_text() == want):
            log(f"making the test-dependency venv {root} ({torch_spec}, Triton, pytest, ...): once per Python")
            if not py.exists():
                _run([python, "-m", "venv", root], check=True)
            out = _run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", torch_spec, *TEST_DEPS])
            if out.returncode != 0:
                raise RuntimeError(f"installing the test dependencies failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
            stamp.write_text(want)
    return _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True).stdout.strip()


def aarch64_deps_site(python: str, deps: Path, runner: list[str]) -> str:
    version = _run([*runner, python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                   check=True).stdout.strip()
    root = deps / f"cp{version.replace('.', '')}-aarch64"
    site, stamp = root / "site", root / ".fastradio-requirements"
    torch_deps = AARCH64_TORCH_DEPS + (["setuptools"] if tuple(map(int, version.split("."))) >= (3, 12) else [])
    want = "\n".join([AARCH64_TORCH_SPEC, *torch_deps, *AARCH64_TEST_DEPS])
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.exists() and stamp.read_text() == want):
            log(f"installing aarch64 test dependencies into {site} ({AARCH64_TORCH_SPEC}, pytest, ...): once")
            shutil.rmtree(site, ignore_errors=True)
            pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--target", site, *cross_aarch64.aarch64_pip_args(version)]
            for args in (["--no-deps", AARCH64_TORCH_SPEC], [*torch_deps, *AARCH64_TEST_DEPS]):
                out = _run([*pip, *args])
                if out.returncode != 0:
                    raise RuntimeError(f"installing the aarch64 test dependencies failed:\n{out.stdout[-2000:]}"
                                       f"{out.stderr[-2000:]}")
            stamp.write_text(want)
    return str(site)


QUERY = """
import json, sys
import fastradio, fastradio._C as C
from fastradio import _dist
print(json.dumps({"file": fastradio.__file__, "version": fastradio.__version__, "build_info": C.build_info(),
                  "distributions": _dist.installed()}))
"""


def fresh_venv(wheel: Path, python: str, deps: Path, venv_dir: Path,
               runner: list[str] | None = None) -> tuple[Path, dict]:
    """A new venv with the wheel installed; returns its python and what the installed package says.
    `runner` (e.g. [qemu-aarch64-static]) runs a foreign interpreter: its venv has no pip of its own,
    and the wheel is installed by pip (from pip's own wheel file) running under that interpreter."""
    runner = runner or []
    if venv_dir.exists():
        shutil.rmtree(venv_dir)
    _run([*runner, python, "-m", "venv", *(["--without-pip"] if runner else []), venv_dir], check=True)
    py = venv_dir / "bin" / "python"
    site = _run([*runner, py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True).stdout.strip()
    Path(site, "_fastradio_check_deps.pth").write_text(deps_site(python, deps, runner) + "\n")
    if runner:  # the dependencies are in place: nothing to fetch
        pip = [*runner, py, cross_aarch64.pip_wheel(deps) / "pip", "install", "--no-index"]
    else:
        pip = [py, "-m", "pip", "install"]
    out = _run([*pip, "--quiet", "--disable-pip-version-check", wheel])
    if out.returncode != 0:
        raise RuntimeError(f"pip install {wheel.name} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    cwd = venv_dir.parent  # not the repository: only the installed package is importable
    out = _run([*runner, py, "-c", QUERY], cwd=cwd, env=clean_env(py))
    if out.returncode != 0:
        raise RuntimeError(f"importing the installed wheel failed:\n{out.stderr[-3000:]}")
    return py, json.loads(out.stdout.strip().splitlines()[-1])


def clean_env(py: Path) -> dict:
    # Nothing that would import another fastradio (PYTHONPATH) or make the suite test this wheel's
    # failure modes recursively (FASTRADIO_TEST_WHEEL_WORK); toolchain settings stay for the gate tests.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "FASTRADIO_TEST_WHEEL_WORK")}
    env["PATH"] = f"{py.parent}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(py.parent.parent)
    return env


def run_tests(py: Path, cwd: Path, tests: list[Path], extra: list[str], timeout: float,
              runner: list[str] | None = None) -> tuple[int, str, float]:
    """TRITON_INTERPRET=1 pytest <tests> against the installed wheel: (exit code, summary line, seconds)."""
    env = {**clean_env(py), "TRITON_INTERPRET": "1"}
    t = time.time()
    try:
        out = subprocess.run([*(runner or []), str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              *map(str, tests), *extra],
                             cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f}s", time.time() - t
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    summary = next((ln for ln in reversed(lines) if re.search(r"\b(passed|failed|error|no tests ran)\b", ln)), "")
    (cwd / "pytest.log").write_text(out.stdout + out.stderr)
    return out.returncode, summary.strip("= "), time.time() - t


# --- the command --------------------------------------------------------------------------------------

def size_report(wheel: Path, so_bytes: int, binary: dict) -> dict:
    return {"wheel": wheel.stat().st_size, "_C": so_bytes,
            "sass": {a: binary["sass_bytes"][a] for a in sort_archs(binary["sass_bytes"])},
            "ptx": {a: binary["ptx_bytes"][a] for a in sort_archs(binary["ptx_bytes"])}}


def format_sizes(sizes: dict) -> str:
    mib = lambda b: f"{b / 2**20:.2f} MiB"  # noqa: E731
    lines = [f"wheel {mib(sizes['wheel'])}, _C {mib(sizes['_C'])}"]
    lines.append("  SASS: " + ", ".join(f"sm_{a} {b / 1024:.0f} KiB" for a, b in sizes["sass"].items()))
    lines.append("  PTX:  " + ", ".join(f"compute_{a} {b / 1024:.0f} KiB" for a, b in sizes["ptx"].items()))
    return "\n".join(lines)


def find_python_for(py_tag: str) -> str | None:
    import build_wheels
    m = re.fullmatch(r"cp(\d)(\d+)", py_tag)
    return build_wheels.find_python(f"{m.group(1)}.{m.group(2)}") if m else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wheel")
    ap.add_argument("--sass", default="", help="promised SASS archs (default: the variant's)")
    ap.add_argument("--ptx", default="", help="promised PTX archs (default: the variant's)")
    ap.add_argument("--python", default="", help="interpreter for the fresh venv (default: found by version)")
    ap.add_argument("--cuobjdump", default=os.environ.get("CUOBJDUMP", "") or shutil.which("cuobjdump") or "")
    ap.add_argument("--auditwheel", default=f"{shlex.quote(sys.executable)} -m auditwheel",
                    help="command running auditwheel")
    ap.add_argument("--work", default=str(REPO / "build" / "wheels" / "check"), help="fresh venvs go here")
    ap.add_argument("--deps", default="", help="where the per-Python test-dependency venvs are kept "
                    "(default: <work>/deps)")
    ap.add_argument("--tests", default="", help="the tests to run against the wheel (comma-separated files or "
                    "folders; default: tests/, or for an aarch64 wheel the files AARCH64_TESTS names)")
    ap.add_argument("--no-tests", action="store_true", help="skip `fastradio info` and the test suite (binary and "
                    "build_info only)")
    ap.add_argument("--pytest-args", default="", help="extra pytest arguments")
    ap.add_argument("--test-timeout", type=float, default=3600)
    ap.add_argument("--report", default="", help="JSON report (default: <wheel>.check.json)")
    args = ap.parse_args(argv)

    wheel = Path(args.wheel).resolve()
    if args.cuobjdump and os.sep in args.cuobjdump:
        args.cuobjdump = str(Path(args.cuobjdump).resolve())  # inspect_binary runs it from a temporary folder
    work = Path(args.work).resolve()
    report_path = Path(args.report) if args.report else Path(str(wheel) + ".check.json")
    problems: list[str] = []
    report: dict = {"wheel": wheel.name}
    t0 = time.time()

    def finish() -> int:
        report["problems"] = problems
        report["seconds"] = round(time.time() - t0, 1)
        report_path.write_text(json.dumps(report, indent=2, default=sorted) + "\n")
        for p in problems:
            log(f"FAIL: {p}")
        log(f"{'FAIL' if problems else 'PASS'} {wheel.name} ({len(problems)} problem(s), {report['seconds']:.0f}s); "
            f"report: {report_path}")
        return 1 if problems else 0

    # 1. name and tags
    tags = parse_wheel_name(wheel.name)
    try:
        machine = platform_of_tag(tags["plat"])
    except ValueError as e:
        problems.append(str(e))
        return finish()
    variant = variant_of(tags["dist"], machine)
    report["tags"] = tags
    report["machine"] = machine
    if variant is None:
        problems.append(f"unknown distribution {tags['dist']!r} for {machine} (expected fastradio_cu12 or "
                        "fastradio_cu13 on x86_64, fastradio_cu13 on aarch64)")
    sass = sort_archs(args.sass.replace(";", ",").split(",")) if args.sass else list(variant.sass if variant else [])
    ptx = sort_archs(args.ptx.replace(";", ",").split(",")) if args.ptx else list(variant.ptx if variant else [])
    report["promise"] = {"sass": sass, "ptx": ptx}
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = next((z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA")), "")
        if bad := wrong_machine(z, machine):
            problems.append(f"shared objects not built for {machine} (the wheel's tag {tags['plat']}): "
                            + "; ".join(bad))
        sos = [n for n in names if re.fullmatch(r"fastradio/_C\..*so", n)]
        if len(sos) != 1:
            problems.append(f"expected one fastradio/_C*.so in the wheel, found {sos}")
            return finish()
        tmp = Path(tempfile.mkdtemp(prefix="check_wheel_"))
        so = tmp / Path(sos[0]).name
        so.write_bytes(z.read(sos[0]))
    meta_name = re.search(r"^Name: (.+)$", metadata, re.M)
    if variant and (not meta_name or variant_of(meta_name.group(1).strip(), machine) != variant):
        problems.append(f"METADATA Name {meta_name.group(1) if meta_name else None!r} does not match the file name")
    want_suffix = extension_suffix_for(tags["py"], machine)
    if not so.name.endswith(want_suffix) or tags["abi"] != tags["py"]:
        problems.append(f"{so.name} / abi tag {tags['abi']} do not match the python tag {tags['py']} "
                        f"(expected _C{want_suffix})")
    computed, text = auditwheel_tag(wheel, shlex.split(args.auditwheel))
    report["auditwheel"] = computed
    if computed is None:
        problems.append(f"`auditwheel show` gave no platform tag:\n{text[-1500:]}")
    elif tags["plat"] != computed:
        problems.append(f"platform tag {tags['plat']} is not the one auditwheel computes for the binary ({computed})")

    # 2. the binary
    if not args.cuobjdump:
        problems.append("no cuobjdump (pip install nvidia-cuda-cuobjdump, then --cuobjdump PATH)")
        return finish()
    binary = inspect_binary(so, args.cuobjdump)
    needed = needed_libraries(so)
    report["needed"] = needed
    if any("cudart" in n for n in needed):
        problems.append(f"_C needs a shared CUDA runtime ({needed}); it must link it statically")
    report["sizes"] = size_report(wheel, so.stat().st_size, binary)
    report["binary"] = {"sass": sort_archs(binary["sass_bytes"]), "ptx": sort_archs(binary["ptx_bytes"]),
                        "kernel_functions": len(set(binary["functions_sass"]) | set(binary["functions_ptx"]))}
    log(f"{wheel.name}: SASS {' '.join(report['binary']['sass'])}; PTX {' '.join(report['binary']['ptx'])}; "
        f"{report['binary']['kernel_functions']} kernel functions")
    log(format_sizes(report["sizes"]))

    # 3. installed into a fresh venv: build_info() against the binary and the promises
    runner: list[str] = []
    try:
        if machine == "aarch64":
            m = re.fullmatch(r"cp(\d)(\d+)", tags["py"])
            python = args.python or str(cross_aarch64.python(f"{m.group(1)}.{m.group(2)}"))
            runner = cross_aarch64.runner(python)  # qemu, with -L <sysroot> for a Debian trixie python3.13
        else:
            python = args.python or find_python_for(tags["py"])
    except cross_aarch64.CrossError as e:
        problems.append(f"no aarch64 CPython for {tags['py']} under qemu: {e}")
        return finish()
    if not python:
        problems.append(f"no CPython for {tags['py']} to install the wheel into (--python)")
        return finish()
    venv_dir = work / wheel.name.removesuffix(".whl") / "venv"
    try:
        py, info = fresh_venv(wheel, python, Path(args.deps).resolve() if args.deps else work / "deps", venv_dir,
                              runner)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        problems.append(f"installing into a fresh venv: {e}")
        return finish()
    report["installed"] = {k: info[k] for k in ("file", "version", "distributions")}
    report["build_info"] = info["build_info"]
    if not Path(info["file"]).resolve().is_relative_to(venv_dir.resolve()):
        problems.append(f"`import fastradio` found {info['file']}, not the wheel installed in {venv_dir}")
    if variant and list(info["distributions"]) != [variant.dist]:
        problems.append(f"installed distributions {info['distributions']}: expected only {variant.dist}")
    problems += verify(info["build_info"], binary, sass, ptx,
                       variant.cuda_major if variant else None, variant.toolchain if variant else None)

    # 4. `fastradio info` (the console script, run by the venv's interpreter: no binfmt needed under
    # qemu), then the CPU test suite against the installed wheel
    if not args.no_tests:
        out = _run([*runner, py, venv_dir / "bin" / "fastradio", "info"], cwd=venv_dir.parent, env=clean_env(py))
        report["fastradio_info"] = {"exit": out.returncode, "text": out.stdout[-3000:]}
        if out.returncode != 0:
            problems.append(f"`fastradio info` failed in the installed venv (exit {out.returncode}): "
                            f"{out.stderr[-1500:]}")
        elif f"-{machine}-" not in out.stdout:
            problems.append(f"`fastradio info` does not name the machine {machine}:\n{out.stdout[-1500:]}")
    if args.tests:
        tests = [Path(t).resolve() for t in args.tests.split(",") if t]
    elif machine == "aarch64":
        tests = [REPO / "tests" / t for t in AARCH64_TESTS]
        if not args.pytest_args:
            args.pytest_args = f"-k {shlex.quote(AARCH64_SELECT)}"
    else:
        tests = [REPO / "tests"]
    if args.no_tests:
        report["tests"] = "skipped (--no-tests)"
    else:
        log(f"running CPU tests against the installed wheel ({' '.join(t.name for t in tests)})"
            + (f" under {' '.join(runner)}" if runner else ""))
        rc, summary, secs = run_tests(py, venv_dir.parent, tests, shlex.split(args.pytest_args), args.test_timeout,
                                      runner)
        report["tests"] = {"exit": rc, "summary": summary, "seconds": round(secs, 1),
                           "log": str(venv_dir.parent / "pytest.log")}
        log(f"tests: exit {rc}: {summary} ({secs:.0f}s)")
        if rc == 5:
            problems.append("pytest collected no tests")
        elif rc != 0:
            problems.append(f"the test suite failed against the installed wheel (exit {rc}: {summary}); "
                            f"log: {venv_dir.parent / 'pytest.log'}")
    report["summary"] = {"bytes": wheel.stat().st_size, "sass": report["binary"]["sass"],
                         "ptx": report["binary"]["ptx"],
                         "tests": report["tests"] if isinstance(report["tests"], str) else report["tests"]["summary"]}
    shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
