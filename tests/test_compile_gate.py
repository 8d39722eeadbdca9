"""The compile gate (csrc/tools/compile_gate.py): its ptxas-report parser on recorded outputs, its
limits, the kernel registrations it reads, and a real run on fixture sources that must fail on
exactly the arch where they spill and overflow shared memory (skipped per missing toolchain)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "cuda"


def _load_gate():
    spec = importlib.util.spec_from_file_location("compile_gate", REPO / "csrc" / "tools" / "compile_gate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["compile_gate"] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


gate = _load_gate()


# -- the parser, on real ptxas -v outputs -------------------------------------------------------------

def test_parse_nvcc_report_with_spill_and_smem():
    funcs = gate.parse_ptxas((FIXTURES / "ptxas_nvcc13_sm80_spill.txt").read_text())
    assert set(funcs) == {"_Z11smem_kernelPf", "_Z12spill_kernelPKfPfi"}
    smem = funcs["_Z11smem_kernelPf"]
    assert (smem.entry, smem.registers, smem.barriers, smem.smem, smem.spill_stores, smem.spill_loads) == \
        (True, 10, 1, 16384, 0, 0)
    spill = funcs["_Z12spill_kernelPKfPfi"]
    assert (spill.registers, spill.stack, spill.spill_stores, spill.spill_loads, spill.smem) == (32, 680, 776, 1224, 0)
    problems = gate.findings(funcs, "80", gate.smem_optin_limits())
    assert len(problems) == 1 and "_Z12spill_kernelPKfPfi" in problems[0] and "776" in problems[0]


def test_parse_clang_report():
    funcs = gate.parse_ptxas((FIXTURES / "ptxas_clang19_sm70_spill.txt").read_text())
    assert funcs["_Z12spill_kernelPKfPfi"].spill_stores == 808
    assert funcs["_Z12spill_kernelPKfPfi"].spill_loads == 1256
    assert funcs["_Z11smem_kernelPf"].smem == 16384


def test_parse_smem_error_report():
    funcs = gate.parse_ptxas((FIXTURES / "ptxas_nvcc13_sm80_smem_error.txt").read_text())
    assert funcs["_Z15big_smem_kernelPf"].smem == 65536
    problems = gate.findings(funcs, "80", gate.smem_optin_limits())
    assert problems and "48 KiB static limit" in problems[0]


def test_findings_opt_in_limit_per_arch():
    f = gate.FunctionReport("k", entry=True, registers=32, smem=40 * 1024)
    limits = {75: 64 * 1024, 60: 32 * 1024}
    assert gate.findings({"k": f}, "75", limits) == []
    assert "sm_60 opt-in limit" in gate.findings({"k": f}, "60", limits)[0]
    assert gate.findings({"k": gate.FunctionReport("k", registers=255)}, "90a", limits) == []


def test_smem_limits_table():
    limits = gate.smem_optin_limits()
    kib = {a: b // 1024 for a, b in limits.items()}
    assert kib[60] == 48 and kib[70] == 96 and kib[75] == 64
    assert kib[80] == 163 and kib[86] == 99 and kib[87] == 163 and kib[89] == 99
    assert kib[90] == 227 and kib[100] == 227 and kib[120] == 99
    for tc, archs in gate.GATE_ARCHS.items():
        for a in archs:
            assert int(a.rstrip("a")) in limits, f"{tc} gates sm_{a} but csrc/common/arch.h has no limit for it"


def test_every_cuda_source_is_registered():
    """Each csrc/**/*.cu is compiled by a fastradio_add_kernel call (so CMake builds it and the
    gate knows its archs)."""
    regs = gate.registrations()
    sources = gate.kernel_sources()
    assert sources, "no CUDA sources found"
    missing = [str(s.relative_to(REPO)) for s in sources if s.resolve() not in regs]
    assert not missing, f"not in any fastradio_add_kernel(... SOURCES ...): {missing}"
    pe = regs[(REPO / "csrc" / "pos_embed" / "pos_embed.cu").resolve()]
    assert (pe.op, pe.tier, pe.min_arch) == ("pos_embed", "cuda_core", 60)


def test_arch_need():
    reg = gate.Registration("x", "mma_sm80", 80, [])
    assert not gate.needed(reg, "75") and gate.needed(reg, "80") and gate.needed(reg, "90a")
    only = gate.Registration("x", "wgmma_sm90a", 90, ["90a"])
    assert not gate.needed(only, "90") and gate.needed(only, "90a")
    assert gate.needed(None, "60")


# -- a real run on fixture sources ---------------------------------------------------------------------

def _toolchain_or_skip(name: str):
    tc = gate.find_nvcc(None) if name == "nvcc" else gate.find_clang(None, None)
    if tc is None:
        hint = "CUDA 13 nvcc" if name == "nvcc" else "clang++-19 + the CUDA 12.9 folder (csrc/tools/setup_toolchains.sh)"
        pytest.skip(f"toolchain {name} not found: {hint}")
    return tc


@pytest.mark.parametrize("toolchain", ["nvcc", "clang"])
def test_gate_fails_on_spill_and_smem_for_one_arch(toolchain, tmp_path, capsys):
    _toolchain_or_skip(toolchain)
    bad, ok = FIXTURES / "gate_fail_sm80.cu", FIXTURES / "gate_ok.cu"
    rc = gate.main(["--toolchain", toolchain, "--archs", "75,80", "--no-host-pass",
                    "--report-dir", str(tmp_path), "--sources", str(bad), str(ok)])
    out = capsys.readouterr().out
    assert rc == 1, out
    fails = [ln for ln in out.splitlines() if ln.startswith("FAIL")]
    assert fails and all("gate_fail_sm80.cu" in ln and f"[{toolchain} sm_80]" in ln for ln in fails), out
    assert any("gate_spill_kernel" in ln and "spills" in ln for ln in fails), out
    assert any("gate_smem_kernel" in ln and "shared memory" in ln for ln in fails), out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is False
    by_key = {(Path(j["file"]).name, j["arch"]): j for j in report["jobs"]}
    assert by_key[("gate_fail_sm80.cu", "75")]["problems"] == []
    assert by_key[("gate_ok.cu", "80")]["problems"] == []
    assert by_key[("gate_ok.cu", "80")]["functions"][0]["smem"] == 1024
    assert (tmp_path / "report.md").read_text().startswith("# Compile gate")


@pytest.mark.parametrize("toolchain,archs", [("nvcc", "80,90,90a"), ("clang", "80,90")])
def test_hopper_wrappers_compile(toolchain, archs, tmp_path, capsys):
    """common/hopper.h's asm (mbarrier, TMA, wgmma for N = 8, 72, 256, stmatrix, setmaxnreg) passes
    ptxas for sm_90a, and compiles out cleanly where the instructions do not exist."""
    tc = _toolchain_or_skip(toolchain)
    src = FIXTURES / "hopper_wrappers.cu"
    rc = gate.main(["--toolchain", toolchain, "--archs", archs, "--no-host-pass", "--report-dir", str(tmp_path),
                    "--sources", str(src)])
    out = capsys.readouterr().out
    assert rc == 0, out
    report = json.loads((tmp_path / "report.json").read_text())
    ran = {j["arch"] for j in report["jobs"]}
    assert ran == set(archs.split(",")) & set(tc.archs), (ran, tc.archs)
    assert all(j["problems"] == [] for j in report["jobs"])


def test_sass_opcodes_parse_cuobjdump_output():
    text = """
	code for sm_90a
		Function : _Z1kv
	.headerflags	@"EF_CUDA_TEXMODE_UNIFIED EF_CUDA_64BIT_ADDRESS EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                      /* 0x00000a00ff017b82 */
        /*0040*/              @!P0 UTMALDG.2D [UR8], [UR4] ;                   /* 0x00000008040075b4 */
        /*0050*/                   HGMMA.64x128x16.F32 R24, gdesc[UR4], RZ, !UPT ;
        /*0060*/                   EXIT ;
		Function : _Z1jv
        /*0000*/                   STL [R1], R2 ;
        /*0010*/                   LDL R3, [R1] ;
"""
    ops = gate.sass_opcodes(text)
    assert ops == {"_Z1kv": {"LDC", "UTMALDG", "HGMMA", "EXIT"}, "_Z1jv": {"STL", "LDL"}}
    rule = gate.SASS_RULES["wgmma_sm90a"]
    problems = gate.sass_findings(ops, rule)
    assert len(problems) == 2 and all(p.startswith("_Z1jv: SASS") for p in problems), problems
    assert gate.sass_findings({}, rule) == ["SASS check: cuobjdump found no function in the cubin"]


def test_gate_sass_rule_fails_a_fallback_and_local_memory(tmp_path, capsys, monkeypatch):
    """A source of a tier with a SASS rule (here a fixture posing as a wgmma_sm90a source): its
    kernel with TMA + wgmma passes; one with neither, and one with local memory, fail by name."""
    tc = _toolchain_or_skip("nvcc")
    if "90a" not in tc.archs:
        pytest.skip("this nvcc has no sm_90a")
    if gate.find_cuobjdump(None, tc) is None:
        pytest.skip("no cuobjdump (pip install nvidia-cuda-cuobjdump)")
    src = (FIXTURES / "sass_rule.cu").resolve()
    real = gate.registrations
    monkeypatch.setattr(gate, "registrations", lambda: {**real(), src: gate.Registration(
        "linear", "wgmma_sm90a", 90, ["90a"])})
    rc = gate.main(["--toolchain", "nvcc", "--archs", "90,90a", "--report-dir", str(tmp_path), "--sources", str(src)])
    out = capsys.readouterr().out
    assert rc == 1, out
    report = json.loads((tmp_path / "report.json").read_text())
    assert [j["arch"] for j in report["jobs"]] == ["90a"]  # ONLY_ARCHS
    problems = report["jobs"][0]["problems"]
    by_kernel = {k: [p for p in problems if k in p] for k in ("good", "fallback", "local")}
    assert by_kernel["good"] == [], problems
    assert any("lacks HGMMA, UTMALDG" in p for p in by_kernel["fallback"]), problems
    local = " ".join(by_kernel["local"])
    assert "SASS has LDL, STL" in local and "bytes of stack frame" in local, problems
    assert report["jobs"][0]["sass"] and "SASS rules" in (tmp_path / "report.md").read_text()
    assert not list((tmp_path / "cubins").glob("*.cubin"))  # read back, then deleted


def test_wgmma_operand_header_is_current():
    """csrc/common/wgmma_operands.h is what csrc/tools/gen_wgmma.py writes."""
    import subprocess
    p = subprocess.run([sys.executable, str(REPO / "csrc" / "tools" / "gen_wgmma.py"), "--check"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_gate_missing_toolchain_is_an_error(tmp_path, capsys):
    rc = gate.main(["--toolchain", "clang", "--clang", "/nonexistent/clang++", "--report-dir", str(tmp_path)])
    assert rc == 2
    assert "toolchain clang not found" in capsys.readouterr().err
