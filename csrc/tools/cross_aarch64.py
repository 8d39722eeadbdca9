"""The aarch64 pieces behind `build_wheels.py --platform aarch64` and check_wheel.py on an aarch64
wheel (DESIGN.md decision 29): fastradio for Jetson and Grace, cross-built on an x86_64 Debian
machine and checked there under qemu-user.

Where each piece comes from (nothing is built from source):
  device code     the x86_64 CUDA 13.0 nvcc (csrc/tools/setup_toolchains.sh), unchanged;
  host code       Debian's aarch64-linux-gnu-g++ (nvcc -ccbin; CMake toolchain file
                  csrc/cmake/aarch64-linux-gnu.cmake);
  CUDA runtime    libcudart_static.a of PyPI's aarch64 `nvidia-cuda-runtime` wheel (CUDART_WHEEL),
                  placed as targets/aarch64-linux/lib of a toolkit overlay (`cuda_toolkit`): a folder
                  of hard links to the x86_64 toolkit's files, because nvcc finds its target folders
                  relative to its own binary; the headers are the toolkit's (they are the same on
                  every host machine);
  Python headers  CPython 3.11: Debian 12's multiarch libpython3.11-dev:arm64 (/usr/include/aarch64-
                  linux-gnu/python3.11/pyconfig.h + the arch-independent headers); CPython 3.13: Debian
                  13's libpython3.13-dev:arm64, unpacked into a private sysroot (debian_sysroot);
                  any version: $FASTRADIO_AARCH64_PYTHON_INCLUDE_3_X;
  interpreter     for the check: 3.11: Debian's python3.11-minimal:arm64 binary (apt-get download,
                  unpacked under the toolchains folder; its stdlib is the multiarch
                  libpython3.11-stdlib:arm64); 3.13: the sysroot's python3.13 with its own stdlib and
                  Debian 13's libraries (glibc 2.41), run with `qemu -L <sysroot>` (runner());
                  any version: $FASTRADIO_AARCH64_PYTHON_3_X; run by qemu-aarch64-static (no binfmt
                  needed).

Which CPython versions (DESIGN.md decision 29): what PyPI and Debian supply for aarch64, i.e. 3.11
(bookworm) and 3.13 (trixie). 3.10 and 3.12 exist for aarch64 in neither (python-build-standalone
is on GitHub, which CI cannot reach): they build only with both variables above set, and
available() says so per version.

Set-up on Debian 12 (once, as root):
    dpkg --add-architecture arm64 && apt-get update
    apt-get install g++-aarch64-linux-gnu qemu-user-static libpython3.11-dev:arm64
The trixie sysroot needs nothing installed: apt-get with a private configuration (sources,
package lists, cache, an empty dpkg status) under the toolchains folder fetches it from
deb.debian.org when a 3.13 build or check first asks (or `python3 csrc/tools/cross_aarch64.py
python 3.13`); the machine's own apt configuration is neither read for sources nor changed.
"""

from __future__ import annotations

import fcntl
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
MACHINE = "aarch64"
#: The aarch64 CUDA runtime (static library + headers) the wheels link, from PyPI.
CUDART_WHEEL = "nvidia-cuda-runtime==13.0.96"
TOOLCHAIN_FILE = REPO / "csrc" / "cmake" / "aarch64-linux-gnu.cmake"
CROSS_GXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64-static"
#: ELF e_machine values of the machines we build for.
ELF_MACHINES = {62: "x86_64", 183: "aarch64"}
#: Where each aarch64 CPython comes from without the user's help: Debian releases, by codename.
#: 3.11 is installed system-wide as Debian 12 multiarch packages (setup_toolchains.sh); 3.13 comes
#: from Debian 13 into a private sysroot (debian_sysroot). The codename is pinned, not "stable":
#: "stable" turns into Debian 14 (forky, CPython 3.14) at its release and the python3.13 packages
#: would vanish from it, while trixie keeps its name and its place on deb.debian.org for its
#: whole life (point releases update the packages in place; apt resolves the current versions).
DEBIAN_PYTHONS = {"3.11": "bookworm", "3.13": "trixie"}
#: The versions whose Debian release is not the build machine's: fetched into a private sysroot.
SYSROOT_PYTHONS = {"3.13": "trixie"}
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"  # bookworm's has trixie's keys
#: The sysroot: the interpreter, its stdlib and the runtime libraries it and the wheel's _C need
#: (apt resolves their dependencies, glibc included), and the headers (fetched without their
#: dependencies: expat/zlib headers and a libc6-dev are not needed to compile a pybind11 module).
SYSROOT_RUNTIME = ("python{v}-minimal", "libpython{v}-minimal", "libpython{v}-stdlib", "libstdc++6")
SYSROOT_HEADERS = ("libpython{v}-dev",)
SYSROOT_STAMP = ".fastradio-sysroot"
SETUP_HELP = ("on Debian 12: dpkg --add-architecture arm64 && apt-get update && apt-get install "
              "g++-aarch64-linux-gnu qemu-user-static libpython3.11-dev:arm64")


class CrossError(RuntimeError):
    pass


def toolchains_dir() -> Path:
    """Where the overlay toolkit and the aarch64 interpreter are kept: setup_toolchains.sh's folder."""
    return Path(os.environ.get("FASTRADIO_TOOLCHAINS_DIR") or REPO / ".toolchains")


def elf_machine(path: Path) -> str:
    """The machine an ELF file is built for ("x86_64", "aarch64", or "EM_<n>"); raises for non-ELF."""
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        raise CrossError(f"{path.name} is not an ELF file")
    order = "little" if head[5] == 1 else "big"
    code = int.from_bytes(head[18:20], order)
    return ELF_MACHINES.get(code, f"EM_{code}")


def _need(program: str) -> str:
    found = shutil.which(program)
    if not found:
        raise CrossError(f"{program} not found: {SETUP_HELP}")
    return found


# --- the CUDA toolkit overlay ---------------------------------------------------------------------

def _link_tree(src: Path, dst: Path) -> None:
    """dst: a copy of src made of hard links (a plain copy where linking is not possible)."""
    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
    shutil.copytree(src, dst, copy_function=link, symlinks=True)


def cuda_toolkit(nvcc: str, pip_python: str, root: Path | None = None) -> Path:
    """The overlay toolkit for aarch64 (made once); returns its nvcc. `pip_python` runs `pip download`."""
    real = Path(nvcc).resolve().parent.parent  # <toolkit>/bin/nvcc -> <toolkit>
    root = root or toolchains_dir() / f"{real.name}-aarch64"
    stamp = root / ".fastradio-overlay"
    want = f"{real}\n{CUDART_WHEEL}\nv2\n"
    if stamp.exists() and stamp.read_text() == want:
        return root / "bin" / "nvcc"
    _need(CROSS_GXX)
    if root.exists():
        shutil.rmtree(root)
    tmp = root.with_name(root.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _link_tree(real / "bin", tmp / "bin")  # nvcc's TOP is the folder above its own binary
    for entry in sorted(real.iterdir()):
        if entry.name not in ("bin", "targets") and not (tmp / entry.name).exists():
            os.symlink(entry.resolve() if not entry.is_symlink() else os.readlink(entry), tmp / entry.name)
    host_target = real / "targets" / "x86_64-linux"
    (tmp / "targets").mkdir()
    os.symlink(host_target.resolve(), tmp / "targets" / "x86_64-linux")
    target = tmp / "targets" / "aarch64-linux"  # the name CMake 3.25+ and `nvcc -target-dir` use
    (target / "lib").mkdir(parents=True)
    os.symlink((host_target / "include").resolve(), target / "include")
    dl = tmp / "download"
    out = subprocess.run([pip_python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                          "--platform", "manylinux2014_aarch64", "--python-version", "3.11", "-d", str(dl),
                          CUDART_WHEEL], capture_output=True, text=True)
    wheels = list(dl.glob("nvidia_cuda_runtime-*.whl"))
    if out.returncode != 0 or len(wheels) != 1:
        raise CrossError(f"pip download {CUDART_WHEEL} (aarch64) failed:\n{out.stdout[-1500:]}{out.stderr[-1500:]}")
    with zipfile.ZipFile(wheels[0]) as z:
        for name in z.namelist():
            if re.fullmatch(r"nvidia/cu\d+/lib/lib\w+\.(a|so\.\d+)", name):
                (target / "lib" / Path(name).name).write_bytes(z.read(name))
    # FindCUDAToolkit insists on finding the shared runtime too, though _C links the static one
    # (check_wheel.py fails a wheel needing libcudart.so).
    for so in target.glob("lib/lib*.so.*"):
        os.symlink(so.name, target / "lib" / (so.name.split(".so.")[0] + ".so"))
    shutil.rmtree(dl)
    lib = target / "lib" / "libcudart_static.a"
    if not lib.exists():
        raise CrossError(f"{wheels[0].name} has no libcudart_static.a")
    tmp.rename(root)
    stamp.write_text(want)
    return root / "bin" / "nvcc"


# --- Python: headers for building, an interpreter for checking -----------------------------------------

def _key(version: str) -> str:
    return version.replace(".", "_")


def unsupported_help(version: str) -> str:
    """Why CPython `version` has no aarch64 headers/interpreter here, and what to set."""
    have = " and ".join(f"{v} in {s}" for v, s in DEBIAN_PYTHONS.items())
    return (f"CPython {version} for aarch64: neither PyPI nor Debian supplies it (Debian has {have}), so it is "
            f"built only from headers and an interpreter you provide: set $FASTRADIO_AARCH64_PYTHON_INCLUDE_"
            f"{_key(version)} to an aarch64 CPython {version}'s include/python{version} (for the build) and "
            f"$FASTRADIO_AARCH64_PYTHON_{_key(version)} to its aarch64 python{version} (for the check under qemu), "
            "e.g. from an unpacked python-build-standalone aarch64-unknown-linux-gnu tarball "
            "(DESIGN.md decision 29)")


def available(version: str, check: bool = True) -> str | None:
    """None when the aarch64 pieces of CPython `version` can be had (Debian supplies it, or the user's
    variables name them), else why not (unsupported_help). Nothing is fetched."""
    if version in DEBIAN_PYTHONS:
        return None
    wanted = ["FASTRADIO_AARCH64_PYTHON_INCLUDE_" + _key(version)] + \
             (["FASTRADIO_AARCH64_PYTHON_" + _key(version)] if check else [])
    return None if all(os.environ.get(k) for k in wanted) else unsupported_help(version)


def apt_options(state: Path) -> list[str]:
    """apt-get options that make it use only the private state under `state` (sources.list, package
    lists, cache, an empty dpkg status) and arm64 packages: the machine's apt set-up (its sources,
    preferences, installed packages) is neither read for what to fetch nor changed."""
    opts = ["-o", f"Dir::Etc::SourceList={state / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={state / 'sources.list.d'}",
            "-o", f"Dir::Etc::Preferences={state / 'preferences'}",
            "-o", f"Dir::Etc::PreferencesParts={state / 'preferences.d'}",
            "-o", f"Dir::State::Lists={state / 'lists'}",
            "-o", f"Dir::State::status={state / 'status'}",
            "-o", f"Dir::Cache={state / 'cache'}",
            "-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64",
            "-o", "Acquire::Languages=none", "-o", "APT::Install-Recommends=false"]
    # As root apt downloads as the user _apt, who may not write a private folder under $HOME.
    return opts + (["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else [])


def debian_mirror() -> str:
    return os.environ.get("FASTRADIO_DEBIAN_MIRROR") or DEBIAN_MIRROR


def apt_sources(suite: str) -> str:
    return f"deb [arch=arm64 signed-by={DEBIAN_KEYRING}] {debian_mirror()} {suite} main\n"


def _apt(state: Path, *args: str, cwd: Path | None = None) -> str:
    out = subprocess.run(["apt-get", "-q", *apt_options(state), *args], cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})
    if out.returncode != 0:
        raise CrossError(f"apt-get {' '.join(args)} (private set-up {state}, {debian_mirror()}) "
                         f"failed:\n{out.stdout[-1500:]}{out.stderr[-1500:]}")
    return out.stdout


def sysroot_dir(version: str) -> Path:
    return toolchains_dir() / f"python{version}-aarch64-{SYSROOT_PYTHONS.get(version, 'debian')}"


def debian_sysroot(version: str, root: Path | None = None) -> Path:
    """The aarch64 sysroot of CPython `version` from its Debian release (SYSROOT_PYTHONS), fetched once:
    apt-get (private configuration, apt_options) resolves and downloads SYSROOT_RUNTIME with their
    dependencies and SYSROOT_HEADERS without, `dpkg-deb -x` unpacks them; nothing is installed."""
    suite = SYSROOT_PYTHONS.get(version)
    if suite is None:
        raise CrossError(f"CPython {version}: no Debian release to fetch an aarch64 sysroot from "
                         f"({', '.join(f'{v}: {s}' for v, s in SYSROOT_PYTHONS.items())})")
    root = root or sysroot_dir(version)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:  # one fetch at a time; the others reuse it
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / SYSROOT_STAMP).exists():
            return root
        for tool in ("apt-get", "dpkg-deb"):
            if not shutil.which(tool):
                raise CrossError(f"{tool} not found: the aarch64 CPython {version} sysroot comes from Debian "
                                 f"{suite} (apt), or set $FASTRADIO_AARCH64_PYTHON_INCLUDE_{_key(version)} and "
                                 f"$FASTRADIO_AARCH64_PYTHON_{_key(version)}")
        t = time.time()
        state = root.with_name(root.name + ".apt")
        shutil.rmtree(state, ignore_errors=True)
        for d in ("sources.list.d", "preferences.d", "lists/partial", "cache/archives/partial", "headers"):
            (state / d).mkdir(parents=True)
        (state / "sources.list").write_text(apt_sources(suite))
        (state / "status").write_text("")
        _apt(state, "update")
        runtime = [n.format(v=version) for n in SYSROOT_RUNTIME]
        headers = [n.format(v=version) for n in SYSROOT_HEADERS]
        _apt(state, "install", "--download-only", "-y", *runtime)
        _apt(state, "download", *headers, cwd=state / "headers")
        debs = sorted((state / "cache" / "archives").glob("*.deb")) + sorted((state / "headers").glob("*.deb"))
        tmp = root.with_name(root.name + ".new")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        # Debian 13 is merged-/usr (base-files makes /lib -> usr/lib, not libc6): the ELF interpreter
        # /lib/ld-linux-aarch64.so.1 and the loader's /lib/aarch64-linux-gnu must resolve in the sysroot.
        for top in ("lib", "bin", "sbin"):
            if (tmp / top).is_dir() and not (tmp / top).is_symlink():  # a package not yet moved to /usr
                shutil.copytree(tmp / top, tmp / "usr" / top, symlinks=True, dirs_exist_ok=True)
                shutil.rmtree(tmp / top)
            if (tmp / "usr" / top).is_dir() and not (tmp / top).exists():
                os.symlink(f"usr/{top}", tmp / top)
        for junk in ("usr/share/doc", "usr/share/man", "usr/share/lintian"):
            shutil.rmtree(tmp / junk, ignore_errors=True)
        for a in [*(tmp / "usr" / "lib").glob("aarch64-linux-gnu/libpython*.a"),
                  *(tmp / "usr" / "lib").glob("python*/config-*/libpython*.a")]:
            a.unlink()  # the static interpreter (libpython3.X-dev, 23 MB): not linked by an extension module
        names = [d.name for d in debs]
        size = sum(d.stat().st_size for d in debs)
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
        exe = root / "usr" / "bin" / f"python{version}"
        probe = subprocess.run([qemu(), "-L", str(root), str(exe), "-c",
                                "import sys, ssl, ctypes, venv; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode != 0 or probe.stdout.strip() != version:
            shutil.rmtree(root)
            raise CrossError(f"the Debian {suite} python{version} does not start under {QEMU} -L {root}: "
                             f"{probe.stdout.strip()[-300:]} {probe.stderr.strip()[-800:]}")
        (root / SYSROOT_STAMP).write_text(json.dumps(
            {"suite": suite, "mirror": debian_mirror(), "debs": names, "download_bytes": size,
             "seconds": round(time.time() - t, 1)}, indent=1) + "\n")
        shutil.rmtree(state)
        return root


def sysroot_of(path: Path) -> Path | None:
    """The debian_sysroot() folder `path` lies in, or None."""
    for parent in Path(path).absolute().parents:
        if (parent / SYSROOT_STAMP).exists():
            return parent
    return None


def runner(python_exe: Path | str) -> list[str]:
    """How to run `python_exe` (an aarch64 interpreter) here: qemu, with `-L <sysroot>` when it lives
    in a debian_sysroot() (its glibc is newer than the machine's arm64 one, and qemu then finds the
    ELF interpreter and every library under the sysroot first)."""
    root = sysroot_of(Path(python_exe))
    return [qemu(), "-L", str(root)] if root else [qemu()]


def python_include(version: str, dest: Path) -> Path:
    """An include folder (dest/python3.X) for CPython `version` on aarch64: the arch-independent headers
    plus the aarch64 pyconfig.h (Debian's multiarch pyconfig.h picks by the compiler's own macros
    through <aarch64-linux-gnu/...>, a path a cross compiler does not search). From
    $FASTRADIO_AARCH64_PYTHON_INCLUDE_3_X, else Debian: the machine's multiarch headers (3.11) or the
    debian_sysroot() (3.13, fetched on first use); for other versions a CrossError saying what to set."""
    override = os.environ.get("FASTRADIO_AARCH64_PYTHON_INCLUDE_" + _key(version))
    if override:
        if not Path(override, "Python.h").exists():
            raise CrossError(f"$FASTRADIO_AARCH64_PYTHON_INCLUDE_{_key(version)}={override}: no Python.h")
        return Path(override)
    if version not in DEBIAN_PYTHONS:
        raise CrossError(unsupported_help(version))
    base = debian_sysroot(version) if version in SYSROOT_PYTHONS else Path("/")
    common = base / f"usr/include/python{version}"
    pyconfig = base / f"usr/include/aarch64-linux-gnu/python{version}/pyconfig.h"
    if not (common / "Python.h").exists() or not pyconfig.exists():
        raise CrossError(f"no aarch64 headers of CPython {version} (expected {pyconfig} and {common}/Python.h): "
                         f"apt-get install libpython{version}-dev:arm64 (Debian {DEBIAN_PYTHONS[version]}), "
                         f"or point $FASTRADIO_AARCH64_PYTHON_INCLUDE_{_key(version)} at an aarch64 CPython's "
                         "include/python3.X")
    out = dest / f"python{version}"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(common, out, symlinks=False)
    shutil.copy2(pyconfig, out / "pyconfig.h")
    return out


def ext_suffix(version: str) -> str:
    return f".cpython-{version.replace('.', '')}-{MACHINE}-linux-gnu.so"


def binding_settings(version: str, include: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(environment, CMake definitions) that make scikit-build-core and pybind11 build an aarch64
    extension of CPython `version` although the build interpreter is x86_64."""
    suffix = ext_suffix(version)
    env = {"SETUPTOOLS_EXT_SUFFIX": suffix,           # scikit-build-core: SKBUILD_SOABI
           "_PYTHON_HOST_PLATFORM": f"linux-{MACHINE}"}  # scikit-build-core: the wheel's platform tag
    defines = {"Python_INCLUDE_DIR": str(include), "Python3_INCLUDE_DIR": str(include),
               "PYTHON_MODULE_EXTENSION": suffix, "PYTHON_MODULE_DEBUG_POSTFIX": "", "PYTHON_IS_DEBUG": "0"}
    return env, defines


def qemu() -> str:
    return _need(QEMU)


def python(version: str, root: Path | None = None) -> Path:
    """An aarch64 CPython `version` (run it with runner(it)): $FASTRADIO_AARCH64_PYTHON_3_X, else
    Debian's: the debian_sysroot()'s python3.13 (fetched on first use), or bookworm's
    python3.11-minimal:arm64 unpacked once under the toolchains folder; other versions: a CrossError
    saying what to set."""
    override = os.environ.get("FASTRADIO_AARCH64_PYTHON_" + _key(version))
    if override:
        return Path(override)
    if version not in DEBIAN_PYTHONS:
        raise CrossError(unsupported_help(version))
    if version in SYSROOT_PYTHONS:
        return debian_sysroot(version, root) / "usr" / "bin" / f"python{version}"
    root = root or toolchains_dir() / f"python{version}-aarch64"
    exe = root / "usr" / "bin" / f"python{version}"
    if exe.exists():
        return exe
    pkg = f"python{version}-minimal:arm64"
    tmp = root.with_name(root.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    out = subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True)
    debs = list(tmp.glob("*.deb"))
    if out.returncode != 0 or len(debs) != 1:
        raise CrossError(f"apt-get download {pkg} failed ({out.stderr.strip()[-500:]}): {SETUP_HELP}, "
                         f"or set $FASTRADIO_AARCH64_PYTHON_{_key(version)}")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tmp)], check=True)
    debs[0].unlink()
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    # Its stdlib is the multiarch libpython3.X-stdlib:arm64 (same version as the x86_64 one): check.
    probe = subprocess.run([qemu(), str(exe), "-c", "import sys, ssl, ctypes; print(sys.version)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise CrossError(f"{exe} does not start under {QEMU}: {probe.stderr.strip()[-800:]} "
                         f"(apt-get install libpython{version}-stdlib:arm64)")
    return exe


def pip_wheel(dest: Path, pip_python: str = sys.executable) -> Path:
    """pip as a wheel file (pure Python): `python pip.whl/pip install ...` runs it under any interpreter."""
    found = sorted(dest.glob("pip-*.whl"))
    if found:
        return found[-1]
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([pip_python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d",
                    str(dest), "pip"], check=True, capture_output=True)
    return sorted(dest.glob("pip-*.whl"))[-1]


def aarch64_pip_args(version: str) -> list[str]:
    """`pip install` arguments selecting aarch64 wheels of CPython `version` from an x86_64 pip."""
    cp = "cp" + version.replace(".", "")
    plats = [f"manylinux_2_{m}_{MACHINE}" for m in (39, 38, 36, 35, 34, 31, 28, 27, 26, 17)] + \
            [f"manylinux2014_{MACHINE}"]
    return ["--only-binary=:all:", "--python-version", version, "--implementation", "cp", "--abi", cp,
            *[a for p in plats for a in ("--platform", p)]]


def main(argv: list[str] | None = None) -> int:
    """`python3 cross_aarch64.py python 3.13`: fetch (once) and start the aarch64 interpreter of a
    version under qemu, print its path and version (CI's cheap check of the trixie sysroot);
    `... include 3.13 DEST`: the include folder."""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("what", choices=["python", "include"])
    ap.add_argument("version")
    ap.add_argument("dest", nargs="?", default="")
    args = ap.parse_args(argv)
    try:
        if args.what == "include":
            print(python_include(args.version, Path(args.dest or ".").resolve()))
            return 0
        t = time.time()
        fetching = args.version in SYSROOT_PYTHONS and not (sysroot_dir(args.version) / SYSROOT_STAMP).exists()
        exe = python(args.version)
        run = runner(exe)
        code = "import sys, ssl, ctypes, venv; print('%d.%d' % sys.version_info[:2]); print(sys.version)"
        # a sysroot fetched just now was started by debian_sysroot() already (with this probe)
        out = subprocess.run([*run, str(exe), "-c", code], capture_output=True, text=True) if not fetching else None
        if out and (out.returncode != 0 or out.stdout.split()[:1] != [args.version]):
            raise CrossError(f"{exe} does not start under {' '.join(run)}: {out.stdout[-300:]}{out.stderr[-800:]}")
        root = sysroot_of(exe)
        stamp = json.loads((root / SYSROOT_STAMP).read_text()) if root else {}
        print(f"{' '.join(run)} {exe}: starts, Python {args.version}"
              + (f" ({out.stdout.splitlines()[1]})" if out else " (probed while fetching)"))
        if stamp:
            print(f"sysroot {root}: Debian {stamp['suite']}, {len(stamp['debs'])} packages, "
                  f"{stamp['download_bytes'] / 2**20:.1f} MiB downloaded in {stamp['seconds']:.0f}s")
        print(f"({time.time() - t:.0f}s)")
        return 0
    except CrossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
