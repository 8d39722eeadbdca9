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
  Python headers  Debian multiarch libpython3.X-dev:arm64 (/usr/include/aarch64-linux-gnu/python3.X/
                  pyconfig.h + the arch-independent headers), or $FASTRADIO_AARCH64_PYTHON_INCLUDE_3_X;
  interpreter     for the check: Debian's python3.X-minimal:arm64 binary (apt-get download, unpacked
                  under the toolchains folder; its stdlib is the multiarch libpython3.X-stdlib:arm64),
                  or $FASTRADIO_AARCH64_PYTHON_3_X; run by qemu-aarch64-static (no binfmt needed).

Set-up on Debian 12 (once, as root):
    dpkg --add-architecture arm64 && apt-get update
    apt-get install g++-aarch64-linux-gnu qemu-user-static libpython3.11-dev:arm64
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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

def python_include(version: str, dest: Path) -> Path:
    """An include folder (dest/python3.X) for CPython `version` on aarch64: the arch-independent headers
    plus the aarch64 pyconfig.h (Debian's multiarch pyconfig.h picks by the compiler's own macros
    through <aarch64-linux-gnu/...>, a path a cross compiler does not search)."""
    override = os.environ.get("FASTRADIO_AARCH64_PYTHON_INCLUDE_" + version.replace(".", "_"))
    if override:
        if not Path(override, "Python.h").exists():
            raise CrossError(f"$FASTRADIO_AARCH64_PYTHON_INCLUDE_{version.replace('.', '_')}={override}: no Python.h")
        return Path(override)
    common = Path(f"/usr/include/python{version}")
    pyconfig = Path(f"/usr/include/aarch64-linux-gnu/python{version}/pyconfig.h")
    if not (common / "Python.h").exists() or not pyconfig.exists():
        raise CrossError(f"no aarch64 headers of CPython {version} (expected {pyconfig} and {common}/Python.h): "
                         f"apt-get install libpython{version}-dev:arm64 where the Debian release has it "
                         f"(bookworm: 3.11), or point $FASTRADIO_AARCH64_PYTHON_INCLUDE_{version.replace('.', '_')} "
                         "at an aarch64 CPython's include/python3.X")
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
    """An aarch64 CPython `version` (run it with qemu()): $FASTRADIO_AARCH64_PYTHON_3_X, else Debian's
    python3.X-minimal:arm64 unpacked once under the toolchains folder."""
    override = os.environ.get("FASTRADIO_AARCH64_PYTHON_" + version.replace(".", "_"))
    if override:
        return Path(override)
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
                         f"or set $FASTRADIO_AARCH64_PYTHON_{version.replace('.', '_')}")
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
