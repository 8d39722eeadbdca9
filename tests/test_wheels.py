"""The per-CUDA wheels (csrc/tools/build_wheels.py, check_wheel.py, wheel_variants.py) and the
mixed-install refusal (fastradio/_dist.py).

Everything here but the last section runs anywhere, on recorded cuobjdump output and synthetic
build_info() dicts. The last section needs a wheel built by build_wheels.py: it runs when
FASTRADIO_TEST_WHEEL_WORK names that run's --work folder (.ci/run does), and shows on the real
binary that the check fails for a wheel lacking a promised arch and for a build_info() that
disagrees with the binary (a binding rebuilt against an edited kernel table).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "csrc" / "tools"


def _load(name: str):
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


variants = _load("wheel_variants")
check = _load("check_wheel")
build = _load("build_wheels")


# --- what each wheel promises ------------------------------------------------------------------------

def test_variants_promise_what_the_issue_lists():
    cu12, cu13 = variants.VARIANTS["12"], variants.VARIANTS["13"]
    assert (cu12.dist, cu12.toolchain) == ("fastradio-cu12", "clang")
    assert cu12.sass == ("60", "61", "62", "70", "72", "75", "80", "86", "87", "89", "90")
    assert cu12.ptx == ("90",)
    assert (cu13.dist, cu13.toolchain) == ("fastradio-cu13", "nvcc")
    assert cu13.sass == ("75", "80", "86", "87", "89", "90", "100", "110", "120")
    assert cu13.ptx == ("120",)
    # arch-specific archs are requested (for tiers that need them), never promised alone
    assert "90a" in cu13.request() and "100a" in cu13.request() and "90" in cu13.request()
    # clang 19 ignores __grid_constant__ (TMA maps would land in local memory): no wgmma_sm90a in cu12
    assert not any(a[-1].isalpha() for a in cu12.request())
    assert cu13.request(["80"]) == ["80"]
    assert cu13.promise(["86", "80"]) == (["80", "86"], ["86"])
    assert variants.variant_of("fastradio_cu13") is cu13 and variants.variant_of("fastradio") is None
    assert variants.PYTHONS == ("3.10", "3.11", "3.12", "3.13")


def test_arch_key_orders_numerically_plain_before_specific():
    assert sorted(["90a", "100", "90", "75"], key=variants.arch_key) == ["75", "90", "90a", "100"]
    with pytest.raises(ValueError, match="not an arch"):
        variants.arch_key("sm80")


# --- check_wheel: parsing --------------------------------------------------------------------------

RESOURCE_USAGE = """
Fatbin elf code:
================
arch = sm_80
code version = [1,8]

Resource usage:
 Common:
  GLOBAL:0
 Function _ZN9fastradio3fooEv:
  REG:32 STACK:0 SHARED:0 LOCAL:0
 Function _ZN9fastradio3barEv:
  REG:16 STACK:0 SHARED:0 LOCAL:0

Fatbin elf code:
================
arch = sm_90a
code version = [1,8]

Resource usage:
 Function _ZN9fastradio3fooEv:
  REG:32 STACK:0 SHARED:0 LOCAL:0
"""


def test_parse_resource_usage_maps_functions_to_archs():
    assert check.parse_resource_usage(RESOURCE_USAGE) == {
        "_ZN9fastradio3fooEv": {"80", "90a"}, "_ZN9fastradio3barEv": {"80"}}


def test_parse_ptx_reads_target_and_entries():
    text = (".version 8.8\n.target sm_120\n.address_size 64\n\n.visible .entry _Z3fooPf(\n\t.param .u64 p\n)\n"
            ".entry _ZN1a3barEv (\n)\n.func helper(\n)\n")
    assert check.parse_ptx(text) == ("120", {"_Z3fooPf", "_ZN1a3barEv"})


def test_wheel_names_and_extension_suffix():
    t = check.parse_wheel_name("fastradio_cu13-0.1.0-cp312-cp312-manylinux_2_34_x86_64.whl")
    assert t == {"dist": "fastradio_cu13", "version": "0.1.0", "py": "cp312", "abi": "cp312",
                 "plat": "manylinux_2_34_x86_64"}
    assert check.extension_suffix_for("cp310") == ".cpython-310-x86_64-linux-gnu.so"
    assert check.extension_suffix_for("cp313", "aarch64") == ".cpython-313-aarch64-linux-gnu.so"
    with pytest.raises(ValueError):
        check.parse_wheel_name("fastradio.tar.gz")


# --- aarch64 (cross-built; DESIGN.md decision 29) -------------------------------------------------------

cross = _load("cross_aarch64")


def test_aarch64_variant_promises_jetson_and_grace_archs():
    arm = variants.AARCH64_VARIANTS["13"]
    assert (arm.dist, arm.toolchain, arm.platform) == ("fastradio-cu13", "nvcc", "aarch64")
    # Orin 87, GH200 90, GB200 100, Thor 110, GB10 121 (nvcc 13.0 lists compute_121); PTX of the newest
    assert arm.sass == ("87", "90", "100", "110", "121") and arm.ptx == ("121",)
    assert variants.variant_of("fastradio_cu13", "aarch64") is arm
    assert variants.variant_of("fastradio_cu13") is variants.VARIANTS["13"]
    assert variants.variant_of("fastradio_cu12", "aarch64") is None  # no CUDA 12 aarch64 wheel
    assert variants.platform_of_tag("manylinux_2_34_aarch64") == "aarch64"
    assert variants.platform_of_tag("manylinux_2_28_x86_64") == "x86_64"
    with pytest.raises(ValueError, match="expected one ending in x86_64 or aarch64"):
        variants.platform_of_tag("macosx_11_0_arm64")


def _elf(machine: int, tail: bytes = b"\0" * 44) -> bytes:
    """A 64-bit little-endian ELF header with e_machine = machine (enough for elf_machine())."""
    return b"\x7fELF\x02\x01\x01" + b"\0" * 9 + (3).to_bytes(2, "little") + machine.to_bytes(2, "little") + tail


@pytest.mark.parametrize("code,name", [(62, "x86_64"), (183, "aarch64"), (40, "EM_40")])
def test_elf_machine_reads_e_machine(tmp_path, code, name):
    f = tmp_path / "x.so"
    f.write_bytes(_elf(code))
    assert cross.elf_machine(f) == name
    f.write_bytes(b"#!/bin/sh\n" + b"\0" * 30)
    with pytest.raises(cross.CrossError, match="not an ELF file"):
        cross.elf_machine(f)


def test_a_wheel_with_a_shared_object_for_another_machine_is_caught(tmp_path):
    wheel = tmp_path / "fastradio_cu13-0.1.0-cp311-cp311-manylinux_2_34_aarch64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fastradio/_C.cpython-311-aarch64-linux-gnu.so", _elf(183))
        z.writestr("fastradio/helper.so.1", _elf(62))   # an x86_64 library slipped in
        z.writestr("fastradio/__init__.py", "")
    with zipfile.ZipFile(wheel) as z:
        assert check.wrong_machine(z, "aarch64") == ["fastradio/helper.so.1: x86_64"]
        assert check.wrong_machine(z, "x86_64") == ["fastradio/_C.cpython-311-aarch64-linux-gnu.so: aarch64"]


def test_cross_binding_settings_name_the_aarch64_extension(tmp_path):
    env, defines = cross.binding_settings("3.12", tmp_path)
    assert env == {"SETUPTOOLS_EXT_SUFFIX": ".cpython-312-aarch64-linux-gnu.so", "_PYTHON_HOST_PLATFORM": "linux-aarch64"}
    assert defines["PYTHON_MODULE_EXTENSION"] == ".cpython-312-aarch64-linux-gnu.so"
    assert defines["Python_INCLUDE_DIR"] == str(tmp_path)
    assert "--platform" in cross.aarch64_pip_args("3.12") and "cp312" in cross.aarch64_pip_args("3.12")


def test_missing_aarch64_python_headers_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTRADIO_AARCH64_PYTHON_INCLUDE_3_99", raising=False)
    # a Debian-supplied version whose multiarch package is not installed
    monkeypatch.setitem(cross.DEBIAN_PYTHONS, "3.99", "bookworm")
    with pytest.raises(cross.CrossError, match=r"libpython3\.99-dev:arm64.*FASTRADIO_AARCH64_PYTHON_INCLUDE_3_99"):
        cross.python_include("3.99", tmp_path)


@pytest.fixture
def no_aarch64_settings(monkeypatch, tmp_path):
    """No $FASTRADIO_AARCH64_PYTHON[_INCLUDE]_3_X, and an empty toolchains folder."""
    for k in list(os.environ):
        if k.startswith("FASTRADIO_AARCH64_PYTHON"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("FASTRADIO_TOOLCHAINS_DIR", str(tmp_path / "toolchains"))
    monkeypatch.setattr(cross, "_apt", lambda *a, **k: pytest.fail(f"apt-get called: {a}"))
    return tmp_path


def test_aarch64_matrix_is_what_pypi_and_debian_supply(no_aarch64_settings, monkeypatch):
    """DESIGN.md decision 29: 3.11 (bookworm) and 3.13 (trixie); 3.10 and 3.12 only with the user's
    headers (build) and interpreter (check), each left-out version saying which variables to set."""
    assert cross.DEBIAN_PYTHONS == {"3.11": "bookworm", "3.13": "trixie"}
    assert cross.SYSROOT_PYTHONS == {"3.13": "trixie"}
    versions, left_out = build.aarch64_matrix(None)
    assert versions == ["3.11", "3.13"] and list(left_out) == ["3.10", "3.12"]
    for v in ("3.10", "3.12"):
        k = v.replace(".", "_")
        assert f"CPython {v} for aarch64: neither PyPI nor Debian" in left_out[v]
        assert f"$FASTRADIO_AARCH64_PYTHON_INCLUDE_{k}" in left_out[v]
        assert f"$FASTRADIO_AARCH64_PYTHON_{k} " in left_out[v]
    monkeypatch.setenv("FASTRADIO_AARCH64_PYTHON_INCLUDE_3_12", "/opt/py312/include/python3.12")
    assert build.aarch64_matrix(["3.12"], check=False) == (["3.12"], {})  # headers suffice for --no-check
    assert list(build.aarch64_matrix(["3.12"])[1]) == ["3.12"]            # the check needs the interpreter too
    monkeypatch.setenv("FASTRADIO_AARCH64_PYTHON_3_12", "/opt/py312/bin/python3.12")
    assert build.aarch64_matrix(None)[0] == ["3.11", "3.12", "3.13"]


def test_aarch64_python_neither_pypi_nor_debian_supply_stops_before_building(no_aarch64_settings, capsys):
    tmp_path = no_aarch64_settings
    rc = build.main(["--platform", "aarch64", "--python", "3.10,3.11,3.12", "--work", str(tmp_path / "w"),
                     "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and not (tmp_path / "o").exists() and not (tmp_path / "toolchains").exists()  # nothing done
    lines = [ln for ln in err.splitlines() if ln.startswith("[build_wheels] error: CPython")]
    assert len(lines) == 2 and "CPython 3.10" in lines[0] and "CPython 3.12" in lines[1], err
    assert "FASTRADIO_AARCH64_PYTHON_INCLUDE_3_12" in lines[1] and "FASTRADIO_AARCH64_PYTHON_3_12" in lines[1]
    # the pieces themselves say the same, without asking apt for a package no Debian has
    for piece in (lambda: cross.python_include("3.12", tmp_path), lambda: cross.python("3.12")):
        with pytest.raises(cross.CrossError, match=r"neither PyPI nor Debian.*FASTRADIO_AARCH64_PYTHON_INCLUDE_3_12"):
            piece()


def _fake_sysroot(root: Path, version: str) -> Path:
    (root / "usr" / "include" / f"python{version}").mkdir(parents=True)
    (root / "usr" / "include" / f"python{version}" / "Python.h").write_text("/* generic */\n")
    (root / "usr" / "include" / f"python{version}" / "pyconfig.h").write_text("#include <aarch64-linux-gnu/...>\n")
    (root / "usr" / "include" / "aarch64-linux-gnu" / f"python{version}").mkdir(parents=True)
    (root / "usr" / "include" / "aarch64-linux-gnu" / f"python{version}" / "pyconfig.h").write_text("/* arm64 */\n")
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / f"python{version}").write_text("")
    (root / cross.SYSROOT_STAMP).write_text(json.dumps({"suite": "trixie", "debs": []}))
    return root


def test_aarch64_313_comes_from_its_fetched_trixie_sysroot(no_aarch64_settings, monkeypatch):
    tmp_path = no_aarch64_settings
    root = cross.sysroot_dir("3.13")
    assert root == tmp_path / "toolchains" / "python3.13-aarch64-trixie"
    _fake_sysroot(root, "3.13")  # fetched before: no apt-get (the fixture fails any call)
    inc = cross.python_include("3.13", tmp_path / "inc")
    assert inc == tmp_path / "inc" / "python3.13" and (inc / "Python.h").exists()
    assert (inc / "pyconfig.h").read_text() == "/* arm64 */\n"  # the aarch64 one, not Debian's dispatcher
    exe = cross.python("3.13")
    assert exe == root / "usr" / "bin" / "python3.13"
    monkeypatch.setattr(cross, "qemu", lambda: "qemu-aarch64-static")
    assert cross.runner(exe) == ["qemu-aarch64-static", "-L", str(root)]  # trixie's glibc, not the machine's
    # the user's own interpreter and headers win, and run without the sysroot
    mine = tmp_path / "mine"
    (mine / "include").mkdir(parents=True)
    (mine / "include" / "Python.h").write_text("")
    monkeypatch.setenv("FASTRADIO_AARCH64_PYTHON_3_13", str(mine / "python3.13"))
    monkeypatch.setenv("FASTRADIO_AARCH64_PYTHON_INCLUDE_3_13", str(mine / "include"))
    assert cross.python("3.13") == mine / "python3.13" and cross.runner(mine / "python3.13") == ["qemu-aarch64-static"]
    assert cross.python_include("3.13", tmp_path / "inc2") == mine / "include"


def test_trixie_sysroot_fetch_uses_only_a_private_apt_setup(no_aarch64_settings, monkeypatch):
    """debian_sysroot() end to end against a stand-in apt-get (no network): every apt-get call carries
    the private configuration; runtime packages are resolved with dependencies, headers downloaded
    alone; the .debs are unpacked, merged-/usr links made, the interpreter probed under qemu -L, the
    stamp written and the apt state removed. No version is pinned (apt resolves the current ones)."""
    tmp_path = no_aarch64_settings
    if not shutil.which("dpkg-deb"):
        pytest.skip("needs dpkg-deb (Debian)")
    calls = []
    files = {"libc6": {"usr/lib/ld-linux-aarch64.so.1": ""},
             "python3.13-minimal": {"usr/bin/python3.13": ""},
             "libpython3.13-dev": {"usr/include/python3.13/Python.h": "", "usr/share/doc/x/copyright": "",
                                   "usr/include/aarch64-linux-gnu/python3.13/pyconfig.h": "/* arm64 */",
                                   "usr/lib/python3.13/config-3.13-aarch64-linux-gnu/libpython3.13.a": "big"}}

    def deb(name: str, dest: Path) -> None:
        pkg = tmp_path / "pkg" / name
        for rel, text in files.get(name, {f"usr/share/{name}/x": ""}).items():
            (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
            (pkg / rel).write_text(text)
        (pkg / "DEBIAN").mkdir(parents=True)
        (pkg / "DEBIAN" / "control").write_text(f"Package: {name}\nVersion: 1.0\nArchitecture: arm64\n"
                                                 "Maintainer: t <t@t>\nDescription: t\n")
        subprocess.run(["dpkg-deb", "--build", "-Zgzip", str(pkg), str(dest / f"{name}_1.0_arm64.deb")],
                       check=True, capture_output=True)

    def fake_apt(state, *args, cwd=None):
        opts = dict(o.split("=", 1) for o in cross.apt_options(state)[1::2])
        calls.append(args)
        for key in ("Dir::Etc::SourceList", "Dir::Etc::SourceParts", "Dir::Etc::Preferences",
                    "Dir::Etc::PreferencesParts", "Dir::State::Lists", "Dir::State::status", "Dir::Cache"):
            assert Path(opts[key]).is_relative_to(state), key
        assert opts["APT::Architecture"] == "arm64" and Path(opts["Dir::State::status"]).read_text() == ""
        assert (state / "sources.list").read_text() == (
            f"deb [arch=arm64 signed-by={cross.DEBIAN_KEYRING}] http://deb.debian.org/debian trixie main\n")
        if args[0] == "install":
            assert args[1:3] == ("--download-only", "-y")
            for name in ("libc6", *args[3:]):  # apt adds the dependencies
                deb(name, Path(opts["Dir::Cache"]) / "archives")
        elif args[0] == "download":
            for name in args[1:]:
                deb(name, cwd)
        return ""

    probe = tmp_path / "fake-qemu"
    probe.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/qemu-args\"; echo 3.13\n")
    probe.chmod(0o755)
    monkeypatch.setenv("FASTRADIO_DEBIAN_MIRROR", "")
    monkeypatch.setattr(cross, "_apt", fake_apt)
    monkeypatch.setattr(cross, "qemu", lambda: str(probe))
    root = cross.debian_sysroot("3.13")
    assert [c[0] for c in calls] == ["update", "install", "download"]
    assert calls[1][3:] == ("python3.13-minimal", "libpython3.13-minimal", "libpython3.13-stdlib", "libstdc++6")
    assert calls[2][1:] == ("libpython3.13-dev",)
    assert not any("=" in a for c in calls for a in c[1:] if not a.startswith("-"))  # no pinned versions
    assert os.readlink(root / "lib") == "usr/lib" and (root / "lib" / "ld-linux-aarch64.so.1").exists()
    assert not (root / "usr" / "share" / "doc").exists()
    assert not list(root.glob("usr/lib/python3.13/config-*/*.a"))
    assert (tmp_path / "qemu-args").read_text().split()[:3] == ["-L", str(root), str(root / "usr/bin/python3.13")]
    stamp = json.loads((root / cross.SYSROOT_STAMP).read_text())
    assert stamp["suite"] == "trixie" and len(stamp["debs"]) == 6
    assert not root.with_name(root.name + ".apt").exists() and not root.with_name(root.name + ".new").exists()
    assert cross.debian_sysroot("3.13") == root and len(calls) == 3  # once


def test_real_trixie_python_starts_under_qemu():
    """The fetched Debian 13 interpreter itself (where a build, a check or CI fetched it: nothing is
    fetched here), under qemu with its sysroot."""
    root = cross.sysroot_dir("3.13")
    if not (root / cross.SYSROOT_STAMP).exists() or not shutil.which(cross.QEMU):
        pytest.skip(f"needs {cross.QEMU} and the trixie sysroot (python3 csrc/tools/cross_aarch64.py python 3.13)")
    exe = cross.python("3.13")
    out = subprocess.run([*cross.runner(exe), str(exe), "-c", "import sys; print(sys.version_info[:2], sys.prefix)"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(")")[0] == "(3, 13" and out.stdout.split()[-1] == str(root / "usr")


# --- check_wheel: build_info() against the binary and the promises -----------------------------------

def _build_info(kernels: dict, cuda="13.0", toolchain="nvcc") -> dict:
    sass = sorted({a for tiers in kernels.values() for k in tiers.values() for a in k["sass"]}, key=variants.arch_key)
    ptx = sorted({a for tiers in kernels.values() for k in tiers.values() for a in k["ptx"]}, key=variants.arch_key)
    return {"cuda_version": cuda, "toolchain": toolchain, "sass_archs": sass, "ptx_archs": ptx, "kernels": kernels}


def _binary(functions: dict[str, tuple[set, set]]) -> dict:
    out = {"sass_bytes": {}, "ptx_bytes": {}, "functions_sass": {}, "functions_ptx": {}}
    for fn, (sass, ptx) in functions.items():
        out["functions_sass"][fn] = set(sass)
        out["functions_ptx"][fn] = set(ptx)
        for a in sass:
            out["sass_bytes"][a] = 1000
        for a in ptx:
            out["ptx_bytes"][a] = 500
    return out


GOOD_KERNELS = {"pos_embed": {"cuda_core": {"sass": ["75", "80", "90"], "ptx": ["90"]}},
                "linear": {"cuda_core": {"sass": ["75", "80", "90"], "ptx": ["90"]},
                           "mma_sm80": {"sass": ["80", "90"], "ptx": ["90"]}}}
GOOD_BINARY = {"pos_embed_kernel": ({"75", "80", "90"}, {"90"}), "linear_core": ({"75", "80", "90"}, {"90"}),
               "linear_mma": ({"80", "90"}, {"90"})}


def test_verify_accepts_a_consistent_wheel():
    assert check.verify(_build_info(GOOD_KERNELS), _binary(GOOD_BINARY), ["75", "80", "90"], ["90"], "13", "nvcc") == []


def test_verify_fails_for_a_promised_arch_the_binary_lacks():
    problems = check.verify(_build_info(GOOD_KERNELS), _binary(GOOD_BINARY), ["75", "80", "86", "90"], ["90"])
    assert any("promised SASS missing" in p and "sm_86" in p for p in problems), problems
    assert any("op pos_embed has no tier with SASS for sm_86" in p for p in problems), problems
    problems = check.verify(_build_info(GOOD_KERNELS), _binary(GOOD_BINARY), ["75", "80", "90"], ["120"])
    assert any("promised PTX missing" in p and "compute_120" in p for p in problems), problems


def test_verify_fails_when_build_info_claims_an_arch_the_binary_lacks():
    kernels = json.loads(json.dumps(GOOD_KERNELS))
    kernels["pos_embed"]["cuda_core"]["sass"].append("86")
    problems = check.verify(_build_info(kernels), _binary(GOOD_BINARY), ["75", "80", "90"], ["90"])
    assert any("sass_archs" in p and "listed but absent sm_86" in p for p in problems), problems
    assert any("pos_embed/cuda_core" in p and "matches no kernel" in p for p in problems), problems


def test_verify_fails_when_the_binary_has_code_build_info_does_not_list():
    binary = dict(GOOD_BINARY, extra_kernel=({"75", "80", "89", "90"}, {"90"}))
    problems = check.verify(_build_info(GOOD_KERNELS), _binary(binary), ["75", "80", "90"], ["90"])
    assert any("present but not listed sm_89" in p for p in problems), problems
    assert any(p.startswith("kernel extra_kernel has SASS") for p in problems), problems


def test_verify_fails_when_one_tier_lacks_an_arch_the_union_still_has():
    # the sets of all archs agree, but one kernel of linear's cuda_core tier is missing sm_80
    binary = dict(GOOD_BINARY, linear_core=({"75", "90"}, {"90"}))
    problems = check.verify(_build_info(GOOD_KERNELS), _binary(binary), ["75", "80", "90"], ["90"])
    assert not any("sass_archs" in p for p in problems), problems
    assert any(p.startswith("kernel linear_core has SASS sm_75 sm_90 ") for p in problems), problems


def test_verify_compares_a_sass_only_device_function_on_sass():
    binary = _binary(GOOD_BINARY)
    binary["functions_sass"]["device_helper"] = {"80", "90"}  # a non-inlined __device__ function of mma_sm80
    assert check.verify(_build_info(GOOD_KERNELS), binary, ["75", "80", "90"], ["90"]) == []
    binary["functions_sass"]["device_helper"] = {"90"}
    problems = check.verify(_build_info(GOOD_KERNELS), binary, ["75", "80", "90"], ["90"])
    assert any(p.startswith("kernel device_helper has SASS sm_90 and PTX none") for p in problems), problems


def test_verify_fails_for_ptx_disagreement_arch_specific_alone_and_wrong_variant():
    binary = dict(GOOD_BINARY, pos_embed_kernel=({"75", "80", "90"}, {"80"}))
    problems = check.verify(_build_info(GOOD_KERNELS), _binary(binary), [], [])
    assert any("ptx_archs" in p for p in problems), problems

    kernels = {"attention": {"wgmma_sm90a": {"sass": ["90a"], "ptx": ["90a"]}}}
    problems = check.verify(_build_info(kernels), _binary({"k": ({"90a"}, {"90a"})}), [], [])
    assert problems == ["sm_90a SASS without plain sm_90 SASS next to it"]

    problems = check.verify(_build_info(GOOD_KERNELS, cuda="12.9", toolchain="clang"), _binary(GOOD_BINARY),
                            [], [], "13", "nvcc")
    assert any("expected CUDA 13.x" in p for p in problems) and any("expected 'nvcc'" in p for p in problems)
    assert "build_info() lists no compiled kernel" in check.verify(_build_info({}), _binary({}), [], [])


# --- build_wheels --------------------------------------------------------------------------------------

def test_staged_pyproject_renames_the_distribution_only():
    text = (REPO / "pyproject.toml").read_text()
    staged = build.staged_pyproject(text, variants.VARIANTS["12"])
    assert 'name = "fastradio-cu12"' in staged and 'name = "fastradio"' not in staged
    assert '"fastradio" = "python/fastradio"' in staged  # the import package stays fastradio
    assert "prebuilt for CUDA 12" in staged
    with pytest.raises(build.BuildError, match="name"):
        build.staged_pyproject(text.replace('name = "fastradio"', 'name = "other"'), variants.VARIANTS["12"])


def test_sync_tree_rewrites_only_changed_files(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "a").mkdir(parents=True)
    (src / "a" / "same.txt").write_text("same")
    (src / "changed.txt").write_text("new")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_text("junk")
    (dst / "a").mkdir(parents=True)
    (dst / "a" / "same.txt").write_text("same")
    (dst / "changed.txt").write_text("old")
    (dst / "stale.txt").write_text("stale")
    os.utime(dst / "a" / "same.txt", (1, 1))
    build.sync_tree(src, dst)
    assert (dst / "changed.txt").read_text() == "new" and not (dst / "stale.txt").exists()
    assert (dst / "a" / "same.txt").stat().st_mtime == 1  # untouched: incremental builds stay incremental
    assert not (dst / "__pycache__").exists()


def test_a_missing_python_fails_loudly_before_building(tmp_path, capsys):
    assert build.find_python("3.99") is None
    rc = build.main(["--python", "3.99", "--cuda", "13", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "FASTRADIO_PYTHON_3_99" in err and "3.99" in err
    assert not (tmp_path / "o").exists()  # nothing built


def test_this_python_is_found():
    version = "%d.%d" % sys.version_info[:2]
    found = build.find_python(version)
    if found is None:
        pytest.skip(f"CPython {version} has no Python.h here (a venv of a headerless Python)")
    assert subprocess.run([found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                          text=True).stdout.strip() == version


def test_kernels_only_configure_describes_the_kernels_and_skips_redundant_arch_specific_sass(tmp_path):
    """CMake -DFASTRADIO_KERNELS_ONLY=ON (configure only): fastradio_kernels.cmake carries the kernel
    table, and a portable tier gets no sm_90a next to sm_90."""
    nvcc = shutil.which("nvcc") or next((p for p in ("/usr/local/cuda-13.0/bin/nvcc", "/usr/local/cuda/bin/nvcc")
                                         if Path(p).exists()), None)
    if not nvcc or not shutil.which("cmake"):
        pytest.skip("needs cmake and CUDA 13 nvcc")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTRADIO_")}
    out = subprocess.run(["cmake", "-S", str(REPO), "-B", str(tmp_path), f"-DCMAKE_CUDA_COMPILER={nvcc}",
                          "-DFASTRADIO_KERNELS_ONLY=ON", "-DFASTRADIO_CUDA_ARCHS=80;90;90a"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "pos_embed/cuda_core: SASS sm_{80 90}, PTX compute_90" in out.stdout
    text = (tmp_path / "fastradio_kernels.cmake").read_text()
    assert '{"pos_embed", "cuda_core", "80;90", "90"},' in text
    assert "set(FASTRADIO_KERNELS_ARCHS 80 90 90a)" in text
    assert "FASTRADIO_HAS_POS_EMBED_CUDA_CORE=1" in text and "SOURCE_HASH [==[" in text


# --- fastradio._dist: one distribution of fastradio at a time ----------------------------------------

def _fake_dist(site: Path, name: str, version: str = "0.1.0") -> None:
    d = site / f"{name.replace('-', '_')}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_dist_finds_each_distribution_and_accepts_one(tmp_path):
    from fastradio import _dist
    _fake_dist(tmp_path, "fastradio-cu13")
    _fake_dist(tmp_path, "unrelated")
    found = _dist.installed([str(tmp_path)])
    assert list(found) == ["fastradio-cu13"] and found["fastradio-cu13"][0].startswith("0.1.0")
    assert _dist.mixed_install_error(found) is None
    _dist.check_single_distribution([str(tmp_path)])


def test_dist_refuses_two_distributions_with_the_fix(tmp_path):
    from fastradio import _dist
    _fake_dist(tmp_path, "fastradio-cu12")
    _fake_dist(tmp_path, "fastradio-cu13", "0.2.0")
    with pytest.raises(ImportError) as e:
        _dist.check_single_distribution([str(tmp_path)])
    msg = str(e.value)
    assert "fastradio-cu12 0.1.0" in msg and "fastradio-cu13 0.2.0" in msg
    assert "pip uninstall -y fastradio fastradio-cu12 fastradio-cu13" in msg


def test_import_fastradio_refuses_a_mixed_install(tmp_path):
    """`import fastradio` itself refuses, before importing anything heavy: whatever distribution
    provides this fastradio, two more on sys.path make a mix."""
    import fastradio
    _fake_dist(tmp_path, "fastradio-cu12")
    _fake_dist(tmp_path, "fastradio-cu13")
    pkg_parent = str(Path(fastradio.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), pkg_parent])}
    code = ("import sys\ntry:\n    import fastradio\nexcept ImportError as e:\n"
            "    print('torch imported:', 'torch' in sys.modules)\n    print(e)\n    sys.exit(3)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "torch imported: False" in out.stdout
    assert "pip uninstall -y fastradio fastradio-cu12 fastradio-cu13" in out.stdout


# --- on a real wheel (FASTRADIO_TEST_WHEEL_WORK: a build_wheels.py --work folder) ----------------------

def _built(var: str = "FASTRADIO_TEST_WHEEL_WORK", name: str = "manifest.json") -> tuple[dict, dict]:
    work = os.environ.get(var)
    if not work or not (Path(work) / name).exists():
        pytest.skip(f"needs a wheel built by csrc/tools/build_wheels.py: set {var} to its --work folder (.ci/run does)")
    manifest = json.loads((Path(work) / name).read_text())
    entry = next((w for w in manifest["wheels"] if Path(w["wheel"]).exists()), None)
    if entry is None:
        pytest.skip(f"the wheels of {work}/manifest.json are gone")
    return manifest, entry


def _check_args(manifest: dict, entry: dict, wheel: Path, tmp_path: Path, sass=None,
                var: str = "FASTRADIO_TEST_WHEEL_WORK") -> list[str]:
    tools_py = manifest["tools_python"]
    # an aarch64 wheel's interpreter (under qemu) is found by check_wheel itself; "python" built it
    python = ["--python", entry["python"]] if entry.get("platform", "x86_64") == "x86_64" else []
    return [str(wheel), "--sass", ",".join(sass or entry["sass"]), "--ptx", ",".join(entry["ptx"]),
            *python, "--cuobjdump", build.cuobjdump(Path(tools_py)),
            "--auditwheel", f"{tools_py} -m auditwheel", "--no-tests", "--work", str(tmp_path / "check"),
            "--deps", str(Path(os.environ[var]) / "check" / "deps"),  # made by its check
            "--report", str(tmp_path / "report.json")]


def _problems(tmp_path: Path) -> list[str]:
    return json.loads((tmp_path / "report.json").read_text())["problems"]


def test_real_wheel_passes_and_fails_for_an_arch_it_lacks(tmp_path):
    manifest, entry = _built()
    wheel = Path(entry["wheel"])
    assert check.main(_check_args(manifest, entry, wheel, tmp_path)) == 0, _problems(tmp_path)
    missing = "86" if "86" not in entry["sass"] else "61"
    assert check.main(_check_args(manifest, entry, wheel, tmp_path, sass=[*entry["sass"], missing])) == 1
    problems = _problems(tmp_path)
    assert any("promised SASS missing" in p and f"sm_{missing}" in p for p in problems), problems


def test_real_wheel_whose_build_info_disagrees_with_its_binary_fails(tmp_path):
    """A binding rebuilt against a kernel table that claims one more arch than the library has: the
    build succeeds, and the check must catch the lie."""
    manifest, entry = _built()
    kernels = tmp_path / "kernels"
    shutil.copytree(entry["kernels"], kernels)
    table = kernels / "fastradio_kernels.cmake"
    text = table.read_text()
    lie = "61" if "61" not in entry["sass"] else "86"
    sass = ";".join(entry["sass"])
    assert f'"{sass}", "' in text
    table.write_text(text.replace(f'"{sass}", "', f'"{sass};{lie}", "'))
    tc = build.Toolchain(**entry["toolchain"])
    logf = tmp_path / "build.log"
    raw = build.build_binding_wheel(Path(entry["build_python"]), Path(entry["src"]), kernels, tmp_path / "bind",
                                    tmp_path / "raw", tc, os.cpu_count() or 2, logf)
    wheel = build.repair(Path(manifest["tools_python"]), raw, tmp_path / "out", logf)
    with zipfile.ZipFile(wheel) as z:
        assert any(n.startswith("fastradio/_C.") for n in z.namelist())
    assert check.main(_check_args(manifest, entry, wheel, tmp_path)) == 1
    problems = _problems(tmp_path)
    assert any("build_info() sass_archs" in p and f"listed but absent sm_{lie}" in p for p in problems), problems


def test_prebuilt_kernels_from_other_sources_are_refused(tmp_path):
    manifest, entry = _built()
    kernels = tmp_path / "kernels"
    shutil.copytree(entry["kernels"], kernels)
    table = kernels / "fastradio_kernels.cmake"
    table.write_text(table.read_text().replace("SOURCE_HASH [==[", "SOURCE_HASH [==[0"))
    with pytest.raises(build.BuildError) as e:
        build.build_binding_wheel(Path(entry["build_python"]), Path(entry["src"]), kernels, tmp_path / "bind",
                                  tmp_path / "raw", build.Toolchain(**entry["toolchain"]), 2, tmp_path / "b.log")
    assert "sources (csrc/ fingerprint)" in str(e.value)


# --- on a real aarch64 wheel (FASTRADIO_TEST_ARM64_WHEEL_WORK: a build_wheels.py --platform aarch64 --work) ---

ARM = "FASTRADIO_TEST_ARM64_WHEEL_WORK"


def test_real_arm64_wheel_passed_under_qemu_and_fails_for_an_arch_it_lacks(tmp_path):
    manifest, entry = _built(ARM, "manifest-aarch64.json")
    wheel = Path(entry["wheel"])
    assert entry["platform"] == "aarch64" and wheel.name.endswith("_aarch64.whl")
    # The build's own check (under qemu, moments ago in CI) passed; re-running it would cost a minute.
    own = json.loads(Path(str(wheel) + ".check.json").read_text())
    assert own["problems"] == [] and own["machine"] == "aarch64", own["problems"]
    assert own["build_info"]["sass_archs"] == entry["sass"] == own["binary"]["sass"]
    missing = "121" if "121" not in entry["sass"] else "90"
    assert check.main(_check_args(manifest, entry, wheel, tmp_path, sass=[*entry["sass"], missing], var=ARM)) == 1
    problems = _problems(tmp_path)
    assert any("promised SASS missing" in p and f"sm_{missing}" in p for p in problems), problems
    # everything else about the wheel still held: every problem is about that arch
    assert all(f"sm_{missing}" in p for p in problems), problems


def test_real_arm64_wheel_tagged_for_x86_64_fails_the_machine_check(tmp_path):
    """The aarch64 binary in a wheel whose tag says x86_64: the ELF check (and auditwheel) must object."""
    manifest, entry = _built(ARM, "manifest-aarch64.json")
    wheel = Path(entry["wheel"])
    liar = tmp_path / wheel.name.replace("_aarch64.whl", "_x86_64.whl")
    shutil.copy(wheel, liar)
    # `false` as the interpreter: the check stops at the install step (nothing to learn there, and an
    # x86_64 test venv would cost minutes); everything before it has run.
    x86 = {**entry, "platform": "x86_64", "python": shutil.which("false")}
    assert check.main(_check_args(manifest, x86, liar, tmp_path, var=ARM)) == 1
    problems = _problems(tmp_path)
    assert any("shared objects not built for x86_64" in p and "-aarch64-linux-gnu.so: aarch64" in p
               for p in problems), problems
    assert any("auditwheel" in p for p in problems), problems  # its tag (aarch64) differs, or it refuses
