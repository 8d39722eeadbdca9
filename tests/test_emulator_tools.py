"""The emulated device's tooling, checked without building it (CI runs the emulator itself through
``python csrc/tools/emulate.py``; DESIGN.md "The emulated device"):

- every kernel source compiles on the emulator: no raw ``<<<...>>>`` launch or ``__shared__``
  declaration outside common/kernel.h's macros;
- the mutation check covers every barrier and cp.async wait of every tensor-core kernel, and each
  mutant still applies to today's sources (exactly one match), so kernel edits cannot silently
  retire it;
- emulate.py attributes sanitizer reports to the case that printed them, and a case the driver
  died in fails.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[1] / "csrc"
sys.path.insert(0, str(CSRC / "tools"))

import emulate  # noqa: E402
from emulate_mutants import MUTANTS, QUICK  # noqa: E402

KERNEL_SOURCES = sorted(p for p in CSRC.glob("*/*") if p.suffix in (".cu", ".cuh") and p.parent.name != "tools")
#: Sources of the tensor-core tiers (whose barriers and waits the mutation check must all cover).
TENSOR_CORE_SOURCES = ("linear/linear_sm75.cu", "linear/linear_sm80.cu", "linear/linear_mma.cuh",
                       "attention/attention_mma.cuh", "patch_embed/patch_embed_mma.cuh")


def test_kernel_sources_use_the_macros_the_emulator_understands():
    assert KERNEL_SOURCES, "no kernel sources found"
    for path in KERNEL_SOURCES:
        code = re.sub(r"//[^\n]*", "", path.read_text())
        assert "<<<" not in code, f"{path}: launch with FASTRADIO_LAUNCH(grid, block, smem, stream, kernel)(args)"
        assert not re.search(r"\b__shared__\b", code), \
            f"{path}: declare shared memory with FASTRADIO_SHARED / FASTRADIO_DYNAMIC_SHARED (common/kernel.h)"


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_mutant_applies_to_exactly_one_place(mutant):
    text = (CSRC / mutant.file).read_text()
    assert text.count(mutant.find) == 1, f"{mutant.name}: {mutant.find!r} must occur once in {mutant.file}"
    assert mutant.find != mutant.replace
    assert mutant.expect in ("caught", "passes")
    assert mutant.op in ("pos_embed", "patch_embed", "add_layer_norm", "linear", "attention")
    assert mutant.tier in (None, "cuda_core", "mma_sm75", "mma_sm80", "wgmma_sm90a")
    assert mutant.arch == (90 if mutant.tier == "wgmma_sm90a" else 80)


def test_mutant_names_are_unique_and_the_quick_set_exists():
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names))
    assert set(QUICK) <= set(names)
    assert any(m.expect == "passes" for m in MUTANTS if m.name in QUICK), "CI's set needs a control"
    assert any(m.expect == "caught" for m in MUTANTS if m.name in QUICK)


@pytest.mark.parametrize("source", TENSOR_CORE_SOURCES)
def test_every_barrier_and_wait_of_a_tensor_core_kernel_has_a_mutant(source):
    """Each __syncthreads() and cp_async_wait<...>() line is removed or changed by some mutant
    (a new one needs a new mutant, or a control if it is redundant)."""
    lines = [ln.strip() for ln in (CSRC / source).read_text().splitlines()
             if re.search(r"__syncthreads\(\)|cp_async_wait<", ln) and not ln.strip().startswith("//")]
    assert lines, f"{source} has no barrier or wait?"
    targeted = [m for m in MUTANTS if m.file == source]
    for line in lines:
        hit = [m for m in targeted if line in m.find and line not in m.replace]
        assert hit, f"{source}: no mutant removes or changes `{line}` (csrc/tools/emulate_mutants.py)"


def test_reports_are_attributed_to_the_case_that_printed_them():
    out = "CASE\ta\tPASS\t1e-07\t1e-05\t0.1\t\nCASE\tb\tFAIL\t1\t1e-05\t0.2\twrong value\nSUMMARY\t1\t1\n"
    err = ("[emu-case-begin] a\nWARNING: ThreadSanitizer: data race (pid=1)\n  #0 f x.cu:3\n[emu-case-end] a\n"
           "between cases: no report here\n[emu-case-begin] b\n[emu-case-end] b\n"
           "==2==ERROR: LeakSanitizer: detected memory leaks\n"
           "[emu-case-begin] c\n[emu] error: deadlock: no thread of the block can run\n")
    cases, outside = emulate.parse_driver_output(out, err)
    by_name = {c.name: c for c in cases}
    assert [c.name for c in cases] == ["a", "b", "c"]
    assert by_name["a"].ok and len(by_name["a"].reports) == 1 and "ThreadSanitizer" in by_name["a"].reports[0]
    assert not by_name["b"].ok and by_name["b"].detail == "wrong value" and not by_name["b"].reports
    assert not by_name["c"].ok and "driver died" in by_name["c"].detail and "deadlock" in by_name["c"].reports[0]
    assert "LeakSanitizer" in outside


def test_ubsan_and_asan_report_lines_are_recognised():
    for line in ("x.cu:12:5: runtime error: load of misaligned address", "==7==ERROR: AddressSanitizer: heap-buffer-overflow",
                 "[emu] error: divergent __syncthreads", "WARNING: ThreadSanitizer: data race"):
        assert emulate._REPORT.search(line), line
    assert not emulate._REPORT.search("CASE\tx\tPASS")


def test_selftest_rows_count_sanitizer_reports_but_not_the_errors_it_provokes():
    """The self-test (csrc/emu/selftest/) prints TEST lines; its buggy kernels cause "[emu] error:"
    lines on purpose (it checks each one itself), so only sanitizer reports fail its rows."""
    out = "TEST\terr_trap\tPASS\t__trap() at k.cu:5\nTEST\tshfl_sync_w8\tFAIL\tlane 3: got 0x1, want 0x2\nSUMMARY\t1\t1\n"
    err = ("[emu-case-begin] selftest/err_trap\n[emu] error: __trap() at k.cu:5, block (0,0,0)\n"
           "[emu-case-end] selftest/err_trap\n[emu-case-begin] selftest/shfl_sync_w8\n"
           "WARNING: ThreadSanitizer: data race (pid=1)\n[emu-case-end] selftest/shfl_sync_w8\n"
           "[emu-case-begin] selftest/ldmatrix_x1\n[emu] fatal: an aborted thread was resumed\n")
    cases, outside = emulate.parse_driver_output(out, err, emulate._SAN_REPORT)
    by_name = {c.name: c for c in cases}
    assert list(by_name) == ["selftest/err_trap", "selftest/shfl_sync_w8", "selftest/ldmatrix_x1"]
    assert by_name["selftest/err_trap"].ok and not by_name["selftest/err_trap"].reports
    assert not by_name["selftest/shfl_sync_w8"].ok and by_name["selftest/shfl_sync_w8"].detail.startswith("lane 3")
    assert "ThreadSanitizer" in by_name["selftest/shfl_sync_w8"].reports[0]
    assert not by_name["selftest/ldmatrix_x1"].ok and "fatal" in by_name["selftest/ldmatrix_x1"].reports[0]
    assert not outside


def test_hopper_self_test_runs_in_sm90_self_test_only_builds():
    """sm_90 (the emulated Hopper instructions) is built and run under every sanitizer: its self-test
    and the sm_90a tiers' driver cases only (linear, attention); sm_80 (first: the model step) and sm_75 keep
    the other tiers' cases."""
    assert emulate.DEFAULT_ARCHS["none"][:2] == (80, 75)
    for archs in emulate.DEFAULT_ARCHS.values():
        assert archs[0] == 80 and 90 in archs
    assert emulate.ARCH_TIERS == {90: ("wgmma_sm90a",)} and emulate.ARCH_OPS == {90: ("linear", "attention")}


def test_every_hopper_wrapper_has_an_emulated_twin():
    """Each device function of common/hopper.h exists in emu/hopper.h (written from the PTX ISA)."""
    real = set(re.findall(r"__device__ __forceinline__ [\w:]+ (\w+)\(", (CSRC / "common" / "hopper.h").read_text()))
    real |= set(re.findall(r"FASTRADIO_STMATRIX\((\w+),", (CSRC / "common" / "hopper.h").read_text()))
    real -= {"NAME", "smem_desc"}  # the macro's parameter; smem_desc is shared by both (it encodes, the emulator decodes)
    emulated = set(re.findall(r"^inline [\w:]+ (\w+)\(", (CSRC / "emu" / "hopper.h").read_text(), re.MULTILINE))
    assert len(real) >= 25, real
    assert real <= emulated, sorted(real - emulated)
